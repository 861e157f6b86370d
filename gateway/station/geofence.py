"""The reserve boundary and the villages and herders' camps around it, for the station's alerts.

The boundary file (``[station] boundary``, e.g. ``deploy/reserve.example.geojson``) is a GeoJSON
FeatureCollection of Polygon or MultiPolygon features, each with two properties:

- ``name``: what staff call the place ("Suyukou village"); alerts quote it;
- ``kind``: ``"reserve"`` (a fix outside every reserve feature raises a geofence alert), or
  ``"village"`` / ``"camp"`` (a fix inside one, or within ``conflict_buffer_m`` of it, raises a
  conflict alert: early warning of human–wildlife conflict). Holes in a reserve polygon are
  enclaves that do not belong to it.

Coordinates are GeoJSON's ``[longitude, latitude]`` (WGS 84 degrees). `Geofence.load` checks the
whole file and stops at the first problem with a `GeofenceError` naming the file and the feature
(not a polygon, a kind it does not know, coordinates out of range or swapped, a boundary that crosses
itself), so a mistake is found when the station starts, not when a leopard walks past.

Distances are metres on a flat map about the reserve's centroid (`gateway.station.geo`): an
equirectangular projection, good to well under 1 % across a reserve. A check projects the fix with
two multiplications and tests it against prepared shapely 2 geometries; only fixes near a village or
camp (inside its buffer's bounding box) pay for an exact distance.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import shapely
from shapely.geometry import MultiPolygon, Point, Polygon, mapping, shape

from gateway.station.geo import LocalProjection

if TYPE_CHECKING:
    from edge.config import StationSettings

KINDS = ("reserve", "village", "camp")
CONFLICT_KINDS = frozenset({"village", "camp"})
# The buffer polygons only pre-select zones (their round corners are chords, up to ~0.5 % short of
# the true distance); the decision is the exact distance, so the pre-selection is a little wider.
_PRESELECT_MARGIN = 1.02
_PRESELECT_EXTRA_M = 5.0


class GeofenceError(ValueError):
    """The boundary file is unusable; the message names the file, the feature and what to fix."""


@dataclass(frozen=True, slots=True)
class Zone:
    """One place from the boundary file: its name, kind and outline (lon/lat degrees)."""

    name: str
    kind: str
    geometry: Polygon | MultiPolygon


@dataclass(frozen=True, slots=True)
class ZoneHit:
    """A village or camp near a fix: `distance_m` from its edge (0 when `inside`)."""

    name: str
    kind: str
    distance_m: float
    inside: bool


@dataclass(frozen=True, slots=True)
class GeofenceCheck:
    """Where a fix is: inside the reserve or not (`reserve` names the reserve it is in, or the nearest
    one; `outside_m` is how far outside its boundary), and the nearest village or camp within the
    conflict buffer (None when it is clear of every buffer)."""

    inside_reserve: bool
    reserve: str
    outside_m: float
    conflict: ZoneHit | None


@dataclass(slots=True)
class _Projected:
    zone: Zone
    geom: Any  # the zone on the flat map, prepared
    reach: Any = None  # conflict zones: buffer + margin on the flat map, prepared
    box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # bounds of `reach`


@dataclass
class Geofence:
    """The reserve and its conflict zones, ready to check fixes (module notes).

    ``Geofence.load(path, conflict_buffer_m=...)`` reads a boundary file; ``Geofence(zones, ...)``
    takes zones built in code. ``check(lat, lon)`` answers in about ten microseconds.
    """

    zones: Sequence[Zone]
    conflict_buffer_m: float = 1000.0
    source: str = "<zones>"
    projection: LocalProjection = field(init=False)
    _reserves: list[_Projected] = field(init=False, repr=False)
    _conflicts: list[_Projected] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not math.isfinite(self.conflict_buffer_m) or self.conflict_buffer_m < 0:
            raise GeofenceError(f"conflict buffer {self.conflict_buffer_m!r} m: use 0 or more metres")
        reserves = [z for z in self.zones if z.kind == "reserve"]
        if not reserves:
            raise GeofenceError(
                f"{self.source}: no feature with properties.kind 'reserve'; add the reserve boundary"
                " (villages and camps alone cannot tell a fix that left the reserve)"
            )
        centre = shapely.union_all([z.geometry for z in reserves]).centroid
        self.projection = LocalProjection(lat0=centre.y, lon0=centre.x)
        self._reserves = [_Projected(z, self._flat(z.geometry)) for z in reserves]
        self._conflicts = []
        reach_m = self.conflict_buffer_m * _PRESELECT_MARGIN + _PRESELECT_EXTRA_M
        for z in self.zones:
            if z.kind in CONFLICT_KINDS:
                flat = self._flat(z.geometry)
                reach = flat.buffer(reach_m)
                shapely.prepare(reach)
                self._conflicts.append(_Projected(z, flat, reach, tuple(reach.bounds)))

    def _flat(self, geom: Polygon | MultiPolygon) -> Any:
        flat = shapely.transform(geom, self.projection.lonlat_to_xy)
        shapely.prepare(flat)
        return flat

    @classmethod
    def load(cls, path: str | Path, *, conflict_buffer_m: float = 1000.0) -> Geofence:
        """Read and check a boundary file (module notes); `GeofenceError` says what is wrong."""
        where = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise GeofenceError(f"boundary file {where}: cannot read it ({exc.strerror or exc})") from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise GeofenceError(
                f"boundary file {where}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
            ) from exc
        return cls(parse_zones(data, where), conflict_buffer_m=conflict_buffer_m, source=where)

    @classmethod
    def from_settings(cls, settings: StationSettings) -> Geofence | None:
        """The geofence of ``[station] boundary`` with its ``conflict_buffer_m``; None without a file."""
        if not settings.boundary:
            return None
        return cls.load(settings.boundary, conflict_buffer_m=settings.conflict_buffer_m)

    def check(self, lat: float, lon: float) -> GeofenceCheck:
        """Where the fix at (`lat`, `lon`) degrees is (see `GeofenceCheck`)."""
        x, y = self.projection.to_xy(lat, lon)
        inside_reserve, reserve, outside_m = False, self._reserves[0].zone.name, math.inf
        for r in self._reserves:
            if shapely.contains_xy(r.geom, x, y):
                inside_reserve, reserve, outside_m = True, r.zone.name, 0.0
                break
        point: Point | None = None
        if not inside_reserve:
            point = Point(x, y)
            for r in self._reserves:
                d = float(shapely.distance(r.geom, point))
                if d < outside_m:
                    reserve, outside_m = r.zone.name, d
        return GeofenceCheck(inside_reserve, reserve, outside_m, self._nearest_conflict(x, y, point))

    def _nearest_conflict(self, x: float, y: float, point: Point | None) -> ZoneHit | None:
        best: ZoneHit | None = None
        for c in self._conflicts:
            x0, y0, x1, y1 = c.box
            if not (x0 <= x <= x1 and y0 <= y <= y1) or not shapely.contains_xy(c.reach, x, y):
                continue
            if shapely.contains_xy(c.geom, x, y):
                distance, inside = 0.0, True
            else:
                point = point if point is not None else Point(x, y)
                distance, inside = float(shapely.distance(c.geom, point)), False
            if distance <= self.conflict_buffer_m and (best is None or distance < best.distance_m):
                best = ZoneHit(c.zone.name, c.zone.kind, round(distance, 1), inside)
        return best

    def geojson(self) -> dict[str, Any]:
        """The checked zones as a GeoJSON FeatureCollection (lon/lat), e.g. for the staff map."""
        return {
            "type": "FeatureCollection",
            "features": [
                {
                    "type": "Feature",
                    "properties": {"name": z.name, "kind": z.kind},
                    "geometry": mapping(z.geometry),
                }
                for z in self.zones
            ],
        }

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) in degrees around every zone: the map's extent."""
        return tuple(shapely.union_all([z.geometry for z in self.zones]).bounds)  # type: ignore[return-value]


# --- reading the file ------------------------------------------------------------------------------


def parse_zones(data: Any, where: str = "<geojson>") -> list[Zone]:
    """The zones of a parsed GeoJSON document (a FeatureCollection, or one Feature), checked."""
    if isinstance(data, Mapping) and data.get("type") == "Feature":
        features: Any = [data]
    elif isinstance(data, Mapping) and data.get("type") == "FeatureCollection":
        features = data.get("features")
        if not isinstance(features, list):
            raise GeofenceError(f"boundary file {where}: 'features' must be a list of Feature objects")
    else:
        found = data.get("type") if isinstance(data, Mapping) else type(data).__name__
        raise GeofenceError(
            f"boundary file {where}: expected a GeoJSON FeatureCollection, found {found!r}"
            " (a bare geometry has no name or kind: wrap it in a Feature with properties)"
        )
    if not features:
        raise GeofenceError(f"boundary file {where}: the FeatureCollection has no features")
    zones = [_zone(f, i, len(features), where) for i, f in enumerate(features, start=1)]
    seen: dict[str, int] = {}
    for i, z in enumerate(zones, start=1):
        if z.name in seen:
            raise GeofenceError(
                f"boundary file {where}, features {seen[z.name]} and {i}: both are named {z.name!r};"
                " give each place its own name, or make one MultiPolygon of both"
            )
        seen[z.name] = i
    return zones


def _zone(feature: Any, index: int, count: int, where: str) -> Zone:
    label = f"boundary file {where}, feature {index} of {count}"
    if not isinstance(feature, Mapping) or feature.get("type") != "Feature":
        raise GeofenceError(f"{label}: not a GeoJSON Feature object")
    props = feature.get("properties")
    props = props if isinstance(props, Mapping) else {}
    name = props.get("name")
    if not isinstance(name, str) or not name.strip():
        raise GeofenceError(f"{label}: properties.name is missing; name the place so alerts can say it")
    label = f"{label} ({name!r})"
    kind = props.get("kind")
    if kind not in KINDS:
        raise GeofenceError(f"{label}: properties.kind is {kind!r}; use one of {', '.join(map(repr, KINDS))}")
    geometry = feature.get("geometry")
    gtype = geometry.get("type") if isinstance(geometry, Mapping) else None
    if gtype not in ("Polygon", "MultiPolygon"):
        raise GeofenceError(
            f"{label}: the geometry is {gtype or 'missing'}, not a Polygon or MultiPolygon;"
            " draw the area as a closed polygon"
        )
    coords = geometry.get("coordinates")
    polygons = [coords] if gtype == "Polygon" else coords
    if not isinstance(polygons, list) or not polygons:
        raise GeofenceError(f"{label}: the {gtype} has no coordinates")
    for polygon in polygons:
        if not isinstance(polygon, list) or not polygon:
            raise GeofenceError(f"{label}: a polygon must be a list of rings (lists of [lon, lat])")
        for ring in polygon:
            _check_ring(ring, label)
    geom = shape(geometry)
    if not geom.is_valid:
        raise GeofenceError(f"{label}: {_invalid(shapely.is_valid_reason(geom))}")
    return Zone(name.strip(), kind, geom)


def _check_ring(ring: Any, label: str) -> None:
    if not isinstance(ring, list):
        raise GeofenceError(f"{label}: a ring must be a list of [lon, lat] positions")
    for pos in ring:
        if (
            not isinstance(pos, list | tuple)
            or len(pos) < 2
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in pos[:2])
            or not all(math.isfinite(v) for v in pos[:2])
        ):
            raise GeofenceError(f"{label}: position {pos!r} is not a [lon, lat] pair of numbers")
        lon, lat = pos[0], pos[1]
        if not -180.0 <= lon <= 180.0 or not -90.0 <= lat <= 90.0:
            hint = " (GeoJSON is [lon, lat]: are they swapped?)" if -90.0 <= lon <= 90.0 else ""
            raise GeofenceError(
                f"{label}: position [{lon}, {lat}] is out of range: longitude must be -180..180 and"
                f" latitude -90..90{hint}"
            )
    distinct = {(p[0], p[1]) for p in ring}
    if len(distinct) < 3:
        raise GeofenceError(
            f"{label}: a ring has {len(distinct)} distinct position(s); a polygon needs 3 or more"
        )


_AT = re.compile(r"^(?P<what>[^\[]+)\[(?P<x>[-0-9.eE+]+) (?P<y>[-0-9.eE+]+)\]")


def _invalid(reason: str) -> str:
    """GEOS's validity reason, said for the person who drew the polygon."""
    m = _AT.match(reason)
    what, at = (
        (m["what"].strip(), f" near lon {float(m['x']):.5f}, lat {float(m['y']):.5f}") if m else (reason, "")
    )
    if "self-intersection" in what.lower():
        return f"the boundary crosses itself{at} (self-intersecting); redraw it so no edges cross"
    return f"not a valid polygon: {what}{at}; redraw it (holes inside the outer ring, no edges crossing)"
