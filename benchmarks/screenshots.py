"""`make screenshots`: the README's pictures of the web view, made from a seeded store.

Starts a hub (`mcp-memory-server serve --transport streamable-http`) on a fresh Milvus Lite database
with tokens, seeds it over MCP the way agents would (the developer-support community's three
experts with their profiles and knowledge, a question and its answer, two teams' notes), signs in
to /ui with a developer's token that grants three of the four communities, and photographs the
pages with headless Chromium (benchmarks/browser.py): docs/screenshots/*.png.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from mcp_memory_server.hub.launch import hub_process
from openagents_bridge.experts import EXPERTS, load_knowledge

from . import browser
from .latency import call

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "screenshots"
VIEWER = "developer"
GRANTS: dict[str, list[str]] = {
    **{agent: ["dev-support"] for agent in (*EXPERTS, "coordinator")},
    VIEWER: ["dev-support", "team-alpha", "shared"],
    "alpha-planner": ["team-alpha", "shared"],
    "alpha-coder": ["team-alpha", "shared"],
    "beta-support": ["team-beta", "shared"],
}
QUESTION = "My Milvus standalone pod keeps getting OOMKilled during index builds. What should I change?"
ROUTE = "Our pod running Milvus is OOMKilled while it builds an HNSW index"
SEARCH = "which index for millions of vectors"

TEAM_NOTES: list[tuple[str, dict[str, Any]]] = [
    ("alpha-planner", {"content": "Decision: the search service moves to HNSW (M=16, efConstruction=200); "
                                  "IVF_FLAT recall was too low at nprobe=16.", "community": "team-alpha",
                       "kind": "decision", "tags": ["search", "milvus"],
                       "metadata": {"meeting": "2026-11-24 standup"}}),
    ("alpha-coder", {"content": "The nightly re-index job needs 6 GiB of RAM for 2M vectors of 768 dimensions.",
                     "community": "team-alpha", "kind": "fact", "tags": ["search", "capacity"],
                     "metadata": {"measured_on": "staging"}}),
    ("alpha-coder", {"content": "Use `python -m pip` inside the project's .venv; the CI image has no system pip.",
                     "community": "team-alpha", "kind": "note", "tags": ["ci"]}),
    ("alpha-planner", {"content": "Release 4.2 is frozen on Friday; only fixes for the search service after that.",
                       "community": "shared", "kind": "note", "tags": ["release"]}),
    ("beta-support", {"content": "Customer ACME reports slow exports after the 4.1 upgrade; ticket #4411.",
                      "community": "team-beta", "kind": "note", "tags": ["support"]}),
    ("beta-support", {"content": "On-call rota for December is in the beta wiki.", "community": "shared",
                      "kind": "note"}),
    ("alpha-planner", {"content": "Ask Dara before changing the embedding model: every collection would need "
                                  "re-embedding.", "community": "team-alpha", "kind": "decision",
                       "tags": ["search"]}),
]


@asynccontextmanager
async def session(url: str, token: str) -> AsyncIterator[ClientSession]:
    async with (httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=120) as http,
                streamable_http_client(url, http_client=http) as (read, write, _),
                ClientSession(read, write) as mcp):
        await mcp.initialize()
        yield mcp


async def seed(url: str, tokens: dict[str, str]) -> None:
    """What the community's agents would have written: profiles, knowledge, a question and its answer,
    then the teams' notes (the newest writes)."""
    for agent, spec in EXPERTS.items():
        async with session(url, tokens[agent]) as mcp:
            await call(mcp, "register_expert", agent_id=agent, description=spec.description, skills=spec.skills,
                       community="dev-support")
            items = [m.model_dump(exclude_none=True) | {"community": "dev-support"} for m in load_knowledge(agent)]
            await call(mcp, "remember_many", memories=items)
    async with session(url, tokens["coordinator"]) as mcp:
        asked = await call(mcp, "remember", content=QUESTION, community="dev-support", kind="question",
                           metadata={"asked_by": VIEWER, "channel": "#general"})
    qid = asked["id"][:12]
    async with session(url, tokens["devops_expert"]) as mcp:
        await call(mcp, "remember", community="dev-support", kind="answer", tags=[f"question:{qid}"],
                   metadata={"question_id": asked["id"]},
                   content="Give the pod a memory limit above the index build's peak (HNSW holds the whole "
                           "segment in RAM while it builds) and set `queryNode.resources.limits.memory` in the Helm "
                           "values; `kubectl describe pod` shows the OOMKilled reason and the limit it hit.")
    for agent, note in TEAM_NOTES:
        async with session(url, tokens[agent]) as mcp:
            await call(mcp, "remember", **note)
        await anyio.sleep(1.2)  # a few seconds apart, as people write


def shoot(base: str, token: str, out: Path) -> list[Path]:
    """Sign in and photograph the pages; returns the files written."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    written: list[Path] = []
    with browser.chromium(1280, 900) as driver:
        driver.get(f"{base}/ui/login")
        driver.find_element(By.ID, "token").send_keys(token)
        driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        WebDriverWait(driver, 30).until(lambda d: "/login" not in d.current_url)
        pages = [("communities.png", "/ui/"),
                 ("memories.png", f"/ui/memories?q={SEARCH.replace(' ', '+')}&community=dev-support&k=4"),
                 ("experts.png", f"/ui/experts?community=dev-support&question={ROUTE.replace(' ', '+')}")]
        for name, path in pages:
            driver.get(f"{base}{path}")
            written.append(_full_page(driver, out / name))
        with browser.phone(driver):
            driver.get(f"{base}/ui/activity")
            written.append(_capture(driver, out / "activity-phone.png"))
            driver.get(f"{base}/ui/memories?q=deploy+milvus+on+kubernetes&k=3")
            written.append(_capture(driver, out / "memories-phone.png"))
    return written


def _full_page(driver: Any, path: Path, width: int = 1280) -> Path:
    """The whole page (up to 2,400 px high), as a window that tall would show it."""
    height = min(2400, int(driver.execute_script("return document.documentElement.scrollHeight")))
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": max(700, height), "deviceScaleFactor": 1, "mobile": False})
    try:
        return _capture(driver, path)
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def _capture(driver: Any, path: Path) -> Path:
    driver.execute_script("window.scrollTo(0, 0)")
    if not driver.save_screenshot(str(path)):
        raise RuntimeError(f"could not write {path}")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.screenshots", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"where the PNGs go (default {OUT.relative_to(REPO)})")
    args = parser.parse_args(argv)
    why = browser.missing()
    if why:
        print(f"error: {why}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    tokens = {agent: f"{agent}-{secrets.token_urlsafe(16)}" for agent in GRANTS}
    grants = {tokens[a]: {"agent_id": a, "communities": c} for a, c in GRANTS.items()}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="screenshots-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MILVUS_", "MEMORY_", "EMBEDDING_"))}
        env |= {"MILVUS_URI": str(Path(tmp) / "memory.db"), "PYTHONPATH": str(REPO),
                "MEMORY_AUTH_TOKENS": json.dumps({"tokens": grants})}
        with hub_process(env, Path(tmp) / "hub.log", timeout=300) as (base, _):
            anyio.run(seed, f"{base}/mcp", tokens)
            written = shoot(base, tokens[VIEWER], args.out)
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    print(f"screenshots done in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
