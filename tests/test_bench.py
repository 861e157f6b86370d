"""The benchmarks still run (short form): text figures, then one JSON object as the last line.

Nothing here asserts on speed; the figures are for README, not for pass/fail.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
@pytest.mark.parametrize(
    ("module", "args", "keys"),
    [
        (
            "bench.relay",
            ["--quick", "--fixes", "2000", "--naive-fixes", "500", "--idle-seconds", "1"],
            {
                "naive_fixes_per_s",
                "uncia_fixes_per_s",
                "uncia_cpu_us_per_fix",
                "cpu_ratio",
                "idle_cpu_percent",
            },
        ),
        ("bench.outbox_relay", ["--quick", "--messages", "2000"], {"msg_per_s", "baseline_msg_per_s"}),
        (
            "bench.station",
            ["--seconds", "3", "--speedup", "300"],
            {
                "baseline_cpu_percent_realtime",
                "large_cpu_percent_realtime",
                "large_rss_peak_mb",
                "large_latency_p99_ms",
            },
        ),
    ],
)
def test_benchmark_runs_and_ends_with_json(module, args, keys):
    result = subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) >= 2, "figures as text come before the JSON line"
    figures = json.loads(lines[-1])
    assert keys <= figures.keys()
