"""The escape suite: every route out of a node that the security review found, tried from
inside a node through the exec API, as an attacker would.

Each case runs under every node profile this engine has. ``userns`` (the engine runs with
``--userns-remap``) and ``sysbox`` must stop every route. ``caps`` (real root) cannot stop
the kernel routes on cgroup v1; for it the suite shows that the escape check sees the
open routes and that production refuses to start with it. The cases the web layer, the
network and fairness own live in test_escapes_web.py, test_escapes_network.py and
test_escapes_fairness.py.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from tests.conftest import missing

pytestmark = pytest.mark.docker

PROFILES = ["userns", "sysbox", "caps"]


def _available(engine, name: str) -> str:
    """Empty when the engine can run nodes with profile ``name``, else why not."""
    if name == "userns" and not engine.engine_remaps_users():
        return "the engine does not run with --userns-remap (make test starts it so)"
    if name == "sysbox":
        runtimes = engine.client().info().get("Runtimes") or {}
        if engine.settings.PWD_SYSBOX_RUNTIME not in runtimes:
            return "Sysbox is not installed here (not in Debian); its profile is not tried"
    return ""


@pytest.fixture(scope="module", params=PROFILES)
def profile(request, engine):
    """Make ``engine.profile()`` answer with the profile under test, for this module."""
    why = _available(engine, request.param)
    if why:
        if request.param == "sysbox":
            pytest.skip(why)
        missing(why)
    detected = engine.profile()
    if request.param == detected.name:
        forced = detected
    else:
        wanted = engine.settings.PWD_NODE_PROFILE
        engine.settings.PWD_NODE_PROFILE = request.param
        try:
            forced = engine.detect_profile()
        finally:
            engine.settings.PWD_NODE_PROFILE = wanted
    saved = engine.use_profile(forced)
    yield forced
    engine.use_profile(saved)


# Named cgroup v1 hierarchies a test may have made (from a node where the route is open).
HIERARCHIES: list[str] = []


@pytest.fixture(scope="module")
def node(engine, profile):
    handle = engine.create_node(None, "node1", None, role=engine.ROLE_PROBE)
    yield handle
    _clean_up_from_the_host(engine, handle.container_id)
    engine.remove_node(handle.container_id)
    for name in HIERARCHIES:
        _remove_hierarchy(name)


def run(engine, node, script: str, timeout: float = 60) -> tuple[int | None, str]:
    result = engine.exec_in_node(
        node.container_id, ["sh", "-c", script], timeout=timeout, max_output=65536
    )
    return result.exit_code, result.output


def _clean_up_from_the_host(engine, container_id: str) -> None:
    """A cgroup v1 hierarchy mounted in a node stays in the host's kernel (and breaks the
    engine's pids stats) until it is emptied and unmounted everywhere: unmount it in the
    node's mount namespace, from the host."""
    pid = engine.client().api.inspect_container(container_id)["State"].get("Pid")
    if not pid or not shutil.which("nsenter"):
        return
    subprocess.run(
        ["nsenter", "-t", str(pid), "-m", "-r/proc/1/root", "sh", "-c"]
        + ["for d in /tmp/cg/*/; do rmdir $d; done; umount /tmp/cg"],
        capture_output=True,
        timeout=30,
        check=False,
    )


def _remove_hierarchy(name: str) -> None:
    """Empty a named hierarchy from the host: mount it here, remove its cgroups, unmount."""
    here = Path(f"/tmp/pwd-cg-{name}")
    here.mkdir(exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "cgroup", "-o", f"none,name={name}", "cgroup", str(here)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode == 0:
        for child in sorted(here.glob("**/"), key=lambda p: len(p.parts), reverse=True):
            if child != here:
                with contextlib.suppress(OSError):
                    child.rmdir()
        subprocess.run(["umount", str(here)], capture_output=True, check=False)
    with contextlib.suppress(OSError):
        here.rmdir()


def _skip_unless_isolating(profile) -> None:
    if not profile.isolates:
        pytest.skip(
            f"the {profile.name} profile gives real root: this route is open under it "
            "(test_the_escape_check_finds_the_open_routes shows it, and production refuses)"
        )


# --- H1: a cgroup release_agent runs a script on the host as root ---------------------


def _host_path_of_node_root(engine, container_id: str) -> Path:
    """Where a file written at the node's / is on the host (what an attacker reads off
    ``mount``): its own disk's upper layer, or the container's upper directory."""
    attrs = engine.client().api.inspect_container(container_id)
    disk_id = (attrs["Config"].get("Labels") or {}).get(engine.LABEL_DISK)
    if disk_id:
        return Path(engine.settings.PWD_DISK_DIR) / disk_id / "upper"
    return Path(attrs["GraphDriver"]["Data"]["UpperDir"])


def test_a_release_agent_script_leaves_no_marker_on_the_host(engine, node, profile):
    """Under the caps profile the same script does reach the host (the control)."""
    token = secrets.token_hex(6)
    marker = Path(f"/tmp/pwd-escape-{token}")
    hierarchy = f"pwdesc{token}"
    HIERARCHIES.append(hierarchy)
    agent = _host_path_of_node_root(engine, node.container_id) / "pwd-escape.sh"
    script = f"""
printf '#!/bin/sh\\nls / > {marker}\\n' > /pwd-escape.sh; chmod +x /pwd-escape.sh
mkdir -p /tmp/cg
busybox mount -t cgroup -o none,name={hierarchy} cgroup /tmp/cg || echo "mount refused"
mkdir -p /tmp/cg/x && echo 1 > /tmp/cg/x/notify_on_release
echo {agent} > /tmp/cg/release_agent
sh -c 'echo $$ > /tmp/cg/x/cgroup.procs'
sleep 2
"""
    try:
        _, output = run(engine, node, script)
        if profile.isolates:
            assert not marker.exists(), f"the node ran a script on the host:\n{output}"
            assert "mount refused" in output
        else:
            for _ in range(100):  # the kernel runs the agent asynchronously
                if marker.exists():
                    break
                time.sleep(0.1)
            assert marker.exists(), f"the control did not reach the host:\n{output}"
    finally:
        _clean_up_from_the_host(engine, node.container_id)
        _remove_hierarchy(hierarchy)
        with contextlib.suppress(FileNotFoundError):
            marker.unlink()


def test_core_pattern_cannot_be_written(engine, node, profile):
    _skip_unless_isolating(profile)
    before = Path("/proc/sys/kernel/core_pattern").read_text()
    code, output = run(
        engine, node, "cat /proc/sys/kernel/core_pattern > /proc/sys/kernel/core_pattern"
    )
    assert code != 0, output
    code, output = run(engine, node, "echo '|/bin/true pwd-escape' > /proc/sys/kernel/core_pattern")
    assert code != 0, output
    assert Path("/proc/sys/kernel/core_pattern").read_text() == before


# --- H3: a node lifts its own limits --------------------------------------------------


LIMIT_FILES = [
    "pids/pids.max",
    "pids.max",
    "memory/memory.limit_in_bytes",
    "memory.max",
    "cpu/cpu.cfs_quota_us",
    "cpu.max",
]


def test_the_nodes_own_limits_cannot_be_written(engine, node, profile, settings):
    _skip_unless_isolating(profile)
    written = []
    for name in LIMIT_FILES:
        path = f"/sys/fs/cgroup/{name}"
        # Write back the value it has: were it writable, nothing would change.
        code, output = run(
            engine,
            node,
            f"[ -f {path} ] || exit 3; mount -o remount,bind,rw {Path(path).parent} 2>/dev/null; "
            f'v=$(cat {path}); echo "$v" > {path}',
        )
        if code == 0:
            written.append(path)
    assert written == []
    host = engine.client().api.inspect_container(node.container_id)["HostConfig"]
    assert host["PidsLimit"] == settings.PWD_NODE_PIDS
    code, output = run(engine, node, "cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/pids.max")
    assert str(settings.PWD_NODE_PIDS) in output


def test_the_inner_engine_still_limits_its_own_containers(engine, node, profile):
    """The node's cgroups are delegated: inner containers get limits of their own."""
    code, output = run(
        engine,
        node,
        "pwd-busybox-image >/dev/null && docker run --rm -m 64m --pids-limit 50 busybox "
        "sh -c 'cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max'",
        timeout=120,
    )
    assert code == 0, output
    assert "50" in output.split()


# --- L5: the host's kernel log ---------------------------------------------------------


def test_no_host_kernel_log_is_visible(engine, node, profile):
    code, output = run(engine, node, "dmesg")
    assert code != 0, output
    code, output = run(engine, node, "mknod /tmp/kmsg c 1 11 && head -c 200 /tmp/kmsg")
    assert code != 0, output
    code, output = run(engine, node, "head -c 200 /dev/kmsg")
    assert code != 0, output


def test_no_block_device_can_be_opened(engine, node, profile):
    code, output = run(
        engine,
        node,
        "dev=$(awk '$1 ~ /^[0-9]+$/ && $2 == 0 {print $1; exit}' /proc/partitions); "
        "mknod /tmp/blk b ${dev:-254} 0 && head -c 512 /tmp/blk > /dev/null",
    )
    assert code != 0, output


# --- M1: the node's disk ---------------------------------------------------------------


@pytest.fixture
def small_disk_node(engine, profile, settings):
    settings.PWD_NODE_DISK = 256 * 1024**2
    handle = engine.create_node(None, "node1", None, role=engine.ROLE_PROBE)
    yield handle
    engine.remove_node(handle.container_id)


def _host_free(settings) -> int:
    stats = os.statvfs(Path(settings.PWD_DISK_DIR).parent)
    return stats.f_bavail * stats.f_frsize


def test_a_write_past_the_disk_cap_fails_and_the_host_loses_at_most_the_cap(
    engine, small_disk_node, settings
):
    cap = settings.PWD_NODE_DISK
    before = _host_free(settings)
    # Anywhere the node can write: its root filesystem and the inner engine's data.
    code, output = run(
        engine,
        small_disk_node,
        "dd if=/dev/zero of=/mnt/fill bs=1M count=200 2>&1; "
        "dd if=/dev/zero of=/var/lib/docker/fill bs=1M count=200 2>&1; sync",
        timeout=120,
    )
    assert "No space left on device" in output
    used = before - _host_free(settings)
    assert used <= cap + 16 * 1024**2, f"the host lost {used} bytes for a cap of {cap}"


def test_the_disk_goes_with_its_node(engine, profile, settings):
    settings.PWD_NODE_DISK = 64 * 1024**2
    handle = engine.create_node(None, "node1", None, role=engine.ROLE_PROBE)
    labels = engine.client().api.inspect_container(handle.container_id)["Config"]["Labels"]
    disk_id = labels[engine.LABEL_DISK]
    assert disk_id in engine.disks.existing()
    engine.remove_node(handle.container_id)
    assert disk_id not in engine.disks.existing()


# --- the production refusal --------------------------------------------------------------


def test_the_escape_check_finds_the_open_routes(engine, profile):
    found = engine.escape_check()
    if profile.isolates:
        assert found == []
    else:
        assert "cgroup-release-agent" in found
        assert "core-pattern" in found


def test_production_refuses_a_profile_that_fails_the_escape_check(engine, profile, settings):
    from sessions_app import isolation

    settings.PRODUCTION = True
    settings.PWD_TRUSTED_USERS_ONLY = False
    result = isolation.check()
    if profile.isolates:
        assert isolation.refusal(result) == ""
        isolation.enforce_at_start()
        return
    assert "refuses to start" in isolation.refusal(result)
    with pytest.raises(ImproperlyConfigured, match="NOT isolated"):
        isolation.enforce_at_start()
    settings.PWD_TRUSTED_USERS_ONLY = True
    isolation.enforce_at_start()
