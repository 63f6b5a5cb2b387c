"""A PostgreSQL server of the test's own: initdb in a temp folder, on a free port of
127.0.0.1, trust auth, stopped and removed at the end (never a shared one)."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import missing
from tests.live_server import free_port


def _bindir() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return str(Path(found[-1]).parent) if found else None


def _as_postgres(argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return subprocess.run(prefix + argv, capture_output=True, text=True, timeout=timeout)


@contextlib.contextmanager
def postgres() -> Iterator[str]:
    """A running server; yields its DATABASE_URL (database ``pwd``)."""
    bindir = _bindir()
    if bindir is None:
        missing("PostgreSQL is not installed (make test installs it)")
    # Not under tmp_path: pytest's folders are private to root, and the server runs as
    # the postgres user.
    directory = Path(tempfile.mkdtemp(prefix="pwdtest-pg-"))
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(directory, user.pw_uid, user.pw_gid)
    port = free_port()
    made = _as_postgres(
        [f"{bindir}/initdb", "-D", str(directory), "--auth=trust", "-U", "postgres", "-E", "UTF8"]
    )
    assert made.returncode == 0, made.stderr
    options = f"-p {port} -k {directory} -c listen_addresses=127.0.0.1 -c fsync=off"
    log = directory / "server.log"
    started = _as_postgres(
        [f"{bindir}/pg_ctl", "-D", str(directory), "-o", options, "-l", str(log), "-w", "start"]
    )
    assert started.returncode == 0, started.stderr + (log.read_text() if log.exists() else "")
    try:
        created = _as_postgres(
            [f"{bindir}/createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "pwd"]
        )
        assert created.returncode == 0, created.stderr
        yield f"postgres://postgres@127.0.0.1:{port}/pwd"
    finally:
        _as_postgres([f"{bindir}/pg_ctl", "-D", str(directory), "-m", "immediate", "stop"])
        shutil.rmtree(directory, ignore_errors=True)
