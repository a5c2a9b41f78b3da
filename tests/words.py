"""Word terms of a text, to check that a test question shares no word with any expert profile."""

from __future__ import annotations

import re

# Words too common to say anything about a domain, even when a profile happens to use them.
_STOP = frozenset(
    "the and for with from into that this then than are was were not but you your our out how what "
    "when where which who why can use using does did has have had its via all any some other".split()
)


def terms(text: str) -> set[str]:
    """Lowercase word terms of `text`: camelCase split, 3+ characters, a plural 's' dropped."""
    text = re.sub(r"([a-z])([A-Z])", r"\1 \2", text)
    out: set[str] = set()
    for word in re.findall(r"[a-z][a-z0-9]+", text.lower()):
        if len(word) < 3 or word in _STOP:
            continue
        if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        out.add(word)
    return out
