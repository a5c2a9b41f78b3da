"""Smoke run of benchmarks/routing.py in quick mode, on questions written for this test."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from benchmarks import routing as bench
from openagents_bridge.experts import EXPERTS, load_knowledge
from tests.words import terms

QUESTIONS = [
    {"question": "Why does my list comprehension raise NameError inside a class body?", "experts": ["python"]},
    {"question": "How do I pick nlist for an IVF index on ten million embeddings?", "experts": ["milvus"]},
    {"question": "My pod restarts every few minutes with exit code 137", "experts": ["devops"]},
    {"question": "Our FastAPI app cannot reach the vector database from inside docker compose",
     "experts": ["python", "devops"]},
]


def test_quick_routing_benchmark_writes_every_metric_for_route_and_the_keyword_baseline(tmp_path: Path) -> None:
    questions = tmp_path / "questions.jsonl"
    questions.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    result = bench.run(tmp_path / "out", quick=True, questions=questions)

    written = json.loads((tmp_path / "out" / "routing.json").read_text())
    assert written == json.loads(json.dumps(result))
    for name in ("route", "keyword_baseline"):
        assert set(written[name]) == {"tune", "held_out", "all"}
        metrics = written[name]["all"]
        assert metrics["questions"] == len(QUESTIONS) and metrics["two_expert_questions"] == 1
        for field in ("top1", "any_correct", "empty", "both_chosen", "mean_chosen"):
            assert 0 <= metrics[field] <= (3 if field == "mean_chosen" else 1), (name, field)
    assert written["off_topic"]["questions"] == len(bench.OFF_TOPIC) and 0 <= written["off_topic"]["empty"] <= 1
    assert written["paraphrases"]["questions"] == len(bench.PARAPHRASES)
    assert len(written["paraphrases"]["chosen"]) == len(bench.PARAPHRASES)
    assert set(written["experts"]) == set(EXPERTS)
    assert written["experts"]["milvus_expert"]["knowledge"] == len(load_knowledge("milvus_expert"))


def test_keyword_baseline_takes_the_first_matching_list_in_order() -> None:
    assert bench.keyword_route("Flask app in Docker") == ["python"]  # python's list comes first
    assert bench.keyword_route("vector search on kubernetes") == ["milvus"]
    assert bench.keyword_route("docker compose restarts") == ["devops"]
    assert bench.keyword_route("pod stuck in ContainerCreating") == []


def test_benchmark_paraphrases_share_no_word_with_any_expert_profile() -> None:
    profile_words = set().union(*(terms(s.description + " " + " ".join(s.skills)) for s in EXPERTS.values()))
    for text, domain in bench.PARAPHRASES:
        assert not terms(text) & profile_words, text
        assert domain in {s.domain for s in EXPERTS.values()}


def test_every_expert_has_starter_knowledge_tagged_with_its_domain() -> None:
    for spec in EXPERTS.values():
        items = load_knowledge(spec.agent_id)
        assert 30 <= len(items) <= 60
        assert all(i.kind == "knowledge" and i.agent_id == spec.agent_id and i.tags == [spec.domain] for i in items)
        assert len({i.content for i in items}) == len(items)


def test_expert_specs_are_frozen_and_cover_the_three_domains() -> None:
    assert set(EXPERTS) == {"python_expert", "milvus_expert", "devops_expert"}
    assert {s.domain for s in EXPERTS.values()} == {"python", "milvus", "devops"}
    spec = EXPERTS["python_expert"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.domain = "other"  # type: ignore[misc]
    assert all(s.description and s.skills and s.knowledge_file.endswith(".jsonl") for s in EXPERTS.values())
