"""How recall ranks and scores memories: the one place dense and keyword evidence are fused.

Every hit's `score` is an estimate of the probability that the memory is relevant to the query,
in [0, 1], with the same meaning in every mode: a logistic calibration (Platt scaling) of the
mode's raw evidence — the cosine similarity of the query to the memory (`dense`), the memory's
BM25 for the query (`keyword`), and for "when" questions whether the memory's own words say when
something happened. The constants are a logistic regression of "this hit holds the answer" on
the top-10 hits of LoCoMo questions (six conversations, fitted leave-one-conversation-out within
±0.4 of each value; benchmarks/locomo.py), for all-MiniLM-L6-v2 and the keyword encoding of
`keywords.py`. Absolute values carry over to other data only roughly; the order within a recall
and the comparability across modes hold. Hybrid recall ranks by its score: both sides' candidates
(the top `Fusion.depth` of each) are scored with both raw values, known exactly for every
candidate (the other side's from the stored vector: `MemoryStore.candidates`) rather than filled
in as zero when one side missed it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

from .models import MemoryRecord

SEMANTIC = (-5.374, 5.281)  # intercept, cosine
KEYWORD = (-6.476, 2.089)  # intercept, ln(1 + bm25)
HYBRID = (-7.622, 3.995, 1.736, 1.195)  # intercept, cosine, ln(1 + bm25), "when" question x time in memory

_MONTHS = "january|february|march|april|may|june|july|august|september|october|november|december"
_DAYS = "monday|tuesday|wednesday|thursday|friday|saturday|sunday"
_WHEN_QUESTION = re.compile(r"^\s*(when|what (year|month|date|day|time)|how long ago|which (year|month|day))\b",
                            re.IGNORECASE)
_TIME_WORDS = re.compile(
    rf"\b(yesterday|today|tonight|tomorrow|ago|last (week|weekend|month|year|night|summer|winter|spring|fall|"
    rf"{_DAYS})|this (week|weekend|month|year|morning|summer)|next (week|weekend|month|year)|recently|"
    rf"since|{_MONTHS}|{_DAYS}|(19|20)\d\d)\b", re.IGNORECASE)
_LEADING_STAMP = re.compile(r"^\s*\[[^\]]{1,40}\]\s*")


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def semantic_score(cosine: float) -> float:
    a, b = SEMANTIC
    return _sigmoid(a + b * cosine)


def keyword_score(bm25: float) -> float:
    a, b = KEYWORD
    return _sigmoid(a + b * math.log1p(max(bm25, 0.0)))


def hybrid_score(cosine: float, bm25: float, when_match: bool = False) -> float:
    a, b, c, d = HYBRID
    return _sigmoid(a + b * cosine + c * math.log1p(max(bm25, 0.0)) + d * float(when_match))


def is_when_question(query: str) -> bool:
    """English questions about a time: "When did ...", "What year ...", "How long ago ..."."""
    return bool(_WHEN_QUESTION.search(query))


def states_a_time(content: str) -> bool:
    """Whether a memory's own words say when something happened (yesterday, last week, May,
    2023, ...). A leading "[date]" stamp, which every memory of a dated log carries, does not count."""
    return bool(_TIME_WORDS.search(_LEADING_STAMP.sub("", content, count=1)))


@dataclass(frozen=True)
class Scored:
    record: MemoryRecord
    score: float
    dense: float | None  # cosine of the query and the memory (its stored vector)
    keyword: float | None  # the memory's BM25 for the query


def fuse(query: str, candidates: Iterable[tuple[MemoryRecord, float, float]], k: int) -> list[Scored]:
    """The k best candidates of a hybrid recall (memory, cosine, BM25: `MemoryStore.candidates`)
    by `hybrid_score`."""
    when = is_when_question(query)
    scored = [Scored(record, hybrid_score(cosine, bm25, when and states_a_time(record.content)), cosine, bm25)
              for record, cosine, bm25 in candidates]
    scored.sort(key=lambda s: -s.score)
    return scored[:k]
