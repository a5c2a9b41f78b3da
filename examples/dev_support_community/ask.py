"""Ask the running developer-support community a question from the command line.

Start the community first (it keeps running with --keep):
    python -m openagents_bridge.demo --keep
then:
    python examples/dev_support_community/ask.py "Why does my pod restart every few minutes?"
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import logging
import sys

from openagents_bridge.community import Asker


async def ask(question: str, port: int, timeout: float) -> int:
    asker = Asker(agent_id="cli-user")
    # OpenAgents prints every event it handles to stdout; only the answer is ours to show.
    with contextlib.redirect_stdout(io.StringIO()):
        await asker.async_start(network_host="127.0.0.1", network_port=port)
        try:
            answer = await asker.ask(question, timeout)
        finally:
            await asker.async_stop()
    who = f"from memory (question {answer.reused_from})" if answer.reused_from else ", ".join(answer.experts)
    print(f"[{who or 'no expert'}; {answer.seconds:.1f} s]\n{answer.text}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("question")
    parser.add_argument("--port", type=int, default=8700, help="the network's port (default 8700)")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    logging.getLogger("openagents").setLevel(logging.ERROR)
    return asyncio.run(ask(args.question, args.port, args.timeout))


if __name__ == "__main__":
    sys.exit(main())
