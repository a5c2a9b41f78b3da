"""summary.md and the PNG plots, drawn from the result files of one run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

TARGETS = {"recall@5": 0.60, "p50_ms": 15.0, "p99_ms": 50.0, "overhead": 1.5, "batch_vs_embedder": 0.8,
           "initialize_s": 1.0, "page_p50_ms": 150.0}


def _ok(value: float | None, target: float, higher: bool) -> str:
    if value is None:
        return "n/a"
    return "met" if (value >= target if higher else value <= target) else "missed"


def summary(results: dict[str, Any]) -> str:
    """The markdown summary of one run: machine, then one section per benchmark."""
    meta = results["run"]
    lines = [f"# Benchmark results ({'quick' if meta['quick'] else 'full'} run)", "",
             f"Run {meta['started']} on {meta['machine']}, {meta['seconds']:.0f} s in all. "
             "Every number below is read from the JSON files beside this summary (`make bench` rewrites them).", ""]
    earlier = meta.get("earlier")
    if earlier:
        lines[-1:] = [f"This run: {', '.join(meta['benchmarks'])}. {', '.join(earlier['benchmarks'])}: kept from the "
                      f"run of {earlier['started']} on {earlier['machine']}.", ""]
    if "locomo" in results:
        lines += _locomo(results["locomo"])
    if "latency" in results:
        lines += _latency(results["latency"])
    if "peer" in results:
        lines += _peer(results["peer"])
    if "routing" in results:
        lines += _routing(results["routing"])
    if "ui" in results:
        lines += _ui(results["ui"])
    return "\n".join(lines) + "\n"


def _locomo(r: dict[str, Any]) -> list[str]:
    lines = ["## Retrieval quality: LoCoMo", "",
             f"{len(r['conversations'])} conversations, {r['turns']} turns stored as memories (format "
             f"`{r['format']}`), {r['questions']} questions of categories 1-4, k={r['k']}, through `recall`.", "",
             "| mode | recall@1 | recall@5 | recall@10 | hit@5 | MRR | recall@5 across conversations (min-max) |",
             "|---|---|---|---|---|---|---|"]
    for mode, m in r["modes"].items():
        o, s = m["overall"], m["recall@5_across_conversations"]
        lines.append(f"| {mode} | {o['recall@1']:.3f} | **{o['recall@5']:.3f}** | {o['recall@10']:.3f} | "
                     f"{o['hit@5']:.3f} | {o['mrr']:.3f} | {s['min']:.3f}-{s['max']:.3f} |")
    cats = list(next(iter(r["modes"].values()))["per_category"])
    lines += ["", "recall@5 per category:", "", "| mode | " + " | ".join(cats) + " |",
              "|---|" + "---|" * len(cats)]
    for mode, m in r["modes"].items():
        lines.append(f"| {mode} | " + " | ".join(f"{m['per_category'][c]['recall@5']:.3f} "
                                                 f"(n={m['per_category'][c]['questions']})" for c in cats) + " |")
    best = r["modes"]["hybrid"]["overall"]["recall@5"]
    lines += ["", f"Target recall@5 >= {TARGETS['recall@5']}: hybrid {best:.3f}, "
              f"{_ok(best, TARGETS['recall@5'], True)}.", ""]
    if "format_variants_recall@5" in r:
        lines += ["How a turn is written into memory (recall@5). Unlike the table above, each conversation is "
                  f"written here {r.get('variants_written', 'in batches without threads')}: the formats that "
                  "paste the previous or next turn into a memory are the client-side stand-ins for what `thread` "
                  "now does on the server.", "", "| format | semantic | keyword | hybrid |", "|---|---|---|---|"]
        for name, v in r["format_variants_recall@5"].items():
            lines.append(f"| `{name}` | {v['semantic']:.3f} | {v['keyword']:.3f} | {v['hybrid']:.3f} |")
        lines.append("")
    lines += ["![LoCoMo recall](locomo.png)", ""]
    return lines + _score_buckets(r["modes"])


def _score_buckets(modes: dict[str, Any]) -> list[str]:
    """What a score means: the share of the recalled turns (top 10 of every question) that are
    evidence for the question, per score bucket, in each mode."""
    if not all("score_buckets" in m for m in modes.values()):
        return []
    lines = ["One score scale: of the hits (top 10 of every question) whose score falls in a bucket, the share "
             "that are evidence turns for the question, and how many hits fell there, per mode:", "",
             "| score | " + " | ".join(modes) + " |", "|---|" + "---|" * len(modes)]
    buckets = [m["score_buckets"] for m in modes.values()]
    for i, first in enumerate(buckets[0]):
        cells = ["-" if b[i]["evidence_share"] is None else f"{b[i]['evidence_share']:.2f} ({b[i]['hits']})"
                 for b in buckets]
        lines.append(f"| {first['from']:.1f}-{first['to']:.1f} | " + " | ".join(cells) + " |")
    return lines + [""]


def _latency(r: dict[str, Any]) -> list[str]:
    lines = ["## Latency and throughput", "",
             f"`recall` (mode {r['mode']}, k={r['k']}) over {r['communities']} communities. *direct*: the same "
             "embedder and MemoryStore in process; *MCP*: a hub process (`mcp-memory-server serve --transport "
             "streamable-http`) through the MCP streamable HTTP client. Times include embedding the query.", "",
             "| memories | direct p50 | direct p99 | MCP p50 | MCP p99 | overhead p50 | overhead p99 |",
             "|---|---|---|---|---|---|---|"]
    for size, e in r["sizes"].items():
        lines.append(f"| {int(size):,} | {e['direct']['p50_ms']} ms | {e['direct']['p99_ms']} ms | "
                     f"{e['mcp']['p50_ms']} ms | {e['mcp']['p99_ms']} ms | {e['overhead_p50']}x | "
                     f"{e['overhead_p99']}x |")
    largest = list(r["sizes"])[-1]
    e = r["sizes"][largest]
    lines += ["", f"Targets at {int(largest):,}: MCP p50 <= {TARGETS['p50_ms']:.0f} ms "
              f"({_ok(e['mcp']['p50_ms'], TARGETS['p50_ms'], False)}), p99 <= {TARGETS['p99_ms']:.0f} ms "
              f"({_ok(e['mcp']['p99_ms'], TARGETS['p99_ms'], False)}), overhead <= {TARGETS['overhead']} "
              f"({_ok(e['overhead_p50'], TARGETS['overhead'], False)}).", ""]
    for size, entry in r["sizes"].items():
        if "concurrency" in entry:
            lines += [f"Concurrent MCP clients at {int(size):,} memories:", "",
                      "| clients | recalls/s | p50 | p99 |", "|---|---|---|---|"]
            for c in entry["concurrency"]:
                lines.append(f"| {c['clients']} | {c['throughput_per_s']} | {c['p50_ms']} ms | {c['p99_ms']} ms |")
            lines.append("")
    lines += _tools(r)
    w = r["writes"]
    lines += ["Writes through MCP:", "",
              f"- single `remember`: p50 {w['single_remember']['p50_ms']} ms, p99 {w['single_remember']['p99_ms']} ms",
              f"- batch `remember_many` ({w['batch']['batch_size']} a call): {w['batch']['per_s']} memories/s; the "
              f"embedder alone: {w['embedder_per_s']}/s -> {w['batch_vs_embedder']:.0%} "
              f"(target >= {TARGETS['batch_vs_embedder']:.0%}, {_ok(w['batch_vs_embedder'], 0.8, True)})"]
    c = r["cold_start"]
    lines += [f"- cold start (stdio, {c['memories']:,} memories, best of {len(c['runs'])}): process start -> "
              f"`initialize` answered {c['initialize_s']} s (target <= 1 s, {_ok(c['initialize_s'], 1.0, False)}), "
              f"-> first `recall` answered {c['first_recall_s']} s", "",
              "![recall latency](latency.png)", ""]
    if "concurrency" in e:
        lines += ["![concurrent clients](concurrency.png)", ""]
    return lines


def _tools(r: dict[str, Any]) -> list[str]:
    """Every tool through MCP, the floors of the same run, the issue-10 targets, two hubs vs one."""
    sizes = [s for s, e in r["sizes"].items() if "tools" in e]
    if not sizes:
        return []
    names = list(r["sizes"][sizes[0]]["tools"])
    lines = ["### Every tool through MCP, and the floor", "",
             "p50 / p99 through the MCP client (hub without query cache: every recall embeds its query); "
             "the floors in process in the same run: the embedder alone on one query, the engine alone "
             "(precomputed query vector), a recall whose query vector is cached.", "",
             "| memories | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for size in sizes:
        lines.append(_row(size, r["sizes"][size]["tools"], names))
    floors = list(r["sizes"][sizes[0]]["floors"])
    lines += ["", "| memories | " + " | ".join(floors) + " |", "|---|" + "---|" * len(floors)]
    for size in sizes:
        lines.append(_row(size, r["sizes"][size]["floors"], floors))
    small, large = r["sizes"][sizes[0]], r["sizes"][sizes[-1]]
    embed, hybrid = small["floors"]["embed_one_query"]["p50_ms"], small["tools"]["recall_hybrid"]["p50_ms"]
    stats, listed = small["tools"]["stats"]["p50_ms"], small["tools"]["list_communities"]["p50_ms"]
    lines += ["", "Targets (issue 10):", "",
              f"- {int(sizes[0]):,} memories: hybrid recall p50 {hybrid} ms <= 2x the embedder's {embed} ms: "
              f"{hybrid / embed:.2f}x, {_ok(hybrid / embed, 2.0, False)}; `stats` p50 {stats} ms and "
              f"`list_communities` {listed} ms <= 5 ms: {_ok(max(stats, listed), 5, False)}",
              f"- {int(sizes[-1]):,} memories: hybrid p50 {large['tools']['recall_hybrid']['p50_ms']} ms <= 30 ms "
              f"({_ok(large['tools']['recall_hybrid']['p50_ms'], 30, False)}), p99 "
              f"{large['tools']['recall_hybrid']['p99_ms']} ms <= 80 ms "
              f"({_ok(large['tools']['recall_hybrid']['p99_ms'], 80, False)})"]
    for size in sizes:
        most = max(r["sizes"][size].get("concurrency", []), key=lambda c: c["clients"], default=None)
        if most is not None and int(size) >= 10_000:
            lines.append(f"- {most['clients']} clients at {int(size):,}: {most['throughput_per_s']} recalls/s >= 100 "
                         f"({_ok(most['throughput_per_s'], 100, True)}), p99 {most['p99_ms']} ms <= 300 ms "
                         f"({_ok(most['p99_ms'], 300, False)})")
    two = r.get("two_hubs")
    if two:
        lines += ["", f"Two hubs vs one on one Milvus server ({two['server']}; {two['memories']:,} memories, "
                  f"{two['clients']} concurrent clients, FLAT index):", "",
                  "| hubs | recalls/s | p50 | p99 |", "|---|---|---|---|"]
        for n in (1, 2):
            h = two[f"hubs_{n}"]
            lines.append(f"| {n} | {h['throughput_per_s']} | {h['p50_ms']} ms | {h['p99_ms']} ms |")
    return [*lines, "", "![every tool](tools.png)", ""]


def _row(size: str, timings: dict[str, Any], names: list[str]) -> str:
    cells = [f"{timings[n]['p50_ms']} / {timings[n]['p99_ms']} ms" for n in names]
    return f"| {int(size):,} | " + " | ".join(cells) + " |"


def _peer(r: dict[str, Any]) -> list[str]:
    lines = ["## Side by side with mem0", "",
             f"The same {r['turns']} LoCoMo turns ({', '.join(r['conversations'])}) written one call at a time, "
             f"{r['questions']} questions, k=10, in process, same embedder weights.", ""]
    rows = [("mcp-memory-server", r["mcp-memory-server"]), ("mem0", r["mem0"])]
    lines += ["| system | recall@5 | add p50 | add p99 | search p50 | search p99 |", "|---|---|---|---|---|---|"]
    for name, v in rows:
        if "error" in v:
            lines.append(f"| {name} | failed: {v['error'][:200]} | | | | |")
        else:
            lines.append(f"| {name} ({v['mode']}) | {v['recall@5']:.3f} | {v['add']['p50_ms']} ms | "
                         f"{v['add']['p99_ms']} ms | {v['search']['p50_ms']} ms | {v['search']['p99_ms']} ms |")
    return lines + [""]


def _routing(r: dict[str, Any]) -> list[str]:
    if "error" in r:
        return ["## Routing", "", f"Not run: {r['error']}", ""]
    lines = ["## Routing", "",
             "`route` on the routing questions with four sets of expert profiles: the community's (long "
             "profiles and starter knowledge, `openagents_bridge/experts.py`) and three sets of plain profiles (one "
             "sentence and 3-4 skills per expert, nothing else: `benchmarks/routing_texts.py`), the plain ones also "
             "without the glossary (`mcp_memory_server/glossary.py`: neither the question read with the "
             "definitions of its names nor the knowledge a profile implies); the keyword matcher "
             "of the original write-up as a baseline. *tune*: the even lines, on which the routing parameters were "
             "chosen; *held_out*: the odd lines. Details in `routing.json`.", "",
             "| router | part | top-1 | any correct | both chosen | experts per question | precision | no answer |",
             "|---|---|---|---|---|---|---|---|"]
    rows = [(f"`route`, {name.replace(' without', ' profiles without the')}" if " without " in name
             else f"`route`, {name} profiles", s["route"]) for name, s in r.get("sets", {}).items()]
    for label, parts in [*rows, ("keyword baseline", r.get("keyword_baseline", {}))]:
        for part, m in parts.items():
            cells = " | ".join("-" if m.get(c) is None else f"{m[c]:.3f}"
                               for c in ("top1", "any_correct", "both_chosen", "mean_chosen", "precision", "empty"))
            lines.append(f"| {label} | {part} | {cells} |")
    lines += ["", "Questions nobody should take, answered with no expert (`[]`), and paraphrases (no word shared with "
              "the community's profiles) routed right:", "",
              "| profiles | the benchmark's off-topic probes | more off-topic probes | of which near-misses | "
              "paraphrases | median `route` time |", "|---|---|---|---|---|---|"]
    for name, s in r.get("sets", {}).items():
        o, more = s["off_topic"], s["more_off_topic"]
        lines.append(f"| {name} | {o['refused']} of {o['questions']} | {more['refused']} of {more['questions']} | "
                     f"{more['near_misses_refused']} of {more['near_misses']} | {s['paraphrases']['top1']:.0%} | "
                     f"{s.get('route_ms_median', '-')} ms |")
    return lines + [""]


STATS_PAGES = ("communities", "memories", "experts")  # the pages that list communities, from `stats`


def _ui(r: dict[str, Any]) -> list[str]:
    if "error" in r:
        return ["## Web view", "", f"Not run: {r['error']}", ""]
    browser = r.get("browser", {})
    lines = ["## Web view", "",
             f"Page loads at {r['memories']:,} memories in {r['communities']} communities, signed in with an "
             f"{r['viewer']}; over HTTP, request to last byte (up to {r['loads']} loads a page after the first), "
             "and in headless Chromium, navigation start to load event.", "",
             "| page | first load | p50 | p99 | p50 without its `stats` call | in the browser p50 |",
             "|---|---|---|---|---|---|"]
    for name, p in r["pages"].items():
        shown = browser.get(name, {}).get("p50_ms")
        less = f"{p['p50_less_stats_ms']} ms" if name in STATS_PAGES else "(no `stats`)"
        lines.append(f"| {name} | {p['first_ms']} ms | {p['p50_ms']} ms (n={p['n']}) | {p['p99_ms']} ms | {less} | "
                     f"{'-' if shown is None else f'{shown} ms'} |")
    s = r["search"]
    lines += ["", f"A search (hybrid recall in one community) and its page: p50 {s['p50_ms']} ms, "
              f"p99 {s['p99_ms']} ms, {s['p50_less_stats_ms']} ms without `stats`. `stats` within those "
              f"pages (every page that lists communities asks it): p50 {r['stats']['p50_ms']} ms.",
              f"Target: every page p50 <= {TARGETS['page_p50_ms']:.0f} ms: worst {r['worst_p50_ms']} ms, "
              f"{_ok(r['worst_p50_ms'], TARGETS['page_p50_ms'], False)} (without `stats`: worst "
              f"{r['worst_p50_less_stats_ms']} ms).", ""]
    return lines


def plots(results: dict[str, Any], out: Path) -> list[Path]:
    """Draw the PNGs for the benchmarks present; return their paths."""
    written = []
    if "locomo" in results:
        r = results["locomo"]
        calibrated = all("score_buckets" in m for m in r["modes"].values())
        fig, axes = plt.subplots(1, 3 if calibrated else 2, figsize=(16 if calibrated else 11, 4))
        left, right = axes[0], axes[1]
        modes = list(r["modes"])
        for i, metric in enumerate(["recall@1", "recall@5", "recall@10", "mrr"]):
            left.bar([j + i * 0.2 for j in range(len(modes))], [r["modes"][m]["overall"][metric] for m in modes],
                     0.2, label=metric)
        left.set_xticks([j + 0.3 for j in range(len(modes))], modes)
        left.axhline(TARGETS["recall@5"], color="k", ls="--", lw=0.8, label="recall@5 target")
        left.set_ylim(0, 1)
        left.set_title("LoCoMo evidence recall (categories 1-4)")
        left.legend(fontsize=8)
        cats = list(r["modes"]["hybrid"]["per_category"])
        for i, m in enumerate(modes):
            right.bar([j + i * 0.27 for j in range(len(cats))], [r["modes"][m]["per_category"][c]["recall@5"]
                                                                 for c in cats], 0.27, label=m)
        right.set_xticks([j + 0.27 for j in range(len(cats))], cats)
        right.set_ylim(0, 1)
        right.set_title("recall@5 per question category")
        right.legend(fontsize=8)
        if calibrated:
            ax = axes[2]
            for m in modes:
                points = [(b["mean_score"], b["evidence_share"]) for b in r["modes"][m]["score_buckets"] if b["hits"]]
                ax.plot([x for x, _ in points], [y for _, y in points], "-o", label=m)
            ax.plot([0, 1], [0, 1], color="k", ls="--", lw=0.8)
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1)
            ax.set_xlabel("score (mean of the bucket)")
            ax.set_ylabel("share of hits that are evidence")
            ax.set_title("one score scale (top-10 hits)")
            ax.legend(fontsize=8)
        written.append(_save(fig, out / "locomo.png"))
    if "latency" in results:
        r = results["latency"]
        sizes = [int(s) for s in r["sizes"]]
        fig, ax = plt.subplots(figsize=(7, 4))
        for path, style in (("direct", "-o"), ("mcp", "-s")):
            for p in ("p50_ms", "p99_ms"):
                ax.plot(sizes, [r["sizes"][str(s)][path][p] for s in sizes], style,
                        label=f"{'MCP' if path == 'mcp' else 'direct'} {p[:3]}")
        ax.axhline(TARGETS["p50_ms"], color="g", ls="--", lw=0.8, label="p50 target")
        ax.axhline(TARGETS["p99_ms"], color="r", ls="--", lw=0.8, label="p99 target")
        ax.set_xscale("log")
        ax.set_xlabel("memories (20 communities)")
        ax.set_ylabel("recall latency, ms")
        ax.set_title("recall latency (k=10, hybrid)")
        ax.legend(fontsize=8)
        written.append(_save(fig, out / "latency.png"))
        conc = r["sizes"][str(sizes[-1])].get("concurrency")
        if conc:
            fig, ax = plt.subplots(figsize=(7, 4))
            clients = [c["clients"] for c in conc]
            ax.bar([str(c) for c in clients], [c["throughput_per_s"] for c in conc], color="tab:blue")
            ax.set_xlabel("concurrent MCP clients")
            ax.set_ylabel("recalls per second", color="tab:blue")
            twin = ax.twinx()
            twin.plot([str(c) for c in clients], [c["p99_ms"] for c in conc], "-o", color="tab:red")
            twin.set_ylabel("p99 latency, ms", color="tab:red")
            ax.set_title(f"concurrent clients at {sizes[-1]:,} memories")
            written.append(_save(fig, out / "concurrency.png"))
        with_tools = [s for s in sizes if "tools" in r["sizes"][str(s)]]
        if with_tools:
            fig, ax = plt.subplots(figsize=(9, 4))
            names = list(r["sizes"][str(with_tools[0])]["tools"])
            width = 0.8 / len(with_tools)
            for i, size in enumerate(with_tools):
                tools = r["sizes"][str(size)]["tools"]
                ax.bar([j + i * width for j in range(len(names))], [tools[n]["p50_ms"] for n in names], width,
                       label=f"{size:,} memories")
            ax.set_xticks([j + 0.4 - width / 2 for j in range(len(names))], names, rotation=20, fontsize=8)
            ax.set_ylabel("p50 through MCP, ms")
            ax.set_title("every tool through MCP")
            ax.legend(fontsize=8)
            written.append(_save(fig, out / "tools.png"))
    return written


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
