"""What technical names mean, for `route`: a small embedder does not know that "ImagePullBackOff"
is about Kubernetes or "IVF_PQ" about vector indexes, so a question made of such names fits no
one-sentence profile. `route` reads the question with the definitions of the names it contains
(`Glossary.explain`), one short sentence each that names the field ("Kubernetes pod status: ...").

The shipped glossary (`glossary.tsv`: ~1,340 entries, ~5,600 names and aliases of software,
infrastructure and data tools, their errors, files and commands) was written from general knowledge
for this purpose, by writers who never saw the routing benchmark's questions. Only names that mean
the technical thing in ordinary English are in it ("CrashLoopBackOff", "kubectl",
"requirements.txt"), never words such as python, helm, pod or container, so an everyday question
gains no definition. A deployment adds its own names, or
overrides a shipped definition, with MEMORY_GLOSSARY (a file of the same format).

Format: one name per line, `name|alias|alias<TAB>definition`; `#` starts a comment line. A name
matches case-insensitively as whole words (a plural `s` / `es` too); a name written `=NAME` matches
only as written ("=ACID", "=NAT": in lower case they are English words).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import cache
from importlib import resources
from pathlib import Path

from .errors import ConfigError

TOKEN = re.compile(r"[a-z0-9_][\w.+#-]*[\w+#]|[a-z0-9_]", re.IGNORECASE)  # "requirements.txt", "c++", "ivf_pq"
PART = re.compile(r"[a-z0-9]+", re.IGNORECASE)  # the parts of a token: "docker-compose.yml" -> docker compose yml
MAX_WORDS = 6  # the longest name, in tokens


def tokens(text: str) -> list[str]:
    """Lowercase word tokens; dots, dashes and pluses inside a token are kept ("docker-compose")."""
    return [t.lower() for t in TOKEN.findall(text)]


def key(name: str) -> tuple[str, ...]:
    """The tokens a name matches, or () when matching its tokens would match ordinary words: a name
    whose edges are punctuation ("$group", ".then()", "@Data", "--privileged") matches as its
    tokens only when they are still specific (a dot, dash or underscore inside: "--no-cache-dir",
    "@pytest.fixture"), since the tokens of the others are English words ("group", "then", "data")."""
    words = tuple(tokens(name))
    bare = name.strip()
    if not words or (TOKEN.fullmatch(bare.split()[0]) and TOKEN.fullmatch(bare.split()[-1])):
        return words
    return words if len(words) > 1 or re.search(r"\w[._-]\w", words[0]) else ()


class Glossary:
    """Names (as token sequences) and what they mean."""

    def __init__(self, entries: Mapping[str, str]) -> None:
        self.definitions: dict[tuple[str, ...], str] = {}
        self.meanings: tuple[str, ...] = tuple(sorted(set(entries.values())))  # every definition, once
        self.exact: dict[tuple[str, ...], tuple[str, ...]] = {}  # names that match only as written
        for name, definition in entries.items():
            words = key(name.removeprefix("="))
            if words and len(words) <= MAX_WORDS:
                self.definitions[words] = definition
                if name.startswith("="):
                    self.exact[words] = tuple(TOKEN.findall(name))
        self.longest = max((len(k) for k in self.definitions), default=0)

    def __len__(self) -> int:
        return len(self.definitions)

    def explain(self, text: str, limit: int = 4) -> list[tuple[str, str]]:
        """(name as the text writes it, its definition) for the names in `text`, in the order they
        appear (the longest name first where names overlap), each definition once, at most `limit`."""
        spans = [(m.group(), m.start(), m.end()) for m in TOKEN.finditer(text)]
        found: dict[str, str] = {}  # definition -> name
        i = 0
        while i < len(spans) and len(found) < limit:
            for n in range(min(self.longest, len(spans) - i), 0, -1):
                definition = self._lookup(tuple(w for w, _, _ in spans[i:i + n]))
                if definition is not None:
                    found.setdefault(definition, text[spans[i][1]:spans[i + n - 1][2]])
                    i += n
                    break
            else:
                word, start, _ = spans[i]
                parts = [(m.group(), start + m.start(), start + m.end()) for m in PART.finditer(word)]
                # "docker-compose.yml", "pandas.DataFrame": no name as a whole, so its parts are read
                if len(parts) > 1:
                    spans[i:i + 1] = parts
                else:
                    i += 1
        return [(name, definition) for definition, name in found.items()]

    def _lookup(self, written: tuple[str, ...]) -> str | None:
        """The definition of the name these tokens spell (as written in the text), if any."""
        last = written[-1]
        for cut in (0, 2, 1):  # as written, then without a plural "es" / "s" ("ConfigMaps", "Deployments")
            if cut and not (last.lower().endswith("es"[2 - cut:]) and len(last) > cut + 2):
                continue
            form = (*written[:-1], last[: len(last) - cut])
            name = tuple(w.lower() for w in form)
            if name in self.definitions and self.exact.get(name, form) == form:
                return self.definitions[name]
        return None


def parse(lines: Iterable[str], source: str) -> dict[str, str]:
    """name -> definition for every name and alias of the lines; a malformed line is an error
    naming the file and line."""
    entries: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        names, sep, definition = line.partition("\t")
        if not sep or not definition.strip() or "\t" in definition:
            raise ConfigError(f"{source}:{number}: expected 'name|alias<TAB>definition', got {line[:60]!r}")
        for name in names.split("|"):
            if name.strip():
                entries[name.strip()] = definition.strip()
    return entries


@cache
def shipped() -> dict[str, str]:
    """The glossary shipped with the package."""
    text = resources.files(__package__).joinpath("glossary.tsv").read_text("utf-8")
    return parse(text.splitlines(), "glossary.tsv")


def read(path: Path) -> dict[str, str]:
    """The names of a glossary file (MEMORY_GLOSSARY); ConfigError when it cannot be read or has a
    malformed line."""
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise ConfigError(f"MEMORY_GLOSSARY={path}: cannot read it ({exc.strerror or exc})") from exc
    return parse(text.splitlines(), str(path))


def load(extra: Path | None = None) -> Glossary:
    """The shipped glossary, with the names of `extra` (MEMORY_GLOSSARY) added or overriding."""
    return Glossary({**shipped(), **(read(extra) if extra is not None else {})})
