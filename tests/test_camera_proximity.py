"""Collar-proximity arming: the pure core (packets and a clock in, armed or not out), then a camera unit
whose REYAX modem (emulated, on a real pty, opened by the real driver) hears a collar close by: the
next event carries the collar id, to the station broker and into the images' sidecars."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.camera.addons import longest_burst
from edge.camera.agent import CameraUnit
from edge.camera.capture import BurstPolicy
from edge.camera.proximity import CollarListener, CollarProximity, armed_policy
from edge.camera.simulated import SimulatedCamera
from edge.config import parse_config
from edge.lora.modem import Packet, RadioSettings
from edge.lora.payload import CollarFix, encode_fix
from simulators.lora_reyax import RylrEmulator
from simulators.pty_port import PtyPort

NIGHT = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)
RADIO = RadioSettings(spreading_factor=9)
LAT, LON = 38.8143, 105.9387


def _collar_packet(collar_id: int, rssi: int = -60) -> Packet:
    fix = CollarFix(collar_id, NIGHT, 38.85, 106.0, quality=1, hdop_class=2, battery_pct=80)
    return Packet(encode_fix(fix), rssi, 7.5, NIGHT)


def _wait(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.01)


# --- the pure core ----------------------------------------------------------------------------------


def test_packets_arm_only_when_a_collar_is_close() -> None:
    near = CollarProximity(threshold_dbm=-80, hold_s=600)
    assert near.feed(_collar_packet(17, rssi=-95), now=0.0) == [] and not near.armed(0.0)  # far away
    assert near.feed(Packet(b"\x01\x02hello", -40, 9.0, NIGHT), now=1.0) == []  # not a collar at all
    assert near.feed(_collar_packet(17, rssi=-61), now=2.0) == ["collar-17"]
    gga = b"$GPGGA,140000.00,3851.000,N,10600.000,E,1,08,1.1,2310.0,M,,M,,*"
    nmea = gga + f"{_xor(gga[1:-1]):02X}".encode()
    old_collar = Packet(nmea, -70, 5.0, NIGHT, sender=5)  # an older collar: its radio address is its id
    assert near.feed(old_collar, now=3.0) == ["collar-5"]
    assert near.armed(500.0) and near.collars(500.0) == {"collar-5": -70, "collar-17": -61}
    assert near.remaining_s(500.0) == pytest.approx(103.0)
    assert near.collars(602.5) == {"collar-5": -70}  # collar-17 last heard 600.5 s ago
    assert not near.armed(603.5) and near.collars(603.5) == {} and near.remaining_s(603.5) == 0.0
    assert near.armings == 1
    assert near.feed(_collar_packet(17, rssi=-50), now=700.0) == ["collar-17"] and near.armings == 2
    assert near.counts == {"packets": 5, "too_weak": 1, "not_collar": 1, "close": 3}
    with pytest.raises(ValueError, match="proximity hold"):
        CollarProximity(-80, 0)


def _xor(data: bytes) -> int:
    out = 0
    for b in data:
        out ^= b
    return out


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(0, 400), st.integers(-130, -20), st.sampled_from(["collar-1", "collar-2", "collar-3"])
        ),
        max_size=30,
    ),
    st.floats(0, 400),
)
def test_armed_exactly_while_a_close_collar_was_heard_within_the_hold(
    heard: list[tuple[float, int, str]], later: float
) -> None:
    threshold, hold = -80.0, 300.0
    near = CollarProximity(threshold, hold)
    now, log = 0.0, []
    for dt, rssi, collar in heard:
        now += dt
        counted = near.heard(collar, rssi, now)
        assert counted == (rssi > threshold)
        log.append((now, rssi, collar))
    now += later
    close = {c for t, r, c in log if r > threshold and now - t <= hold}
    assert near.armed(now) == bool(close)
    assert set(near.collars(now)) == close
    for collar, strongest in near.collars(now).items():
        assert strongest >= max(r for t, r, c in log if c == collar and r > threshold and now - t <= hold)


def test_the_armed_policy_rests_never_and_bursts_twice_as_long() -> None:
    base = BurstPolicy(interval_s=0.5, max_stills=10, retrigger_s=5.0)
    assert armed_policy(base) == BurstPolicy(interval_s=0.5, max_stills=20, retrigger_s=0.0)
    assert armed_policy(BurstPolicy(max_stills=80)).max_stills == 100  # the config's own ceiling
    camera = {"lat": LAT, "lon": LON, "max_burst": 10}
    unit = {"id": "cam-07", "site": "helan"}
    lora = [{"name": "lora0", "port": "/dev/null", "family": "rylr"}]
    assert longest_burst(parse_config({"unit": unit, "camera": camera})) == 10
    # the IR lamp's watchdog must allow an armed burst
    assert longest_burst(parse_config({"unit": unit, "camera": camera, "lora": lora})) == 20


# --- a unit with a modem ----------------------------------------------------------------------------


def test_a_collar_heard_close_tags_the_next_event(broker, collect, tmp_path: Path) -> None:
    inbox = collect(broker, "uncia/helan/cam-07/cam0/event/capture")
    relayed = collect(broker, "uncia/helan/cam-07/+/event/fix")
    with PtyPort(tmp_path / "lora0") as pty:
        modem = RylrEmulator(pty, rng=random.Random(3))
        modem.start()
        assert modem.wait_ready(5)
        config = parse_config(
            {
                "unit": {"id": "cam-07", "site": "helan", "role": "camera"},
                "mqtt": {"host": broker.host, "port": broker.port},
                "outbox": {"path": str(tmp_path / "outbox.sqlite3")},
                "health": {"interval": 3600},
                "lora": [{"name": "lora0", "port": modem.path, "family": "rylr", "spreading_factor": 9}],
                "camera": {
                    "lat": LAT,
                    "lon": LON,
                    "backend": "simulated",
                    "main_width": 320,
                    "main_height": 240,
                    "burst_interval_s": 0.2,
                    "max_burst": 1,
                    "retrigger_interval_s": 0.3,
                    "image_dir": str(tmp_path / "images"),
                    "collar_rssi_dbm": -80,
                    "proximity_hold_s": 600,
                },
            }
        )
        began = time.monotonic()
        clock = lambda: NIGHT + timedelta(seconds=time.monotonic() - began)  # noqa: E731
        camera = SimulatedCamera(clock, random.Random(4), main=(320, 240), paced=True)
        unit = CameraUnit(config, camera, pin_factory=MockFactory(), clock=clock, rng=random.Random(5))
        listener = unit.addons.get(CollarListener)
        unit.start()
        try:
            worker = listener.workers[0]
            _wait(lambda: worker.state == "receiving", what="the modem configured")
            unit.trigger()  # before any collar: no tag
            _wait(lambda: len(unit.completed) == 1, what="the first event")
            far = encode_fix(CollarFix(23, NIGHT, 38.85, 106.0, 1, 2, 70))
            assert modem.deliver(far, rssi=-101, snr=-4.0, sender=23, radio=RADIO)  # heard, but far off
            _wait(lambda: listener.core.counts["too_weak"] == 1, what="the far collar heard")
            assert not listener.core.armed(time.monotonic())
            near = encode_fix(CollarFix(17, NIGHT, 38.85, 106.0, 1, 2, 80))
            assert modem.deliver(near, rssi=-62, snr=8.0, sender=17, radio=RADIO)
            _wait(lambda: listener.core.armings == 1, what="capture armed by the close collar")
            _wait(lambda: len(unit.completed) == 2 or unit.trigger(), what="the next event")
            report = unit.health()["proximity"]
            inbox.wait_until(lambda ms: sum(m.json()["data"]["phase"] == "end" for m in ms) == 2)
            relayed.wait_for(2, unique=True)  # near and far: every collar fix heard goes to the station
        finally:
            unit.stop()
            modem.stop()
    fixes = {m.topic.split("/")[3]: m.json()["data"] for m in relayed.unique()}
    assert set(fixes) == {"collar-23", "collar-17"}
    assert fixes["collar-17"]["rssi"] == -62 and fixes["collar-17"]["modem"] == "lora0"
    before, after = unit.completed
    assert "collars" not in before.tags
    assert after.tags["collars"] == ["collar-17"] and after.tags["collar_rssi_dbm"] == {"collar-17": -62}
    ends = [m.json()["data"] for m in inbox.unique() if m.json()["data"]["phase"] == "end"]
    assert "tags" not in ends[0] and ends[1]["tags"]["collars"] == ["collar-17"]
    sidecar = json.loads((unit.store.root / after.stills[0].file).with_suffix(".json").read_text())
    assert sidecar["extra"]["collars"] == ["collar-17"]
    # While armed: no rest after a burst, bursts may run twice as long.
    assert unit.gate.policy.retrigger_s == 0.0 and unit.addons.policy(unit.policy).max_stills == 2
    assert (
        report["armed"]
        and report["collars"] == {"collar-17": -62}
        and report["modems"]["lora0"]["packets"] == 2
    )
