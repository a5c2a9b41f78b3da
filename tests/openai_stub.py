"""A local OpenAI-compatible chat API for tests: deterministic, with tool calls.

The first completion of a conversation calls `recall` with the user's question; once a tool
result is in the conversation, it answers "Based on the shared memory: <tool result>".
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.conftest import free_port

ANSWER_PREFIX = "Based on the shared memory:"


@dataclass
class ChatStub:
    base_url: str
    requests: list[dict[str, Any]] = field(default_factory=list)


def _reply(body: dict[str, Any]) -> dict[str, Any]:
    messages = body["messages"]
    tool_results = [m["content"] for m in messages if m["role"] == "tool"]
    if tool_results or not body.get("tools"):
        message: dict[str, Any] = {"role": "assistant", "content": f"{ANSWER_PREFIX} {' '.join(tool_results)}"}
        reason = "stop"
    else:
        user = next(m["content"] for m in messages if m["role"] == "user")
        match = re.search(r"Question: (.*)", user)
        query = match.group(1) if match else user
        message = {"role": "assistant", "content": None, "tool_calls": [{
            "id": "call_1", "type": "function",
            "function": {"name": "recall", "arguments": json.dumps({"query": query, "k": 2, "community": "dev-support",
                                                                     "kinds": ["knowledge"]})}}]}
        reason = "tool_calls"
    return {"id": "chatcmpl-stub", "object": "chat.completion", "created": 0, "model": body.get("model", "stub"),
            "choices": [{"index": 0, "message": message, "finish_reason": reason}]}


@contextmanager
def running_chat_stub() -> Iterator[ChatStub]:
    stub = ChatStub(base_url="")

    async def completions(request: Request) -> JSONResponse:
        if request.headers.get("authorization") != "Bearer test-key":
            return JSONResponse({"error": {"message": "bad key"}}, status_code=401)
        body = await request.json()
        stub.requests.append(body)
        return JSONResponse(_reply(body))

    app = Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, name="chat-stub", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the chat stub did not start")
        time.sleep(0.02)
    stub.base_url = f"http://127.0.0.1:{server.config.port}/v1"
    try:
        yield stub
    finally:
        server.should_exit = True
        thread.join(timeout=10)
