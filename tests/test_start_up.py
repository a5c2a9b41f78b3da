"""What a server does before it answers `initialize`: the cold start of a stdio server (issue 10).

Speed itself is measured by benchmarks/latency.py (`cold_start`); these tests guard what makes it
fast, in fresh interpreters (this one has imported everything already).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.procs import server_env

# Modules that take seconds (torch) or most of a second (pymilvus, numpy) to import.
HEAVY = ("torch", "sentence_transformers", "transformers", "pymilvus", "milvus_lite", "grpc", "numpy", "openai")

IMPORTED = ("import json, sys\n"
            "import mcp_memory_server.cli\n"
            f"print(json.dumps(sorted(set(sys.modules) & {set(HEAVY)!r})))\n")

# Records which thread imports pymilvus while a Runtime opens its store as a stdio server does.
OPENS = """\
import sys, threading
importers = []

def audit(event, args):
    if event == "import" and args[0] == "pymilvus":
        importers.append("event loop" if threading.current_thread() is threading.main_thread() else "worker")

sys.addaudithook(audit)
import anyio
from mcp_memory_server.config import Settings
from mcp_memory_server.memory import Runtime

async def main():
    runtime = Runtime(Settings(milvus_uri=sys.argv[1]))
    async with runtime.running(warm_up=False):
        await runtime.wait_ready()
        assert runtime.role == "owner", runtime.role

anyio.run(main)
print(",".join(importers))
"""


def test_importing_the_server_loads_neither_the_model_nor_the_store(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", IMPORTED], env=server_env(tmp_path / "memory.db"), cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == []


def test_a_server_imports_the_store_in_a_worker_thread_not_on_its_event_loop(tmp_path: Path) -> None:
    # On the event loop, pymilvus's ~0.6 s import held up the answer to `initialize` (cold start 1.3 s).
    done = subprocess.run([sys.executable, "-c", OPENS, str(tmp_path / "memory.db")],
                          env=server_env(tmp_path / "memory.db"), cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "worker"
