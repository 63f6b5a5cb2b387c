"""Servers that tests and the port benchmark start inside nodes, and helpers around them.

The node has python3 and no pip packages, so the servers use the standard library only:
``http PORT`` answers a page that shows the request's headers and sets two cookies (one
for its own host, one for the whole ports domain), and echoes POST bodies; ``ws PORT``
is a websocket echo server (RFC 6455, text and binary, unfragmented frames).
"""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

NODE_SERVER = r"""
import base64, hashlib, html, json, socketserver, struct, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Page(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args):
        pass
    def do_GET(self):
        headers = json.dumps(dict(self.headers.items()), sort_keys=True)
        body = ("<!doctype html><title>node page</title><h1>hello from the node</h1>"
                "<pre id=headers>" + html.escape(headers) + "</pre>").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Set-Cookie", "trainee=mine; Path=/")
        self.send_header("Set-Cookie", "wide=everyone; Domain=localhost; Path=/")
        self.end_headers()
        self.wfile.write(body)
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        sock = self.request
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                return
            head += chunk
        lines = head.decode("latin-1").split("\r\n")
        fields = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
        accept = base64.b64encode(hashlib.sha1((fields["sec-websocket-key"]
            + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
        sock.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept
                      + "\r\n\r\n").encode())
        stream = sock.makefile("rb")
        while True:
            first = stream.read(2)
            if len(first) < 2:
                return
            opcode, size = first[0] & 15, first[1] & 127
            if size == 126:
                size = struct.unpack(">H", stream.read(2))[0]
            elif size == 127:
                size = struct.unpack(">Q", stream.read(8))[0]
            mask = stream.read(4) if first[1] & 128 else b"\0\0\0\0"
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(stream.read(size)))
            if opcode == 8:
                sock.sendall(b"\x88\x00")
                return
            if opcode in (1, 2):
                if len(data) < 126:
                    header = bytes([128 | opcode, len(data)])
                elif len(data) < 65536:
                    header = bytes([128 | opcode, 126]) + struct.pack(">H", len(data))
                else:
                    header = bytes([128 | opcode, 127]) + struct.pack(">Q", len(data))
                sock.sendall(header + data)

class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

mode, port = sys.argv[1], int(sys.argv[2])
if mode == "http":
    ThreadingHTTPServer(("0.0.0.0", port), Page).serve_forever()
else:
    Server(("0.0.0.0", port), Echo).serve_forever()
"""


def start_in_node(server: Any, session_id: str, node: str, mode: str, port: int) -> None:
    """Start one of the servers above in the node, in the background, via the exec API."""
    script = f'setsid python3 -c "$0" {mode} {port} >/tmp/server-{port}.log 2>&1 < /dev/null &'
    status, body = server.request(
        "POST",
        f"/api/sessions/{session_id}/nodes/{node}/exec/",
        {"command": ["sh", "-c", script, NODE_SERVER]},
    )
    assert status == 200, body
    assert body["exit_code"] == 0, body


def run_in_node(server: Any, session_id: str, node: str, script: str, seconds: int = 60) -> str:
    status, body = server.request(
        "POST",
        f"/api/sessions/{session_id}/nodes/{node}/exec/",
        {"command": ["sh", "-c", script], "timeout": seconds},
    )
    assert status == 200, body
    assert body["exit_code"] == 0, body
    return body["output"]


def port_entry(server: Any, session_id: str, node: str, port: int, within: float = 30) -> dict:
    """The node's ``ports`` entry for ``port`` once the node JSON lists it."""
    deadline = time.monotonic() + within
    while True:
        status, body = server.request("GET", f"/api/sessions/{session_id}/nodes/{node}/")
        assert status == 200, body
        for entry in body["ports"]:
            if entry["port"] == port:
                return entry
        assert time.monotonic() < deadline, f"port {port} never listed: {body}"
        time.sleep(0.3)


def fetch(url: str, host: str | None = None, **headers: str) -> tuple[int, bytes, Any]:
    """``(status, body, headers)`` of a GET; ``host`` overrides the Host header."""
    request = urllib.request.Request(url, headers=headers)
    if host is not None:
        request.add_header("Host", host)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, response.read(), response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers


def error_code(body: bytes) -> str:
    return json.loads(body)["error"]["code"]
