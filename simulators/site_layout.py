"""Who stands where on the simulated field site (`simulators.field_site`): the station, the collars
and their animals, the camera trails; and the time-lapse the collars run in.

Pure: everything is drawn from the seed and the start time given. The site lies in the example
reserve (deploy/reserve.example.geojson): the station inside it, east of the main ridge, one
collar by Suyukou village on the reserve's eastern edge, one collar dropped, the rest within ~6 km of
the station (a LoRa link of a few km in mountains), camera trails next to the station.
"""

from __future__ import annotations

import dataclasses
import math
import random
from datetime import datetime, timedelta
from typing import Any

from edge.lora.modem import RadioSettings
from simulators.collar import Collar
from simulators.track import Track, TrackPoint, terrain_alt

STATION_AT = (38.74, 106.12)  # the station's mast, inside the example reserve
MAST_M = 10.0
COLLAR_SCHEDULE_S = 900.0  # a collar's real fix interval
FIRST_COLLAR_ID = 101
VILLAGE_COLLAR_AT = (38.718, 106.172)  # ~600 m west of Suyukou village, on the reserve's edge
DROPPED_COLLAR_AT = (38.76, 106.08)
TRAIL_AT = (38.752, 106.105)  # the first camera trail; later pairs stand 1.5 km apart
RADIO = RadioSettings(spreading_factor=9)  # what deploy/demo/gateway.toml sets on the station modem


class TimeLapseTrack:
    """An animal's track seen in time-lapse: it moves `speedup` times faster than the clock its points
    are stamped with, which starts at the track's own start time.

    ``advance_scale`` multiplies each step: 1 when the caller already runs in animal time (a
    `CollarFleet` paced at `speedup`), `speedup` when it steps in wall seconds (a `GpsSimulator`).
    ``clock_start`` (default: the track's time now) is the stamp of the track's current point.
    """

    def __init__(
        self, track: Any, speedup: float, *, advance_scale: float = 1.0, clock_start: datetime | None = None
    ) -> None:
        if not speedup > 0:
            raise ValueError(f"speedup={speedup!r}: expected a positive factor")
        self.track = track
        self.speedup = speedup
        self.advance_scale = advance_scale
        self._t0: datetime = track.point.time
        self._clock_t0 = clock_start or self._t0

    @property
    def resting(self) -> bool:
        return bool(getattr(self.track, "resting", False))

    @property
    def point(self) -> TrackPoint:
        return self._stamp(self.track.point)

    def advance(self, dt_seconds: float) -> TrackPoint:
        return self._stamp(self.track.advance(dt_seconds * self.advance_scale))

    def _stamp(self, point: TrackPoint) -> TrackPoint:
        return dataclasses.replace(point, time=self._clock_t0 + (point.time - self._t0) / self.speedup)


class DroppedCollar:
    """A collar lying still (it slipped off, or the animal died): one spot, and the scatter of its GPS
    fixes around it (``sigma_m`` per axis), drawn afresh at each step."""

    def __init__(
        self, rng: random.Random, at: tuple[float, float], start_time: datetime, *, sigma_m: float = 8.0
    ):
        self.rng = rng
        self.lat, self.lon = at
        self.sigma_m = sigma_m
        self.alt = round(terrain_alt(*at), 1)
        self._point = self._scatter(start_time)

    resting = True

    @property
    def point(self) -> TrackPoint:
        return self._point

    def advance(self, dt_seconds: float) -> TrackPoint:
        self._point = self._scatter(self._point.time + timedelta(seconds=dt_seconds))
        return self._point

    def _scatter(self, t: datetime) -> TrackPoint:
        north, east = self.rng.gauss(0.0, self.sigma_m), self.rng.gauss(0.0, self.sigma_m)
        lat = self.lat + north / 111_320.0
        lon = self.lon + east / (111_320.0 * math.cos(math.radians(self.lat)))
        return TrackPoint(t, lat, lon, self.alt, 0.0, 0.0)


def on_the_move(track: Track) -> Track:
    """`track` moved on to the start of its first travel bout: collared animals start with a rest
    (they are collared asleep), which would show a newcomer still dots for the first minute."""
    while track.resting:
        track.advance(60.0)
    return track


def site_collars(n: int, seed: int, start_time: datetime, speedup: float) -> list[Collar]:
    """The site's `n` LoRa collars (ids from 101), on their real 15-minute schedule in animal time:
    the first by Suyukou village, the second dropped, the rest within ~6 km of the station, all on
    the move. Each wakes at its own minute of the quarter hour (collars deployed on different days)."""
    collars = []
    for i in range(n):
        rng = random.Random(f"uncia-site-{seed}-collar-{i}")
        if i == 1:
            track: Any = DroppedCollar(rng, DROPPED_COLLAR_AT, start_time)
        elif i == 0:
            track = on_the_move(
                Track(rng, start=VILLAGE_COLLAR_AT, start_time=start_time, home_radius_m=2500.0)
            )
        else:
            start = (STATION_AT[0] + rng.uniform(-0.045, 0.045), STATION_AT[1] + rng.uniform(-0.06, 0.04))
            track = on_the_move(Track(rng, start=start, start_time=start_time))
        collar_id = FIRST_COLLAR_ID + i
        collars.append(
            Collar(
                collar_id,
                TimeLapseTrack(track, speedup, clock_start=start_time),
                radio=dataclasses.replace(RADIO, address=collar_id),
                rng=random.Random(f"uncia-site-{seed}-radio-{i}"),
                fix_interval_s=COLLAR_SCHEDULE_S,
                first_fix_at=COLLAR_SCHEDULE_S * (0.05 + 0.9 * i / max(n, 1)),
                no_fix_prob=0.03,
            )
        )
    return collars


def camera_sites(n: int) -> list[tuple[str, str, tuple[float, float]]]:
    """(unit, partner, position) of `n` camera units: pairs on trails 1.5 km apart, the two units of a
    pair 15 m apart on either flank; an odd last unit has no partner."""
    out = []
    for i in range(n):
        pair, flank = divmod(i, 2)
        lat = TRAIL_AT[0] + 0.0135 * (pair // 4)
        lon = TRAIL_AT[1] + 0.0175 * (pair % 4) + 0.00017 * flank
        partner = i + 1 if flank == 0 else i - 1
        out.append((f"cam-{i + 1:02d}", f"cam-{partner + 1:02d}" if partner < n else "", (lat, lon)))
    return out
