"""The real server, launched as users launch it, reached by the SDK's own clients over stdio, SSE
and streamable HTTP; and the shared hub with many clients at once."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import anyio
import pytest
from mcp import ClientSession
from mcp.client.sse import sse_client
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from mcp_memory_server import __version__
from tests.conftest import Hub, call, call_error, free_port
from tests.procs import SERVER, hub_process, server_env, stdio_params

pytestmark = pytest.mark.anyio


async def test_stdio_server_owns_its_store_when_no_hub_runs(tmp_path: Path) -> None:
    with anyio.fail_after(120):
        async with (stdio_client(stdio_params(tmp_path / "own.db", tmp_path)) as (read, write),
                    ClientSession(read, write) as session):
            info = (await session.initialize()).serverInfo
            assert (info.name, info.version) == ("shared-memory", __version__)  # this package's, not the SDK's
            stored = await call(session, "remember", content="stdio servers can own the store", community="solo")
            hits = (await call(session, "recall", query="who owns the store?", community="solo"))["hits"]
            assert hits[0]["id"] == stored["id"]
            assert (await call(session, "stats"))["store_uri"] == str(tmp_path / "own.db")


async def test_hub_serves_streamable_http_and_sse_at_once(tmp_path: Path) -> None:
    with hub_process(tmp_path / "hub.db", tmp_path) as (base, _), anyio.fail_after(120):
        async with (streamable_http_client(f"{base}/mcp") as (read, write, _),
                    ClientSession(read, write) as http_session):
            await http_session.initialize()
            stored = await call(http_session, "remember", content="written over streamable HTTP")
        async with sse_client(f"{base}/sse") as (read, write), ClientSession(read, write) as sse_session:
            await sse_session.initialize()
            hits = (await call(sse_session, "recall", query="streamable HTTP"))["hits"]
            assert hits[0]["id"] == stored["id"]
            assert "holds no memories" in await call_error(sse_session, "recall", query="x", community="nowhere")


async def test_hub_and_two_stdio_one_sse_one_http_client_share_one_memory(tmp_path: Path) -> None:
    """Every client's remember is found by every other client's recall, all connected at once."""
    db = tmp_path / "shared.db"
    with hub_process(db, tmp_path) as (base, hub), anyio.fail_after(240):
        async with (
            # one stdio server told where the hub is, one that finds the hub advertised beside the db
            stdio_client(stdio_params(db, tmp_path, MEMORY_HUB_URL=f"{base}/mcp")) as (r1, w1),
            stdio_client(stdio_params(db, tmp_path)) as (r2, w2),
            sse_client(f"{base}/sse") as (r3, w3),
            streamable_http_client(f"{base}/mcp") as (r4, w4, _),
            ClientSession(r1, w1) as stdio_a, ClientSession(r2, w2) as stdio_b,
            ClientSession(r3, w3) as sse, ClientSession(r4, w4) as http,
        ):
            clients = {"stdio-a": stdio_a, "stdio-b": stdio_b, "sse": sse, "http": http}
            async with anyio.create_task_group() as tasks:
                for session in clients.values():
                    tasks.start_soon(session.initialize)
            facts = {name: f"The {name} client's favourite number is {i * 7 + 3}." for i, name in enumerate(clients)}
            ids: dict[str, str] = {}

            async def remember(name: str) -> None:
                ids[name] = (await call(clients[name], "remember", content=facts[name], community="shared",
                                        agent_id=name))["id"]

            async with anyio.create_task_group() as tasks:
                for name in clients:
                    tasks.start_soon(remember, name)
            for reader, session in clients.items():
                for writer in facts:
                    hits = (await call(session, "recall", query=f"the {writer} client's favourite number",
                                       community="shared", k=4))["hits"]
                    assert ids[writer] in [h["id"] for h in hits], f"{reader} cannot see {writer}'s memory"
            assert (await call(stdio_b, "stats"))["total"] == 4
        assert hub.poll() is None, "the hub died"
    log = "\n".join(p.read_text() for p in tmp_path.glob("hub-*.log"))
    assert "LOCK" not in log and "locked" not in log.lower()


async def test_stdio_server_told_to_join_a_dead_hub_reports_it_and_keeps_serving(tmp_path: Path) -> None:
    params = stdio_params(tmp_path / "x.db", tmp_path, MEMORY_HUB_URL="http://127.0.0.1:9/mcp")
    with anyio.fail_after(60):
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            for _ in range(2):
                message = await call_error(session, "recall", query="anything")
                assert "memory hub at http://127.0.0.1:9/mcp did not answer" in message
            assert {t.name for t in (await session.list_tools()).tools} >= {"remember", "recall"}


def test_stdout_carries_only_the_protocol_in_stdio_mode(tmp_path: Path) -> None:
    requests = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize",
         "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                    "clientInfo": {"name": "raw", "version": "0"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
         "params": {"name": "remember", "arguments": {"content": "raw stdio check"}}},
        {"jsonrpc": "2.0", "id": 4, "method": "tools/call",
         "params": {"name": "recall", "arguments": {"query": ""}}},
    ]
    stdin = "".join(json.dumps(r) + "\n" for r in requests)
    proc = subprocess.Popen([*SERVER, "serve", "--transport", "stdio"], env=server_env(tmp_path / "raw.db"),
                            cwd=tmp_path, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(stdin.encode())
    proc.stdin.flush()
    answers: dict[int, dict[str, object]] = {}
    try:
        while len(answers) < 4:
            line = proc.stdout.readline()
            assert line, f"server closed stdout early: {proc.stderr.read().decode() if proc.stderr else ''}"
            message = json.loads(line)  # every stdout line is a JSON-RPC message
            assert message["jsonrpc"] == "2.0"
            if "id" in message:
                answers[message["id"]] = message
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
        proc.stdout.close()
        if proc.stderr is not None:
            proc.stderr.close()
    assert answers[3]["result"]["isError"] is False  # type: ignore[index]
    assert answers[4]["result"]["isError"] is True  # type: ignore[index]


async def test_a_stdio_client_keeps_working_across_a_hub_restart(tmp_path: Path) -> None:
    db, port = tmp_path / "restart.db", free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    with anyio.fail_after(240):
        async with (stdio_client(stdio_params(db, tmp_path, MEMORY_HUB_URL=url)) as (read, write),
                    ClientSession(read, write) as session):
            await session.initialize()
            with hub_process(db, tmp_path, port=port):
                first = await call(session, "remember", content="written before the restart")
            assert "did not answer" in await call_error(session, "recall", query="restart")
            with hub_process(db, tmp_path, port=port):
                hits = (await call(session, "recall", query="written before the restart"))["hits"]
                assert hits[0]["id"] == first["id"]
                await call(session, "remember", content="written after the restart")
                assert (await call(session, "stats"))["total"] == 2


def test_version_prints_the_package_version() -> None:
    done = subprocess.run([*SERVER, "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == f"mcp-memory-server {__version__}"


async def test_a_joined_stdio_server_applies_its_own_default_community(hub: Hub, tmp_path: Path) -> None:
    own = stdio_params(tmp_path / "unused.db", tmp_path, MEMORY_HUB_URL=hub.url, MEMORY_DEFAULT_COMMUNITY="team-x")
    plain = stdio_params(tmp_path / "unused.db", tmp_path, MEMORY_HUB_URL=hub.url)
    with anyio.fail_after(180):
        async with (stdio_client(own) as (r1, w1), ClientSession(r1, w1) as team_x,
                    stdio_client(plain) as (r2, w2), ClientSession(r2, w2) as default):
            await team_x.initialize()
            await default.initialize()
            # nothing in team-x yet: an empty answer, as for a server's own default (not "holds no memories")
            assert (await call(team_x, "recall", query="standup"))["hits"] == []
            assert (await call(team_x, "route", question="who knows the standup?"))["experts"] == []
            stored = await call(team_x, "remember", content="team x holds its standup at 9:15")
            assert stored["community"] == "team-x"
            many = await call(team_x, "remember_many", memories=[{"content": "team x ships on Thursdays"},
                                                                 {"content": "elsewhere", "community": "other"}])
            assert [r["community"] for r in many["results"]] == ["team-x", "other"]
            found = await call(team_x, "recall", query="when is the standup?")
            assert found["communities"] == ["team-x"] and found["hits"][0]["id"] == stored["id"]
            # the server without its own setting gets the hub's default
            assert (await call(default, "remember", content="written to the hub's default"))["community"] == "default"
            assert (await call(default, "recall", query="standup"))["communities"] == ["default"]
            assert (await call(team_x, "forget", kinds=["note"]))["deleted"] == 2
