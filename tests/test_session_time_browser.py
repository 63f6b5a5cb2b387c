"""The session page's clock and stats in headless Chromium against a real daphne: the
warning before the end, Extend in one tab moving the end in every tab, and each node's
CPU and memory beside it."""

import re
import time

import pytest

from tests.live_server import live_server
from tests.test_terminal_browser import browser  # noqa: F401 - fixture

pytestmark = [pytest.mark.browser, pytest.mark.docker]

# After any activity a session has 125 s left, so the warning (120 s) shows 5 s later, and an
# extend is seen moving the end by the seconds that went by.
IDLE_SECONDS = 125
WARNING_SECONDS = 120


@pytest.fixture(scope="module")
def server(engine, tmp_path_factory):
    env = {"PWD_IDLE_TIMEOUT": f"{IDLE_SECONDS}s", "PWD_EXPIRY_WARNING": f"{WARNING_SECONDS}s"}
    with live_server(tmp_path_factory.mktemp("session-time"), **env) as live:
        yield live
        print(live.log.read_text()[-4000:])


def open_tab(browser, server, session_id: str, problems: list[str]):  # noqa: F811
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.goto(f"{server.url}/p/{session_id}/")
    return page


def shown_end(page) -> str:
    return page.get_attribute("#time-left", "data-expires-at") or ""


def seconds_shown(page) -> int:
    """The time left as the page writes it ("1:58" or "1:02:05"), in seconds."""
    parts = [int(p) for p in page.inner_text("#time-value").split(":")]
    seconds = 0
    for part in parts:
        seconds = seconds * 60 + part
    return seconds


def until(check, within: float = 30, step: float = 0.2) -> bool:
    """Whether ``check()`` holds within ``within`` seconds (polled, bounded)."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


def same_instant(a: str, b: str) -> bool:
    from django.utils.dateparse import parse_datetime

    return bool(a and b) and parse_datetime(a) == parse_datetime(b)


def test_extend_in_one_tab_moves_the_end_in_every_tab(server, browser):  # noqa: F811
    status, session = server.request("POST", "/api/sessions/")
    assert status == 201, session
    problems: list[str] = []
    tabs = [open_tab(browser, server, session["id"], problems) for _ in range(2)]
    try:
        for tab in tabs:
            # Inside PWD_EXPIRY_WARNING from the start: the warning and Extend show.
            tab.wait_for_selector("#expiry-warning:not([hidden])", timeout=15000)
            assert tab.is_visible("#extend")
            assert "Extend it" in tab.inner_text("#expiry-warning")
        before = [shown_end(tab) for tab in tabs]
        # Let the clock run so that the extended end is a later one.
        assert until(lambda: all(seconds_shown(tab) <= IDLE_SECONDS - 3 for tab in tabs))

        with tabs[0].expect_response(re.compile(r"/extend/$")) as answer:
            tabs[0].click("#extend")
        extended = answer.value.json()
        assert answer.value.status == 200, extended

        for tab, old in zip(tabs, before, strict=True):
            assert until(lambda t=tab: same_instant(shown_end(t), extended["expires_at"])), (
                shown_end(tab),
                extended["expires_at"],
                old,
            )
            assert shown_end(tab) != old
            assert seconds_shown(tab) > IDLE_SECONDS - 3
        status, now = server.request("GET", f"/api/sessions/{session['id']}/")
        assert status == 200, now
        assert same_instant(now["hard_expires_at"], session["hard_expires_at"])
        assert problems == []
    finally:
        for tab in tabs:
            tab.close()
        server.request("DELETE", f"/api/sessions/{session['id']}/")


def test_each_node_shows_its_cpu_and_memory(server, browser):  # noqa: F811
    status, session = server.request("POST", "/api/sessions/")
    assert status == 201, session
    status, node = server.request("POST", f"/api/sessions/{session['id']}/nodes/")
    assert status == 201, node
    problems: list[str] = []
    tab = open_tab(browser, server, session["id"], problems)
    try:
        cell = '.node-stats[data-node="node1"]'
        tab.wait_for_function(
            "(sel) => /^CPU \\d+(\\.\\d)?% · \\d+ MiB \\/ 1\\.0 GiB$/"
            ".test(document.querySelector(sel)?.textContent || '')",
            arg=cell,
            timeout=30000,
        )
        assert "memory" in (tab.get_attribute(cell, "title") or "")
        assert problems == []
    finally:
        tab.close()
        server.request("DELETE", f"/api/sessions/{session['id']}/")
