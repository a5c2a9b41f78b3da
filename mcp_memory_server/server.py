"""build_server(runtime) -> the MCP server: thin tools that call the memory.

Tool inputs are typed arguments (their JSON schema is what a model sees), outputs are the
pydantic models of `models.py` (returned as structured content). Errors are raised, never
returned: the client gets `isError` with the message.
"""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.fastmcp import Context, FastMCP
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from .access import ANYONE, Caller
from .config import RECALL_K, ROUTE_K
from .models import (
    CommunityStats,
    ExpertProfile,
    Forgotten,
    MemoryIn,
    Recalled,
    Remembered,
    RememberedMany,
    Routed,
    SearchMode,
    Stats,
)
from .runtime import Runtime

INSTRUCTIONS = """\
A long-term memory shared by every agent connected to it, split into communities (teams,
projects, agent groups). Use `recall` before answering to find what is already known, and
`remember` to store facts, decisions and answers worth keeping. `route` tells which registered
expert agents are best placed to answer a question. Memories are scoped to one community
(the server's default unless you name one); pass `communities` to search several."""

CALLER_STATE_KEY = "memory_caller"
# A zero-argument callable counting one tool call against the caller's rate limit (auth.py sets it).
ADMIT_STATE_KEY = "memory_admit"

READ_ONLY = ToolAnnotations(readOnlyHint=True, destructiveHint=False, idempotentHint=True, openWorldHint=False)
WRITE = ToolAnnotations(readOnlyHint=False, destructiveHint=False, idempotentHint=True, openWorldHint=False)
DESTRUCTIVE = ToolAnnotations(readOnlyHint=False, destructiveHint=True, idempotentHint=True, openWorldHint=False)

CommunityArg = Annotated[str | None, Field(description="Community to use (default: the server's default "
                                                       "community). Letters, digits, '_', '.', '-'.")]
TagsArg = Annotated[list[str] | None, Field(description="Tags; a memory matches if it has any of them.")]
AgentArg = Annotated[str | None, Field(description="Agent id (who wrote the memory).")]


class Communities(BaseModel):
    """The communities that hold memories, with counts per kind."""

    communities: list[CommunityStats]


def caller_of(ctx: Context[Any, Any, Any]) -> Caller:
    """The caller the HTTP auth layer attached to this request; stdio callers are trusted.
    Counts the call against the caller's rate limit: raises RateLimited when over it."""
    request = ctx.request_context.request
    if request is None:
        return ANYONE
    state = request.scope.get("state") or {}
    admit = state.get(ADMIT_STATE_KEY)
    if admit is not None:
        admit()
    caller = state.get(CALLER_STATE_KEY)
    return caller if isinstance(caller, Caller) else ANYONE


def build_server(runtime: Runtime, *, host: str = "127.0.0.1", port: int = 8765,
                 allowed_hosts: list[str] | None = None, allowed_origins: list[str] | None = None) -> FastMCP:
    """The MCP server whose tools use `runtime`'s memory. Does no I/O."""
    max_k = runtime.settings.limits.k  # default k is never above the limit this server applies
    hosts = allowed_hosts or ["127.0.0.1:*", "localhost:*", "[::1]:*"]
    origins = allowed_origins or ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]
    mcp = FastMCP(
        "shared-memory",
        instructions=INSTRUCTIONS,
        host=host,
        port=port,
        log_level="WARNING",
        transport_security=TransportSecuritySettings(
            enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins),
    )

    @mcp.tool(annotations=WRITE)
    async def remember(
        content: Annotated[str, Field(description="The text to remember: a fact, decision, answer, note.")],
        ctx: Context[Any, Any, Any],
        community: CommunityArg = None,
        kind: Annotated[str, Field(description="What sort of memory: note, fact, question, answer, ...")] = "note",
        tags: TagsArg = None,
        metadata: Annotated[dict[str, Any] | None, Field(description="Any JSON object to keep with it.")] = None,
        agent_id: AgentArg = None,
    ) -> Remembered:
        """Store a memory in the shared long-term memory. Identical content already stored in the
        same community is not stored twice: its id comes back with duplicate=true."""
        item = MemoryIn(content=content, community=community, kind=kind, tags=tags or [],
                        metadata=metadata or {}, agent_id=agent_id)
        return await (await runtime.memory()).remember(item, caller_of(ctx))

    @mcp.tool(annotations=WRITE)
    async def remember_many(
        memories: Annotated[list[MemoryIn], Field(description="The memories to store, for imports.")],
        ctx: Context[Any, Any, Any],
    ) -> RememberedMany:
        """Store many memories in one call (embedded in batches). Every item is checked first: if
        one is invalid, nothing is stored and the error names it."""
        return await (await runtime.memory()).remember_many(memories, caller_of(ctx))

    @mcp.tool(annotations=READ_ONLY)
    async def recall(
        query: Annotated[str, Field(description="What to look for, in plain words.")],
        ctx: Context[Any, Any, Any],
        community: CommunityArg = None,
        communities: Annotated[list[str] | None, Field(
            description="Search several communities at once; [\"*\"] means every one you may read.")] = None,
        k: Annotated[int, Field(description="How many memories to return (from 1 to the server's limit, "
                                            "MEMORY_MAX_K, 100 unless configured).")] = min(RECALL_K, max_k),
        kinds: Annotated[list[str] | None, Field(description="Only these kinds.")] = None,
        tags: TagsArg = None,
        agent_id: Annotated[str | None, Field(description="Only memories written by this agent.")] = None,
        since: Annotated[str | None, Field(description="Only memories stored at or after this ISO-8601 "
                                                       "date or time, e.g. 2026-11-01.")] = None,
        mode: Annotated[SearchMode, Field(description="hybrid (meaning + keywords, best in general), "
                                                      "semantic (meaning only) or keyword (exact words).")]
        = "hybrid",
    ) -> Recalled:
        """Find the memories most relevant to a query, best first."""
        memory = await runtime.memory()
        return await memory.recall(query, community=community, communities=communities, k=k, kinds=kinds,
                                   tags=tags, agent_id=agent_id, since=since, mode=mode, caller=caller_of(ctx))

    @mcp.tool(annotations=WRITE)
    async def register_expert(
        agent_id: Annotated[str, Field(description="The expert agent's id, as it receives messages.")],
        description: Annotated[str, Field(description="What the expert knows and does, in a few sentences.")],
        ctx: Context[Any, Any, Any],
        skills: Annotated[list[str] | None, Field(description="Short phrases, one per skill or topic.")] = None,
        community: CommunityArg = None,
    ) -> ExpertProfile:
        """Register (or replace) an expert's profile so that `route` can send it questions."""
        return await (await runtime.memory()).register_expert(agent_id, description, skills or [], community,
                                                              caller_of(ctx))

    @mcp.tool(annotations=READ_ONLY)
    async def route(
        question: Annotated[str, Field(description="The question to find experts for.")],
        ctx: Context[Any, Any, Any],
        community: CommunityArg = None,
        k: Annotated[int, Field(description="At most this many experts (from 1 to the server's limit).")]
        = min(ROUTE_K, max_k),
    ) -> Routed:
        """Choose the registered experts best placed to answer a question, judged by their profiles
        and by the memories they wrote (past answers, knowledge). Returns an empty list when no
        expert is a confident match."""
        return await (await runtime.memory()).route(question, community=community, k=k, caller=caller_of(ctx))

    @mcp.tool(annotations=DESTRUCTIVE)
    async def forget(
        ctx: Context[Any, Any, Any],
        ids: Annotated[list[str] | None, Field(description="Ids of the memories to remove.")] = None,
        community: CommunityArg = None,
        kinds: Annotated[list[str] | None, Field(description="Remove memories of these kinds.")] = None,
        tags: Annotated[list[str] | None, Field(description="Remove memories having any of these tags.")] = None,
        agent_id: Annotated[str | None, Field(description="Remove memories written by this agent.")] = None,
    ) -> Forgotten:
        """Remove memories from one community, by id or by kind / tags / agent. All given conditions
        must hold. Returns how many were removed."""
        return await (await runtime.memory()).forget(ids=ids, community=community, kinds=kinds, tags=tags,
                                                     agent_id=agent_id, caller=caller_of(ctx))

    @mcp.tool(annotations=READ_ONLY)
    async def stats(ctx: Context[Any, Any, Any]) -> Stats:
        """Counts per community and kind, and how the memory is stored (URI, embedder, index)."""
        return await (await runtime.memory()).stats(caller_of(ctx))

    @mcp.tool(annotations=READ_ONLY)
    async def list_communities(ctx: Context[Any, Any, Any]) -> Communities:
        """The communities you may read, with how many memories of each kind they hold."""
        return Communities(communities=(await (await runtime.memory()).stats(caller_of(ctx))).communities)

    return mcp
