"""A tool-calling loop against an OpenAI-compatible chat API, with the bridge tools.

Configured by OPENAI_API_KEY, OPENAI_BASE_URL and OPENAI_MODEL; without a key there is no LLM
and the agents answer from the memories they recalled instead.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from openagents.models.tool import AgentTool


class LLMError(Exception):
    """The chat API failed or answered something that is not a chat completion."""


@dataclass(frozen=True)
class LLMConfig:
    api_key: str
    base_url: str = "https://api.openai.com/v1"
    model: str = "gpt-4o-mini"
    timeout: float = 60.0

    @classmethod
    def from_env(cls) -> LLMConfig | None:
        """The LLM named by OPENAI_API_KEY / OPENAI_BASE_URL / OPENAI_MODEL; None without a key."""
        key = os.environ.get("OPENAI_API_KEY")
        if not key:
            return None
        return cls(api_key=key, base_url=os.environ.get("OPENAI_BASE_URL") or cls.base_url,
                   model=os.environ.get("OPENAI_MODEL") or cls.model)


@dataclass
class ToolLoopResult:
    answer: str
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


async def run_tool_loop(config: LLMConfig, system: str, user: str, tools: Sequence[AgentTool], *,
                        max_rounds: int = 4) -> ToolLoopResult:
    """Ask the model, run the tools it calls, feed their results back, until it answers in text.

    A failing tool is reported to the model as the tool's result (it can correct itself); after
    `max_rounds` rounds of tool calls the model is asked once more without tools. Raises LLMError.
    """
    by_name = {tool.name: tool for tool in tools}
    specs = [{"type": "function", "function": tool.to_openai_function()} for tool in tools]
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    result = ToolLoopResult(answer="")
    headers = {"Authorization": f"Bearer {config.api_key}"}
    async with httpx.AsyncClient(base_url=config.base_url.rstrip("/"), headers=headers,
                                 timeout=config.timeout) as http:
        for round_ in range(max_rounds + 1):
            offer_tools = bool(specs) and round_ < max_rounds
            message = await _complete(http, config.model, messages, specs if offer_tools else None)
            calls = message.get("tool_calls") or []
            if not calls or not offer_tools:
                result.answer = str(message.get("content") or "").strip()
                return result
            messages.append({"role": "assistant", "content": message.get("content"), "tool_calls": calls})
            for call in calls:
                name, arguments, output = await _run_call(call, by_name)
                result.tool_calls.append((name, arguments))
                messages.append({"role": "tool", "tool_call_id": call.get("id", ""), "content": output})
    return result


async def _complete(http: httpx.AsyncClient, model: str, messages: list[dict[str, Any]],
                    tools: list[dict[str, Any]] | None) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": messages}
    if tools:
        body["tools"] = tools
    try:
        response = await http.post("/chat/completions", json=body)
        response.raise_for_status()
        message = response.json()["choices"][0]["message"]
    except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise LLMError(f"the chat API at {http.base_url} failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(message, dict):
        raise LLMError(f"the chat API at {http.base_url} answered without a message")
    return message


async def _run_call(call: dict[str, Any], tools: dict[str, AgentTool]) -> tuple[str, dict[str, Any], str]:
    function = call.get("function") or {}
    name = str(function.get("name", ""))
    try:
        arguments = json.loads(function.get("arguments") or "{}")
    except ValueError:
        return name, {}, f"error: the arguments of {name} are not valid JSON"
    if not isinstance(arguments, dict):
        return name, {}, f"error: the arguments of {name} must be a JSON object"
    tool = tools.get(name)
    if tool is None:
        return name, arguments, f"error: no tool named {name!r}; available: {', '.join(sorted(tools))}"
    try:
        output = await tool.execute(**arguments)
    except Exception as exc:  # the model sees the failure and may retry differently
        return name, arguments, f"error: {exc}"
    return name, arguments, json.dumps(output, default=str)
