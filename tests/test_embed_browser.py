"""The embed in headless Chromium: the demo lesson served from a second origin starts a
session on the first click and runs the block in its terminal; an origin not on
PWD_EMBED_ORIGINS is refused; the iframe route is framed by a listed origin only."""

import re
import time
import urllib.request

import pytest

from bench.embed import docs_site
from tests.live_server import free_port, live_server
from tests.test_terminal_browser import ARTIFACTS, browser  # noqa: F401 - a fixture

pytestmark = [pytest.mark.browser, pytest.mark.docker]

READY = re.compile(r"Docker \d+\.\d+\S* is ready")


@pytest.fixture(scope="module")
def sites(engine, tmp_path_factory):
    """pwd (embeds allowed from the first docs site only) and two docs sites, each with
    the lesson copied from /docs/try/ and a page framing /embed/."""
    listed_port, other_port = free_port(), free_port()
    root = tmp_path_factory.mktemp("embed")
    with live_server(
        root / "pwd", PWD_EMBED_ORIGINS=f"http://127.0.0.1:{listed_port}", PWD_POOL_SIZE="1"
    ) as pwd:
        with urllib.request.urlopen(pwd.url + "/docs/try/", timeout=30) as response:
            lesson = response.read()
        docs = root / "docs"
        docs.mkdir()
        (docs / "lesson.html").write_bytes(lesson)
        short = lesson.replace(b'<script type="module" ', b'<script data-pwd-duration="3s" ')
        assert short != lesson
        (docs / "short.html").write_bytes(short.replace(b"<script ", b'<script type="module" '))
        frame = f'<!doctype html><title>frame</title><iframe src="{pwd.url}/embed/?node=node1"'
        frame += ' style="width:800px;height:400px"></iframe>'
        (docs / "frame.html").write_text(frame)
        with docs_site(docs, listed_port) as listed, docs_site(docs, other_port) as other:
            yield pwd, listed, other
        print(pwd.log.read_text()[-4000:])


def _screen(locator) -> str:
    """What a placeholder's terminal holds, from xterm.js's buffer (scrollback included)."""
    return locator.evaluate(
        """(element) => {
            const terminal = element.closest("[data-pwd-term]").pwdTerminal;
            if (!terminal) return "";
            const buffer = terminal.term.buffer.active;
            const lines = [];
            for (let i = 0; i < buffer.length; i++) {
                lines.push(buffer.getLine(i).translateToString(true));
            }
            return lines.join("\\n");
        }"""
    )


def _wait_for(locator, pattern: re.Pattern[str], within: float, page) -> str:
    deadline = time.monotonic() + within
    while True:
        text = _screen(locator) if locator.count() else ""
        if pattern.search(text) or time.monotonic() > deadline:
            return text
        page.wait_for_timeout(200)


def _sessions(pwd) -> int:
    done = pwd.python("from sessions_app.models import Session; print(Session.objects.count())")
    return int(done.stdout.strip().splitlines()[-1])


def test_a_click_on_a_lesson_block_runs_it_in_an_embedded_terminal(sites, browser):  # noqa: F811
    pwd, listed, _other = sites
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.goto(listed + "/lesson.html")
    block = page.locator("pre.pwd-run").first
    block.wait_for(timeout=30_000)
    assert page.locator('[data-pwd-term="node1"]').count() == 1
    before = _sessions(pwd)
    # Copy copies a block without running it: no session yet.
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=listed)
    second = page.locator("pre.pwd-run").nth(1)
    second.get_by_role("button", name="Copy").click()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied.strip() == 'docker run --rm alpine echo "hello from a container"'
    assert _sessions(pwd) == before
    assert page.locator('[data-pwd-term="node1"] .xterm').count() == 0
    block.click()
    rows = page.locator('[data-pwd-term="node1"] .xterm-rows')
    text = _wait_for(rows, READY, 120, page)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "embed-lesson.png"))
    assert READY.search(text), text[-2000:]
    assert _sessions(pwd) == before + 1
    assert page.locator('[data-pwd-term="node1"]').get_attribute("data-pwd-state") == "connected"
    assert not problems
    page.close()


def _ended(pwd, session_id: str) -> bool:
    """Whether the session is ended and its nodes and network are removed."""
    done = pwd.python(
        "from sessions_app.models import Session; print(Session.objects.filter("
        f"pk={session_id!r}, ended_at__isnull=False, cleaned_at__isnull=False).exists())"
    )
    return done.stdout.strip().splitlines()[-1] == "True"


def _wait_connected(page) -> None:
    """Until node1's terminal is connected; fails with the placeholder's message when the
    embed reports an error instead."""
    place = page.locator('[data-pwd-term="node1"]')
    page.locator(
        '[data-pwd-term="node1"][data-pwd-state="connected"],'
        ' [data-pwd-term="node1"][data-pwd-state="error"]'
    ).wait_for(timeout=120_000)
    assert place.get_attribute("data-pwd-state") == "connected", place.inner_text()


def _session_of(page) -> str:
    url = page.evaluate(
        """() => document.querySelector('[data-pwd-term="node1"]').pwdTerminal.url"""
    )
    return re.search(r"/ws/sessions/([^/]+)/", url).group(1)


def _until(predicate, within: float, page) -> bool:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            return False
        page.wait_for_timeout(300)
    return True


def test_leaving_the_page_or_its_duration_ends_the_session(sites, browser):  # noqa: F811
    pwd, listed, _other = sites
    page = browser.new_page()
    page.goto(listed + "/lesson.html")
    page.locator("pre.pwd-run").first.click()
    _wait_connected(page)
    left = _session_of(page)
    assert not _ended(pwd, left)
    page.goto("about:blank")
    assert _until(lambda: _ended(pwd, left), 60, page)

    page.goto(listed + "/short.html")
    page.locator("pre.pwd-run").first.click()
    _wait_connected(page)
    timed = _session_of(page)
    # data-pwd-duration="3s": the embed ends its session then, and says so.
    page.locator('[data-pwd-term="node1"][data-pwd-state="closed"]').wait_for(timeout=60_000)
    status = page.locator('[data-pwd-term="node1"] .pwd-status').inner_text()
    assert "The session has ended." in status
    assert _until(lambda: _ended(pwd, timed), 60, page)
    page.close()


def test_an_origin_not_on_the_list_is_refused(sites, browser):  # noqa: F811
    pwd, _listed, other = sites
    page = browser.new_page()
    page.goto(other + "/lesson.html")
    page.locator("pre.pwd-run").first.wait_for(timeout=30_000)
    before = _sessions(pwd)
    page.locator("pre.pwd-run").first.click()
    place = page.locator('[data-pwd-term="node1"][data-pwd-state="error"]')
    place.wait_for(timeout=30_000)
    assert page.locator('[data-pwd-term="node1"] .xterm').count() == 0
    assert _sessions(pwd) == before
    page.close()


def _framed(page, pwd_url: str):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for frame in page.frames:
            if frame.url.startswith(pwd_url + "/embed/"):
                return frame
        page.wait_for_timeout(200)
    return None


def test_the_iframe_route_works_in_a_listed_origin_and_is_refused_in_another(
    sites,
    browser,  # noqa: F811
):
    pwd, listed, other = sites
    page = browser.new_page(viewport={"width": 1000, "height": 700})
    page.goto(listed + "/frame.html")
    frame = _framed(page, pwd.url)
    assert frame is not None
    frame.get_by_role("button", name="Start node1").click()
    rows = frame.locator('[data-pwd-term="node1"] .xterm-rows')
    assert re.search(r"\[node1\]", _wait_for(rows, re.compile(r"\[node1\]"), 120, page))
    page.close()

    page = browser.new_page()
    refused: list[str] = []
    page.on("console", lambda message: refused.append(message.text))
    page.goto(other + "/frame.html")
    page.wait_for_load_state("load")
    frame = page.frames[-1]
    # A refused frame holds Chromium's error page, never the embed's start button.
    assert frame.locator("button.pwd-start").count() == 0
    assert any("frame-ancestors" in line for line in refused), refused
    page.close()


def test_an_embedded_terminal_comes_back_after_a_server_restart_with_its_screen_once(
    sites,
    browser,  # noqa: F811
):
    pwd, listed, _other = sites
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.goto(listed + "/lesson.html")
    page.locator("pre.pwd-run").first.click()
    place = page.locator('[data-pwd-term="node1"]')
    rows = place.locator(".xterm-rows")
    assert READY.search(_wait_for(rows, READY, 120, page))

    place.evaluate(
        """(element) => {
            element.seen = [];
            new MutationObserver(() => element.seen.push(element.dataset.pwdState))
                .observe(element, { attributes: true, attributeFilter: ["data-pwd-state"] });
        }"""
    )
    pwd.restart()
    # The terminal reconnects by itself and gets the screen back once, not twice.
    page.wait_for_function(
        """() => {
            const element = document.querySelector('[data-pwd-term="node1"]');
            return element.seen.includes("offline") && element.dataset.pwdState === "connected";
        }""",
        timeout=60_000,
    )
    text = _wait_for(rows, READY, 30, page)
    assert len(READY.findall(text)) == 1, text
    # And it still runs blocks.
    page.locator("pre.pwd-run").nth(1).get_by_role("button", name="Copy").click()
    page.locator("pre.pwd-run").first.click()
    again = re.compile(r"(Docker \d+\.\d+\S* is ready[\s\S]*){2}")
    assert again.search(_wait_for(rows, again, 60, page))
    page.close()
