"""requirements.lock is what pyproject.toml's ranges resolve to: `make lock` changes nothing.

`make lock` keeps every pin that the ranges still allow, so resolving again into a copy of
the lock gives the same file unless pyproject.toml changed: a dependency added or removed
(which shows in the pins or in their "# via" lines), or a range that no longer allows its
pin. Hashes are left out of the comparison: PyPI may add a wheel to a pinned release.
"""

import difflib
import re
import shutil
import subprocess
from pathlib import Path

from tests.conftest import missing

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*==[^\s\\]+(?: ;[^\\]*?)?)\s*\\?$")


def pins(text: str) -> list[str]:
    return [m.group(1).strip() for line in text.splitlines() if (m := PIN.match(line))]


def without_hashes(text: str) -> list[str]:
    lines = (line.rstrip("\\ ") for line in text.splitlines())
    return [line for line in lines if not line.lstrip().startswith("--hash=")]


def lock_again(copy: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "-s", "-C", str(ROOT), "lock", f"LOCK_FILE={copy}", *args],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def test_every_locked_package_is_pinned_with_hashes():
    blocks = re.split(r"\n(?=[A-Za-z0-9])", LOCK.read_text())
    requirements = [b for b in blocks if PIN.match(b.splitlines()[0])]
    assert len(requirements) == len(pins(LOCK.read_text())) > 0
    unhashed = [b.splitlines()[0] for b in requirements if "--hash=sha256:" not in b]
    assert unhashed == []


def test_the_lock_is_up_to_date_with_pyproject(tmp_path):
    if not (ROOT / ".venv" / "bin" / "uv").exists():
        missing("uv is not installed in .venv (make test installs it)")
    copy = tmp_path / "requirements.lock"
    shutil.copy(LOCK, copy)

    # From uv's cache when it holds what is needed, from the index otherwise.
    result = lock_again(copy, "LOCK_ARGS=--offline")
    if result.returncode != 0:
        shutil.copy(LOCK, copy)
        result = lock_again(copy)
    assert result.returncode == 0, result.stderr

    locked, resolved = without_hashes(LOCK.read_text()), without_hashes(copy.read_text())
    diff = "\n".join(
        difflib.unified_diff(locked, resolved, "requirements.lock", "make lock", lineterm="")
    )
    assert locked == resolved, f"requirements.lock is out of date: run `make lock`\n{diff}"
