"""`uncia demo` (the README's first command): the whole simulated field site, end to end.

One run of the real command in a subprocess (Mosquitto if installed, the way a newcomer runs it):
fixes from the LoRa collars and the wired GPS reach the station record, a camera capture arrives with
its thumbnail, the staff page answers, Ctrl-C stops everything and removes the temporary work folder.
One run of `FieldSite` in-process on the embedded amqtt broker (a fresh machine without Mosquitto),
checking that no thread outlives it.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from edge.broker import free_port
from gateway.station.record import RecordError, RecordReader
from simulators.field_site import FieldSite, PortInUseError
from simulators.site_layout import TimeLapseTrack, camera_sites
from simulators.track import Track
from uncia.commands.demo import Narrator

REPO = Path(__file__).resolve().parents[1]


def _wait(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _record_shows_the_site(record: Path) -> dict[str, int] | None:
    """LoRa fixes, serial fixes and a capture with its thumbnail in the station record, or None yet."""
    try:
        with RecordReader(record) as reader:
            counts = {
                "lora": reader.query("SELECT COUNT(DISTINCT track) FROM fixes WHERE modem IS NOT NULL")[0][0],
                "serial": reader.query("SELECT COUNT(*) FROM fixes WHERE source = 'collar-f01'")[0][0],
                "thumbnails": reader.query(
                    "SELECT COUNT(*) FROM thumbnails t JOIN captures c USING (event_id)"
                    " WHERE c.end IS NOT NULL AND length(t.jpeg) > 0"
                )[0][0],
            }
    except (RecordError, sqlite3.Error):  # not created yet, or its tables not yet made
        return None
    return counts if counts["lora"] >= 2 and counts["serial"] >= 1 and counts["thumbnails"] >= 1 else None


def _get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def test_uncia_demo_runs_the_field_site_and_stops_cleanly_on_ctrl_c():
    web_port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uncia", "demo", "--duration", "90", "--web-port", str(web_port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        header = _wait(
            lambda: "Ctrl-C to stop." in "".join(lines) and "".join(lines), 30, "the demo's header"
        )
        url = re.search(r"web page +(http://127\.0\.0\.1:\d+/)", header).group(1)
        workdir = Path(re.search(r"workdir +(\S+)", header).group(1))
        broker_port = int(re.search(r"mosquitto_sub -h 127\.0\.0\.1 -p (\d+)", header).group(1))
        assert url == f"http://127.0.0.1:{web_port}/"
        assert f"uncia status --url {url}" in header

        counts = _wait(lambda: _record_shows_the_site(workdir / "station.sqlite3"), 40, "fixes and a capture")
        status = _get_json(url + "api/status")
        assert status["station"]["unit"] == "gw-demo"
        assert {"cam-01", "cam-02"} <= {u["unit"] for u in status["units"]}
        assert len(status["collars"]) >= 3 and status["captures"]
        assert counts["lora"] >= 2
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
        reader.join(5)
    out = "".join(lines)
    assert proc.returncode == 0, proc.stderr.read() + out
    assert re.search(r"capture  cam-0[12] .* thumbnail http://127\.0\.0\.1:\d+/api/thumbnail/", out), out
    assert re.search(r"fix      collar-1\d\d ", out) and re.search(r"fix      collar-f01 ", out), out
    summary = re.search(r"after \d+ s: (\d+) fixes from (\d+) collars \((\d+) by LoRa\), (\d+) captures", out)
    assert summary and int(summary.group(3)) > 0 and int(summary.group(4)) > 0, out
    assert not workdir.exists(), "the temporary work folder outlived the demo"
    with pytest.raises(OSError):  # the broker it started is gone
        socket.create_connection(("127.0.0.1", broker_port), timeout=1).close()


def test_field_site_on_the_embedded_broker_leaves_nothing_running(tmp_path):
    before = set(threading.enumerate())
    events: list[dict[str, Any]] = []
    site = FieldSite(tmp_path, broker_kind="amqtt", web_port=free_port(), seed=3)
    site.listen(events.append)
    try:
        site.start()
        assert site.broker is not None and site.broker.kind == "amqtt"
        _wait(lambda: _record_shows_the_site(site.record_path), 40, "fixes and a capture over amqtt")
        assert _get_json(site.web_url + "api/status")["station"]["site"] == "helan"
    finally:
        site.stop()
    assert not site.broker.running
    kinds = {e["type"] for e in events}
    assert {"fix", "capture", "unit"} <= kinds
    assert site.tally()["thumbnails"] >= 1
    assert (tmp_path / "gateway.toml").is_file() and (tmp_path / "cam-01.toml").is_file()
    _wait(lambda: not (set(threading.enumerate()) - before), 10, "every thread of the site to end")


def test_a_taken_web_port_is_reported_before_anything_starts(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        site = FieldSite(tmp_path, web=True, web_port=port)
        with pytest.raises(PortInUseError, match=f"port {port} on 127.0.0.1 is already in use"):
            site.start()
        assert site.broker is None
        result = subprocess.run(
            [sys.executable, "-m", "uncia", "demo", "--duration", "5", "--web-port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
    assert result.returncode == 1
    assert f"--web-port {port + 1}" in result.stderr


def test_narrator_shows_first_fixes_then_one_a_while_and_each_capture_once():
    now = [0.0]
    narrator = Narrator("http://127.0.0.1:8080/", fix_every_s=30, clock=lambda: now[0])
    fix = {
        "type": "fix",
        "track": "collar-101",
        "fix": {"lat": 38.7, "lon": 106.1, "battery": 90, "rssi": -110, "snr": 4.0, "via": "gw-demo/lora0"},
    }
    assert "collar-101   38.70000°N 106.10000°E  battery 90 %  via gw-demo/lora0 -110 dBm" in narrator.line(
        fix
    )
    now[0] = 10
    assert narrator.line(fix) is None
    now[0] = 31
    assert narrator.line(fix) is not None
    capture = {
        "event_id": "e1",
        "unit": "cam-01",
        "stills": 3,
        "night": True,
        "trigger": "pir",
        "thumbnail": "/api/thumbnail/e1",
    }
    assert narrator.line({"type": "capture", "capture": {**capture, "end": None}}) is None
    ended = {"type": "capture", "capture": {**capture, "end": "2026-11-25T12:00:03Z"}}
    assert "thumbnail http://127.0.0.1:8080/api/thumbnail/e1" in narrator.line(ended)
    assert narrator.line(ended) is None
    alert = {
        "kind": "mortality",
        "severity": "critical",
        "subject": "collar-102",
        "message": "collar-102 lies still",
    }
    assert "ALERT    mortality (critical): collar-102 lies still" in narrator.line(
        {"type": "alert", "raised": True, "alert": alert}
    )
    assert "cleared  mortality collar-102" in narrator.line(
        {"type": "alert", "raised": False, "alert": alert}
    )
    unit = {"type": "unit", "unit": {"unit": "cam-01", "state": "ok", "role": "camera"}}
    assert narrator.line(unit) is not None and narrator.line(unit) is None


def test_camera_units_pair_up_on_trails():
    sites = camera_sites(5)
    assert [(u, p) for u, p, _ in sites] == [
        ("cam-01", "cam-02"),
        ("cam-02", "cam-01"),
        ("cam-03", "cam-04"),
        ("cam-04", "cam-03"),
        ("cam-05", ""),
    ]


def test_time_lapse_tracks_move_fast_on_a_slow_clock():
    start = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    inner = Track(random.Random(1), start=(38.75, 106.1), start_time=start - timedelta(hours=1))
    collar_view = TimeLapseTrack(inner, 180.0, clock_start=start)  # a fleet steps in animal seconds
    assert collar_view.advance(900.0).time == start + timedelta(seconds=5)
    wired = TimeLapseTrack(
        Track(random.Random(1), start=(38.75, 106.1), start_time=start), 180.0, advance_scale=180.0
    )
    point = wired.advance(2.0)  # a GPS simulator steps in wall seconds
    assert point.time == start + timedelta(seconds=2) and wired.track.point.time == start + timedelta(
        minutes=6
    )
