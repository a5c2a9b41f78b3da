"""Choosing experts for a question from what they say they know and what they have done.

Pure scoring, no I/O: `MemoryService.route` gathers the evidence (similarity of the question to
each expert's profile and skills, and to the memories each expert wrote) and `rank_experts`
turns it into a decision:

- an expert's score blends its best-fitting profile or skill (`profile`) with its memory
  closest to the question (`experience`: knowledge it loaded, answers it gave);
- no expert is chosen when the best score is below `min_score` (the question is nobody's
  business: better no answer than a guess);
- the best expert is chosen; another one joins when its score is close to the best, or when the
  question names things that only that expert lists in its profile (a product or tool name such
  as "helm" or "pandas") and its score is still reasonable. That catches questions that span two
  domains, whose embedding leans towards one of them.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .models import ExpertMatch
from .store import MemoryRecord

PROFILE_KIND = "expert_profile"
SKILL_KIND = "expert_skill"
EXPERT_KINDS = (PROFILE_KIND, SKILL_KIND)


@dataclass(frozen=True)
class RoutingPolicy:
    """Weights and thresholds of the decision. Similarities are cosine in [-1, 1].

    Chosen on one half of the routing benchmark (benchmarks/routing.py) and checked on the other;
    `min_score` also sits above every off-topic probe of that benchmark.
    """

    profile_weight: float = 0.6  # the rest is experience
    experience_top: int = 1  # how many of an expert's closest memories are averaged as its experience
    min_score: float = 0.20  # below this no expert is a confident match
    second_gap: float = 0.06  # another expert joins when within this of the best score ...
    named_bonus: float = 0.10  # ... counting this much per term only its profile names
    named_cap: int = 3  # at most this many named terms count
    second_floor: float = 0.30  # and never with a score below this


@dataclass
class _Evidence:
    profile: list[tuple[MemoryRecord, float]] = field(default_factory=list)
    experience: list[tuple[MemoryRecord, float]] = field(default_factory=list)
    named: list[str] = field(default_factory=list)
    score: float = 0.0


def rank_experts(
    experts: Iterable[str],
    profile_hits: Iterable[tuple[MemoryRecord, float]],
    experience_hits: Iterable[tuple[MemoryRecord, float]],
    k: int,
    policy: RoutingPolicy | None = None,
    *,
    question: str = "",
    profiles: Sequence[MemoryRecord] = (),
    experience_complete: bool = True,
) -> list[ExpertMatch]:
    """The up-to-k experts best placed to answer, best first; empty when none is confident.

    `profile_hits` / `experience_hits` are (memory, cosine similarity) pairs from searches over
    the experts' profile and skill memories and over their other memories. `profiles` are the
    experts' profile memories (metadata "skills" lists their skills): terms that only one
    expert's profile names count for that expert when `question` names them.
    `experience_complete` says whether `experience_hits` holds every memory of the experts (a
    search shorter than its limit): if not, an expert absent from it has memories, all less
    similar than the last hit.
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
    named = named_terms(question, profiles)

    for agent, ev in evidence.items():
        ev.profile.sort(key=lambda h: -h[1])
        ev.experience.sort(key=lambda h: -h[1])
        ev.named = named.get(agent, [])
        profile = ev.profile[0][1] if ev.profile else 0.0
        top = [s for _, s in ev.experience[: policy.experience_top]]
        if top:
            experience = sum(top) / len(top)
        elif not experience_complete and floor is not None:
            experience = floor  # it has memories, none as close as the ones found
        else:
            experience = profile  # no memories yet: judged on its profile alone
        ev.score = policy.profile_weight * profile + (1 - policy.profile_weight) * experience

    ranked = sorted(evidence.items(), key=lambda item: -item[1].score)
    if not ranked or ranked[0][1].score < policy.min_score:
        return []
    best = ranked[0][1].score
    chosen = [ranked[0]]
    for agent, ev in ranked[1:]:
        boosted = ev.score + policy.named_bonus * min(len(ev.named), policy.named_cap)
        if ev.score >= policy.second_floor and boosted >= best - policy.second_gap:
            chosen.append((agent, ev))
    return [_match(agent, ev) for agent, ev in chosen[:k]]


# Words too common to say anything about a domain, even when a profile happens to use them.
_STOP = frozenset(
    "the and for with from into that this then than are was were not but you your our out how what "
    "when where which who why can use using does did has have had its via all any some other".split()
)


def terms(text: str) -> set[str]:
    """Lowercase word terms of `text`: camelCase split, 3+ characters, a plural 's' dropped."""
    text = re.sub(r"([a-z])([A-Z])", r"\1 \2", text)
    out: set[str] = set()
    for word in re.findall(r"[a-z][a-z0-9]+", text.lower()):
        if len(word) < 3 or word in _STOP:
            continue
        if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        out.add(word)
    return out


def named_terms(question: str, profiles: Sequence[MemoryRecord]) -> dict[str, list[str]]:
    """For each expert, the terms of `question` that its profile (description and skills) names
    and no other expert's profile does."""
    vocab: dict[str, set[str]] = {}
    for record in profiles:
        skills = (record.metadata or {}).get("skills") or []
        words = terms(" ".join([record.content, *[s for s in skills if isinstance(s, str)]]))
        vocab.setdefault(record.agent_id, set()).update(words)
    asked = terms(question)
    experts_naming = Counter(word for words in vocab.values() for word in words & asked)
    out: dict[str, list[str]] = {}
    for agent, words in vocab.items():
        hits = sorted(w for w in words & asked if experts_naming[w] == 1)
        if hits:
            out[agent] = hits
    return out


def _match(agent: str, ev: _Evidence) -> ExpertMatch:
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
    if ev.named:
        parts.append("question names " + ", ".join(ev.named[:5]))
    return ExpertMatch(agent_id=agent, score=round(max(0.0, min(1.0, ev.score)), 4),
                       reason="; ".join(parts) or "registered expert", memory_ids=ids)


def _short(text: str, n: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"
