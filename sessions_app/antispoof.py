"""MAC/IP anti-spoofing on docker_gwbridge: each container's port may send only as itself.

Every node leaves the host through its port on the one ``docker_gwbridge`` that all
sessions share. Unguarded, a node can answer ARP for another node's address (the host
then sends that node's return traffic to it) or send with another node's MAC (the bridge
then learns that MAC on the wrong port). :func:`reconcile` writes the nftables table
``bridge pwd_antispoof`` from the engine's current endpoints, in one transaction: a port
of a known container may send only frames with its own Ethernet source, ARP with its own
sender MAC and IPv4, and IPv4 from its own address (nothing else: no IPv6, no VLANs).
Frames are dropped before the bridge learns from them. Ports of gone containers leave
the table at the next reconcile, so stale rules never pile up.

Which host port is a container's is read from the kernel, never from inside the node: a
node can rename its interfaces, change their MACs and pick their indexes, but not the
network-namespace id of the host port's peer, which must be the container's own.

Needs root on the host and ``nft``; without them :func:`guard` logs a warning and the
nodes work unguarded. Run as ``python -m sessions_app.antispoof`` it reconciles once.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import logging
import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

BRIDGE = "docker_gwbridge"
TABLE = "pwd_antispoof"
NFT_TIMEOUT = 10.0

_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")

# rtnetlink: ask for the id the host gives a network namespace (linux/net_namespace.h).
_RTM_GETNSID = 90
_NLMSG_ERROR = 2
_NLM_F_REQUEST = 1
_NETNSA_NSID = 1
_NETNSA_FD = 3


class Endpoint(Protocol):
    """A container's endpoint on the bridge, as the engine recorded it."""

    @property
    def container_id(self) -> str: ...
    @property
    def endpoint_id(self) -> str: ...
    @property
    def ipv4(self) -> str: ...
    @property
    def mac(self) -> str: ...


class AntispoofError(Exception):
    """The table could not be written (or anti-spoofing cannot run here at all)."""


@dataclass(frozen=True)
class Port:
    """A bridge port bound to the one MAC and IPv4 that may send through it."""

    ifname: str
    mac: str
    ipv4: str
    container_id: str


def unavailable_reason() -> str | None:
    """Why anti-spoofing cannot run in this process, or None when it can."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "the app does not run as root on the host"
    if not shutil.which("nft"):
        return "nft is not installed (apt-get install nftables; scripts/prereqs.sh firewall)"
    if not Path(f"/sys/class/net/{BRIDGE}").exists():
        return f"this host has no {BRIDGE} (is the engine here, in swarm mode?)"
    return None


def ruleset(ports: Iterable[Port]) -> str:
    """The whole table as ``nft -f`` input: one transaction that makes the table if it
    is missing and replaces its rules and sets, so the bridge never goes unguarded
    between the old contents and the new."""
    ports = sorted(set(ports), key=lambda port: port.ifname)
    for port in ports:
        try:
            ipaddress.IPv4Address(port.ipv4)
        except ValueError:
            raise AntispoofError(f"refusing a strange port: {port}") from None
        if not _IFNAME.match(port.ifname) or not _MAC.match(port.mac):
            raise AntispoofError(f"refusing a strange port: {port}")
    sets = {
        "ports": ("ifname", [f'"{p.ifname}"' for p in ports]),
        "macs": ("ifname . ether_addr", [f'"{p.ifname}" . {p.mac}' for p in ports]),
        "addresses": ("ifname . ipv4_addr", [f'"{p.ifname}" . {p.ipv4}' for p in ports]),
    }
    chain = f"bridge {TABLE} prerouting"
    lines = [f"add table bridge {TABLE}"]
    lines += [
        f"add set bridge {TABLE} {name} {{ type {kind}; }}" for name, (kind, _) in sets.items()
    ]
    lines += [
        f"add chain {chain} {{ type filter hook prerouting priority -300; policy accept; }}",
        f"flush chain {chain}",
    ]
    for name, (_, items) in sets.items():
        lines.append(f"flush set bridge {TABLE} {name}")
        if items:
            lines.append(f"add element bridge {TABLE} {name} {{ {', '.join(items)} }}")
    lines += [
        f"add rule {chain} {rule}"
        for rule in (
            "iifname != @ports accept",
            "iifname . ether saddr != @macs counter drop",
            "ether type != { arp, ip } counter drop",
            "iifname . arp saddr ether != @macs counter drop",
            "iifname . arp saddr ip != @addresses counter drop",
            "iifname . ip saddr != @addresses counter drop",
        )
    ]
    return "\n".join(lines) + "\n"


def netns_id(pid: int) -> int | None:
    """The id this host gives the network namespace of ``pid`` (what ``ip link`` shows as
    a veth's ``link-netnsid``); None when the process is gone or the id is not assigned."""
    try:
        fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
    except OSError:
        return None
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
            body = struct.pack("B3x", socket.AF_UNSPEC) + struct.pack("HHI", 8, _NETNSA_FD, fd)
            header = struct.pack("IHHII", 16 + len(body), _RTM_GETNSID, _NLM_F_REQUEST, 1, 0)
            sock.settimeout(5)
            sock.send(header + body)
            data = sock.recv(4096)
    finally:
        os.close(fd)
    if len(data) < 20:
        return None
    length, kind = struct.unpack_from("IH", data)
    if kind == _NLMSG_ERROR:
        return None
    offset = 20  # the message header and the rtgenmsg, padded
    while offset + 4 <= min(length, len(data)):
        size, attribute = struct.unpack_from("HH", data, offset)
        if size < 4:
            break
        if attribute == _NETNSA_NSID and size >= 8:
            nsid = struct.unpack_from("i", data, offset + 4)[0]
            return nsid if nsid >= 0 else None
        offset += (size + 3) & ~3
    return None


def _run(argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=NFT_TIMEOUT, check=False
    )


def bridge_ports() -> dict[int, list[str]]:
    """The bridge's ports whose peer is in another network namespace, by that namespace's
    id. Listing them also makes the kernel assign the ids :func:`netns_id` reads."""
    result = _run(["ip", "-j", "-d", "link", "show", "master", BRIDGE])
    if result.returncode != 0:
        raise AntispoofError(f"could not list the ports of {BRIDGE}: {result.stderr.strip()}")
    ports: dict[int, list[str]] = {}
    for link in json.loads(result.stdout or "[]"):
        if "link_netnsid" in link:
            ports.setdefault(int(link["link_netnsid"]), []).append(link["ifname"])
    return ports


def bound_ports() -> dict[str, Port]:
    """The ports the table binds now, by name (empty when there is no table)."""
    result = _run(["nft", "-j", "list", "table", "bridge", TABLE])
    if result.returncode != 0:
        return {}
    found: dict[str, dict[str, str]] = {}
    for item in json.loads(result.stdout or "{}").get("nftables", []):
        table_set = item.get("set") or {}
        if table_set.get("name") not in ("macs", "addresses"):
            continue
        for element in table_set.get("elem") or []:
            name, value = (element.get("concat") or ["", ""])[:2]
            found.setdefault(name, {})[table_set["name"]] = value
    return {
        name: Port(name, values["macs"], values["addresses"], "")
        for name, values in found.items()
        if {"macs", "addresses"} <= set(values)
    }


# (container id, endpoint id) -> pid: an endpoint is made anew when its container
# restarts, so one pid serves it for life and each reconcile inspects only new ones.
_pids: dict[tuple[str, str], int] = {}
_pids_lock = threading.Lock()


def _place(
    endpoints: list[Endpoint], pid_of: Callable[[str], int], by_netns: dict[int, list[str]]
) -> list[Port]:
    """The host port of each endpoint: the one whose peer is in its container's network
    namespace. Endpoints without a running process (docker's own ingress sandbox) or
    without exactly one such port are left out."""
    ports: list[Port] = []
    for endpoint in endpoints:
        key = (endpoint.container_id, endpoint.endpoint_id)
        with _pids_lock:
            pid = _pids.get(key, 0)
        nsid = netns_id(pid) if pid else None
        if nsid not in by_netns:
            pid = pid_of(endpoint.container_id)
            nsid = netns_id(pid) if pid else None
        names = by_netns.get(nsid, []) if nsid is not None else []
        if len(names) != 1:
            continue
        with _pids_lock:
            _pids[key] = pid
        ports.append(Port(names[0], endpoint.mac.lower(), endpoint.ipv4, endpoint.container_id))
    with _pids_lock:
        for key in set(_pids) - {(e.container_id, e.endpoint_id) for e in endpoints}:
            del _pids[key]
    return ports


@contextlib.contextmanager
def _exclusive() -> Iterator[None]:
    """One reconcile at a time on this host (the web process and the pool keeper both
    attach nodes); the last one to list the endpoints writes the table."""
    directory = "/run" if os.access("/run", os.W_OK) else tempfile.gettempdir()
    with open(os.path.join(directory, "pwd-antispoof.lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def reconcile(
    list_endpoints: Callable[[], Iterable[Endpoint]], pid_of: Callable[[str], int]
) -> list[Port]:
    """Write the table from ``list_endpoints()`` (read under the host-wide lock), finding
    each container's process with ``pid_of`` (0 when it has none). Returns the ports now
    bound. Raises AntispoofError when it cannot run here or nft refuses the table.

    A port bound before and still on the bridge keeps its binding when this engine does
    not list its container (another engine on this host, or a test's private one); a port
    gone from the bridge leaves the table."""
    reason = unavailable_reason()
    if reason:
        raise AntispoofError(reason)
    with _exclusive():
        endpoints = [e for e in list_endpoints() if e.ipv4 and e.mac]
        by_netns = bridge_ports()
        on_bridge = {name for names in by_netns.values() for name in names}
        ports = {port.ifname: port for port in _place(endpoints, pid_of, by_netns)}
        for name, port in bound_ports().items():
            if name in on_bridge:
                ports.setdefault(name, port)
        result = _run(["nft", "-f", "-"], ruleset(ports.values()))
    if result.returncode != 0:
        raise AntispoofError(f"nft refused the {TABLE} table: {result.stderr.strip()}")
    return list(ports.values())


_warned = False


def guard(list_endpoints: Callable[[], Iterable[Endpoint]], pid_of: Callable[[str], int]) -> bool:
    """:func:`reconcile`, with a failure logged instead of raised (a warning once when it
    cannot run here at all). True when the table was written."""
    global _warned
    try:
        reconcile(list_endpoints, pid_of)
    except AntispoofError as exc:
        if unavailable_reason() is None:
            log.error("MAC/IP anti-spoofing on %s not updated: %s", BRIDGE, exc)
        elif not _warned:
            _warned = True
            log.warning(
                "MAC/IP anti-spoofing is OFF: %s. A node can answer ARP for another node on "
                "%s and capture its traffic (docs/security.md).",
                exc,
                BRIDGE,
            )
        return False
    except Exception:
        log.exception("MAC/IP anti-spoofing on %s not updated", BRIDGE)
        return False
    return True


def remove() -> None:
    """Take the table away (nodes then work unguarded until the next reconcile)."""
    _run(["nft", "delete", "table", "bridge", TABLE])


def main() -> int:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pwd_site.settings")
    django.setup()
    from sessions_app import engine

    try:
        ports = reconcile(engine.gateway_endpoints, engine.container_pid)
    except (AntispoofError, engine.EngineError) as exc:
        print(f"pwd anti-spoofing: NOT applied: {exc}")
        return 1
    print(f"pwd anti-spoofing: {len(ports)} port(s) of {BRIDGE} bound to their MAC and IPv4")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
