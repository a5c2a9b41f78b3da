"""`mcp-memory-server export` and `import`: export files on disk (`exchange.py` describes the format).

Both open the memory as a stdio server does (`memory.Runtime`): through the running hub when there
is one (MEMORY_HUB_URL, `--hub-url`, or the hub advertised beside the database), with
MEMORY_HUB_TOKEN's grants, else on the store directly. Import reads and checks the whole file
before it stores anything: first each line's JSON and fields here, then every memory against the
memory's own rules and grants (a dry run of each batch); a bad line is named by its number and
nothing is imported. Both draw a progress bar on a terminal.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from pydantic import ValidationError

from . import validation as check
from .errors import InvalidInput, MemoryServerError
from .exchange import ExportedMemory, ExportHeader, ExportIn, ImportIn
from .memory import Memory, Runtime
from .progress import Bar, Progress
from .records import iso
from .reference import is_reference
from .reference import memories as reference_memories

Numbered = list[tuple[int, ExportedMemory]]


async def export_command(runtime: Runtime, communities: list[str] | None, out: str | None, vectors: bool,
                         expired: bool) -> int:
    """Write an export to `out` (stdout when None); returns the exit status."""
    target = Path(out) if out else None
    partial = target.with_name(target.name + ".partial") if target else None
    bar = Bar("exporting")
    failed: MemoryServerError | None = None
    # Errors are caught inside the block: the runtime's task group would wrap them in an ExceptionGroup.
    async with runtime.running(warm_up=False):
        try:
            memory = await runtime.memory()
            with open(partial, "w", encoding="utf-8") if partial else _stdout() as stream:
                header, written = await _export(memory, ExportIn(communities=communities, include_expired=expired,
                                                                 vectors=vectors), stream, bar)
        except MemoryServerError as exc:
            failed = exc
    if failed is not None:
        if partial:
            partial.unlink(missing_ok=True)
        print(f"error: {failed}", file=sys.stderr)
        return 1
    if target and partial:
        os.replace(partial, target)
    bar.close(written, header.count)
    print(f"exported {written} memories of {len(header.communities)} communities to {target or 'stdout'}",
          file=sys.stderr)
    return 0


async def _export(memory: Memory, request: ExportIn, stream: TextIO, bar: Bar) -> tuple[ExportHeader, int]:
    page = await memory.export(request)
    stream.write(page.header.model_dump_json() + "\n")
    written = 0
    while True:
        for m in page.memories:
            stream.write(m.model_dump_json(exclude_none=True) + "\n")
        written += len(page.memories)
        bar.draw(page.done, page.header.count)
        if page.next_cursor is None:
            return page.header, written
        page = await memory.export(request.model_copy(update={"cursor": page.next_cursor}))


async def import_command(runtime: Runtime, path: str, community: str | None, dry_run: bool) -> int:
    """Import an export file or a reference memory.json; returns the exit status."""
    try:
        header, items = read_file(Path(path), community or runtime.settings.memory_default_community,
                                  rename=community)
    except (OSError, InvalidInput) as exc:
        print(f"error: {path}: {exc}", file=sys.stderr)
        return 1
    batch = runtime.settings.limits.batch
    # Threads kept together and in order, so that each batch brings whole stretches of a thread.
    items.sort(key=lambda item: (item[1].community, item[1].thread or "", item[1].seq or 0))
    batches = [items[i:i + batch] for i in range(0, len(items), batch)]
    embedder, dimension = (header.embedder, header.dimension) if header else (None, None)
    stored = duplicates = lapsed = 0
    bar = Bar("importing")
    failed: MemoryServerError | None = None
    async with runtime.running():  # errors caught inside: see export_command
        try:
            memory = await runtime.memory()
            for chunk in batches:  # every memory checked, by the memory's rules and grants, before any is stored
                await memory.import_memories(ImportIn(memories=[m for _, m in chunk], lines=[n for n, _ in chunk],
                                                      embedder=embedder, dimension=dimension, dry_run=True))
            done = 0
            for chunk in batches if not dry_run else []:
                result = await memory.import_memories(ImportIn(
                    memories=[m for _, m in chunk], lines=[n for n, _ in chunk], embedder=embedder,
                    dimension=dimension), progress=_within(bar, done, len(chunk), len(items)))
                stored, duplicates, lapsed = (stored + result.stored, duplicates + result.duplicates,
                                              lapsed + result.expired)
                done += len(chunk)
                bar.draw(done, len(items))
        except MemoryServerError as exc:
            failed = exc
    if failed is not None:
        print(f"error: {path}: {failed}", file=sys.stderr)
        return 1
    bar.close(len(items) if not dry_run else 0, len(items))
    if dry_run:
        print(f"checked {len(items)} memories of {path}: all can be imported", file=sys.stderr)
    else:
        print(f"imported {path}: {stored} stored, {duplicates} already there, {lapsed} expired (skipped)",
              file=sys.stderr)
    return 0


def read_file(path: Path, community: str, rename: str | None = None) -> tuple[ExportHeader | None, Numbered]:
    """The header (None for a reference memory.json) and every memory of a file, each with its line
    number. `community`: where a reference memory.json goes; `rename`: a community every memory of an
    export goes to instead of its own. Raises InvalidInput naming the first bad line."""
    lines: list[tuple[int, Any]] = []
    with path.open(encoding="utf-8") as stream:
        for number, text in enumerate(stream, start=1):
            if text.strip():
                try:
                    lines.append((number, json.loads(text)))
                except (json.JSONDecodeError, RecursionError) as exc:
                    raise InvalidInput(f"line {number}: not JSON ({exc})") from exc
    if not lines:
        raise InvalidInput("the file holds nothing to import")
    if is_reference(lines[0][1]):
        return None, reference_memories(lines, community, iso(int(time.time() * 1000)))
    number, first = lines[0]
    try:
        header = ExportHeader.model_validate(first)
    except ValidationError as exc:
        raise InvalidInput(f"line {number}: not an export header (an export of mcp-memory-server starts with "
                           f"one, a memory.json of the reference memory server with an entity): "
                           f"{check.describe(exc)}") from exc
    items: Numbered = []
    for number, value in lines[1:]:
        try:
            item = ExportedMemory.model_validate(value)
        except ValidationError as exc:
            raise InvalidInput(f"line {number}: {check.describe(exc)}") from exc
        items.append((number, item.model_copy(update={"community": rename}) if rename else item))
    return header, items


def _within(bar: Bar, done: int, size: int, whole: int) -> Progress:
    """A progress callback drawing one batch's progress as part of the whole import."""
    async def draw(progress: float, total: float | None, message: str | None) -> None:
        bar.draw(done + (size * progress / total if total else 0), whole, message)

    return draw


class _stdout:
    """stdout as a context manager that does not close it."""

    def __enter__(self) -> TextIO:
        return sys.stdout

    def __exit__(self, *exc: object) -> None:
        sys.stdout.flush()
