"""Files on the session page in headless Chromium against a real daphne: the upload
button, a file dropped on the terminal, and the download box."""

import os

import pytest

from tests.conftest import missing
from tests.live_server import live_server
from tests.test_terminal_browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.browser, pytest.mark.docker]


@pytest.fixture(scope="module")
def server(engine, tmp_path_factory):
    with live_server(tmp_path_factory.mktemp("files-browser"), PWD_POOL_SIZE="0") as live:
        yield live
        print(live.log.read_text()[-4000:])


@pytest.fixture(scope="module")
def page(server):
    if not os.path.exists(CHROMIUM):
        missing(f"Chromium is not at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    status, session = server.request("POST", "/api/sessions/")
    assert status == 201, session
    status, node = server.request("POST", f"/api/sessions/{session['id']}/nodes/", timeout=120)
    assert status == 201, node
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 720}, accept_downloads=True)
        problems: list[str] = []
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.goto(server.url + session["url"] + "#node1")
        page.locator(".xterm").first.wait_for(timeout=30000)
        page.session_id = session["id"]
        yield page
        assert not problems, problems
        browser.close()
    server.request("DELETE", f"/api/sessions/{session['id']}/", timeout=120)


def _in_node(server, session_id: str, script: str) -> dict:
    status, body = server.request(
        "POST",
        f"/api/sessions/{session_id}/nodes/node1/exec/",
        {"command": ["sh", "-c", script], "timeout": 30},
    )
    assert status == 200, body
    return body


def test_the_upload_button_puts_files_at_the_chosen_path(server, page, tmp_path):
    first, second = tmp_path / "one.txt", tmp_path / "two.txt"
    first.write_text("first file")
    second.write_text("second file")
    _in_node(server, page.session_id, "mkdir -p /srv/uploads")

    page.get_by_label("Path in the node").fill("/srv/uploads")
    page.locator(".files-input").set_input_files([str(first), str(second)])
    page.get_by_text("Uploaded 2 files to node1.").wait_for(timeout=60000)

    listed = _in_node(server, page.session_id, "cat /srv/uploads/one.txt /srv/uploads/two.txt")
    assert listed["output"] == "first filesecond file"


def test_a_file_dropped_on_the_terminal_lands_in_the_shells_directory(server, page):
    page.get_by_label("Path in the node").fill("")
    dropped = page.evaluate_handle(
        """() => {
            const transfer = new DataTransfer();
            transfer.items.add(new File(["dropped here"], "dropped.txt"));
            return transfer;
        }"""
    )

    page.dispatch_event("#terminals", "dragover", {"dataTransfer": dropped})
    page.dispatch_event("#terminals", "drop", {"dataTransfer": dropped})
    page.get_by_text("Uploaded /root/dropped.txt to node1.").wait_for(timeout=60000)

    assert _in_node(server, page.session_id, "cat /root/dropped.txt")["output"] == "dropped here"


def test_the_download_box_saves_a_file_and_says_when_there_is_none(server, page, tmp_path):
    _in_node(server, page.session_id, "printf 'from the node' > /srv/out.txt")

    page.get_by_label("Path in the node").fill("/srv/out.txt")
    with page.expect_download(timeout=60000) as started:
        page.get_by_role("button", name="Download").click()
    saved = tmp_path / "saved"
    started.value.save_as(saved)
    page.get_by_label("Path in the node").fill("/srv/missing.txt")
    page.get_by_role("button", name="Download").click()
    alert = page.locator(".files-error")
    alert.wait_for(timeout=30000)

    assert started.value.suggested_filename == "out.txt"
    assert saved.read_bytes() == b"from the node"
    assert "Download failed" in alert.text_content()
    assert "/srv/missing.txt" in alert.text_content()
