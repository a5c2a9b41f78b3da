"""The web view in a real headless browser: Debian's Chromium driven by selenium (benchmarks/browser.py),
against a real hub process with tokens, written to over MCP by the SDK's own client.

One hub and one browser for the module. Skipped, with the reason, where Chromium or its driver is
not installed (.ci/run installs both).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import httpx
import pytest

from benchmarks import browser
from tests import procs
from tests.conftest import call
from tests.hub_sessions import ADMIN, ALPHA, BETA, GRANTS, http_session

if browser.missing():
    pytest.skip(browser.missing() or "", allow_module_level=True)

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.wait import WebDriverWait  # noqa: E402

DB_EXPERT = "db-expert-token-0123456789abcdef"
K8S_EXPERT = "k8s-expert-token-0123456789abcdef"
TOKENS: dict[str, Any] = {"tokens": {
    **GRANTS["tokens"],
    DB_EXPERT: {"agent_id": "db_expert", "communities": ["team-alpha"]},
    K8S_EXPERT: {"agent_id": "k8s_expert", "communities": ["team-alpha"]},
}}
BETA_SECRET = "ships to Zanzibar in May"  # words only team-beta's memories hold


def mcp(base: str, token: str, tool: str, **arguments: Any) -> dict[str, Any]:
    """One tool call over streamable HTTP with the SDK's client, as an agent makes it."""
    async def run() -> dict[str, Any]:
        with anyio.fail_after(120):
            async with http_session(f"{base}/mcp", token) as session:
                return await call(session, tool, **arguments)
    return anyio.run(run)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("ui-browser")
    with procs.hub_process(tmp / "memory.db", tmp, MEMORY_AUTH_TOKENS=json.dumps(TOKENS)) as (base, _):
        mcp(base, DB_EXPERT, "register_expert", agent_id="db_expert", community="team-alpha",
            description="Database specialist: SQL queries, Postgres tuning, indexes and migrations.",
            skills=["slow SQL queries and query plans", "Postgres replication and backups"])
        mcp(base, K8S_EXPERT, "register_expert", agent_id="k8s_expert", community="team-alpha",
            description="Kubernetes operator: pods, deployments, Helm charts and cluster networking.",
            skills=["pods that crash or restart", "Helm releases and upgrades"])
        mcp(base, BETA, "remember", content=f"The new roadmap {BETA_SECRET}.", community="team-beta",
            kind="decision")
        mcp(base, BETA, "register_expert", agent_id="bob", community="team-beta",
            description=f"Beta's planner for the {BETA_SECRET}.")
        yield base


@pytest.fixture(scope="module")
def driver() -> Iterator[WebDriver]:
    with browser.chromium() as opened:
        yield opened


@pytest.fixture(scope="module")
def signed_in(hub: str, driver: WebDriver) -> WebDriver:
    """The browser, signed in with alice's token (team-alpha and shared)."""
    driver.get(f"{hub}/ui/")
    assert "/ui/login" in driver.current_url
    driver.find_element(By.ID, "token").send_keys(ALPHA)
    driver.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
    wait_for(driver, lambda d: "/ui/login" not in d.current_url)
    assert driver.find_element(By.CSS_SELECTOR, "form.who span").text == "alice"
    return driver


def wait_for(driver: WebDriver, condition: Callable[[WebDriver], Any], seconds: float = 20) -> Any:
    return WebDriverWait(driver, seconds, poll_frequency=0.1).until(condition)


def console_problems(driver: WebDriver) -> list[dict[str, Any]]:
    return [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]


PAGES = ["/ui/", "/ui/memories", "/ui/memories?q=kubernetes+pods&mode=hybrid",
         "/ui/experts?community=team-alpha&question=my+pod+keeps+restarting", "/ui/activity"]


def test_a_hub_with_tokens_asks_for_a_token_before_it_shows_anything(hub: str, driver: WebDriver) -> None:
    driver.delete_all_cookies()
    driver.get(f"{hub}/ui/memories?q=roadmap")
    assert "/ui/login" in driver.current_url
    assert driver.find_element(By.CSS_SELECTOR, "h1").text == "Sign in"
    source = driver.page_source
    assert "team-" not in source and BETA_SECRET not in source
    driver.find_element(By.ID, "token").send_keys("not-a-token-0123456789abcdef")
    driver.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
    assert wait_for(driver, lambda d: d.find_element(By.CSS_SELECTOR, "p.error")).text == \
        "The hub does not know this token."
    console_problems(driver)  # the refused sign-in logged its 401: not this module's concern below


def test_search_finds_a_memory_written_over_mcp_a_moment_before(hub: str, signed_in: WebDriver) -> None:
    written = mcp(hub, ALPHA, "remember", content="The blue-green deploy of the billing API starts at 06:00 UTC.",
                  community="team-alpha", kind="decision", tags=["billing", "deploy"],
                  metadata={"ticket": "OPS-4312"})
    signed_in.get(f"{hub}/ui/memories")
    box = signed_in.find_element(By.ID, "q")
    box.send_keys("when does the billing deploy start")
    box.submit()
    card = wait_for(signed_in, lambda d: d.find_element(By.CSS_SELECTOR, f"article[data-id='{written['id']}']"))
    assert "blue-green deploy of the billing API" in card.find_element(By.CSS_SELECTOR, ".content").text
    assert float(card.find_element(By.CSS_SELECTOR, ".score").text) > 0
    assert card.find_element(By.CSS_SELECTOR, ".kind").text == "decision"
    assert card.find_element(By.CSS_SELECTOR, ".agent").text == "alice"
    assert [t.text for t in card.find_elements(By.CSS_SELECTOR, ".tag")] == ["billing", "deploy"]
    assert "OPS-4312" in card.find_element(By.CSS_SELECTOR, ".metadata pre").get_attribute("textContent")
    first = signed_in.find_element(By.CSS_SELECTOR, ".results article")
    assert first.get_attribute("data-id") == written["id"]  # the best hit


def test_the_thread_filter_lists_one_thread_and_a_memory_shows_its_neighbours_in_it(
        hub: str, signed_in: WebDriver) -> None:
    turns = ["Incident 7 opened: checkout latency above 2 s.", "Rolled back the payments release.",
             "Latency back under 300 ms.", "Postmortem booked for Friday."]
    written = mcp(hub, ALPHA, "remember_many", memories=[
        {"content": text, "community": "team-alpha", "thread": "incident-7", "created_at": f"2026-05-04T09:0{i}:00Z"}
        for i, text in enumerate(turns)])
    ids = [r["id"] for r in written["results"]]
    mcp(hub, ALPHA, "remember", content="Incident 8 opened: search is slow.", community="team-alpha",
        thread="incident-8")
    signed_in.get(f"{hub}/ui/memories?community=team-alpha")
    box = signed_in.find_element(By.NAME, "thread")
    box.send_keys("incident-7")
    box.submit()
    wait_for(signed_in, lambda d: "thread=incident-7" in d.current_url)
    listed = [a.get_attribute("data-id") for a in signed_in.find_elements(By.CSS_SELECTOR, ".results article")]
    assert listed == ids[::-1]  # the thread only, newest first
    assert {t.text for t in signed_in.find_elements(By.CSS_SELECTOR, ".results .thread")} == {"incident-7"}
    third = signed_in.find_element(By.CSS_SELECTOR, f".results article[data-id='{ids[2]}']")
    third.find_element(By.CSS_SELECTOR, ".actions .id").click()
    wait_for(signed_in, lambda d: ids[2] in d.current_url)
    def shown(where: str) -> list[str | None]:
        return [a.get_attribute("data-id") for a in signed_in.find_elements(By.CSS_SELECTOR, f"{where} article")]
    assert (shown(".neighbours.before"), shown(".neighbours.after")) == (ids[:2], ids[3:])
    # the thread's name on a card lists the thread
    signed_in.find_element(By.CSS_SELECTOR, ".neighbours.after article .thread").click()
    wait_for(signed_in, lambda d: "thread=incident-7" in d.current_url and "/memories/" not in d.current_url)
    assert len(signed_in.find_elements(By.CSS_SELECTOR, ".results article")) == len(turns)


def test_the_route_tester_names_the_right_expert_with_its_reason_and_memories(hub: str, signed_in: WebDriver) -> None:
    signed_in.get(f"{hub}/ui/experts?community=team-alpha")
    registered = [e.get_attribute("data-agent") for e in signed_in.find_elements(By.CSS_SELECTOR, ".card.expert")]
    assert registered == ["db_expert", "k8s_expert"]
    question = signed_in.find_element(By.NAME, "question")
    question.send_keys("Our payment pod keeps crashing and restarting after the Helm upgrade")
    question.submit()
    chosen = wait_for(signed_in, lambda d: d.find_elements(By.CSS_SELECTOR, ".chosen .expert-choice"))
    assert chosen[0].get_attribute("data-agent") == "k8s_expert"
    assert "db_expert" not in [c.get_attribute("data-agent") for c in chosen]
    assert 0 < float(chosen[0].find_element(By.CSS_SELECTOR, "meter").get_attribute("value")) <= 1
    assert "fits" in chosen[0].find_element(By.CSS_SELECTOR, ".reason").text
    evidence = [e.text for e in chosen[0].find_elements(By.CSS_SELECTOR, ".evidence a")]
    assert any("crash or restart" in e or "Helm" in e for e in evidence), evidence


def test_a_token_granted_some_communities_never_sees_another_communitys_memories_or_names(
        hub: str, signed_in: WebDriver) -> None:
    mcp(hub, ADMIN, "remember", content="Admin note in shared.", community="shared")
    for page in [*PAGES, "/ui/memories?q=new+roadmap", "/ui/memories?q=zanzibar&mode=keyword",
                 "/ui/experts", "/ui/memories?community=&kind=decision"]:
        signed_in.get(f"{hub}{page}")
        source = signed_in.page_source
        assert "team-beta" not in source and BETA_SECRET not in source and "bob" not in source, page
    signed_in.get(f"{hub}/ui/")
    shown = [h.text for h in signed_in.find_elements(By.CSS_SELECTOR, ".community h2")]
    assert shown == ["shared", "team-alpha"]
    # the JSON endpoint, with the browser's own session cookie
    cookies = {c["name"]: c["value"] for c in signed_in.get_cookies()}
    feed = httpx.get(f"{hub}/ui/api/activity", cookies=cookies, timeout=30)
    assert feed.status_code == 200
    assert {m["community"] for m in feed.json()["memories"]} == {"team-alpha", "shared"}
    assert "team-beta" not in feed.text and BETA_SECRET not in feed.text
    # naming the other community outright is refused, and shows none of its memories
    signed_in.get(f"{hub}/ui/memories?community=team-beta")
    assert "not allowed" in signed_in.find_element(By.CSS_SELECTOR, ".error").text
    assert BETA_SECRET not in signed_in.page_source
    console_problems(signed_in)  # that refusal was a 403: logged by the browser on purpose


def test_forget_asks_first_and_then_removes_the_memory(hub: str, signed_in: WebDriver) -> None:
    doomed = mcp(hub, ALPHA, "remember", content="Temporary: the staging password rotates on Tuesdays.",
                 community="team-alpha")
    signed_in.get(f"{hub}/ui/memories?q=staging+password+rotates&community=team-alpha")
    card = signed_in.find_element(By.CSS_SELECTOR, f"article[data-id='{doomed['id']}']")
    card.find_element(By.LINK_TEXT, "Forget…").click()
    confirm = wait_for(signed_in, lambda d: d.find_element(By.ID, "confirm-forget"))
    assert "staging password rotates" in signed_in.find_element(By.CSS_SELECTOR, "blockquote").text
    asked = mcp(hub, ALPHA, "recall", query="staging password", community="team-alpha", mode="keyword")
    assert doomed["id"] in [h["id"] for h in asked["hits"]]  # asking removed nothing
    confirm.click()
    flash = wait_for(signed_in, lambda d: d.find_element(By.CSS_SELECTOR, ".flash"))
    assert flash.text == "Forgot 1 memory."
    assert "/ui/memories?q=staging+password+rotates" in signed_in.current_url  # back where it was asked
    assert not signed_in.find_elements(By.CSS_SELECTOR, f"article[data-id='{doomed['id']}']")
    after = mcp(hub, ALPHA, "recall", query="staging password", community="team-alpha", mode="keyword")
    assert doomed["id"] not in [h["id"] for h in after["hits"]]


def test_the_activity_page_shows_a_new_write_without_a_reload(hub: str, signed_in: WebDriver) -> None:
    signed_in.get(f"{hub}/ui/activity")
    marker = signed_in.execute_script("document.body.dataset.marker = 'same page'; return 1")
    assert marker == 1
    written = mcp(hub, ALPHA, "remember", content="Live: the canary passed in eu-west.", community="shared")
    row = wait_for(signed_in, lambda d: d.find_element(By.CSS_SELECTOR, f"#activity li[data-id='{written['id']}']"))
    assert "canary passed" in row.text and "alice" in row.text
    assert signed_in.find_element(By.CSS_SELECTOR, "#activity li").get_attribute("data-id") == written["id"]
    assert signed_in.execute_script("return document.body.dataset.marker") == "same page"  # no reload


def test_the_pages_log_no_console_errors(hub: str, signed_in: WebDriver) -> None:
    console_problems(signed_in)  # drop what earlier tests logged
    for page in PAGES:
        signed_in.get(f"{hub}{page}")
        wait_for(signed_in, lambda d: d.execute_script("return document.readyState") == "complete")
    signed_in.get(f"{hub}/ui/activity")
    wait_for(signed_in, lambda d: "live ·" in d.find_element(By.ID, "live-status").text, 15)  # one poll done
    assert console_problems(signed_in) == []


def test_no_page_scrolls_sideways_at_phone_width(hub: str, signed_in: WebDriver) -> None:
    # memories hold long unbroken words: URLs, paths, hashes
    long = mcp(hub, ALPHA, "remember", community="team-alpha", tags=["a-rather-long-tag-name-for-a-phone"],
               content="Runbook: https://wiki.example.org/ops/runbooks/billing/blue-green-deploys/rollback-procedure"
                       "?section=database-migrations-and-feature-flags",
               metadata={"path": "/srv/releases/2026-11-29T06:00:00Z/billing-api/config/production.override.yaml"})
    with browser.phone(signed_in):
        for page in [*PAGES, "/ui/login", "/ui/memories?community=team-alpha",
                     f"/ui/memories/team-alpha/{long['id']}", f"/ui/forget?community=team-alpha&id={long['id']}"]:
            signed_in.get(f"{hub}{page}")
            width, scroll = signed_in.execute_script(
                "return [window.innerWidth, document.documentElement.scrollWidth]")
            assert width == 390 and scroll <= width, (page, scroll)


def test_signing_out_ends_the_session(hub: str, signed_in: WebDriver) -> None:
    cookies = {c["name"]: c["value"] for c in signed_in.get_cookies()}
    signed_in.get(f"{hub}/ui/")
    signed_in.find_element(By.CSS_SELECTOR, "form.who button").click()
    wait_for(signed_in, lambda d: "/ui/login" in d.current_url)
    old = httpx.get(f"{hub}/ui/api/activity", cookies=cookies, timeout=30)
    assert old.status_code == 401  # the old session id is dead on the hub, not only in this browser
