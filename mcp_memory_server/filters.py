"""Milvus filter expressions built from user values.

Milvus Lite does not support `filter_params`, so every user value is written into the
expression text. `quote` is the one place that turns a value into a string literal; nothing
else in the package formats a user value into a filter.

The Milvus expression grammar accepts any character inside a double-quoted literal except an
unescaped `"`, `\\`, newline or carriage return, and knows the escapes `\\\\ \\" \\n \\r` (it
rejects `\\u` and `\\x`), so those four are the only characters that need escaping.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r"}


def quote(value: str) -> str:
    """Return `value` as a Milvus double-quoted string literal that matches exactly `value`."""
    return '"' + "".join(_ESCAPES.get(ch, ch) for ch in value) + '"'


def quote_list(values: Iterable[str]) -> str:
    """Return a Milvus list literal of quoted strings: `["a", "b"]`."""
    return "[" + ", ".join(quote(v) for v in values) + "]"


@dataclass(frozen=True)
class MemoryFilter:
    """What a read or delete is restricted to. Empty fields mean "no restriction on this field"."""

    communities: Sequence[str] | None  # None: every community (only for callers granted all)
    kinds: Sequence[str] = ()
    tags: Sequence[str] = ()
    agent_ids: Sequence[str] = ()
    ids: Sequence[str] = ()
    since_ms: int | None = None
    exclude_kinds: Sequence[str] = ()
    threads: Sequence[str] = ()
    live_at_ms: int | None = None  # only memories not expired at this time (epoch ms)
    lapsed_at_ms: int | None = None  # only memories expired at this time (what the purge removes)

    def expression(self, live_from_ms: int | None = None) -> str:
        """The filter expression, restricted to `communities` (an empty list is an error, so that a
        forgotten scope can never mean "everything"). `live_from_ms` (at most `live_at_ms`) writes the
        expiry clause with that time instead: a looser filter (see `loose_live`)."""
        if self.communities is None:
            parts = []
        elif not self.communities:
            raise ValueError("a memory filter must name at least one community, or None for all")
        elif len(self.communities) == 1:
            parts = [f"community == {quote(self.communities[0])}"]
        else:
            parts = [f"community in {quote_list(self.communities)}"]
        if self.ids:
            parts.append(f"id in {quote_list(self.ids)}")
        if self.kinds:
            parts.append(f"kind in {quote_list(self.kinds)}")
        if self.exclude_kinds:
            parts.append(f"kind not in {quote_list(self.exclude_kinds)}")
        if self.agent_ids:
            parts.append(f"agent_id in {quote_list(self.agent_ids)}")
        if self.tags:
            parts.append(f"array_contains_any(tags, {quote_list(self.tags)})")
        if self.threads:
            parts.append(f"thread in {quote_list(self.threads)}")
        if self.since_ms is not None:
            parts.append(f"created_at >= {int(self.since_ms)}")
        if self.live_at_ms is not None:
            live = self.live_at_ms if live_from_ms is None else min(live_from_ms, self.live_at_ms)
            parts.append(f"expires_at == 0 or expires_at > {int(live)}")
        if self.lapsed_at_ms is not None:
            parts.append(f"expires_at > 0 and expires_at <= {int(self.lapsed_at_ms)}")
        return " and ".join(f"({p})" for p in parts)

    def loose_live(self) -> str | None:
        """For a filter of memories live at `live_at_ms`: the same expression with that time rounded
        down to the second. Milvus Lite parses and compiles a filter expression it has
        not seen (cached by its text): with the time to the millisecond, every search was a new text
        (~0.1 ms of each search at 1k memories, issue 10). The looser filter also admits memories that
        expired within that second, which a search must then leave out (`MemoryStore._search`). None
        when the filter has no expiry clause."""
        if self.live_at_ms is None:
            return None
        return self.expression(self.live_at_ms - self.live_at_ms % LIVE_GRAIN_MS)


LIVE_GRAIN_MS = 1000  # the expiry clause of a search filter changes once a second (MemoryFilter.loose_live)
