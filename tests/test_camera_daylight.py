"""Day or night: known answers for the Helan Mountains, the threshold, and the light-sensor source."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from gpiozero.pins.mock import MockFactory

from edge.camera.daylight import (
    DEFAULT_LIGHT_SENSOR_PIN,
    DaylightSource,
    LightSensorDaylight,
    Position,
    SunElevation,
    is_night,
    sun_elevation,
)

HELAN = Position(38.8, 106.0, 2000.0)
CST = timezone(timedelta(hours=8))  # China Standard Time, the units' local clock
# Civil dusk (sun 6° below the horizon) at HELAN on 2026-12-21 is at about 18:15:43 CST (astral).
DUSK = datetime(2026, 12, 21, 18, 15, 43, tzinfo=CST)


@pytest.mark.parametrize("day", [datetime(2026, 6, 21, tzinfo=CST), datetime(2026, 12, 21, tzinfo=CST)])
def test_noon_is_day_and_midnight_is_night(day: datetime) -> None:
    noon, midnight = day.replace(hour=12), day.replace(hour=0)
    assert not is_night(HELAN, noon)
    assert is_night(HELAN, midnight)
    assert sun_elevation(HELAN, noon) > 25.0
    assert sun_elevation(HELAN, midnight) < -20.0  # solar midnight is ~01:00 CST at 106°E


def test_the_same_instant_in_any_time_zone_gives_the_same_answer() -> None:
    local = datetime(2026, 12, 21, 12, 0, tzinfo=CST)
    assert sun_elevation(HELAN, local) == pytest.approx(sun_elevation(HELAN, local.astimezone(UTC)))
    assert sun_elevation(HELAN, local) == pytest.approx(sun_elevation((38.8, 106.0, 0.0), local), abs=1e-9)


def test_threshold_decides_in_the_twilight() -> None:
    before, after = DUSK - timedelta(minutes=10), DUSK + timedelta(minutes=10)
    assert -6.0 < sun_elevation(HELAN, before) < 0.0  # sun already set
    assert not is_night(HELAN, before)  # civil twilight: still day by default
    assert is_night(HELAN, before, threshold_deg=0.0)  # night as soon as the sun is down
    assert is_night(HELAN, after)


def test_a_time_without_a_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        is_night(HELAN, datetime(2026, 12, 21, 12, 0))


def test_a_position_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="latitude/longitude"):
        SunElevation((106.0, 38.8, 0.0))  # lat and lon swapped


def test_sun_elevation_source_reads_its_clock() -> None:
    now = [datetime(2026, 12, 21, 12, 0, tzinfo=CST)]
    source = SunElevation(HELAN, clock=lambda: now[0])
    assert isinstance(source, DaylightSource)
    assert not source.is_night()
    now[0] = now[0].replace(hour=23)
    assert source.is_night()


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_light_sensor_follows_the_sky_once_steady() -> None:
    clock = FakeClock()
    sensor = LightSensorDaylight(pin_factory=MockFactory(), hold_s=60.0, clock=clock)
    try:
        assert isinstance(sensor, DaylightSource)
        assert sensor.pin.info.name == f"GPIO{DEFAULT_LIGHT_SENSOR_PIN}"
        assert sensor.pin.pull == "down" and not sensor.is_night()  # a cut cable means day: lamp off
        clock.t = 100.0
        sensor.pin.drive_high()  # dusk: the comparator says dark...
        clock.t = 130.0
        assert not sensor.is_night()
        sensor.pin.drive_low()  # ...chatters back...
        clock.t = 131.0
        sensor.pin.drive_high()  # ...and settles dark
        clock.t = 185.0
        assert not sensor.is_night()  # only 54 s steady
        clock.t = 191.0
        assert sensor.is_night()
        clock.t = 500.0
        sensor.pin.drive_low()  # dawn
        clock.t = 560.0
        assert not sensor.is_night()
    finally:
        sensor.close()


def test_light_sensor_board_that_pulls_low_in_the_dark() -> None:
    clock = FakeClock()
    sensor = LightSensorDaylight(pin_factory=MockFactory(), dark_high=False, hold_s=5.0, clock=clock)
    try:
        assert sensor.pin.pull == "up" and not sensor.is_night()  # pulled to "light"
        sensor.pin.drive_low()
        assert not sensor.is_night()  # held back until steady for hold_s
        clock.t = 5.0
        assert sensor.is_night()
    finally:
        sensor.close()
