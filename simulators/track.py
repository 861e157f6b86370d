"""A moving snow leopard in the Helan Mountains: the ground truth the simulated collar reports.

The model is a correlated random walk broken into bouts, the shape real collar tracks show: long
resting bouts (the animal lies up on a ledge for an hour or more and the fixes pile up on one spot)
alternate with travel bouts at a walking pace of a few km/h, with short faster bursts (a stalk or a
chase). A home range pulls the animal back towards its centre, and the Helan box is a hard wall: the
animal never leaves it, whatever the seed or the time step.

Everything is driven by simulated time and a `random.Random` passed in: the same seed, start and
sequence of `advance` steps always give the same track, and nothing sleeps or reads the wall clock.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class Box:
    """A latitude/longitude rectangle in degrees (WGS 84)."""

    south: float
    north: float
    west: float
    east: float

    def contains(self, lat: float, lon: float) -> bool:
        return self.south <= lat <= self.north and self.west <= lon <= self.east


# The study area: the Helan Mountains on the Ningxia / Inner Mongolia border.
HELAN_BOX = Box(south=38.5, north=39.2, west=105.8, east=106.2)
# Terrain of the box spans roughly the desert foot (~1,400 m) to the main peaks (~3,500 m).
ALT_MIN_M = 1400.0
ALT_MAX_M = 3500.0

M_PER_DEG_LAT = 111_320.0
# Keep this far inside the box so a fix with GPS-sized rounding is still inside it.
_BOX_MARGIN_M = 150.0
# Longest stretch of travel taken in one straight step; shorter steps come from the caller's dt.
_MAX_STEP_S = 15.0

# Bout and movement parameters (rough figures from published snow-leopard collar studies).
REST_MEAN_S = 45 * 60.0
TRAVEL_MEAN_S = 20 * 60.0
CRUISE_MEDIAN_MPS = 0.8  # ~2.9 km/h
BURST_EVERY_S = 10 * 60.0  # mean travel time between bursts
BURST_MPS = (3.0, 7.0)
BURST_S = (5.0, 30.0)
TURN_SIGMA_DEG = 3.0  # heading diffusion per square-root second of travel
HOME_RADIUS_M = 6000.0


@dataclass(frozen=True, slots=True)
class TrackPoint:
    """Where the animal truly is at `time`: degrees, metres above sea level, m/s, degrees true."""

    time: datetime
    lat: float
    lon: float
    alt: float
    speed_mps: float
    course_deg: float


def terrain_alt(lat: float, lon: float) -> float:
    """A smooth stand-in for the Helan relief: a NNE-running main ridge with side spurs, in metres."""
    ridge_lon = 105.92 + 0.18 * (lat - HELAN_BOX.south) / (HELAN_BOX.north - HELAN_BOX.south)
    across = (lon - ridge_lon) / 0.09
    ridge = math.exp(-across * across)
    spurs = 0.5 + 0.5 * math.sin(lat * 61.0) * math.cos(lon * 47.0)
    alt = ALT_MIN_M + (ALT_MAX_M - ALT_MIN_M) * (0.78 * ridge + 0.22 * ridge * spurs)
    return min(ALT_MAX_M, max(ALT_MIN_M, alt))


def random_start(rng: random.Random, box: Box = HELAN_BOX) -> tuple[float, float]:
    """A plausible starting point well inside `box` (its middle 60 %), drawn from `rng`."""
    lat = box.south + (0.2 + 0.6 * rng.random()) * (box.north - box.south)
    lon = box.west + (0.2 + 0.6 * rng.random()) * (box.east - box.west)
    return lat, lon


def _wrap180(deg: float) -> float:
    return (deg + 180.0) % 360.0 - 180.0


class Track:
    """One collared animal. Call `advance(dt_seconds)` to move it on and get its new `TrackPoint`.

    ``home`` (default: the start) is the centre of its home range; ``box`` is the area it can never
    leave. Several animals are several `Track` objects with their own seeds and starts.
    """

    def __init__(
        self,
        rng: random.Random,
        start: tuple[float, float],
        start_time: datetime,
        *,
        home: tuple[float, float] | None = None,
        box: Box = HELAN_BOX,
        home_radius_m: float = HOME_RADIUS_M,
    ) -> None:
        if start_time.tzinfo is None:
            raise ValueError("start_time must be timezone-aware (UTC), e.g. datetime(..., tzinfo=UTC)")
        lat, lon = start
        if not box.contains(lat, lon):
            raise ValueError(f"start {lat:.5f}, {lon:.5f} is outside the area {box}")
        self._rng = rng
        self._box = box
        self._home = home if home is not None else (lat, lon)
        self._home_radius = home_radius_m
        self._start_time = start_time
        self._elapsed = 0.0
        self._inner_box = self._inner()
        self._lat, self._lon = self._clamp(lat, lon)
        self._heading = rng.uniform(0.0, 360.0)
        self._speed = 0.0  # walking pace, wandering around the bout's cruise speed
        self._now_speed = 0.0  # what a GPS would see right now: the pace, or a burst
        # Collars are usually deployed on a resting or sedated animal: start with a rest bout.
        self._resting = True
        self._bout_left = rng.expovariate(1.0 / REST_MEAN_S)
        self._cruise = CRUISE_MEDIAN_MPS
        self._burst_left = 0.0
        self._burst_speed = 0.0

    @property
    def home(self) -> tuple[float, float]:
        return self._home

    @property
    def resting(self) -> bool:
        return self._resting

    @property
    def point(self) -> TrackPoint:
        """The animal's current position (no time passes)."""
        return TrackPoint(
            time=self._start_time + timedelta(seconds=self._elapsed),
            lat=self._lat,
            lon=self._lon,
            alt=terrain_alt(self._lat, self._lon),
            speed_mps=0.0 if self._resting else self._now_speed,
            course_deg=self._heading % 360.0,
        )

    def advance(self, dt_seconds: float) -> TrackPoint:
        """Let `dt_seconds` of simulated time pass and return where the animal is then."""
        if dt_seconds < 0:
            raise ValueError(f"time only moves forward: dt_seconds={dt_seconds}")
        left = float(dt_seconds)
        while left > 0.0:
            if self._bout_left <= 0.0:
                self._next_bout()
            step = min(left, self._bout_left)
            if self._resting:
                # Nothing moves while the animal lies up, so a whole rest can pass in one step.
                self._bout_left -= step
            else:
                step = min(step, _MAX_STEP_S)
                self._travel(step)
                self._bout_left -= step
            left -= step
            self._elapsed += step
        return self.point

    def _next_bout(self) -> None:
        rng = self._rng
        self._resting = not self._resting
        if self._resting:
            self._bout_left = max(120.0, rng.expovariate(1.0 / REST_MEAN_S))
        else:
            self._bout_left = max(60.0, rng.expovariate(1.0 / TRAVEL_MEAN_S))
            self._cruise = min(1.8, max(0.3, CRUISE_MEDIAN_MPS * math.exp(rng.gauss(0.0, 0.35))))
            self._speed = self._cruise
            self._burst_left = 0.0
            # Setting off again: often a fresh direction, biased homewards when far out.
            self._heading += rng.gauss(0.0, 60.0)

    def _travel(self, h: float) -> None:
        rng = self._rng
        if self._burst_left > 0.0:
            self._burst_left -= h
            speed = self._burst_speed
        else:
            if rng.random() < 1.0 - math.exp(-h / BURST_EVERY_S):
                self._burst_left = rng.uniform(*BURST_S)
                self._burst_speed = rng.uniform(*BURST_MPS)
            # Walking pace wanders around the bout's cruise speed (mean-reverting).
            pull = min(1.0, h / 30.0)
            self._speed += (self._cruise - self._speed) * pull + rng.gauss(0.0, 0.08 * math.sqrt(h))
            self._speed = min(2.5, max(0.1, self._speed))
            speed = self._burst_speed if self._burst_left > 0.0 else self._speed
        self._heading += rng.gauss(0.0, TURN_SIGMA_DEG * math.sqrt(h))
        self._steer_home(h)
        self._move(speed * h)
        self._now_speed = speed

    def _steer_home(self, h: float) -> None:
        north, east = self._offset_m(self._home)
        dist = math.hypot(north, east)
        if dist <= self._home_radius:
            return
        to_home = math.degrees(math.atan2(-east, -north))
        strength = min(1.0, (dist - self._home_radius) / self._home_radius)
        self._heading += _wrap180(to_home - self._heading) * strength * (1.0 - math.exp(-h / 60.0))

    def _offset_m(self, origin: tuple[float, float]) -> tuple[float, float]:
        """(north, east) metres of the animal from `origin`; flat-earth is fine over a few km."""
        north = (self._lat - origin[0]) * M_PER_DEG_LAT
        east = (self._lon - origin[1]) * M_PER_DEG_LAT * math.cos(math.radians(self._lat))
        return north, east

    def _move(self, metres: float) -> None:
        rad = math.radians(self._heading)
        lat = self._lat + metres * math.cos(rad) / M_PER_DEG_LAT
        lon = self._lon + metres * math.sin(rad) / (M_PER_DEG_LAT * math.cos(math.radians(self._lat)))
        south, north, west, east = self._inner_box
        # The box edge is a wall (cliff, fence, desert): bounce off it like light off a mirror.
        if not south <= lat <= north:
            self._heading = 180.0 - self._heading
        if not west <= lon <= east:
            self._heading = -self._heading
        self._heading %= 360.0
        self._lat, self._lon = self._clamp(lat, lon)

    def _inner(self) -> tuple[float, float, float, float]:
        box = self._box
        dlat = _BOX_MARGIN_M / M_PER_DEG_LAT
        dlon = _BOX_MARGIN_M / (M_PER_DEG_LAT * math.cos(math.radians(max(abs(box.south), abs(box.north)))))
        # A box narrower than twice the margin keeps its centre line only.
        mid_lat, mid_lon = (box.south + box.north) / 2, (box.west + box.east) / 2
        return (
            min(box.south + dlat, mid_lat),
            max(box.north - dlat, mid_lat),
            min(box.west + dlon, mid_lon),
            max(box.east - dlon, mid_lon),
        )

    def _clamp(self, lat: float, lon: float) -> tuple[float, float]:
        south, north, west, east = self._inner_box
        return min(north, max(south, lat)), min(east, max(west, lon))
