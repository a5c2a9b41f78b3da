"""Moving over from the MCP reference memory server (`@modelcontextprotocol/server-memory`).

Its `memory.json` is a knowledge graph written as JSON Lines, one object per line:

    {"type": "entity", "name": "John_Smith", "entityType": "person", "observations": ["Speaks Spanish"]}
    {"type": "relation", "from": "John_Smith", "to": "Anthropic", "relationType": "works_at"}

(its `read_graph` answer, `{"entities": [...], "relations": [...]}`, is read too). Each entity becomes
one memory of kind `entity` ("John_Smith is a person."), each observation one of kind `observation`
("John_Smith: Speaks Spanish"), each relation one of kind `relation` ("John_Smith works_at
Anthropic"). They keep the names and links: `metadata` holds the entity's name and type, or the
relation's `from`, `relationType` and `to`, and every memory about an entity carries the tag
`entity:<name>`, so `recall(tags=["entity:John_Smith"])` finds an entity with its observations and
relations (a name too long for a tag is kept in `metadata` only).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, TypeGuard

from .errors import InvalidInput
from .exchange import ExportedMemory

AUTHOR = "mcp-server-memory"  # the agent id its memories carry (a token's own id when imported through a hub)
_TAG_CHARS = 64  # the default MEMORY_MAX_TAG_CHARS: longer names are left out of the tags


def is_reference(first: Any) -> bool:
    """Whether the first JSON value of a file is the reference server's."""
    return isinstance(first, dict) and (first.get("type") in ("entity", "relation")
                                        or ("entities" in first and "format" not in first))


def memories(lines: list[tuple[int, Any]], community: str, created_at: str) -> list[tuple[int, ExportedMemory]]:
    """The memories of a reference knowledge graph, each with the line it came from. Raises
    InvalidInput naming the first line that is not an entity or a relation."""
    out: list[tuple[int, ExportedMemory]] = []
    for number, item in _items(lines):
        try:
            out += [(number, m) for m in _memories(item, community, created_at)]
        except InvalidInput as exc:
            raise InvalidInput(f"line {number}: {exc}") from exc
    return out


def _items(lines: list[tuple[int, Any]]) -> Iterator[tuple[int, Any]]:
    for number, value in lines:
        if isinstance(value, dict) and "type" not in value and ("entities" in value or "relations" in value):
            for kind, key in (("entity", "entities"), ("relation", "relations")):
                for item in value.get(key) or []:
                    yield number, {"type": kind, **item} if isinstance(item, dict) else item
        else:
            yield number, value


def _memories(item: Any, community: str, created_at: str) -> list[ExportedMemory]:
    def memory(content: str, kind: str, names: list[str], metadata: dict[str, Any]) -> ExportedMemory:
        tags = [f"entity:{n}" for n in names if len(f"entity:{n}") <= _TAG_CHARS]
        return ExportedMemory(content=content, community=community, kind=kind, tags=list(dict.fromkeys(tags)),
                              agent_id=AUTHOR, created_at=created_at, metadata={**metadata, "source": AUTHOR})

    if not isinstance(item, dict):
        raise InvalidInput("not a JSON object: expected an entity or a relation")
    if item.get("type") == "entity":
        name, kind, observations = item.get("name"), item.get("entityType"), item.get("observations", [])
        if not _text(name) or not _text(kind) or not isinstance(observations, list) \
                or not all(isinstance(o, str) for o in observations):
            raise InvalidInput("an entity needs a name and an entityType (text) and observations (a list of text)")
        about = {"entity": name, "entity_type": kind}
        return [memory(f"{name} is {_article(kind)} {kind}.", "entity", [name], about)] + [
            memory(f"{name}: {o}", "observation", [name], about) for o in observations if o.strip()]
    if item.get("type") == "relation":
        source, relation, target = item.get("from"), item.get("relationType"), item.get("to")
        if not _text(source) or not _text(relation) or not _text(target):
            raise InvalidInput("a relation needs from, relationType and to (text)")
        return [memory(f"{source} {relation} {target}", "relation", [source, target],
                       {"from": source, "relation_type": relation, "to": target})]
    raise InvalidInput(f"type {json.dumps(item.get('type'))[:40]} is neither \"entity\" nor \"relation\"")


def _text(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and bool(value.strip())


def _article(noun: str) -> str:
    return "an" if noun[:1].lower() in "aeiou" else "a"
