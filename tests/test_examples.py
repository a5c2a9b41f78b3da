"""The client configurations in examples/clients work as written."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from mcp_memory_server.config import Settings
from tests.conftest import call
from tests.procs import hub_process, server_env

pytestmark = pytest.mark.anyio

CLIENTS = Path(__file__).resolve().parents[1] / "examples" / "clients"
DEFAULT_HUB = f"http://{Settings.model_fields['memory_host'].default}:{Settings.model_fields['memory_port'].default}/mcp"


def entries() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(CLIENTS.glob("*.json")):
        config = json.loads(path.read_text())
        servers = config.get("mcpServers") or config.get("servers")
        assert servers and "shared-memory" in servers, path.name
        found.append((path.name, servers["shared-memory"]))
    return found


def test_every_example_names_the_server_and_the_default_hub_url() -> None:
    configs = entries()
    assert len(configs) >= 6
    for name, entry in configs:
        if "url" in entry:
            assert entry["url"] == DEFAULT_HUB, name
        else:
            assert entry["command"] == "mcp-memory-server" and entry["args"] == ["serve", "--transport", "stdio"]
            assert entry.get("env", {}).get("MEMORY_HUB_URL", DEFAULT_HUB) == DEFAULT_HUB, name
    # the console script the configs launch is installed next to this interpreter
    assert shutil.which("mcp-memory-server", path=str(Path(sys.executable).parent))


async def test_stdio_examples_serve_as_written(tmp_path: Path) -> None:
    """Each stdio config is launched with its own command, args and env (only the store path and the
    hub port are pointed at this test's), and remembers and recalls through the one hub."""
    db = tmp_path / "examples.db"
    bin_dir = str(Path(sys.executable).parent)
    with hub_process(db, tmp_path) as (base, _), anyio.fail_after(180):
        for name, entry in entries():
            if "command" not in entry:
                continue
            env = server_env(db, **entry.get("env", {}))
            env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
            if "MEMORY_HUB_URL" in env:
                env["MEMORY_HUB_URL"] = env["MEMORY_HUB_URL"].replace(DEFAULT_HUB.rsplit("/", 1)[0], base)
            command = shutil.which(entry["command"], path=bin_dir)
            assert command is not None
            params = StdioServerParameters(command=command, args=entry["args"], env=env, cwd=str(tmp_path))
            async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
                await session.initialize()
                stored = await call(session, "remember", content=f"configured by {name}")
                hits = (await call(session, "recall", query=f"configured by {name}", mode="keyword"))["hits"]
                assert stored["id"] in [h["id"] for h in hits], name
