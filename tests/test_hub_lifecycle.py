"""The hub process from start to stop, as users run it: a busy port or invalid settings are one
line and exit status 2; a hub that cannot open its store exits 1, advertises nothing and leaves
the running hub's advert alone; SIGTERM answers the calls in flight and exits 0 within seconds;
a joined stdio server's call fails within seconds when the hub dies or hangs."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

import anyio
import httpx
import pytest
from mcp import ClientSession
from mcp.client.stdio import stdio_client

from mcp_memory_server.cli import main
from mcp_memory_server.hub.advert import advert_path
from mcp_memory_server.hub.launch import free_port
from tests.conftest import call, call_error
from tests.hub_sessions import http_session, sse_session
from tests.procs import SERVER, hub_process, server_env, stdio_params

pytestmark = pytest.mark.anyio

LONG = "a long text about harbours, ledgers and granite quarries, written for a test of the embedder " * 85


def serve(db: Path, cwd: Path, *args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    """`mcp-memory-server serve --transport streamable-http ARGS` to completion (killed after `timeout`)."""
    return subprocess.run([*SERVER, "serve", "--transport", "streamable-http", *args], env=server_env(db, **env),
                          cwd=cwd, capture_output=True, text=True, timeout=timeout)


def errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:") or "Traceback" in line]


# -- a hub that cannot serve -------------------------------------------------------------------

def test_a_busy_port_is_one_line_and_exit_status_2_before_the_store_opens(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = serve(tmp_path / "memory.db", tmp_path, "--port", str(port))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: cannot listen on 127.0.0.1:{port}: Address already in use. Another process (another hub?) uses "
        "that port: stop it, or choose another port with --port or MEMORY_PORT."]
    assert not (tmp_path / "memory.db").exists()


@pytest.mark.parametrize(("variable", "value", "expected"), [
    ("MEMORY_INDEX_TYPE", "DISKANN",
     "error: MEMORY_INDEX_TYPE=DISKANN is not allowed: use one of HNSW, FLAT, IVF_FLAT, IVF_SQ8 or AUTOINDEX"),
    ("EMBEDDING_PROVIDER", "cohere", "error: EMBEDDING_PROVIDER=cohere is not allowed: use one of local or openai"),
    ("MEMORY_PORT", "abc", "error: MEMORY_PORT=abc is not allowed: it must be a valid integer"),
    ("MEMORY_DEFAULT_COMMUNITY", "bad name!", "error: MEMORY_DEFAULT_COMMUNITY must match"),
    ("MEMORY_MAX_K", "0", "error: MEMORY_MAX_K=0 is not allowed: it must be greater than or equal to 1"),
])
@pytest.mark.parametrize("command", [["doctor"], ["stats"], ["serve", "--transport", "streamable-http"],
                                     ["serve", "--transport", "stdio"]])
def test_an_invalid_setting_is_one_line_naming_it_and_exit_status_2(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        variable: str, value: str, expected: str, command: list[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MILVUS_URI", str(tmp_path / "memory.db"))
    monkeypatch.setenv(variable, value)
    assert main(command) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith(expected), err


def test_doctor_run_as_a_command_reports_an_invalid_setting_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run([*SERVER, "doctor"], env=server_env(tmp_path / "memory.db", MEMORY_INDEX_TYPE="DISKANN"),
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == ["error: MEMORY_INDEX_TYPE=DISKANN is not allowed: use one of HNSW, FLAT, "
                                        "IVF_FLAT, IVF_SQ8 or AUTOINDEX"]


def test_a_second_hub_on_a_served_database_exits_1_names_the_running_hub_and_leaves_its_advert(
        tmp_path: Path) -> None:
    db = tmp_path / "memory.db"
    with hub_process(db, tmp_path) as (base, running):
        advert = advert_path(str(db)).read_text()
        second = serve(db, tmp_path, "--port", str(free_port()))
        assert second.returncode == 1
        assert errors(second.stderr) == [f"error: a hub already serves {db} at {base}/mcp: connect clients to that "
                                         "hub, or stop it before starting another"]
        assert "hub ready" not in second.stderr
        assert advert_path(str(db)).read_text() == advert
        assert httpx.get(f"{base}/health", timeout=30).status_code == 200 and running.poll() is None


async def test_a_hub_on_a_database_a_stdio_server_owns_exits_1_advertises_nothing_and_says_what_to_do(
        tmp_path: Path) -> None:
    db = tmp_path / "memory.db"
    with anyio.fail_after(240):
        async with (stdio_client(stdio_params(db, tmp_path)) as (read, write), ClientSession(read, write) as session):
            await session.initialize()
            await call(session, "remember", content="the stdio server owns the store")
            hub = await anyio.to_thread.run_sync(lambda: serve(db, tmp_path, "--port", str(free_port())))
            assert hub.returncode == 1
            assert errors(hub.stderr) == [
                f"error: {db} is open in another process, probably a stdio server that an MCP client (Claude "
                "Desktop, VS Code, Cursor) started before the hub: quit that client, start the hub, then the client "
                "again (its stdio server then joins the hub)"]
            assert not advert_path(str(db)).exists()
            assert (await call(session, "stats"))["total"] == 1


# -- stopping ------------------------------------------------------------------------------------

async def test_sigterm_answers_the_call_in_flight_and_exits_0_within_four_seconds(tmp_path: Path) -> None:
    db = tmp_path / "memory.db"
    with hub_process(db, tmp_path) as (base, hub), anyio.fail_after(120):
        async with http_session(f"{base}/mcp") as session, sse_session(f"{base}/sse") as idle:
            await call(idle, "recall", query="loads the model")
            # A call of about 1.5 s of model time on this host, whatever its speed.
            started = time.monotonic()
            await call(session, "remember_many", memories=[{"content": f"{i} {LONG}"} for i in range(2)])
            per_text = (time.monotonic() - started) / 2
            n = max(2, min(64, int(1.5 / per_text)))
            answered: dict[str, float] = {}

            async def slow_call() -> None:
                done = await call(session, "remember_many", memories=[{"content": f"in flight {i} {LONG}"}
                                                                      for i in range(n)])
                answered["at"] = time.monotonic()
                answered["stored"] = done["stored"]

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(slow_call)
                await anyio.sleep(n * per_text / 3)  # the hub cannot tell us when the call reached the model
                signalled = time.monotonic()
                hub.send_signal(signal.SIGTERM)
            await anyio.to_thread.run_sync(hub.wait, 30)
            exited = time.monotonic()
    print(f"\n{n} texts in flight; answered {answered['at'] - signalled:.2f} s and exited "
          f"{exited - signalled:.2f} s after SIGTERM")
    assert answered["stored"] == n and answered["at"] > signalled
    assert hub.returncode == 0 and exited - signalled < 4.5
    assert not advert_path(str(db)).exists()


async def test_sigterm_exits_within_seconds_even_when_a_call_would_run_much_longer(tmp_path: Path) -> None:
    db = tmp_path / "memory.db"
    with hub_process(db, tmp_path) as (base, hub), anyio.fail_after(120):
        async with http_session(f"{base}/mcp") as session:
            await call(session, "recall", query="loads the model")
            failed: list[str] = []

            async def long_call() -> None:
                try:
                    await session.call_tool("remember_many", {"memories": [{"content": f"{i} {LONG}"}
                                                                           for i in range(200)]})
                except Exception as exc:  # the hub stopped under the call: the client says so one way or another
                    failed.append(type(exc).__name__)

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(long_call)
                await anyio.sleep(1.0)
                signalled = time.monotonic()
                hub.send_signal(signal.SIGTERM)
                await anyio.to_thread.run_sync(hub.wait, 60)
                exited = time.monotonic()
                tasks.cancel_scope.cancel()
    print(f"\nexited {exited - signalled:.2f} s after SIGTERM with a long call in flight")
    assert hub.returncode == 0 and exited - signalled < 6.0


# -- a joined stdio server when the hub dies or hangs --------------------------------------------

async def test_a_joined_stdio_servers_call_fails_within_seconds_when_the_hub_dies_mid_call(tmp_path: Path) -> None:
    db = tmp_path / "memory.db"
    with hub_process(db, tmp_path) as (base, hub), anyio.fail_after(180):
        async with (stdio_client(stdio_params(db, tmp_path, MEMORY_HUB_URL=f"{base}/mcp")) as (read, write),
                    ClientSession(read, write) as session):
            await session.initialize()
            await call(session, "recall", query="loads the model")
            outcome: dict[str, object] = {}

            async def long_call() -> None:
                outcome["error"] = await call_error(session, "remember_many", memories=[
                    {"content": f"{i} {LONG}"} for i in range(100)])
                outcome["at"] = time.monotonic()

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(long_call)
                await anyio.sleep(1.0)
                killed = time.monotonic()
                hub.kill()
    took = float(outcome["at"]) - killed  # type: ignore[arg-type]
    print(f"\nthe call failed {took:.2f} s after the hub died")
    assert f"the memory hub at {base}/mcp did not answer" in str(outcome["error"])
    assert took < 10.0


async def test_a_joined_stdio_servers_call_to_a_hung_hub_fails_after_memory_hub_timeout(tmp_path: Path) -> None:
    db = tmp_path / "memory.db"
    with hub_process(db, tmp_path) as (base, hub), anyio.fail_after(180):
        async with http_session(f"{base}/mcp") as warm:
            await call(warm, "recall", query="loads the model")  # so that no call below takes 3 s
        params = stdio_params(db, tmp_path, MEMORY_HUB_URL=f"{base}/mcp", MEMORY_HUB_TIMEOUT="3")
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            await call(session, "remember", content="written before the hub hung")
            hub.send_signal(signal.SIGSTOP)
            try:
                started = time.monotonic()
                message = await call_error(session, "recall", query="written before")
                took = time.monotonic() - started
            finally:
                hub.send_signal(signal.SIGCONT)
    print(f"\nthe call to the hung hub failed after {took:.2f} s")
    assert "did not answer within 3 s (MEMORY_HUB_TIMEOUT)" in message
    assert 2.5 < took < 8.0
