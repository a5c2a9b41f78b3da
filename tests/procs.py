"""Launching the real server as a subprocess, as MCP clients and users do."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mcp import StdioServerParameters

from mcp_memory_server.hub import launch
from mcp_memory_server.hub.launch import SERVER, free_port


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
    with launch.hub_process(server_env(db, **extra), log or cwd / f"hub-{port}.log", port=port, transport=transport,
                            cwd=cwd, timeout=timeout) as running:
        yield running


# Milvus Lite's own gRPC server in its own process: a Milvus server on a loopback port, to the store.
SERVE = ("import sys, time\n"
         "from milvus_lite.adapter.grpc.server import start_server_in_thread\n"
         "server = start_server_in_thread(sys.argv[1], '127.0.0.1', int(sys.argv[2]))\n"
         "print('ready', flush=True)\n"
         "time.sleep(600)\n")  # stops by itself if a test leaves it behind


@contextmanager
def milvus_server(data: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", SERVE, str(data), str(port)], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        yield proc
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
