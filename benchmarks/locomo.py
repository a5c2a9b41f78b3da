"""Retrieval quality on LoCoMo: every turn stored as a memory, every question asked through `recall`.

One community per conversation. Each question of categories 1-4 is asked in its conversation's
community through the real `MemoryService.recall`, and the `dia_id`s of the recalled turns are
compared with the question's evidence turns.

The data is read from `--locomo-dir` (default `<repo>/../shared/data/locomo`, env
`LOCOMO_DIR`); it is CC BY-NC and is never copied into the repository.
"""

from __future__ import annotations

import functools
import json
import os
import re
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from mcp_memory_server.config import Fusion, Limits, Settings
from mcp_memory_server.embeddings import Embedder, LocalEmbedder
from mcp_memory_server.models import MemoryIn, RecallIn, RememberManyIn, SearchMode
from mcp_memory_server.service import MemoryService
from mcp_memory_server.store import MemoryStore

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DIR = REPO.parent / "shared" / "data" / "locomo"
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}
MODES: tuple[SearchMode, ...] = ("semantic", "keyword", "hybrid")
KS = (1, 5, 10)
BUCKETS = 10  # score buckets of equal width over [0, 1] for the calibration evidence
# The format variants write each conversation with one remember_many (MEMORY_MAX_BATCH raised to
# fit), without threads: the old way of measuring, kept as a secondary table.
BATCH = 1_000


def data_dir(override: str | Path | None = None) -> Path:
    """Where the LoCoMo files are: the argument, else $LOCOMO_DIR, else `<repo>/../shared/data/locomo`."""
    return Path(override or os.environ.get("LOCOMO_DIR") or DEFAULT_DIR)


@dataclass
class Turn:
    dia_id: str
    speaker: str
    text: str
    date: str
    caption: str | None


@dataclass
class Question:
    text: str
    category: int
    evidence: list[str]


@dataclass
class Conversation:
    name: str
    turns: list[Turn]
    questions: list[Question]


def load(directory: Path, limit: int | None = None) -> list[Conversation]:
    """The conversations in `directory` (`conv-*.json`), sorted by name; the first `limit` only."""
    files = sorted(directory.glob("conv-*.json"))
    if not files:
        raise FileNotFoundError(f"no LoCoMo conversations (conv-*.json) in {directory}; pass --locomo-dir")
    conversations = []
    for path in files[:limit]:
        raw = json.loads(path.read_text())
        turns: list[Turn] = []
        n = 1
        while f"session_{n}" in raw:
            date = raw.get(f"session_{n}_date_time", "")
            for t in raw[f"session_{n}"]:
                turns.append(Turn(t["dia_id"], t["speaker"], t["text"], date, t.get("blip_caption")))
            n += 1
        known = {t.dia_id for t in turns}
        questions = []
        for q in raw["qa"]:
            if q.get("category") not in CATEGORIES:
                continue
            evidence = [e for e in dict.fromkeys(_evidence_ids(q.get("evidence", []))) if e in known]
            if evidence:  # a few questions cite turns that do not exist: they cannot be scored
                questions.append(Question(q["question"], int(q["category"]), evidence))
        conversations.append(Conversation(path.stem, turns, questions))
    return conversations


def _evidence_ids(raw: Sequence[str]) -> list[str]:
    ids = []
    for item in raw:
        for part in re.split(r"[;,\s]+", item):
            m = re.fullmatch(r"D:?(\d+):(\d+)", part.strip())
            if m:
                ids.append(f"D{int(m.group(1))}:{int(m.group(2))}")
    return ids


# -- how a turn becomes a memory -------------------------------------------------------------

def _date(raw: str) -> str:
    """'1:56 pm on 8 May, 2023' -> '8 May, 2023'."""
    return raw.split(" on ", 1)[-1] if " on " in raw else raw


Formatter = Callable[[list[Turn], int], str]


def plain(turns: list[Turn], i: int) -> str:
    return turns[i].text


def speaker(turns: list[Turn], i: int) -> str:
    return f"{turns[i].speaker}: {turns[i].text}"


def speaker_date(turns: list[Turn], i: int) -> str:
    return f"[{_date(turns[i].date)}] {turns[i].speaker}: {turns[i].text}"


def speaker_date_caption(turns: list[Turn], i: int) -> str:
    t = turns[i]
    photo = f" [shares {t.caption}]" if t.caption else ""
    return f"[{_date(t.date)}] {t.speaker}: {t.text}{photo}"


def with_previous(turns: list[Turn], i: int) -> str:
    """The turn, captioned and dated, after the turn it answers (same session only)."""
    text = speaker_date_caption(turns, i)
    if i > 0 and turns[i - 1].date == turns[i].date:
        prev = turns[i - 1]
        photo = f" [shares {prev.caption}]" if prev.caption else ""
        text += f"\n(replying to {prev.speaker}: {prev.text}{photo})"
    return text


def window(turns: list[Turn], i: int) -> str:
    """The turn, captioned and dated, between the turn it answers and the reply (same session)."""
    text = with_previous(turns, i)
    if i + 1 < len(turns) and turns[i + 1].date == turns[i].date:
        nxt = turns[i + 1]
        text += f"\n(answered by {nxt.speaker}: {nxt.text})"
    return text


FORMATS: dict[str, Formatter] = {
    "plain": plain,
    "speaker": speaker,
    "speaker+date": speaker_date,
    "speaker+date+caption": speaker_date_caption,
    "speaker+date+caption+previous": with_previous,
    "speaker+date+caption+previous+next": window,
}
# How a client writes a conversation turn (the headline: the server adds the thread's context).
DEFAULT_FORMAT = "speaker+date+caption"


# -- running -----------------------------------------------------------------------------------

class CachedEmbedder:
    """Wraps an embedder and remembers vectors by text, so a sweep does not re-embed the same
    query for every setting. Used for sweeps only; the reported run embeds every call."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.name = inner.name
        self.dimension = inner.dimension
        self._cache: dict[str, list[float]] = {}

    def warm_up(self) -> None:
        self.inner.warm_up()

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            self._cache.update(zip(missing, self.inner.embed(missing), strict=True))
        return [self._cache[t] for t in texts]

    def close(self) -> None:
        self.inner.close()


def session_of(turn: Turn) -> str:
    """'D3:7' -> 'session_3': the thread a client would file the turn under."""
    return f"session_{turn.dia_id.split(':')[0].removeprefix('D')}"


async def _evaluate(conversations: list[Conversation], fmt: Formatter, embedder: Embedder,
                    modes: Sequence[SearchMode], *, as_client: bool, batch: int = BATCH) -> dict[str, Any]:
    """Store the turns once; return {mode: per-question rows}. `as_client`: one `remember` per turn
    with `thread` = its session, as an agent writes; else one `remember_many` per conversation."""
    with tempfile.TemporaryDirectory(prefix="locomo-") as tmp:
        settings = Settings(milvus_uri=str(Path(tmp) / "locomo.db"), memory_collection="locomo",
                            limits=Limits(batch=max(batch, Limits().batch)))
        store = MemoryStore(settings.milvus_uri, settings.memory_collection, embedder.dimension)
        service = MemoryService(settings, store, embedder)
        await service.open()
        try:
            started = time.perf_counter()
            for conv in conversations:
                items = [MemoryIn(content=fmt(conv.turns, i), community=conv.name, metadata={"dia_id": t.dia_id},
                                  thread=session_of(t) if as_client else None) for i, t in enumerate(conv.turns)]
                if as_client:
                    for item in items:
                        await service.remember(item)
                else:
                    for start in range(0, len(items), batch):
                        await service.remember_many(RememberManyIn(memories=items[start:start + batch]))
            load_s = time.perf_counter() - started
            rows: dict[str, list[dict[str, Any]]] = {}
            scored: dict[str, list[tuple[float, bool]]] = {}
            for mode in modes:
                rows[mode], scored[mode] = [], []
                for conv in conversations:
                    for q in conv.questions:
                        found = await service.recall(RecallIn(query=q.text, community=conv.name, k=max(KS),
                                                              mode=mode))
                        ranked = [h.metadata.get("dia_id") for h in found.hits]
                        scored[mode] += [(h.score, d in q.evidence) for h, d in zip(found.hits, ranked, strict=True)]
                        rows[mode].append({"conversation": conv.name, "category": q.category,
                                           **_score(ranked, q.evidence)})
        finally:
            await service.close()
    return {"rows": rows, "scored": scored, "load_seconds": load_s}


def score_buckets(scored: Sequence[tuple[float, bool]]) -> list[dict[str, Any]]:
    """The hits of one mode (their score, and whether the turn is evidence for the question) by
    score bucket: how many fall in it, their mean score and the share that are evidence. On one
    calibrated scale the share follows the score, in every mode alike."""
    out = []
    for b in range(BUCKETS):
        low, high = b / BUCKETS, (b + 1) / BUCKETS
        inside = [(s, e) for s, e in scored if low <= s < high or (b == BUCKETS - 1 and s == 1.0)]
        out.append({"from": low, "to": high, "hits": len(inside),
                    "mean_score": round(statistics.fmean(s for s, _ in inside), 4) if inside else None,
                    "evidence_share": round(sum(e for _, e in inside) / len(inside), 4) if inside else None})
    return out


def _score(ranked: list[Any], evidence: list[str]) -> dict[str, float]:
    wanted = set(evidence)
    out: dict[str, float] = {}
    for k in KS:
        out[f"recall@{k}"] = len(wanted & set(ranked[:k])) / len(wanted)
    out["hit@5"] = float(bool(wanted & set(ranked[:5])))
    first = next((i for i, d in enumerate(ranked) if d in wanted), None)
    out["mrr"] = 0.0 if first is None else 1.0 / (first + 1)
    return out


METRICS = [f"recall@{k}" for k in KS] + ["hit@5", "mrr"]


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean of each metric overall, per category and per conversation (and the spread of
    recall@5 across conversations)."""
    def mean(sel: list[dict[str, Any]]) -> dict[str, float]:
        return {m: round(statistics.fmean(r[m] for r in sel), 4) for m in METRICS} | {"questions": len(sel)}

    per_cat = {CATEGORIES[c]: mean([r for r in rows if r["category"] == c])
               for c in CATEGORIES if any(r["category"] == c for r in rows)}
    convs = sorted({r["conversation"] for r in rows})
    per_conv = {c: mean([r for r in rows if r["conversation"] == c]) for c in convs}
    r5 = [v["recall@5"] for v in per_conv.values()]
    spread = {"min": min(r5), "max": max(r5), "stdev": round(statistics.pstdev(r5), 4)}
    return {"overall": mean(rows), "per_category": per_cat, "per_conversation": per_conv,
            "recall@5_across_conversations": spread}


def run(out_dir: Path, quick: bool, *, locomo_dir: str | Path | None = None,
        formats: Sequence[str] | None = None, embedder: Embedder | None = None) -> dict[str, Any]:
    """Evaluate the default turn format in every mode (quick: 2 conversations); the full run also
    compares the other turn formats and fusion settings in hybrid mode."""
    directory = data_dir(locomo_dir)
    conversations = load(directory, limit=2 if quick else None)
    embedder = embedder or LocalEmbedder()
    modes_result: dict[str, Any] = {}
    evaluated = anyio.run(functools.partial(_evaluate, conversations, FORMATS[DEFAULT_FORMAT], embedder, MODES,
                                            as_client=True))
    for mode, rows in evaluated["rows"].items():
        modes_result[mode] = summarize(rows) | {"score_buckets": score_buckets(evaluated["scored"][mode])}
    result: dict[str, Any] = {
        "data": str(directory), "conversations": [c.name for c in conversations],
        "turns": sum(len(c.turns) for c in conversations),
        "questions": sum(len(c.questions) for c in conversations),
        "format": DEFAULT_FORMAT, "written": "one remember per turn, thread = session",
        "fusion": Fusion().model_dump(), "k": max(KS),
        "variants_written": "one remember_many per conversation, without threads (no thread context)",
        "load_seconds": round(evaluated["load_seconds"], 2), "modes": modes_result,
    }
    variants: dict[str, Any] = {}
    for name in formats if formats is not None else ([] if quick else list(FORMATS)):
        ev = anyio.run(functools.partial(_evaluate, conversations, FORMATS[name], CachedEmbedder(embedder), MODES,
                                         as_client=False))
        variants[name] = {m: summarize(r)["overall"]["recall@5"] for m, r in ev["rows"].items()}
    if variants:
        result["format_variants_recall@5"] = variants
    return result
