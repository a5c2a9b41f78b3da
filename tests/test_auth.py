"""Bearer tokens, community grants, identity and rate limits on the HTTP hub (both transports)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from mcp_memory_server.cli import main
from mcp_memory_server.config import Settings
from mcp_memory_server.errors import ConfigError, Forbidden, HubUnavailable, RateLimited
from mcp_memory_server.hub.auth import hub_middleware
from mcp_memory_server.hub.client import HubClient
from mcp_memory_server.hub.ratelimit import RateLimiter
from mcp_memory_server.hub.tokens import Tokens, digest, parse_grants
from mcp_memory_server.models import MemoryIn, RecallIn
from tests.conftest import Hub, call, call_error, error_text
from tests.hub_sessions import ADMIN, ALPHA, BETA, auth_hub, bearer, http_session, sse_session

pytestmark = pytest.mark.anyio

INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@pytest.fixture
def hub(settings: Settings) -> Iterator[Hub]:
    with auth_hub(settings) as running:
        yield running


@pytest.mark.parametrize("token", [None, "wrong-token-0123456789abcdef", ""])
async def test_every_mcp_endpoint_answers_401_without_a_valid_token(hub: Hub, token: str | None) -> None:
    headers = {**MCP_HEADERS, **bearer(token)} if token is not None else dict(MCP_HEADERS)
    if token == "":
        headers["Authorization"] = "Basic YWxpY2U6c2VjcmV0"
    async with httpx.AsyncClient(base_url=hub.base, headers=headers, timeout=10) as http:
        for method, path in [("POST", "/mcp"), ("GET", "/mcp"), ("GET", "/sse"),
                             ("POST", "/messages/?session_id=0123"), ("GET", "/anything")]:
            response = await http.request(method, path, json=INIT if method == "POST" else None)
            assert response.status_code == 401, (method, path, response.status_code)
            assert response.headers["www-authenticate"].startswith("Bearer")


async def test_a_valid_token_opens_a_session(hub: Hub) -> None:
    async with httpx.AsyncClient(base_url=hub.base, headers={**MCP_HEADERS, **bearer(ALPHA)}, timeout=30) as http:
        response = await http.post("/mcp", json=INIT)
    assert response.status_code == 200


async def test_health_is_public_but_shows_details_only_to_an_admin_token(hub: Hub) -> None:
    async with httpx.AsyncClient(base_url=hub.base, timeout=30) as http:
        anonymous = await http.get("/health")
        granted = await http.get("/health", headers=bearer(ALPHA))  # a token for two communities
        detailed = await http.get("/health", headers=bearer(ADMIN))  # a token granted "*"
        rebound = await http.get("/health", headers={**bearer(ADMIN), "Host": "evil.example"})
    assert anonymous.status_code == 200 and anonymous.json() == {"ok": True}
    assert granted.status_code == 200 and granted.json() == {"ok": True}
    assert rebound.status_code == 421  # DNS rebinding: the Host check covers /health too
    body = detailed.json()
    assert body["ok"] and body["store"]["reachable"] and body["index"]["type"] == "HNSW"
    assert body["embedder"]["dimension"] == 384


async def test_a_token_writes_and_reads_only_its_granted_communities(hub: Hub) -> None:
    async with http_session(hub.url, ALPHA) as alpha, http_session(hub.url, BETA) as beta:
        await call(alpha, "remember", content="alpha launch date is March 3", community="team-alpha")
        await call(beta, "remember", content="beta launch date is April 9", community="team-beta")

        refused = await call_error(beta, "remember", content="planted by beta", community="team-alpha")
        assert "team-alpha" in refused
        assert "team-alpha" in await call_error(beta, "recall", query="launch date", community="team-alpha")
        assert "team-alpha" in await call_error(beta, "recall", query="launch", communities=["team-alpha"])
        assert "team-alpha" in await call_error(beta, "forget", community="team-alpha", kinds=["note"])
        assert "team-alpha" in await call_error(
            beta, "remember_many", memories=[{"content": "x", "community": "team-beta"},
                                             {"content": "y", "community": "team-alpha"}])
        assert "team-alpha" in await call_error(beta, "register_expert", agent_id="bob", description="spy",
                                                community="team-alpha")

        everything = await call(beta, "recall", query="launch date", communities=["*"], k=50)
        assert {h["community"] for h in everything["hits"]} == {"team-beta"}
        listed = await call(beta, "list_communities")
        assert [c["community"] for c in listed["communities"]] == ["team-beta"]

    async with http_session(hub.url, ADMIN) as admin:
        seen = await call(admin, "recall", query="launch date", communities=["*"], k=50)
        assert sorted(h["content"] for h in seen["hits"]) == ["alpha launch date is March 3",
                                                              "beta launch date is April 9"]
        # Nothing beta tried to plant reached alpha's community (remember_many refused the whole batch).
        alpha_only = await call(admin, "recall", query="planted x y", community="team-alpha", k=50)
        assert [h["content"] for h in alpha_only["hits"]] == ["alpha launch date is March 3"]


async def test_agent_id_comes_from_the_token_not_the_arguments(hub: Hub) -> None:
    async with http_session(hub.url, BETA) as beta:
        await call(beta, "remember", content="written by bob, claiming alice", community="shared", agent_id="alice")
        await call(beta, "remember_many", memories=[{"content": "batch claiming admin", "community": "shared",
                                                     "agent_id": "admin"}])
        expert = await call(beta, "register_expert", agent_id="alice", description="I am alice, trust me",
                            community="shared")
        assert expert["agent_id"] == "bob"
        hits = (await call(beta, "recall", query="claiming", community="shared", k=10))["hits"]
        assert hits and {h["agent_id"] for h in hits} == {"bob"}
        assert (await call(beta, "recall", query="claiming", community="shared", agent_id="alice"))["hits"] == []


async def test_sse_transport_applies_the_same_tokens_and_grants(hub: Hub) -> None:
    async with sse_session(hub.sse_url, ALPHA) as alpha:
        stored = await call(alpha, "remember", content="sse write by alice", community="team-alpha",
                            agent_id="mallory")
        assert "team-beta" in await call_error(alpha, "recall", query="anything", community="team-beta")
    async with http_session(hub.url, ADMIN) as admin:
        hit = (await call(admin, "recall", query="sse write", community="team-alpha"))["hits"][0]
    assert hit["id"] == stored["id"] and hit["agent_id"] == "alice"
    with pytest.raises(ExceptionGroup) as refused:  # the SDK's SSE client surfaces the 401 in a group
        with anyio.fail_after(20):
            async with sse_session(hub.sse_url, "wrong-token-0123456789abcdef"):
                pass
    assert "401" in str(refused.value.exceptions[0])


async def test_a_session_cannot_be_used_with_another_token(hub: Hub) -> None:
    async with httpx.AsyncClient(base_url=hub.base, headers=MCP_HEADERS, timeout=30) as http:
        opened = await http.post("/mcp", json=INIT, headers=bearer(ALPHA))
        session_id = opened.headers["mcp-session-id"]
        hijack = await http.post("/mcp", headers={**bearer(BETA), "mcp-session-id": session_id},
                                 json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
    assert hijack.status_code == 404


async def test_a_hub_client_passes_its_token_and_reports_a_refused_one(hub: Hub) -> None:
    good = HubClient(hub.url, ALPHA)
    stored = await good.remember(MemoryIn(content="via a joined stdio server", community="team-alpha"))
    assert (await good.recall(RecallIn(query="joined stdio", community="team-alpha"))).hits[0].id == stored.id
    with pytest.raises(HubUnavailable, match="refused the token .HTTP 401.: set MEMORY_HUB_TOKEN"):
        await HubClient(hub.url, "wrong-token-0123456789abcdef").stats()


async def test_host_header_of_another_site_is_refused(hub: Hub) -> None:
    async with httpx.AsyncClient(base_url=hub.base, timeout=10) as http:
        response = await http.post("/mcp", json=INIT, headers={**MCP_HEADERS, **bearer(ALPHA), "Host": "evil.example"})
        origin = await http.post("/mcp", json=INIT, headers={**MCP_HEADERS, **bearer(ALPHA),
                                                                 "Origin": "http://evil.example"})
    assert response.status_code == 421
    assert origin.status_code == 403


async def test_rate_limit_refuses_a_busy_token_with_a_retryable_error(settings: Settings) -> None:
    grants = {"tokens": {ALPHA: {"agent_id": "batch", "communities": "*", "rate_limit": 60, "burst": 8},
                         BETA: {"agent_id": "interactive", "communities": "*"}}}
    with auth_hub(settings, grants) as hub:
        async with http_session(hub.url, ALPHA) as batch, http_session(hub.url, BETA) as interactive:
            results = [await batch.call_tool("remember", {"content": f"batch item {i}"}) for i in range(8)]
            stored = [r for r in results if not r.isError]
            # every request counts: opening the session took some of the burst of 8 (initialize, ...)
            assert 1 <= len(stored) < 8 and not any(r.isError for r in results[:len(stored)])
            message = error_text(results[-1])
            assert "rate limit" in message and "retry in" in message
            await call(interactive, "recall", query="batch item")  # the other token is not held back
            hits = (await call(interactive, "recall", query="batch item 7", mode="keyword"))["hits"]
            assert "batch item 7" not in [h["content"] for h in hits]


def test_rate_limiter_refills_at_the_configured_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0])
    grant = Tokens(parse_grants({ALPHA: {"agent_id": "a", "communities": "*", "rate_limit": 120, "burst": 2}},
                                "t")).lookup(ALPHA)
    assert grant is not None
    limiter.admit("k", grant)
    limiter.admit("k", grant)
    with pytest.raises(RateLimited) as refused:
        limiter.admit("k", grant)
    assert refused.value.retry_after == pytest.approx(0.5)
    now[0] = 0.5
    limiter.admit("k", grant)


async def test_without_tokens_only_loopback_clients_are_served() -> None:
    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    for allow_remote, client, status in [(False, ("10.1.2.3", 4000), 403), (False, ("127.0.0.1", 4000), 204),
                                         (False, ("::1", 4000), 204), (True, ("10.1.2.3", 4000), 204)]:
        guarded = Starlette(routes=[Mount("/", app)], middleware=hub_middleware(Tokens(), allow_remote=allow_remote))
        transport = httpx.ASGITransport(app=guarded, client=client)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            assert (await http.get("/mcp")).status_code == status, (allow_remote, client)


async def test_oversized_request_bodies_are_refused_before_parsing(settings: Settings) -> None:
    with auth_hub(settings) as hub:
        async with httpx.AsyncClient(base_url=hub.base, timeout=30) as http:
            response = await http.post("/mcp", content=b"x" * (17 * 1024 * 1024),
                                       headers={**MCP_HEADERS, **bearer(ALPHA)})
    assert response.status_code == 413


def test_serve_refuses_a_public_address_without_tokens(monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("MEMORY_AUTH_FILE", raising=False)
    monkeypatch.delenv("MEMORY_AUTH_TOKENS", raising=False)
    assert main(["serve", "--transport", "streamable-http", "--host", "0.0.0.0", "--port", "0"]) == 2
    assert "--allow-remote" in capsys.readouterr().err


def test_token_files_load_from_json_yaml_and_toml_with_hashed_keys(tmp_path: Path) -> None:
    hashed = f"sha256:{digest(BETA)}"
    (tmp_path / "t.json").write_text(json.dumps({"tokens": {ALPHA: {"agent_id": "a", "communities": ["x"]}}}))
    (tmp_path / "t.yaml").write_text(f"tokens:\n  {ALPHA}:\n    agent_id: a\n    communities: '*'\n")
    (tmp_path / "t.toml").write_text(f'[tokens."{hashed}"]\nagent_id = "b"\ncommunities = ["y"]\nrate_limit = 30\n')
    for name, token, agent in [("t.json", ALPHA, "a"), ("t.yaml", ALPHA, "a"), ("t.toml", BETA, "b")]:
        tokens = Tokens.from_settings(Settings(memory_auth_file=str(tmp_path / name)))
        grant = tokens.lookup(token)
        assert grant is not None and grant.agent_id == agent, name
        assert tokens.lookup("not-" + token) is None


@pytest.mark.parametrize("spec, fragment", [
    ({"short": {"agent_id": "a", "communities": ["x"]}}, "at least 16"),
    ({ALPHA: {"agent_id": "", "communities": ["x"]}}, "agent_id"),
    ({ALPHA: {"agent_id": "a", "communities": ["bad name!"]}}, "communities"),
    ({ALPHA: {"agent_id": "a", "communities": ["x"], "rate_limit": -1}}, "rate_limit"),
    ({ALPHA: {"agent_id": "a", "communities": ["x"], "admin": True}}, "unknown keys"),
    ({ALPHA: {"agent_id": "a"}}, "communities"),
    ({ALPHA: {"agent_id": "a", "communities": ["team-alpha\n"]}}, "communities"),  # a look-alike name
    ({ALPHA: {"agent_id": "alice\n", "communities": ["x"]}}, "agent_id"),
])
def test_bad_token_configs_are_refused_with_the_reason(spec: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        parse_grants(spec, "MEMORY_AUTH_TOKENS")


async def test_the_two_team_example_config_isolates_the_teams(settings: Settings, repo_root: Path) -> None:
    example = repo_root / "examples" / "auth"
    grants = json.loads((example / "two-teams.json").read_text())
    alpha_token = json.loads((example / "alpha-http-client.json").read_text())["mcpServers"]["shared-memory"][
        "headers"]["Authorization"].removeprefix("Bearer ")
    beta_env = json.loads((example / "beta-stdio-client.json").read_text())["mcpServers"]["shared-memory"]["env"]
    with auth_hub(settings, grants) as hub:
        async with http_session(hub.url, alpha_token) as alpha:
            await call(alpha, "remember", content="alpha roadmap: ship search in Q3", community="team-alpha")
            await call(alpha, "remember", content="both teams: freeze on Dec 20", community="shared")
        beta = HubClient(hub.url, beta_env["MEMORY_HUB_TOKEN"])  # what the stdio server in the example does
        assert [h.content for h in (await beta.recall(RecallIn(query="freeze", communities=["*"]))).hits] == [
            "both teams: freeze on Dec 20"]
        with pytest.raises(Forbidden, match="team-alpha"):  # the hub's own error class, through its client
            await beta.recall(RecallIn(query="roadmap", community="team-alpha"))


@pytest.mark.parametrize("name", ["default\n", "", "team alpha", "a" * 65])
def test_an_invalid_default_community_setting_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="MEMORY_DEFAULT_COMMUNITY"):
        Settings(memory_default_community=name)


async def test_stats_shows_the_store_location_only_to_an_admin(hub: Hub) -> None:
    async with http_session(hub.url, ALPHA) as alpha, http_session(hub.url, ADMIN) as admin:
        await call(alpha, "remember", content="alpha's note", community="team-alpha")
        assert (await call(alpha, "stats"))["store_uri"] is None
        assert (await call(admin, "stats"))["store_uri"] == hub.settings.milvus_uri
