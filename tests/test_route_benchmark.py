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


def test_quick_routing_benchmark_writes_every_metric_for_each_profile_set_and_the_keyword_baseline(
        tmp_path: Path) -> None:
    questions = tmp_path / "questions.jsonl"
    questions.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    result = bench.run(tmp_path / "out", quick=True, questions=questions)

    written = json.loads((tmp_path / "out" / "routing.json").read_text())
    assert written == json.loads(json.dumps(result))
    assert list(written["sets"]) == ["community", "plain", "plain-study", "plain-terse", "plain without glossary",
                                     "plain-study without glossary", "plain-terse without glossary"]
    for name, parts in [*((n, s["route"]) for n, s in written["sets"].items()),
                        ("keyword_baseline", written["keyword_baseline"])]:
        assert set(parts) == {"tune", "held_out", "all"}
        metrics = parts["all"]
        assert metrics["questions"] == len(QUESTIONS) and metrics["two_expert_questions"] == 1
        for field in ("top1", "any_correct", "empty", "both_chosen", "mean_chosen"):
            assert 0 <= metrics[field] <= (3 if field == "mean_chosen" else 1), (name, field)
    for judged in written["sets"].values():
        assert judged["off_topic"]["questions"] == len(bench.OFF_TOPIC) == len(judged["off_topic"]["chosen"])
        more = judged["more_off_topic"]
        assert more["questions"] == len(bench.MORE_OFF_TOPIC) and 0 <= more["near_misses_refused"] <= more["refused"]
        assert len(more["answered"]) == more["questions"] - more["refused"]
        assert len(judged["paraphrases"]["chosen"]) == len(bench.PARAPHRASES)
    assert set(written["sets"]["community"]["profiles"]) == set(EXPERTS)
    community = written["sets"]["community"]["profiles"]
    assert community["milvus_expert"]["knowledge"] == len(load_knowledge("milvus_expert"))
    assert written["sets"]["plain"]["profiles"]["milvus_expert"]["description"].startswith("Specialist in Milvus")
    assert written["sets"]["plain without glossary"]["profiles"] == written["sets"]["plain"]["profiles"]


def test_plain_benchmark_profiles_are_one_sentence_and_three_or_four_skills() -> None:
    for profiles in bench.PLAIN_PROFILES.values():
        assert set(profiles) == {"python", "milvus", "devops"}
        for description, skills in profiles.values():
            assert description.count(".") <= 1 and 3 <= len(skills) <= 4


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
