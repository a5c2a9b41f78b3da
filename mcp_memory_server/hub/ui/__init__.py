"""The web view of the shared memory, served by the hub at /ui (see README, "Web view").

Pages: Communities (counts per kind, recent writers, last activity), Memories (search and the newest
memories, forget with a confirmation), Experts (registered profiles and a route tester), Activity
(the newest writes, updated live). Server-rendered templates, one small script and one style sheet
served by the hub itself: no CDN, no build step.

Every read and write goes through `MemoryService` with the visitor's `Caller`, under the same
`access` rules as the MCP tools. With tokens configured, a visitor signs in with a token
(sessions.py); guard.py applies the hub's Host / Origin rules and every form carries a CSRF token.

    app.py       ui_app: the routes, the guard, the login redirect and error pages
    web.py       what every page does first: the session, the open memory; rendering
    pages.py     the pages
    sessions.py  sessions and CSRF tokens (in memory: a hub restart signs everyone out)
    guard.py     Host / Origin checks and security headers
"""

from .app import ui_app

__all__ = ["ui_app"]
