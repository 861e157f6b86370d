"""Mortality / collar drop-off: has a collar's position stopped changing for hours?

A dead animal (or a collar that fell off) lies still, but its GPS fixes do not: they scatter 10-30 m
around the spot, with now and then a fix 100 m off (multipath in a gully, a poor sky view). A live
snow leopard mostly moves kilometres a day, but **it also rests**: a day bed on a ledge for a few
hours, and at a kill (a blue sheep, an ibex, a yak calf) it feeds and rests within tens of metres for
one to three days. Position alone cannot tell that from death — a collar's activity sensor could,
and ours report none — so this rule trades the two errors off with its two settings:

- ``mortality_radius_m`` (default 50 m): fixes within this distance of the cluster's robust centre
  count as "not moved". Smaller misses a dead collar with a noisy sky view; larger catches an animal
  shifting between its kill and a bed nearby.
- ``mortality_h`` (default 12 h): how long they must stay so. Twelve hours is longer than any day
  bed, so what it raises is a dead collar, a dropped collar **or a leopard at a kill** — all worth a
  visit (kill sites are what field teams investigate anyway) — and it finds a poached or snared
  animal within half a day. 24-48 h raises almost only deaths and drop-offs, a day or two later.

How a fix is judged (`StationaryWatch.add`), in metres on a flat map about the cluster:

- The **cluster** is the run of fixes since the collar last moved. Its centre is the coordinate-wise
  median of its recent fixes, so a few bad fixes do not drag it.
- A fix within the radius of the centre joins the cluster. One a little beyond it (up to
  ``OUTSIDE_FACTOR`` × the radius, 75 m by default) is ambiguous: it neither joins nor counts as a
  move.
- A fix **clearly outside** (beyond ``OUTSIDE_FACTOR`` × the radius) is held back: if the next fix is
  not clearly outside too, it was noise and is dropped. The collar has **moved** (the cluster ends, a
  raised alert clears) when two fixes in a row are clearly outside, or one lands beyond
  ``FAR_FACTOR`` × the radius (500 m by default: more than a collar's GPS errs by but rarely, and a
  walking leopard's usual step between fixes). A move shorter than that clears one fix later.
- Why not clear on the first fix outside: a glitch would clear a real mortality, and the alert
  would come back only after another ``mortality_h`` with a new start. Simulated dead collars (GPS
  error σ 12 m per axis, 2 % multipath fixes 50-200 m off, a fix every 30 min) clear falsely about
  once in 15 collar-weeks this way, against twice a week when one fix beyond 150 m cleared.
- The collar is **still** when the cluster spans at least ``mortality_h`` of fix time, has taken at
  least ``MIN_FIXES`` fixes, and at least ``INSIDE_FRACTION`` of its fixes from the last ``mortality_h``
  lie within the radius of their median centre (an animal creeping a little between fixes, always
  near the last ones, fails this).

Memory per collar is bounded: only the cluster's fixes from the last ``mortality_h`` (plus the one
just before, which proves the span) are kept, thinned to at most ``MAX_FIXES``, with the cluster's
start as a single time. Fixes must come in time order: one not newer than the latest is ignored.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway.station.geo import LocalProjection, haversine_m

OUTSIDE_FACTOR = 1.5
FAR_FACTOR = 10.0
MIN_FIXES = 4
INSIDE_FRACTION = 0.9
MAX_FIXES = 240


@dataclass(frozen=True, slots=True)
class StillCluster:
    """A collar that has not moved: where (median centre, degrees), since when, and how tightly
    (`radius_m` holds `INSIDE_FRACTION` of the recent fixes, `max_m` all of them)."""

    lat: float
    lon: float
    since: datetime
    last: datetime
    radius_m: float
    max_m: float
    fixes: int

    @property
    def hours(self) -> float:
        return (self.last - self.since).total_seconds() / 3600.0


@dataclass(frozen=True, slots=True)
class _P:
    time: datetime
    lat: float
    lon: float


class StationaryWatch:
    """One collar's mortality watch (module notes). `add` each fix in time order; it returns
    ``(moved, still)``: whether this fix ended the previous cluster, and the cluster if the collar
    now counts as still (None otherwise)."""

    def __init__(self, radius_m: float, hours: float) -> None:
        self.radius_m = radius_m
        self.window = timedelta(hours=hours)
        self.points: list[_P] = []
        self.start: datetime | None = None  # the cluster's first fix (may be older than `points`)
        self.count = 0  # fixes that joined the cluster since `start`
        self.held: _P | None = None  # a fix outside the cluster, waiting for the next one

    def seed(self, lat: float, lon: float, since: datetime) -> None:
        """Start from a cluster known before a restart (a restored alert's centre and start)."""
        self.points = [_P(since, lat, lon)]
        self.start, self.count = since, MIN_FIXES  # it was still: known, not counted again
        self.held = None

    def centre(self) -> tuple[float, float] | None:
        if not self.points:
            return None
        return statistics.median(p.lat for p in self.points), statistics.median(p.lon for p in self.points)

    def add(self, time: datetime, lat: float, lon: float) -> tuple[bool, StillCluster | None]:
        p = _P(time, lat, lon)
        latest = self.held or (self.points[-1] if self.points else None)
        if latest is not None and time <= latest.time:
            return False, None  # older than what the cluster holds (e.g. replayed before a restored start)
        centre = self.centre()
        if centre is None:
            self.points, self.start, self.count = [p], time, 1
            return False, None
        d = LocalProjection(*centre).distance_m(centre[0], centre[1], lat, lon)
        if d > FAR_FACTOR * self.radius_m or (d > OUTSIDE_FACTOR * self.radius_m and self.held is not None):
            self._restart(p)
            return True, None
        if d > OUTSIDE_FACTOR * self.radius_m:
            self.held = p
            return False, None
        self.held = None  # the fix held back was noise
        if d > self.radius_m:
            return False, None  # ambiguous: neither in the cluster nor a move
        self._keep(p)
        return False, self.still()

    def _restart(self, p: _P) -> None:
        # A held fix close to this one probably marks where the animal stopped next: keep it.
        held = self.held
        near = held is not None and haversine_m(p.lat, p.lon, held.lat, held.lon) <= self.radius_m
        self.points = [held, p] if near and held is not None else [p]
        self.start, self.count = self.points[0].time, len(self.points)
        self.held = None

    def _keep(self, p: _P) -> None:
        self.points.append(p)
        self.count += 1
        horizon = p.time - self.window
        drop = 0
        while drop + 1 < len(self.points) and self.points[drop + 1].time <= horizon:
            drop += 1  # keep the last fix at or before the horizon: it proves the span
        if drop:
            del self.points[:drop]
        if len(self.points) > MAX_FIXES:
            # Fixes every minute would keep hundreds: drop every other one but the first and last,
            # which keeps the span and the spread of the rest.
            self.points = [self.points[0], *self.points[1:-1:2], self.points[-1]]

    def still(self) -> StillCluster | None:
        """The cluster, if the collar counts as still now (module notes)."""
        if self.start is None or self.count < MIN_FIXES:
            return None
        last = self.points[-1].time
        if last - self.start < self.window or last - self.points[0].time < self.window:
            return None
        lat, lon = self.centre() or (0.0, 0.0)
        proj = LocalProjection(lat, lon)
        distances = sorted(proj.distance_m(lat, lon, q.lat, q.lon) for q in self.points)
        k = max(0, math.ceil(INSIDE_FRACTION * len(distances)) - 1)
        if distances[k] > self.radius_m:
            return None
        return StillCluster(
            lat, lon, self.start, last, round(distances[k], 1), round(distances[-1], 1), self.count
        )
