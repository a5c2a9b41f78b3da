"""`mcp-memory-server export` and `import` (cli.py -> transfer_files.py -> transfer.py): on the
store directly, each on a fresh Milvus Lite database, with the real embedder."""

from __future__ import annotations

import io
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest

from mcp_memory_server.cli import main
from mcp_memory_server.config import Settings
from mcp_memory_server.filters import MemoryFilter
from mcp_memory_server.memory import Runtime
from mcp_memory_server.models import MemoryIn, RecallIn, RememberManyIn
from mcp_memory_server.progress import Bar
from mcp_memory_server.service import MemoryService

T = TypeVar("T")

MEMORIES = [
    MemoryIn(content="We met the vendor about the Quasar license.", community="ops", thread="vendor",
             created_at="2026-03-01T10:00:00Z", tags=["vendor"], agent_id="ana"),
    MemoryIn(content="Decision: buy the three-year Quasar plan.", community="ops", thread="vendor",
             created_at="2026-03-01T10:02:00Z", kind="decision", metadata={"price": 1200, "who": ["ana", "bram"]}),
    MemoryIn(content="The staging cluster runs Milvus 2.5.", community="platform", kind="fact", tags=["milvus"],
             ttl_seconds=86_400, agent_id="bram"),
    MemoryIn(content="Deploys freeze on Fridays after 15:00.", community="platform", created_at="2025-12-24T09:30:00Z"),
]


def with_service(db: Path, work: Callable[[MemoryService], Awaitable[T]]) -> T:
    """Run `work` on a service that owns the database at `db` (opened and closed around it)."""
    async def run() -> T:
        runtime = Runtime(Settings(milvus_uri=str(db)))
        async with runtime.running(own=True, warm_up=False):
            await runtime.wait_ready()
            assert runtime.service is not None
            return await work(runtime.service)

    return anyio.run(run)


def cli(monkeypatch: pytest.MonkeyPatch, db: Path, *argv: str) -> int:
    monkeypatch.setenv("MILVUS_URI", str(db))
    return main(list(argv))


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_export_then_import_into_an_empty_store_gives_every_memory_back_and_a_second_import_stores_nothing(
        tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    source, target = tmp_path / "source.db", tmp_path / "target.db"

    async def fill(service: MemoryService) -> None:
        await service.remember_many(RememberManyIn(memories=MEMORIES))

    with_service(source, fill)
    assert cli(monkeypatch, source, "export", "--out", str(tmp_path / "a.jsonl")) == 0
    exported = lines(tmp_path / "a.jsonl")
    header, memories = exported[0], exported[1:]
    assert (header["format"], header["embedder"], header["dimension"], header["count"], header["vectors"]) == \
        ("mcp-memory-server/export", "local:all-MiniLM-L6-v2", 384, 4, False)
    assert sorted(header["communities"]) == ["ops", "platform"]
    assert all("dense" not in m for m in memories)  # vectors only on request
    by_content = {m["content"]: m for m in memories}
    decision = by_content["Decision: buy the three-year Quasar plan."]
    assert (decision["kind"], decision["thread"], decision["created_at"], decision["metadata"]) == \
        ("decision", "vendor", "2026-03-01T10:02:00Z", {"price": 1200, "who": ["ana", "bram"]})
    assert "expires_at" in by_content["The staging cluster runs Milvus 2.5."]

    capsys.readouterr()
    assert cli(monkeypatch, target, "import", str(tmp_path / "a.jsonl")) == 0
    assert "4 stored, 0 already there" in capsys.readouterr().err
    assert cli(monkeypatch, target, "export", "--out", str(tmp_path / "b.jsonl")) == 0
    again = lines(tmp_path / "b.jsonl")
    assert sorted(again[1:], key=lambda m: m["id"]) == sorted(memories, key=lambda m: m["id"])  # every field
    assert cli(monkeypatch, target, "import", str(tmp_path / "a.jsonl")) == 0
    assert "0 stored, 4 already there" in capsys.readouterr().err

    async def check(service: MemoryService) -> tuple[list[str], int, list[float]]:
        hits = (await service.recall(RecallIn(query="which Quasar plan did we buy?", community="ops"))).hits
        return [h.id for h in hits], await _count(service), await _dense(service, decision["id"])

    hit_ids, count, dense = with_service(target, check)
    assert hit_ids[0] == decision["id"] and count == 4
    source_dense = with_service(source, lambda s: _dense(s, decision["id"]))
    assert dense == pytest.approx(source_dense, abs=1e-5)  # embedded again with the same thread context


async def _dense(service: MemoryService, memory_id: str) -> list[float]:
    [m] = service.store.get_indexed(MemoryFilter(communities=None, ids=[memory_id]))
    return m.dense


def test_an_export_with_vectors_imports_without_changing_them(tmp_path: Path, settings: Settings,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    source, target = tmp_path / "source.db", tmp_path / "target.db"

    async def fill(service: MemoryService) -> list[str]:
        return [r.id for r in (await service.remember_many(RememberManyIn(memories=MEMORIES))).results]

    ids = with_service(source, fill)
    out = str(tmp_path / "v.jsonl")
    assert cli(monkeypatch, source, "export", "--vectors", "--community", "ops", "--out", out) == 0
    exported = lines(tmp_path / "v.jsonl")
    assert exported[0]["communities"] == ["ops"] and len(exported) == 3
    assert all(len(m["dense"]) == 384 for m in exported[1:])
    assert cli(monkeypatch, target, "import", str(tmp_path / "v.jsonl")) == 0

    async def vectors(service: MemoryService) -> list[list[float]]:
        return [await _dense(service, i) for i in ids[:2]]

    assert with_service(target, vectors) == [[m["dense"] for m in exported[1:] if m["id"] == i][0] for i in ids[:2]]


@pytest.mark.parametrize(("bad", "says"), [
    ("{not json", "line 3: not JSON"),
    ('{"content": "", "community": "ops"}', "line 3: "),
    ('{"content": "fine", "community": "Not A Community!"}', "line 3: "),
    ('{"content": "fine", "community": "ops", "colour": "red"}', "line 3: "),
    ('{"content": "fine", "community": "ops", "dense": [0.1, 0.2]}', "line 3: dense has 2 numbers"),
    ('{"content": "fine", "community": "ops", "dense": [NaN' + ", 0.1" * 383 + "]}", "line 3: dense holds a number"),
])
def test_import_names_the_bad_line_and_stores_nothing(tmp_path: Path, settings: Settings,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str], bad: str, says: str) -> None:
    db = tmp_path / "target.db"
    header = {"format": "mcp-memory-server/export", "version": 1, "embedder": "local:all-MiniLM-L6-v2",
              "dimension": 384, "exported_at": "2026-01-01T00:00:00Z", "communities": ["ops"], "vectors": True,
              "expired": False, "count": 3}
    good = {"content": "A good memory that must not be stored alone.", "community": "ops"}
    (tmp_path / "bad.jsonl").write_text("\n".join([json.dumps(header), json.dumps(good), bad, json.dumps(good)]))
    assert cli(monkeypatch, db, "import", str(tmp_path / "bad.jsonl")) == 1
    assert says in capsys.readouterr().err
    assert with_service(db, _count) == 0


async def _count(service: MemoryService) -> int:
    return len(service.store.get(MemoryFilter(communities=None)))


def test_an_export_leaves_expired_memories_out_unless_asked(tmp_path: Path, settings: Settings,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "source.db"

    async def fill(service: MemoryService) -> None:
        await service.remember_many(RememberManyIn(memories=[
            MemoryIn(content="kept for ever", community="c"), MemoryIn(content="gone soon", community="c",
                                                                       ttl_seconds=1)]))
        await anyio.sleep(1.1)

    with_service(db, fill)
    assert cli(monkeypatch, db, "export", "--out", str(tmp_path / "live.jsonl")) == 0
    assert [m["content"] for m in lines(tmp_path / "live.jsonl")[1:]] == ["kept for ever"]
    assert cli(monkeypatch, db, "export", "--include-expired", "--out", str(tmp_path / "all.jsonl")) == 0
    assert sorted(m["content"] for m in lines(tmp_path / "all.jsonl")[1:]) == ["gone soon", "kept for ever"]
    assert cli(monkeypatch, tmp_path / "target.db", "import", str(tmp_path / "all.jsonl")) == 0
    assert with_service(tmp_path / "target.db", _count) == 1  # the expired one is skipped


REFERENCE = [
    {"type": "entity", "name": "John_Smith", "entityType": "person",
     "observations": ["Speaks fluent Spanish", "Graduated in 2019"]},
    {"type": "entity", "name": "Anthropic", "entityType": "organization", "observations": []},
    {"type": "relation", "from": "John_Smith", "to": "Anthropic", "relationType": "works_at"},
]


def test_a_reference_memory_json_imports_with_its_names_and_links(tmp_path: Path, settings: Settings,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "memory.db"
    (tmp_path / "memory.json").write_text("\n".join(json.dumps(item) for item in REFERENCE) + "\n")
    assert cli(monkeypatch, db, "import", "--community", "people", str(tmp_path / "memory.json")) == 0
    assert cli(monkeypatch, db, "import", "--community", "people", str(tmp_path / "memory.json")) == 0  # idempotent

    async def check(service: MemoryService) -> tuple[list[tuple[str, str, list[str]]], list[str]]:
        stored = service.store.get(MemoryFilter(communities=["people"]))
        hits = await service.recall(RecallIn(query="Where does John work?", community="people",
                                             tags=["entity:John_Smith"], k=10))
        return sorted((r.kind, r.content, list(r.tags or [])) for r in stored), [h.content for h in hits.hits]

    stored, recalled = with_service(db, check)
    assert stored == [
        ("entity", "Anthropic is an organization.", ["entity:Anthropic"]),
        ("entity", "John_Smith is a person.", ["entity:John_Smith"]),
        ("observation", "John_Smith: Graduated in 2019", ["entity:John_Smith"]),
        ("observation", "John_Smith: Speaks fluent Spanish", ["entity:John_Smith"]),
        ("relation", "John_Smith works_at Anthropic", ["entity:John_Smith", "entity:Anthropic"]),
    ]
    assert "John_Smith works_at Anthropic" in recalled


def test_a_reference_memory_json_with_a_broken_line_is_refused_whole(tmp_path: Path, settings: Settings,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "memory.db"
    broken = [*REFERENCE, {"type": "relation", "from": "John_Smith", "to": ""}]
    (tmp_path / "memory.json").write_text("\n".join(json.dumps(item) for item in broken))
    assert cli(monkeypatch, db, "import", str(tmp_path / "memory.json")) == 1
    assert "line 4: a relation needs from, relationType and to" in capsys.readouterr().err
    assert with_service(db, _count) == 0


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_bar_is_drawn_on_a_terminal_and_nowhere_else() -> None:
    terminal, piped = _Terminal(), io.StringIO()
    for stream in (terminal, piped):
        bar = Bar("importing", stream, width=10)
        anyio.run(bar, 5, 10, "stored")
        bar.close(10, 10)
    assert "importing [#####     ] 5/10 stored" in terminal.getvalue()
    assert terminal.getvalue().endswith("\n")
    assert "[##########] 10/10" in terminal.getvalue() and piped.getvalue() == ""
