"""The swarm templates on the session page, in headless Chromium against a real daphne:
one click makes the nodes and their swarm, and the page shows the setup's progress."""

import pytest

from tests.live_server import live_server
from tests.test_terminal_browser import browser  # noqa: F401 - fixture

pytestmark = [pytest.mark.browser, pytest.mark.docker]

NODE_LS = "docker node ls --format '{{.Hostname}} {{.Status}} {{.ManagerStatus}}'"
# Every text the status line shows, in order (the test's own observer, not the page's).
RECORD_STATUS = """
window.__statusSeen = [];
document.addEventListener("DOMContentLoaded", () => {
  const status = document.querySelector("#setup .setup-status");
  new MutationObserver(() => window.__statusSeen.push(status.textContent))
    .observe(status, {childList: true, characterData: true, subtree: true});
});
"""


@pytest.fixture(scope="module")
def server(engine, tmp_path_factory):
    with live_server(tmp_path_factory.mktemp("setup-browser")) as live:
        yield live
        print(live.log.read_text()[-4000:])


def test_one_click_on_a_template_makes_its_swarm_and_shows_the_progress(server, browser):  # noqa: F811
    status, session = server.request("POST", "/api/sessions/")
    assert status == 201, session
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.add_init_script(RECORD_STATUS)
    page.goto(server.url + session["url"])
    template = page.get_by_role("button", name="1 manager, 1 worker")
    assert template.is_enabled()

    template.click()
    page.wait_for_function(
        "() => document.querySelector('#setup .setup-status').textContent.startsWith('Swarm')",
        timeout=180_000,
    )

    text = page.locator("#setup .setup-status").inner_text()
    assert text == "Swarm ready: 1 manager (node1), 1 worker (node2).", text
    seen = page.evaluate("window.__statusSeen")
    assert any(s.startswith("Starting nodes: 2 of 2") for s in seen), seen
    assert any(s.startswith("Joining the swarm: 2 of 2") for s in seen), seen
    assert page.locator("#nodes .node-name").all_inner_texts() == ["node1", "node2"]
    assert page.locator(".node.selected .node-name").inner_text() == "node1"
    assert template.is_disabled()
    assert page.locator("#setup .setup-error").is_hidden()
    status, result = server.request(
        "POST",
        f"/api/sessions/{session['id']}/nodes/node1/exec/",
        {"command": ["sh", "-c", NODE_LS]},
    )
    assert status == 200, result
    assert sorted(result["output"].split("\n")) == ["", "node1 Ready Leader", "node2 Ready "]
    assert not problems
    page.close()
    server.request("DELETE", f"/api/sessions/{session['id']}/")
