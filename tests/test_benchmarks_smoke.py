"""Tiny-size runs of every benchmark, so `make bench` keeps working. They check the shape of what
the benchmarks write, not the numbers (those come from `make bench`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks import __main__ as runner
from benchmarks import browser, latency, locomo, peer_mem0, report, ui

# A LoCoMo-shaped conversation written for this test (the real data set is not needed).
CONVERSATION: dict[str, Any] = {
    "speaker_a": "Ada", "speaker_b": "Bo",
    "session_1_date_time": "1:56 pm on 8 May, 2023",
    "session_1": [
        {"speaker": "Ada", "dia_id": "D1:1", "text": "I adopted a grey kitten called Pixel yesterday."},
        {"speaker": "Bo", "dia_id": "D1:2", "text": "Lovely! I started pottery classes on Tuesdays.",
         "blip_caption": "a photo of a clay bowl"},
        {"speaker": "Ada", "dia_id": "D1:3", "text": "My sister moved to Lisbon for a new job."},
    ],
    "session_2_date_time": "10:00 am on 20 June, 2023",
    "session_2": [
        {"speaker": "Bo", "dia_id": "D2:1", "text": "I ran my first half marathon in Porto last weekend."},
        {"speaker": "Ada", "dia_id": "D2:2", "text": "Pixel knocked my laptop off the desk again."},
    ],
    "qa": [
        {"question": "What is the name of Ada's kitten?", "answer": "Pixel", "evidence": ["D1:1"], "category": 4},
        {"question": "Where did Bo run a half marathon?", "answer": "Porto", "evidence": ["D2:1"], "category": 1},
        {"question": "When did Bo start pottery?", "answer": "May 2023", "evidence": ["D1:2; D:1:2"], "category": 2},
        {"question": "Is this adversarial?", "adversarial_answer": "x", "evidence": ["D1:3"], "category": 5},
        {"question": "Cites a missing turn", "answer": "-", "evidence": ["D9:9"], "category": 3},
    ],
}
METRICS = {"recall@1", "recall@5", "recall@10", "hit@5", "mrr", "questions"}


@pytest.fixture
def locomo_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "locomo"
    directory.mkdir()
    (directory / "conv-1.json").write_text(json.dumps(CONVERSATION))
    return directory


def test_locomo_loader_keeps_scorable_questions_of_categories_1_to_4(locomo_dir: Path) -> None:
    (conv,) = locomo.load(locomo_dir)
    assert [t.dia_id for t in conv.turns] == ["D1:1", "D1:2", "D1:3", "D2:1", "D2:2"]
    assert [(q.category, q.evidence) for q in conv.questions] == [(4, ["D1:1"]), (1, ["D2:1"]),
                                                                   (2, ["D1:2"])]
    text = locomo.FORMATS[locomo.DEFAULT_FORMAT](conv.turns, 1)  # as a client writes a turn: no context
    assert text.startswith("[8 May, 2023] Bo: Lovely!") and "a clay bowl" in text and "Ada: I adopted" not in text
    assert "Ada: I adopted" in locomo.FORMATS["speaker+date+caption+previous"](conv.turns, 1)
    assert locomo.session_of(conv.turns[3]) == "session_2"


def test_locomo_scores_every_mode_overall_per_category_and_per_conversation(locomo_dir: Path,
                                                                            tmp_path: Path) -> None:
    result = locomo.run(tmp_path / "out", quick=True, locomo_dir=locomo_dir, formats=["plain"])
    assert result["turns"] == 5 and result["questions"] == 3
    assert set(result["modes"]) == {"semantic", "keyword", "hybrid"}
    for name, mode in result["modes"].items():
        assert set(mode["overall"]) == METRICS
        assert set(mode["per_category"]) == {"single-hop", "multi-hop", "temporal"}
        assert set(mode["per_conversation"]) == {"conv-1"}
        assert all(0.0 <= mode["overall"][m] <= 1.0 for m in METRICS - {"questions"})
        buckets = mode["score_buckets"]
        assert [b["from"] for b in buckets] == [i / 10 for i in range(10)]
        hits = sum(b["hits"] for b in buckets)  # every hit of every question (5 turns, k=10) in one bucket
        assert hits == 3 * 5 if name != "keyword" else 0 < hits <= 3 * 5  # keyword: only turns sharing a word
        for b in buckets:
            assert (b["hits"] == 0) == (b["evidence_share"] is None)
            assert b["mean_score"] is None or b["from"] <= b["mean_score"] <= b["to"]
    assert set(result["format_variants_recall@5"]) == {"plain"}
    assert "without threads" in result["variants_written"]


def test_latency_measures_both_paths_concurrency_writes_and_cold_start(tmp_path: Path) -> None:
    tiny = latency.Scale(sizes=(60,), queries=4, clients=(1, 2), per_client=2, writes=6, singles=2,
                         cold_starts=1, unique=20, two_hubs=(40, 2))
    result = latency.run(tmp_path, quick=True, scale=tiny)
    entry = result["sizes"]["60"]
    for path in ("direct", "direct_semantic", "mcp"):
        assert entry[path]["n"] == 4 and entry[path]["p50_ms"] > 0
    assert set(entry["tools"]) == {"recall_hybrid", "recall_semantic", "recall_keyword", "remember", "stats",
                                   "list_communities", "route"}
    assert all(t["n"] == 4 and t["p50_ms"] > 0 for t in entry["tools"].values())
    assert all(f["n"] == 4 and f["p50_ms"] > 0 for f in entry["floors"].values())
    two = result["two_hubs"]
    assert two["memories"] == 40 and [two[h]["recalls"] for h in ("hubs_1", "hubs_2")] == [4, 4]
    summary = "\n".join(report._latency(result))
    assert "### Every tool through MCP, and the floor" in summary and "Two hubs vs one" in summary
    assert [p.name for p in report.plots({"latency": result}, tmp_path)] == ["latency.png", "concurrency.png",
                                                                            "tools.png"]
    assert entry["overhead_p50"] > 0
    assert [c["clients"] for c in entry["concurrency"]] == [1, 2]
    assert [c["recalls"] for c in entry["concurrency"]] == [2, 4]
    assert result["writes"]["batch"]["memories"] == 6 and result["writes"]["single_remember"]["n"] == 2
    assert result["writes"]["batch_vs_embedder"] > 0
    assert 0 < result["cold_start"]["initialize_s"] <= result["cold_start"]["first_recall_s"]


def test_peer_comparison_reports_both_systems_or_what_failed(locomo_dir: Path, tmp_path: Path) -> None:
    result = peer_mem0.run(tmp_path, quick=True, locomo_dir=locomo_dir)
    ours = result["mcp-memory-server"]
    assert ours["add"]["n"] == 5 and ours["search"]["n"] == 3 and 0 <= ours["recall@5"] <= 1
    peer = result["mem0"]
    assert ("error" in peer) or (peer["add"]["n"] == 5 and 0 <= peer["recall@5"] <= 1)


def test_runner_writes_json_summary_and_plots(locomo_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    code = runner.main(["--quick", "--out", str(out), "--locomo-dir", str(locomo_dir), "--only", "locomo"])
    assert code == 0
    written = json.loads((out / "locomo.json").read_text())
    assert written["modes"]["hybrid"]["overall"]["questions"] == 3
    assert json.loads((out / "run.json").read_text())["benchmarks"] == ["locomo"]
    summary = (out / "summary.md").read_text()
    assert "## Retrieval quality: LoCoMo" in summary and "![LoCoMo recall](locomo.png)" in summary
    assert (out / "locomo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_partial_run_keeps_the_other_benchmarks_in_the_summary(locomo_dir: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "results"
    assert runner.main(["--quick", "--out", str(out), "--locomo-dir", str(locomo_dir), "--only", "locomo"]) == 0
    first = json.loads((out / "run.json").read_text())["started"]
    questions = tmp_path / "questions.jsonl"
    questions.write_text(json.dumps({"question": "My pod restarts with exit code 137", "experts": ["devops"]}) + "\n")
    monkeypatch.setenv("ROUTING_QUESTIONS", str(questions))
    assert runner.main(["--quick", "--out", str(out), "--only", "routing"]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["benchmarks"] == ["routing"] and run["earlier"]["benchmarks"] == ["locomo"]
    assert run["earlier"]["started"] == first
    summary = (out / "summary.md").read_text()
    assert "## Retrieval quality: LoCoMo" in summary and "## Routing" in summary
    assert f"locomo: kept from the run of {first}" in summary
    # a full-size run does not borrow quick results
    assert runner._earlier(out, ["routing"], quick=False) == {}


def test_report_draws_latency_plots_from_a_result(tmp_path: Path) -> None:
    point = {"p50_ms": 5.0, "p90_ms": 6.0, "p99_ms": 9.0, "mean_ms": 5.5, "n": 3}
    conc = [{"clients": 1, "throughput_per_s": 50.0, **point}]
    results = {"latency": {"sizes": {"10": {"direct": point, "mcp": point, "concurrency": conc}}}}
    paths = report.plots(results, tmp_path)
    assert [p.name for p in paths] == ["latency.png", "concurrency.png"]


def test_ui_benchmark_times_every_page_of_the_web_view_signed_in(tmp_path: Path) -> None:
    result = ui.run(tmp_path, quick=True, scale=ui.Scale(size=60, loads=2, browser_loads=1, unique=20))
    assert set(result["pages"]) == set(ui.PAGES)
    for page in result["pages"].values():
        assert page["n"] == 2 and 0 < page["p50_ms"] and 0 < page["first_ms"]
        assert 0 < page["p50_less_stats_ms"] <= page["p50_ms"]
    assert result["search"]["n"] == 2 and result["stats"]["n"] == 4 * 3  # 3 pages and the search, 3 loads each
    assert result["worst_p50_ms"] == max(p["p50_ms"] for n, p in result["pages"].items() if "JSON" not in n)
    assert ("browser" in result) == (browser.missing() is None)
    meta = {"started": "now", "machine": "here", "quick": True, "seconds": 1.0, "benchmarks": ["ui"]}
    summary = report.summary({"run": meta, "ui": result})
    assert "## Web view" in summary and "| communities |" in summary and "Target: every page p50" in summary
