"""A disk of its own for every node: a sparse ext4 image, loop-mounted on the engine host.

The node's entrypoint makes this disk the upper layer of its whole root filesystem and
the home of its inner engine's data, so everything a trainee writes lands on it: a node
that writes past its size gets "No space left on device", and the host's free space
drops by at most that size. Nothing here needs a filesystem with quotas (the host's may
be ext4, and this machine's kernel has no quota support at all).

Disks are named by a random id that the node container carries as the ``pwd.disk``
label; :func:`remove_unused` reconciles the ones no container claims (after a crash).
Runs on the engine's host as root (``make run`` does).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from django.conf import settings

log = logging.getLogger(__name__)

_ID = re.compile(r"^[0-9a-f]{12}$")
# A disk made less than this long ago may belong to a node still being created.
CREATION_GRACE = 120.0


class DiskError(Exception):
    """A node disk could not be made; the message says why."""


def root() -> Path:
    return Path(settings.PWD_DISK_DIR)


def _paths(disk_id: str) -> tuple[Path, Path]:
    if not _ID.match(disk_id):
        raise DiskError(f"not a disk id: {disk_id!r}")
    return root() / f"{disk_id}.img", root() / disk_id


def _run(argv: list[str]) -> None:
    try:
        subprocess.run(argv, check=True, capture_output=True, timeout=60)
    except FileNotFoundError as exc:
        raise DiskError(f"{argv[0]} is not installed (apt-get install e2fsprogs)") from exc
    except subprocess.CalledProcessError as exc:
        why = (exc.stderr or b"").decode(errors="replace").strip()[-300:]
        raise DiskError(f"{' '.join(argv[:2])} failed: {why}") from exc
    except subprocess.TimeoutExpired as exc:
        raise DiskError(f"{argv[0]} did not finish in 60 s") from exc


def create(disk_id: str, size: int, uid: int = 0, gid: int = 0) -> Path:
    """Make, format and mount a disk of ``size`` bytes; returns its mount point.

    Its top directory belongs to ``uid``:``gid`` (the node's root on the host). On a
    failure nothing is left behind.
    """
    if os.geteuid() != 0:
        raise DiskError(
            "node disks need root on the engine host (set PWD_NODE_DISK= to go without)"
        )
    image, mountpoint = _paths(disk_id)
    root().mkdir(parents=True, exist_ok=True)
    try:
        with image.open("xb") as handle:
            handle.truncate(size)
        # No reserved blocks (the node's root would get them anyway); lazy init keeps
        # formatting at a few milliseconds and the image sparse.
        _run(
            ["mkfs.ext4", "-q", "-F", "-m", "0", "-L", f"pwd-{disk_id}"]
            + ["-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard", str(image)]
        )
        mountpoint.mkdir(exist_ok=True)
        _run(["mount", "-o", "loop,nosuid,nodev", str(image), str(mountpoint)])
        os.chown(mountpoint, uid, gid)
    except (DiskError, OSError) as exc:
        remove(disk_id)
        raise DiskError(f"could not make the node's disk: {exc}") from exc
    return mountpoint


def remove(disk_id: str) -> None:
    """Unmount and delete a disk; a missing one counts as removed."""
    image, mountpoint = _paths(disk_id)
    if os.path.ismount(mountpoint):
        result = subprocess.run(["umount", str(mountpoint)], capture_output=True, timeout=60)
        if result.returncode != 0:
            # Still held (a node being torn down); detach now, the kernel frees it after.
            subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True, timeout=60)
    with contextlib.suppress(FileNotFoundError):
        mountpoint.rmdir()
    with contextlib.suppress(FileNotFoundError):
        image.unlink()


def existing() -> list[str]:
    """The ids of the disks on this host."""
    if not root().is_dir():
        return []
    return sorted(path.stem for path in root().glob("*.img") if _ID.match(path.stem))


def remove_unused(in_use: set[str]) -> list[str]:
    """Remove the disks no container claims (older than the creation grace)."""
    removed = []
    now = time.time()
    for disk_id in existing():
        if disk_id in in_use:
            continue
        image, _ = _paths(disk_id)
        with contextlib.suppress(FileNotFoundError):
            if now - image.stat().st_mtime < CREATION_GRACE:
                continue
        remove(disk_id)
        removed.append(disk_id)
    return removed


def supported() -> str:
    """Empty when node disks can be made here, else why not."""
    if os.geteuid() != 0:
        return "node disks need root on the engine host"
    for tool in ("mkfs.ext4", "mount", "umount"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install e2fsprogs)"
    return ""
