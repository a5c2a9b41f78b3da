"""The web view's trust over plain HTTP: sessions, CSRF, Origin and Host checks, the hub's gate, and
a hub without tokens. A real hub (uvicorn + the hub app) on a loopback port, one per module."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import httpx
import pytest

from mcp_memory_server.config import Settings
from mcp_memory_server.hub.auth import hub_middleware
from mcp_memory_server.hub.tokens import Tokens, digest
from mcp_memory_server.hub.ui.sessions import COOKIE
from tests.conftest import Hub, call, running_hub
from tests.hub_sessions import ALPHA, BETA, auth_middleware, http_session


def remember(hub: Hub, token: str | None, **arguments: object) -> dict[str, object]:
    async def run() -> dict[str, object]:
        with anyio.fail_after(120):
            async with http_session(hub.url, token) as session:
                return await call(session, "remember", **arguments)
    return anyio.run(run)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    tmp = tmp_path_factory.mktemp("ui-security")
    with running_hub(Settings(milvus_uri=str(tmp / "memory.db")), middleware=auth_middleware()) as running:
        yield running


@contextmanager
def signed_in(hub: Hub, token: str) -> Iterator[httpx.Client]:
    """An HTTP client signed in to the web view the way a browser is: login form, then POST."""
    with httpx.Client(base_url=hub.base, timeout=60) as http:
        sign_in(hub, token, http)
        yield http


def sign_in(hub: Hub, token: str, http: httpx.Client) -> None:
    form = http.get("/ui/login")
    assert form.status_code == 200
    signed = http.post("/ui/login", data={"token": token, "csrf": csrf_of(form.text), "next": "/ui/"},
                       headers={"Origin": hub.base})
    assert signed.status_code == 303 and signed.headers["location"] == "/ui/", signed.text


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "no CSRF token in the page"
    return found.group(1)


def test_the_session_cookie_is_httponly_strict_and_holds_neither_the_token_nor_its_digest(hub: Hub) -> None:
    with httpx.Client(base_url=hub.base, timeout=60) as http:
        sign_in(hub, ALPHA, http)
        set_cookie = http.get("/ui/login").headers.get("set-cookie")  # signed in: redirected, no new cookie
        assert set_cookie is None
        value = http.cookies[COOKIE]
        assert ALPHA not in value and digest(ALPHA) not in value and len(value) >= 40
    with httpx.Client(base_url=hub.base, timeout=60) as raw:
        form = raw.get("/ui/login")
        header = form.headers["set-cookie"].lower()
        assert "httponly" in header and "samesite=strict" in header and "path=/ui/" in header
        signed = raw.post("/ui/login", data={"token": ALPHA, "csrf": csrf_of(form.text)}, headers={"Origin": hub.base})
        after = signed.headers["set-cookie"]
    assert "httponly" in after.lower() and "samesite=strict" in after.lower()
    assert after.split(";")[0] != form.headers["set-cookie"].split(";")[0]  # a new session id once signed in


def test_the_gate_lets_only_the_web_view_through_without_a_bearer_token(hub: Hub) -> None:
    with httpx.Client(base_url=hub.base, timeout=60) as http:
        assert http.get("/ui/").status_code == 303  # to the login form
        assert http.get("/ui/static/ui.css").status_code == 200
        assert http.get("/ui/api/activity").status_code == 401
        for path in ("/mcp", "/sse", "/uix", "/ui-admin", "/"):
            assert http.get(path).status_code == 401, path
        assert http.get("/ui/", headers={"Authorization": "Bearer wrong-token-0123456789"}).status_code == 401


def test_forget_is_refused_without_the_forms_csrf_token_or_from_another_origin(hub: Hub) -> None:
    kept = remember(hub, ALPHA, content="Keep me: the VPN config lives in the ops vault.", community="team-alpha")
    with signed_in(hub, ALPHA) as http:
        page = http.get("/ui/forget", params={"community": "team-alpha", "id": kept["id"]})
        assert page.status_code == 200 and "Forget this memory?" in page.text  # asking removes nothing
        token = csrf_of(page.text)
        fields = {"community": "team-alpha", "id": kept["id"], "next": "/ui/"}
        assert http.post("/ui/forget", data=fields, headers={"Origin": hub.base}).status_code == 403
        assert http.post("/ui/forget", data={**fields, "csrf": "x" * 43}, headers={"Origin": hub.base}
                         ).status_code == 403
        assert http.post("/ui/forget", data={**fields, "csrf": token}, headers={"Origin": "http://evil.example"}
                         ).status_code == 403
        assert http.post("/ui/forget", data={**fields, "csrf": token}, headers={"Origin": "null"}).status_code == 403
        still = http.get(f"/ui/memories/team-alpha/{kept['id']}")
        assert still.status_code == 200 and "VPN config" in still.text
        done = http.post("/ui/forget", data={**fields, "csrf": token}, headers={"Origin": hub.base})
        assert done.status_code == 303 and done.headers["location"] == "/ui/"
        assert http.get(f"/ui/memories/team-alpha/{kept['id']}").status_code == 404


def test_a_host_name_the_hub_does_not_serve_is_refused(hub: Hub) -> None:
    # a page on evil.example whose DNS name now points at 127.0.0.1 (DNS rebinding) reads nothing
    with signed_in(hub, ALPHA) as http:
        assert http.get("/ui/", headers={"Host": "evil.example"}).status_code == 421
        assert http.get("/ui/api/activity", headers={"Host": "evil.example:80"}).status_code == 421
        assert http.get("/ui/").status_code == 200


def test_signing_in_with_an_unknown_token_starts_no_session(hub: Hub) -> None:
    with httpx.Client(base_url=hub.base, timeout=60) as http:
        form = http.get("/ui/login")
        refused = http.post("/ui/login", data={"token": "unknown-token-0123456789", "csrf": csrf_of(form.text)},
                            headers={"Origin": hub.base})
        assert refused.status_code == 401 and "does not know this token" in refused.text
        assert http.get("/ui/").status_code == 303
        stale = http.post("/ui/login", data={"token": ALPHA, "csrf": "stale"}, headers={"Origin": hub.base})
        assert stale.status_code == 403 and http.get("/ui/").status_code == 303


def test_after_signing_in_the_browser_only_goes_to_pages_of_the_web_view(hub: Hub) -> None:
    for target, landed in [("//evil.example/ui/", "/ui/"), ("https://evil.example/", "/ui/"),
                           ("/ui/experts?community=team-alpha", "/ui/experts?community=team-alpha"),
                           ("/\\evil.example", "/ui/")]:
        with httpx.Client(base_url=hub.base, timeout=60) as http:
            form = http.get("/ui/login")
            signed = http.post("/ui/login", data={"token": BETA, "csrf": csrf_of(form.text), "next": target},
                               headers={"Origin": hub.base})
            assert signed.headers["location"] == landed, target


def test_a_hub_restart_ends_every_session(tmp_path: Path) -> None:
    settings = Settings(milvus_uri=str(tmp_path / "restart.db"))
    with running_hub(settings, middleware=auth_middleware()) as first, signed_in(first, ALPHA) as http:
        cookie = http.cookies[COOKIE]
        assert http.get("/ui/api/activity").status_code == 200
    with running_hub(settings, middleware=auth_middleware()) as second, \
            httpx.Client(base_url=second.base, timeout=60, cookies={COOKIE: cookie}) as again:
        assert again.get("/ui/api/activity").status_code == 401
        assert again.get("/ui/").headers["location"].startswith("/ui/login")


def test_a_hub_without_tokens_shows_every_community_without_a_login(tmp_path: Path) -> None:
    settings = Settings(milvus_uri=str(tmp_path / "open.db"))
    with running_hub(settings, middleware=hub_middleware(Tokens())) as hub, \
            httpx.Client(base_url=hub.base, timeout=60) as http:
        remember(hub, None, content="Open hub note for team one.", community="team-one")
        remember(hub, None, content="Open hub note for team two.", community="team-two")
        page = http.get("/ui/")
        assert page.status_code == 200 and "team-one" in page.text and "team-two" in page.text
        assert "Sign out" not in page.text
        assert http.get("/ui/login", follow_redirects=False).status_code == 303
        feed = http.get("/ui/api/activity").json()["memories"]
        assert [m["community"] for m in feed] == ["team-two", "team-one"]
        # still no cross-site writes: forget needs the page's CSRF token
        note = feed[0]
        fields = {"community": note["community"], "id": note["id"]}
        assert http.post("/ui/forget", data=fields, headers={"Origin": hub.base}).status_code == 403
        confirm = http.get("/ui/forget", params=fields)
        done = http.post("/ui/forget", data={**fields, "csrf": csrf_of(confirm.text)}, headers={"Origin": hub.base})
        assert done.status_code == 303
        assert [m["community"] for m in http.get("/ui/api/activity").json()["memories"]] == ["team-one"]
