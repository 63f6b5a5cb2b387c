"""/api/docs/ in headless Chromium against a real daphne: Swagger UI draws every operation
from /api/schema/, loads nothing from another origin, and breaks no rule of the CSP."""

import json
import urllib.request

import pytest

from tests.live_server import live_server
from tests.test_terminal_browser import browser  # noqa: F401 - fixture

pytestmark = pytest.mark.browser

METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}


def documented_operations(server: str) -> int:
    """How many operations /api/schema/ lists: the page must draw each one."""
    with urllib.request.urlopen(f"{server}/api/schema/", timeout=30) as response:
        schema = json.load(response)
    return sum(len(METHODS & set(item)) for item in schema["paths"].values())


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with live_server(tmp_path_factory.mktemp("api-docs"), PWD_POOL_SIZE="0") as live:
        yield live.url


def test_the_docs_draw_every_operation_from_local_files_within_the_csp(server, browser):  # noqa: F811
    page = browser.new_page()
    requested, problems = [], []
    page.on("request", lambda request: requested.append(request.url))
    page.on(
        "console",
        lambda message: problems.append(message.text) if message.type == "error" else None,
    )
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.add_init_script(
        """document.addEventListener("securitypolicyviolation", (event) =>
            console.error(`CSP: ${event.violatedDirective} ${event.blockedURI}`));"""
    )

    response = page.goto(f"{server}/api/docs/")
    page.wait_for_selector(".opblock", timeout=20_000)

    assert response.status == 200
    assert "script-src 'self'" in response.headers["content-security-policy"]
    operations = documented_operations(server)
    assert operations >= 7  # the sessions and nodes API at least
    assert page.locator(".opblock").count() == operations
    assert problems == []
    assert requested
    assert [url for url in requested if not url.startswith((server, "data:"))] == []
    page.close()
