"""Progress of long calls (remember_many, import, export): who reports it and who shows it.

A verb takes an optional `Progress` and awaits it as work gets done. The MCP server hands the
verbs one that sends MCP progress notifications when the client sent a progress token
(`server.py`); a hub client relays the hub's notifications to its own caller (`hub/client.py`);
the command line draws a `Bar` on a terminal.
"""

from __future__ import annotations

import sys
import time
from typing import Protocol, TextIO


class Progress(Protocol):
    """progress(done, total, message): `done` out of `total` (None when unknown). The MCP SDK's
    progress callback has this shape."""

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None: ...


async def report(progress: Progress | None, done: float, total: float | None, message: str | None = None) -> None:
    """Tell `progress`, if there is one."""
    if progress is not None:
        await progress(done, total, message)


class Bar:
    """A one-line progress bar on a terminal (nothing when the stream is not one), redrawn at most
    ten times a second."""

    def __init__(self, label: str, stream: TextIO | None = None, width: int = 30) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.width = width
        self.shown = self.stream.isatty()
        self._drawn = 0.0

    async def __call__(self, progress: float, total: float | None, message: str | None = None) -> None:
        self.draw(progress, total, message)

    def draw(self, done: float, total: float | None, message: str | None = None, *, final: bool = False) -> None:
        if not self.shown or (not final and time.monotonic() - self._drawn < 0.1):
            return
        self._drawn = time.monotonic()
        if total:
            filled = int(self.width * min(done, total) / total)
            bar = f"[{'#' * filled}{' ' * (self.width - filled)}] {int(done)}/{int(total)}"
        else:
            bar = f"{int(done)}"
        self.stream.write(f"\r{self.label} {bar} {message or ''}".ljust(79)[:200])
        self.stream.flush()

    def close(self, done: float, total: float | None) -> None:
        if self.shown:
            self.draw(done, total, final=True)
            self.stream.write("\n")
            self.stream.flush()
