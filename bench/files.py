"""Files in and out of a node through the API, against ``docker cp`` on the same node.

    .venv/bin/python bench/files.py               # 100 MiB, 3 trials, writes the section
    .venv/bin/python bench/files.py --mib 20 --trials 2
    .venv/bin/python bench/files.py --out /tmp/f  # files.json and the section there

One live server (``pwd_site.testing``), one session and node. Each trial, one after
the other: ``docker cp`` into the node, an upload through the API (curl, multipart),
``docker cp`` out of it, a download through the API; the file's checksum is checked
both ways. ``docker cp`` writes to the container's original root, not the node's disk
the API writes to: it is the speed to compare with, not the same path. The server's
resident memory is sampled throughout. The section between the ``files`` markers in
docs/benchmarks.md is rewritten.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pwd_site.settings")

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- files:begin -->", "<!-- files:end -->"
TARGET = 0.7


def say(text: str) -> None:
    print(f"==> {text}", flush=True)


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class Peak:
    """The highest resident memory of ``pid`` while the block runs (sampled every 10 ms)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.value, self._stop = pid, 0.0, threading.Event()

    def __enter__(self) -> Peak:
        self.value = self.start = rss_mib(self.pid)
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.value = max(self.value, rss_mib(self.pid))

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(5)


def timed(call: Callable[[], None]) -> float:
    began = time.perf_counter()
    call()
    return time.perf_counter() - began


def run(*argv: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])}... failed: {done.stderr.strip()[:300]}")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def measure(mib: int, trials: int) -> dict[str, Any]:
    import django

    django.setup()
    from pwd_site.testing import live_server

    work = Path(tempfile.mkdtemp(prefix="pwd-bench-files-"))
    source, back = work / "payload.bin", work / "back.bin"
    with source.open("wb") as file:
        for _ in range(mib):
            file.write(os.urandom(1 << 20))
    checksum = sha256(source)
    times: dict[str, list[float]] = {"cp_in": [], "api_up": [], "cp_out": [], "api_down": []}
    with live_server(prefix="pwdbench", PWD_POOL_SIZE="0", PWD_LOG_LEVEL="WARNING") as server:
        status, session = server.request("POST", "/api/sessions/")
        assert status == 201, session
        sid = session["id"]
        status, node = server.request("POST", f"/api/sessions/{sid}/nodes/", timeout=120)
        assert status == 201, node
        container = subprocess.run(
            ["docker", "ps", "-q", "--no-trunc", "--filter", f"label=pwd.session={sid}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()[0]
        url = f"{server.url}/api/sessions/{sid}/nodes/node1/files/"
        assert server.daphne is not None
        pid = server.daphne.pid
        baseline = rss_mib(pid)
        peaks = []
        for trial in range(trials):
            say(f"trial {trial + 1}/{trials}: docker cp in, upload, docker cp out, download")
            times["cp_in"].append(
                timed(lambda: run("docker", "cp", str(source), f"{container}:/tmp/cp.bin"))
            )
            with Peak(pid) as peak:
                times["api_up"].append(
                    timed(
                        lambda: run(
                            "curl",
                            "-sSf",
                            "-o",
                            "/dev/null",
                            "-F",
                            f"file=@{source}",
                            url + "?path=/tmp/api.bin",
                        )
                    )
                )
                back.unlink(missing_ok=True)
                times["cp_out"].append(
                    timed(lambda: run("docker", "cp", f"{container}:/tmp/cp.bin", str(back)))
                )
                back.unlink(missing_ok=True)
                times["api_down"].append(
                    timed(lambda: run("curl", "-sSf", "-o", str(back), url + "?path=/tmp/api.bin"))
                )
            peaks.append(peak.value)
            if sha256(back) != checksum:
                raise RuntimeError("the download does not match the upload")
        server.request("DELETE", f"/api/sessions/{sid}/", timeout=120)
    for path in (source, back):
        path.unlink(missing_ok=True)
    work.rmdir()
    med = {key: statistics.median(values) for key, values in times.items()}
    return {
        "mib": mib,
        "trials": trials,
        "seconds": times,
        "upload_s": med["api_up"],
        "cp_in_s": med["cp_in"],
        "download_s": med["api_down"],
        "cp_out_s": med["cp_out"],
        # Throughput against docker cp's: its time over ours (1.0: as fast).
        "upload_ratio": med["cp_in"] / med["api_up"],
        "download_ratio": med["cp_out"] / med["api_down"],
        "rss_baseline_mib": baseline,
        "rss_growth_mib": max(peaks) - baseline,
        "load": os.getloadavg()[0],
    }


def section(result: dict[str, Any], command: str) -> str:
    mib = result["mib"]

    def row(name: str, ours: str, theirs: str, ratio: str) -> str:
        mine, cp = result[ours], result[theirs]
        met = "met" if result[ratio] >= TARGET else "**missed**"
        return (
            f"| {name} | {mine:.2f} s ({mib / mine:.0f} MiB/s) | {cp:.2f} s ({mib / cp:.0f} MiB/s)"
            f" | {result[ratio]:.2f}x ({met}) |"
        )

    return "\n".join(
        [
            BEGIN,
            "## Files: upload and download against `docker cp`",
            "",
            f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node()} "
            f"({platform.machine()}, {os.cpu_count()} cores, load {result['load']:.1f}: the "
            "machine is shared with other engineers' tests, so absolute times wander; the "
            f"ratio is within each run), with `{command}`. A {mib} MiB file of random bytes, "
            f"medians of {result['trials']} trials interleaved with `docker cp` into and out "
            f"of the same node. Target: at least {TARGET}x `docker cp`'s throughput.",
            "",
            "| direction | API (curl) | `docker cp` | throughput ratio |",
            "|---|---|---|---|",
            row("upload", "upload_s", "cp_in_s", "upload_ratio"),
            row("download", "download_s", "cp_out_s", "download_ratio"),
            "",
            f"The server's resident memory grew by at most {result['rss_growth_mib']:.0f} MiB "
            f"over its {result['rss_baseline_mib']:.0f} MiB while the files went through. "
            "`docker cp` goes through the engine's archive API to the container's original "
            "root; the API's files go through an exec into the node's own root (see "
            "`sessions_app/engine/files.py`).",
            "",
            "Where the time goes (timed inside the server, 2026-12-01 13:03 UTC, load ~40): an "
            "upload spends ~2 s receiving and spooling the body (Twisted's temporary file, "
            "then Django's), ~2.4 s parsing it and writing it through the exec's stdin, "
            "~0.4 s on the rename exec; the server's own CPU for 100 MiB is ~0.35 s in a "
            "download, so the rest is the exec stream (process, FIFO, dockerd, framing) and "
            "the wait for a CPU. The same file read with `docker exec ... cat` from the CLI "
            "took 1.3-2.3 s against `docker cp`'s 0.9-1.7 s, and four parallel range reads "
            "2.1-3.3 s against 4-8 s for one stream: parallel ranges are the next step for "
            "downloads (not done).",
            END,
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=100)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--out", type=Path, help="write files.json and the section here")
    args = parser.parse_args(argv)
    from bench.profiles import write_section

    result = measure(args.mib, args.trials)
    command = "python bench/files.py" + (
        f" --mib {args.mib}" * (args.mib != 100) + f" --trials {args.trials}" * (args.trials != 3)
    )
    text = section(result, command)
    print(text)
    out = args.out or ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "files.json").write_text(json.dumps(result, indent=2) + "\n")
    target = (args.out / "benchmarks.md") if args.out else ROOT / "docs" / "benchmarks.md"
    write_section(text, target, BEGIN, END)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
