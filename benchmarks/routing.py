"""Routing quality: does `route` pick the expert that should answer a real developer question?

Each set of profiles is registered in a fresh Milvus Lite database: the community's (the three
experts of `openagents_bridge.experts`, long profiles plus their starter knowledge) and two sets of
plain profiles, one sentence and a few skills per expert as a new user writes them, nothing else
(`routing_texts.PLAIN_PROFILES`). Each question of the routing set, paraphrases and off-topic
probes are then asked through the real `MemoryService.route`. The questions also go through the
keyword matcher of the original write-up, as a baseline.

The questions are read from `--questions` (default `<repo>/../shared/data/routing/questions.jsonl`,
env `ROUTING_QUESTIONS`); they are GitHub issue text and are never copied into the repository.
Lines are split by parity into two fixed halves: "tune" (even line numbers, 0-based) was used to
choose the routing parameters, "held_out" (odd) was not.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import anyio

from mcp_memory_server.config import Settings
from mcp_memory_server.embeddings import Embedder, LocalEmbedder
from mcp_memory_server.models import RegisterExpertIn, RememberManyIn, RouteIn
from mcp_memory_server.routing import RoutingPolicy
from mcp_memory_server.service import MemoryService
from mcp_memory_server.store import MemoryStore
from openagents_bridge.experts import EXPERTS, load_knowledge

from .routing_texts import MORE_OFF_TOPIC, NEAR_MISSES, OFF_TOPIC, PARAPHRASES, PLAIN_PROFILES

REPO = Path(__file__).resolve().parents[1]
DEFAULT_QUESTIONS = REPO.parent / "shared" / "data" / "routing" / "questions.jsonl"
COMMUNITY = "dev-support"
DOMAIN_OF = {spec.agent_id: spec.domain for spec in EXPERTS.values()}

# The original write-up's matcher: the first list with a keyword in the question wins, in this
# order. Read as a case-insensitive substring test ("async" also matches "asyncio", "index"
# also matches "indexes"); a question matching no list gets no expert, which counts as wrong.
KEYWORDS: list[tuple[str, tuple[str, ...]]] = [
    ("python", ("python", "django", "flask", "async")),
    ("milvus", ("milvus", "vector", "index", "performance")),
    ("devops", ("deployment", "docker", "kubernetes", "operations")),
]
COMMUNITY_PROFILES = "community"  # openagents_bridge.experts: long profiles and starter knowledge
NO_GLOSSARY = " without glossary"  # the same profiles, no glossary: neither in the question nor implied by a profile
PROFILE_SETS = (COMMUNITY_PROFILES, *PLAIN_PROFILES, *(f"{name}{NO_GLOSSARY}" for name in PLAIN_PROFILES))

QUICK_QUESTIONS = 8


@dataclass
class Question:
    line: int
    text: str
    experts: list[str]  # domains: python, milvus, devops


def questions_path(override: str | Path | None = None) -> Path:
    """The question file: the argument, else $ROUTING_QUESTIONS, else the shared data set."""
    return Path(override or os.environ.get("ROUTING_QUESTIONS") or DEFAULT_QUESTIONS)


def load(path: Path, limit: int | None = None) -> list[Question]:
    if not path.exists():
        raise FileNotFoundError(f"no routing questions at {path}; pass --questions or set ROUTING_QUESTIONS")
    rows = [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]
    questions = [Question(i, r["question"], list(r["experts"])) for i, r in enumerate(rows)]
    return questions[:limit] if limit else questions


def keyword_route(question: str) -> list[str]:
    text = question.lower()
    for domain, words in KEYWORDS:
        if any(w in text for w in words):
            return [domain]
    return []


async def route_all(questions: Sequence[str], embedder: Embedder, policy: RoutingPolicy | None = None,
                    profiles: str = COMMUNITY_PROFILES) -> tuple[list[list[str]], dict[str, float]]:
    """Register the experts of one profile set (the community's also load their knowledge), route
    every question; return the chosen domains per question (best first) and timings."""
    with tempfile.TemporaryDirectory(prefix="routing-") as tmp:
        settings = Settings(milvus_uri=str(Path(tmp) / "routing.db"), memory_collection="routing")
        store = MemoryStore(settings.milvus_uri, settings.memory_collection, embedder.dimension)
        service = MemoryService(settings, store, embedder, routing=policy)
        await service.open()
        try:
            started = time.perf_counter()
            if profiles == COMMUNITY_PROFILES:
                for spec in EXPERTS.values():
                    await service.register_expert(RegisterExpertIn(
                        agent_id=spec.agent_id, description=spec.description, skills=spec.skills, community=COMMUNITY))
                    await service.remember_many(RememberManyIn(memories=[
                        item.model_copy(update={"community": COMMUNITY}) for item in load_knowledge(spec.agent_id)]))
            else:
                for domain, (description, skills) in PLAIN_PROFILES[profiles].items():
                    await service.register_expert(RegisterExpertIn(
                        agent_id=f"{domain}_expert", description=description, skills=skills, community=COMMUNITY))
            load_s = time.perf_counter() - started
            chosen: list[list[str]] = []
            latencies: list[float] = []
            for text in questions:
                t0 = time.perf_counter()
                routed = await service.route(RouteIn(question=text, community=COMMUNITY))
                latencies.append(time.perf_counter() - t0)
                chosen.append([DOMAIN_OF.get(m.agent_id, m.agent_id) for m in routed.experts])
        finally:
            await service.close()
    timings = {"load_seconds": round(load_s, 2),
               "route_ms_median": round(1000 * statistics.median(latencies), 1) if latencies else 0.0}
    return chosen, timings


def score(questions: Sequence[Question], chosen: Sequence[Sequence[str]]) -> dict[str, Any]:
    """top1: first chosen is a label; any_correct: some chosen is a label; both_chosen: two-label
    questions with both labels chosen; precision: share of chosen experts that are labels."""
    n = len(questions)
    pairs = [(q, c) for q, c in zip(questions, chosen, strict=True)]
    two = [(q, c) for q, c in pairs if len(q.experts) > 1]
    picked = sum(len(c) for _, c in pairs)
    return {
        "questions": n,
        "top1": round(sum(bool(c) and c[0] in q.experts for q, c in pairs) / n, 4) if n else 0.0,
        "any_correct": round(sum(bool(set(c) & set(q.experts)) for q, c in pairs) / n, 4) if n else 0.0,
        "empty": round(sum(not c for _, c in pairs) / n, 4) if n else 0.0,
        "two_expert_questions": len(two),
        "both_chosen": round(sum(set(q.experts) <= set(c) for q, c in two) / len(two), 4) if two else None,
        "mean_chosen": round(picked / n, 3) if n else 0.0,
        "precision": round(sum(len(set(c) & set(q.experts)) for q, c in pairs) / picked, 4) if picked else None,
    }


def halves(questions: Sequence[Question], chosen: Sequence[Sequence[str]]) -> dict[str, Any]:
    def part(parity: int | None) -> dict[str, Any]:
        sel = [(q, c) for q, c in zip(questions, chosen, strict=True) if parity is None or q.line % 2 == parity]
        return score([q for q, _ in sel], [c for _, c in sel])

    return {"tune": part(0), "held_out": part(1), "all": part(None)}


def run(out_dir: Path, quick: bool = False, *, questions: str | Path | None = None,
        embedder: Embedder | None = None, policy: RoutingPolicy | None = None,
        profile_sets: Sequence[str] = PROFILE_SETS) -> dict[str, Any]:
    """Route every question (quick: the first few), the paraphrases and the off-topic probes
    through `route` with each profile set, and the questions through the keyword baseline; write
    `routing.json` into `out_dir` and return the result."""
    path = questions_path(questions)
    qs = load(path, limit=QUICK_QUESTIONS if quick else None)
    embedder = embedder or LocalEmbedder()
    probes = [text for text, _ in PARAPHRASES] + OFF_TOPIC + MORE_OFF_TOPIC
    sets: dict[str, Any] = {}
    for name in profile_sets:
        base = name.removesuffix(NO_GLOSSARY)
        reading = (replace(policy or RoutingPolicy(), glossary_weight=0.0, implied_fit=0.0) if name != base
                   else policy)
        chosen, timings = anyio.run(route_all, [q.text for q in qs] + probes, embedder, reading, base)
        sets[name] = _judged(qs, chosen) | {"profiles": _profiles(base), **timings}
    result: dict[str, Any] = {
        "data": str(path),
        "policy": asdict(policy or RoutingPolicy()),
        "sets": sets,
        "keyword_baseline": halves(qs, [keyword_route(q.text) for q in qs]),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "routing.json").write_text(json.dumps(result, indent=2) + "\n", "utf-8")
    return result


def _judged(qs: Sequence[Question], chosen: Sequence[list[str]]) -> dict[str, Any]:
    """The metrics of one profile set from what `route` chose for the questions, then the probes
    in the order `run` asks them."""
    routed = chosen[: len(qs)]
    paraphrased = chosen[len(qs): len(qs) + len(PARAPHRASES)]
    off_topic = chosen[len(qs) + len(PARAPHRASES): len(qs) + len(PARAPHRASES) + len(OFF_TOPIC)]
    more = chosen[len(qs) + len(PARAPHRASES) + len(OFF_TOPIC):]
    answered = [text for text, c in zip(MORE_OFF_TOPIC, more, strict=True) if c]
    return {
        "route": halves(qs, routed),
        "paraphrases": {"questions": len(PARAPHRASES),
                        "top1": round(sum(bool(c) and c[0] == want for (_, want), c in zip(PARAPHRASES, paraphrased,
                                                                                          strict=True))
                                      / len(PARAPHRASES), 4),
                        "chosen": paraphrased},
        "off_topic": {"questions": len(OFF_TOPIC), "refused": sum(not c for c in off_topic),
                      "empty": round(sum(not c for c in off_topic) / len(OFF_TOPIC), 4), "chosen": off_topic},
        "more_off_topic": {"questions": len(MORE_OFF_TOPIC), "refused": len(MORE_OFF_TOPIC) - len(answered),
                           "near_misses": NEAR_MISSES,
                           "near_misses_refused": sum(not c for c in more[-NEAR_MISSES:]), "answered": answered},
        "misrouted": [{"line": q.line, "labels": q.experts, "chosen": c} for q, c in zip(qs, routed, strict=True)
                      if not c or c[0] not in q.experts],
    }


def _profiles(name: str) -> dict[str, Any]:
    if name == COMMUNITY_PROFILES:
        return {spec.agent_id: {"domain": spec.domain, "skills": len(spec.skills),
                                "knowledge": len(load_knowledge(spec.agent_id))} for spec in EXPERTS.values()}
    return {f"{domain}_expert": {"description": description, "skills": skills}
            for domain, (description, skills) in PLAIN_PROFILES[name].items()}


def table(result: dict[str, Any]) -> str:
    cols = ["top1", "any_correct", "both_chosen", "empty", "mean_chosen", "precision"]
    lines = [f"{'':32}" + "".join(f"{c:>12}" for c in cols)]
    rows = [(f"route {name}", r["route"]) for name, r in result["sets"].items()]
    for name, parts in [*rows, ("keyword_baseline", result["keyword_baseline"])]:
        for part, metrics in parts.items():
            cells = "".join(f"{'-' if metrics[c] is None else metrics[c]:>12}" for c in cols)
            lines.append(f"{name + '/' + part:32}{cells}")
    for name, r in result["sets"].items():
        more = r["more_off_topic"]
        lines.append(f"{name}: off-topic answered with [] {r['off_topic']['refused']}/{r['off_topic']['questions']}, "
                     f"more {more['refused']}/{more['questions']} (near-misses {more['near_misses_refused']}/"
                     f"{more['near_misses']}); paraphrases routed right {r['paraphrases']['top1']:.0%}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--quick", action="store_true", help=f"only the first {QUICK_QUESTIONS} questions")
    parser.add_argument("--questions", help="questions.jsonl (default: $ROUTING_QUESTIONS or the shared data)")
    parser.add_argument("--profiles", default=",".join(PROFILE_SETS),
                        help=f"comma-separated subset of {', '.join(PROFILE_SETS)}")
    args = parser.parse_args(argv)
    chosen = [p.strip() for p in args.profiles.split(",") if p.strip()]
    if unknown := set(chosen) - set(PROFILE_SETS):
        parser.error(f"unknown profile sets {sorted(unknown)}; choose from {', '.join(PROFILE_SETS)}")
    result = run(args.out, args.quick, questions=args.questions, profile_sets=chosen)
    print(table(result))
    print(f"written: {args.out / 'routing.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
