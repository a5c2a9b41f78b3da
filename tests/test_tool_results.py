"""What a tool result costs besides the memory's work (issue 10): no per-call jsonschema validation
in the server, draft-07 output schemas, Nagle off on the hub's connections, and the setting that
makes hubs stateless behind a load balancer."""

from __future__ import annotations

import asyncio
import json
import socket
import types
from pathlib import Path
from typing import Any

import anyio
import httpx
import jsonschema
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.server.lowlevel import server as lowlevel

from mcp_memory_server.config import Settings
from mcp_memory_server.hub.launch import free_port
from mcp_memory_server.hub.serve import _listen
from mcp_memory_server.server import OUTPUT_SCHEMA_DIALECT
from tests.conftest import call, running_hub

pytestmark = pytest.mark.anyio

INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
              "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                         "clientInfo": {"name": "test", "version": "0"}}}
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


async def test_tool_results_are_not_validated_again_by_the_sdks_jsonschema(client: ClientSession,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []

    def validate(instance: Any, schema: Any, **kwargs: Any) -> None:
        seen.append(schema)
        jsonschema.validate(instance, schema, **kwargs)

    # Only the server's reference to jsonschema: the client validates too, on purpose.
    monkeypatch.setattr(lowlevel, "jsonschema", types.SimpleNamespace(validate=validate,
                                                                      ValidationError=jsonschema.ValidationError))
    await call(client, "remember", content="The release train leaves on Thursdays.", community="ops")
    assert (await call(client, "recall", query="when is the release?", community="ops"))["hits"]
    await call(client, "stats")
    assert seen == []


async def test_output_schemas_declare_draft_07_and_every_result_satisfies_them(client: ClientSession) -> None:
    tools = {t.name: t for t in (await client.list_tools()).tools}
    for tool in tools.values():
        assert tool.outputSchema is not None and tool.outputSchema["$schema"] == OUTPUT_SCHEMA_DIALECT
        jsonschema.Draft7Validator.check_schema(tool.outputSchema)
    results = {
        "remember": await call(client, "remember", content="Backups run at 02:00 UTC.", community="ops",
                               tags=["backup"], metadata={"owner": "sre"}),
        "remember_many": await call(client, "remember_many", memories=[{"content": "Disk alerts page SRE.",
                                                                        "community": "ops"}]),
        "recall": await call(client, "recall", query="when do backups run", community="ops"),
        "register_expert": await call(client, "register_expert", agent_id="sre-bot", community="ops",
                                      description="Backups and disks", skills=["backup"]),
        "route": await call(client, "route", question="the backup failed", community="ops"),
        "forget": await call(client, "forget", community="ops", tags=["nothing-has-this"]),
        "stats": await call(client, "stats"),
        "list_communities": await call(client, "list_communities"),
    }
    assert results["recall"]["hits"] and results["stats"]["communities"]
    for name, result in results.items():
        # Draft 7 resolves pydantic's "$defs" references by JSON pointer: nested models are checked too.
        jsonschema.Draft7Validator(tools[name].outputSchema).validate(result)
    bad = dict(results["recall"], hits=[{"id": 3}])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(tools["recall"].outputSchema).validate(bad)
    # Optional fields are `type: [T, "null"]` (cheaper for a validating client than pydantic's anyOf),
    # and still refuse a value of another type.
    assert '{"type": "null"}' not in json.dumps(tools["recall"].outputSchema)
    hit = results["recall"]["hits"][0]
    recall = jsonschema.Draft7Validator(tools["recall"].outputSchema)
    recall.validate(dict(results["recall"], hits=[dict(hit, thread=None, dense=None, keyword=None)]))
    for field, value in (("thread", 3), ("dense", "high"), ("expires_at", 0)):
        with pytest.raises(jsonschema.ValidationError):
            recall.validate(dict(results["recall"], hits=[dict(hit, **{field: value})]))


def test_hubs_are_stateless_by_default_on_a_milvus_server_and_stateful_on_lite(tmp_path: Path) -> None:
    assert Settings(milvus_uri=str(tmp_path / "m.db")).stateless_http is False
    assert Settings(milvus_uri="http://milvus:19530").stateless_http is True
    assert Settings(milvus_uri="https://x.zillizcloud.com", memory_stateless_http=False).stateless_http is False
    assert Settings(milvus_uri=str(tmp_path / "m.db"), memory_stateless_http=True).stateless_http is True


async def test_a_stateless_hub_answers_requests_that_carry_no_session(settings: Settings) -> None:
    stateless = settings.model_copy(update={"memory_stateless_http": True})
    with running_hub(stateless) as hub:
        async with httpx.AsyncClient(timeout=30) as http:
            opened = await http.post(hub.url, json=INITIALIZE, headers=ACCEPT)
            assert opened.status_code == 200 and "mcp-session-id" not in opened.headers
            # Any hub behind a load balancer may get the next request: it needs nothing from the first.
            answer = await http.post(hub.url, json={"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                                                    "params": {"name": "stats", "arguments": {}}},
                                     headers=ACCEPT | {"mcp-protocol-version": "2025-06-18"})
        # One answer and nothing else: plain JSON (hub/replies.py), which the protocol allows for any request.
        assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
        assert "communities" in answer.json()["result"]["structuredContent"]
        async with streamable_http_client(hub.url) as (read, write, _), ClientSession(read, write) as session:
            await session.initialize()
            assert not (await session.call_tool("list_communities", {})).isError


async def test_the_hubs_listening_socket_makes_connections_that_send_small_answers_at_once() -> None:
    # asyncio turns Nagle off (TCP_NODELAY) only on sockets whose proto is IPPROTO_TCP; without it an
    # answer written in two parts waited for the client's delayed ACK (~40 ms per call).
    listener = _listen("127.0.0.1", free_port())
    nodelay: list[int] = []

    async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nodelay.append(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    server = await asyncio.start_server(accepted, sock=listener)
    async with server:
        _, writer = await asyncio.open_connection(*listener.getsockname()[:2])
        with anyio.fail_after(10):
            while not nodelay:
                await asyncio.sleep(0.01)
        writer.close()
    assert nodelay == [1]
