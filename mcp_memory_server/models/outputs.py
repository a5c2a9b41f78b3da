"""The tools' results: what each tool answers (also its advertised output schema)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from .base import SearchMode


class Remembered(BaseModel):
    """Result of storing one memory."""

    id: str = Field(description="The memory's id (stable: the same content in the same community "
                                "always has the same id).")
    community: str
    duplicate: bool = Field(description="True when identical content was already stored in this community; "
                                        "the existing memory's id is returned and nothing new is stored (its "
                                        "tags, kind, metadata and expiry stay as they were: `update` changes "
                                        "them).")


class RememberedMany(BaseModel):
    """Result of storing a batch of memories, in input order."""

    results: list[Remembered]
    stored: int = Field(description="How many new memories were stored.")
    duplicates: int = Field(description="How many were already there.")


class StoredMemory(BaseModel):
    """One stored memory, as a person browsing the memory sees it (a recall hit without a score)."""

    id: str
    content: str
    community: str
    kind: str
    tags: list[str]
    agent_id: str
    thread: str | None = Field(None, description="The thread the memory belongs to, if any.")
    created_at: str = Field(description="When it happened: when it was stored, unless the writer said "
                                        "(ISO-8601, UTC).")
    metadata: dict[str, Any]
    expires_at: str | None = Field(None, description="When it will be forgotten (ISO-8601, UTC), if ever.")


class Hit(StoredMemory):
    """One recalled memory: a stored memory with its score and the evidence behind it."""

    score: float = Field(description="Estimated probability, in [0, 1], that the memory is relevant to the "
                                     "query; the same scale in every mode.")
    dense: float | None = Field(None, description="Evidence: cosine similarity of the query and the memory "
                                                  "(with its thread context), when the mode looked at meaning.")
    keyword: float | None = Field(None, description="Evidence: the memory's BM25 score for the query's words, "
                                                    "when the mode looked at words.")


class Recalled(BaseModel):
    """Result of a recall, best first."""

    hits: list[Hit]
    mode: SearchMode
    communities: list[str]


class Latest(BaseModel):
    """The newest memories of the communities read, newest first."""

    memories: list[StoredMemory]
    communities: list[str]


class Expert(BaseModel):
    """An expert registered in a community, as `register_expert` stored it."""

    agent_id: str
    community: str
    description: str
    skills: list[str]
    profile_id: str = Field(description="Id of the memory that holds the profile.")
    registered_at: str = Field(description="When the profile was stored (ISO-8601, UTC).")


class Experts(BaseModel):
    """The experts registered in one community, by agent id."""

    experts: list[Expert]
    community: str


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


class Updated(BaseModel):
    """Result of an update."""

    id: str = Field(description="The memory's id now.")
    previous_id: str | None = Field(None, description="The id it had, when a new text or thread replaced it "
                                                      "(that id no longer exists).")
    community: str
    changed: list[str] = Field(description="The fields that changed.")


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
    store_uri: str | None = Field(description="Where the memory is stored (a file path or server URI); "
                                           "only for a caller granted every community.")
    collection: str
    embedder: str
    dimension: int
    index_type: str
    embedder_loaded: bool


class Communities(BaseModel):
    """The communities that hold memories, with counts per kind."""

    communities: list[CommunityStats]
