"""Launching the real server as a subprocess, as MCP clients and users do."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from mcp import StdioServerParameters

from tests.conftest import free_port

SERVER = [sys.executable, "-m", "mcp_memory_server"]


def server_env(db: Path, **extra: str) -> dict[str, str]:
    """The environment of a server process: this one's, minus memory settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MILVUS_", "MEMORY_", "EMBEDDING_", "OPENAI_"))}
    env["MILVUS_URI"] = str(db)
    env.update(extra)
    return env


def stdio_params(db: Path, cwd: Path, **extra: str) -> StdioServerParameters:
    return StdioServerParameters(command=SERVER[0], args=[*SERVER[1:], "serve", "--transport", "stdio"],
                                 env=server_env(db, **extra), cwd=str(cwd))


@contextmanager
def hub_process(db: Path, cwd: Path, transport: str = "streamable-http", timeout: float = 120.0,
                port: int | None = None, log: Path | None = None,
                **extra: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`mcp-memory-server serve` as a subprocess on a loopback port (a free one by default); yields
    (base URL, process) once /health answers ok, and stops it with SIGTERM (SIGKILL if it lingers).
    Its output is appended to `log` (default: cwd/hub-PORT.log)."""
    port = port or free_port()
    sink = (log or cwd / f"hub-{port}.log").open("ab")
    proc = subprocess.Popen([*SERVER, "serve", "--transport", transport, "--port", str(port)],
                            env=server_env(db, **extra), cwd=cwd, stdout=sink, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, proc, timeout)
        yield base, proc
    finally:
        stop(proc)
        sink.close()


def wait_healthy(base: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"hub exited with {proc.returncode}")
        try:
            if httpx.get(f"{base}/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"hub at {base} not healthy after {timeout} s")


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
    return proc.returncode
