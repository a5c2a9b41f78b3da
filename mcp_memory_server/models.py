"""Pydantic models that are the tools' inputs and structured outputs.

The MCP server, the hub client and the OpenAgents bridge all use these, so the JSON schemas a
model sees are the same everywhere.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SearchMode = Literal["hybrid", "semantic", "keyword"]

Community = Annotated[
    str,
    Field(description="Community (team, project or agent group) the memory belongs to. "
                      "Letters, digits, '_', '.', '-'; 1-64 characters."),
]


class MemoryIn(BaseModel):
    """One memory to store (an item of `remember_many`)."""

    model_config = ConfigDict(extra="forbid")

    content: str = Field(description="The text to remember.")
    community: str | None = Field(None, description="Community to store it in (default: the server's).")
    kind: str = Field("note", description="What sort of memory: note, fact, question, answer, ...")
    tags: list[str] = Field(default_factory=list, description="Labels to filter on later.")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Free-form JSON object kept as is.")
    agent_id: str | None = Field(None, description="Who is remembering (an agent or user id).")


class Remembered(BaseModel):
    """Result of storing one memory."""

    id: str = Field(description="The memory's id (stable: the same content in the same community "
                                "always has the same id).")
    community: str
    duplicate: bool = Field(description="True when identical content was already stored in this community; "
                                        "the existing memory's id is returned and nothing new is stored.")


class RememberedMany(BaseModel):
    """Result of storing a batch of memories, in input order."""

    results: list[Remembered]
    stored: int = Field(description="How many new memories were stored.")
    duplicates: int = Field(description="How many were already there.")


class Hit(BaseModel):
    """One recalled memory."""

    id: str
    content: str
    score: float = Field(description="Relevance; higher is better. Comparable within one recall only.")
    community: str
    kind: str
    tags: list[str]
    agent_id: str
    created_at: str = Field(description="When it was stored (ISO-8601, UTC).")
    metadata: dict[str, Any]


class Recalled(BaseModel):
    """Result of a recall, best first."""

    hits: list[Hit]
    mode: SearchMode
    communities: list[str]


class ExpertProfile(BaseModel):
    """Result of registering an expert."""

    agent_id: str
    community: str
    profile_id: str = Field(description="Id of the memory that holds the profile.")
    skills: list[str]


class ExpertMatch(BaseModel):
    """An expert chosen by `route`."""

    agent_id: str
    score: float = Field(description="Confidence in [0, 1].")
    reason: str = Field(description="One line on why this expert was chosen.")
    memory_ids: list[str] = Field(description="Ids of the memories (profile, past answers, knowledge) "
                                              "that support the choice.")


class Routed(BaseModel):
    """Result of a route: the experts best placed to answer, best first. Empty when none is a
    confident match."""

    experts: list[ExpertMatch]
    community: str


class Forgotten(BaseModel):
    """Result of a forget."""

    deleted: int = Field(description="How many memories were removed.")


class CommunityStats(BaseModel):
    community: str
    total: int
    kinds: dict[str, int]


class Stats(BaseModel):
    """What the memory holds and how it is served."""

    total: int
    communities: list[CommunityStats]
    store_uri: str
    collection: str
    embedder: str
    dimension: int
    index_type: str
    embedder_loaded: bool
