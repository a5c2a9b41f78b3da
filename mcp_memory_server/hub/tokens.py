"""Hub tokens: the token file a hub reads, and the tokens agents use to call it.

The hub's tokens come from a file (MEMORY_AUTH_FILE: JSON, YAML or TOML) and/or the environment
(MEMORY_AUTH_TOKENS: the same JSON inline). Both have the shape

    {"tokens": {"<token>": {"agent_id": "alice", "communities": ["team-a"], "rate_limit": 600}}}

where `communities` is a list or "*" (every community, for admins) and `rate_limit` (optional)
is requests per minute (every HTTP request counts, see ratelimit.py). A key of the form
`sha256:<hex>` holds the token's SHA-256 digest instead of the token itself, so the file need not
contain secrets. What a grant allows is
decided in `access.py`.

Agents of an OpenAgents network each call the hub with their own token: MEMORY_AGENT_TOKENS
(`agent_tokens`), falling back to MEMORY_HUB_TOKEN (`hub_token`).
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from mcp.server.auth.provider import AccessToken
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, ValidationError

from ..access import ALL_COMMUNITIES, Grant
from ..config import COMMUNITY_PATTERN, Settings
from ..errors import ConfigError

MIN_TOKEN_CHARS = 16


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class GrantSpec(BaseModel):
    """One token's entry in the token file."""

    model_config = ConfigDict(extra="forbid")

    agent_id: str = Field(pattern=r"^[A-Za-z0-9_.@:-]{1,128}$")
    communities: Literal["*"] | list[Annotated[str, Field(pattern=COMMUNITY_PATTERN)]]
    rate_limit: StrictInt | StrictFloat | None = Field(None, gt=0)  # requests per minute
    burst: StrictInt | None = Field(None, ge=1)

    def grant(self) -> Grant:
        everything = self.communities == ALL_COMMUNITIES or self.communities == [ALL_COMMUNITIES]
        return Grant(self.agent_id, None if everything else frozenset(self.communities),
                     float(self.rate_limit) if self.rate_limit is not None else None, self.burst)


class GrantToken(AccessToken):
    """What the MCP SDK's bearer authentication attaches to a request: the token's grant."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    grant: Grant


class Tokens:
    """The configured tokens, kept only as SHA-256 digests. Empty means "no auth configured".
    A `TokenVerifier` for the MCP SDK's `BearerAuthBackend`."""

    def __init__(self, grants: Mapping[str, Grant] | None = None) -> None:
        self._by_digest = dict(grants or {})

    @classmethod
    def from_settings(cls, settings: Settings) -> Tokens:
        """Tokens from MEMORY_AUTH_FILE and MEMORY_AUTH_TOKENS (the latter wins on a clash).
        Raises ConfigError naming the source and what is wrong."""
        grants: dict[str, Grant] = {}
        if settings.memory_auth_file:
            path = Path(settings.memory_auth_file).expanduser()
            grants.update(parse_grants(read_structured(path, "MEMORY_AUTH_FILE"), str(path)))
        if settings.memory_auth_tokens:
            try:
                data = json.loads(settings.memory_auth_tokens)
            except ValueError as exc:
                raise ConfigError(f"MEMORY_AUTH_TOKENS is not valid JSON: {exc}") from exc
            grants.update(parse_grants(data, "MEMORY_AUTH_TOKENS"))
        return cls(grants)

    def __bool__(self) -> bool:
        return bool(self._by_digest)

    def __len__(self) -> int:
        return len(self._by_digest)

    def lookup(self, token: str) -> Grant | None:
        # Looking up the digest, not the token, keeps the comparison's timing independent of the secret.
        return self._by_digest.get(digest(token))

    async def verify_token(self, token: str) -> GrantToken | None:
        grant = self.lookup(token)
        if grant is None:
            return None
        # subject = the token's digest: the SDK binds each MCP session to the credential that opened it.
        return GrantToken(token=digest(token), client_id=grant.agent_id, subject=digest(token), scopes=[],
                          grant=grant)

    def agents(self) -> list[str]:
        return sorted({g.agent_id for g in self._by_digest.values()})


def parse_grants(data: Any, source: str) -> dict[str, Grant]:
    """`{"tokens": {token: {...}}}` (or the inner mapping alone) -> grants keyed by token digest."""
    if isinstance(data, dict) and "tokens" in data:
        data = data["tokens"]
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of tokens to grants, got {type(data).__name__}")
    grants: dict[str, Grant] = {}
    for key, spec in data.items():
        where = f"{source}: token {str(key)[:6]}..."
        if not isinstance(key, str):
            raise ConfigError(f"{where}: tokens must be strings")
        if key.startswith("sha256:"):
            hexdigest = key.removeprefix("sha256:").lower()
            if len(hexdigest) != 64 or any(c not in "0123456789abcdef" for c in hexdigest):
                raise ConfigError(f"{where}: a sha256: key needs 64 hex digits")
        elif len(key) < MIN_TOKEN_CHARS:
            raise ConfigError(f"{where}: tokens must be at least {MIN_TOKEN_CHARS} characters "
                              "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)")
        else:
            hexdigest = digest(key)
        try:
            grants[hexdigest] = GrantSpec.model_validate(spec).grant()
        except ValidationError as exc:
            raise ConfigError(f"{where}: {_describe(exc)}") from exc
    return grants


def _describe(exc: ValidationError) -> str:
    unknown = sorted(str(e["loc"][0]) for e in exc.errors() if e["type"] == "extra_forbidden")
    if unknown:
        return f"unknown keys {unknown}; a grant has agent_id, communities, rate_limit, burst"
    first = exc.errors()[0]
    field = str(first["loc"][0]) if first["loc"] else "grant"
    hints = {"agent_id": "1-128 letters, digits or _.@:-", "communities": '"*" or a list of community names',
             "rate_limit": "a positive number of requests per minute", "burst": "a positive whole number"}
    return f"{field} must be {hints.get(field, 'valid')} (got {first.get('input')!r})"


def read_structured(path: Path, what: str) -> Any:
    """A JSON, YAML (.yaml / .yml) or TOML (.toml) file's content. Raises ConfigError naming `what`."""
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read {path} ({exc.strerror})") from exc
    try:
        if path.suffix == ".toml":
            return tomllib.loads(text)
        if path.suffix in (".yaml", ".yml"):
            return yaml.safe_load(text)
        return json.loads(text)
    except (ValueError, yaml.YAMLError) as exc:
        kind = {".toml": "TOML", ".yaml": "YAML", ".yml": "YAML"}.get(path.suffix, "JSON")
        raise ConfigError(f"{what}: {path} is not valid {kind}: {exc}") from exc


def agent_tokens(settings: Settings) -> dict[str, str]:
    """MEMORY_AGENT_TOKENS as {agent_id: hub token}: the JSON object itself, or the path of a JSON
    or YAML file holding it. Empty when unset. Raises ConfigError saying what is wrong."""
    raw = settings.memory_agent_tokens
    if not raw or not raw.strip():
        return {}
    if raw.lstrip().startswith("{"):
        where = "MEMORY_AGENT_TOKENS"
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise ConfigError(f"{where}: not valid JSON: {exc}") from exc
    else:
        where = raw
        data = read_structured(Path(raw).expanduser(), "MEMORY_AGENT_TOKENS")
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) and v.strip()
                                             for k, v in data.items()):
        raise ConfigError(f'{where}: expected an object of agent ids to tokens, like {{"coordinator": "..."}}')
    return dict(data)


def hub_token(settings: Settings, agent_id: str | None = None) -> str | None:
    """The token to call the hub with: the agent's own (MEMORY_AGENT_TOKENS), else MEMORY_HUB_TOKEN."""
    if agent_id is not None:
        own = agent_tokens(settings).get(agent_id)
        if own is not None:
            return own
    return settings.memory_hub_token
