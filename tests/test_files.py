"""Files in and out of a node through the API, on a live server (daphne) and a real node.

One server, session and node for the module; each test works in a directory of its own
in the node. Paths are checked from inside the node with the exec API, and from the
host's side where a path could have led out of the node.
"""

from __future__ import annotations

import io
import os
import secrets
import subprocess
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from bench.files import Peak, sha256
from tests.fault_helpers import WsTerminal
from tests.live_server import live_server

pytestmark = pytest.mark.docker

CAP = 4 * 2**20  # PWD_MAX_UPLOAD of the module's server


class Node:
    def __init__(self, server, session_id: str) -> None:
        self.server = server
        self.sid = session_id
        self.url = f"{server.url}/api/sessions/{session_id}/nodes/node1/files/"

    def run(self, script: str) -> dict:
        status, body = self.server.request(
            "POST",
            f"/api/sessions/{self.sid}/nodes/node1/exec/",
            {"command": ["sh", "-c", script], "timeout": 60},
        )
        assert status == 200, body
        return body

    def output(self, script: str) -> str:
        result = self.run(script)
        assert result["exit_code"] == 0, result
        return result["output"]

    def upload(self, parts: list[tuple[str, str, bytes]], path: str | None = None):
        """POST a multipart body of (field, filename, content) parts: (status, body)."""
        boundary = secrets.token_hex(16)
        body = io.BytesIO()
        for field, filename, content in parts:
            body.write(f"--{boundary}\r\n".encode())
            body.write(
                f'Content-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n".encode()
            )
            body.write(content + b"\r\n")
        body.write(f"--{boundary}--\r\n".encode())
        request = urllib.request.Request(
            self.url + _query(path),
            data=body.getvalue(),
            method="POST",
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        return _send(request)

    def download(self, path: str | None = None):
        """(status, headers, body bytes or the JSON error)."""
        request = urllib.request.Request(self.url + _query(path))
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as exc:
            import json

            return exc.code, exc.headers, json.loads(exc.read())


def _query(path: str | None) -> str:
    return "" if path is None else "?" + urllib.parse.urlencode({"path": path})


def _send(request):
    import json

    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, json.loads(raw) if raw else None


@pytest.fixture(scope="module")
def node(engine, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("files")
    with live_server(tmp, PWD_POOL_SIZE="0", PWD_MAX_UPLOAD=str(CAP)) as server:
        status, session = server.request("POST", "/api/sessions/")
        assert status == 201, session
        status, added = server.request("POST", f"/api/sessions/{session['id']}/nodes/", timeout=120)
        assert status == 201, added
        yield Node(server, session["id"])
        server.request("DELETE", f"/api/sessions/{session['id']}/", timeout=120)


@pytest.fixture
def workdir(node) -> str:
    """A fresh directory in the node for one test."""
    path = f"/srv/t-{secrets.token_hex(4)}"
    node.output(f"mkdir -p {path}")
    return path


def test_a_100_mib_file_round_trips_with_the_same_checksum_in_flat_server_memory(engine, tmp_path):
    payload, back = tmp_path / "payload.bin", tmp_path / "back.bin"
    with payload.open("wb") as file:
        for _ in range(100):
            file.write(os.urandom(1 << 20))
    with live_server(tmp_path / "server", PWD_POOL_SIZE="0") as server:
        status, session = server.request("POST", "/api/sessions/")
        sid = session["id"]
        status, added = server.request("POST", f"/api/sessions/{sid}/nodes/", timeout=120)
        assert status == 201, added
        url = f"{server.url}/api/sessions/{sid}/nodes/node1/files/"
        with Peak(server.daphne.pid) as memory:
            up = subprocess.run(
                ["curl", "-sS", "-F", f"file=@{payload}", url + "?path=/root/"],
                capture_output=True,
                text=True,
                timeout=600,
            )
            down = subprocess.run(
                ["curl", "-sS", "-o", str(back), "-w", "%{http_code}", url + "?path=payload.bin"],
                capture_output=True,
                text=True,
                timeout=600,
            )
        in_node = Node(server, sid).output("sha256sum /root/payload.bin")
        server.request("DELETE", f"/api/sessions/{sid}/", timeout=120)

    assert '"path": "/root/payload.bin"' in up.stdout, up
    assert f'"size": {100 * 2**20}' in up.stdout
    assert down.stdout == "200", down
    assert sha256(back) == sha256(payload)
    assert in_node.split()[0] == sha256(payload)
    assert memory.value - memory.start < 20, (memory.start, memory.value)


def test_a_file_goes_into_the_shells_current_directory(node):
    node.output("mkdir -p /srv/cwd-test")
    terminal = WsTerminal(node.server, f"/ws/sessions/{node.sid}/nodes/node1/terminal/")
    try:
        terminal.connected()
        marker = secrets.token_hex(4)
        # The quotes keep the echo of the typed line from matching.
        terminal.type(f'cd /srv/cwd-test && echo "{marker}""-done"\n')
        terminal.until_text(f"{marker}-done\r\n")
        status, body = node.upload([("file", "here.txt", b"hello")])
        relative = node.download("here.txt")
    finally:
        terminal.close()

    assert status == 201, body
    assert body == {"files": [{"path": "/srv/cwd-test/here.txt", "size": 5}]}
    assert node.output("cat /srv/cwd-test/here.txt") == "hello"
    assert relative[0] == 200
    assert relative[2] == b"hello"


def test_several_files_go_into_a_chosen_directory(node, workdir):
    status, body = node.upload(
        [("file", "a.txt", b"first"), ("file", "b.bin", bytes(range(256)))], path=workdir
    )

    assert status == 201, body
    assert body["files"] == [
        {"path": f"{workdir}/a.txt", "size": 5},
        {"path": f"{workdir}/b.bin", "size": 256},
    ]
    assert node.output(f"cat {workdir}/a.txt") == "first"
    assert node.output(f"ls -A {workdir}").split() == ["a.txt", "b.bin"]


def test_one_file_may_be_written_under_a_new_name(node, workdir):
    status, body = node.upload([("file", "ignored.txt", b"renamed")], path=f"{workdir}/new.txt")

    assert status == 201, body
    assert body["files"] == [{"path": f"{workdir}/new.txt", "size": 7}]
    assert node.output(f"ls -A {workdir}").split() == ["new.txt"]


def test_several_files_onto_one_file_path_are_refused_and_write_nothing(node, workdir):
    status, body = node.upload(
        [("file", "a", b"1"), ("file", "b", b"2")], path=f"{workdir}/one.txt"
    )

    assert status == 409, body
    assert body["error"]["code"] == "not_a_directory"
    assert node.output(f"ls -A {workdir}") == ""


def test_an_upload_replacing_a_directory_is_409_and_changes_nothing(node, workdir):
    node.output(f"mkdir {workdir}/taken")

    status, body = node.upload([("file", "taken", b"x")], path=workdir)

    assert status == 409, body
    assert body["error"]["code"] == "is_a_directory"
    assert node.output(f"ls -A {workdir}").split() == ["taken"]


@pytest.mark.parametrize(
    "filename",
    ["../escape.txt", "a/b.txt", "..", "x\\y.txt", "tab\there", "n" * 256],
    ids=["dot-dot", "slash", "dotdot-alone", "backslash", "control", "too-long"],
)
def test_a_bad_file_name_is_refused_and_writes_nothing(node, workdir, filename):
    status, body = node.upload([("file", "fine.txt", b"ok"), ("file", filename, b"x")], workdir)

    assert status == 400, body
    assert body["error"]["code"] == "bad_filename"
    # The good file before it is not left behind either, nor any temporary file.
    assert node.output(f"ls -A {workdir}") == ""
    assert "escape.txt" not in node.output("ls -A /srv")


def test_an_upload_over_the_cap_is_413_and_writes_nothing(node, workdir):
    status, body = node.upload([("file", "big.bin", b"\0" * (CAP + 1))], workdir)

    assert status == 413, body
    assert body["error"]["code"] == "body_too_large"
    assert node.output(f"ls -A {workdir}") == ""


def test_a_body_far_over_the_cap_is_refused_before_it_is_read(node, workdir):
    status, body = node.upload([("file", "huge.bin", b"\0" * (CAP + 2 * 2**20))], workdir)

    assert status == 413, body
    assert body["error"]["code"] == "body_too_large"
    assert node.output(f"ls -A {workdir}") == ""


def test_other_requests_keep_the_small_body_limit(node):
    status, body = node.server.request(
        "POST", f"/api/sessions/{node.sid}/nodes/node1/exec/", {"command": ["x" * 2**21]}
    )

    assert status == 413, body


def test_dot_dot_cannot_leave_the_node(node, workdir, tmp_path):
    name = f"pwd-escape-{secrets.token_hex(4)}"
    deep = "../" * 30

    status, body = node.upload([("file", name, b"inside")], path=f"{workdir}/{deep}tmp")
    hostname = node.download(f"{deep}etc/hostname")

    assert status == 201, body
    assert body["files"] == [{"path": f"/tmp/{name}", "size": 6}]
    assert node.output(f"cat /tmp/{name}") == "inside"
    assert not Path(f"/tmp/{name}").exists()
    assert hostname[0] == 200
    assert hostname[2].strip() == node.output("hostname").strip().encode()


def test_symlinks_cannot_lead_out_of_the_node(node, workdir, tmp_path):
    host_secret = tmp_path / f"host-{secrets.token_hex(4)}"
    host_secret.write_text("host only")
    node.output(
        f"ln -s / {workdir}/root && ln -s {'../' * 30} {workdir}/up && "
        f"ln -s /proc/1/root/../../.. {workdir}/proc && ln -s {host_secret} {workdir}/direct"
    )
    name = f"pwd-escape-{secrets.token_hex(4)}"

    uploads = [
        node.upload([("file", name, b"1")], path=f"{workdir}/{link}/tmp")
        for link in ("root", "up", "proc")
    ]
    direct = node.download(f"{workdir}/direct")
    through = node.download(f"{workdir}/up{host_secret}")

    assert [status for status, _ in uploads] == [201, 201, 201], uploads
    assert {body["files"][0]["path"] for _, body in uploads} == {f"/tmp/{name}"}
    assert not Path(f"/tmp/{name}").exists()
    assert direct[0] == 404
    assert direct[2]["error"]["code"] == "path_not_found"
    assert through[0] == 404
    assert through[2]["error"]["code"] == "path_not_found"


def test_a_directory_downloads_as_a_tar(node, workdir):
    node.output(
        f"mkdir -p {workdir}/d/sub && echo one > {workdir}/d/sub/f && ln -s f {workdir}/d/l"
    )

    status, headers, body = node.download(f"{workdir}/d")

    assert status == 200
    assert headers["Content-Type"] == "application/x-tar"
    assert headers["Content-Disposition"] == 'attachment; filename="d.tar"'
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        names = sorted(tar.getnames())
        content = tar.extractfile("./d/sub/f").read()
    assert names == ["./d", "./d/l", "./d/sub", "./d/sub/f"]
    assert content == b"one\n"


def test_a_file_downloads_with_its_length_and_a_safe_name(node, workdir):
    node.output(f"printf 'x%.0s' $(seq 1000) > '{workdir}/we\"ird name.txt'")

    status, headers, body = node.download(f'{workdir}/we"ird name.txt')

    assert status == 200
    assert headers["Content-Length"] == "1000"
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers["Content-Disposition"] == 'attachment; filename="we\\"ird name.txt"'
    assert body == b"x" * 1000


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/no/such/file", 404, "path_not_found"),
        ("/dev/null", 409, "not_a_file"),
        ("bad\0path", 400, "bad_path"),
        ("/" + "x" * 5000, 400, "bad_path"),
    ],
)
def test_a_bad_download_path_gets_a_clear_error(node, path, status, code):
    got, _, body = node.download(path)

    assert got == status, body
    assert body["error"]["code"] == code


def test_an_upload_into_a_missing_directory_is_404_and_writes_nothing(node, workdir):
    status, body = node.upload([("file", "x", b"1")], path=f"{workdir}/missing/")

    assert status == 404, body
    assert body["error"]["code"] == "path_not_found"
    assert node.output(f"ls -A {workdir}") == ""


def test_an_upload_that_is_not_multipart_is_415(node):
    request = urllib.request.Request(
        node.url, data=b"{}", method="POST", headers={"Content-Type": "application/json"}
    )

    status, body = _send(request)

    assert status == 415, body
    assert body["error"]["code"] == "unsupported_media_type"


def test_an_upload_without_a_file_is_400(node, workdir):
    status, body = node.upload([("other", "x.txt", b"1")], workdir)

    assert status == 400, body
    assert node.output(f"ls -A {workdir}") == ""


def test_a_slow_reader_does_not_pile_the_download_up_in_server_memory(node, workdir):
    node.output(f"head -c {50 * 2**20} /dev/urandom > {workdir}/slow.bin")
    request = urllib.request.Request(node.url + _query(f"{workdir}/slow.bin"))
    with (
        Peak(node.server.daphne.pid) as memory,
        urllib.request.urlopen(request, timeout=120) as response,
    ):
        received = 0
        while block := response.read(1 << 20):
            received += len(block)
            time.sleep(0.02)  # a slow client, not a timing assertion

    assert received == 50 * 2**20
    assert memory.value - memory.start < 20, (memory.start, memory.value)


def test_head_gives_the_headers_of_a_download_and_no_body(node, workdir):
    node.output(f"printf 12345 > {workdir}/h.txt")
    request = urllib.request.Request(node.url + _query(f"{workdir}/h.txt"), method="HEAD")

    with urllib.request.urlopen(request, timeout=60) as response:
        status, headers, body = response.status, response.headers, response.read()

    assert status == 200
    assert headers["Content-Length"] == "5"
    assert headers["Content-Disposition"] == 'attachment; filename="h.txt"'
    assert body == b""
