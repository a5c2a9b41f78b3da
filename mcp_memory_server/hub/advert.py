"""Which hub to join: the one rule, and the advert a hub leaves beside its Milvus Lite database.

`find_hub` is what every process that could join a hub asks (a stdio server, `doctor`, an
OpenAgents agent): the URL it was given, else MEMORY_HUB_URL, else the hub advertised beside
the Milvus Lite database of MILVUS_URI (a hub serving that file writes `<db>.hub.json` with its
URL and pid, and removes it when it stops).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..config import Settings

Source = Literal["argument", "MEMORY_HUB_URL", "advert"]


@dataclass(frozen=True)
class HubAddress:
    """A hub's streamable HTTP URL, and where it came from (error messages say what to change)."""

    url: str
    source: Source


def find_hub(settings: Settings, explicit: str | None = None) -> HubAddress | None:
    """The hub to join, or None when there is none to join (the caller then owns the store)."""
    if explicit:
        return HubAddress(explicit, "argument")
    if settings.memory_hub_url:
        return HubAddress(settings.memory_hub_url, "MEMORY_HUB_URL")
    if settings.is_lite:
        url = discover(settings.milvus_uri)
        if url:
            return HubAddress(url, "advert")
    return None


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


def discover(milvus_uri: str) -> str | None:
    """The URL of a live hub that owns the database, if one advertised itself."""
    try:
        advert = json.loads(advert_path(milvus_uri).read_text())
        pid, url = int(advert["pid"]), str(advert["url"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return url
