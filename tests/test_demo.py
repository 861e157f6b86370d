"""`uncia demo` (the README's first command) runs the whole path and shows fixes arriving."""

from __future__ import annotations

import re
import subprocess
import sys


def test_demo_shows_fixes_arriving_at_the_broker(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "uncia", "demo", "--duration", "4", "--rate", "2", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "started for this demo" in out
    fix_lines = [line for line in out.splitlines() if re.search(r"\d{2}:\d{2}:\d{2}Z collar-f01 #\d+", line)]
    assert len(fix_lines) >= 4, out
    assert all("°N" in line and "°E" in line for line in fix_lines)
    summary = re.search(r"(\d+) fixes accepted by the gateway, (\d+) seen at the broker", out)
    assert summary and summary.group(1) == summary.group(2), out
    assert (tmp_path / "outbox.sqlite3").exists()
