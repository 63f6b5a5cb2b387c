"""Escapes between sessions over the network, tried from inside real nodes.

H2: a node reached the host's VXLAN port (every session's overlay traffic) and swarm's
ports at its docker_gwbridge gateway. M2: a node answered ARP for another node on the
shared docker_gwbridge and took its return traffic. Each case sends traffic only to this
machine's own bridges and to the nodes the test made; the forged frames name only them.
"""

import contextlib
import os
import secrets
import select
import shutil
import socket
import struct
import time
from pathlib import Path

import pytest

from tests.conftest import missing
from tests.test_firewall import firewall_script, host_listener, routed_namespace, sh

pytestmark = pytest.mark.docker

BRIDGE = "docker_gwbridge"

# Sends COUNT Ethernet frames carrying an ARP reply, 0.2 s apart, on IFACE:
# argv: IFACE ETH_SRC SENDER_MAC SENDER_IP TARGET_MAC TARGET_IP COUNT
FORGE_ARP = """
import socket, struct, sys, time
iface, eth_src, sha, spa, tha, tpa, count = sys.argv[1:8]
mac = lambda text: bytes.fromhex(text.replace(":", ""))
frame = mac(tha) + mac(eth_src) + struct.pack("!H", 0x0806)
frame += struct.pack("!HHBBH", 1, 0x0800, 6, 4, 2) + mac(sha) + socket.inet_aton(spa)
frame += mac(tha) + socket.inet_aton(tpa)
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
sock.bind((iface, 0))
for _ in range(int(count)):
    sock.send(frame)
    time.sleep(0.2)
"""

# Tries each "proto:port" at HOST from inside the node: a TCP connect (prints open,
# refused or closed) or one UDP datagram (prints sent).
KNOCK = """
import socket, sys
host = sys.argv[1]
for target in sys.argv[2:]:
    proto, port = target.split(":")
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.settimeout(2)
        try:
            if proto == "tcp":
                sock.connect((host, int(port)))
                print(target, "open")
            else:
                sock.sendto(b"pwd-escape-test", (host, int(port)))
                print(target, "sent")
        except ConnectionRefusedError:
            print(target, "refused")
        except OSError:
            print(target, "closed")
"""


def in_node(engine, container_id: str, *argv: str) -> str:
    result = engine.exec_in_node(container_id, list(argv), 30, 65536)
    assert result.exit_code == 0, result.output
    return result.output


def endpoint_of(engine, container_id: str):
    found = [e for e in engine.gateway_endpoints() if e.container_id == container_id]
    assert found, f"{container_id[:12]} is not on {BRIDGE}"
    return found[0]


def gateway() -> tuple[str, str]:
    """The host's own address and MAC on docker_gwbridge."""
    address = sh("ip", "-4", "-o", "addr", "show", "dev", BRIDGE).stdout.split()[3]
    mac = Path(f"/sys/class/net/{BRIDGE}/address").read_text().strip()
    return address.split("/")[0], mac


def host_neighbour(address: str) -> str:
    """The MAC the host would send ``address``'s traffic to ('' when it has none)."""
    words = sh("ip", "neigh", "show", address, "dev", BRIDGE).stdout.split()
    return words[words.index("lladdr") + 1] if "lladdr" in words else ""


def bridge_port_of(mac: str) -> str:
    """The docker_gwbridge port the bridge has learned ``mac`` on ('' when none)."""
    for line in sh("bridge", "fdb", "show", "br", BRIDGE).stdout.splitlines():
        words = line.split()
        if words and words[0] == mac and "dev" in words:
            return words[words.index("dev") + 1]
    return ""


def host_echo(address: str, timeout: float = 2.0) -> bool:
    """One ICMP echo from the host to ``address``; True when its reply comes back."""

    def checksum(data: bytes) -> int:
        total = sum(struct.unpack(f"!{len(data) // 2}H", data))
        total = (total >> 16) + (total & 0xFFFF)
        return ~(total + (total >> 16)) & 0xFFFF

    ident, payload = secrets.randbelow(0xFFFF), b"pwd-escape-test!"
    header = struct.pack("!BBHHH", 8, 0, 0, ident, 1)
    packet = struct.pack("!BBHHH", 8, 0, checksum(header + payload), ident, 1) + payload
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
        sock.sendto(packet, (address, 0))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0 and select.select([sock], [], [], left)[0]:
            data, (source, _) = sock.recvfrom(2048)
            offset = (data[0] & 0x0F) * 4
            kind, _, _, reply_ident, _ = struct.unpack_from("!BBHHH", data, offset)
            if source == address and kind == 0 and reply_ident == ident:
                return True
    return False


def wait_for(predicate, seconds: float = 5.0) -> bool:
    """Polls ``predicate`` (at most ``seconds``, 50 tries); its last answer."""
    deadline = time.monotonic() + seconds
    for _ in range(50):
        if predicate() or time.monotonic() > deadline:
            break
        time.sleep(seconds / 50)
    return bool(predicate())


@pytest.fixture(scope="module")
def root_tools():
    if os.geteuid() != 0 or not all(shutil.which(tool) for tool in ("iptables", "ip", "bridge")):
        missing("the network escape tests need root, iptables, ip and bridge on the host")
    if sh("iptables", "-S", "DOCKER-USER", check=False).returncode != 0:
        missing("no DOCKER-USER chain (is dockerd running?)")


@pytest.fixture(scope="module")
def nodes(engine, root_tools):
    """Three nodes on session networks, as trainees get them: two in one session, one in
    another. Started without waiting for their inner engines (the network is all we need)."""
    tag = secrets.token_hex(6)
    sessions = {"mine": f"escnet{tag}a", "theirs": f"escnet{tag}b"}
    try:
        networks = {key: engine.create_session_network(sid)[0] for key, sid in sessions.items()}
        made = {
            "a": engine.create_node(sessions["mine"], "node1", networks["mine"], wait=False),
            "a2": engine.create_node(sessions["mine"], "node2", networks["mine"], wait=False),
            "b": engine.create_node(sessions["theirs"], "node1", networks["theirs"], wait=False),
        }
        yield made
    finally:
        for session_id in sessions.values():
            with contextlib.suppress(engine.EngineError):
                engine.remove_session_objects(session_id)


@pytest.fixture
def host_firewall(root_tools):
    with firewall_script() as run:
        yield run


class Counters:
    """Counting rules at the front of INPUT for traffic from one address on
    docker_gwbridge. The firewall's jump, inserted at the front later, comes before them,
    so once it is on they count only what it lets through."""

    def __init__(self) -> None:
        self.comment = f"pwd-test-{secrets.token_hex(4)}"
        self.rules: list[list[str]] = []

    def add(self, source: str, targets: list[str]) -> None:
        for target in targets:
            proto, port = target.split(":")
            rule = ["-i", BRIDGE, "-s", source, "-p", proto, "--dport", port]
            rule += ["-m", "comment", "--comment", f"{self.comment} {target}"]
            sh("iptables", "-I", "INPUT", "1", *rule)
            self.rules.append(rule)

    def packets(self) -> dict[str, int]:
        found = {}
        for line in sh("iptables", "-L", "INPUT", "-n", "-v", "-x").stdout.splitlines():
            if self.comment in line:
                found[line.split(self.comment)[1].split()[0]] = int(line.split()[0])
        return found

    def remove(self) -> None:
        for rule in self.rules:
            sh("iptables", "-D", "INPUT", *rule, check=False)


@pytest.fixture
def counters(root_tools):
    counting = Counters()
    try:
        yield counting
    finally:
        counting.remove()


@pytest.fixture
def app_listener():
    """A TCP service of the test's own on every host address, standing in for the app."""
    with host_listener() as port:
        yield port


def knock(engine, container_id: str, host: str, targets: list[str]) -> dict[str, str]:
    output = in_node(engine, container_id, "python3", "-c", KNOCK, host, *targets)
    return dict(line.split() for line in output.splitlines() if line.count(" ") == 1)


def test_a_node_reaches_no_vxlan_swarm_or_app_port_at_its_gateway(
    engine, nodes, host_firewall, counters, app_listener
):
    node = nodes["a"]
    gateway_ip, _ = gateway()
    node_ip = endpoint_of(engine, node.container_id).ipv4
    udp = ["udp:4789", "udp:7946"]
    tcp = ["tcp:2377", "tcp:7946", f"tcp:{app_listener}"]
    counters.add(node_ip, udp + tcp)

    before = knock(engine, node.container_id, gateway_ip, udp + tcp)
    reached_before = counters.packets()
    installed = host_firewall(PWD_FW_APP_PORT=str(app_listener))
    assert installed.returncode == 0, installed.stderr + installed.stdout
    after = knock(engine, node.container_id, gateway_ip, udp + tcp)
    reached_after = counters.packets()

    # Without the rules swarm's own listeners and the stand-in app answer, and the VXLAN
    # and gossip datagrams arrive at the host's sockets.
    assert {target: before.get(target) for target in tcp} == dict.fromkeys(tcp, "open")
    assert all(reached_before[target] >= 1 for target in udp), reached_before
    # With them nothing of it gets past the firewall.
    assert {target: after.get(target) for target in tcp} == dict.fromkeys(tcp, "closed")
    assert reached_after == reached_before


@pytest.fixture
def netns_outside(root_tools):
    with routed_namespace() as address:
        yield address


def test_with_the_rules_on_a_node_still_reaches_its_session_and_the_outside(
    engine, nodes, host_firewall, netns_outside
):
    installed = host_firewall()
    assert installed.returncode == 0, installed.stderr
    engine.guard_gateway()
    node, peer = nodes["a"], nodes["a2"]

    # Overlay traffic between the nodes of one session stays in the overlay's own
    # namespace: it never reaches the host's INPUT from docker_gwbridge.
    same_session = engine.exec_in_node(
        node.container_id, ["ping", "-c", "2", "-W", "3", peer.ip], 15, 4096
    )
    outside = engine.exec_in_node(
        node.container_id, ["ping", "-c", "2", "-W", "3", netns_outside], 15, 4096
    )

    assert same_session.exit_code == 0, same_session.output
    assert outside.exit_code == 0, outside.output


def reconcile(engine) -> dict[str, str]:
    """The app's anti-spoofing table written anew: container id -> its bound port."""
    from sessions_app import antispoof

    ports = antispoof.reconcile(engine.gateway_endpoints, engine.container_pid)
    return {port.container_id: port.ifname for port in ports if port.container_id}


@pytest.fixture(scope="module")
def antispoof_here(root_tools):
    from sessions_app import antispoof

    if reason := antispoof.unavailable_reason():
        missing(f"anti-spoofing cannot run here: {reason}")
    return antispoof


@pytest.fixture
def guarded(engine, nodes, antispoof_here):
    """A (the attacker) and B (another session's node), their ports bound by the app's
    anti-spoofing table, and the host knowing B. Afterwards the host forgets what it
    learned about their addresses."""
    ports = reconcile(engine)
    assert {node.container_id for node in nodes.values()} <= set(ports)
    a, b = (endpoint_of(engine, nodes[key].container_id) for key in ("a", "b"))
    try:
        assert host_echo(b.ipv4), "the host does not reach B to begin with"
        time.sleep(1.2)  # past the neighbour table's locktime, so a reply may override
        yield a, b, ports[b.container_id]
    finally:
        for endpoint in (a, b):
            sh("ip", "neigh", "del", endpoint.ipv4, "dev", BRIDGE, check=False)


def forge(engine, node, eth_src: str, sender_mac: str, sender_ip: str) -> None:
    """From inside ``node``, ARP replies to the host on the node's docker_gwbridge side."""
    gateway_ip, gateway_mac = gateway()
    route = in_node(engine, node.container_id, "ip", "-o", "route", "get", gateway_ip).split()
    iface = route[route.index("dev") + 1]
    argv = [iface, eth_src, sender_mac, sender_ip, gateway_mac, gateway_ip, "5"]
    in_node(engine, node.container_id, "python3", "-c", FORGE_ARP, *argv)


def test_a_forged_arp_reply_for_another_node_is_dropped(engine, nodes, guarded):
    a, b, _ = guarded
    attacker = nodes["a"]

    # The forging works, and the host heeds an unsolicited reply: told a wrong MAC for
    # A's own address, the host learns the right one back from A's frames.
    wrong = "02:00:00:00:00:01"
    sh("ip", "neigh", "replace", a.ipv4, "lladdr", wrong, "dev", BRIDGE, "nud", "stale")
    time.sleep(1.2)
    forge(engine, attacker, a.mac, a.mac, a.ipv4)
    assert wait_for(lambda: host_neighbour(a.ipv4) == a.mac), host_neighbour(a.ipv4)

    forge(engine, attacker, a.mac, a.mac, b.ipv4)

    assert host_neighbour(b.ipv4) == b.mac, "the host now sends B's traffic to A"
    assert host_echo(b.ipv4), "B's return traffic no longer reaches B"


def test_a_frame_with_another_nodes_mac_does_not_move_it_on_the_bridge(engine, nodes, guarded):
    _, b, b_port = guarded
    assert bridge_port_of(b.mac) == b_port

    forge(engine, nodes["a"], b.mac, b.mac, b.ipv4)

    assert bridge_port_of(b.mac) == b_port, "the bridge now sends B's frames to A"
    assert host_echo(b.ipv4), "B's return traffic no longer reaches B"


def test_the_antispoof_table_follows_the_nodes(engine, nodes, antispoof_here):
    session_id = f"escnet{secrets.token_hex(6)}c"
    network, _ = engine.create_session_network(session_id)
    try:
        node = engine.create_node(session_id, "node1", network, wait=False)
        port = reconcile(engine)[node.container_id]
        bound_while_there = port in antispoof_here.bound_ports()
        engine.remove_node(node.container_id)
        engine.guard_gateway()
        bound_after = antispoof_here.bound_ports()
    finally:
        with contextlib.suppress(engine.EngineError):
            engine.remove_session_objects(session_id)

    assert bound_while_there
    assert port not in bound_after
    assert {kept.container_id for kept in nodes.values()} <= set(reconcile(engine))
