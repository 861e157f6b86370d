"""Collar tracks and camera sites as one GeoJSON file (RFC 7946) for QGIS or any GIS.

A FeatureCollection (WGS 84, ``[longitude, latitude]`` order, no ``crs`` member, coordinates to 7
decimals) whose features say what they are in ``properties.kind``:

- ``track``: one LineString per collar through its plausible fixes in time order (outliers, by the
  rule of `gateway.export.movebank`, are left out of the line and counted), with ``collar``,
  ``individual`` (the animal at the first fix), ``first``, ``last`` (ISO 8601 UTC), ``fixes``,
  ``outliers``. A collar with a single plausible fix is a Point.
- ``fix`` (only with ``points=True``): one Point per fix with ``collar``, ``individual``, ``time``,
  ``alt``, ``hdop``, ``sats``, ``outlier``.
- ``camera``: one Point per camera of a unit that reported its position, with ``unit``, ``camera``,
  ``first_capture``, ``last_capture``, ``captures``.

Features come tracks first (by collar), then fix points (by collar and time), then cameras (by unit
and camera), so two exports of one record are byte-identical.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.export.animals import AnimalRegistry
from gateway.export.camtrap import unit_positions
from gateway.export.filters import ExportError, ExportFilter, NothingToExport, by_track, unique_fixes
from gateway.export.movebank import MAX_SPEED_MPS, flag_outliers
from gateway.export.output import Progress, iso_millis, json_text, no_progress, write_file
from gateway.station.record import FixRow, RecordReader

DEFAULT_FILE = "uncia.geojson"


@dataclass
class GeoJsonResult:
    path: Path
    tracks: int = 0
    fixes: int = 0
    cameras: int = 0
    skipped: list[str] = field(default_factory=list)


def export_geojson(
    reader: RecordReader,
    out: str | Path,
    *,
    filters: ExportFilter | None = None,
    animals: AnimalRegistry | None = None,
    points: bool = False,
    max_speed: float = MAX_SPEED_MPS,
    progress: Progress = no_progress,
) -> GeoJsonResult:
    """Write the FeatureCollection to `out` (a file, or ``uncia.geojson`` in a folder)."""
    filters = filters or ExportFilter()
    animals = animals or AnimalRegistry()
    path = Path(out)
    if path.is_dir() or str(out).endswith(("/", "\\")):
        path = path / DEFAULT_FILE
    result = GeoJsonResult(path=path)
    tracks: list[dict[str, Any]] = []
    fix_points: list[dict[str, Any]] = []
    for track, fixes in by_track(unique_fixes(filters.fixes(reader))):
        progress(len(fixes))
        why = flag_outliers(fixes, max_speed)
        good = [f for f, w in zip(fixes, why, strict=True) if not w]
        result.fixes += len(fixes)
        if good:
            tracks.append(_track(track, good, len(fixes) - len(good), animals))
        if points:
            fix_points += [_fix_point(f, w, animals) for f, w in zip(fixes, why, strict=True)]
    cameras, result.skipped = _cameras(reader, filters)
    result.tracks, result.cameras = len(tracks), len(cameras)
    features = tracks + fix_points + cameras
    if not features:
        raise NothingToExport(f"no fixes or camera sites {filters.describe()}: nothing written")
    if path.exists() and path.is_dir():
        raise ExportError(f"{path} is a folder: give a file name for the GeoJSON (--out FILE)")
    write_file(path, json_text({"type": "FeatureCollection", "features": features}))
    return result


def _position(fix: FixRow) -> list[float]:
    return [round(fix.lon, 7), round(fix.lat, 7)]


def _track(track: str, good: list[FixRow], outliers: int, animals: AnimalRegistry) -> dict[str, Any]:
    if len(good) == 1:
        geometry: dict[str, Any] = {"type": "Point", "coordinates": _position(good[0])}
    else:
        geometry = {"type": "LineString", "coordinates": [_position(f) for f in good]}
    return {
        "type": "Feature",
        "geometry": geometry,
        "properties": {
            "kind": "track",
            "collar": track,
            "individual": animals.individual(track, good[0].time),
            "first": iso_millis(good[0].time),
            "last": iso_millis(good[-1].time),
            "fixes": len(good),
            "outliers": outliers,
        },
    }


def _fix_point(fix: FixRow, why: str, animals: AnimalRegistry) -> dict[str, Any]:
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": _position(fix)},
        "properties": {
            "kind": "fix",
            "collar": fix.track,
            "individual": animals.individual(fix.track, fix.time),
            "time": iso_millis(fix.time),
            "alt": None if fix.alt is None else round(fix.alt, 1),
            "hdop": None if fix.hdop is None else round(fix.hdop, 2),
            "sats": fix.sats,
            "outlier": bool(why),
        },
    }


def _cameras(reader: RecordReader, filters: ExportFilter) -> tuple[list[dict[str, Any]], list[str]]:
    positions = unit_positions(reader)
    spans: dict[tuple[str, str], list[float]] = defaultdict(lambda: [float("inf"), float("-inf"), 0])
    for capture in filters.captures(reader):
        span = spans[(capture["unit"], capture["camera"] or "camera")]
        span[0] = min(span[0], capture["start"])
        span[1] = max(span[1], capture["end"] or capture["start"])
        span[2] += 1
    features, skipped = [], []
    for (unit, camera), (first, last, count) in sorted(spans.items()):
        if unit not in positions:
            skipped.append(f"{unit}/{camera}: no position reported, not placed on the map")
            continue
        lat, lon = positions[unit]
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [round(lon, 7), round(lat, 7)]},
                "properties": {
                    "kind": "camera",
                    "unit": unit,
                    "camera": camera,
                    "first_capture": iso_millis(first),
                    "last_capture": iso_millis(last),
                    "captures": int(count),
                },
            }
        )
    return features, skipped
