"""The memory as MCP resources: what a client can list and read besides calling tools.

    memory://communities                           the communities you may read, with counts (JSON)
    memory://communities/{community}/recent        a community's newest memories (JSON; ?limit=N, up to 100)
    memory://memories/{id}                         one memory (JSON)

The first two are listed, the second once per community you may read; the last two are also
resource templates. They answer with the same grants as the tools (`server.caller_of`) and fail with
the same typed errors: a JSON-RPC error whose `data` names the error class (`errors.to_wire`), so a
hub client re-raises it (`RESOURCE_NOT_FOUND` for an unknown community or memory).

Notifications, in a process that owns the store (a hub, or a stdio server on its own): a client that
listed the resources hears `notifications/resources/list_changed` when a community it may read
appears or empties; one that subscribed to `memory://communities` or to a community's recent
memories hears `notifications/resources/updated` when a write, forget, update or purge touches it.
The SDK derives no `subscribe` capability from a subscribe handler, so it is set here.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, unquote, urlsplit
from weakref import WeakKeyDictionary

import anyio
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.server.lowlevel.helper_types import ReadResourceContents
from mcp.server.session import ServerSession
from mcp.shared.exceptions import McpError
from mcp.types import INTERNAL_ERROR, INVALID_PARAMS, ErrorData, Resource, ResourceTemplate
from pydantic import AnyUrl

from .access import Caller
from .config import COMMUNITY_PATTERN
from .errors import (
    ERROR_META_KEY,
    InvalidInput,
    MemoryServerError,
    StoreError,
    UnknownCommunity,
    UnknownMemory,
    to_wire,
)
from .models import LATEST_LIMIT, LATEST_MAX, Communities, LatestIn

if TYPE_CHECKING:
    from .memory import Memory
    from .service import MemoryService

log = logging.getLogger(__name__)

COMMUNITIES_URI = "memory://communities"
RECENT_TEMPLATE = "memory://communities/{community}/recent"
MEMORY_TEMPLATE = "memory://memories/{id}"
JSON = "application/json"
RESOURCE_NOT_FOUND = -32002  # the MCP specification's code for an unknown resource
_RECENT = re.compile(r"memory://communities/([^/?#]+)/recent")
_MEMORY = re.compile(r"memory://memories/([^/?#]+)")
_SEND_WITHIN = 2.0  # seconds one notification may take before that client is skipped

def recent_uri(community: str, limit: int | None = None) -> str:
    return f"memory://communities/{quote(community, safe='')}/recent" + (f"?limit={limit}" if limit else "")


def memory_uri(memory_id: str) -> str:
    return f"memory://memories/{quote(memory_id, safe='')}"


def mcp_error(error: MemoryServerError) -> McpError:
    """`error` as a JSON-RPC error that keeps its class (a hub client re-raises it)."""
    code = RESOURCE_NOT_FOUND if isinstance(error, UnknownCommunity | UnknownMemory) else \
        INTERNAL_ERROR if isinstance(error, StoreError) else INVALID_PARAMS
    return McpError(ErrorData(code=code, message=str(error), data={ERROR_META_KEY: to_wire(error)}))


class Resources:
    """The resource handlers of one MCP server, and who is told about changes."""

    def __init__(self, memory: Callable[[], Awaitable[Memory]], caller: Callable[[], Caller],
                 session: Callable[[], ServerSession], service: Callable[[], MemoryService | None]) -> None:
        self._memory = memory  # the open memory (runtime.memory)
        self._caller = caller  # who is asking (server.caller_of the current request)
        self._session = session  # the current request's session
        self._service = service  # the MemoryService when this process owns the store, else None
        self._listers: WeakKeyDictionary[ServerSession, Caller] = WeakKeyDictionary()
        self._subscribers: dict[str, WeakKeyDictionary[ServerSession, Caller]] = {}
        self._watching = False
        self._known: set[str] = set()

    def register(self, server: Server[Any, Any]) -> None:
        # The SDK's decorators are untyped.
        server.list_resources()(self.listed)  # type: ignore[no-untyped-call]
        server.list_resource_templates()(self.templates)  # type: ignore[no-untyped-call]
        server.read_resource()(self.read)  # type: ignore[no-untyped-call]
        server.subscribe_resource()(self.subscribe)  # type: ignore[no-untyped-call]
        server.unsubscribe_resource()(self.unsubscribe)  # type: ignore[no-untyped-call]
        plain = server.create_initialization_options

        def options(notification_options: NotificationOptions | None = None,
                    experimental_capabilities: dict[str, dict[str, Any]] | None = None) -> Any:
            opts = plain(notification_options or NotificationOptions(resources_changed=True), experimental_capabilities)
            if opts.capabilities.resources is not None:
                opts.capabilities.resources.subscribe = True
            return opts

        server.create_initialization_options = options  # type: ignore[method-assign]

    async def listed(self) -> list[Resource]:
        caller = self._caller()
        communities = await self._communities(caller)
        await self._watch()
        self._listers[self._session()] = caller
        listed = [Resource(uri=AnyUrl(COMMUNITIES_URI), name="communities", title="Communities",
                           description="The communities you may read, with how many memories of each kind.",
                           mimeType=JSON)]
        listed += [Resource(uri=AnyUrl(recent_uri(c.community)), name=f"{c.community}/recent",
                            title=f"Recent memories of {c.community}",
                            description=f"The newest of the {c.total} memories of community {c.community}.",
                            mimeType=JSON) for c in communities.communities]
        return listed

    async def templates(self) -> list[ResourceTemplate]:
        return [
            ResourceTemplate(uriTemplate=RECENT_TEMPLATE, name="recent", title="A community's recent memories",
                             description=f"The newest memories of a community you may read ({LATEST_LIMIT}; "
                                         f"add ?limit=N for up to {LATEST_MAX}). Community names match "
                                         f"{COMMUNITY_PATTERN}.", mimeType=JSON),
            ResourceTemplate(uriTemplate=MEMORY_TEMPLATE, name="memory", title="One memory",
                             description="A memory by its id (as recall, remember and update return it).",
                             mimeType=JSON),
        ]

    async def read(self, uri: AnyUrl) -> Iterable[ReadResourceContents]:
        try:
            text = await self._read(str(uri), self._caller())
        except MemoryServerError as exc:
            raise mcp_error(exc) from exc
        return [ReadResourceContents(content=text, mime_type=JSON)]

    async def subscribe(self, uri: AnyUrl) -> None:
        caller = self._caller()
        try:
            await self._read(str(uri), caller)  # only what the caller may read
        except MemoryServerError as exc:
            raise mcp_error(exc) from exc
        await self._watch()
        self._subscribers.setdefault(_plain(str(uri)), WeakKeyDictionary())[self._session()] = caller

    async def unsubscribe(self, uri: AnyUrl) -> None:
        self._subscribers.get(_plain(str(uri)), WeakKeyDictionary()).pop(self._session(), None)

    async def changed(self, communities: set[str]) -> None:
        """A write touched `communities` (a writes.Writer watcher)."""
        uris = [COMMUNITIES_URI, *(recent_uri(c) for c in communities)]
        for uri in uris:
            for session in list(self._subscribers.get(uri, {})):
                await _send(session.send_resource_updated(AnyUrl(uri)))
        service = self._service()
        now = set((await service.writer.tallies.everything()).keys()) if service is not None else self._known
        moved, self._known = now ^ self._known, now
        for session, caller in list(self._listers.items()) if moved else []:
            if any(caller.may_access(c) for c in moved):
                await _send(session.send_resource_list_changed())

    async def _read(self, uri: str, caller: Caller) -> str:
        memory = await self._memory()
        if _plain(uri) == COMMUNITIES_URI:
            return (await self._communities(caller)).model_dump_json()
        if match := _RECENT.fullmatch(_plain(uri)):
            limit = _limit(uri)
            request = LatestIn(community=unquote(match.group(1)), limit=limit)
            return (await memory.latest(request, caller)).model_dump_json()
        if match := _MEMORY.fullmatch(_plain(uri)):
            return (await memory.memory(unquote(match.group(1)), caller)).model_dump_json()
        raise UnknownMemory(f"no resource {uri!r}: read {COMMUNITIES_URI}, {RECENT_TEMPLATE} or {MEMORY_TEMPLATE}")

    async def _communities(self, caller: Caller) -> Communities:
        memory = await self._memory()
        return Communities(communities=(await memory.stats(caller)).communities)

    async def _watch(self) -> None:
        service = self._service()
        if service is not None and not self._watching:
            self._watching = True
            self._known = set((await service.writer.tallies.everything()).keys())
            service.writer.watchers.append(self.changed)


def _plain(uri: str) -> str:
    """The URI without its query (`?limit=`)."""
    return uri.split("?", 1)[0]


def _limit(uri: str) -> int:
    given = parse_qs(urlsplit(uri).query).get("limit")
    if not given:
        return LATEST_LIMIT
    if not given[0].isdigit() or not 1 <= int(given[0]) <= LATEST_MAX:
        raise InvalidInput(f"limit must be a whole number from 1 to {LATEST_MAX}, got {given[0][:20]!r}")
    return int(given[0])


async def _send(notification: Any) -> None:
    """Send one notification; a client that is gone or too slow is skipped."""
    try:
        with anyio.move_on_after(_SEND_WITHIN):
            await notification
    except Exception:  # the session closed: nothing to tell
        log.debug("a resource notification was not delivered", exc_info=True)
