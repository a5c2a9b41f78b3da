"""Export and import throughput: `python -m benchmarks.transfer [N] [--reembed M] [--out FILE]`.

N memories (default 100,000) are bulk-loaded into a Milvus Lite database (synthetic.py: realistic
sentences over 20 communities, vectors precomputed), then timed through the command line's own
code on the store directly (transfer_files.export_command / import_command, as
`mcp-memory-server export` / `import` run them):

- export without vectors, and with `--vectors`;
- import of the `--vectors` export into an empty store (same embedder: the vectors are kept);
- import of the first M lines (default 10,000) of the export without vectors into an empty store,
  which embeds every memory again with the local model (the slow path: another embedder, or a file
  without vectors).

Each import includes its check pass over the whole file. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

from mcp_memory_server.config import Settings
from mcp_memory_server.embeddings import LocalEmbedder
from mcp_memory_server.keywords import KeywordStats
from mcp_memory_server.memory import Runtime
from mcp_memory_server.models import MemoryRecord, memory_id
from mcp_memory_server.store import MemoryStore
from mcp_memory_server.transfer_files import export_command, import_command

from . import synthetic

COMMUNITIES = [f"team-{i:02d}" for i in range(20)]


def build(db: Path, n: int, settings: Settings) -> None:
    embedder = LocalEmbedder()
    texts = synthetic.sentences(n)
    vectors = synthetic.vectors(texts, embedder, unique=min(n, 2000))
    store = MemoryStore(str(db), settings.memory_collection, embedder.dimension)
    store.open()
    stats: dict[str, KeywordStats] = {}
    try:
        for lo in range(0, n, 5000):
            records = []
            for i in range(lo, min(n, lo + 5000)):
                community = COMMUNITIES[i % len(COMMUNITIES)]
                records.append(MemoryRecord(
                    id=memory_id(community, texts[i]), content=texts[i], community=community, kind="note",
                    tags=["bench"], agent_id="bench", created_at=1_700_000_000_000 + i,
                    content_hash=hashlib.sha256(texts[i].encode()).hexdigest(), metadata={"i": i}))
            synthetic.bulk_insert(store, records, vectors[lo:lo + len(records)], stats)
    finally:
        store.close()


def timed(what: str, work: Any, *args: Any) -> float:
    start = time.perf_counter()
    status = anyio.run(work, *args)
    took = time.perf_counter() - start
    if status != 0:
        raise RuntimeError(f"{what} failed (exit {status})")
    return took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("n", type=int, nargs="?", default=100_000)
    parser.add_argument("--reembed", type=int, default=10_000)
    parser.add_argument("--out")
    args = parser.parse_args()
    results: dict[str, Any] = {"memories": args.n, "cpus": os.cpu_count(), "machine": platform.machine(),
                               "python": platform.python_version()}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)

        def settings(name: str) -> Settings:
            return Settings(milvus_uri=str(root / name))

        start = time.perf_counter()
        build(root / "source.db", args.n, settings("source.db"))
        results["load_s"] = round(time.perf_counter() - start, 1)
        plain, full = root / "plain.jsonl", root / "vectors.jsonl"
        for name, path, vectors in (("export", plain, False), ("export_vectors", full, True)):
            took = timed(name, export_command, Runtime(settings("source.db")), None, str(path), vectors, False)
            results[name] = {"s": round(took, 1), "per_s": round(args.n / took), "mb": round(path.stat().st_size / 1e6)}
        took = timed("import_vectors", import_command, Runtime(settings("copy.db")), str(full), None, False)
        results["import_vectors"] = {"s": round(took, 1), "per_s": round(args.n / took)}
        took = timed("import_again", import_command, Runtime(settings("copy.db")), str(full), None, False)
        results["import_again"] = {"s": round(took, 1), "per_s": round(args.n / took)}
        m = min(args.reembed, args.n)
        part = root / "part.jsonl"
        with plain.open() as source, part.open("w") as target:
            for _, line in zip(range(m + 1), source, strict=False):
                target.write(line)
        took = timed("import_reembed", import_command, Runtime(settings("fresh.db")), str(part), None, False)
        results["import_reembed"] = {"memories": m, "s": round(took, 1), "per_s": round(m / took)}
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
