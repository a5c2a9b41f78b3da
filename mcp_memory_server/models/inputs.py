"""The tools' inputs: their fields ARE the tools' argument schemas, with the limits shown."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.fields import FieldInfo

from ..config import COMMUNITY_PATTERN, Limits
from .base import LATEST_LIMIT, LATEST_MAX, MAX_TAG_BYTES, MAX_TTL_SECONDS, RECALL_K, ROUTE_K, SearchMode

CommunityArg = Annotated[str | None, Field(description="Community to use (default: the server's default "
                                                       "community). Letters, digits, '_', '.', '-'.")]
TagsArg = Annotated[list[str] | None, Field(description="Tags; a memory matches if it has any of them.")]
ThreadArg = Annotated[str | None, Field(description="Only memories of this thread.")]


class ToolInput(BaseModel):
    """Base of the tool inputs: unknown arguments are refused, not ignored."""

    model_config = ConfigDict(extra="forbid")


class MemoryIn(ToolInput):
    """One memory to store: the input of `remember`, and an item of `remember_many`."""

    content: str = Field(description="The text to remember: a fact, decision, answer, note.")
    community: CommunityArg = None
    kind: str = Field("note", description="What sort of memory: note, fact, question, answer, ...")
    tags: list[str] | None = Field(default_factory=list, description="Labels to filter on later.")
    metadata: dict[str, Any] | None = Field(default_factory=dict, description="Any JSON object to keep with it.")
    agent_id: str | None = Field(None, description="Who is remembering (an agent or user id).")
    thread: str | None = Field(None, description="The conversation, session, ticket or task this memory belongs "
                                                 "to. A memory in a thread is found with its context: the "
                                                 "memories written before it in the same thread.")
    created_at: str | None = Field(None, description="When it happened (ISO-8601; default: now). Orders the "
                                                     "memory within its thread.")
    ttl_seconds: int | None = Field(None, description="Forget it this many seconds from now (default: keep it "
                                                      "for ever). An expired memory is never returned again.")
    expires_at: str | None = Field(None, description="Forget it at this ISO-8601 time (instead of ttl_seconds).")


class RememberManyIn(ToolInput):
    memories: list[MemoryIn] = Field(description="The memories to store, for imports.")


class RecallIn(ToolInput):
    query: str = Field(description="What to look for, in plain words.")
    community: CommunityArg = None
    communities: list[str] | None = Field(
        None, description="Search several communities at once; [\"*\"] means every one you may read.")
    k: int = Field(RECALL_K, description="How many memories to return (from 1 to the server's limit, "
                                         "MEMORY_MAX_K, 100 unless configured).")
    kinds: list[str] | None = Field(None, description="Only these kinds.")
    tags: TagsArg = None
    agent_id: str | None = Field(None, description="Only memories written by this agent.")
    thread: ThreadArg = None
    since: str | None = Field(None, description="Only memories stored at or after this ISO-8601 date or time, "
                                                "e.g. 2026-11-01.")
    mode: SearchMode = Field("hybrid", description="hybrid (meaning + keywords, best in general), semantic "
                                                   "(meaning only) or keyword (exact words).")


class LatestIn(ToolInput):
    """The newest memories of a scope, optionally filtered: what the web view lists when nothing is
    searched (and its live activity)."""

    community: CommunityArg = None
    communities: list[str] | None = Field(
        None, description="Several communities at once; [\"*\"] means every one you may read.")
    limit: int = Field(LATEST_LIMIT, description=f"How many memories, from 1 to {LATEST_MAX}.")
    kinds: list[str] | None = Field(None, description="Only these kinds.")
    tags: TagsArg = None
    agent_id: str | None = Field(None, description="Only memories written by this agent.")
    thread: ThreadArg = None
    since: str | None = Field(None, description="Only memories stored at or after this ISO-8601 date or time.")


class RegisterExpertIn(ToolInput):
    agent_id: str = Field(description="The expert agent's id, as it receives messages.")
    description: str = Field(description="What the expert knows and does, in a few sentences.")
    skills: list[str] | None = Field(None, description="Short phrases, one per skill or topic.")
    community: CommunityArg = None


class RouteIn(ToolInput):
    question: str = Field(description="The question to find experts for.")
    community: CommunityArg = None
    k: int = Field(ROUTE_K, description="At most this many experts (from 1 to the server's limit).")


class ForgetIn(ToolInput):
    ids: list[str] | None = Field(None, description="Ids of the memories to remove.")
    community: CommunityArg = None
    kinds: list[str] | None = Field(None, description="Remove memories of these kinds.")
    tags: list[str] | None = Field(None, description="Remove memories having any of these tags.")
    agent_id: str | None = Field(None, description="Remove memories written by this agent.")
    thread: str | None = Field(None, description="Remove memories of this thread.")


class UpdateIn(ToolInput):
    """Changes to one memory: only the fields given change."""

    id: str = Field(description="The id of the memory to change.")
    community: CommunityArg = None
    content: str | None = Field(None, description="New text. The memory is replaced by one with this text and "
                                                  "a new id (ids follow community, thread and content).")
    kind: str | None = Field(None, description="New kind.")
    tags: list[str] | None = Field(None, description="New tags (they replace the old ones; [] removes them all).")
    metadata: dict[str, Any] | None = Field(None, description="New metadata (replaces the old object).")
    thread: str | None = Field(None, description="Move it to this thread (\"\" takes it out of its thread); it "
                                                 "gets a new id, and both threads are re-indexed.",
                               json_schema_extra={"maxLength": MAX_TAG_BYTES})
    ttl_seconds: int | None = Field(None, description="Expire it this many seconds from now.")
    expires_at: str | None = Field(None, description="Expire it at this ISO-8601 time; \"never\" keeps it for ever.")


class NoInput(ToolInput):
    """A tool without arguments."""


InputT = TypeVar("InputT", bound=ToolInput)
_ANY_COMMUNITY = r"^(\*|[A-Za-z0-9_.-]{1,64})$"


def _shown_limits(name: str, limits: Limits) -> dict[str, Any]:
    """The JSON-schema keywords that show a field's limit to a model reading the tool's schema."""
    shown: dict[str, dict[str, Any]] = {
        "content": {"minLength": 1, "maxLength": limits.content_chars},
        "description": {"minLength": 1, "maxLength": limits.content_chars},
        "query": {"minLength": 1, "maxLength": limits.query_chars},
        "question": {"minLength": 1, "maxLength": limits.query_chars},
        "community": {"pattern": COMMUNITY_PATTERN},
        "communities": {"maxItems": limits.communities, "items": {"pattern": _ANY_COMMUNITY}},
        "k": {"minimum": 1, "maximum": limits.k},
        "kind": {"minLength": 1, "maxLength": limits.kind_chars},
        "kinds": {"maxItems": limits.kinds, "items": {"maxLength": limits.kind_chars}},
        "tags": {"maxItems": limits.tags, "items": {"maxLength": limits.tag_chars}},
        "thread": {"minLength": 1, "maxLength": limits.tag_chars},
        "agent_id": {"minLength": 1, "maxLength": limits.agent_id_chars},
        "memories": {"minItems": 1, "maxItems": limits.batch},
        "ids": {"maxItems": limits.batch},
        "ttl_seconds": {"minimum": 1, "maximum": MAX_TTL_SECONDS},
        "skills": {"maxItems": limits.batch - 1},
    }
    return shown.get(name, {})


def with_limits(model: type[InputT], limits: Limits) -> type[InputT]:
    """`model` as the tools show it: its JSON schema carries the configured limits (lengths, counts,
    k's range, the community pattern) and its default k is capped at the limit. The limits are
    enforced by `validation.py`, whose messages say what to change; the schema only shows them."""
    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        annotation: Any = info.annotation
        if name == "memories" and issubclass(model, RememberManyIn):
            annotation = list[with_limits(MemoryIn, limits)]  # type: ignore[misc]
        # A field that shows its own limits keeps them (update's thread may be "", to leave its thread).
        shown = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else _shown_limits(name, limits)
        changes: dict[str, Any] = {"json_schema_extra": shown or None}
        if name == "k" and isinstance(info.default, int):
            changes["default"] = min(info.default, limits.k)
        fields[name] = (annotation, FieldInfo.merge_field_infos(info, **changes))
    limited: type[InputT] = create_model(model.__name__, __base__=model, __doc__=model.__doc__, **fields)
    return limited
