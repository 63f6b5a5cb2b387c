"""The benchmark code runs end to end in its tiny configuration and cleans up after itself.

Timings are never asserted here: this machine's numbers belong in docs/benchmarks.md.
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
KEYS = [
    "add_node_floor_p50_s",
    "add_node_cold_p50_s",
    "add_node_pool_p50_s",
    "burst20_ready_s",
    "burst20_errors",
    "term_throughput_mib_s",
    "term_throughput_ratio",
    "echo_p50_ms",
    "echo_overhead_p50_ms",
    "echo_p95_200_terms_ms",
    "idle_node_mib",
    "server_rss_per_terminal_kib",
]

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def quick_run(engine, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    done = subprocess.run(
        [sys.executable, "bench/run.py", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out, json.loads((out / "latest.json").read_text())


@pytest.mark.timeout(300)
def test_the_quick_run_writes_every_key_as_a_number(quick_run):
    _, results = quick_run
    for key in KEYS:
        assert isinstance(results[key], int | float), key
        assert math.isfinite(results[key]), key
    assert results["burst20_errors"] == 0
    assert set(results["targets_met"]) <= set(results)


def test_the_quick_run_writes_the_report(quick_run):
    out, results = quick_run
    text = (out / "benchmarks.md").read_text()
    assert "## Targets" in text
    assert results["machine"]["docker_engine"] in text


def test_the_quick_run_leaves_nothing_on_the_engine(quick_run, engine, settings):
    _, results = quick_run
    settings.PWD_INSTANCE = results["instance"]
    left = engine.list_objects()
    assert (left.containers, left.networks, left.volumes) == ([], [], [])
