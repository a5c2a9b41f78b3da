"""Start the hub as users do (`mcp-memory-server serve` in its own process) and wait until it is
ready: the demo, the latency benchmark and the tests all launch hubs this way."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

SERVER = [sys.executable, "-m", "mcp_memory_server"]

Ready = Callable[[dict[str, Any]], bool]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(base: str, proc: subprocess.Popen[bytes], timeout: float, ready: Ready | None = None,
                 log: Path | None = None) -> None:
    """Return once `base`/health answers 200 (and `ready(health)` holds, e.g. the model is loaded).
    Raises RuntimeError if the process exits first or `timeout` seconds pass."""
    see = f"; see {log}" if log else ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the hub exited with {proc.returncode}{see}")
        try:
            health = httpx.get(f"{base}/health", timeout=30)
            if health.status_code == 200 and (ready is None or ready(health.json())):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the hub at {base} was not ready after {timeout} s{see}")


def stop(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> int:
    """SIGTERM (the hub then closes its store and removes its advert), SIGKILL if it lingers."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
    return proc.returncode


@contextmanager
def hub_process(env: Mapping[str, str], log: Path, *, port: int | None = None,
                transport: str = "streamable-http", command: Sequence[str] = SERVER,
                options: Sequence[str] = (), cwd: Path | None = None, timeout: float = 120.0,
                ready: Ready | None = None) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`command [options] serve --transport T --port P` on 127.0.0.1 (a free port by default), its
    output appended to `log`; yields (base URL, process) once healthy, stops it on exit."""
    port = port or free_port()
    with log.open("ab") as sink:
        proc = subprocess.Popen([*command, *options, "serve", "--transport", transport, "--port", str(port)],
                                env=dict(env), cwd=cwd, stdout=sink, stderr=subprocess.STDOUT)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_healthy(base, proc, timeout, ready, log)
            yield base, proc
        finally:
            stop(proc)
