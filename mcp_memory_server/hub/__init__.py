"""The hub: one process that owns the store and serves it to every client over HTTP.

    serve.py    `mcp-memory-server serve --transport streamable-http | sse`: uvicorn, advert, shutdown
    app.py      the ASGI app: /mcp (streamable HTTP), /sse + /messages/ (SSE), /health, /ui,
                /.well-known/ (no OAuth)
    replies.py  a call that asks for no progress answered as plain JSON
    direct.py   a quick tool call of a known session answered without the SDK's session machinery
    ui/         the web view at /ui: pages, sessions, its Host / Origin guard
    auth.py     who may call it, from where, with what: bearer tokens, loopback-only mode, body cap and
                malformed bodies, hosts, per-token limits
    tokens.py   the token file, and the tokens agents call the hub with
    ratelimit.py  per-token limits: requests per minute, open sessions
    client.py   HubClient: the memory's verbs, forwarded to a hub (stdio servers, agents)
    advert.py   which hub to join: the one rule (`find_hub`), and the advert file
    launch.py   start a hub as a subprocess and wait until it is healthy (demo, benchmarks, tests)

Nothing is imported here: a stdio server that joins a hub imports only what it needs.
"""
