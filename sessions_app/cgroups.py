"""Hand a user-namespaced node the cgroups its inner engine needs, and nothing more.

A node under the ``userns`` profile is root only inside its own user namespace. Its
inner dockerd must still create a cgroup for every container it runs, so the node's
cgroup *directories* are given to the node's root (its uid on the host). The files in
them, and so the node's own limits (``pids.max``, ``memory.limit_in_bytes``,
``cpu.cfs_quota_us``), stay the host's: the node can make children and limit them, the
kernel caps every child by the node's own limits, and the node can raise none of them.

This runs on the engine's host, as root, with the host's view of ``/proc`` and
``/sys/fs/cgroup`` (``make run`` does; in compose the web and pool services get
``pid: host`` and the host's cgroup tree).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")

# On cgroup v2 these files of a delegated directory belong to the delegatee too (see the
# kernel's cgroup-v2 "Delegation Containment"); the limit files stay root's.
_V2_DELEGATED_FILES = ("cgroup.procs", "cgroup.threads", "cgroup.subtree_control")


class DelegationError(Exception):
    """The node's cgroups could not be handed over; the message says why."""


@dataclass(frozen=True)
class CgroupMount:
    mountpoint: Path
    root: str
    fstype: str
    options: frozenset[str]


def outer_root(pid: int, proc: Path = PROC) -> tuple[int, int]:
    """The host uid and gid that root (0) inside ``pid``'s user namespace maps to."""
    return _outer_id(proc / str(pid) / "uid_map"), _outer_id(proc / str(pid) / "gid_map")


def _outer_id(path: Path) -> int:
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise DelegationError(f"cannot read {path}: {exc.strerror}") from exc
    for line in lines:
        inside, outside, count = (int(field) for field in line.split())
        if inside <= 0 < inside + count:
            return outside - inside
    raise DelegationError(f"root is not mapped in {path}")


def _unescape(field: str) -> str:
    return field.encode().decode("unicode_escape") if "\\" in field else field


def cgroup_mounts(mountinfo: Path = PROC / "self" / "mountinfo") -> list[CgroupMount]:
    """The cgroup (v1 and v2) mounts this process sees."""
    mounts = []
    for line in mountinfo.read_text().splitlines():
        before, _, after = line.partition(" - ")
        fields, tail = before.split(), after.split()
        if len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2"):
            continue
        options = frozenset(tail[2].split(","))
        mounts.append(CgroupMount(Path(_unescape(fields[4])), fields[3], tail[0], options))
    return mounts


def cgroup_dirs(
    pid: int, proc: Path = PROC, mounts: list[CgroupMount] | None = None
) -> list[tuple[Path, str]]:
    """Every directory of ``pid``'s cgroups on this host, with ``cgroup`` or ``cgroup2``."""
    mounts = cgroup_mounts() if mounts is None else mounts
    try:
        lines = (proc / str(pid) / "cgroup").read_text().splitlines()
    except OSError as exc:
        raise DelegationError(
            f"cannot read /proc/{pid}/cgroup ({exc.strerror}): the pwd process must see "
            "the engine host's processes (run it on the host, or with pid: host)"
        ) from exc
    found: list[tuple[Path, str]] = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers:
            wanted = set(controllers.split(","))
            candidates = [m for m in mounts if m.fstype == "cgroup" and wanted <= m.options]
        else:
            candidates = [m for m in mounts if m.fstype == "cgroup2"]
        for mount in candidates:
            relative = os.path.relpath(path, mount.root) if mount.root != "/" else path[1:]
            if relative.startswith(".."):
                continue
            directory = mount.mountpoint / relative
            if directory.is_dir():
                found.append((directory, mount.fstype))
                break
    return found


def delegate(pid: int, proc: Path = PROC) -> int:
    """Give the cgroup directories of ``pid`` to the root of its user namespace.

    Returns how many directories were handed over. Raises DelegationError when the
    process or its cgroups cannot be seen or changed from here.
    """
    uid, gid = outer_root(pid, proc)
    if uid == 0:
        raise DelegationError("the node is not in a user namespace; nothing to delegate")
    dirs = cgroup_dirs(pid, proc)
    if not dirs:
        raise DelegationError(f"no cgroup directory of process {pid} is visible here")
    for directory, fstype in dirs:
        try:
            os.chown(directory, uid, gid)
            if fstype == "cgroup2":
                for name in _V2_DELEGATED_FILES:
                    if (directory / name).exists():
                        os.chown(directory / name, uid, gid)
        except OSError as exc:
            raise DelegationError(f"cannot hand {directory} to the node: {exc.strerror}") from exc
    return len(dirs)
