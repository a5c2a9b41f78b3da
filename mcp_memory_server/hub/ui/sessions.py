"""Who is looking: the web view's sessions.

A visitor exchanges a hub token for a session on the login page. The browser keeps only the
session's random id, in an HttpOnly, SameSite=Strict cookie: never the token, nor its SHA-256 (a
token file may list digests instead of tokens, so a digest is a credential too). The hub keeps
the session (the caller the token maps to, and a CSRF token every form posts back) in memory, so a
hub restart ends every session: people sign in again. Sessions not used for `idle` seconds end.

A visitor who has not signed in yet also has a session (caller None): the login form's CSRF token
lives there. The two kinds are capped separately, so that opening login pages cannot push signed-in
people out.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from ...access import Caller

COOKIE = "memory_ui"
IDLE_S = 12 * 3600.0  # a signed-in session unused this long ends
LOGIN_IDLE_S = 15 * 60.0  # a login form left this long must be reloaded
MAX_SESSIONS = 1000  # of each kind; the least recently used goes first


@dataclass
class Session:
    id: str
    csrf: str
    caller: Caller | None  # None: not signed in yet
    who: str  # the token's agent id ("" without tokens)
    seen: float
    flash: str | None = None  # a message for the next page shown ("Forgot 1 memory.")

    def csrf_ok(self, sent: str | None) -> bool:
        return sent is not None and hmac.compare_digest(sent.encode(), self.csrf.encode())

    def take_flash(self) -> str | None:
        message, self.flash = self.flash, None
        return message


class Sessions:
    """The sessions of one hub process, in memory."""

    def __init__(self, *, max_sessions: int = MAX_SESSIONS, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_sessions = max_sessions
        self._clock = clock
        self._signed_in: OrderedDict[str, Session] = OrderedDict()
        self._pending: OrderedDict[str, Session] = OrderedDict()

    def find(self, session_id: str | None) -> Session | None:
        """The live session with this id (and mark it used), or None."""
        if not session_id:
            return None
        for pool, idle in ((self._signed_in, IDLE_S), (self._pending, LOGIN_IDLE_S)):
            session = pool.get(session_id)
            if session is None:
                continue
            now = self._clock()
            if now - session.seen > idle:
                del pool[session_id]
                return None
            session.seen = now
            pool.move_to_end(session_id)
            return session
        return None

    def start(self, caller: Caller | None, who: str = "") -> Session:
        """A new session with fresh random id and CSRF token (never reuse the id of the session it
        replaces: that would let whoever planted an id ride the sign-in)."""
        session = Session(id=secrets.token_urlsafe(32), csrf=secrets.token_urlsafe(32), caller=caller, who=who,
                          seen=self._clock())
        pool = self._pending if caller is None else self._signed_in
        pool[session.id] = session
        while len(pool) > self.max_sessions:
            pool.popitem(last=False)
        return session

    def end(self, session_id: str) -> None:
        self._signed_in.pop(session_id, None)
        self._pending.pop(session_id, None)
