"""Distances on the ground for the station's alert rules: great-circle metres and a local flat map.

A reserve is a few tens of kilometres across, so the station works on a flat map in metres: an
equirectangular projection about a reference point (x east, y north). Within ±50 km of that point
the map's scale is off by well under 1 % (at 39° N, 0.5 % at 40 km north or south of the reference),
which is far finer than a village buffer or a GPS fix needs; `haversine_m` is the exact-enough
reference the tests compare it with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

EARTH_RADIUS_M = 6_371_008.8  # IUGG mean radius
M_PER_DEG = EARTH_RADIUS_M * math.pi / 180.0  # along a meridian (~111.2 km)


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres between two WGS 84 positions in degrees (spherical Earth)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


@dataclass(frozen=True, slots=True)
class LocalProjection:
    """A flat map in metres about (`lat0`, `lon0`): x east, y north (equirectangular; module notes)."""

    lat0: float
    lon0: float

    @property
    def m_per_deg_lon(self) -> float:
        return M_PER_DEG * math.cos(math.radians(self.lat0))

    def to_xy(self, lat: float, lon: float) -> tuple[float, float]:
        """Metres east and north of the reference point."""
        return (lon - self.lon0) * self.m_per_deg_lon, (lat - self.lat0) * M_PER_DEG

    def to_latlon(self, x: float, y: float) -> tuple[float, float]:
        """Degrees (lat, lon) of a point `x` m east and `y` m north of the reference point."""
        return self.lat0 + y / M_PER_DEG, self.lon0 + x / self.m_per_deg_lon

    def lonlat_to_xy(self, coords: NDArray[np.float64]) -> NDArray[np.float64]:
        """An (N, 2) array of (lon, lat) rows as (x, y) rows: what `shapely.transform` passes."""
        out = np.empty_like(coords, dtype=np.float64)
        out[:, 0] = (coords[:, 0] - self.lon0) * self.m_per_deg_lon
        out[:, 1] = (coords[:, 1] - self.lat0) * M_PER_DEG
        return out

    def distance_m(self, lat1: float, lon1: float, lat2: float, lon2: float) -> float:
        """Straight-line metres between two positions on this map (fine within a reserve)."""
        x1, y1 = self.to_xy(lat1, lon1)
        x2, y2 = self.to_xy(lat2, lon2)
        return math.hypot(x2 - x1, y2 - y1)
