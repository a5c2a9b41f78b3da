"""The keyword side of recall: BM25 as plain sparse vectors that this server computes.

A memory is stored with a sparse vector of BM25 *document* weights (term-frequency saturation and
length normalisation, k1=1.5, b=0.75, Milvus' defaults) over its words and, at half weight, the
words of the two memories before it in its thread (`indexing.py` picks them). A query is a sparse
vector of IDF weights, so the inner product Milvus computes between the two is the memory's BM25.
The IDF comes from `KeywordStats`, kept per community (the recall's scope) by `tallies.py`.

Why not Milvus' built-in BM25 function (measured on LoCoMo, benchmarks/locomo.py, issue 9): it
cannot weight the thread context, Milvus Lite has no stemmer, keeps statistics per segment (a
memory written on its own is scored against a handful of rows) and cannot hand back a memory's
BM25 for the fused score; these vectors score 0.64 recall@5 alone against 0.50 for the built-in
function over the same text. Words: `\\w+`, lowercase, English stop words out, light stemming.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

K1 = 1.5
B = 0.75
CONTEXT_WEIGHT = 0.5  # a context memory's words count half as much as the memory's own
# IDF is computed as if a community held at least this many memories, the others without the
# term. With a handful of memories every word looks common (one memory: IDF 0.29 for each of its
# words), so a plain keyword match scored as nothing, while the calibrated scores (ranking.py) were
# fitted on communities of 300-700 memories, which this floor leaves exactly as they were.
MIN_ROWS = 100

Sparse = dict[int, float]

_WORD = re.compile(r"\w+", re.UNICODE)
STOP_WORDS = frozenset("""a an the and or but if then else of to in on at by for with from into onto about as
is are was were be been being am do does did doing have has had having i me my mine myself we us our ours
you your yours he him his she her hers it its they them their theirs this that these those there here
what which who whom whose when where why how will would shall should can could may might must not no
so than too very just also s t d ll m re ve o y""".split())


def stem(word: str) -> str:
    """Light English suffix stripping: plurals, -ing, -ed (no dictionary)."""
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith("sses"):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    for suffix, shortest in (("ing", 6), ("ed", 5)):
        if word.endswith(suffix) and len(word) >= shortest:
            word = word[: -len(suffix)]
            if len(word) > 2 and word[-1] == word[-2] and word[-1] not in "lsz":
                word = word[:-1]
            return word
    return word


def tokens(text: str) -> list[str]:
    return [stem(t) for t in _WORD.findall(text.lower()) if t not in STOP_WORDS]


# Milvus' sparse indices are uint32 and reserve 2^32 - 1; a vector needs one nonzero weight, so a
# memory without a single indexable word (all stop words, punctuation) gets this term, which no word
# maps to and no query asks for.
NO_WORDS = 2**32 - 2
_NO_WORDS_WEIGHT = 1e-6


def term_id(token: str) -> int:
    """A token's dimension in the sparse vectors: stable across processes and versions, below NO_WORDS."""
    return int.from_bytes(hashlib.blake2b(token.encode(), digest_size=4).digest(), "little") % NO_WORDS


@dataclass
class KeywordStats:
    """What BM25 needs to know about a community: its rows, their summed length (for the mean
    length), and in how many rows each term occurs."""

    rows: int = 0
    total_len: float = 0.0
    df: Counter[int] = field(default_factory=Counter)

    @property
    def avgdl(self) -> float:
        return self.total_len / self.rows if self.rows else 0.0

    def add(self, sparse: Mapping[int, float], length: float) -> None:
        self.rows += 1
        self.total_len += length
        self.df.update(sparse.keys())

    def remove(self, sparse: Mapping[int, float], length: float) -> None:
        self.rows = max(0, self.rows - 1)
        self.total_len = max(0.0, self.total_len - length)
        self.df.subtract(sparse.keys())

    def idf(self, term: int, unseen: bool = False) -> float:
        """The term's IDF; 0 for a term no memory holds, or with `unseen` the IDF of a term one
        memory holds (the rarest a term can be that a memory may have been written with since)."""
        df = self.df.get(term, 0)
        if df <= 0:
            if not unseen:
                return 0.0
            df = 1
        return math.log(1.0 + (max(self.rows, MIN_ROWS) - df + 0.5) / (df + 0.5))

    @staticmethod
    def merged(parts: Iterable[KeywordStats]) -> KeywordStats:
        """The statistics of a recall over several communities."""
        out = KeywordStats()
        for part in parts:
            out.rows += part.rows
            out.total_len += part.total_len
            out.df.update(part.df)
        return out


def doc_sparse(content: str, context: Sequence[str], avgdl: float) -> tuple[Sparse, float]:
    """(sparse vector, length) of a memory: its own words at weight 1, each context memory's at
    CONTEXT_WEIGHT. `avgdl` is the community's mean length; 0 (an empty community) normalises the
    memory by its own length."""
    tf: dict[int, float] = {}
    for t in tokens(content):
        tf[term_id(t)] = tf.get(term_id(t), 0.0) + 1.0
    length = float(sum(tf.values()))
    for text in context:
        words = tokens(text)
        for t in words:
            tf[term_id(t)] = tf.get(term_id(t), 0.0) + CONTEXT_WEIGHT
        length += CONTEXT_WEIGHT * len(words)
    if not tf:
        return {NO_WORDS: _NO_WORDS_WEIGHT}, 0.0
    norm = K1 * (1.0 - B + B * length / (avgdl if avgdl > 0 else max(length, 1.0)))
    return {t: f * (K1 + 1.0) / (f + norm) for t, f in tf.items()}, length


def query_sparse(query: str, stats: KeywordStats, unseen: bool = False) -> Sparse:
    """The query's sparse vector: each known term's IDF times its count in the query. Its inner
    product with a memory's vector is the memory's BM25. Empty when no query word is known.

    `unseen`: the statistics may lag the stored memories (on a Milvus server, where other hubs
    write and `tallies.py` re-reads a community's statistics only after a TTL), so a word they have
    not counted still weighs, as a word of one memory: a memory another hub has just written is
    found by its new words at once. Where the statistics are exact (Milvus Lite, one writer), a word
    they have not counted is in no memory, and leaving it out spares a search that cannot match."""
    weights: Sparse = {}
    for term, count in Counter(term_id(t) for t in tokens(query)).items():
        idf = stats.idf(term, unseen)
        if idf > 0:
            weights[term] = idf * count
    return weights


def sparse_dot(a: Mapping[int, float], b: Mapping[int, float]) -> float:
    if len(a) > len(b):
        a, b = b, a
    return sum(v * b.get(t, 0.0) for t, v in a.items())
