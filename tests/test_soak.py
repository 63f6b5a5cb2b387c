"""The soak (bench/soak.py) in its 2-minute version: a class's churn on a real server
ends with no error of any kind and the engine's objects back to their starting counts.

Latencies are never asserted (they belong in docs/benchmarks.md); the soak itself waits,
bounded, for the engine's objects to come back, and reports whether they did.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.docker


@pytest.mark.timeout(900)
def test_two_minutes_of_churn_end_with_no_error_and_nothing_left(engine, tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "bench/soak.py",
            "--clients",
            "3",
            "--minutes",
            "2",
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=840,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((tmp_path / "soak.json").read_text())

    assert result["errors"] == {}, result["error_samples"]
    assert result["tracebacks_in_log"] == 0
    assert result["counts"]["sessions"] >= 3
    assert result["counts"]["nodes"] == 2 * result["counts"]["sessions"]
    assert result["counts"]["terminals"] >= 1
    assert result["counts"]["execs"] >= 1
    assert result["engine_end"] == result["engine_start"], result["recovery_s"]
    section = (tmp_path / "benchmarks.md").read_text()
    assert "<!-- soak:begin -->" in section
    assert "<!-- soak:end -->" in section
    assert (tmp_path / "soak.png").read_bytes().startswith(b"\x89PNG")
