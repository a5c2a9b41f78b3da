"""Long life: after a long idle period, sessions opened before it, new sessions, a joined stdio
server's hub client and /health all still work. `make test` idles 125 s (marker `idle`, run it
alone with `pytest -m idle`); `make soak` idles SOAK_IDLE_SECONDS (default 1800)."""

from __future__ import annotations

import os

import anyio
import httpx
import pytest

from mcp_memory_server.config import Settings
from mcp_memory_server.hub.client import HubClient
from mcp_memory_server.models import RecallIn
from tests.conftest import call
from tests.hub_sessions import ADMIN, ALPHA, auth_hub, bearer, http_session, sse_session

pytestmark = pytest.mark.anyio


async def idle_then_use(settings: Settings, idle_seconds: float) -> None:
    with auth_hub(settings) as hub:
        async with http_session(hub.url, ALPHA) as streamable, sse_session(hub.sse_url, ALPHA) as sse:
            before = await call(streamable, "remember", content="written before the idle hours",
                                community="team-alpha")
            await anyio.sleep(idle_seconds)  # the point of the test: nobody talks to the hub meanwhile
            with anyio.fail_after(60):
                for session in (streamable, sse):
                    hits = (await call(session, "recall", query="idle hours", community="team-alpha"))["hits"]
                    assert [h["id"] for h in hits] == [before["id"]]
                async with http_session(hub.url, ALPHA) as fresh:
                    await call(fresh, "remember", content="written after the idle hours", community="team-alpha")
                recalled = await HubClient(hub.url, ALPHA).recall(RecallIn(query="after the idle",
                                                                           community="team-alpha"))
                assert recalled.hits[0].content == "written after the idle hours"
                async with httpx.AsyncClient(timeout=30) as http:
                    health = (await http.get(f"{hub.base}/health", headers=bearer(ADMIN))).json()
                assert health["ok"] and health["store"]["rows"] == 2


@pytest.mark.idle
async def test_hub_serves_old_and_new_sessions_after_two_minutes_idle(settings: Settings) -> None:
    await idle_then_use(settings, 125)


@pytest.mark.soak
async def test_hub_serves_old_and_new_sessions_after_a_long_idle(settings: Settings) -> None:
    await idle_then_use(settings, float(os.environ.get("SOAK_IDLE_SECONDS", "1800")))
