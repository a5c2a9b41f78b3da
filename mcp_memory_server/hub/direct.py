"""A quick tool call on a session the hub knows, answered without the SDK's session machinery (issue 10).

The SDK's streamable-HTTP transport hands every request to the session's server task through
memory streams: the transport parses the body again, validates it as a JSON-RPC message, sends it
to the session's read stream, whose loop validates it as a client request and starts a task for it;
the handler's answer goes back through the session's write stream and the transport's message
router to the request's own stream, and only then out as JSON. For a `recall` that is ~0.6 ms of a
hub's time per call (two hubs side by side, calls alternating: hybrid recall, keyword recall and
`stats` each 0.5-0.6 ms less), a tenth of what a recall costs besides its model call.

`DirectCalls` answers such a call itself: the same tool (`MemoryMCP.call_tool`, with its refusals,
rate limit and error results), in a request context like the SDK's (the same session, the HTTP
request, so the caller and its grants are the same), and the same JSON body the transport would
write. Only a call that the SDK would answer as JSON (`replies.JsonReplies`: one request, no
progress token, not a long tool) on a live, initialized session of this hub whose checks all pass
the way the SDK makes them (Host / Origin / content type, the session's owner, the protocol
version); anything else, or an SDK without the parts read here, goes the SDK's way, which answers
it (or refuses it) as before. The first call of a session (or its `tools/list`) always goes the
SDK's way: that is where the session is learnt (`MemoryMCP.sessions`).

What it does not do that the SDK's path does: such a call cannot be cancelled by a
`notifications/cancelled` (the SDK would cancel its task; a quick call just finishes), and the SDK's
"Processing request" debug log line is not written.
"""

from __future__ import annotations

import logging
from typing import Any

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser, authorization_context
from mcp.server.lowlevel.server import request_ctx
from mcp.server.session import InitializationState, ServerSession
from mcp.server.streamable_http import MCP_PROTOCOL_VERSION_HEADER, MCP_SESSION_ID_HEADER
from mcp.server.transport_security import TransportSecurityMiddleware
from mcp.shared.context import RequestContext
from mcp.shared.version import SUPPORTED_PROTOCOL_VERSIONS
from mcp.types import CallToolRequest, CallToolResult, TextContent
from pydantic import ValidationError
from pydantic_core import to_json
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ..server import Sessions

log = logging.getLogger("mcp_memory_server")

try:  # where mcp 1.x keeps it; without it, RequestContext.experimental stays None
    from mcp.server.experimental.request_context import Experimental
except ImportError:  # pragma: no cover - an SDK without tasks
    Experimental = None  # type: ignore[assignment,misc]


class DirectCalls:
    """See the module docstring. `mcp` is the hub's `server.MemoryMCP` (its session manager made)."""

    def __init__(self, mcp: Any, hosts: TransportSecurityMiddleware) -> None:
        self.mcp = mcp
        sessions = getattr(mcp, "sessions", None)
        self.sessions = sessions if isinstance(sessions, Sessions) else Sessions()
        self.hosts = hosts  # the hub's Host / Origin / content-type checks (the transport's own settings)
        manager = mcp.session_manager
        # The SDK's own bookkeeping, read (never written) to make its checks: without it, no direct calls.
        self.enabled = (sessions is self.sessions and not manager.stateless
                        and isinstance(getattr(manager, "_server_instances", None), dict)
                        and isinstance(getattr(manager, "_session_owners", None), dict))
        if not self.enabled:
            log.info("tool calls go through the MCP SDK's session (stateless, or an SDK without the parts read)")
        self.manager = manager

    async def answer(self, scope: Scope, receive: Receive, send: Send, message: dict[str, Any]) -> bool:
        """Answers `message`, a quick `tools/call` (see replies.JsonReplies), and returns True; or
        returns False having sent nothing, for the SDK to answer."""
        if not self.enabled or message.get("method") != "tools/call":
            return False
        request = Request(scope, receive)
        if await self.hosts.validate_request(request, is_post=True) is not None:
            return False  # the SDK refuses it
        found = self._session(request)
        if found is None:
            return False
        session, lifespan = found
        try:
            call = CallToolRequest.model_validate({"method": "tools/call", "params": message.get("params")})
        except ValidationError:
            return False  # the SDK says what is wrong with it
        experimental = None if Experimental is None else Experimental(
            _client_capabilities=session.client_params.capabilities if session.client_params else None,
            _session=session)
        token = request_ctx.set(RequestContext(message["id"], call.params.meta, session, lifespan, experimental,
                                               request=request))
        try:
            result = await self.mcp.call_tool(call.params.name, call.params.arguments or {})
            if not isinstance(result, CallToolResult):  # every tool of this server returns one
                raise TypeError(f"unexpected result of {call.params.name}: {type(result).__name__}")
        except Exception as exc:  # as the SDK's call_tool handler answers it
            result = CallToolResult(content=[TextContent(type="text", text=str(exc))], isError=True)
        finally:
            request_ctx.reset(token)
        # The bytes the SDK's transport writes (JSONRPCResponse of the result dumped by alias without
        # None fields), serialized once instead of dumped, validated and dumped again.
        answer = to_json({"jsonrpc": "2.0", "id": message["id"], "result": result}, by_alias=True, exclude_none=True)
        response = Response(answer, status_code=200,
                            headers={"Content-Type": "application/json",
                                     MCP_SESSION_ID_HEADER: request.headers[MCP_SESSION_ID_HEADER]})
        await response(scope, receive, send)
        return True

    def _session(self, request: Request) -> tuple[ServerSession, Any] | None:
        """The session of `request` when every check the SDK makes of it passes; None otherwise."""
        session_id = request.headers.get(MCP_SESSION_ID_HEADER)
        if not session_id:
            return None
        transport = self.manager._server_instances.get(session_id)
        if transport is None or getattr(transport, "is_terminated", True):
            return None
        user = request.scope.get("user")
        requestor = authorization_context(user) if isinstance(user, AuthenticatedUser) else None
        if requestor != self.manager._session_owners.get(session_id):
            return None
        version = request.headers.get(MCP_PROTOCOL_VERSION_HEADER)
        if version is not None and version not in SUPPORTED_PROTOCOL_VERSIONS:
            return None
        found = self.sessions.get(session_id)
        if found is None or getattr(found[0], "_initialization_state", None) is not InitializationState.Initialized:
            return None
        return found
