"""A memory in community A never appears in a recall, route or forget scoped to B."""

from __future__ import annotations

import pytest
from mcp import ClientSession

from tests.conftest import call, call_error
from tests.test_filters import HOSTILE

pytestmark = pytest.mark.anyio

SECRET = "The launch code for project Falcon is 7-7-alpha."


async def test_a_memory_in_one_community_is_never_recalled_from_another(client: ClientSession) -> None:
    await call(client, "remember", content=SECRET, community="team-a", kind="secret", tags=["falcon"],
               agent_id="agent-a")
    await call(client, "remember", content="Team B notes about lunch.", community="team-b")
    for mode in ("hybrid", "semantic", "keyword"):
        hits = (await call(client, "recall", query="launch code project Falcon", community="team-b", mode=mode,
                           k=100))["hits"]
        assert all(h["community"] == "team-b" for h in hits), mode
        assert SECRET not in [h["content"] for h in hits]
    found = await call(client, "recall", query="launch code project Falcon", community="team-a")
    assert found["hits"][0]["content"] == SECRET


@pytest.mark.parametrize("hostile", [h for h in HOSTILE if h.strip()])
async def test_hostile_strings_in_every_field_do_not_cross_communities(client: ClientSession, hostile: str) -> None:
    await call(client, "remember", content=SECRET, community="team-a", kind=hostile, tags=[hostile],
               agent_id=hostile, metadata={hostile: hostile})
    await call(client, "remember", content=f"harmless {hostile}", community="team-b", kind="note")
    hits = (await call(client, "recall", query=hostile if hostile.strip() else "x", community="team-b",
                       kinds=[hostile, "note"], tags=None, agent_id=None, k=100))["hits"]
    assert all(h["community"] == "team-b" for h in hits)
    for kwargs in ({"kinds": [hostile]}, {"tags": [hostile]}, {"agent_id": hostile}):
        hits = (await call(client, "recall", query=SECRET, community="team-b", k=100, **kwargs))["hits"]
        assert hits == [], kwargs
    # in its own community the hostile values match exactly the one memory
    own = (await call(client, "recall", query=SECRET, community="team-a", kinds=[hostile], tags=[hostile],
                      agent_id=hostile))["hits"]
    assert [h["content"] for h in own] == [SECRET]
    assert own[0]["metadata"] == {hostile: hostile}
    # forget scoped to B never removes A's memory
    assert (await call(client, "forget", community="team-b", agent_id=hostile)) == {"deleted": 0}
    assert (await call(client, "forget", community="team-b", tags=[hostile])) == {"deleted": 0}
    assert len((await call(client, "recall", query=SECRET, community="team-a"))["hits"]) == 1


async def test_hostile_community_names_are_refused_not_interpreted(client: ClientSession) -> None:
    await call(client, "remember", content=SECRET, community="team-a")
    for name in ['team-b" or community == "team-a', "team-a' or '1'=='1", "*", "team-a\n", ""]:
        message = await call_error(client, "recall", query="launch code", community=name)
        assert "invalid community name" in message or "holds no memories" in message


async def test_route_only_considers_experts_of_its_community(client: ClientSession) -> None:
    await call(client, "register_expert", agent_id="k8s_expert", community="team-a",
               description="Kubernetes operator: pods, deployments, helm charts, ingress.")
    await call(client, "register_expert", agent_id="baker", community="team-b",
               description="Bakes bread and pastries; knows sourdough starters and ovens.")
    routed = await call(client, "route", question="my pod is stuck in CrashLoopBackOff", community="team-b")
    assert all(e["agent_id"] != "k8s_expert" for e in routed["experts"])
