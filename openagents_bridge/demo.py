"""`make demo`: the developer-support community end to end, offline.

Starts a memory hub (its own Lite database in a temp dir; `--hub-url` joins a running one
instead), the OpenAgents network on 127.0.0.1:8700 (a free port if that one is taken) and the
agents; asks a handful of questions and prints each with the experts chosen and the answer; then
shows that a Claude-Desktop-style MCP client (`mcp-memory-server serve --transport stdio` joined
to the hub) recalls what the agents remembered. `--keep` leaves everything running to watch in
OpenAgents Studio.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from mcp_memory_server.hub import launch
from mcp_memory_server.hub.launch import free_port

from .agents import COMMUNITY, CommunityOptions
from .community import Asker, running_community
from .llm import LLMConfig

Say = Callable[[str], None]

QUESTIONS = [
    "pip install succeeded but `import requests` fails with ModuleNotFoundError. Why?",
    "Which Milvus index should I use for 10 million vectors when I need high recall?",
    "My Kubernetes pod is stuck in CrashLoopBackOff. How do I find out why?",
    "How do I deploy Milvus on Kubernetes with Helm?",
    "pip install succeeded but `import requests` fails with ModuleNotFoundError. Why?",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m openagents_bridge.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8700, help="network port (default 8700; a free one if taken)")
    parser.add_argument("--keep", action="store_true", help="keep running (watch in Studio) until Ctrl-C")
    parser.add_argument("--workdir", type=Path, default=None, help="where the hub's database and logs go "
                                                                   "(default: a new temp dir, removed at exit)")
    parser.add_argument("--hub-url", default=None,
                        help="join this running memory hub (http://host:port/mcp) instead of starting one; on a hub "
                             "with tokens the agents use MEMORY_AGENT_TOKENS, the stdio client MEMORY_HUB_TOKEN")
    args = parser.parse_args(argv)
    out = sys.stdout
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="dev-support-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    hub = contextlib.nullcontext(args.hub_url) if args.hub_url else hub_process(workdir, out)
    try:
        with hub as hub_url:
            asyncio.run(run(hub_url, workdir, args.port, args.keep, out))
    except KeyboardInterrupt:
        pass
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


async def run(hub_url: str, workdir: Path, port: int, keep: bool, out: TextIO) -> None:
    port = port if port_is_free(port) else free_port()
    llm = LLMConfig.from_env()
    say: Say = functools.partial(print, file=out, flush=True)
    logging.getLogger("openagents").setLevel(logging.ERROR)  # its warnings are about features the demo skips
    say(f"LLM: {llm.model} at {llm.base_url}" if llm else
        "LLM: none (OPENAI_API_KEY unset): experts answer from the memories they recall")
    say(f"Starting the OpenAgents network on 127.0.0.1:{port} and the agents (experts load their knowledge) ...")
    started = time.monotonic()
    # OpenAgents prints every event it handles to stdout: keep that in a log, the demo's lines on screen.
    with (workdir / "openagents.log").open("w") as log, contextlib.redirect_stdout(log):
        async with running_community(hub_url, workdir / "network", port=port, studio=True, serve_mcp=True,
                                     options=CommunityOptions(llm=llm)):
            say(f"Community ready in {time.monotonic() - started:.1f} s. Studio: http://127.0.0.1:{port}/studio\n")
            asker = Asker("developer")
            await asker.async_start(network_host="127.0.0.1", network_port=port)
            try:
                for question in QUESTIONS:
                    answer = await asker.ask(question, timeout=180)
                    chosen = (f"answered from memory (same as question {answer.reused_from})" if answer.reused_from
                              else "experts: " + (", ".join(answer.experts) or "none"))
                    say(f"Q: {question}\n   {chosen}; {answer.seconds:.1f} s\n{_indent(answer.text)}\n")
            finally:
                await asker.async_stop()
            await show_stdio_client(hub_url, workdir, say)
            if keep:
                say(f"Still running: Studio at http://127.0.0.1:{port}/studio, hub at {hub_url}. Ctrl-C stops.")
                await asyncio.Event().wait()


async def show_stdio_client(hub_url: str, workdir: Path, say: Say) -> None:
    """A Claude-Desktop-style client: the stdio server, joined to the hub by MEMORY_HUB_URL."""
    params = StdioServerParameters(command=_server_command()[0], args=[*_server_command()[1:], "serve", "--transport",
                                                                      "stdio"],
                                   env={**os.environ, "MEMORY_HUB_URL": hub_url,
                                        "MILVUS_URI": str(workdir / "stdio-unused.db")})
    say("An MCP stdio client (as Claude Desktop launches it) recalls what the agents remembered:")
    async with stdio_client(params, errlog=(workdir / "stdio.log").open("w")) as (read, write), \
            ClientSession(read, write) as session:
        await session.initialize()
        result = await session.call_tool("recall", {"query": QUESTIONS[0], "community": COMMUNITY,
                                                    "kinds": ["question", "answer"], "k": 4})
    for hit in (result.structuredContent or {}).get("hits", []):
        first = " ".join(str(hit["content"]).split())[:110]
        say(f"   {hit['kind']:<8} by {hit['agent_id']:<14} {hit['created_at'][:19]}  {first}")


# -- the hub, as a user starts it -------------------------------------------------------------


@contextlib.contextmanager
def hub_process(workdir: Path, out: TextIO, timeout: float = 180.0) -> Iterator[str]:
    """`mcp-memory-server serve --transport streamable-http` on a free port, with its own database."""
    env = {**os.environ, "MILVUS_URI": str(workdir / "memory.db")}
    env.pop("MEMORY_HUB_URL", None)
    port = free_port()
    print(f"Memory hub: http://127.0.0.1:{port}/mcp (database {workdir / 'memory.db'})", file=out, flush=True)
    with launch.hub_process(env, workdir / "hub.log", port=port, command=_server_command(), timeout=timeout) \
            as (base, _):
        yield f"{base}/mcp"


def _server_command() -> list[str]:
    script = Path(sys.executable).with_name("mcp-memory-server")
    return [str(script)] if script.exists() else [sys.executable, "-m", "mcp_memory_server"]


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _indent(text: str, prefix: str = "   | ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())


if __name__ == "__main__":
    sys.exit(main())
