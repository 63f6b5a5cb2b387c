"""scripts/firewall.sh: nodes cannot reach the blocked addresses (the cloud metadata
address by default) nor the host's service ports (tests/test_escapes_network.py tries
swarm's and VXLAN's from a node).

The test never sends traffic off this machine: the blocked address is one end of a
network namespace the test creates, and the host port a listener the test starts. The
real metadata rule is only checked with ``iptables -C``.
"""

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import missing
from tests.live_server import free_port

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "firewall.sh"


def sh(*argv: str, check: bool = True, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=60, check=check, env={**os.environ, **env}
    )


@contextlib.contextmanager
def firewall_script() -> Iterator[Callable[..., subprocess.CompletedProcess]]:
    """Runs the script (arguments, then environment variables). Starts without its rules
    (`make test` applies them first) and leaves the host's rules as it found them."""
    installed_before = sh("iptables", "-S", "PWD-FORWARD", check=False).returncode == 0

    def run(*args: str, **env: str) -> subprocess.CompletedProcess:
        return sh("bash", str(SCRIPT), *args, check=False, **env)

    run("--remove")
    try:
        yield run
    finally:
        run("--remove")
        if installed_before:
            run()


@pytest.fixture(scope="module")
def firewall():
    if os.geteuid() != 0 or not shutil.which("iptables") or not shutil.which("ip"):
        missing("the firewall test needs root, iptables and ip")
    if sh("iptables", "-S", "DOCKER-USER", check=False).returncode != 0:
        missing("no DOCKER-USER chain (is dockerd running?)")
    with firewall_script() as run:
        yield run


@contextlib.contextmanager
def routed_namespace() -> Iterator[str]:
    """An address inside a network namespace of our own, routed from the host: beyond
    the host, as the internet is for nodes."""
    tag = secrets.token_hex(3)
    ns, host_if, ns_if = f"pwdt-{tag}", f"pwdh{tag}", f"pwdn{tag}"
    third = int(tag[:2], 16)
    host_ip, ns_ip = f"198.18.{third}.1", f"198.18.{third}.2"
    try:
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        sh("ip", "link", "set", ns_if, "netns", ns)
        sh("ip", "addr", "add", f"{host_ip}/30", "dev", host_if)
        sh("ip", "link", "set", host_if, "up")
        sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"{ns_ip}/30", "dev", ns_if)
        sh("ip", "netns", "exec", ns, "ip", "link", "set", ns_if, "up")
        sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        sh("ip", "netns", "exec", ns, "ip", "route", "add", "default", "via", host_ip)
        yield ns_ip
    finally:
        sh("ip", "link", "del", host_if, check=False)
        sh("ip", "netns", "del", ns, check=False)


@pytest.fixture
def netns_address():
    with routed_namespace() as address:
        yield address


@contextlib.contextmanager
def host_listener() -> Iterator[int]:
    """A TCP service on every host address, on a free port, once it answers (at most 5 s)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "0.0.0.0", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(50):
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        yield port
    finally:
        process.kill()
        process.wait()


@pytest.fixture
def listener():
    with host_listener() as port:
        yield port


@pytest.fixture
def node(engine):
    """A node on a session network, as trainees get them."""
    session_id = "fw" + secrets.token_hex(8)
    network, _ = engine.create_session_network(session_id)
    try:
        yield engine.create_node(session_id, "node1", network)
    finally:
        with contextlib.suppress(engine.EngineError):
            engine.remove_session_objects(session_id)


def in_node(engine, node, script: str) -> int | None:
    return engine.exec_in_node(node.container_id, ["sh", "-c", script], 15, 4096).exit_code


def test_a_node_loses_a_blocked_address_and_the_host_ports(
    engine, firewall, netns_address, listener, node
):
    ping = f"ping -c 1 -W 2 {netns_address} >/dev/null"
    gateway = "$(ip route | awk '/^default/ {print $3; exit}')"
    curl = f"curl -s -o /dev/null --max-time 3 http://{gateway}:{listener}/"
    assert in_node(engine, node, ping) == 0, "the namespace is not reachable to begin with"
    assert in_node(engine, node, curl) == 0, "the host listener is not reachable to begin with"

    installed = firewall(PWD_FW_BLOCK=netns_address, PWD_FW_HOST_PORTS=str(listener))
    assert installed.returncode == 0, installed.stderr

    assert in_node(engine, node, ping) != 0
    assert in_node(engine, node, curl) != 0
    firewall("--remove")
    assert in_node(engine, node, ping) == 0


def test_the_default_rules_block_the_metadata_address_and_are_idempotent(firewall):
    first, second = firewall(), firewall()
    rules = sh("iptables", "-S", "PWD-FORWARD").stdout
    checked = firewall("--check")
    metadata = sh(
        "iptables", "-C", "PWD-FORWARD", "-d", "169.254.169.254/32", "-j", "DROP", check=False
    )
    jumps = sh("iptables", "-S", "DOCKER-USER").stdout.count("-j PWD-FORWARD")
    firewall("--remove")
    after = firewall("--check")

    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert rules.count("-j DROP") == 1
    assert checked.returncode == 0, checked.stdout
    assert metadata.returncode == 0
    assert jumps == 1
    assert after.returncode == 1
    assert "169.254.169.254" in after.stdout


def test_the_app_port_and_the_swarm_and_vxlan_ports_are_closed_for_both_ip_versions(firewall):
    installed = firewall(PORT="8123")
    rules = sh("iptables", "-S", "PWD-INPUT").stdout
    rules6 = sh("ip6tables", "-S", "PWD-INPUT", check=False).stdout
    firewall("--remove")

    assert installed.returncode == 0, installed.stderr
    for listing in [rules] + ([rules6] if shutil.which("ip6tables") else []):
        assert "-i docker_gwbridge -m conntrack ! --ctstate RELATED,ESTABLISHED -j DROP" in listing
        assert "--dports 8123,8000,2375,2376,2377,7946,6379,5432" in listing
        assert "-p udp -m multiport --dports 4789,7946 -j DROP" in listing


def test_check_says_plainly_when_it_cannot_read_the_rules(firewall):
    if not shutil.which("setpriv"):
        missing("setpriv (util-linux) is needed to run the check as another user")
    checked = sh(
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "bash",
        str(SCRIPT),
        "--check",
        check=False,
    )

    assert checked.returncode == 1
    assert "not root" in checked.stdout


def test_the_compose_stack_applies_the_firewall_before_the_app_starts(firewall):
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    service = services["firewall"]
    if not shutil.which("docker"):
        missing("the docker CLI runs the compose service's container")
    # The service as compose would run it (this machine has no compose plugin).
    source, target, _ = service["volumes"][0].split(":")
    image = service["image"].split(":-")[1].rstrip("}")
    ran = sh(
        "docker",
        "run",
        "--rm",
        f"--network={service['network_mode']}",
        f"--userns={service['userns_mode']}",
        *(f"--cap-add={cap}" for cap in service["cap_add"]),
        "-v",
        f"{ROOT / source}:{target}:ro",
        "-e",
        "PWD_FW_APP_PORT=8000",
        f"--entrypoint={service['entrypoint'][0]}",
        image,
        *service["entrypoint"][1:],
        check=False,
    )
    checked = firewall("--check", PWD_FW_APP_PORT="8000")
    firewall("--remove")

    assert ran.returncode == 0, ran.stderr
    assert checked.returncode == 0, checked.stdout
    assert service["restart"] == "no"
    assert services["migrate"]["depends_on"]["firewall"] == {
        "condition": "service_completed_successfully"
    }
    assert all("migrate" in services[name]["depends_on"] for name in ("web", "reaper", "pool"))
