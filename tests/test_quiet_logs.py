"""What users read in the logs: no traceback for an ordinary client disconnect, no progress bar
when the local model loads."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import anyio
import pytest

from mcp_memory_server.hub.app import QuietDisconnects
from tests.conftest import Hub, call
from tests.hub_sessions import http_session

pytestmark = pytest.mark.anyio


async def test_a_client_disconnect_logs_no_error(hub: Hub, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with anyio.fail_after(60):
        for _ in range(3):
            async with http_session(hub.url) as session:
                await call(session, "remember", content="a client that leaves after one call")
        await anyio.sleep(0.5)  # the hub notices the closed streams
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]


def _record(message: str, error: BaseException) -> logging.LogRecord:
    try:
        raise error
    except BaseException:
        return logging.LogRecord("mcp.server.streamable_http", logging.ERROR, __file__, 1, message, None,
                                 sys.exc_info())


def test_only_the_sdks_harmless_records_are_quieted() -> None:
    quiet = QuietDisconnects()
    assert not quiet.filter(_record("Error in standalone SSE writer", anyio.ClosedResourceError()))
    assert quiet.filter(_record("Error in standalone SSE writer", RuntimeError("a real failure")))
    assert quiet.filter(_record("Error in standalone SSE response", anyio.ClosedResourceError()))
    assert quiet.filter(_record("Error handling POST request", ValueError("x")))
    stateless = logging.LogRecord("mcp.server.streamable_http", logging.INFO, __file__, 1, "Terminating session: %s",
                                  (None,), None)
    assert not quiet.filter(stateless)  # after every request of a stateless hub
    assert quiet.filter(logging.LogRecord("mcp.server.streamable_http", logging.INFO, __file__, 1,
                                          "Terminating session: %s", ("4f0c",), None))


def test_loading_the_local_model_draws_no_progress_bar() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TQDM_", "TRANSFORMERS_"))}
    code = "from mcp_memory_server.embeddings import LocalEmbedder; LocalEmbedder().warm_up(); print('loaded')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert done.stdout.strip() == "loaded", done.stderr
    assert "Loading weights" not in done.stderr and "it/s" not in done.stderr, done.stderr
