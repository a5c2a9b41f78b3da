"""Checks on user input, against the configured limits. Each failure is an InvalidInput whose
message names the argument, the limit and what to do."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from .config import Limits, is_community_name
from .errors import InvalidInput
from .models import (
    MAX_AGENT_ID_BYTES,
    MAX_CONTENT_BYTES,
    MAX_ID_CHARS,
    MAX_KIND_BYTES,
    MAX_TAG_BYTES,
    MAX_TAGS,
    MAX_TTL_SECONDS,
)

# The integers a Milvus JSON field holds (pymilvus refuses wider ones and fails the whole insert).
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def community_name(name: str) -> str:
    if not is_community_name(name):
        raise InvalidInput(
            f"invalid community name {name!r}: use 1-64 letters, digits, '_', '.' or '-'"
        )
    return name


def content(text: str, limits: Limits, what: str = "content") -> str:
    if not text or not text.strip():
        raise InvalidInput(f"{what} is empty: pass the text to remember")
    unicode(text, what)
    if len(text) > limits.content_chars or len(text.encode()) > MAX_CONTENT_BYTES:
        raise InvalidInput(
            f"{what} is {len(text)} characters, over the limit of {limits.content_chars}: "
            "split it into several memories"
        )
    return text


def query(text: str, limits: Limits) -> str:
    if not text or not text.strip():
        raise InvalidInput("query is empty: say what to look for")
    unicode(text, "query")
    if len(text) > limits.query_chars:
        raise InvalidInput(f"query is {len(text)} characters, over the limit of {limits.query_chars}: shorten it")
    return text


def label(value: str, what: str, max_chars: int, max_bytes: int) -> str:
    """A short identifier-like value: kind, agent id, tag."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{what} is empty")
    unicode(value, what)
    if len(value) > max_chars or len(value.encode()) > max_bytes:
        raise InvalidInput(f"{what} {value[:40]!r}... is longer than {max_chars} characters")
    return value


def kind(value: str, limits: Limits) -> str:
    return label(value, "kind", limits.kind_chars, MAX_KIND_BYTES)


def agent_id(value: str, limits: Limits) -> str:
    return label(value, "agent_id", limits.agent_id_chars, MAX_AGENT_ID_BYTES)


def kinds(values: list[str], limits: Limits) -> list[str]:
    if len(values) > limits.kinds:
        raise InvalidInput(f"{len(values)} kinds given, the limit is {limits.kinds}")
    return [kind(value, limits) for value in values]


def community_names(values: list[str], limits: Limits) -> list[str]:
    """Several community names (duplicates dropped); "*" is left to the caller."""
    if len(values) > limits.communities:
        raise InvalidInput(f"{len(values)} communities given, the limit is {limits.communities}: "
                           'pass ["*"] to search every community you may read')
    return list(dict.fromkeys(community_name(value) for value in values))


def memory_ids(values: list[str], limits: Limits) -> list[str]:
    if len(values) > limits.batch:
        raise InvalidInput(f"{len(values)} ids in one call, the limit is {limits.batch}")
    for value in values:
        if not isinstance(value, str) or not 1 <= len(value) <= MAX_ID_CHARS:
            raise InvalidInput(f"id {str(value)[:40]!r} is not a memory id (1-{MAX_ID_CHARS} characters)")
    return values


def tags(values: list[str], limits: Limits) -> list[str]:
    if len(values) > min(limits.tags, MAX_TAGS):
        raise InvalidInput(f"{len(values)} tags given, the limit is {limits.tags}")
    out: list[str] = []
    for tag in values:
        label(tag, "tag", limits.tag_chars, MAX_TAG_BYTES)
        if tag not in out:
            out.append(tag)
    return out


def metadata(value: dict[str, Any], limits: Limits) -> dict[str, Any]:
    """A JSON object Milvus stores as it is: plain JSON values, 64-bit integers, finite numbers,
    valid Unicode (pymilvus refuses the rest, or stores NaN as null)."""
    if not isinstance(value, dict):
        raise InvalidInput("metadata must be a JSON object")
    cap = limits.metadata_depth + 2
    depth = _depth(value, cap)
    if depth > limits.metadata_depth:
        raise InvalidInput(f"metadata is nested {depth}{'+' if depth == cap else ''} levels deep, the limit is "
                           f"{limits.metadata_depth}")
    _json_value(value, "metadata")
    encoded = json.dumps(value, ensure_ascii=False, allow_nan=False)
    if len(encoded.encode()) > limits.metadata_bytes:
        raise InvalidInput(
            f"metadata is {len(encoded.encode())} bytes as JSON, over the limit of {limits.metadata_bytes}"
        )
    return value


def _json_value(value: Any, path: str) -> None:
    if isinstance(value, str):
        unicode(value, path)
    elif value is None or isinstance(value, bool):
        return
    elif isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise InvalidInput(f"{path} is an integer of {value.bit_length()} bits, outside the 64-bit range Milvus "
                               f"stores ({INT64_MIN} to {INT64_MAX}): send it as a string")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput(f"{path} is {value}, which JSON cannot hold: send a finite number or a string")
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidInput(f"{path} has the key {key!r}, not a string: JSON object keys are strings")
            unicode(key, f"a key of {path}")
            _json_value(item, f"{path}[{key[:40]!r}]")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _json_value(item, f"{path}[{i}]")
    else:
        raise InvalidInput(f"{path} is a {type(value).__name__}, not JSON: use objects, arrays, strings, numbers, "
                           "true, false or null")


def _depth(value: Any, cap: int) -> int:
    """How deeply objects and arrays nest in `value`, counted up to `cap` (without recursion, so that
    neither a deep nor a cyclic object from a Python caller overflows)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list | tuple) else None
        if children is not None:
            deepest = max(deepest, level)
            if level < cap:
                stack.extend((child, level + 1) for child in children)
    return deepest


def unicode(text: str, what: str) -> str:
    """`text`, if it is valid Unicode: an unpaired surrogate cannot be encoded as UTF-8, and Milvus
    refuses the whole insert that holds one."""
    try:
        text.encode()
    except UnicodeEncodeError as exc:
        raise InvalidInput(f"{what} contains an unpaired surrogate ({text[exc.start]!r} at character {exc.start}), "
                           "which is not valid Unicode: send valid UTF-8 text") from None
    return text


def k(value: int, limits: Limits) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or value > limits.k:
        raise InvalidInput(f"k must be a whole number from 1 to {limits.k}, got {value!r}")
    return value


def k_or_default(value: int | None, default: int, limits: Limits) -> int:
    """`value` checked, or when absent `default` (never above the limit)."""
    return k(value if value is not None else min(default, limits.k), limits)


def since_ms(value: str | None) -> int | None:
    """ISO-8601 date or datetime (naive means UTC) -> epoch milliseconds."""
    return moment(value, "since")


def moment(value: str | None, what: str) -> int | None:
    """`what`, an ISO-8601 date or datetime (naive means UTC), as epoch milliseconds."""
    if value is None:
        return None
    example = "e.g. 2026-11-24 or 2026-11-24T09:30:00Z"
    if not isinstance(value, str) or len(value) > 64:
        raise InvalidInput(f"{what} {str(value)[:40]!r}... is not an ISO-8601 date or time, {example}")
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except (ValueError, AttributeError) as exc:
        raise InvalidInput(f"{what} {value!r} is not an ISO-8601 date or time, {example}") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if not 1970 <= when.year <= 9999 or when.timestamp() < 0:
        raise InvalidInput(f"{what} {value!r} is before 1970: give a later date")
    return int(when.timestamp() * 1000)


def expiry(ttl_seconds: int | None, expires_at: str | None, now: int, *, past_ok: bool = False) -> int:
    """When a memory expires, in epoch milliseconds (0: never), from a ttl in seconds or an ISO-8601
    time. A time already passed is refused unless `past_ok` (an import of a memory that expired)."""
    if ttl_seconds is not None and expires_at is not None:
        raise InvalidInput("pass ttl_seconds or expires_at, not both")
    if ttl_seconds is not None:
        if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int) or not 1 <= ttl_seconds <= MAX_TTL_SECONDS:
            raise InvalidInput(f"ttl_seconds must be a whole number of seconds from 1 to {MAX_TTL_SECONDS} "
                               f"(a century), got {ttl_seconds!r}")
        return now + ttl_seconds * 1000
    when = moment(expires_at, "expires_at")
    if when is None:
        return 0
    if when <= now and not past_ok:
        raise InvalidInput(f"expires_at {expires_at!r} has already passed: give a later time, or leave it out to "
                           "keep the memory for ever")
    return when


def thread(value: str, limits: Limits) -> str:
    """A thread id: like a tag."""
    return label(value, "thread", limits.tag_chars, MAX_TAG_BYTES)


def describe(error: ValidationError, most: int = 3) -> str:
    """A pydantic ValidationError (a wrong type, a bad enum value, an unknown field) as one short
    line that names each argument and what it expects, without pydantic's URL."""
    parts = []
    for item in error.errors(include_url=False)[:most]:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in item["loc"]).lstrip(".") or "arguments"
        if item["type"] == "missing":
            parts.append(f"{where}: required")
        elif item["type"] == "extra_forbidden":
            parts.append(f"{where}: unknown argument")
        else:
            expected = item["msg"].replace("Input should be", "should be").split(" [")[0]
            parts.append(f"{where}: {expected}, got {str(repr(item.get('input')))[:40]}")
    more = len(error.errors()) - most
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")
