"""Page loads of the web view (hub/ui/) at 100k memories.

The memories (synthetic sentences, 20 communities, kinds and writers mixed, written over the last 30
days) are bulk-loaded with precomputed vectors (synthetic.py), three experts are registered through
the real `MemoryService`, and a hub process (`mcp-memory-server serve`, with tokens) serves the
database. An HTTP client signs in with an admin token (every community: the heaviest view) and loads
each page: the first load (what the first visitor after a start waits: the newest memories are read
from the store once) and then `loads` more, timed from request to last byte. Where Debian's Chromium
is installed, the same pages are also loaded in the browser (navigation start to load event).

Every page that lists communities asks `stats` (`service.stats`): pages say how long it took in their
Server-Timing header, and the results give each page with and without it.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import secrets
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import numpy as np

from mcp_memory_server.config import Settings
from mcp_memory_server.embeddings import LocalEmbedder
from mcp_memory_server.hub.launch import hub_process
from mcp_memory_server.keywords import KeywordStats
from mcp_memory_server.models import MemoryRecord, RegisterExpertIn, memory_id
from mcp_memory_server.service import MemoryService
from mcp_memory_server.store import MemoryStore

from . import browser, synthetic
from .latency import COLLECTION, COMMUNITIES, percentiles, wait_indexed

TARGET_P50_MS = 150.0
KINDS = ["note", "note", "fact", "decision", "question", "answer"]
PAGES = {
    "communities": "/ui/",
    "memories": "/ui/memories",
    "experts": "/ui/experts?community=team-00",
    "activity": "/ui/activity",
    "activity feed (JSON)": "/ui/api/activity",
}
SEARCH = "/ui/memories?q=why+was+the+billing+service+rolled+back&community=team-03"
EXPERTS = [("billing_expert", "Owns the billing service, invoices and payments.", ["billing service", "invoices"]),
           ("search_expert", "Runs the search index and the recommendation model.", ["search index", "ranking"]),
           ("ops_expert", "Keeps the CI pipeline, the CDN and the staging cluster running.", ["CI", "CDN"])]


@dataclass(frozen=True)
class Scale:
    size: int
    loads: int  # timed loads per page, after the first
    browser_loads: int
    unique: int  # texts embedded for real for the bulk load


FULL = Scale(100_000, 60, 15, 5_000)
QUICK = Scale(2_000, 20, 5, 500)


def load(store: MemoryStore, texts: Sequence[str], vectors: np.ndarray, now_ms: int, days: int = 30) -> None:
    """Insert the memories over the 20 communities, written over the last `days` days."""
    rng = random.Random(9)
    step = days * 86_400_000 // max(1, len(texts))
    stats: dict[str, KeywordStats] = {}
    for lo in range(0, len(texts), 5000):
        records = []
        for i in range(lo, min(len(texts), lo + 5000)):
            community = COMMUNITIES[i % len(COMMUNITIES)]
            records.append(MemoryRecord(
                id=memory_id(community, texts[i]), content=texts[i], community=community, kind=rng.choice(KINDS),
                tags=[], agent_id=rng.choice(synthetic.PEOPLE).lower(), created_at=now_ms - (len(texts) - i) * step,
                content_hash=hashlib.sha256(texts[i].encode()).hexdigest()))
        synthetic.bulk_insert(store, records, vectors[lo:lo + len(records)], stats)


async def register_experts(service: MemoryService) -> None:
    for agent, description, skills in EXPERTS:
        await service.register_expert(RegisterExpertIn(agent_id=agent, description=description, skills=skills,
                                                       community="team-00"))


def sign_in(http: httpx.Client, token: str) -> None:
    form = http.get("/ui/login")
    csrf = form.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    signed = http.post("/ui/login", data={"token": token, "csrf": csrf}, headers={"Origin": str(http.base_url)})
    if signed.status_code != 303:
        raise RuntimeError(f"could not sign in to the web view: HTTP {signed.status_code}")


def timed(http: httpx.Client, path: str) -> tuple[float, float | None]:
    """Seconds from request to last byte, and of those the seconds the page spent in `stats` (from
    its Server-Timing header; None for a page that did not ask it)."""
    started = time.perf_counter()
    response = http.get(path)
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"{path}: HTTP {response.status_code}: {response.text[:300]}")
    spent = re.search(r"stats;dur=([0-9.]+)", response.headers.get("server-timing", ""))
    return elapsed, float(spent.group(1)) / 1000 if spent else None


def page_loads(http: httpx.Client, path: str, first: tuple[float, float | None], loads: int,
               stats: list[float]) -> dict[str, Any]:
    """`loads` more loads after the `first`: their percentiles, and the same less the time each
    spent in `stats` (appended to `stats`; a `stats` of 0.000 ms counts too)."""
    times = [timed(http, path) for _ in range(loads)]
    stats += [s for _, s in [first, *times] if s is not None]
    less = percentiles([t - (s or 0.0) for t, s in times])
    return {"first_ms": round(first[0] * 1000, 2), **percentiles([t for t, _ in times]),
            "p50_less_stats_ms": less["p50_ms"], "p99_less_stats_ms": less["p99_ms"]}


def in_browser(base: str, token: str, loads: int, skip: Sequence[str] = ()) -> dict[str, dict[str, float]]:
    """Navigation start to load event, per page but those in `skip`, in headless Chromium (style sheet
    and script cached after the first load, as for a person clicking around)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    out: dict[str, dict[str, float]] = {}
    with browser.chromium() as driver:
        driver.get(f"{base}/ui/login")
        driver.find_element(By.ID, "token").send_keys(token)
        driver.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
        WebDriverWait(driver, 60).until(lambda d: "/ui/login" not in d.current_url)
        for name, path in PAGES.items():
            if path.startswith("/ui/api/") or name in skip:
                continue
            times = []
            for _ in range(loads):
                driver.get(f"{base}{path}")
                ms = driver.execute_script("const n = performance.getEntriesByType('navigation')[0];"
                                           "return n.loadEventEnd - n.startTime;")
                times.append(float(ms) / 1000)
            out[name] = percentiles(times)
    return out


def run(out_dir: Path, quick: bool, *, scale: Scale | None = None) -> dict[str, Any]:
    """Every page's load times; see the module docstring."""
    sc = scale or (QUICK if quick else FULL)
    embedder = LocalEmbedder()
    embedder.warm_up()
    texts = synthetic.sentences(sc.size)
    vectors = synthetic.vectors(texts, embedder, unique=min(len(texts), sc.unique))
    admin = f"admin-{secrets.token_urlsafe(16)}"
    grants = {"tokens": {admin: {"agent_id": "admin", "communities": "*"}}}
    result: dict[str, Any] = {"memories": sc.size, "communities": len(COMMUNITIES), "loads": sc.loads,
                              "viewer": "admin token (every community)", "target_p50_ms": TARGET_P50_MS, "pages": {}}
    (out_dir / "tmp").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ui-", dir=out_dir / "tmp") as tmp:
        db = Path(tmp) / "memory.db"
        store = MemoryStore(str(db), COLLECTION, embedder.dimension)
        store.open()
        try:
            load(store, texts, vectors, int(time.time() * 1000) - 60_000)
            anyio.run(register_experts, MemoryService(Settings(milvus_uri=str(db)), store, embedder))
            wait_indexed(store)
        finally:
            store.close()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MILVUS_", "MEMORY_", "EMBEDDING_"))}
        env |= {"MILVUS_URI": str(db), "MEMORY_COLLECTION": COLLECTION, "MEMORY_AUTH_TOKENS": json.dumps(grants),
                "PYTHONPATH": str(Path(__file__).parents[1])}
        with hub_process(env, Path(tmp) / "hub.log", options=["--log-level", "WARNING"], timeout=300) as (base, _), \
                httpx.Client(base_url=base, timeout=900) as http:
            sign_in(http, admin)
            first = {name: timed(http, path) for name, path in {**PAGES, "search": SEARCH}.items()}
            # The first loads read each community's tallies once (tallies.py); after that `stats` is
            # answered from memory, so every page gets the same number of timed loads.
            stats: list[float] = []
            for name, path in PAGES.items():
                result["pages"][name] = page_loads(http, path, first[name], sc.loads, stats)
            result["search"] = page_loads(http, SEARCH, first["search"], sc.loads, stats)
            result["stats"] = percentiles(stats)
            if browser.missing() is None:
                result["browser"] = in_browser(base, admin, sc.browser_loads)
    timed_pages = [p for n, p in result["pages"].items() if n != "activity feed (JSON)"]
    result["worst_p50_ms"] = max(p["p50_ms"] for p in timed_pages)
    result["worst_p50_less_stats_ms"] = max(p["p50_less_stats_ms"] for p in timed_pages)
    return result
