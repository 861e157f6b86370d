"""Day or night: whether a capture needs the IR illuminator.

Two sources behind one small interface, `DaylightSource` (``is_night() -> bool``), so the agent does
not care which it has:

- `SunElevation`: computed from the unit's position and the time (astral). Needs no hardware and
  no light, but a correct clock (an unsynced clock after a power cut gives a wrong answer).
- `LightSensorDaylight`: a digital light sensor (an LDR module with a comparator, e.g. an LM393
  board: DO goes high in the dark) on **BCM GPIO 24 (physical pin 18)**. It sees the real sky (a deep
  gorge, storm clouds) but must not see the IR lamp: mount it facing away from the illuminator,
  shaded, and read it while the lamp is off (a photodiode module sees 940 nm well; an LDR barely).

The threshold is the sun's elevation below which a capture counts as night: −6° (the end of civil
twilight) by default, when a colour camera already struggles; raise it towards 0° to use the lamp
earlier in the dusk.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import NamedTuple, Protocol, runtime_checkable

from astral import Observer
from astral.sun import elevation
from gpiozero import DigitalInputDevice
from gpiozero.pins import Factory, Pin

from edge.clock import Clock, utc_now

CIVIL_TWILIGHT_DEG = -6.0
DEFAULT_LIGHT_SENSOR_PIN = 24  # BCM numbering; physical pin 18


class Position(NamedTuple):
    """Where the unit stands: degrees (WGS 84, north and east positive) and metres above sea level."""

    lat: float
    lon: float
    alt: float = 0.0


def _aware(when: datetime) -> datetime:
    # astral reads a naive datetime as UTC; a Pi's naive local time would then be hours wrong
    # without any error, so naive times are refused.
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(
            f"time {when.isoformat()} has no time zone: give an aware datetime (UTC, e.g. edge.clock.utc_now())"
        )
    return when


def _position(position: Position | tuple[float, float, float]) -> Position:
    pos = Position(*position)
    if not (-90.0 <= pos.lat <= 90.0 and -180.0 <= pos.lon <= 180.0):
        raise ValueError(
            f"position ({pos.lat}, {pos.lon}) is not a latitude/longitude in degrees (lat -90..90, lon -180..180)"
        )
    return pos


def sun_elevation(position: Position | tuple[float, float, float], when: datetime) -> float:
    """The sun's elevation in degrees above the horizon (refraction included) at `position`, `when`.

    The observer's altitude does not change the sun's angle meaningfully; it is accepted so a
    position can be passed whole.
    """
    lat, lon, alt = _position(position)
    return float(elevation(Observer(lat, lon, alt), _aware(when)))


def is_night(
    position: Position | tuple[float, float, float],
    when: datetime,
    *,
    threshold_deg: float = CIVIL_TWILIGHT_DEG,
) -> bool:
    """True when the sun is below `threshold_deg` at `position` and `when` (an aware datetime)."""
    return sun_elevation(position, when) < threshold_deg


@runtime_checkable
class DaylightSource(Protocol):
    """Anything that can tell whether it is night now."""

    def is_night(self) -> bool: ...


class SunElevation:
    """Night from the sun's elevation at the unit's position, by the unit's clock."""

    def __init__(
        self,
        position: Position | tuple[float, float, float],
        *,
        threshold_deg: float = CIVIL_TWILIGHT_DEG,
        clock: Clock = utc_now,
    ) -> None:
        self.position = _position(position)
        self.threshold_deg = threshold_deg
        self._clock = clock

    def is_night(self) -> bool:
        return is_night(self.position, self._clock(), threshold_deg=self.threshold_deg)


class LightSensorDaylight:
    """Night from a digital light sensor on one GPIO, steadied against flicker at dusk.

    ``dark_high=True`` means the sensor's output is high in the dark (the usual LM393 LDR board).
    At dusk the comparator chatters, so the answer follows the sensor only once its output has not
    changed for ``hold_s`` seconds (``clock``: monotonic seconds); at start the reading is taken as
    it is.
    """

    def __init__(
        self,
        pin: int | str = DEFAULT_LIGHT_SENSOR_PIN,
        *,
        pin_factory: Factory | None = None,
        dark_high: bool = True,
        hold_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.hold_s = hold_s
        self._clock = clock
        self._lock = threading.Lock()
        # Pulled towards "light": a cut cable then means "day", so the lamp stays off.
        self._device = DigitalInputDevice(pin, pull_up=not dark_high, pin_factory=pin_factory)
        self._night = bool(self._device.is_active)
        self._last_edge = clock()
        self._device.when_activated = self._edge
        self._device.when_deactivated = self._edge

    @property
    def pin(self) -> Pin:
        return self._device.pin

    def _edge(self) -> None:
        with self._lock:
            self._last_edge = self._clock()

    def is_night(self) -> bool:
        with self._lock:
            reading = bool(self._device.is_active)
            if reading != self._night and self._clock() - self._last_edge >= self.hold_s:
                self._night = reading
            return self._night

    def close(self) -> None:
        self._device.close()
