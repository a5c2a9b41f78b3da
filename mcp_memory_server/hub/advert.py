"""Which hub to join: the one rule, and the advert a hub leaves beside its Milvus Lite database.

`find_hub` is what every process that could join a hub asks (a stdio server, `doctor`, an
OpenAgents agent): the URL it was given, else MEMORY_HUB_URL, else the hub advertised beside
the Milvus Lite database of MILVUS_URI. A hub writes `<db>.hub.json` (its URL and pid) once it
has opened the database, and removes it when it stops. An advert is trusted only after a probe:
its pid is alive and, within PROBE_SECONDS, its /health answers with the identity of that very
database and collection (`STORE_HEADER`); a stale advert (the hub was killed, its pid reused by
another process, its port taken by something that does not answer) is ignored, so the caller
owns the store instead of waiting on it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import httpx

from ..config import Settings

Source = Literal["argument", "MEMORY_HUB_URL", "advert"]
#: Header of a hub's /health answer naming the store it serves (`store_identity`).
STORE_HEADER = "x-memory-store"
#: How long the probe of an advertised hub may take (a hub answers /health in milliseconds).
PROBE_SECONDS = 2.0


@dataclass(frozen=True)
class HubAddress:
    """A hub's streamable HTTP URL, and where it came from (error messages say what to change)."""

    url: str
    source: Source


def find_hub(settings: Settings, explicit: str | None = None, *, verify: bool = True) -> HubAddress | None:
    """The hub to join, or None when there is none to join (the caller then owns the store).

    An advertised hub is probed first (blocking, up to PROBE_SECONDS; call it from a worker thread
    in async code); `verify=False` trusts a live pid alone (used once the database turned out to be
    taken: someone owns it)."""
    if explicit:
        return HubAddress(explicit, "argument")
    if settings.memory_hub_url:
        return HubAddress(settings.memory_hub_url, "MEMORY_HUB_URL")
    if settings.is_lite:
        url = discover(settings, verify=verify)
        if url:
            return HubAddress(url, "advert")
    return None


def remedy(source: Source, start: str) -> str:
    """What to do when the hub a URL from `source` names does not answer: `start` (e.g. "start
    it with ..."), or the change that fits where the URL came from."""
    return start + {
        "MEMORY_HUB_URL": ", or point MEMORY_HUB_URL at a running hub (unset, this server opens the database itself)",
        "advert": ", or restart this client: with no hub running, its stdio server opens the database itself",
        "argument": ", or pass the URL of a running hub",
    }[source]


def store_identity(settings: Settings) -> str:
    """A short fingerprint of the store (database and collection) the settings name: what a hub
    announces on /health and a joiner compares, without showing the path itself."""
    where = str(Path(settings.milvus_uri).expanduser().resolve()) if settings.is_lite else settings.milvus_uri
    return hashlib.sha256(f"{where}\x00{settings.memory_collection}".encode()).hexdigest()[:24]


def advert_path(milvus_uri: str) -> Path:
    return Path(milvus_uri).expanduser().with_name(Path(milvus_uri).name + ".hub.json")


def advertise(milvus_uri: str, url: str) -> Path:
    """Record that this process serves the database at `url`, for stdio servers to find."""
    path = advert_path(milvus_uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"url": url, "pid": os.getpid()}))
    return path


def withdraw(milvus_uri: str) -> None:
    """Remove this process's advert (never another process's)."""
    path = advert_path(milvus_uri)
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def discover(settings: Settings, *, verify: bool = True) -> str | None:
    """The URL of a live hub that serves the database of `settings`, if one advertised itself."""
    try:
        advert = json.loads(advert_path(settings.milvus_uri).read_text())
        pid, url = int(advert["pid"]), str(advert["url"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    if verify and not serves(url, store_identity(settings)):
        return None
    return url


def serves(url: str, identity: str, timeout: float = PROBE_SECONDS) -> bool:
    """Whether the hub whose MCP endpoint is `url` answers /health within `timeout` seconds and
    serves the store `identity` names."""
    try:
        response = httpx.get(health_url(url), timeout=timeout, trust_env=False)
    except httpx.HTTPError:
        return False
    return bool(response.headers.get(STORE_HEADER) == identity)


def health_url(url: str) -> str:
    """The /health URL of the hub whose MCP endpoint (…/mcp or …/sse) is `url`."""
    return url.rstrip("/").removesuffix("/mcp").removesuffix("/sse") + "/health"
