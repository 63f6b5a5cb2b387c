"""The PWD SDK's calls made by Chromium from a page on another origin: its credentialed,
preflighted XHRs and its session websocket, as pwd-sdk 0.0.12 makes them (the SDK itself
cannot be loaded here: no registry or CDN), against a live server and a real node."""

from __future__ import annotations

import http.server
import os
import threading

import pytest

from tests.compat_helpers import compat_server
from tests.conftest import missing
from tests.live_server import free_port
from tests.test_terminal_browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.docker, pytest.mark.browser]

PAGE = """<!doctype html><html><body><pre id="out"></pre><script>
const base = "%(base)s";
function xhr(method, path, body, type) {
  return new Promise((resolve) => {
    const request = new XMLHttpRequest();
    request.open(method, base + path, true);
    request.withCredentials = true;
    request.setRequestHeader("X-Requested-With", "XMLHttpRequest");
    if (type) request.setRequestHeader("Content-Type", type);
    request.onload = () => resolve({status: request.status, body: request.responseText});
    request.onerror = () => resolve({status: 0, body: ""});
    request.send(body);
  });
}
window.sdk = async () => {
  const made = await xhr("POST", "/", "session-duration=90m", "application/x-www-form-urlencoded");
  if (made.status !== 200) return {step: "create", status: made.status};
  const session = JSON.parse(made.body);
  const path = "/sessions/" + session.session_id;
  const socket = new WebSocket(base.replace("http", "ws") + path + "/ws/");
  let output = "";
  socket.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.name === "instance terminal out") output += message.args[1];
  };
  await new Promise((resolve) => { socket.onopen = resolve; });
  const got = await xhr("GET", "/sessions/" + session.session_id);
  const instance = await xhr("POST", "/sessions/" + session.session_id + "/instances",
                             JSON.stringify({Hostname: "node1"}), "application/json");
  if (instance.status !== 200) return {step: "instance", status: instance.status};
  const name = JSON.parse(instance.body).name;
  socket.send(JSON.stringify({name: "instance terminal in", args: [name, "echo sdk-$((7*6))\\r"]}));
  for (let i = 0; i < 300 && !output.includes("sdk-42"); i++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const closed = await xhr("DELETE", "/sessions/" + session.session_id);
  return {step: "done", get: got.status, output: output.includes("sdk-42"), closed: closed.status};
};
</script></body></html>"""


def _serve(port: int, html: str) -> http.server.ThreadingHTTPServer:
    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server name
            body = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Page)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        missing(f"Chromium is not at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _run_page(browser, server, port: int) -> dict:
    httpd = _serve(port, PAGE % {"base": server.url})
    try:
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{port}/")
        return page.evaluate("window.sdk()")
    finally:
        httpd.shutdown()


def test_the_sdks_calls_from_an_allowed_origin_run_a_command_in_chromium(engine, tmp_path, browser):
    port, foreign = free_port(), free_port()
    with compat_server(tmp_path, PWD_EMBED_ORIGINS=f"http://127.0.0.1:{port}") as server:
        result = _run_page(browser, server, port)
        assert result == {"step": "done", "get": 200, "output": True, "closed": 200}
        refused = _run_page(browser, server, foreign)
        assert refused == {"step": "create", "status": 0}  # the browser blocks it
