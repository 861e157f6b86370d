"""`uncia status`: the view of the station (fixture = the /api/status contract) and the command
against a real local HTTP server."""

from __future__ import annotations

import argparse
import copy
import io
import json
import re
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

import uncia.cli
from uncia.commands import status as status_command
from uncia.commands.status import StationUnreachable, fetch_status, status_url, watch
from uncia.status_view import ago, critical_alerts, print_status, render_status, status_text

FIXTURE = Path(__file__).parent / "data" / "station_status.json"
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
ANSI = re.compile(r"\x1b\[")


@pytest.fixture
def status() -> dict[str, Any]:
    return json.loads(FIXTURE.read_text())


# ---- the view ------------------------------------------------------------------------------------


def test_view_of_the_fixture_has_every_part_in_plain_text(status):
    text = status_text(status)
    assert not ANSI.search(text)
    assert not any(line != line.rstrip() for line in text.splitlines()), "no trailing blanks in files"
    lines = text.splitlines()
    assert lines[0] == "helan · station gw-01 · 2026-11-25 12:00:00 UTC"
    assert lines[1] == "units 2/3 online · collars 1/2 heard in 24 h · alerts 1 critical, 1 warning"
    # alerts come first, critical before warning
    assert text.index("ALERTS (2)") < text.index("UNITS") < text.index("COLLARS") < text.index("CAPTURES")
    assert text.index("mortality") < text.index("not heard for 3.8 h")

    def row(first: str) -> list[str]:
        return next(line.split() for line in lines if line.startswith(first + " "))

    assert row("cam-01")[:8] == ["cam-01", "ok", "20", "s", "ago", "3.92", "V", "28"]
    assert "OFFLINE" in row("cam-02") and "unsynced" in row("cam-02") and "1,520" in row("cam-02")
    assert " ".join(row("collar-7")).startswith("collar-7 15 min ago 15 min ago 38.81230, 105.98760 81 % 96")
    assert "-97 dBm" in " ".join(row("collar-7")) and "gps 8 sats hdop 1.2" in " ".join(row("collar-7"))
    assert " ".join(row("collar-9")).startswith("collar-9 2 d ago - - - 0")
    # latest capture first, with its UTC time
    captures = text[text.index("LATEST CAPTURES") :]
    assert captures.index("10:02:41 UTC") < captures.index("03:12:09 UTC")
    assert "cam-01-20261125-0042" in captures and "night" in captures


def test_relative_times_count_from_the_station_clock_unless_told(status):
    status["station"]["now"] = "2026-11-25T12:10:00Z"
    unit_row = next(line for line in status_text(status).splitlines() if line.startswith("cam-01 "))
    assert "10 min ago" in unit_row
    later = status_text(status, now=NOW + timedelta(hours=2))
    assert "2.0 h ago" in later and "2026-11-25 14:00:00 UTC" in later


def test_narrow_console_leaves_out_the_detail_columns(status):
    text = status_text(status, width=80)
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "config" not in text and "3fa9c01b2d7e" not in text and "gw-01/lora0" not in text
    assert "38.81230, 105.98760" in text and "OFFLINE" in text


def test_colours_on_a_terminal(status):
    out = io.StringIO()
    print_status(status, Console(file=out, force_terminal=True, color_system="standard", width=160))
    text = out.getvalue()
    assert ANSI.search(text)
    assert "\x1b[1;31mcritical" in text  # critical alert row in bold red
    assert re.search(r"\x1b\[[0-9;]*31m[^\n]*OFFLINE", text)  # offline unit in red


def test_no_active_alerts_is_said_in_green(status):
    status["alerts"] = []
    out = io.StringIO()
    print_status(status, Console(file=out, force_terminal=True, color_system="standard", width=160))
    assert "\x1b[32mALERTS: no active alerts" in out.getvalue()
    assert "alerts none" in status_text(status)
    assert critical_alerts(status) == 0


def test_missing_and_null_fields_show_as_dashes():
    text = status_text(
        {
            "station": None,
            "units": [{"unit": "cam-03"}, {"unit": "cam-04", "online": None, "reasons": None}, "junk"],
            "collars": [{"collar": "collar-1", "last_fix": {"lat": None}}, {}],
            "alerts": [{}],
            "captures": [{"start": "not a time"}, {"event_id": "x", "stills": "5"}],
        },
        now=NOW,
    )
    assert "cam-03   unknown" in text and "collar-1" in text
    assert "units 0/2 online" in text and "alerts 1 unknown" in text
    assert "LATEST CAPTURES" in text
    assert "none has reported yet" in status_text({"units": None}, now=NOW)


JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
KEYS = st.sampled_from(
    ["unit", "online", "last_seen", "state", "reasons", "battery_v", "battery_percent", "disk_used_percent",
     "disk_free_mb", "clock", "collar", "last_heard", "last_fix", "lat", "lon", "time", "quality", "hdop",
     "sats", "rssi", "snr", "fixes_24h", "severity", "subject", "since", "message", "start", "night",
     "stills", "image", "thumbnail", "now", "site"]
)  # fmt: skip
JSONISH = st.recursive(
    JSON_SCALARS | st.sampled_from(["2026-11-25T11:00:00Z", "2026-11-25T11:00:00+08:00", "ok", "critical"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=6),
    max_leaves=25,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.fixed_dictionaries(
        {},
        optional={name: JSONISH for name in ("station", "units", "collars", "alerts", "captures")},
    )
)
def test_any_json_shape_renders_without_crashing(status):
    text = status_text(status, now=NOW, width=100)
    assert "ALERTS" in text


@pytest.mark.parametrize(
    ("seconds", "said"),
    [(0, "0 s ago"), (12, "12 s ago"), (420, "7 min ago"), (3 * 3600, "3.0 h ago"), (20 * 3600, "20 h ago"),
     (3 * 86400, "3 d ago"), (-5, "in 5 s")],
)  # fmt: skip
def test_ago(seconds, said):
    assert ago(NOW - timedelta(seconds=seconds), NOW) == said
    assert ago(None, NOW) == "-"


def test_render_status_returns_a_renderable(status):
    out = io.StringIO()
    Console(file=out, width=120).print(render_status(status, width=120))
    assert "collar-7" in out.getvalue()


# ---- the command, against a real HTTP server -------------------------------------------------------


class Station:
    """A tiny real HTTP server standing in for the gateway's web page: serves `status` at /api/status."""

    def __init__(self, status: Any) -> None:
        self.status = status
        self.requests = 0
        station = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                station.requests += 1
                if self.path != "/api/status":
                    self.send_error(404)
                    return
                body = (
                    station.status
                    if isinstance(station.status, bytes)
                    else json.dumps(station.status).encode()
                )
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def station(status) -> Iterator[Station]:
    running = Station(status)
    yield running
    running.close()


@pytest.fixture
def cli(monkeypatch):
    """`uncia.cli.main` with `status` registered, as the integrator will register it."""
    monkeypatch.setenv("COLUMNS", "160")
    return uncia.cli.main


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_status_prints_the_tables_and_exits_4_on_a_critical_alert(station, cli, capsys):
    assert cli(["status", "--url", station.url]) == status_command.EXIT_CRITICAL
    out = capsys.readouterr().out
    assert not ANSI.search(out)
    assert "mortality" in out and "collar-7" in out and "OFFLINE" in out and "3fa9c01b2d7e" in out


def test_status_exits_0_without_critical_alerts(station, cli, capsys):
    station.status = {
        **station.status,
        "alerts": [a for a in station.status["alerts"] if a["severity"] != "critical"],
    }
    assert cli(["status", "--url", station.url + "/"]) == 0
    assert "not heard for 3.8 h" in capsys.readouterr().out


def test_json_output_equals_the_served_dict(station, cli, capsys, status):
    assert cli(["status", "--url", station.url, "--json"]) == status_command.EXIT_CRITICAL
    out = capsys.readouterr().out
    assert out.count("\n") == 1  # one line when piped
    assert json.loads(out) == status


def test_unreachable_station_exits_1_with_what_to_check(cli, capsys):
    url = f"http://127.0.0.1:{free_port()}"
    assert cli(["status", "--url", url]) == 1
    err = capsys.readouterr().err
    assert f"cannot reach the station at {url}/: is `uncia gateway` running? (connection refused)" in err


def test_a_web_server_that_is_not_the_station(station, capsys):
    with pytest.raises(StationUnreachable, match=r"answered 404 .*\[station\] web = true"):
        fetch_status(station.url + "/elsewhere/", timeout=5)
    station.status = b"<html>hello</html>"
    with pytest.raises(StationUnreachable, match="not with status JSON"):
        fetch_status(station.url, timeout=5)
    station.status = [1, 2]
    with pytest.raises(StationUnreachable, match="not with a status object"):
        fetch_status(station.url, timeout=5)


def test_status_url_forms():
    assert status_url("10.0.0.2:8080") == "http://10.0.0.2:8080/api/status"
    assert status_url("http://10.0.0.2:8080/") == "http://10.0.0.2:8080/api/status"
    assert status_url("https://station.lan/api/status") == "https://station.lan/api/status"


def test_watch_appends_each_refresh_when_piped(station, status):
    out = io.StringIO()
    code = watch(lambda: fetch_status(station.url), out, interval=0.01, rounds=3, console=Console(file=out))
    assert code == 0 and station.requests == 3
    assert out.getvalue().count("LATEST CAPTURES") == 3


def test_watch_json_is_one_line_per_refresh(station, status):
    out = io.StringIO()
    watch(lambda: fetch_status(station.url), out, interval=0.01, rounds=2, as_json=True)
    assert [json.loads(line) for line in out.getvalue().splitlines()] == [status, status]


def test_watch_on_a_terminal_redraws_and_survives_a_lost_station(station, status):
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, color_system="standard", width=140)
    answers = iter([status, None])

    def fetch() -> dict[str, Any]:
        if next(answers, None) is None:
            raise StationUnreachable("cannot reach the station at x: is `uncia gateway` running?")
        return fetch_status(station.url)

    assert watch(fetch, out, interval=0.01, rounds=2, console=console) == 0
    text = out.getvalue()
    assert ANSI.search(text) and "collar-7" in text
    assert "still trying" in text and "Ctrl-C to stop" in text


def test_watch_argument_defaults_to_5_seconds():
    parser = argparse.ArgumentParser()
    status_command.register(parser.add_subparsers())
    assert parser.parse_args(["status", "--watch"]).watch == 5.0
    assert parser.parse_args(["status", "--watch", "2"]).watch == 2.0
    assert parser.parse_args(["status"]).watch is None


def test_usage_errors_exit_2(cli, capsys):
    for argv in (["status", "--url", "x", "-c", "y.toml"], ["status", "--watch", "0"]):
        with pytest.raises(SystemExit) as info:
            cli(argv)
        assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        cli(["status", "--help"])
    assert info.value.code == 0
    assert "4  the station answered and at least one critical alert is active" in capsys.readouterr().out


def test_bad_config_exits_3(tmp_path, cli, capsys):
    bad = tmp_path / "gateway.toml"
    bad.write_text('[unit]\nid = "GW 01"\n')
    assert cli(["status", "-c", str(bad)]) == 3
    assert "uncia status:" in capsys.readouterr().err


def test_status_dict_is_not_changed_by_rendering(status):
    before = copy.deepcopy(status)
    status_text(status)
    assert status == before


def test_a_bridge_that_is_down_is_said_in_words(status):
    status["station"]["bridges"] = {
        "uncia-bridge-helan-gw-01": {"up": False, "since": "2026-11-25T09:12:00.000Z"}
    }
    text = status_text(status)
    assert "central link DOWN since 2026-11-25T09:12:00.000Z (uncia-bridge-helan-gw-01)" in text
    status["station"]["bridges"]["uncia-bridge-helan-gw-01"]["up"] = True
    assert "central link up" in status_text(status)


def test_uplinks_are_summarised_and_a_failing_one_says_why(status):
    status["station"]["uplinks"] = {
        "earthranger": {
            "items_queued": 12,
            "items_parked": 1,
            "last_success": "2026-11-25T11:58:00.000Z",
            "consecutive_failures": 3,
            "last_error": "HTTP 503 from the server",
        },
        "iridium": {"credits_used_today": 12, "credits_per_day": 30, "last_sent": "2026-11-25T06:00:00.000Z"},
    }
    text = status_text(status)
    assert (
        "uplink earthranger: 12 waiting, 1 parked" in text and "FAILING x3: HTTP 503 from the server" in text
    )
    assert "uplink iridium: 12/30 credits today" in text
