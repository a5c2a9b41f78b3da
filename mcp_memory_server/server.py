"""build_server(runtime) -> the MCP server: one tool per verb of the memory, declared from its input model.

`TOOLS` lists the tools: name, input model (its fields are the tool's arguments), output model
(returned as structured content), annotations, description. Errors are raised, never returned:
the client gets `isError` with the message, and `_meta` names the error class (errors.to_wire)
so that a hub client re-raises the same class. A call that sends a progress token hears the
progress of remember_many, export and import. The resources are resources.py's, the prompts
prompts.py's; they answer with the same grants (`caller_of`).

What a call costs besides the memory's own work (measured, issue 10): a tool returns a ready
`CallToolResult` whose structured content pydantic has checked, so the SDK skips its per-call
`jsonschema.validate` (which re-checks the schema against its metaschema: ~8 ms for a 10-hit
recall); output schemas declare JSON Schema draft-07, whose metaschema check the Python MCP client
(which validates every result) runs in ~1.8 ms instead of 2020-12's ~7.5 ms, and write an optional
field as `type: [T, "null"]` rather than an `anyOf` (the client's check of a 10-hit recall: ~1.8 ms,
not ~2.9). Streamable HTTP answers with SSE streams (not `json_response`: the SDK would drop every
notification of a call answered as JSON, progress included); the hub turns the stream of a call
that asked for no progress and holds only its answer into a plain JSON body (hub/replies.py), and
answers a quick call of a session it knows without the SDK's session machinery (hub/direct.py,
which learns the sessions from `MemoryMCP.sessions`).
"""

from __future__ import annotations

import inspect
import json
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from mcp.server.fastmcp import Context, FastMCP
from mcp.server.fastmcp.exceptions import ToolError
from mcp.server.fastmcp.tools import Tool
from mcp.server.session import ServerSession
from mcp.server.streamable_http import MCP_SESSION_ID_HEADER
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.context import RequestContext
from mcp.types import CallToolResult, ContentBlock, TextContent, ToolAnnotations
from mcp.types import Tool as ListedTool
from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from . import __version__
from . import validation as check
from .access import ANYONE, Caller
from .config import Limits
from .errors import ERROR_META_KEY, InvalidInput, MemoryServerError, to_wire
from .exchange import ExportIn, ExportPage, Imported, ImportIn
from .memory import Memory, Runtime
from .models import (
    Communities,
    ExpertProfile,
    ForgetIn,
    Forgotten,
    MemoryIn,
    NoInput,
    Recalled,
    RecallIn,
    RegisterExpertIn,
    Remembered,
    RememberedMany,
    RememberManyIn,
    Routed,
    RouteIn,
    Stats,
    ToolInput,
    Updated,
    UpdateIn,
    with_limits,
)
from .progress import Progress
from .prompts import Prompts
from .resources import Resources

INSTRUCTIONS = """\
A long-term memory shared by every agent connected to it, split into communities (teams,
projects, agent groups). Use `recall` before answering to find what is already known, and
`remember` to store facts, decisions and answers worth keeping. `route` tells which registered
expert agents are best placed to answer a question. Memories are scoped to one community
(the server's default unless you name one); pass `communities` to search several."""

# The HTTP layer (hub/auth.py) attaches to the request state the caller, and the RateLimited refusal
# of a tool call over its token's rate limit (which the tool reports: a tool error a model sees).
CALLER_STATE_KEY = "memory_caller"
REFUSED_STATE_KEY = "memory_refused"

READ_ONLY = ToolAnnotations(readOnlyHint=True, destructiveHint=False, idempotentHint=True, openWorldHint=False)
WRITE = ToolAnnotations(readOnlyHint=False, destructiveHint=False, idempotentHint=True, openWorldHint=False)
DESTRUCTIVE = ToolAnnotations(readOnlyHint=False, destructiveHint=True, idempotentHint=True, openWorldHint=False)
# A second identical update finds the memory replaced (new text or thread) and says so.
REPLACING = ToolAnnotations(readOnlyHint=False, destructiveHint=True, idempotentHint=False, openWorldHint=False)
# The dialect the output schemas declare. pydantic's schemas use nothing draft-07 lacks ($defs is
# reached by a JSON pointer, which every dialect resolves; tests/test_tool_results.py checks).
OUTPUT_SCHEMA_DIALECT = "http://json-schema.org/draft-07/schema#"

Verb = Callable[[Memory, Any, Caller, Progress | None], Awaitable[BaseModel]]


async def _communities(memory: Memory, caller: Caller) -> Communities:
    return Communities(communities=(await memory.stats(caller)).communities)


@dataclass(frozen=True)
class ToolDef:
    """One MCP tool: what a model sees of it and which verb of the memory runs it."""

    name: str
    input: type[ToolInput]
    output: type[BaseModel]
    annotations: ToolAnnotations
    description: str
    verb: Verb


TOOLS: tuple[ToolDef, ...] = (
    ToolDef("remember", MemoryIn, Remembered, WRITE,
            "Store a memory in the shared long-term memory, optionally until an expiry (ttl_seconds or "
            "expires_at). Identical content already stored in the same community is not stored twice: its id "
            "comes back with duplicate=true and the stored memory is left as it is (use `update` to change "
            "its tags, kind, metadata or expiry).",
            lambda m, r, c, p: m.remember(r, c)),
    ToolDef("remember_many", RememberManyIn, RememberedMany, WRITE,
            "Store many memories in one call (embedded in batches). Every item is checked first: if one is "
            "invalid, nothing is stored and the error names it.",
            lambda m, r, c, p: m.remember_many(r, c, p)),
    ToolDef("recall", RecallIn, Recalled, READ_ONLY,
            "Find the memories most relevant to a query, best first.",
            lambda m, r, c, p: m.recall(r, c)),
    ToolDef("register_expert", RegisterExpertIn, ExpertProfile, DESTRUCTIVE,
            "Register (or replace) an expert's profile so that `route` can send it questions. Replaces the "
            "expert's previous description and skills in that community.",
            lambda m, r, c, p: m.register_expert(r, c)),
    ToolDef("route", RouteIn, Routed, READ_ONLY,
            "Choose the registered experts best placed to answer a question, judged by their profiles and by "
            "the memories they wrote (past answers, knowledge). Returns an empty list when no expert is a "
            "confident match.",
            lambda m, r, c, p: m.route(r, c)),
    ToolDef("update", UpdateIn, Updated, REPLACING,
            "Change one memory: its tags, kind, metadata or expiry in place; a new content or thread replaces "
            "it with a memory under a new id (the answer names both). Only the fields given change.",
            lambda m, r, c, p: m.update(r, c)),
    ToolDef("forget", ForgetIn, Forgotten, DESTRUCTIVE,
            "Remove memories from one community, by id or by kind / tags / agent. All given conditions must "
            "hold. Returns how many were removed.",
            lambda m, r, c, p: m.forget(r, c)),
    ToolDef("stats", NoInput, Stats, READ_ONLY,
            "Counts per community and kind, and how the memory is stored (URI, embedder, index).",
            lambda m, r, c, p: m.stats(c)),
    ToolDef("list_communities", NoInput, Communities, READ_ONLY,
            "The communities you may read, with how many memories of each kind they hold.",
            lambda m, r, c, p: _communities(m, c)),
    ToolDef("export", ExportIn, ExportPage, READ_ONLY,
            "Every memory of the communities you may read, with every field, a page at a time: call again "
            "with next_cursor until it is null. The lines of an export file (`mcp-memory-server export`).",
            lambda m, r, c, p: m.export(r, c, p)),
    ToolDef("import", ImportIn, Imported, WRITE,
            "Store memories as `export` gives them, keeping their time, thread, expiry and (for a token "
            "granted every community) author. Every memory is checked first; importing twice stores once.",
            lambda m, r, c, p: m.import_memories(r, c, p)),
)


def request_state(ctx: Context[Any, Any, Any]) -> dict[str, Any]:
    """What the HTTP layer attached to this request (nothing over stdio or in memory)."""
    try:
        request = ctx.request_context.request
    except ValueError:  # outside a request
        return {}
    state = request.scope.get("state") if request is not None else None
    return state if isinstance(state, dict) else {}


def caller_of(ctx: Context[Any, Any, Any]) -> Caller:
    """The caller the HTTP layer attached to this request; stdio and in-memory callers are trusted."""
    caller = request_state(ctx).get(CALLER_STATE_KEY)
    return caller if isinstance(caller, Caller) else ANYONE


def progress_of(ctx: Context[Any, Any, Any]) -> Progress | None:
    """Progress notifications for this call, when the client sent a progress token."""
    try:
        meta = ctx.request_context.meta
    except ValueError:  # outside a request
        return None
    if meta is None or meta.progressToken is None:
        return None

    async def send(progress: float, total: float | None, message: str | None) -> None:
        try:
            await ctx.report_progress(progress, total, message)
        except Exception:  # a client that went away still gets its call finished
            pass

    return send


class Sessions:
    """The streamable-HTTP sessions this server has answered a request of: session id -> the SDK's
    `ServerSession` and its lifespan context. Held weakly: a session whose server task ended is gone."""

    def __init__(self) -> None:
        self._by_id: weakref.WeakValueDictionary[str, ServerSession] = weakref.WeakValueDictionary()
        self._lifespan: weakref.WeakKeyDictionary[ServerSession, Any] = weakref.WeakKeyDictionary()

    def note(self, context: RequestContext[Any, Any, Any] | None) -> None:
        """Learns the session of a request that came the SDK's way (a no-op outside HTTP)."""
        request = getattr(context, "request", None)
        session = getattr(context, "session", None)
        if context is None or not isinstance(request, Request) or not isinstance(session, ServerSession):
            return
        session_id = request.headers.get(MCP_SESSION_ID_HEADER)
        if session_id and self._by_id.get(session_id) is not session:
            self._by_id[session_id] = session
            self._lifespan[session] = context.lifespan_context

    def get(self, session_id: str) -> tuple[ServerSession, Any] | None:
        session = self._by_id.get(session_id)
        if session is None:
            return None
        return session, self._lifespan.get(session)


class MemoryMCP(FastMCP):
    """FastMCP that names this package's version in `serverInfo` (FastMCP would name the MCP SDK's),
    refuses arguments a tool does not take (FastMCP drops them silently), and turns every refusal
    into a tool error a model can act on: one line naming the argument (not pydantic's report with
    its URL), with the error's class in `_meta` (see errors.to_wire)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._mcp_server.version = __version__  # FastMCP has no parameter for it
        self.arguments: dict[str, list[str]] = {}  # tool name -> the arguments it takes
        self.sessions = Sessions()  # for hub/direct.py

    async def list_tools(self) -> list[ListedTool]:
        self.sessions.note(self._request_context())
        tools = await super().list_tools()
        for tool in tools:
            if tool.outputSchema is not None:
                tool.outputSchema = {"$schema": OUTPUT_SCHEMA_DIALECT, **nullable_as_type_list(tool.outputSchema)}
        return tools

    def _request_context(self) -> RequestContext[Any, Any, Any] | None:
        try:
            return self._mcp_server.request_context
        except LookupError:
            return None

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> Sequence[ContentBlock] | dict[str, Any]:
        self.sessions.note(self._request_context())
        try:
            refused = request_state(self.get_context()).get(REFUSED_STATE_KEY)
            if isinstance(refused, MemoryServerError):  # over the token's rate limit (counted in hub/auth.py)
                raise refused
            unknown = sorted(set(arguments) - set(self.arguments.get(name, arguments)))
            if unknown:
                raise InvalidInput(f"unknown argument {', '.join(map(repr, unknown))}: {name} takes "
                                   f"{', '.join(self.arguments[name]) or 'no arguments'}")
            return await super().call_tool(name, arguments)
        except ToolError as exc:
            cause = exc.__cause__
            if isinstance(cause, ValidationError):
                cause = InvalidInput(check.describe(cause))
            if not isinstance(cause, MemoryServerError):
                raise
            return _error_result(cause)
        except MemoryServerError as exc:
            return _error_result(exc)


# Keywords under which a schema does more than name a type: `type: [T, "null"]` would change what
# such a schema accepts, so an `anyOf` holding one stays as it is.
_NOT_MERGED = frozenset({"$ref", "anyOf", "oneOf", "allOf", "not", "enum", "const", "if", "then", "else"})


def nullable_as_type_list(schema: Any) -> Any:
    """`schema` with each `anyOf: [{"type": T, ...}, {"type": "null"}]` (pydantic's `T | None`)
    written as `{"type": [T, "null"], ...}`: the same values are valid, and the Python MCP client,
    which validates every result with jsonschema, checks a 10-hit recall in ~1.8 ms instead of
    ~2.9 ms (an `anyOf` tries each branch for each value)."""
    if isinstance(schema, list):
        return [nullable_as_type_list(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: nullable_as_type_list(value) for key, value in schema.items()}
    branches = out.get("anyOf")
    if isinstance(branches, list) and len(branches) == 2 and {"type": "null"} in branches and "type" not in out:
        other = branches[0] if branches[1] == {"type": "null"} else branches[1]
        if isinstance(other, dict) and isinstance(other.get("type"), str) and not _NOT_MERGED & other.keys() \
                and not other.keys() & (out.keys() - {"anyOf"}):
            del out["anyOf"]
            out.update(other, type=[other["type"], "null"])
    return out


def _error_result(error: MemoryServerError) -> Sequence[ContentBlock]:
    # A CallToolResult passes through the SDK's handler unchanged (typed as content for FastMCP).
    result: Any = CallToolResult(content=[TextContent(type="text", text=str(error))], isError=True,
                                 _meta={ERROR_META_KEY: to_wire(error)})
    return result  # type: ignore[no-any-return]


def as_result(model: BaseModel) -> CallToolResult:
    """A tool's result: `model` as structured content, and as compact JSON text for clients that
    read only text."""
    data = model.model_dump(mode="json")
    return CallToolResult(content=[TextContent(type="text", text=json.dumps(data, ensure_ascii=False))],
                          structuredContent=data)


def tool_function(tool: ToolDef, limits: Limits, runtime: Runtime | None) -> Callable[..., Awaitable[CallToolResult]]:
    """The async function FastMCP registers for `tool`: its parameters are the input model's fields
    (with the limits shown in their schema), plus the request context. It returns a CallToolResult
    annotated with the output model, which FastMCP advertises as the output schema and checks the
    structured content against (with pydantic)."""
    model = with_limits(tool.input, limits)

    async def run(ctx: Context[Any, Any, Any], **arguments: Any) -> CallToolResult:
        if runtime is None:
            raise RuntimeError(f"{tool.name}: this server lists tools only")
        request = model.model_validate(arguments)
        async with runtime.call():
            return as_result(await tool.verb(await runtime.memory(), request, caller_of(ctx), progress_of(ctx)))

    parameters = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[field.annotation, field],
                                    default=inspect.Parameter.empty if field.is_required() else field.get_default())
                  for name, field in model.model_fields.items()]
    parameters.append(inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=Context))
    returns = Annotated[CallToolResult, tool.output]
    run.__signature__ = inspect.Signature(parameters, return_annotation=returns)  # type: ignore[attr-defined]
    run.__annotations__ = {"ctx": Context, "return": returns}
    run.__name__ = tool.name
    run.__doc__ = tool.description
    return run


def tool_specs(limits: Limits) -> list[Tool]:
    """The tools as the server lists them (name, description, input schema), without a server."""
    return [Tool.from_function(tool_function(t, limits, None), name=t.name, description=t.description,
                               annotations=t.annotations) for t in TOOLS]


def build_server(runtime: Runtime, *, host: str = "127.0.0.1", port: int = 8765,
                 security: TransportSecuritySettings | None = None) -> FastMCP:
    """The MCP server whose tools use `runtime`'s memory. Does no I/O. `security`: the Host /
    Origin checks of the HTTP transports (the SDK's loopback defaults when None)."""
    mcp = MemoryMCP("shared-memory", instructions=INSTRUCTIONS, host=host, port=port, log_level="WARNING",
                    transport_security=security, max_request_body_size=runtime.settings.limits.request_bytes,
                    stateless_http=runtime.settings.stateless_http)
    for tool in TOOLS:
        mcp.arguments[tool.name] = list(tool.input.model_fields)
        mcp.add_tool(tool_function(tool, runtime.settings.limits, runtime), name=tool.name,
                     description=tool.description, annotations=tool.annotations)

    async def memory() -> Memory:
        async with runtime.call():
            return await runtime.memory()

    def caller() -> Caller:
        return caller_of(mcp.get_context())

    def session() -> Any:
        return mcp.get_context().session

    Resources(memory, caller, session, lambda: runtime.service).register(mcp._mcp_server)
    Prompts(memory, caller).register(mcp._mcp_server)
    return mcp
