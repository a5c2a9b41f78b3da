"""Choosing experts for a question from what they say they know and what they have done.

Pure scoring, no I/O: `expertise.Expertise.route` gathers the evidence (similarity of the question,
and of each short phrase of it, to each expert's profile and skills, of the question to the
memories each expert wrote, and to a background of everyday sentences) and `rank_experts` turns it
into a decision:

- the question is read with what its technical names mean (`read_with`: its vector plus half the
  vector of the glossary's definitions of the names it contains, `glossary.py`), so that
  "ImagePullBackOff" fits a profile that says "deployment problems";
- an expert's score blends its best-fitting profile or skill (`profile`) with its memory
  closest to the question (`experience`: knowledge it loaded, answers it gave). An expert with no
  memories yet is judged on what its profile implies (`implied_knowledge`): the glossary's
  definitions that fit one of its lines closely ("Milvus collections, indexes and search" implies
  those of Milvus partitions, HNSW or `create_index`), so one sentence and a few skills are read
  as more than their few words;
- no expert is chosen when the best score is below the question's fit to the nearest sentence
  of `background.BACKGROUND` (the question is nobody's business: better no answer than a guess).
  Both sides are cosines of one embedder on one question, so the test scales with the profiles:
  short one-sentence profiles and long ones with knowledge are judged alike, which an absolute
  floor cannot do;
- the best expert is chosen; another one joins when its score is close to the best, or when some
  phrase of the question (a few words: "inside our Kubernetes pod", "users of our Android app")
  fits its profile clearly better than anyone else's while its own score is still reasonable.
  A question that spans two domains embeds as a whole towards the one it says most about; its
  phrases still show the other.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .models import ExpertMatch, MemoryRecord

PROFILE_KIND = "expert_profile"
SKILL_KIND = "expert_skill"
EXPERT_KINDS = (PROFILE_KIND, SKILL_KIND)
MAX_EXPERT_LINES = 16384  # profile and skill memories read per route (Milvus' largest query)


@dataclass(frozen=True)
class RoutingPolicy:
    """Weights and thresholds of the decision. Similarities are cosine in [-1, 1].

    Chosen on one half of the routing benchmark (benchmarks/routing.py) and checked on the other.
    Whether anyone is chosen at all is not a threshold here: see `background_fit`.
    """

    profile_weight: float = 0.6  # the rest is experience
    experience_top: int = 1  # how many of an expert's closest memories are averaged as its experience
    second_gap: float = 0.06  # another expert joins when within this of the best score, or ...
    phrase_words: int = 4  # ... when a phrase of this many words of the question (overlapping by half)
    phrase_min: float = 0.30  # fits its profile or a skill at least this well
    phrase_margin: float = 0.05  # and by this much better than any other expert's,
    second_floor: float = 0.35  # provided its own score is at least this
    max_phrases: int = 32  # longer questions are sampled with a wider step
    glossary_weight: float = 0.5  # of the glossary's definitions of the names in a question (`read_with`; 0: off)
    implied_fit: float = 0.30  # a definition fitting a profile or skill line this well is implied knowledge (0: off)


def phrases(question: str, policy: RoutingPolicy | None = None) -> list[str]:
    """The overlapping word windows of `question` that `route` compares with the experts'
    profiles: none for a question no longer than one window (the whole question is compared
    anyway), at most `max_phrases`, always including the last words."""
    policy = policy or RoutingPolicy()
    words = question.split()
    size = policy.phrase_words
    if len(words) <= size:
        return []
    last = len(words) - size
    step = max(1, size // 2, math.ceil(last / max(1, policy.max_phrases - 1)))
    starts = list(range(0, last + 1, step))
    if starts[-1] != last:
        starts.append(last)
    return [" ".join(words[i:i + size]) for i in starts[: policy.max_phrases]]


def read_with(question: Sequence[float], meaning: Sequence[float], policy: RoutingPolicy) -> list[float]:
    """The question's vector read with what its technical names mean (`glossary.Glossary.explain`):
    the normalised sum of the two, the definitions weighted by `policy.glossary_weight`."""
    q, m = np.asarray(question, dtype=np.float32), np.asarray(meaning, dtype=np.float32)
    v = unit(q) + policy.glossary_weight * unit(m)
    return [float(x) for x in unit(v)]


def unit(a: np.ndarray) -> np.ndarray:
    """`a` (a vector, or the rows of a matrix) scaled to length 1; a zero vector stays zero."""
    scaled: np.ndarray = a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)
    return scaled


def implied_knowledge(question: Sequence[float], definitions: np.ndarray, texts: Sequence[str],
                      implied: Mapping[str, np.ndarray]) -> dict[str, tuple[str, float]]:
    """For each expert, the definition closest to the question among those its profile implies:
    (definition, cosine similarity). `definitions`: the glossary's definitions as unit-length rows,
    `texts` their words; `implied`: expert -> indices of its implied definitions (`implied_by`)."""
    if not len(definitions):
        return {}
    fits = definitions @ unit(np.asarray(question, dtype=np.float32))
    found: dict[str, tuple[str, float]] = {}
    for agent, rows in implied.items():
        if len(rows):
            best = int(rows[int(np.argmax(fits[rows]))])
            found[agent] = (texts[best], float(fits[best]))
    return found


def implied_by(definitions: np.ndarray, lines: Sequence[tuple[str, Sequence[float]]],
               policy: RoutingPolicy) -> dict[str, np.ndarray]:
    """expert -> the indices of the definitions (unit-length rows) that fit one of its profile or
    skill lines (agent, vector) at least `policy.implied_fit`: the knowledge its profile implies."""
    if not policy.implied_fit or not len(definitions) or not lines:
        return {}
    close = cosines(definitions, [v for _, v in lines]) >= policy.implied_fit  # definitions x lines
    owners = np.asarray([agent for agent, _ in lines])
    return {agent: np.flatnonzero(close[:, owners == agent].any(axis=1)) for agent in sorted(set(owners.tolist()))}


def background_fit(question: Sequence[float], background: Sequence[Sequence[float]]) -> float:
    """The question's cosine with the nearest sentence of the background: the score an expert
    must reach to be chosen."""
    fits = similarities([question], background)[0]
    return max(fits) if fits else -1.0


def similarities(queries: Sequence[Sequence[float]], lines: Sequence[Sequence[float]]) -> list[list[float]]:
    """Cosine similarity of every query vector with every line vector: one row per query."""
    if not queries or not lines:
        return [[] for _ in queries]
    rows: list[list[float]] = cosines(queries, lines).tolist()
    return rows


def cosines(queries: Sequence[Sequence[float]] | np.ndarray, lines: Sequence[Sequence[float]] | np.ndarray
            ) -> np.ndarray:
    """Cosine similarity of every query vector with every line vector, as a queries x lines array
    (neither argument is changed)."""
    product: np.ndarray = unit(np.asarray(queries, dtype=np.float32)) @ unit(np.asarray(lines, dtype=np.float32)).T
    return product


@dataclass
class _Evidence:
    profile: list[tuple[MemoryRecord, float]] = field(default_factory=list)
    experience: list[tuple[MemoryRecord, float]] = field(default_factory=list)
    phrase: tuple[str, MemoryRecord, float] | None = None  # the phrase that is clearly its business
    implied: tuple[str, float] | None = None  # the closest definition its profile implies, if it counted
    score: float = 0.0


def rank_experts(
    experts: Iterable[str],
    profile_hits: Iterable[tuple[MemoryRecord, float]],
    experience_hits: Iterable[tuple[MemoryRecord, float]],
    k: int,
    policy: RoutingPolicy | None = None,
    *,
    background: float,
    phrase_hits: Sequence[tuple[str, Sequence[tuple[MemoryRecord, float]]]] = (),
    experience_complete: bool = True,
    names: Sequence[str] = (),
    implied: Mapping[str, tuple[str, float]] | None = None,
) -> list[ExpertMatch]:
    """The up-to-k experts best placed to answer, best first; empty when none is confident.

    `profile_hits` / `experience_hits` are (memory, cosine similarity) pairs from the experts'
    profile and skill memories and from searches over their other memories.
    `background` is the question's fit to the background (`background_fit`): the best expert must
    score at least that, or nobody is chosen. `phrase_hits` pairs
    each phrase of the question (`phrases`) with its search over the profile and skill memories.
    `experience_complete` says whether `experience_hits` holds every memory of the experts (a
    search shorter than its limit): if not, an expert absent from it has memories, all less
    similar than the last hit. `names`: the technical names the question was read with (the
    glossary's), told in each reason. `implied`: per expert, the definition closest to the question
    among those its profile implies (`implied_knowledge`): the experience of an expert that has no
    memories.
    """
    policy = policy or RoutingPolicy()
    evidence: dict[str, _Evidence] = {e: _Evidence() for e in experts}
    for record, sim in profile_hits:
        if record.agent_id in evidence:
            evidence[record.agent_id].profile.append((record, sim))
    floor = None
    for record, sim in experience_hits:
        floor = sim if floor is None else min(floor, sim)
        if record.agent_id in evidence:
            evidence[record.agent_id].experience.append((record, sim))
    for agent, found in (implied or {}).items():
        if agent in evidence:
            evidence[agent].implied = found
    for text, hits in phrase_hits:
        owner = _phrase_owner(hits, evidence, policy)
        if owner is not None:
            record, sim = owner
            current = evidence[record.agent_id].phrase
            if current is None or sim > current[2]:
                evidence[record.agent_id].phrase = (text, record, sim)

    for ev in evidence.values():
        ev.profile.sort(key=lambda h: -h[1])
        ev.experience.sort(key=lambda h: -h[1])
        profile = ev.profile[0][1] if ev.profile else 0.0
        top = [s for _, s in ev.experience[: policy.experience_top]]
        if not top and not experience_complete and floor is not None:
            top = [floor]  # it has memories, none as close as the ones found
        if top:
            ev.implied = None  # its own memories are its experience
        elif ev.implied is not None:
            top = [ev.implied[1]]  # no memories yet: judged on what its profile implies, ...
        experience = sum(top) / len(top) if top else profile  # ... or on its profile alone
        ev.score = policy.profile_weight * profile + (1 - policy.profile_weight) * experience

    ranked = sorted(evidence.items(), key=lambda item: -item[1].score)
    if not ranked or ranked[0][1].score < background:
        return []
    best = ranked[0][1].score
    chosen = [ranked[0]]
    for agent, ev in ranked[1:]:
        close = ev.score >= best - policy.second_gap
        if close or (ev.phrase is not None and ev.score >= policy.second_floor):
            chosen.append((agent, ev))
    return [_match(agent, ev, reason_phrase=agent != ranked[0][0], names=names) for agent, ev in chosen[:k]]


def _phrase_owner(hits: Sequence[tuple[MemoryRecord, float]], evidence: dict[str, _Evidence],
                  policy: RoutingPolicy) -> tuple[MemoryRecord, float] | None:
    """The best profile or skill line for a phrase, when it clearly beats every other expert's."""
    best: dict[str, tuple[MemoryRecord, float]] = {}
    for record, sim in hits:
        if record.agent_id in evidence and (record.agent_id not in best or sim > best[record.agent_id][1]):
            best[record.agent_id] = (record, sim)
    if not best:
        return None
    ordered = sorted(best.values(), key=lambda h: -h[1])
    top = ordered[0]
    # an expert missing from the hits fits the phrase less than the last hit does
    runner_up = ordered[1][1] if len(ordered) > 1 else (min(s for _, s in hits) if len(evidence) > 1 else 0.0)
    if top[1] >= policy.phrase_min and top[1] - runner_up >= policy.phrase_margin:
        return top
    return None


def _match(agent: str, ev: _Evidence, *, reason_phrase: bool, names: Sequence[str] = ()) -> ExpertMatch:
    parts: list[str] = []
    ids: list[str] = []
    if ev.profile:
        record, sim = ev.profile[0]
        what = "profile" if record.kind == PROFILE_KIND else "skill"
        parts.append(f"{what} '{_short(record.content)}' fits ({sim:.2f})")
        ids.append(record.id)
    if ev.experience:
        record, sim = ev.experience[0]
        parts.append(f"own {record.kind} '{_short(record.content, 50)}' is close ({sim:.2f})")
        ids += [r.id for r, _ in ev.experience[:3]]
    if ev.implied is not None:
        text, sim = ev.implied
        parts.append(f"its profile implies '{_short(text, 50)}', which is close ({sim:.2f})")
    if reason_phrase and ev.phrase is not None:
        text, record, sim = ev.phrase
        parts.append(f"the words '{_short(text, 40)}' fit '{_short(record.content, 40)}' ({sim:.2f})")
        if record.id not in ids:
            ids.append(record.id)
    if names:
        parts.append("read with what " + ", ".join(f"'{_short(n, 30)}'" for n in names) + " means (glossary)")
    return ExpertMatch(agent_id=agent, score=round(max(0.0, min(1.0, ev.score)), 4),
                       reason="; ".join(parts) or "registered expert", memory_ids=ids)


def _short(text: str, n: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"
