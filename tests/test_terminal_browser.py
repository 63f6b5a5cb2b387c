"""The whole path in headless Chromium against a real daphne: start a session, add a node,
run a container inside it from the terminal and read its output off the screen."""

import os
import time
from pathlib import Path

import pytest

from tests.conftest import missing
from tests.live_server import live_server

pytestmark = [pytest.mark.browser, pytest.mark.docker]

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-gpu",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="module")
def server(engine, tmp_path_factory):
    """A daphne serving the app on a free port, with its own migrated SQLite database."""
    with live_server(tmp_path_factory.mktemp("browser")) as live:
        yield live.url
        print(live.log.read_text()[-4000:])


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        missing(f"Chromium is not at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _screen_text(page, node: str) -> str:
    """What the node's terminal shows, from xterm.js's buffer (scrollback included)."""
    return page.evaluate(
        """(name) => {
            const terminal = window.pwd.terminals.get(name);
            if (!terminal) return "";
            const buffer = terminal.term.buffer.active;
            const lines = [];
            for (let i = 0; i < buffer.length; i++) {
                lines.push(buffer.getLine(i).translateToString(true));
            }
            return lines.join("\\n");
        }""",
        node,
    )


def _wait_for_text(page, node: str, needle: str, within: float) -> str:
    deadline = time.monotonic() + within
    while True:
        text = _screen_text(page, node)
        if needle in text or time.monotonic() > deadline:
            return text
        page.wait_for_timeout(200)


def test_a_trainee_runs_a_container_in_a_node_from_the_browser(server, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.goto(server + "/")
    page.get_by_role("button", name="Start").click()
    page.wait_for_url("**/p/*/")
    page.get_by_role("button", name="+ Add node").click()
    page.wait_for_selector(".node.selected", timeout=90_000)
    assert _wait_for_text(page, "node1", "[node1]", 30).count("[node1]") >= 1

    page.locator(".terminal-host:not([hidden]) .xterm").click()
    page.keyboard.type("pwd-busybox-image && docker run --rm busybox echo hello-inner\n")
    text = _wait_for_text(page, "node1", "\nhello-inner", 120)
    page.screenshot(path=str(ARTIFACTS / "terminal.png"))
    assert "\nhello-inner" in text, text[-2000:]
    assert page.locator("#conn").inner_text() == "Connected"

    # A reload gets the screen back once, not the whole history again.
    page.reload()
    text = _wait_for_text(page, "node1", "hello-inner", 30)
    assert text.count("\nhello-inner") == 1, text[-2000:]
    assert not problems
    page.close()
