"""Collar fixes as Movebank files: a location CSV and its reference-data CSV.

``movebank-locations.csv`` imports into a Movebank study as "GPS data" with no column to map by
hand: every header is a Movebank attribute name (Movebank Attribute Dictionary, the same names the
``move2`` R package reads), except two ``uncia:`` columns Movebank offers to keep as custom
attributes. One row per fix, sorted by collar then time:

| column | what | unit |
| --- | --- | --- |
| ``timestamp`` | the GPS time of the fix, ``yyyy-MM-dd HH:mm:ss.SSS`` | UTC |
| ``location-long``, ``location-lat`` | WGS 84, 7 decimals (~1 cm) | degrees |
| ``height-above-msl`` | GGA altitude (above the geoid, i.e. mean sea level) | m |
| ``ground-speed``, ``heading`` | from RMC/VTG (knots converted at the unit) | m/s, degrees true |
| ``gps:hdop``, ``gps:satellite-count`` | fix quality | |
| ``gps:fix-type-raw`` | the NMEA GGA quality code (1 GPS, 2 DGPS, 4 RTK, 6 estimated) | |
| ``battery-charge-percent``, ``lora:rssi``, ``lora:snr`` | collar battery; radio at the station | %, dBm, dB |
| ``sensor-type`` | always ``gps`` | |
| ``tag-local-identifier`` | the collar (``collar-7``) | |
| ``individual-local-identifier`` | the animal wearing it then (see `gateway.export.animals`) | |
| ``algorithm-marked-outlier``, ``outlier-comments`` | the impossible-speed flag below, and why | |
| ``uncia:receiver`` | the station unit that heard the fix | |
| ``uncia:clock-source`` | the receiving unit's clock (``gps``/``ntp``/``unsynced``) | |

**Outliers are flagged, never deleted** (``algorithm-marked-outlier`` = ``true``): walking a collar's
fixes in time order, a fix is an outlier when reaching it from the last good fix needs more than
``max_speed`` (25 m/s by default, about twice a snow leopard's sprint and far above its travel
speed). The walk starts at the first fix that is consistent (within the limit) with one of the next
two, so a wrong first fix cannot condemn the whole track; fixes before that start are flagged too.
Distances are great-circle (haversine) on the mean Earth radius; two fixes with the same time and
more than a metre apart count as infinitely fast. The rule runs on the exported fixes only (a
``--since`` cut changes the first neighbour).

``movebank-reference-data.csv`` has one row per collar fitting (``animal-id``, ``tag-id``,
``animal-taxon`` *Panthera uncia*, sex, nickname, life stage, ``deploy-on-date``, ``deploy-off-date``,
``deployment-comments``) from the deployments file, or a row with only ids and taxon for a collar
the file does not list (Movebank then takes all of that collar's fixes as that individual's).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gateway.export.animals import AnimalRegistry
from gateway.export.filters import ExportFilter, NothingToExport, by_track, unique_fixes
from gateway.export.output import (
    Progress,
    csv_text,
    iso_millis,
    movebank_time,
    no_progress,
    number,
    out_dir,
    write_file,
)
from gateway.station.record import FixRow, RecordReader

LOCATIONS_FILE = "movebank-locations.csv"
REFERENCE_FILE = "movebank-reference-data.csv"
MAX_SPEED_MPS = 25.0
EARTH_RADIUS_M = 6_371_008.8  # IUGG mean radius

LOCATION_COLUMNS = (
    "timestamp",
    "location-long",
    "location-lat",
    "height-above-msl",
    "ground-speed",
    "heading",
    "gps:hdop",
    "gps:satellite-count",
    "gps:fix-type-raw",
    "battery-charge-percent",
    "lora:rssi",
    "lora:snr",
    "sensor-type",
    "tag-local-identifier",
    "individual-local-identifier",
    "algorithm-marked-outlier",
    "outlier-comments",
    "uncia:receiver",
    "uncia:clock-source",
)
REFERENCE_COLUMNS = (
    "animal-id",
    "tag-id",
    "animal-taxon",
    "animal-sex",
    "animal-nickname",
    "animal-life-stage",
    "deploy-on-date",
    "deploy-off-date",
    "deployment-comments",
)


@dataclass
class MovebankResult:
    """What was written: the two files, and counts for the summary line."""

    locations: Path
    reference: Path
    fixes: int = 0
    outliers: int = 0
    duplicates: int = 0
    tags: list[str] = field(default_factory=list)


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres (haversine). Hand-written: a dozen lines, where pyproj would
    be a large dependency for sub-percent accuracy an outlier rule does not need."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def implied_speed(a: FixRow, b: FixRow) -> float:
    """Metres per second needed to go from fix `a` to fix `b`."""
    metres = distance_m(a.lat, a.lon, b.lat, b.lon)
    seconds = abs(b.time - a.time)
    if seconds == 0:
        return 0.0 if metres < 1.0 else math.inf
    return metres / seconds


def flag_outliers(fixes: Sequence[FixRow], max_speed: float = MAX_SPEED_MPS) -> list[str]:
    """For one collar's fixes in time order: ``""`` for a plausible fix, else why it is an outlier
    (the rule is in the module notes)."""
    n = len(fixes)
    why = [""] * n
    if n == 0:
        return why
    start = n - 1
    for i in range(n):
        ahead = [j for j in (i + 1, i + 2) if j < n]
        if not ahead or any(implied_speed(fixes[i], fixes[j]) <= max_speed for j in ahead):
            start = i
            break
    for i in range(start):
        speed = implied_speed(fixes[i], fixes[i + 1])
        why[i] = f"{_speed(speed)} m/s to the next fix (limit {number(max_speed, 1)} m/s)"
    anchor = fixes[start]
    for i in range(start + 1, n):
        speed = implied_speed(anchor, fixes[i])
        if speed > max_speed:
            why[i] = (
                f"{_speed(speed)} m/s from the good fix at {iso_millis(anchor.time)} "
                f"(limit {number(max_speed, 1)} m/s)"
            )
        else:
            anchor = fixes[i]
    return why


def location_row(fix: FixRow, individual: str, outlier: str) -> list[str]:
    return [
        movebank_time(fix.time),
        number(fix.lon, 7),
        number(fix.lat, 7),
        number(fix.alt, 1),
        number(fix.speed, 2),
        number(fix.course, 1),
        number(fix.hdop, 2),
        number(fix.sats, 0),
        number(fix.quality, 0),
        number(fix.battery, 1),
        number(fix.rssi, 1),
        number(fix.snr, 1),
        "gps",
        fix.track,
        individual,
        "true" if outlier else "false",
        outlier,
        fix.unit,
        fix.clock or "",
    ]


def export_movebank(
    reader: RecordReader,
    out: str | Path,
    *,
    filters: ExportFilter | None = None,
    animals: AnimalRegistry | None = None,
    max_speed: float = MAX_SPEED_MPS,
    progress: Progress = no_progress,
) -> MovebankResult:
    """Write ``movebank-locations.csv`` and ``movebank-reference-data.csv`` into folder `out`.

    Raises `NothingToExport` (writing nothing) when no fix matches `filters`.
    """
    filters = filters or ExportFilter()
    animals = animals or AnimalRegistry()
    folder = out_dir(Path(out))
    result = MovebankResult(locations=folder / LOCATIONS_FILE, reference=folder / REFERENCE_FILE)
    rows: list[list[str]] = []
    read = 0

    def counted(fixes):  # progress in batches: a call per row would cost more than the row
        nonlocal read
        for fix in fixes:
            read += 1
            if read % 500 == 0:
                progress(500)
            yield fix

    for track, fixes in by_track(unique_fixes(counted(filters.fixes(reader)))):
        result.tags.append(track)
        for fix, why in zip(fixes, flag_outliers(fixes, max_speed), strict=True):
            rows.append(location_row(fix, animals.individual(track, fix.time), why))
            result.outliers += bool(why)
    progress(read % 500)
    result.fixes = len(rows)
    result.duplicates = read - len(rows)
    if not rows:
        raise NothingToExport(f"no collar fixes {filters.describe()}: nothing written")
    reference = []
    for track in result.tags:
        for item in animals.deployments(track):
            reference.append(
                [
                    item.animal,
                    item.tag,
                    item.taxon,
                    item.sex,
                    item.nickname,
                    item.life_stage,
                    "" if item.on is None else movebank_time(item.on),
                    "" if item.off is None else movebank_time(item.off),
                    item.comments,
                ]
            )
    write_file(result.locations, csv_text(LOCATION_COLUMNS, rows))
    write_file(result.reference, csv_text(REFERENCE_COLUMNS, reference))
    return result


def _speed(value: float) -> str:
    return "infinite" if math.isinf(value) else number(value, 1)
