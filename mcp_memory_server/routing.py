"""Choosing experts for a question from what they say they know and what they have done.

Pure scoring, no I/O: `MemoryService.route` gathers the evidence (similarity of the question to
each expert's profile and skills, and to the memories each expert wrote) and `rank_experts`
turns it into a decision.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from .models import ExpertMatch
from .store import MemoryRecord

PROFILE_KIND = "expert_profile"
SKILL_KIND = "expert_skill"
EXPERT_KINDS = (PROFILE_KIND, SKILL_KIND)


@dataclass(frozen=True)
class RoutingPolicy:
    """Weights and thresholds of the decision. Similarities are cosine in [-1, 1]."""

    profile_weight: float = 0.5
    experience_weight: float = 0.5
    experience_top: int = 3  # how many of an expert's best memories count as its experience
    min_score: float = 0.30  # below this no expert is a confident match
    relative_margin: float = 0.85  # others are chosen too when within this share of the best


@dataclass
class _Evidence:
    profile: list[tuple[MemoryRecord, float]]
    experience: list[tuple[MemoryRecord, float]]


def rank_experts(
    experts: Iterable[str],
    profile_hits: Iterable[tuple[MemoryRecord, float]],
    experience_hits: Iterable[tuple[MemoryRecord, float]],
    k: int,
    policy: RoutingPolicy | None = None,
) -> list[ExpertMatch]:
    """The up-to-k experts best placed to answer, best first; empty when none is confident."""
    policy = policy or RoutingPolicy()
    evidence: dict[str, _Evidence] = {e: _Evidence([], []) for e in experts}
    for record, sim in profile_hits:
        if record.agent_id in evidence:
            evidence[record.agent_id].profile.append((record, sim))
    for record, sim in experience_hits:
        if record.agent_id in evidence:
            evidence[record.agent_id].experience.append((record, sim))

    scored: list[tuple[float, str, _Evidence]] = []
    for agent, ev in evidence.items():
        ev.profile.sort(key=lambda h: -h[1])
        ev.experience.sort(key=lambda h: -h[1])
        profile = ev.profile[0][1] if ev.profile else 0.0
        top = [s for _, s in ev.experience[: policy.experience_top]]
        experience = sum(top) / policy.experience_top if top else 0.0
        if top:
            score = policy.profile_weight * profile + policy.experience_weight * experience
        else:
            score = profile
        scored.append((score, agent, ev))
    scored.sort(key=lambda t: -t[0])
    if not scored or scored[0][0] < policy.min_score:
        return []
    best = scored[0][0]
    chosen = [t for t in scored if t[0] >= policy.min_score and t[0] >= best * policy.relative_margin][:k]
    return [_match(score, agent, ev) for score, agent, ev in chosen]


def _match(score: float, agent: str, ev: _Evidence) -> ExpertMatch:
    parts: list[str] = []
    ids: list[str] = []
    if ev.profile:
        record, sim = ev.profile[0]
        what = "profile" if record.kind == PROFILE_KIND else "skill"
        parts.append(f"{what} '{_short(record.content)}' fits ({sim:.2f})")
        ids.append(record.id)
    if ev.experience:
        kinds: dict[str, int] = defaultdict(int)
        for record, _ in ev.experience[:3]:
            kinds[record.kind] += 1
            ids.append(record.id)
        what = ", ".join(f"{n} {kind}" for kind, n in kinds.items())
        parts.append(f"has written similar memories ({what}; best {ev.experience[0][1]:.2f})")
    return ExpertMatch(agent_id=agent, score=round(max(0.0, min(1.0, score)), 4),
                       reason="; ".join(parts) or "registered expert", memory_ids=ids)


def _short(text: str, n: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"
