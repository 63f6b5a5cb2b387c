"""The session page's keys in headless Chromium: Alt+digit switches nodes and F6 leaves
the terminal, and neither reaches the shell. The nodes are rows only (no engine), so
their terminals never connect; the page's keys do not need them to."""

import os

import pytest

from sessions_app.models import Node, Session
from tests.conftest import missing
from tests.test_terminal_browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _selected(page) -> str:
    return page.locator(".node.selected .node-name").inner_text()


def _type_into_node1(page) -> None:
    """Focus node1's terminal and record what it sends to the shell in `window.typed`."""
    page.evaluate("""() => {
        window.typed = [];
        window.pwd.terminals.get("node1").term.onData((text) => window.typed.push(text));
    }""")
    page.locator(".terminal-host:not([hidden]) .xterm").click()


@pytest.fixture
def page(live_server):
    """The page of a session with node1 and node2, in a browser of this test's own.

    Playwright's sync API runs an event loop in this thread, where Django refuses the
    ORM: the rows are made before it starts, and it stops before the database is reset.
    """
    if not os.path.exists(CHROMIUM):
        missing(f"Chromium is not at {CHROMIUM}")
    session = Session.objects.create()
    for name in ("node1", "node2"):
        Node.objects.create(session=session, name=name, hostname=name, status=Node.Status.RUNNING)
    from playwright.sync_api import sync_playwright

    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 720})
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.goto(live_server.url + session.page_path)
        page.wait_for_selector(".node.selected")
        yield page
        browser.close()
    assert not problems


def test_alt_digit_switches_nodes_without_typing_into_the_shell(page):
    assert _selected(page) == "node1"
    _type_into_node1(page)

    page.keyboard.press("Alt+2")

    assert _selected(page) == "node2"
    assert page.evaluate("window.typed") == []
    assert page.evaluate("location.hash") == "#node2"


def test_alt_digit_works_from_the_panel_too(page):
    page.locator("#panel").focus()
    page.keyboard.press("Alt+2")
    assert _selected(page) == "node2"
    page.keyboard.press("Alt+1")
    assert _selected(page) == "node1"


def test_alt_digit_for_a_missing_node_goes_to_the_shell(page):
    _type_into_node1(page)

    page.keyboard.press("Alt+7")

    assert _selected(page) == "node1"
    assert page.evaluate("window.typed") == ["\x1b7"]


def test_f6_leaves_the_terminal_for_the_panel(page):
    page.locator(".terminal-host:not([hidden]) .xterm").click()

    page.keyboard.press("F6")

    assert page.evaluate("document.activeElement.id") == "panel"
