"""Fault: the Docker engine restarts under a running pwd.

The host's dockerd is shared (other test runs, a live server), so this test starts a
dockerd of its own: in a network namespace of its own (its bridges, iptables rules and
swarm ports stay there), with its own data root, exec root, socket and cgroup parent, in
swarm mode, with the node image loaded into it. The server and the reaper are pointed at
it with DOCKER_HOST. Everything is removed at the end, also on failure.
"""

import contextlib
import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import missing
from tests.fault_helpers import WsTerminal, restartable_server

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]


class PrivateEngine:
    def __init__(self, root: Path, tag: str) -> None:
        self.root, self.tag = root, tag
        self.netns = f"pwdd-{tag}"
        self.socket = root / "docker.sock"
        self.url = f"unix://{self.socket}"
        self.process: subprocess.Popen | None = None

    def docker(self, *args: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["docker", "-H", self.url, *args],
            capture_output=True,
            timeout=timeout,
            check=False,
            **kwargs,
        )

    def start(self, within: float = 60) -> None:
        # nsenter (not `ip netns exec`, which remounts /sys and hides the cgroup mounts).
        log = (self.root / "dockerd.log").open("a")
        self.process = subprocess.Popen(
            ["nsenter", f"--net=/var/run/netns/{self.netns}", "dockerd"]
            + ["--data-root", str(self.root / "data"), "--exec-root", str(self.root / "exec")]
            + ["--pidfile", str(self.root / "docker.pid"), "-H", self.url]
            + ["--cgroup-parent", self.netns],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + within
        while self.docker("version", timeout=10).returncode != 0:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dockerd did not start:\n{self.log()}")
            time.sleep(0.5)

    def stop(self, within: float = 60) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=within)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.root / "dockerd.log").read_text()[-3000:]
        return ""


@pytest.fixture(scope="module")
def private_engine(engine, tmp_path_factory):
    if os.geteuid() != 0 or not (shutil.which("dockerd") and shutil.which("nsenter")):
        missing("the engine restart test needs root, dockerd and nsenter")
    tag = secrets.token_hex(3)
    # A short path: unix socket paths are limited to 108 bytes.
    root = Path(f"/tmp/pwdd-{tag}")
    root.mkdir()
    private = PrivateEngine(root, tag)
    subprocess.run(["ip", "netns", "add", private.netns], check=True, timeout=30)
    try:
        subprocess.run(
            ["ip", "netns", "exec", private.netns, "ip", "link", "set", "lo", "up"],
            check=True,
            timeout=30,
        )
        private.start()
        swarm = private.docker("swarm", "init", "--advertise-addr", "127.0.0.1")
        assert swarm.returncode == 0, swarm.stderr
        saved = subprocess.Popen(["docker", "save", "pwd-node"], stdout=subprocess.PIPE)
        loaded = private.docker("load", stdin=saved.stdout, timeout=300)
        saved.wait(timeout=60)
        assert loaded.returncode == 0, loaded.stderr
        yield private
    finally:
        _tear_down(private)


def _tear_down(private: PrivateEngine) -> None:
    if private.process is not None and private.process.poll() is None:
        ids = private.docker("ps", "-aq").stdout.split()
        if ids:
            private.docker("rm", "-fv", *[i.decode() for i in ids])
        private.docker("swarm", "leave", "--force")
    private.stop()
    subprocess.run(["ip", "netns", "del", private.netns], check=False, timeout=30)
    for line in Path("/proc/mounts").read_text().splitlines()[::-1]:
        target = line.split()[1]
        if target.startswith(str(private.root)):
            subprocess.run(["umount", "-l", target], check=False, timeout=30)
    shutil.rmtree(private.root, ignore_errors=True)
    for cgroup in Path("/sys/fs/cgroup").glob(f"*/{private.netns}"):
        with contextlib.suppress(OSError):
            cgroup.rmdir()


def test_an_engine_restart_reports_lost_nodes_gone_and_pwd_carries_on(private_engine, tmp_path):
    # Disks of its own: the reaper removes every disk in PWD_DISK_DIR that no container
    # of *its* engine claims, and the host's disks belong to the shared engine's nodes.
    env = {
        "DOCKER_HOST": private_engine.url,
        "PWD_NODE_PROFILE": "caps",
        "PWD_DISK_DIR": str(private_engine.root / "disks"),
    }
    with restartable_server(tmp_path, **env) as server:
        status, session = server.request("POST", "/api/sessions/")
        assert status == 201, session
        sid = session["id"]
        status, node = server.request("POST", f"/api/sessions/{sid}/nodes/")
        assert status == 201, (node, private_engine.log())
        terminal = WsTerminal(server, node["terminal"])
        terminal.connected()

        private_engine.stop()
        terminal.until(lambda t: t.closed, within=30)
        down_add, down_body = server.request("POST", f"/api/sessions/{sid}/nodes/")
        down_get, _ = server.request("GET", f"/api/sessions/{sid}/")
        down_reap = server.manage("reap", "--once")

        private_engine.start()
        up_reap = server.manage("reap", "--once")
        _, gone = server.request("GET", f"/api/sessions/{sid}/nodes/node1/")
        added, fresh = server.request("POST", f"/api/sessions/{sid}/nodes/")
        again = server.manage("reap", "--once")
        ended, _ = server.request("DELETE", f"/api/sessions/{sid}/")
        log = server.log.read_text()

    assert (down_add, down_body["error"]["code"]) == (503, "engine_unavailable")
    assert down_get == 200  # the session is in the database, not the engine
    assert down_reap.returncode == 0, down_reap.stderr
    assert up_reap.returncode == 0, up_reap.stderr
    assert "gone_nodes 1" in up_reap.stderr
    assert gone["status"] == "gone"
    assert (added, fresh.get("name"), fresh.get("status")) == (201, "node2", "running"), fresh
    assert "gone_nodes" not in again.stderr  # no crash loop: a quiet pass
    assert ended == 204
    assert "Traceback" not in log
