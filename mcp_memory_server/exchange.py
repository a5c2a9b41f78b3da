"""What moves in and out of the memory: the export file and the `export` / `import` tools' inputs
and outputs (the verbs are in transfer.py, the command line in cli_transfer.py).

An export is JSON Lines. The first line is the header (`ExportHeader`: the format, the embedder and
dimension that made the vectors, the communities, how many memories follow); every other line is
one memory (`ExportedMemory`) with every field. Vectors are written only on request (`vectors`):
they let an import into a store with the same embedder skip the embedding.

    {"format": "mcp-memory-server/export", "version": 1, "embedder": "local:all-MiniLM-L6-v2", ...}
    {"id": "9f2c...", "content": "Staging runs Milvus 2.5.", "community": "platform", "kind": "fact", ...}
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .models import ToolInput

FORMAT = "mcp-memory-server/export"
EXPORT_PAGE = 1000  # memories per `export` call unless the call says
EXPORT_PAGE_MAX = 5000


class ExportHeader(BaseModel):
    """The first line of an export."""

    format: Literal["mcp-memory-server/export"] = "mcp-memory-server/export"
    version: Literal[1] = 1
    embedder: str = Field(description="The embedder that made the vectors (an import with another one embeds "
                                      "the memories again).")
    dimension: int
    exported_at: str = Field(description="When the export began (ISO-8601, UTC).")
    communities: list[str] = Field(description="The communities exported.")
    vectors: bool = Field(description="Whether each memory carries its dense vector.")
    expired: bool = Field(description="Whether expired memories were included.")
    count: int = Field(description="How many memories the export holds.")


class ExportedMemory(BaseModel):
    """One memory of an export, every field; an `import` item. `id` is informative: an import
    derives it again from community, thread and content (an edited line is a new memory)."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    content: str
    community: str
    kind: str = "note"
    tags: list[str] = Field(default_factory=list)
    agent_id: str = "anonymous"
    thread: str | None = None
    seq: int | None = Field(None, description="Its order in its thread (kept by an import).")
    created_at: str | None = Field(None, description="ISO-8601, UTC (default: the time of the import).")
    expires_at: str | None = Field(None, description="ISO-8601, UTC; absent: never.")
    metadata: dict[str, Any] = Field(default_factory=dict)
    dense: list[float] | None = Field(None, description="Its dense vector, when the export has them.")


class ExportIn(ToolInput):
    communities: list[str] | None = Field(
        None, description='The communities to export; ["*"] (the default) is every one you may read.')
    include_expired: bool = Field(False, description="Also export memories that have expired but are not purged.")
    vectors: bool = Field(False, description="Include each memory's dense vector (large).")
    cursor: str | None = Field(None, description="The next_cursor of the previous page; none for the first page.")
    limit: int = Field(EXPORT_PAGE, description=f"Memories per page, from 1 to {EXPORT_PAGE_MAX}.",
                       json_schema_extra={"minimum": 1, "maximum": EXPORT_PAGE_MAX})


class ExportPage(BaseModel):
    """One page of an export: the memories, and the cursor of the next page."""

    header: ExportHeader
    memories: list[ExportedMemory]
    next_cursor: str | None = Field(description="Pass it to get the next page; null after the last one.")
    done: int = Field(description="Memories exported so far, this page included.")


class ImportIn(ToolInput):
    memories: list[ExportedMemory] = Field(description="Memories as an export writes them (at most the batch limit "
                                                       "per call).")
    embedder: str | None = Field(None, description="The export header's embedder: vectors made by another one are "
                                                   "not used.")
    dimension: int | None = Field(None, description="The export header's dimension.")
    lines: list[int] | None = Field(None, description="The line number of each memory in its file, for errors.")
    dry_run: bool = Field(False, description="Check every memory (and your right to write it) and store nothing.")


class Imported(BaseModel):
    """Result of an import call."""

    stored: int = Field(description="New memories stored.")
    duplicates: int = Field(description="Memories already there (an import twice stores once).")
    expired: int = Field(description="Memories skipped because they have expired.")
    checked: int = Field(description="Memories checked.")
