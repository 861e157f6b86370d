"""The PIR sensor on gpiozero mock pins: callbacks on edges, the bounce hold-off, counters and times."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from gpiozero.pins.mock import MockFactory
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.camera.pir import DEFAULT_PIR_PIN, PirSensor

T0 = datetime(2026, 11, 25, 21, 14, tzinfo=UTC)


class FakeClock:
    """Monotonic seconds and the matching UTC time, moved by the test."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def wall(self) -> datetime:
        return T0 + timedelta(seconds=self.t - 1000.0)


class Recorder:
    def __init__(self) -> None:
        self.events: list[str] = []

    def motion(self) -> None:
        self.events.append("motion")

    def still(self) -> None:
        self.events.append("still")


def _pir(clock: FakeClock, rec: Recorder, **kw: object) -> PirSensor:
    return PirSensor(
        pin_factory=MockFactory(),
        on_motion=rec.motion,
        on_still=rec.still,
        clock=clock,
        wall_clock=clock.wall,
        **kw,  # type: ignore[arg-type]
    )


def test_callbacks_fire_on_mock_edges_with_counts_and_times() -> None:
    clock, rec = FakeClock(), Recorder()
    with _pir(clock, rec) as pir:
        assert not pir.motion_detected and pir.triggers == 0 and pir.last_trigger_at is None
        clock.t += 5
        pir.pin.drive_high()
        assert rec.events == ["motion"]
        assert pir.motion_detected
        assert pir.triggers == 1
        assert pir.last_trigger_at == T0 + timedelta(seconds=5)
        assert pir.last_trigger_monotonic == 1005.0
        clock.t += 3
        pir.pin.drive_low()
        assert rec.events == ["motion", "still"]
        assert not pir.motion_detected
        clock.t += 10
        pir.pin.drive_high()
        assert pir.triggers == 2 and pir.last_trigger_at == T0 + timedelta(seconds=18)
        assert pir.bounces == 0


def test_default_pin_is_bcm17_with_pull_down() -> None:
    with PirSensor(pin_factory=MockFactory()) as pir:
        assert pir.pin.info.name == f"GPIO{DEFAULT_PIR_PIN}"
        assert pir.pin.pull == "down"  # a cut cable reads "no motion"


def test_active_low_sensor_pulls_up_and_triggers_on_falling_edge() -> None:
    clock, rec = FakeClock(), Recorder()
    with _pir(clock, rec, active_high=False) as pir:
        assert pir.pin.pull == "up" and not pir.motion_detected
        pir.pin.drive_low()
        assert rec.events == ["motion"] and pir.triggers == 1


def test_chatter_inside_the_hold_off_is_one_trigger() -> None:
    clock, rec = FakeClock(), Recorder()
    with _pir(clock, rec, bounce_time=0.05) as pir:
        pir.pin.drive_high()
        for _ in range(5):  # the line chatters for 10 ms after the rising edge
            clock.t += 0.001
            pir.pin.drive_low()
            clock.t += 0.001
            pir.pin.drive_high()
        assert rec.events == ["motion"]
        assert pir.triggers == 1 and pir.bounces == 10
        clock.t += 2
        pir.pin.drive_low()
        assert rec.events == ["motion", "still"]


def test_a_change_swallowed_by_the_hold_off_is_applied_when_it_ends() -> None:
    clock, rec = FakeClock(), Recorder()
    with _pir(clock, rec, bounce_time=0.05) as pir:
        pir.pin.drive_high()
        clock.t += 0.01
        pir.pin.drive_low()  # a 10 ms spike: the fall is inside the hold-off
        assert rec.events == ["motion"] and pir.bounces == 1
        assert not pir.motion_detected  # the pin's true level is always readable
        clock.t += 0.05
        pir.settle()  # what the hold-off timer does
        assert rec.events == ["motion", "still"]


def test_a_swallowed_still_spell_is_announced_at_the_next_edge() -> None:
    clock, rec = FakeClock(), Recorder()
    with _pir(clock, rec, bounce_time=0.05) as pir:
        pir.pin.drive_high()
        clock.t += 0.01
        pir.pin.drive_low()
        clock.t += 30  # nobody called settle(); the next edge still tells the whole story
        pir.pin.drive_high()
        assert rec.events == ["motion", "still", "motion"]
        assert pir.triggers == 2


def test_the_hold_off_timer_settles_with_the_real_clock() -> None:
    done = threading.Event()
    events: list[str] = []
    pir = PirSensor(
        pin_factory=MockFactory(),
        bounce_time=0.02,
        on_motion=lambda: events.append("motion"),
        on_still=lambda: (events.append("still"), done.set()),  # type: ignore[func-returns-value]
    )
    try:
        pir.pin.drive_high()
        pir.pin.drive_low()
        assert done.wait(5.0), "the swallowed fall was never applied"
        assert events == ["motion", "still"]
    finally:
        pir.close()


def test_no_callbacks_after_close() -> None:
    clock, rec = FakeClock(), Recorder()
    pir = _pir(clock, rec)
    pin = pir.pin
    pir.close()
    pin.drive_high()
    assert rec.events == [] and pir.triggers == 0


def test_negative_bounce_time_is_refused() -> None:
    with pytest.raises(ValueError, match="bounce_time"):
        PirSensor(pin_factory=MockFactory(), bounce_time=-1)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.floats(0.0, 0.2)), max_size=40))
def test_callbacks_alternate_and_end_on_the_pin_level(steps: list[tuple[bool, float]]) -> None:
    clock, rec = FakeClock(), Recorder()
    with _pir(clock, rec, bounce_time=0.05) as pir:
        for high, dt in steps:
            clock.t += dt
            (pir.pin.drive_high if high else pir.pin.drive_low)()
        clock.t += 1
        pir.settle()
        assert all(a != b for a, b in zip(rec.events, rec.events[1:], strict=False))
        assert rec.events[:1] in ([], ["motion"])
        assert (rec.events[-1:] == ["motion"]) == pir.motion_detected
        assert pir.triggers == rec.events.count("motion")
