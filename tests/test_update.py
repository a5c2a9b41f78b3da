"""`update` and what `remember` does with identical content, through the SDK's in-memory client on
real Milvus Lite (the same tools over HTTP and stdio: tests/test_owning.py)."""

from __future__ import annotations

import pytest
from mcp import ClientSession

from mcp_memory_server.filters import MemoryFilter
from mcp_memory_server.keywords import term_id, tokens
from mcp_memory_server.memory import Runtime
from tests.conftest import call, call_error

pytestmark = pytest.mark.anyio


async def test_update_changes_tags_kind_metadata_and_expiry_in_place(client: ClientSession) -> None:
    stored = await call(client, "remember", content="The release train leaves on Thursdays.", community="ops",
                        tags=["release"], metadata={"owner": "ana"})
    updated = await call(client, "update", id=stored["id"], community="ops", kind="decision",
                         tags=["release", "weekly"], metadata={"owner": "bram"}, ttl_seconds=3600)
    assert updated == {"id": stored["id"], "previous_id": None, "community": "ops",
                       "changed": ["kind", "tags", "metadata", "expires_at"]}
    hit = (await call(client, "recall", query="when does the release train leave?", community="ops"))["hits"][0]
    assert (hit["id"], hit["kind"], hit["tags"], hit["metadata"]) == (stored["id"], "decision", ["release", "weekly"],
                                                                     {"owner": "bram"})
    assert hit["expires_at"] is not None
    kept = await call(client, "update", id=stored["id"], community="ops", expires_at="never")
    assert kept["changed"] == ["expires_at"]
    assert (await call(client, "recall", query="release train", community="ops"))["hits"][0]["expires_at"] is None
    stats = await call(client, "stats")
    assert stats["communities"] == [{"community": "ops", "total": 1, "kinds": {"decision": 1}}]


async def test_a_new_content_replaces_the_memory_under_a_new_id(client: ClientSession) -> None:
    old = await call(client, "remember", content="The VPN gateway is vpn1.example.org.", community="it", kind="fact")
    new = await call(client, "update", id=old["id"], community="it", content="The VPN gateway is vpn2.example.org.")
    assert new["previous_id"] == old["id"] and new["id"] != old["id"] and new["changed"] == ["content"]
    hits = (await call(client, "recall", query="VPN gateway address", community="it"))["hits"]
    assert [(h["id"], h["content"], h["kind"]) for h in hits] == [(new["id"], "The VPN gateway is vpn2.example.org.",
                                                                  "fact")]
    again = await call(client, "remember", content="The VPN gateway is vpn2.example.org.", community="it")
    assert again == {"id": new["id"], "community": "it", "duplicate": True}  # the id follows the new text
    assert "no memory with id" in await call_error(client, "update", id=old["id"], community="it", kind="note")


async def test_moving_a_memory_to_another_thread_reindexes_both_threads(client: ClientSession,
                                                                       runtime: Runtime) -> None:
    first = [{"content": "Kickoff for the billing rewrite.", "thread": "a", "created_at": "2026-01-01T10:00:00Z"},
             {"content": "Zeppelin is the codename we picked.", "thread": "a", "created_at": "2026-01-01T10:01:00Z"},
             {"content": "Next step: write the migration plan.", "thread": "a", "created_at": "2026-01-01T10:02:00Z"},
             {"content": "Planning for the mobile app.", "thread": "b", "created_at": "2026-01-01T09:00:00Z"},
             {"content": "First mobile milestone is the login screen.", "thread": "b",
              "created_at": "2026-01-01T10:01:30Z"}]
    ids = [r["id"] for r in (await call(client, "remember_many", memories=[{**m, "community": "t"}
                                                                               for m in first]))["results"]]
    zeppelin = term_id(tokens("Zeppelin")[0])
    service = runtime.service
    assert service is not None

    def sparse(memory_id: str) -> dict[int, float]:
        [m] = service.store.get_indexed(MemoryFilter(communities=["t"], ids=[memory_id]))
        return m.sparse

    assert zeppelin in sparse(ids[2]) and zeppelin not in sparse(ids[4])  # the context of the next memory
    moved = await call(client, "update", id=ids[1], community="t", thread="b")
    assert moved["changed"] == ["thread"] and moved["previous_id"] == ids[1]
    assert zeppelin not in sparse(ids[2])  # thread a lost it: its next memory was re-indexed
    assert zeppelin in sparse(ids[4])  # thread b gained it, before its 10:01:30 memory
    hits = (await call(client, "recall", query="codename", community="t", thread="b"))["hits"]
    assert moved["id"] in [h["id"] for h in hits]
    assert (await call(client, "recall", query="codename", community="t", thread="a"))["hits"][0]["id"] != moved["id"]


async def test_remember_of_identical_content_keeps_the_stored_memory_as_it_is(client: ClientSession) -> None:
    first = await call(client, "remember", content="Backups run at 02:00 UTC.", community="ops", tags=["backup"])
    again = await call(client, "remember", content="Backups run at 02:00 UTC.", community="ops", tags=["cron"],
                       kind="fact", ttl_seconds=60)
    assert again["duplicate"] is True and again["id"] == first["id"]
    hit = (await call(client, "recall", query="when do backups run?", community="ops"))["hits"][0]
    assert (hit["tags"], hit["kind"], hit["expires_at"]) == (["backup"], "note", None)


async def test_update_refuses_what_it_cannot_do_and_changes_nothing(client: ClientSession) -> None:
    a = await call(client, "remember", content="alpha fact", community="u")
    b = await call(client, "remember", content="beta fact", community="u")
    assert "no memory with id" in await call_error(client, "update", id="0" * 32, community="u", kind="x")
    assert "no memory with id" in await call_error(client, "update", id=a["id"], community="elsewhere", kind="x")
    assert "already holds this text" in await call_error(client, "update", id=b["id"], community="u",
                                                         content="alpha fact")
    assert "ttl_seconds or expires_at, not both" in await call_error(client, "update", id=a["id"], community="u",
                                                                     ttl_seconds=5, expires_at="2099-01-01")
    assert "has already passed" in await call_error(client, "update", id=a["id"], community="u",
                                                    expires_at="2001-01-01")
    assert "content is empty" in await call_error(client, "update", id=a["id"], community="u", content=" ")
    assert (await call(client, "update", id=a["id"], community="u", kind="note"))["changed"] == []
    hits = (await call(client, "recall", query="fact", community="u", k=5))["hits"]
    assert sorted(h["content"] for h in hits) == ["alpha fact", "beta fact"]
