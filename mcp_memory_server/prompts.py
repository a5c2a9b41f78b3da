"""Prompts a client can offer its user (`prompts/list`, `prompts/get`):

    answer_from_memory(question, community?)  the question with the memories `recall` finds for it,
                                              asking the model to answer from them and cite their ids
    remember_this(text, community?)           the text, asking the model to store what is worth keeping
                                              with `remember`, one memory per fact

`answer_from_memory` recalls as the caller (the same grants as the tools) and fails with the same
typed errors as the resources (`resources.mcp_error`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from mcp.server.lowlevel import Server
from mcp.types import GetPromptResult, Prompt, PromptArgument, PromptMessage, TextContent

from .access import Caller
from .errors import InvalidInput, MemoryServerError
from .models import RecallIn
from .resources import mcp_error

if TYPE_CHECKING:
    from .memory import Memory

RECALLED = 8  # memories put into an answer_from_memory prompt

_COMMUNITY = PromptArgument(name="community", required=False,
                            description="The community to use (default: the server's default community).")
PROMPTS = [
    Prompt(name="answer_from_memory", title="Answer from memory",
           description="Answer a question from what the shared memory holds, citing the memories used.",
           arguments=[PromptArgument(name="question", required=True, description="The question to answer."),
                      _COMMUNITY]),
    Prompt(name="remember_this", title="Remember this",
           description="Store the facts, decisions and answers of a text in the shared memory.",
           arguments=[PromptArgument(name="text", required=True, description="The text to take facts from."),
                      _COMMUNITY]),
]


class Prompts:
    """The prompt handlers of one MCP server."""

    def __init__(self, memory: Callable[[], Awaitable[Memory]], caller: Callable[[], Caller]) -> None:
        self._memory = memory
        self._caller = caller

    def register(self, server: Server[Any, Any]) -> None:
        # The SDK's decorators are untyped.
        server.list_prompts()(self.listed)  # type: ignore[no-untyped-call]
        server.get_prompt()(self.get)  # type: ignore[no-untyped-call]

    async def listed(self) -> list[Prompt]:
        return PROMPTS

    async def get(self, name: str, arguments: dict[str, str] | None) -> GetPromptResult:
        arguments = arguments or {}
        try:
            if name == "answer_from_memory":
                text = await self._answer(_argument(arguments, "question"), arguments.get("community"))
            elif name == "remember_this":
                text = _remember(_argument(arguments, "text"), arguments.get("community"))
            else:
                raise InvalidInput(f"no prompt {name!r}: the prompts are {', '.join(p.name for p in PROMPTS)}")
        except MemoryServerError as exc:
            raise mcp_error(exc) from exc
        description = next(p.description for p in PROMPTS if p.name == name)
        return GetPromptResult(description=description,
                               messages=[PromptMessage(role="user", content=TextContent(type="text", text=text))])

    async def _answer(self, question: str, community: str | None) -> str:
        memory = await self._memory()
        recalled = await memory.recall(RecallIn(query=question, community=community, k=RECALLED), self._caller())
        where = f"community {community!r}" if community else "the shared memory"
        if recalled.hits:
            lines = "\n".join(f"[{h.id}] ({h.kind}, by {h.agent_id}, {h.created_at[:10]}) {h.content}"
                              for h in recalled.hits)
            memories = f"Memories recalled from {where}, most relevant first:\n\n{lines}"
        else:
            memories = f"No memory in {where} matched this question."
        return (f"Answer the question below using the memories recalled for it. Cite the id of every memory "
                f"you rely on in square brackets, like [{recalled.hits[0].id if recalled.hits else 'id'}]. If "
                f"the memories do not answer it, say so instead of guessing; you may call `recall` to look "
                f"further.\n\n{memories}\n\nQuestion: {question}")


def _remember(text: str, community: str | None) -> str:
    where = f' with community="{community}"' if community else ""
    return ("Read the text below and store in the shared memory what is worth knowing later: facts, decisions, "
            "answers, preferences. Call `remember` once per item" + where + ", with a short self-contained "
            "sentence as content, a kind (fact, decision, answer, preference) and a few tags. Use "
            "`remember_many` for many items. Skip small talk and anything already known (`recall` first when "
            f"unsure).\n\nText:\n{text}")


def _argument(arguments: dict[str, str], name: str) -> str:
    value = arguments.get(name)
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{name} is required: pass the {name} as an argument of the prompt")
    return value
