"""`mcp-memory-server doctor`: check the settings, the tokens, the store, the embedder and the
index, and print one JSON report (stdout). Exit status 0 when everything works, 1 otherwise.

When a hub serves the memory (`hub.advert.find_hub`), the doctor asks that hub's /health
instead of opening the store (only one process may).
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import anyio.to_thread
import httpx

from .config import Settings
from .errors import ConfigError, MemoryServerError
from .hub.advert import Source, find_hub, health_url, remedy
from .hub.app import health_report
from .hub.tokens import Tokens, hub_token
from .memory import Runtime


async def doctor(settings: Settings) -> int:
    report: dict[str, Any] = {"ok": True}
    try:
        tokens = Tokens.from_settings(settings)
        report["auth"] = ({"tokens": len(tokens), "agents": tokens.agents()} if tokens else
                          {"tokens": 0, "note": "no tokens: a hub serves loopback clients only"})
    except ConfigError as exc:
        report.update(ok=False, auth={"error": str(exc)})
    report["limits"] = settings.limits.model_dump()
    hub = await anyio.to_thread.run_sync(find_hub, settings)
    if hub:
        report["hub"] = await hub_health(hub.url, hub_token(settings), source=hub.source)
        report["ok"] = report["ok"] and bool(report["hub"].get("ok"))
    else:
        report["memory"] = await _own_health(settings)
        report["ok"] = report["ok"] and bool(report["memory"].get("ok"))
    print(json.dumps(report, indent=2))
    return 0 if report["ok"] else 1


async def hub_health(url: str, token: str | None, timeout: float = 10.0, source: Source = "argument") -> dict[str, Any]:
    """GET the /health of the hub whose MCP endpoint is `url` (found from `source`)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        async with httpx.AsyncClient(timeout=timeout, headers=headers) as http:
            response = await http.get(health_url(url))
        body: dict[str, Any] = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        start = "start it with `mcp-memory-server serve --transport streamable-http`"
        return {"ok": False, "url": url, "error": f"the hub did not answer: {type(exc).__name__}: {exc}; "
                                                   f"{remedy(source, start)}"}
    return {"url": url, "status": response.status_code, **body}


async def _own_health(settings: Settings) -> dict[str, Any]:
    runtime = Runtime(settings)
    async with runtime.running(own=True):
        report = await health_report(runtime, wait=120.0)
        service = runtime.service
        if report["ok"] and service is not None and settings.missing_api_key:
            # no probe: the API would refuse it, and the report says why instead of "unreachable"
            report["embedder"].update(works=False, error=settings.missing_api_key)
            report["ok"] = False
        elif report["ok"] and service is not None:
            # Embed once: proves the model loads and produces vectors of the collection's dimension.
            try:
                vector = (await anyio.to_thread.run_sync(service.embedder.embed, ["doctor"]))[0]
                report["embedder"].update(loaded=True, works=len(vector) == service.store.dimension)
            except MemoryServerError as exc:
                report["embedder"].update(works=False, error=str(exc))
            report["ok"] = bool(report["embedder"].get("works"))
    return report
