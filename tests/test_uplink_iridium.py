"""The satellite uplink: a real station record, the SBD driver on a real pseudo-terminal, and the
emulated RockBLOCK (simulators/iridium.py) with its sky and its bill on the other end.

The uplink's clock is a number the test moves (slots, UTC days, retry waits); the modem's answers
come over the pty in milliseconds.
"""

from __future__ import annotations

import json
import logging
import math
import random
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from gateway.station.record import FixRow, StationRecord
from gateway.uplink.digest import credits_for, decode_digest
from gateway.uplink.iridium import IridiumUplink, utc_day
from gateway.uplink.sbd import SbdModem
from gateway.uplink.settings import IridiumSettings
from gateway.uplink.state import UplinkState
from simulators.iridium import IridiumEmulator

DAY0 = 1_789_948_800.0  # 2026-09-21T00:00:00Z


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def emulator():
    with IridiumEmulator() as emu:
        yield emu


@pytest.fixture
def record(tmp_path: Path):
    rec = StationRecord(tmp_path / "station.sqlite3")
    yield rec
    rec.close()


def site_record(record: StationRecord, now: float, collars: int = 20, units: int = 5) -> None:
    for c in range(collars):
        record.add_fix(
            FixRow(
                f"m-{c}-{now:.0f}",
                f"collar-{c}",
                "gw-01",
                f"collar-{c}",
                None,
                now - 300 - 60 * c,
                38.80 + 0.013 * c,
                105.95 + 0.011 * c,
                quality=1,
                hdop=1.1,
                battery=90 - c,
                received=now - 200,
            )
        )
    for u in range(units):
        name = "gw-01" if u == 0 else f"cam-{u:02d}"
        record.unit_availability(name, u != 3, now - 100)
        record.unit_seen(name, now - 100 - 3600 * (u == 3))
        if u:
            record.unit_health(
                name, {"battery_v": 12.3, "disk": {"used_percent": 40 + u}}, now - 100, camera=True
            )
    record.commit()


def alert(record: StationRecord, kind: str, subject: str, at: float, severity: str = "critical") -> None:
    record.raise_alert(
        {
            "key": f"{kind}:{subject}",
            "kind": kind,
            "subject": subject,
            "severity": severity,
            "message": f"{kind} {subject}",
            "details": {},
            "since": at - 600,
        },
        at,
    )
    record.commit()


def make(emulator, record, state_path: Path, clock: Clock, **kw: object) -> IridiumUplink:
    base: dict[str, object] = {
        "port": emulator.path,
        "credits_per_day": 30,
        "interval_h": 6.0,
        "retry_s": 60.0,
        "retry_max_s": 1200.0,
        "session_timeout_s": 10.0,
    }
    base.update(kw)
    settings = IridiumSettings(**base)  # type: ignore[arg-type]
    modem = SbdModem(emulator.path, command_timeout=5.0, session_timeout=10.0)
    return IridiumUplink(
        settings, record.path, UplinkState(state_path), modem=modem, clock=clock, rng=random.Random(3)
    )


def run(uplink: IridiumUplink, clock: Clock, until: float, on_step=None) -> list[float]:
    """Step the uplink, jumping the clock over each wait it asks for, until `until`."""
    waits = []
    while clock.t < until:
        wait = uplink.step()
        waits.append(wait)
        if on_step is not None:
            on_step(clock.t)
        clock.t += max(wait, 1.0)
    return waits


def test_a_digest_per_slot_with_the_documented_at_commands(emulator, record, tmp_path):
    clock = Clock(DAY0 + 60)
    site_record(record, clock.t)
    uplink = make(emulator, record, tmp_path / "u.sqlite3", clock)
    run(uplink, clock, DAY0 + 86_400 - 1)
    uplink.stop()
    assert len(emulator.delivered) == 4  # 00, 06, 12, 18 UTC
    first = decode_digest(emulator.delivered[0].data)
    assert [f.subject for f in first.fixes] == [f"collar-{c}" for c in range(20)]
    assert first.site == 1 and first.seq == 0 and first.omitted is None
    assert [decode_digest(d.data).seq for d in emulator.delivered] == [0, 1, 2, 3]
    commands = emulator.commands
    assert commands[:5] == ["AT", "ATE0", "AT&K0", "AT+SBDMTA=0", "AT+SBDD0"]
    assert emulator.flow_control == 0 and emulator.echo is False
    size = len(emulator.delivered[0].data)
    assert f"AT+SBDWB={size}" in commands and "AT+SBDIX" in commands
    ledger = uplink.ledger(DAY0)
    assert ledger.messages == 4 and ledger.spent == emulator.credits_billed
    assert ledger.spent == sum(credits_for(len(d.data)) for d in emulator.delivered) <= 30


def test_alerts_go_first_and_at_once_when_the_budget_is_tight(emulator, record, tmp_path):
    clock = Clock(DAY0 + 60)
    site_record(record, clock.t)
    uplink = make(emulator, record, tmp_path / "u.sqlite3", clock, credits_per_day=8)
    run(uplink, clock, DAY0 + 3 * 3600)  # the 00:00 digest: 2 credits, 100 bytes
    assert len(emulator.delivered) == 1
    tight = decode_digest(emulator.delivered[0].data)
    assert len(emulator.delivered[0].data) <= 100 and tight.omitted is not None
    assert tight.units == () and 0 < len(tight.fixes) < 20  # fixes before health

    alert(record, "disk_full", "cam-02", clock.t, "warning")
    alert(record, "mortality", "collar-17", clock.t)
    alert(record, "geofence_exit", "collar-4", clock.t)
    run(uplink, clock, clock.t + 120)  # within the minute: no waiting for 06:00
    assert len(emulator.delivered) == 2
    urgent = decode_digest(emulator.delivered[1].data)
    assert [(a.kind, a.subject) for a in urgent.alerts][:2] == [
        ("mortality", "collar-17"),
        ("geofence_exit", "collar-4"),
    ]
    assert [f.subject for f in urgent.fixes][:2] == [
        "collar-17",
        "collar-4",
    ]  # the alerted collars' fixes next
    run(uplink, clock, DAY0 + 86_400 - 1)
    assert uplink.ledger(DAY0).spent <= 8
    assert len(emulator.delivered) == 5  # four slots and the alert: the alert took only spare credit


def test_the_budget_holds_over_days_and_restarts(emulator, record, tmp_path):
    clock = Clock(DAY0 + 30)
    state_path = tmp_path / "u.sqlite3"
    site_record(record, clock.t)
    uplink = make(emulator, record, state_path, clock, credits_per_day=9, interval_h=3.0)
    rng = random.Random(5)
    kinds = ["mortality", "geofence_exit", "conflict_zone", "unit_offline"]

    def churn(now: float) -> None:
        if rng.random() < 0.05:
            alert(record, rng.choice(kinds), f"collar-{rng.randrange(20)}", now)

    run(uplink, clock, DAY0 + 1.5 * 86_400, churn)
    uplink.stop()
    uplink.state.close()
    uplink = make(
        emulator, record, state_path, clock, credits_per_day=9, interval_h=3.0
    )  # the station restarts
    run(uplink, clock, DAY0 + 3 * 86_400 - 1, churn)
    uplink.stop()
    billed: dict[str, int] = defaultdict(int)
    for item in emulator.delivered:
        digest = decode_digest(item.data)
        billed[utc_day(digest.time)] += credits_for(len(item.data))
    assert sorted(billed) == ["2026-09-21", "2026-09-22", "2026-09-23"]  # each day rolls over to a new budget
    for day, credits in billed.items():
        assert credits <= 9, (day, credits)
        assert uplink.state.ledger(day).spent == credits
    assert sum(billed.values()) == emulator.credits_billed


def test_a_session_lost_in_a_crash_counts_as_spent(emulator, record, tmp_path):
    clock = Clock(DAY0 + 60)
    site_record(record, clock.t, collars=3, units=1)
    state = UplinkState(tmp_path / "u.sqlite3")
    state.reserve(utc_day(clock.t), 7)  # the process died during a session of unknown outcome
    state.close()
    uplink = make(emulator, record, tmp_path / "u.sqlite3", clock, credits_per_day=8)
    run(uplink, clock, DAY0 + 86_400 - 1)
    assert uplink.ledger(DAY0).spent <= 8
    assert sum(credits_for(len(d.data)) for d in emulator.delivered) <= 1


@pytest.mark.parametrize("status", [32, 18])
def test_retries_with_backoff_while_the_sky_is_blocked(emulator, record, tmp_path, status, caplog):
    clock = Clock(DAY0 + 60)
    site_record(record, clock.t, collars=5, units=2)
    uplink = make(emulator, record, tmp_path / "u.sqlite3", clock)
    emulator.block_sky(4, status)
    waits = []
    with caplog.at_level(logging.INFO, logger="uncia.uplink.iridium"):
        while not emulator.delivered:
            waits.append(uplink.step())
            clock.t += waits[-1]
    assert emulator.sessions == 5 and len(emulator.delivered) == 1
    assert waits[0] < waits[1] < waits[2] < waits[3]  # backing off
    assert 45 <= waits[0] <= 60
    assert f"MO status {status}" in caplog.text
    cost = credits_for(len(emulator.delivered[0].data))
    assert uplink.ledger(DAY0).spent == cost == emulator.credits_billed  # failed sessions cost nothing
    assert uplink.status()["pending"] is None and uplink.status()["consecutive_failures"] == 0
    uplink.stop()


def test_a_digest_that_never_went_is_replaced_by_the_next_slots(emulator, record, tmp_path):
    clock = Clock(DAY0 + 60)
    site_record(record, clock.t, collars=2, units=1)
    uplink = make(emulator, record, tmp_path / "u.sqlite3", clock, retry_max_s=3600.0)
    emulator.block_sky(10_000)
    run(uplink, clock, DAY0 + 6 * 3600 + 30)
    emulator.clear_sky()
    run(uplink, clock, DAY0 + 7 * 3600)
    assert len(emulator.delivered) == 1
    assert decode_digest(emulator.delivered[0].data).time >= DAY0 + 6 * 3600
    uplink.stop()


def test_account_problems_are_errors_with_what_to_check(emulator, record, tmp_path, caplog):
    clock = Clock(DAY0 + 60)
    site_record(record, clock.t, collars=1, units=1)
    uplink = make(emulator, record, tmp_path / "u.sqlite3", clock)
    emulator.fail_sessions(15)
    with caplog.at_level(logging.ERROR, logger="uncia.uplink.iridium"):
        wait = uplink.step()
    assert wait == pytest.approx(1200.0)
    assert "Access is denied" in caplog.text and "line rental" in caplog.text


def test_a_message_from_hq_is_read_and_billed(emulator, record, tmp_path):
    clock = Clock(DAY0 + 60)
    site_record(record, clock.t, collars=1, units=1)
    got = []
    uplink = make(emulator, record, tmp_path / "u.sqlite3", clock)
    uplink.on_message = got.append
    emulator.queue_mt(b"send\r\nnow\x00\x0a" * 6)
    uplink.step()
    assert got == [b"send\r\nnow\x00\x0a" * 6]
    ledger = uplink.ledger(DAY0)
    assert ledger.mt_messages == 1 and ledger.spent == emulator.credits_billed
    assert "AT+SBDRB" in emulator.commands
    uplink.stop()


def test_a_modem_power_cycled_between_digests_is_set_up_again(emulator, record, tmp_path):
    clock = Clock(DAY0 + 60)
    site_record(record, clock.t, collars=2, units=1)
    uplink = make(emulator, record, tmp_path / "u.sqlite3", clock)
    uplink.step()
    emulator.power_cycle()  # echo back on; the driver copes, and a failure reconfigures
    run(uplink, clock, DAY0 + 6 * 3600 + 120)
    assert len(emulator.delivered) == 2
    uplink.stop()


def test_bytes_and_credits_per_day_for_a_20_collar_site():
    """The figure for the issue's closing note: python -m bench.iridium_digest (20 collars, 6 h)."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.iridium_digest", "--collars", "20", "--interval-h", "6"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["digests_per_day"] == 4
    for case in ("quiet", "typical", "busy"):
        f = figures[case]
        assert f["bytes_per_digest"] <= 340
        assert f["credits_per_day"] == 4 * math.ceil(f["bytes_per_digest"] / 50) <= 28
