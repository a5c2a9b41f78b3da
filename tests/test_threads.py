"""`thread` through the MCP tools on real Milvus Lite: a memory is found with the memories before it
in its thread (keyword recall: its words and, at half weight, those of the two memories before it),
in the order of `created_at`, whatever order the writes arrive in, and forgetting re-indexes the
memories after a forgotten one."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import ClientSession

from tests.conftest import call

pytestmark = pytest.mark.anyio

COMMUNITY = "trips"


def at(minute: int) -> str:
    return f"2026-03-01T10:{minute:02d}:00Z"


async def write(client: ClientSession, content: str, thread: str | None = "trip", minute: int | None = None) -> str:
    args: dict[str, Any] = {"content": content, "community": COMMUNITY}
    if thread is not None:
        args["thread"] = thread
    if minute is not None:
        args["created_at"] = at(minute)
    return str((await call(client, "remember", **args))["id"])


async def found(client: ClientSession, words: str, **filters: Any) -> list[dict[str, Any]]:
    """What a keyword recall of `words` finds in the community."""
    return list((await call(client, "recall", query=words, community=COMMUNITY, k=20, mode="keyword",
                            **filters))["hits"])


async def found_contents(client: ClientSession, words: str, **filters: Any) -> set[str]:
    return {h["content"] for h in await found(client, words, **filters)}


# Four turns of one conversation; each names a place no other turn names.
TURNS = ["We took the ferry from Mallaig at dawn.",
         "Then a bus across the island to Portree.",
         "The youth hostel near Uig was full.",
         "So we camped by the Quiraing instead."]


async def test_a_memory_is_found_by_words_that_only_the_memory_before_it_in_its_thread_has(
        client: ClientSession) -> None:
    await write(client, TURNS[0], minute=0)
    await write(client, TURNS[1], minute=1)
    await write(client, TURNS[1], thread=None, minute=1)  # the same words, in no thread
    hits = await found(client, "Mallaig")
    assert sorted((h["content"], h["thread"]) for h in hits) == [(TURNS[1], "trip"), (TURNS[0], "trip")]
    # its own words still rank it above the memory it was found through
    assert [h["content"] for h in hits][0] == TURNS[0]
    assert {(h["content"], h["thread"]) for h in await found(client, "Portree")} == {
        (TURNS[1], "trip"), (TURNS[1], None)}


async def test_the_same_content_in_two_threads_is_two_memories_returned_exactly_as_given(
        client: ClientSession) -> None:
    content = "  Booked:\tthe 06:15 ferry,\nseat 12A  "
    first = await call(client, "remember", content=content, community=COMMUNITY, thread="monday")
    second = await call(client, "remember", content=content, community=COMMUNITY, thread="tuesday")
    again = await call(client, "remember", content=content, community=COMMUNITY, thread="monday")
    assert first["id"] != second["id"] and not first["duplicate"] and not second["duplicate"]
    assert again == {**first, "duplicate": True}
    hits = await found(client, "ferry seat")
    assert sorted((h["thread"], h["content"]) for h in hits) == [("monday", content), ("tuesday", content)]


async def test_a_memory_written_out_of_order_takes_its_place_by_time_and_the_next_ones_are_reindexed(
        client: ClientSession) -> None:
    await write(client, TURNS[0], minute=0)
    await write(client, TURNS[3], minute=30)
    assert await found_contents(client, "Mallaig") == {TURNS[0], TURNS[3]}
    # two turns that happened in between arrive late
    await write(client, TURNS[1], minute=10)
    await write(client, TURNS[2], minute=20)
    # the last turn's context is now the two before it, no longer the first turn
    assert await found_contents(client, "Mallaig") == {TURNS[0], TURNS[1], TURNS[2]}
    assert await found_contents(client, "Portree") == {TURNS[1], TURNS[2], TURNS[3]}
    assert await found_contents(client, "Uig") == {TURNS[2], TURNS[3]}
    assert await found_contents(client, "Quiraing") == {TURNS[3]}


async def test_a_thread_continued_later_indexes_the_new_memory_with_the_two_memories_before_it(
        client: ClientSession) -> None:
    for minute, turn in enumerate(TURNS[:3]):
        await write(client, turn, minute=minute)
    await write(client, TURNS[3])  # written now, months after the others: it goes last
    assert await found_contents(client, "Quiraing") == {TURNS[3]}
    assert TURNS[3] in await found_contents(client, "Uig")
    assert TURNS[3] in await found_contents(client, "Portree")
    assert TURNS[3] not in await found_contents(client, "Mallaig")  # three back: out of its context


async def test_forgetting_a_memory_reindexes_the_memories_after_it_with_their_new_context(
        client: ClientSession) -> None:
    ids = [await write(client, turn, minute=minute) for minute, turn in enumerate(TURNS)]
    assert await found_contents(client, "Mallaig") == {TURNS[0], TURNS[1], TURNS[2]}
    assert (await call(client, "forget", ids=[ids[1]], community=COMMUNITY))["deleted"] == 1
    # the last turn's two previous memories are now the third and the first
    assert await found_contents(client, "Mallaig") == {TURNS[0], TURNS[2], TURNS[3]}
    assert await found_contents(client, "Portree") == set()


async def test_recall_and_forget_filter_by_thread(client: ClientSession) -> None:
    for thread in ("skye", "mull"):
        await write(client, f"The ferry to {thread} was late", thread=thread)
    await write(client, "The ferry timetable changed in May", thread=None)
    assert {h["thread"] for h in await found(client, "ferry")} == {"skye", "mull", None}
    assert [h["content"] for h in await found(client, "ferry", thread="mull")] == ["The ferry to mull was late"]
    assert (await call(client, "forget", thread="skye", community=COMMUNITY))["deleted"] == 1
    assert {h["thread"] for h in await found(client, "ferry")} == {"mull", None}
