"""The camera's health: blank triggers, light change over days, board sensors, and the status a unit
publishes (retained) — on a simulated clock where hours pass in milliseconds, with a real broker."""

from __future__ import annotations

import base64
import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from edge.camera.agent import CameraUnit
from edge.camera.health import (
    BLANK_BELOW,
    CameraHealth,
    HealthSensors,
    LightSample,
    LightWatch,
    is_blank,
    read_cpu_temperature,
)
from edge.camera.simulated import SimulatedCamera
from edge.config import parse_config
from edge.fix import ClockSource
from edge.topics import Topics
from simulators.scenario import SimClock

NIGHT = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)
LAT, LON = 38.8143, 105.9387
TOPICS = Topics("helan", "cam-07")
STATUS = TOPICS.state("cam0", "health")
HOUR = 3600.0


def _wait(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.005)


def _config(tmp_path: Path, broker: Any = None, **camera: Any) -> Any:
    return parse_config(
        {
            "unit": {"id": "cam-07", "site": "helan", "role": "camera"},
            "mqtt": {"host": broker.host, "port": broker.port} if broker else {"port": 9},
            "outbox": {"path": str(tmp_path / "outbox.sqlite3")},
            "health": {"interval": 3600},
            "camera": {
                "lat": LAT,
                "lon": LON,
                "backend": "simulated",
                "main_width": 320,
                "main_height": 240,
                "burst_interval_s": 0.2,
                "max_burst": 1,
                "retrigger_interval_s": 0.2,
                "image_dir": str(tmp_path / "images"),
                **camera,
            },
        }
    )


# --- pure parts -------------------------------------------------------------------------------------


def test_blank_is_a_still_that_shows_nothing_new() -> None:
    where: dict[str, float | None] = {"x": None}
    camera = SimulatedCamera(
        SimClock(NIGHT), random.Random(8), animal_in_view=lambda t: where["x"], main=(640, 360)
    )
    camera.start()
    background = camera.next_lores()
    assert background is not None
    empty = camera.capture_still().jpeg
    where["x"] = 0.3
    animal = camera.capture_still().jpeg
    assert is_blank(background.jpeg, empty) is True
    assert is_blank(background.jpeg, animal) is False
    assert is_blank(None, empty) is None and is_blank(background.jpeg, None) is None
    assert is_blank(background.jpeg, b"not a jpeg") is None
    assert 0 < BLANK_BELOW < 0.1


def _samples(
    camera: SimulatedCamera, hours: float, every_s: float = 1800.0
) -> list[tuple[float, LightSample]]:
    out = []
    for k in range(int(hours * HOUR / every_s) + 1):
        frame = camera.next_lores()
        assert frame is not None
        sample = LightSample.of(frame)
        assert sample is not None
        out.append((k * every_s, sample))
    return out


def test_a_frozen_lens_is_degraded_after_the_set_hours_and_recovers_at_the_first_change() -> None:
    camera = SimulatedCamera(SimClock(NIGHT), random.Random(1), frozen=True)
    camera.start()
    watch = LightWatch(degraded_after_s=48 * HOUR)
    verdicts = [(t, watch.observe(s, t)) for t, s in _samples(camera, 60)]
    assert next(t for t, degraded in verdicts if degraded) == 48 * HOUR  # not a sample earlier
    assert all(degraded for t, degraded in verdicts if t >= 48 * HOUR)
    assert watch.changes == 0
    camera.frozen = False  # the snow slid off
    frame = camera.next_lores()
    assert frame is not None and not watch.observe(LightSample.of(frame), 61 * HOUR)  # type: ignore[arg-type]
    assert watch.changes == 1 and watch.since_change_s(62 * HOUR) == HOUR


def test_a_working_camera_sees_dawn_and_dusk_and_is_never_degraded() -> None:
    camera = SimulatedCamera(SimClock(NIGHT), random.Random(2))
    camera.start()
    watch = LightWatch(degraded_after_s=36 * HOUR)
    for k in range(3 * 48):  # three days, a sample every half hour; the scene itself never moves
        t = k * 1800.0
        camera.brightness = 1.0 if (t // (12 * HOUR)) % 2 == 0 else 0.25  # lamp-lit night, dim day
        frame = camera.next_lores()
        assert frame is not None
        assert not watch.observe(LightSample.of(frame), t)  # type: ignore[arg-type]
    assert watch.changes == 5
    # The same camera facing the same picture in the same light for days would be reported: the
    # check is about light, and a unit that sees none change for days needs a visit either way.
    for k in range(1, 80):
        frame = camera.next_lores()
        watch.observe(LightSample.of(frame), 72 * HOUR + k * 1800.0)  # type: ignore[arg-type]
    assert watch.degraded(72 * HOUR + 79 * 1800.0)
    # A wall clock set back (or a restart) does not make days out of nothing.
    assert not watch.observe(LightSample.of(frame), 10.0)  # type: ignore[arg-type]


def test_board_sensors(tmp_path: Path) -> None:
    zone = tmp_path / "temp"
    zone.write_text("48512\n")
    assert read_cpu_temperature(zone) == 48.5
    assert read_cpu_temperature(tmp_path / "missing") is None
    zone.write_text("n/a")
    assert read_cpu_temperature(zone) is None


# --- a unit, hours in milliseconds ------------------------------------------------------------------


def test_status_degraded_after_hours_without_light_change_and_a_self_check_picture(
    broker, collect, tmp_path: Path
) -> None:
    """A camera buried in snow: the simulated clock runs 10 minutes per step; after an hour without a
    light change (`degraded_after_h = 1`) the retained status says degraded, and when the snow slides
    off it says ok again. On the way the unit takes its self-check picture and sends its thumbnail."""
    status_inbox = collect(broker, STATUS)
    thumbs = collect(broker, f"{TOPICS.base}/cam0/event/thumbnail")
    sim = SimClock(NIGHT)
    moved = threading.Event()

    def sleep(seconds: float) -> None:  # the camera waits for simulated time, a little real time at most
        moved.wait(min(seconds, 0.02))

    camera = SimulatedCamera(sim.now, random.Random(3), main=(320, 240), paced=True, frozen=True, sleep=sleep)
    zone = tmp_path / "thermal"
    zone.write_text("48512\n")
    unit = CameraUnit(
        _config(tmp_path, broker, degraded_after_h=1, health_interval_s=600),
        camera,
        pin_factory=MockFactory(),
        clock=sim.now,
        monotonic=sim.monotonic,
        clock_source=lambda: ClockSource.GPS,
        rng=random.Random(4),
        health_sensors=HealthSensors(thermal_path=zone, battery_volts=lambda: 12.61),
    )
    health = unit.addons.get(CameraHealth)

    def step(minutes: float = 10.0) -> None:
        seen = health.light.samples
        sim.advance(minutes * 60)
        moved.set()
        moved.clear()
        _wait(lambda: health.light.samples > seen, what="a light sample after the step")

    def statuses() -> list[dict]:
        return [m.json()["data"] for m in status_inbox.messages]

    unit.start()
    try:
        _wait(lambda: health.light.samples >= 1, what="the first sample")
        status_inbox.wait_until(lambda ms: len(ms) >= 1)  # a status right at start
        steps = 0
        while not health.degraded:
            step()
            steps += 1
            assert steps <= 7, "not degraded after more than an hour of the same flat picture"
        status_inbox.wait_until(lambda ms: any(s["degraded"] for s in statuses()))
        _wait(lambda: health.self_check is not None or step(), what="the self-check picture")
        camera.frozen = False  # the snow slides off the lens
        step()
        status_inbox.wait_until(lambda ms: statuses()[-1]["degraded"] is False)
        thumbs.wait_until(lambda ms: len(ms) >= 1)
    finally:
        unit.stop()

    assert steps == 6  # exactly the hour: samples at 0, 10, ..., 60 minutes
    first, *_ = statuses()
    assert first["state"] == "ok" and first["degraded"] is False
    degraded = next(s for s in statuses() if s["degraded"])
    assert degraded["state"] == "degraded" and "snow" in degraded["reasons"][0]
    assert degraded["light"]["hours_since_change"] >= 1.0 and degraded["light"]["degraded_after_h"] == 1.0
    assert degraded["cpu_temp_c"] == 48.5 and degraded["battery_v"] == 12.61
    assert degraded["disk"]["free_bytes"] > 0
    recovered = statuses()[-1]
    assert recovered["state"] == "ok" and recovered["light"]["hours_since_change"] == 0.0

    # The self-check: an event of its own, its thumbnail at the station, named in the status.
    check = recovered["self_check"]
    assert check is not None and check["night"] is True and check["brightness"] > 100  # the snow's glow
    (event,) = [e for e in unit.completed if e.trigger == "self_check"]
    assert check["event_id"] == event.event_id and check["image_id"] == event.best.image_id
    (thumb,) = [m.json()["data"] for m in thumbs.messages]
    assert thumb["event_id"] == event.event_id and base64.b64decode(thumb["jpeg_b64"])[:2] == b"\xff\xd8"
    assert recovered["counters"]["events"] == {"self_check": 1}
    assert recovered["blank"]["ratio"] is None  # a self-check is not a trigger to judge

    # Retained: a dashboard that connects now sees the latest status at once.
    late = collect(broker, STATUS)
    (kept,) = late.wait_for(1)
    assert kept.retain and kept.json()["data"]["degraded"] is False
    envelope = kept.json()
    assert envelope["type"] == "camera_health" and envelope["source"] == "cam0-health"
    # The unit's own periodic health message carries the short form.
    assert unit.health()["health"]["degraded"] is False


def test_blank_trigger_ratio_counts_pir_events_that_show_nothing(tmp_path: Path) -> None:
    where: dict[str, float | None] = {"x": None}
    began = time.monotonic()
    clock = lambda: NIGHT + timedelta(seconds=time.monotonic() - began)  # noqa: E731
    camera = SimulatedCamera(
        clock, random.Random(6), animal_in_view=lambda t: where["x"], main=(320, 240), paced=True
    )
    factory = MockFactory()
    config = _config(tmp_path)
    unit = CameraUnit(config, camera, pin_factory=factory, clock=clock, rng=random.Random(7))
    health = unit.addons.get(CameraHealth)
    pir = factory.pin(config.camera.pir_pin)

    def pir_event(n: int) -> None:
        _wait(lambda: not unit.gate.in_burst and (unit.gate.resting_until or 0.0) < time.monotonic())
        pir.drive_high()
        _wait(lambda: len(unit.completed) >= n, what=f"event {n}")
        pir.drive_low()

    unit.start()
    try:
        time.sleep(0.6)  # some pre-trigger frames of the empty slope
        pir_event(1)  # wind in the grass: nothing in the picture
        time.sleep(0.3)
        where["x"] = 0.4  # a snow leopard steps in
        pir_event(2)
        where["x"] = None
        time.sleep(0.3)
        _wait(lambda: len(unit.completed) >= 3 or unit.trigger(), what="a manual picture")
    finally:
        unit.stop()
    triggers = [e.trigger for e in unit.completed]
    assert triggers == ["pir", "pir", "manual"]
    status = health.status()
    assert status["blank"] == {"judged": {"pir": 2}, "blank": {"pir": 1}, "ratio": 0.5, "ratio_all": 0.5}
    assert status["counters"]["events"] == {"pir": 2, "manual": 1}
    assert status["counters"]["pir_triggers"] == 2 and status["counters"]["stills"] == 3
    assert status["battery_v"] is None  # no battery monitor wired
    assert unit.health()["health"]["blank_trigger_ratio"] == 0.5


@pytest.mark.parametrize("bad", [0.5, 1000.0])
def test_degraded_after_hours_is_checked(tmp_path: Path, bad: float) -> None:
    from edge.config import ConfigError

    with pytest.raises(ConfigError, match="hours, 1 to 720"):
        _config(tmp_path, degraded_after_h=bad)
