"""`make run`'s server script serves the landing page and xterm.js from npm."""

import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.headers.get("Content-Type", ""), response.read()


@pytest.fixture(scope="module")
def server(tmp_path_factory, _run_instance):
    port = free_port()
    db = tmp_path_factory.mktemp("serve") / "db.sqlite3"
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{db}",
        "PWD_INSTANCE": _run_instance,
        "PWD_POOL_SIZE": "0",
        "PWD_POOL_SESSIONS": "0",
    }
    subprocess.run(
        [str(ROOT / ".venv/bin/python"), "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
    )
    process = subprocess.Popen(
        ["bash", "scripts/serve.sh", "127.0.0.1", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    # The escape check runs before daphne listens (a few seconds, more on a busy machine).
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            get(base + "/healthz")
            break
        except OSError:
            if process.poll() is not None:
                break
            time.sleep(0.2)
    yield base, process
    os.killpg(process.pid, 15)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)


def test_the_landing_page_is_served(server):
    base, process = server
    assert process.poll() is None, process.stdout.read().decode()
    status, content_type, body = get(base + "/")
    assert status == 200
    assert content_type.startswith("text/html")
    assert b"pwd" in body


def test_xterm_comes_from_npm_through_staticfiles(server):
    base, _ = server
    status, content_type, body = get(base + "/static/vendor/xterm/lib/xterm.js")
    assert status == 200
    assert len(body) > 100_000
    status, _, css = get(base + "/static/vendor/xterm/css/xterm.css")
    assert status == 200
    assert b".xterm" in css
