"""Synthetic but realistic memories for the latency benchmarks, and their vectors.

Sentences are drawn from templates an agent team would write (decisions, incidents, preferences,
facts), seeded, so every run stores the same text. Embedding 100k texts takes ~5 min on 2 cores,
so only `unique` distinct sentences are embedded; the rest reuse one of those vectors with a small
random perturbation (cosine ~0.95 to its base), which keeps the neighbourhood structure of real
embeddings without the embedding time. Only the bulk load uses these vectors: every measured
recall embeds its query with the real model.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np

from mcp_memory_server.embeddings import Embedder
from mcp_memory_server.keywords import KeywordStats, doc_sparse
from mcp_memory_server.models import IndexedMemory, MemoryRecord
from mcp_memory_server.store import MemoryStore

PEOPLE = ["Ana", "Bram", "Chen", "Dara", "Eli", "Farah", "Goran", "Hana", "Ivo", "Jun", "Kemal", "Lena",
          "Mateo", "Nia", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tara"]
SYSTEMS = ["the billing service", "the login page", "the search index", "the nightly ETL job", "the mobile app",
           "the payments API", "the data warehouse", "the CI pipeline", "the staging cluster",
           "the recommendation model", "the customer portal", "the invoice generator", "the notification queue",
           "the audit log", "the CDN"]
ACTIONS = ["migrated", "rolled back", "profiled", "refactored", "load-tested", "documented", "patched",
           "upgraded", "split", "monitored", "benchmarked", "reviewed", "deprecated", "rewrote", "secured"]
REASONS = ["because p99 latency doubled after the release", "to cut the cloud bill by a third",
           "after a customer reported duplicate charges", "since the old library is no longer maintained",
           "to meet the new retention policy", "because the nightly run kept timing out",
           "after the security review flagged weak TLS settings", "to unblock the Q3 launch",
           "because memory usage grew without bound", "to support the new EU region"]
FACTS = ["prefers {x} for anything touching money", "is on call for {x} this week",
         "owns the runbook for {x}", "thinks {x} needs a full rewrite", "asked to be paged first about {x}",
         "found that {x} fails when the cache is cold", "wrote the design doc for {x}"]
WHEN = ["on Monday", "last sprint", "in March", "yesterday", "during the outage", "before the freeze",
        "on the 14th", "after the offsite", "this morning", "in the postmortem"]


def sentences(n: int, seed: int = 7) -> list[str]:
    """`n` varied, deterministic sentences."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        who, what = rng.choice(PEOPLE), rng.choice(SYSTEMS)
        if rng.random() < 0.6:
            out.append(f"{who} {rng.choice(ACTIONS)} {what} {rng.choice(WHEN)} {rng.choice(REASONS)} (#{i}).")
        else:
            out.append(f"{who} {rng.choice(FACTS).format(x=what)}; noted {rng.choice(WHEN)} (#{i}).")
    return out


def queries(n: int, seed: int = 11) -> list[str]:
    rng = random.Random(seed)
    forms = ["who {a} {s}?", "why was {s} {a}?", "what happened to {s} {w}?", "who owns {s}?",
             "what does {p} think about {s}?"]
    return [rng.choice(forms).format(a=rng.choice(ACTIONS), s=rng.choice(SYSTEMS), w=rng.choice(WHEN),
                                     p=rng.choice(PEOPLE)) for _ in range(n)]


def vectors(texts: Sequence[str], embedder: Embedder, unique: int, seed: int = 3) -> np.ndarray:
    """Unit vectors for `texts`: the first `unique` embedded for real, the rest perturbed copies."""
    base = np.asarray(embedder.embed(list(texts[:unique])), dtype=np.float32)
    if len(texts) <= unique:
        return base
    rng = np.random.default_rng(seed)
    extra = len(texts) - unique
    picks = base[rng.integers(0, unique, extra)]
    noise = rng.normal(0.0, 0.3 / np.sqrt(base.shape[1]), size=picks.shape).astype(np.float32)
    out = picks + noise
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return np.vstack([base, out])


def bulk_insert(store: MemoryStore, records: Sequence[MemoryRecord], vectors: np.ndarray,
                stats: dict[str, KeywordStats]) -> None:
    """Insert `records` with precomputed dense `vectors` and the keyword vectors the service would
    compute (`stats` carries each community's keyword statistics from one call to the next)."""
    rows = []
    for record, vector in zip(records, vectors, strict=True):
        community = stats.setdefault(record.community, KeywordStats())
        sparse, length = doc_sparse(record.content, (), community.avgdl)
        community.add(sparse, length)
        record.seq = record.created_at * 1_000_000
        rows.append(IndexedMemory(record, [float(x) for x in vector], sparse, length))
    store.insert(rows)
