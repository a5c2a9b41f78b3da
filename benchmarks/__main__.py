"""`python -m benchmarks [--quick]`: every benchmark in one run, then summary.md and the plots.

Writes one JSON file per benchmark (locomo.json, latency.json, peer.json, routing.json, ui.json), run.json
(machine, sizes, durations), summary.md and PNGs into --out (default benchmarks/results; the quick
run defaults to benchmarks/results/quick). A benchmark that fails is recorded with its error and
the others still run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import latency, locomo, peer_mem0, report, ui

REPO = Path(__file__).resolve().parents[1]
NAMES = ("locomo", "latency", "peer", "routing", "ui")


def _routing(out: Path, quick: bool) -> dict[str, Any]:
    try:
        from . import routing  # owned by the routing work; the hook stays if it is absent
    except ImportError as exc:
        return {"error": f"benchmarks/routing.py not available: {exc}"}
    return routing.run(out, quick)


def _earlier(out: Path, chosen: Sequence[str], quick: bool) -> dict[str, Any]:
    """Results in `out` of the benchmarks not run now, from the previous run of the same size:
    {"results", "benchmarks", "started", "machine"}; empty when there are none."""
    try:
        previous = json.loads((out / "run.json").read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    if previous.get("quick") != quick:
        return {}
    kept: dict[str, Any] = {}
    for name in NAMES:
        if name in chosen:
            continue
        try:
            kept[name] = json.loads((out / f"{name}.json").read_text("utf-8"))
        except (OSError, ValueError):
            continue
    if not kept:
        return {}
    before = previous.get("earlier") or {}
    started = before.get("started", previous.get("started")) if set(kept) <= set(before.get("benchmarks", [])) \
        else previous.get("started")
    return {"results": kept, "benchmarks": sorted(kept), "started": started,
            "machine": before.get("machine", previous.get("machine"))}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))
        cpu = model
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} CPU ({cpu}), Python {platform.python_version()}, {platform.system()}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a few minutes")
    parser.add_argument("--out", type=Path, default=None, help="results directory")
    parser.add_argument("--locomo-dir", default=None,
                        help="LoCoMo conversations (default $LOCOMO_DIR or <repo>/../shared/data/locomo)")
    parser.add_argument("--only", default=",".join(NAMES), help=f"comma-separated subset of {', '.join(NAMES)}")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    out: Path = args.out or (REPO / "benchmarks" / "results" / ("quick" if args.quick else ""))
    out.mkdir(parents=True, exist_ok=True)
    chosen = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = set(chosen) - set(NAMES)
    if unknown:
        parser.error(f"unknown benchmarks {sorted(unknown)}; choose from {', '.join(NAMES)}")

    jobs: dict[str, Callable[[], dict[str, Any]]] = {
        "locomo": lambda: locomo.run(out, args.quick, locomo_dir=args.locomo_dir),
        "latency": lambda: latency.run(out, args.quick),
        "peer": lambda: peer_mem0.run(out, args.quick, locomo_dir=args.locomo_dir),
        "routing": lambda: _routing(out, args.quick),
        "ui": lambda: ui.run(out, args.quick),
    }
    started = time.perf_counter()
    results: dict[str, Any] = {}
    durations: dict[str, float] = {}
    for name in chosen:
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        t = time.perf_counter()
        try:
            results[name] = jobs[name]()
        except Exception as exc:  # one broken benchmark must not lose the others' numbers
            results[name] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(limit=6)}
        durations[name] = round(time.perf_counter() - t, 1)
        (out / f"{name}.json").write_text(json.dumps(results[name], indent=2) + "\n", "utf-8")
        print(f"[bench] {name} done in {durations[name]} s", file=sys.stderr, flush=True)
    results["run"] = {"started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
                      "quick": args.quick, "seconds": round(time.perf_counter() - started, 1),
                      "durations_s": durations, "benchmarks": chosen}
    earlier = _earlier(out, chosen, args.quick)
    if earlier:  # a partial run: the summary keeps the other benchmarks' numbers, saying where they are from
        results.update(earlier.pop("results"))
        results["run"]["earlier"] = earlier
    (out / "run.json").write_text(json.dumps(results["run"], indent=2) + "\n", "utf-8")
    usable = {k: v for k, v in results.items() if k == "run" or "error" not in v or k in ("routing",)}
    (out / "summary.md").write_text(report.summary(usable), "utf-8")
    report.plots(usable, out)
    for name in chosen:
        if "error" in results[name]:
            print(f"[bench] {name} FAILED: {results[name]['error']}", file=sys.stderr)
    print(f"[bench] written to {out}", file=sys.stderr)
    return 1 if any("error" in results[n] for n in chosen if n != "routing") else 0


if __name__ == "__main__":
    sys.exit(main())
