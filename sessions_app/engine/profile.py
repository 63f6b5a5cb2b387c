"""How node containers get the powers an inner dockerd needs, found once with probes.

Also the escape check (the known routes from a node to the host, tried as an attacker
would) and the ``docker run`` arguments of a node, for a benchmark that starts one by
hand.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from docker.errors import APIError, DockerException

from sessions_app import cgroups
from sessions_app.engine import (
    ROLE_PROBE,
    EngineError,
    EngineUnavailable,
    client,
    exec_simple,
    labels,
    random_name,
    remove_container,
)

log = logging.getLogger(__name__)

# Every capability Linux knows; the engine expands "ALL" to those it supports.
_CAPS = """
AUDIT_CONTROL AUDIT_READ AUDIT_WRITE BLOCK_SUSPEND BPF CHECKPOINT_RESTORE CHOWN
DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID IPC_LOCK IPC_OWNER KILL LEASE LINUX_IMMUTABLE
MAC_ADMIN MAC_OVERRIDE MKNOD NET_ADMIN NET_BIND_SERVICE NET_BROADCAST NET_RAW PERFMON
SETFCAP SETGID SETPCAP SETUID SYSLOG SYS_ADMIN SYS_BOOT SYS_CHROOT SYS_MODULE SYS_NICE
SYS_PACCT SYS_PTRACE SYS_RAWIO SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG WAKE_ALARM
"""
KNOWN_CAPS = tuple(_CAPS.split())

# Docker's defaults for an unprivileged container (moby's oci/defaults.go).
DEFAULT_MASKED_PATHS = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
DEFAULT_READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
# Devices a node may open beyond the engine's defaults (null, zero, full, random, tty,
# console, ptmx, pts, tun): FUSE, for fuse-overlayfs. No block device, no /dev/kmsg.
NODE_DEVICE_RULES = ("c 10:229 rwm",)
# Taken from every node whatever the setting says: nothing in a node needs the host's
# kernel log, clock or raw I/O ports.
HARDENING_CAP_DROP = ("SYSLOG", "SYS_TIME", "SYS_RAWIO")
# The profiles under which root in a node is not root on the host.
ISOLATING_PROFILES = ("userns", "sysbox")


@dataclass(frozen=True)
class Profile:
    """How node containers get the powers an inner dockerd needs.

    ``userns``: the engine runs with ``userns-remap``, so a node's root is an unprivileged
    user on the host; every capability is granted, but only inside the node's own user
    namespace, and the node's cgroup directories are handed to it after start
    (:mod:`sessions_app.cgroups`). ``sysbox``: the Sysbox runtime does the same.
    ``caps`` and ``privileged`` give real root: they do not isolate (docs/security.md).
    """

    name: str  # "userns", "sysbox", "caps" or "privileged"
    cap_drop: tuple[str, ...] = ()
    # The host uid and gid of root in a node (not 0 under userns: its disk is made theirs).
    root_ids: tuple[int, int] = (0, 0)

    @property
    def isolates(self) -> bool:
        return self.name in ISOLATING_PROFILES

    def host_config(self, **extra: Any) -> dict[str, Any]:
        """The engine's HostConfig for a node with this profile, plus ``extra`` options."""
        api = client().api
        cap_drop = list(self.cap_drop) or None
        if self.name == "sysbox":
            # Sysbox gives an unprivileged container what dockerd needs, user-namespaced.
            return api.create_host_config(
                runtime=settings.PWD_SYSBOX_RUNTIME, cap_drop=cap_drop, **extra
            )
        # Real root even where the engine remaps users (only there is the option needed).
        real_root = {} if self.name == "userns" else {"userns_mode": "host"}
        if self.name == "privileged":
            return api.create_host_config(privileged=True, cap_drop=cap_drop, **real_root, **extra)
        config = api.create_host_config(
            cap_add=["ALL"],
            cap_drop=cap_drop,
            security_opt=["seccomp=unconfined", "apparmor=unconfined"],
            device_cgroup_rules=list(NODE_DEVICE_RULES),
            **real_root,
            **extra,
        )
        if self.name == "userns":
            # The inner engine mounts a fresh /proc and /sys for each container, which a
            # user namespace allows only where they are fully visible: nothing masked.
            # The kernel keeps the host's sysctls, sysrq and kcore from the node's root.
            config["MaskedPaths"] = []
            config["ReadonlyPaths"] = []
        else:
            # Real root needs /proc/sys for the inner engine's network sysctls; the
            # entrypoint makes all of it but net.* read-only again.
            config["MaskedPaths"] = list(DEFAULT_MASKED_PATHS)
            config["ReadonlyPaths"] = [p for p in DEFAULT_READONLY_PATHS if p != "/proc/sys"]
        return config


_profile: Profile | None = None
_profile_lock = threading.Lock()


def profile() -> Profile:
    """The node profile for this engine: the setting, or detected once with probes."""
    global _profile
    if _profile is None:
        with _profile_lock:
            if _profile is None:
                _profile = detect_profile()
    return _profile


def use_profile(chosen: Profile | None) -> Profile | None:
    """Make ``chosen`` this process's node profile (None: detect again on next use).
    Returns the one it replaces. For a test or a benchmark that compares profiles."""
    global _profile
    with _profile_lock:
        previous, _profile = _profile, chosen
    return previous


def docker_run_args(chosen: Profile | None = None) -> list[str]:
    """The ``docker run`` options that give a container what a node gets from
    :meth:`Profile.host_config` and :func:`~sessions_app.engine.nodes.node_limits`
    (powers and limits; no disk, network or labels), for a benchmark's bare baseline.

    Derived from the same HostConfig, so the two cannot drift apart.
    """
    from sessions_app.engine.nodes import node_limits

    config = (chosen or profile()).host_config(**node_limits())
    args: list[str] = []
    if config.get("Privileged"):
        args.append("--privileged")
    if config.get("Runtime"):
        args += ["--runtime", config["Runtime"]]
    if config.get("UsernsMode"):
        args += ["--userns", config["UsernsMode"]]
    for cap in config.get("CapAdd") or []:
        args += ["--cap-add", cap]
    for cap in config.get("CapDrop") or []:
        args += ["--cap-drop", cap]
    for option in config.get("SecurityOpt") or []:
        args += ["--security-opt", option]
    for rule in config.get("DeviceCgroupRules") or []:
        args += ["--device-cgroup-rule", rule]
    if "MaskedPaths" in config and not config["MaskedPaths"] and not config["ReadonlyPaths"]:
        args += ["--security-opt", "systempaths=unconfined"]
    args += ["--memory", str(config["Memory"]), "--memory-swap", str(config["MemorySwap"])]
    args += ["--cpus", str(config["NanoCpus"] / 1e9), "--pids-limit", str(config["PidsLimit"])]
    return args


def _probe_starts(image: str, host_config: dict[str, Any]) -> tuple[bool, str]:
    """Whether a probe container with ``host_config`` starts and exits cleanly."""
    api = client().api
    container_id = ""
    try:
        container_id = api.create_container(
            image,
            entrypoint=["true"],
            labels=labels(ROLE_PROBE),
            host_config=host_config,
            name=random_name(ROLE_PROBE),
        )["Id"]
        api.start(container_id)
        result = api.wait(container_id, timeout=30)
        return result.get("StatusCode") == 0, ""
    except APIError as exc:
        return False, str(exc.explanation or exc)
    finally:
        if container_id:
            remove_container(container_id)


def _probe_root_ids(image: str, profile: Profile) -> tuple[int, int]:
    """The host uid and gid that root in a node maps to (read from a probe's uid_map)."""
    api = client().api
    container_id = api.create_container(
        image,
        entrypoint=["sleep", "30"],
        labels=labels(ROLE_PROBE),
        host_config=profile.host_config(network_mode="none"),
        name=random_name(ROLE_PROBE),
    )["Id"]
    try:
        api.start(container_id)
        pid = api.inspect_container(container_id)["State"].get("Pid") or 0
        return cgroups.outer_root(pid)
    except cgroups.DelegationError as exc:
        raise EngineError(f"cannot see the node's user namespace from here: {exc}") from exc
    finally:
        remove_container(container_id)


def _engine_known_caps(image: str) -> list[str]:
    """The capability names this engine accepts (older engines know fewer)."""
    known = list(KNOWN_CAPS)
    for _ in range(len(KNOWN_CAPS)):
        try:
            container = client().api.create_container(
                image,
                entrypoint=["true"],
                labels=labels(ROLE_PROBE),
                host_config=client().api.create_host_config(cap_drop=known, network_mode="none"),
                name=random_name(ROLE_PROBE),
            )
        except APIError as exc:
            match = re.search(r'unknown capability: "?(?:CAP_)?([A-Z_]+)', str(exc.explanation))
            if exc.status_code == 400 and match and match.group(1) in known:
                known.remove(match.group(1))
                continue
            raise EngineError(f"the engine refused a probe container: {exc.explanation}") from exc
        remove_container(container["Id"])
        return known
    raise EngineError("could not work out which capabilities the engine knows")


def engine_remaps_users() -> bool:
    """Whether the engine runs containers in a user namespace (``userns-remap``)."""
    try:
        options = client().info().get("SecurityOptions") or []
    except DockerException as exc:
        raise EngineUnavailable(f"the Docker engine does not answer: {exc}") from exc
    return any("name=userns" in option for option in options)


def detect_profile() -> Profile:
    """Work out the node profile from PWD_NODE_PROFILE and probe containers."""
    wanted_drop = (cap.upper().removeprefix("CAP_") for cap in settings.PWD_NODE_CAP_DROP)
    drop = tuple(dict.fromkeys([*wanted_drop, *HARDENING_CAP_DROP]))
    image = settings.PWD_NODE_IMAGE
    wanted = settings.PWD_NODE_PROFILE
    if wanted in ("privileged", "sysbox"):
        log.info("node profile: %s (PWD_NODE_PROFILE)", wanted)
        return Profile(wanted, drop)
    remapped = engine_remaps_users()
    if wanted == "userns" and not remapped:
        raise EngineError(
            "PWD_NODE_PROFILE=userns, but the engine does not remap users: start dockerd "
            "with --userns-remap=default (docs/security.md)"
        )
    if wanted in ("auto", "userns") and remapped:
        # Under userns-remap --privileged is refused and every capability is the node's
        # own; only those the engine cannot grant at all are left out.
        wanted = "userns"
    kind = "userns" if wanted == "userns" else "caps"
    if wanted == "auto":
        ok, why = _probe_starts(image, Profile("privileged", drop).host_config(network_mode="none"))
        if ok:
            log.info("node profile: privileged (probe container started)")
            return Profile("privileged", drop)
        log.info("node profile: --privileged is refused here (%s); using capabilities", why)
    known = _engine_known_caps(image)
    ok, why = _probe_starts(
        image, client().api.create_host_config(cap_drop=["ALL"], network_mode="none")
    )
    if not ok:
        raise EngineError(f"a probe container of {image} does not start: {why}")
    # Find the capabilities the engine cannot grant by group testing: a probe that adds a
    # set of capabilities starts only when the engine can grant all of them.
    candidates = [cap for cap in known if cap not in drop]

    def grantable(caps: list[str]) -> bool:
        profile = Profile(kind, tuple(cap for cap in known if cap not in caps))
        return _probe_starts(image, profile.host_config(network_mode="none"))[0]

    missing: list[str] = []

    def search(caps: list[str]) -> None:
        if not caps or grantable(caps):
            return
        if len(caps) == 1:
            missing.append(caps[0])
            return
        half = len(caps) // 2
        search(caps[:half])
        search(caps[half:])

    search(candidates)
    result = Profile(kind, tuple(sorted((set(drop) & set(known)) | set(missing))))
    if kind == "userns":
        result = Profile(kind, result.cap_drop, _probe_root_ids(image, result))
    log.info(
        "node profile: %s (every capability the engine grants; dropped: %s)",
        "user-namespaced" if kind == "userns" else "capabilities, real root",
        ", ".join(result.cap_drop) or "none",
    )
    return result


# Run inside a probe node through exec, as an attacker would: each line names a route to
# the host that worked. Every write puts back the value it read, and a cgroup hierarchy
# that could be mounted is unmounted at once (one left behind breaks the engine's stats).
_ESCAPE_PROBE = r"""
open() { echo "open $1"; }
# busybox's mount is never set-uid (the image's may belong to a remapped root).
mount() { if command -v busybox >/dev/null; then busybox mount "$@"; else command mount "$@"; fi; }
d=$(mktemp -d)
if mount -t cgroup -o none,name=pwdprobe cgroup "$d" 2>/dev/null; then
    open cgroup-release-agent; busybox umount "$d" 2>/dev/null || umount "$d"
fi
rmdir "$d"
v=$(cat /proc/sys/kernel/core_pattern)
printf '%s\n' "$v" 2>/dev/null > /proc/sys/kernel/core_pattern && open core-pattern
for f in pids/pids.max pids.max memory/memory.limit_in_bytes memory.max cpu/cpu.cfs_quota_us; do
    f=/sys/fs/cgroup/$f
    [ -f "$f" ] || continue
    mount -o remount,bind,rw "${f%/*}" 2>/dev/null
    v=$(cat "$f") && printf '%s\n' "$v" 2>/dev/null > "$f" && open "cgroup-limits:$f"
done
dmesg >/dev/null 2>&1 && open kernel-log
k=$(mktemp -u)
mknod "$k" c 1 11 2>/dev/null && head -c 1 "$k" >/dev/null 2>&1 && open kmsg-device
rm -f "$k"
exit 0
"""


def escape_check(image: str | None = None) -> list[str]:
    """Try the known routes from a node to the host with this engine's node profile.

    Returns the routes that worked (empty: the profile held). The probe node runs on no
    network and is removed at the end.
    """
    from sessions_app.engine.nodes import hand_over_cgroups, node_limits

    image = image or settings.PWD_NODE_IMAGE
    api = client().api
    config = profile().host_config(network_mode="none", init=True, **node_limits())
    container_id = ""
    try:
        container_id = api.create_container(
            image,
            entrypoint=["sleep", "120"],
            labels=labels(ROLE_PROBE),
            host_config=config,
            name=random_name(ROLE_PROBE),
        )["Id"]
        api.start(container_id)
        if profile().name == "userns":
            hand_over_cgroups(container_id)
        code, output = exec_simple(container_id, ["sh", "-c", _ESCAPE_PROBE])
    except APIError as exc:
        raise EngineError(f"the escape check could not run: {exc.explanation or exc}") from exc
    finally:
        if container_id:
            remove_container(container_id)
    if code != 0:
        raise EngineError(f"the escape check failed to run: {output.strip()[-300:]}")
    return [line.removeprefix("open ") for line in output.splitlines() if line.startswith("open ")]
