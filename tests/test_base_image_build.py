"""The offline base image is made with debootstrap on every run, mounts left or not.

The machine running the suite usually has `pwd-base:trixie` and its cached tarball
already, which would hide a broken debootstrap path. So each build here forces that path
(PWD_BASE_MODE=debootstrap) into a throwaway cache folder and a throwaway tag, runs
debootstrap through a wrapper (PWD_DEBOOTSTRAP) that misbehaves on purpose, and the test
removes both at the end.
"""

import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.conftest import missing

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "node-image" / "build.sh"

pytestmark = pytest.mark.docker

# Real debootstrap, then mounts left inside its target the way a flaky debootstrap leaves
# `proc`: a nested pair, one with a space in its path (mountinfo escapes it as \040).
LEAVES_MOUNTS = r"""#!/bin/bash
set -e
debootstrap "$@"
pos=(); for a; do case $a in --*) ;; *) pos+=("$a") ;; esac; done
target=${pos[1]}
mount -t proc proc "$target/proc"
mkdir -p "$target/mnt/left over"
mount -t tmpfs leftover "$target/mnt/left over"
mkdir -p "$target/mnt/left over/deeper"
mount -t tmpfs leftover "$target/mnt/left over/deeper"
"""

# A debootstrap that fails at once, after mounting proc in its target and logging a line.
FAILS = r"""#!/bin/bash
pos=(); for a; do case $a in --*) ;; *) pos+=("$a") ;; esac; done
target=${pos[1]}
mkdir -p "$target/proc"
mount -t proc proc "$target/proc"
echo "E: Failed getting release file ${pos[2]}/dists/trixie/Release (from the test)"
exit 1
"""

# Records each docker subcommand the build runs, then runs the real docker.
DOCKER_SPY = """#!/bin/sh
echo "$1" >> "{log}"
exec "{docker}" "$@"
"""


def mounts_under(path: Path) -> list[str]:
    """Mount points at or under ``path``, read from /proc/self/mountinfo."""
    prefix = str(path.resolve())
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        raw = line.split(" ")[4]
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), raw)
        if point == prefix or point.startswith(prefix + "/"):
            points.append(point)
    return points


class Build:
    """build.sh with a throwaway cache folder, tag and node image name."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.cache = tmp / "cache"
        run_id = uuid.uuid4().hex[:8]
        self.base_tag = f"pwd-test-base:{run_id}"
        self.node_image = f"pwd-test-node-{run_id}"
        self.docker_log = tmp / "docker-calls.log"
        bin_dir = tmp / "bin"
        bin_dir.mkdir()
        spy = bin_dir / "docker"
        spy.write_text(DOCKER_SPY.format(log=self.docker_log, docker=shutil.which("docker")))
        spy.chmod(0o755)
        self.path = f"{bin_dir}:{os.environ['PATH']}"

    def wrapper(self, name: str, text: str) -> Path:
        script = self.tmp / name
        script.write_text(text)
        script.chmod(0o755)
        return script

    def run(self, debootstrap: Path, *args: str, timeout: float) -> subprocess.CompletedProcess:
        env = {
            **os.environ,
            "PATH": self.path,
            "PWD_BASE_MODE": "debootstrap",
            "PWD_BUILD_CACHE": str(self.cache),
            "PWD_LOCAL_BASE": self.base_tag,
            "PWD_NODE_IMAGE": self.node_image,
            "PWD_DEBOOTSTRAP": str(debootstrap),
        }
        return subprocess.run(
            ["bash", str(BUILD), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def docker_calls(self) -> list[str]:
        if not self.docker_log.exists():
            return []
        return self.docker_log.read_text().split()

    def temporary_roots(self) -> list[Path]:
        return sorted(self.cache.glob("rootfs.*"))

    def remove(self) -> None:
        for tag in (self.base_tag, self.node_image):
            subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, check=False)
        # Never remove a folder with something still mounted under it.
        for point in sorted(mounts_under(self.tmp), key=len, reverse=True):
            subprocess.run(["umount", "-l", point], check=False)
        shutil.rmtree(self.tmp, ignore_errors=True)


def engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    info = subprocess.run(["docker", "info"], capture_output=True, check=False, timeout=30)
    return info.returncode == 0


@pytest.fixture
def build(tmp_path):
    if os.geteuid() != 0:
        missing("root is needed to run debootstrap and mount file systems")
    if not engine_answers():
        missing("no Docker engine answers (make test starts one)")
    if shutil.which("debootstrap") is None and shutil.which("apt-get") is None:
        missing("debootstrap is not installed (apt-get install debootstrap)")
    helper = Build(tmp_path)
    yield helper
    helper.remove()


def outcome(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


@pytest.mark.timeout(900)
def test_debootstrap_that_leaves_mounts_still_makes_a_base_and_leaves_nothing(build):
    wrapper = build.wrapper("debootstrap-leaves-mounts", LEAVES_MOUNTS)

    result = build.run(wrapper, "--base-only", timeout=840)

    assert result.returncode == 0, outcome(result)
    assert mounts_under(build.tmp) == []
    assert build.temporary_roots() == []
    members = subprocess.run(
        ["tar", "-tf", str(build.cache / "debian-trixie-rootfs.tar")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    assert "./proc/" in members
    assert [m for m in members if re.match(r"\./(proc|sys|dev|mnt/left over)/.", m)] == []
    version = subprocess.run(
        ["docker", "run", "--rm", build.base_tag, "cat", "/etc/debian_version"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert version.stdout.startswith("13"), version


def test_failing_debootstrap_stops_the_build_and_shows_its_log(build):
    wrapper = build.wrapper("debootstrap-fails", FAILS)

    result = build.run(wrapper, "--force", timeout=120)

    assert result.returncode != 0, outcome(result)
    assert 'step "debootstrap" failed' in result.stderr, outcome(result)
    assert "E: Failed getting release file" in result.stderr
    assert "DEBIAN_MIRROR" in result.stderr
    assert str(build.cache / "log" / "debootstrap.log") in result.stderr
    calls = build.docker_calls()
    assert {"pull", "import", "build"} & set(calls) == set(), calls
    assert mounts_under(build.tmp) == []
    assert build.temporary_roots() == []


def test_an_interrupted_runs_root_is_unmounted_and_removed_at_the_next_run(build):
    leftover = build.cache / "rootfs.interrupted"
    (leftover / "proc").mkdir(parents=True)
    (leftover / "etc").mkdir()
    (leftover / "etc" / "hostname").write_text("left behind\n")
    subprocess.run(["mount", "-t", "proc", "proc", str(leftover / "proc")], check=True)
    wrapper = build.wrapper("debootstrap-fails", FAILS)

    result = build.run(wrapper, "--base-only", timeout=120)

    assert "interrupted earlier run" in result.stdout, outcome(result)
    assert not leftover.exists()
    assert mounts_under(build.tmp) == []
