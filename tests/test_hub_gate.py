"""What the hub's HTTP gate refuses, and how: malformed bodies (400, never a 500 with a traceback),
requests and sessions over a token's limits (429), and clients that expect OAuth (told there is
none, so they ask their user for a header instead of starting a login)."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import httpx
import pytest
from mcp import ClientSession
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

from mcp_memory_server.config import Settings
from mcp_memory_server.errors import ERROR_META_KEY, RateLimited
from mcp_memory_server.hub.auth import hub_middleware
from mcp_memory_server.hub.client import HubClient
from mcp_memory_server.hub.ratelimit import SessionLimiter
from mcp_memory_server.hub.tokens import Tokens
from tests.conftest import Hub, call, running_hub
from tests.hub_sessions import (
    ADMIN,
    ALPHA,
    BETA,
    GRANTS,
    auth_hub,
    auth_middleware,
    bearer,
    http_session,
    sse_session,
)

pytestmark = pytest.mark.anyio

INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
MALFORMED = [
    (b'{"jsonrpc": "2.0", "id": 1, "method": "tools/list", "x": "\xff\xfe"}', "not valid UTF-8"),
    (b"[" * 1200 + b"]" * 1200, "nested deeper than 64 levels"),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"a": ' + b"[" * 100 + b"]" * 100 + b"}}",
     "nested deeper than 64 levels"),
    (b'{"jsonrpc": "2.0", "id": ' + b"7" * 5000 + b', "method": "tools/list"}', "more than 4300 digits"),
    (b'{"jsonrpc": "2.0", "id": 1, "method": ', "Parse error"),
]


@pytest.fixture
def hub(settings: Settings) -> Iterator[Hub]:
    with auth_hub(settings) as running:
        yield running


@pytest.mark.parametrize("body, reason", MALFORMED, ids=["utf8", "deep", "deep-params", "digits", "truncated"])
async def test_a_malformed_body_is_a_400_with_the_reason_on_every_endpoint(hub: Hub, body: bytes, reason: str) -> None:
    async with httpx.AsyncClient(base_url=hub.base, headers={**MCP_HEADERS, **bearer(ALPHA)}, timeout=30) as http:
        for path in ("/mcp", "/messages/?session_id=0123456789abcdef0123456789abcdef"):
            response = await http.post(path, content=body)
            assert response.status_code == 400, (path, response.status_code, response.text[:300])
            error = response.json()["error"]
            assert reason in error["message"] and error["code"] == -32700
        assert (await http.post("/mcp", json=INIT)).status_code == 200  # and the hub keeps serving


async def test_a_body_under_max_request_bytes_reaches_the_tool_even_over_the_sdks_4_mib(hub: Hub) -> None:
    memories = [{"content": f"{i} " + "w" * 7990} for i in range(600)]  # ~4.9 MB: over the SDK's default cap
    async with httpx.AsyncClient(base_url=hub.base, headers={**MCP_HEADERS, **bearer(ALPHA)}, timeout=60) as http:
        session = {"mcp-session-id": (await http.post("/mcp", json=INIT)).headers["mcp-session-id"]}
        called = await http.post("/mcp", headers=session, json={
            "jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "remember_many", "arguments": {"memories": memories}}})
    assert called.status_code == 200 and "600 memories in one call, the limit is 512" in called.text


async def test_a_malformed_body_is_a_400_on_a_hub_without_tokens(settings: Settings) -> None:
    with running_hub(settings, middleware=hub_middleware(Tokens())) as hub:  # as `serve` runs it
        async with httpx.AsyncClient(base_url=hub.base, headers=MCP_HEADERS, timeout=30) as http:
            for body, reason in MALFORMED:
                response = await http.post("/mcp", content=body)
                assert response.status_code == 400 and reason in response.json()["error"]["message"]


async def test_every_request_counts_against_the_rate_limit_and_tool_calls_get_a_tool_error(
        settings: Settings) -> None:
    grants = {"tokens": {ALPHA: {"agent_id": "batch", "communities": "*", "rate_limit": 6, "burst": 4},
                         BETA: {"agent_id": "interactive", "communities": "*"}}}
    with auth_hub(settings, grants) as hub:
        async with httpx.AsyncClient(base_url=hub.base, headers={**MCP_HEADERS, **bearer(ALPHA)}, timeout=30) as http:
            opened = await http.post("/mcp", json=INIT)  # 1
            assert opened.status_code == 200
            session = {"mcp-session-id": opened.headers["mcp-session-id"]}
            listed = [await http.post("/mcp", json={"jsonrpc": "2.0", "id": i, "method": "tools/list"}, headers=session)
                      for i in range(2, 6)]  # 2, 3, 4 pass; 5 is over the burst of 4
            assert [r.status_code for r in listed] == [200, 200, 200, 429]
            assert "rate limit reached for agent 'batch'" in listed[-1].json()["error"]["message"]
            assert 1 <= int(listed[-1].headers["retry-after"]) <= 10
            assert (await http.post("/mcp", json=INIT)).status_code == 429  # opening a session counts too
            called = await http.post("/mcp", headers=session, json={
                "jsonrpc": "2.0", "id": 9, "method": "tools/call",
                "params": {"name": "remember", "arguments": {"content": "one too many"}}})
            assert called.status_code == 200 and '"isError":true' in called.text and "rate limit" in called.text
        async with http_session(hub.url, BETA) as interactive:  # another token is not held back
            hits = (await call(interactive, "recall", query="one too many", mode="keyword"))["hits"]
            assert "one too many" not in [h["content"] for h in hits]


async def test_a_token_may_hold_only_so_many_sessions_and_others_still_get_theirs(settings: Settings) -> None:
    with running_hub(settings, middleware=auth_middleware(GRANTS, sessions_per_token=2)) as hub, \
            anyio.fail_after(120):
        async with http_session(hub.url, ALPHA) as first, http_session(hub.url, ALPHA):
            async with httpx.AsyncClient(base_url=hub.base, headers=MCP_HEADERS, timeout=30) as http:
                third = await http.post("/mcp", json=INIT, headers=bearer(ALPHA))
                assert third.status_code == 429 and "2 MCP sessions open" in third.json()["error"]["message"]
                assert (await http.get("/sse", headers=bearer(ALPHA))).status_code == 429  # SSE sessions count too
                assert (await http.post("/mcp", json=INIT, headers=bearer(BETA))).status_code == 200
            with pytest.raises(RateLimited, match="HTTP 429"):  # a Python client is told so, not "did not answer"
                await HubClient(hub.url, ALPHA).stats()
            await call(first, "remember", content="the open sessions keep working", community="team-alpha")
        # both closed (the client deletes its session on exit): room again
        for _ in range(2):
            async with http_session(hub.url, ALPHA) as again:
                assert (await call(again, "recall", query="open sessions", community="team-alpha"))["hits"]


async def test_a_session_the_hub_no_longer_knows_frees_its_place(settings: Settings) -> None:
    with running_hub(settings, middleware=auth_middleware(GRANTS, sessions_per_token=1)) as hub:
        async with httpx.AsyncClient(base_url=hub.base, headers={**MCP_HEADERS, **bearer(ALPHA)}, timeout=30) as http:
            session = {"mcp-session-id": (await http.post("/mcp", json=INIT)).headers["mcp-session-id"]}
            assert (await http.post("/mcp", json=INIT)).status_code == 429
            assert (await http.delete("/mcp", headers=session)).status_code == 200
            assert (await http.post("/mcp", json=INIT)).status_code == 200


@pytest.mark.parametrize("path", ["/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp",
                                  "/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"])
async def test_the_hub_says_it_publishes_no_oauth_metadata(hub: Hub, path: str) -> None:
    async with httpx.AsyncClient(base_url=hub.base, timeout=30) as http:
        response = await http.get(path)
    assert response.status_code == 404  # RFC 9728 / RFC 8414: no metadata here (was 401: "protected")
    assert "does not use OAuth" in response.json()["error_description"]


async def test_the_401_asks_for_a_bearer_header_and_points_at_no_oauth_metadata(hub: Hub) -> None:
    async with httpx.AsyncClient(base_url=hub.base, headers=MCP_HEADERS, timeout=30) as http:
        missing = await http.post("/mcp", json=INIT)
        wrong = await http.post("/mcp", json=INIT, headers=bearer("wrong-token-0123456789abcdef"))
    for response in (missing, wrong):
        assert response.status_code == 401
        challenge = response.headers["www-authenticate"]
        assert challenge.startswith("Bearer ") and "resource_metadata" not in challenge
        assert "Authorization header" in response.json()["error"]["message"]
    assert 'error="invalid_token"' in wrong.headers["www-authenticate"]


class _Memory:
    def __init__(self, client: OAuthClientInformationFull | None = None) -> None:
        self.client = client

    async def get_tokens(self) -> OAuthToken | None:
        return None

    async def set_tokens(self, tokens: OAuthToken) -> None:
        raise AssertionError("no token can come out of a hub without OAuth")

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


async def test_an_oauth_capable_sdk_client_never_starts_a_login_and_works_with_the_header(hub: Hub) -> None:
    redirected: list[str] = []
    seen: list[tuple[str, int]] = []

    async def redirect(url: str) -> None:  # the interactive step: a browser would open here
        redirected.append(url)

    async def callback() -> tuple[str, str | None]:
        raise AssertionError("no login to wait for")

    async def record(response: httpx.Response) -> None:
        seen.append((response.request.url.path, response.status_code))

    oauth = OAuthClientProvider(hub.url, OAuthClientMetadata(redirect_uris=["http://127.0.0.1:1/callback"]),
                                _Memory(), redirect_handler=redirect, callback_handler=callback, timeout=10)
    with anyio.fail_after(60):
        with pytest.raises(BaseException):  # noqa: B017 - the SDK raises a group or an OAuth error
            async with (httpx.AsyncClient(auth=oauth, event_hooks={"response": [record]}, timeout=30) as http,
                        streamable_http_client(hub.url, http_client=http) as (read, write, _),
                        ClientSession(read, write) as session):
                await session.initialize()
    assert redirected == []  # no login was started
    discovery = [(path, status) for path, status in seen if path.startswith("/.well-known/")]
    assert discovery and all(status == 404 for _, status in discovery), seen
    async with http_session(hub.url, ADMIN) as session:  # the same client with the header it needs
        assert (await call(session, "stats"))["total"] == 0


def test_an_idle_session_stops_counting_when_the_sdk_would_end_it() -> None:
    now = [0.0]
    sessions = SessionLimiter(limit=1, idle_seconds=60, clock=lambda: now[0])
    sessions.reserve("k", "alice")
    sessions.opened("k", "s1")
    sessions.started("k", "s1")  # a long request (a GET stream) keeps it alive
    now[0] = 600
    with pytest.raises(RateLimited) as refused:
        sessions.reserve("k", "alice")
    assert "1 MCP sessions open" in str(refused.value)
    sessions.ended("k", "s1")
    now[0] = 659
    with pytest.raises(RateLimited) as refused:
        sessions.reserve("k", "alice")
    assert refused.value.retry_after == pytest.approx(1.0)
    now[0] = 660  # idle for the SDK's idle timeout: gone
    sessions.reserve("k", "alice")


async def test_over_sse_too_a_tool_call_over_the_rate_limit_is_a_tool_error(settings: Settings) -> None:
    grants = {"tokens": {ALPHA: {"agent_id": "batch", "communities": "*", "rate_limit": 6, "burst": 6}}}
    with auth_hub(settings, grants) as hub, anyio.fail_after(60):
        async with sse_session(hub.sse_url, ALPHA) as session:
            results = [await session.call_tool("stats", {}) for _ in range(6)]
    assert not results[0].isError and results[-1].isError  # the session's own requests took part of the burst
    assert (results[-1].meta or {})[ERROR_META_KEY]["type"] == "RateLimited"
