"""Export, import and resources through a hub with bearer tokens: a token sees and writes only its
communities, as with every tool (tests/hub_sessions.py: alice may use team-alpha and shared, bob
team-beta and shared, admin every community)."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import anyio.to_thread
import pytest
from mcp.shared.exceptions import McpError
from pydantic import AnyUrl

from mcp_memory_server.cli import main
from mcp_memory_server.config import Settings
from mcp_memory_server.resources import COMMUNITIES_URI, memory_uri, recent_uri
from tests.conftest import call
from tests.hub_sessions import ADMIN, ALPHA, auth_hub, http_session

pytestmark = pytest.mark.anyio


async def cli(monkeypatch: pytest.MonkeyPatch, settings: Settings, token: str, url: str, *argv: str) -> int:
    monkeypatch.setenv("MILVUS_URI", settings.milvus_uri)
    monkeypatch.setenv("MEMORY_HUB_TOKEN", token)
    return await anyio.to_thread.run_sync(main, [*argv, "--hub-url", url])


async def test_export_import_and_resources_through_a_hub_keep_to_the_tokens_grants(
        settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    with auth_hub(settings) as hub, anyio.fail_after(240):
        async with http_session(hub.url, ADMIN) as admin:
            ids = {c: (await call(admin, "remember", content=f"A fact that only {c} may know.", community=c))["id"]
                   for c in ("team-alpha", "team-beta", "shared")}
        async with http_session(hub.url, ALPHA) as alice:
            listed = [str(r.uri) for r in (await alice.list_resources()).resources]
            assert listed == [COMMUNITIES_URI, recent_uri("shared"), recent_uri("team-alpha")]
            for uri in (recent_uri("team-beta"), memory_uri(ids["team-beta"])):
                with pytest.raises(McpError):
                    await alice.read_resource(AnyUrl(uri))
                with pytest.raises(McpError):
                    await alice.subscribe_resource(AnyUrl(uri))
            page = await call(alice, "export")
            assert sorted(page["header"]["communities"]) == ["shared", "team-alpha"]
            assert sorted(m["id"] for m in page["memories"]) == sorted([ids["team-alpha"], ids["shared"]])
            refused = await alice.call_tool("export", {"communities": ["team-beta"]})
            assert refused.isError

        out = tmp_path / "alice.jsonl"
        assert await cli(monkeypatch, settings, ALPHA, hub.url, "export", "--out", str(out)) == 0
        lines = [json.loads(line) for line in out.read_text().splitlines()]
        assert sorted(m["community"] for m in lines[1:]) == ["shared", "team-alpha"]
        assert await cli(monkeypatch, settings, ALPHA, hub.url, "export", "--community", "team-beta",
                         "--out", str(out)) == 1
        assert "team-beta" in capsys.readouterr().err and out.exists()  # the earlier export is left as it was

        smuggled = tmp_path / "smuggled.jsonl"
        smuggled.write_text("\n".join(json.dumps(x) for x in [
            lines[0], {"content": "Alice's new fact.", "community": "team-alpha", "agent_id": "zed"},
            {"content": "Planted in bob's community.", "community": "team-beta"}]))
        assert await cli(monkeypatch, settings, ALPHA, hub.url, "import", str(smuggled)) == 1
        assert "line 3:" in capsys.readouterr().err
        smuggled.write_text("\n".join(smuggled.read_text().splitlines()[:2]))
        assert await cli(monkeypatch, settings, ALPHA, hub.url, "import", str(smuggled)) == 0

        async with http_session(hub.url, ADMIN) as admin:
            totals = {c["community"]: c["total"] for c in (await call(admin, "stats"))["communities"]}
            assert totals == {"team-alpha": 2, "team-beta": 1, "shared": 1}  # nothing half-imported
            hits = (await call(admin, "recall", query="Alice's new fact", community="team-alpha"))["hits"]
            assert hits[0]["agent_id"] == "alice"  # a token's import is signed by the token
        restored = tmp_path / "restored.jsonl"
        restored.write_text("\n".join(json.dumps(x) for x in [
            lines[0], {"content": "Restored as zed wrote it.", "community": "team-beta", "agent_id": "zed"}]))
        assert await cli(monkeypatch, settings, ADMIN, hub.url, "import", str(restored)) == 0
        async with http_session(hub.url, ADMIN) as admin:
            hits = (await call(admin, "recall", query="Restored as zed wrote it", community="team-beta"))["hits"]
            assert hits[0]["agent_id"] == "zed"  # a token granted every community restores the author
