"""Checks on user input, against the configured limits. Each failure is an InvalidInput whose
message names the argument, the limit and what to do."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from .config import Limits, is_community_name
from .errors import InvalidInput
from .models import MAX_AGENT_ID_BYTES, MAX_CONTENT_BYTES, MAX_ID_CHARS, MAX_KIND_BYTES, MAX_TAG_BYTES, MAX_TAGS


def community_name(name: str) -> str:
    if not is_community_name(name):
        raise InvalidInput(
            f"invalid community name {name!r}: use 1-64 letters, digits, '_', '.' or '-'"
        )
    return name


def content(text: str, limits: Limits, what: str = "content") -> str:
    if not text or not text.strip():
        raise InvalidInput(f"{what} is empty: pass the text to remember")
    if len(text) > limits.content_chars or len(text.encode()) > MAX_CONTENT_BYTES:
        raise InvalidInput(
            f"{what} is {len(text)} characters, over the limit of {limits.content_chars}: "
            "split it into several memories"
        )
    return text


def query(text: str, limits: Limits) -> str:
    if not text or not text.strip():
        raise InvalidInput("query is empty: say what to look for")
    if len(text) > limits.query_chars:
        raise InvalidInput(f"query is {len(text)} characters, over the limit of {limits.query_chars}: shorten it")
    return text


def label(value: str, what: str, max_chars: int, max_bytes: int) -> str:
    """A short identifier-like value: kind, agent id, tag."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{what} is empty")
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
    if not isinstance(value, dict):
        raise InvalidInput("metadata must be a JSON object")
    try:
        encoded = json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"metadata is not plain JSON: {exc}") from exc
    if len(encoded.encode()) > limits.metadata_bytes:
        raise InvalidInput(
            f"metadata is {len(encoded.encode())} bytes as JSON, over the limit of {limits.metadata_bytes}"
        )
    depth = _depth(value)
    if depth > limits.metadata_depth:
        raise InvalidInput(f"metadata is nested {depth} levels deep, the limit is {limits.metadata_depth}")
    return value


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def k(value: int, limits: Limits) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or value > limits.k:
        raise InvalidInput(f"k must be a whole number from 1 to {limits.k}, got {value!r}")
    return value


def k_or_default(value: int | None, default: int, limits: Limits) -> int:
    """`value` checked, or when absent `default` (never above the limit)."""
    return k(value if value is not None else min(default, limits.k), limits)


def since_ms(value: str | None) -> int | None:
    """ISO-8601 date or datetime (naive means UTC) -> epoch milliseconds."""
    if value is None:
        return None
    if len(value) > 64:
        raise InvalidInput(f"since {value[:40]!r}... is not an ISO-8601 date or time, e.g. 2026-11-24")
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except (ValueError, AttributeError) as exc:
        raise InvalidInput(
            f"since {value!r} is not an ISO-8601 date or time, e.g. 2026-11-24 or 2026-11-24T09:30:00Z"
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


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
