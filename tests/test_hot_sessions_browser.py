"""Hot sessions in headless Chromium against a real daphne and a real keeper: Start on
the landing page opens a held session whose node1 is already at a prompt, no "Add node"
needed, and the keeper holds another."""

import json
import time

import pytest

from tests.live_server import live_server
from tests.test_terminal_browser import (
    _wait_for_text,
    browser,  # noqa: F401 - fixture
)

pytestmark = [pytest.mark.browser, pytest.mark.docker]

PROMPT = "[node1] (local) root@"


@pytest.fixture(scope="module")
def server(engine, tmp_path_factory):
    env = {"PWD_POOL_SIZE": "1", "PWD_POOL_SESSIONS": "1"}
    with live_server(tmp_path_factory.mktemp("hot-browser"), **env) as live:
        live.spawn("pool", ["manage.py", "pool", "--interval", "0.2"])
        yield live
        print(live.log.read_text()[-4000:])


def held(server, within: float = 120) -> list[str]:
    """The ids of the held sessions ready for a Start, once there is one (or after
    ``within`` seconds: then none)."""
    code = (
        "import json\nfrom sessions_app import hot\n"
        "print(json.dumps(sorted(hot.ready().values_list('pk', flat=True))))"
    )
    deadline = time.monotonic() + within
    while True:
        done = server.python(code)
        assert done.returncode == 0, done.stderr
        ids = json.loads(done.stdout)
        if ids or time.monotonic() > deadline:
            return ids
        time.sleep(0.5)


def test_start_opens_a_held_session_with_node1_at_a_prompt_and_the_keeper_holds_another(
    server,
    browser,  # noqa: F811
):
    (waiting,) = held(server)
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.goto(server.url + "/")

    page.get_by_role("button", name="Start").click()

    page.wait_for_url(f"**/p/{waiting}/")
    text = _wait_for_text(page, "node1", PROMPT, 30)
    assert PROMPT in text, text[-2000:]
    assert page.locator(".node.selected .node-name").inner_text() == "node1"
    page.locator(".terminal-host:not([hidden]) .xterm").click()
    page.keyboard.type("echo hot-$((6*7))\n")
    text = _wait_for_text(page, "node1", "\nhot-42", 30)
    assert "\nhot-42" in text, text[-2000:]
    assert not problems
    page.close()

    again = held(server)
    assert again
    assert waiting not in again
