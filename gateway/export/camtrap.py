"""Camera-unit captures as a Camera Trap Data Package (Camtrap DP 1.0.2).

Four files in one folder, loadable with camtrapdp (R), Agouti, Wildlife Insights' importer or GBIF:

- ``deployments.csv``: one row per camera and place (``deploymentID`` = ``<unit>/<camera>``,
  ``locationID`` = the unit), placed where the unit's camera health reported it stands
  (``position``, kept as a history in the station record), from its first to its last exported
  capture there. A camera moved to another trail (its position changed by more than 100 m) is a new
  deployment and location, ``<unit>/<camera>@2``, ``<unit>@2``. ``timestampIssues`` is ``true`` when any of its events was
  timed by an ``unsynced`` clock (a Pi that booted without GPS or network time): its times may be
  off by anything.
- ``media.csv``: one row per image (pre-trigger frames and stills): ``mediaID`` = the image id (EXIF
  ImageUniqueID), ``timestamp`` to the second in UTC, ``filePath`` =
  ``media/<unit>/<YYYY-MM-DD>/<event>-<NNN>.jpg`` (the unit's own file layout under ``media/<unit>/``;
  copied there with ``copy_images`` when the station holds the full image, else put them there from
  the unit's card), ``filePublic`` ``false`` (camera sites of an endangered cat are sensitive),
  ``favorite`` marks the event's best still. ``captureMethod``: ``activityDetection`` for PIR and
  partner-camera triggers, ``timeLapse`` for the scheduled self-check picture, empty for a manual one.
- ``observations.csv``: one **event-level** row per capture event, ``observationType``
  ``unclassified`` (nothing is identified at the edge; classify later in Agouti/Timelapse or with a
  detector). ``eventStart``/``eventEnd`` cover every image of the event, pre-trigger frames
  included. ``observationTags`` keep what the unit knew: ``trigger:pir | night:true |
  pair:<partner unit> | pairEvent:<id> | collars:collar-7,collar-9``. A self-check picture is
  ``cameraSetupType`` ``calibration``.
- ``datapackage.json``: profile and table schemas by their official 1.0.2 URLs, ``created`` = the end
  of the newest exported event (or what the caller passes), project (``samplingDesign``
  ``targeted``, ``observationLevel`` ``["event"]``), spatial (the bounding box of the cameras),
  temporal (first and last day) and an empty ``taxonomic`` (no observation has a species yet).

A camera whose unit never reported a position cannot be a deployment (latitude and longitude are
required): its captures are left out and named in `CamtrapResult.skipped`.
"""

from __future__ import annotations

import shutil
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from gateway.export.filters import ExportError, ExportFilter, NothingToExport
from gateway.export.output import (
    Progress,
    csv_text,
    iso_date,
    iso_seconds,
    json_text,
    no_progress,
    number,
    out_dir,
    write_file,
)
from gateway.station.record import RecordReader, epoch

VERSION = "1.0.2"
BASE_URL = f"https://raw.githubusercontent.com/tdwg/camtrap-dp/{VERSION}"
PROFILE_URL = f"{BASE_URL}/camtrap-dp-profile.json"
TABLES = ("deployments", "media", "observations")

DEPLOYMENT_COLUMNS = (
    "deploymentID",
    "locationID",
    "locationName",
    "latitude",
    "longitude",
    "coordinateUncertainty",
    "deploymentStart",
    "deploymentEnd",
    "setupBy",
    "cameraID",
    "cameraModel",
    "cameraDelay",
    "cameraHeight",
    "cameraDepth",
    "cameraTilt",
    "cameraHeading",
    "detectionDistance",
    "timestampIssues",
    "baitUse",
    "featureType",
    "habitat",
    "deploymentGroups",
    "deploymentTags",
    "deploymentComments",
)
MEDIA_COLUMNS = (
    "mediaID",
    "deploymentID",
    "captureMethod",
    "timestamp",
    "filePath",
    "filePublic",
    "fileName",
    "fileMediatype",
    "exifData",
    "favorite",
    "mediaComments",
)
OBSERVATION_COLUMNS = (
    "observationID",
    "deploymentID",
    "mediaID",
    "eventID",
    "eventStart",
    "eventEnd",
    "observationLevel",
    "observationType",
    "cameraSetupType",
    "scientificName",
    "count",
    "lifeStage",
    "sex",
    "behavior",
    "individualID",
    "individualPositionRadius",
    "individualPositionAngle",
    "individualSpeed",
    "bboxX",
    "bboxY",
    "bboxWidth",
    "bboxHeight",
    "classificationMethod",
    "classifiedBy",
    "classificationTimestamp",
    "classificationProbability",
    "observationTags",
    "observationComments",
)

# What set the camera off → Camtrap DP captureMethod ("" = neither: a person pressed the button).
CAPTURE_METHODS = {
    "pir": "activityDetection",
    "pir-continued": "activityDetection",
    "pair": "activityDetection",
    "self_check": "timeLapse",
}


@dataclass
class CamtrapResult:
    """What was written, for the summary line and the tests."""

    folder: Path
    deployments: int = 0
    media: int = 0
    observations: int = 0
    skipped: list[str] = field(default_factory=list)
    images_copied: int = 0
    images_not_at_station: int = 0

    @property
    def files(self) -> list[Path]:
        return [self.folder / f"{t}.csv" for t in TABLES] + [self.folder / "datapackage.json"]


@dataclass
class _Camera:
    unit: str
    camera: str
    lat: float
    lon: float
    period: int = 0  # which of the unit's positions (0: the first); a moved camera is a new deployment
    first: float = float("inf")
    last: float = float("-inf")
    events: int = 0
    unsynced: int = 0

    @property
    def deployment_id(self) -> str:
        return f"{self.unit}/{self.camera}" + (f"@{self.period + 1}" if self.period else "")

    @property
    def location_id(self) -> str:
        return self.unit + (f"@{self.period + 1}" if self.period else "")


def export_camtrap(
    reader: RecordReader,
    out: str | Path,
    *,
    filters: ExportFilter | None = None,
    created: float | None = None,
    title: str = "Snow leopard camera traps (uncia network)",
    name: str = "uncia-camera-traps",
    contributors: list[dict[str, str]] | None = None,
    copy_images: bool = False,
    progress: Progress = no_progress,
) -> CamtrapResult:
    """Write a Camtrap DP 1.0.2 package into folder `out` (see the module notes).

    `contributors` are Data Package contributor objects (``title``, optional ``role``, ``email``);
    the default names the station as publisher. Raises `NothingToExport` when no capture of a
    camera with a known position matches `filters`.
    """
    filters = filters or ExportFilter()
    folder = out_dir(Path(out))
    result = CamtrapResult(folder=folder)
    latest = unit_positions(reader)
    history = reader.positions()
    cameras: dict[tuple[str, str], _Camera] = {}
    media: list[list[str]] = []
    observations: list[list[str]] = []
    seen_media: set[str] = set()
    methods: set[str] = set()
    to_copy: list[tuple[str, str, str]] = []
    no_position: dict[str, int] = defaultdict(int)
    for capture in filters.captures(reader):
        progress(1)
        unit, camera_id = capture["unit"], capture["camera"] or "camera"
        period, where = _position_at(history.get(unit), latest.get(unit), capture["start"])
        if where is None:
            no_position[unit] += 1
            continue
        key = (unit, camera_id, period)
        camera = cameras.get(key) or cameras.setdefault(key, _Camera(unit, camera_id, *where, period=period))
        images = sorted(capture["images"], key=lambda i: (i.get("index", 0), str(i.get("id"))))
        times = [t for t in (epoch(i.get("time")) for i in images) if t is not None]
        start = min([capture["start"], *times])
        end = max([capture["end"] or capture["start"], *times])
        camera.first, camera.last = min(camera.first, start), max(camera.last, end)
        camera.events += 1
        unsynced = capture.get("clock") == "unsynced"
        camera.unsynced += unsynced
        method = CAPTURE_METHODS.get(capture.get("trigger") or "", "")
        if method:
            methods.add(method)
        for image in images:
            image_id = str(image.get("id") or "")
            if not image_id or image_id in seen_media:
                continue
            seen_media.add(image_id)
            path = _media_path(unit, image)
            to_copy.append((unit, image_id, path))
            media.append(
                [
                    image_id,
                    camera.deployment_id,
                    method,
                    iso_seconds(epoch(image.get("time")) or capture["start"]),
                    path,
                    "false",
                    PurePosixPath(path).name,
                    "image/jpeg",
                    "",
                    "true" if image_id == capture.get("best_image_id") else "false",
                    "pre-trigger frame (low resolution)" if image.get("stream") == "lores" else "",
                ]
            )
        observations.append(
            [
                capture["event_id"],
                camera.deployment_id,
                "",
                capture["event_id"],
                iso_seconds(start),
                iso_seconds(end, up=True),
                "event",
                "unclassified",
                "calibration" if capture.get("trigger") == "self_check" else "",
                *[""] * 17,
                _tags(capture),
                "timestamp from an unsynced clock: may be off" if unsynced else "",
            ]
        )
    result.skipped = [
        f"{unit}: {n} capture(s) left out, the unit never reported a position (set [camera] lat/lon "
        "on the unit, or give it a GPS)"
        for unit, n in sorted(no_position.items())
    ]
    if not cameras:
        raise NothingToExport(
            f"no captures of a camera with a known position {filters.describe()}: nothing written"
            + ("; " + "; ".join(result.skipped) if result.skipped else "")
        )
    deployments = [_deployment_row(c) for _k, c in sorted(cameras.items())]
    media.sort(key=lambda r: (r[1], r[3], r[6], r[0]))
    observations.sort(key=lambda r: (r[1], r[4], r[0]))
    newest = max(c.last for c in cameras.values())
    descriptor = _descriptor(
        list(cameras.values()),
        created=created if created is not None else newest,
        title=title,
        name=name,
        contributors=contributors or [{"title": "uncia base station", "role": "publisher"}],
        methods=methods,
    )
    if copy_images:
        _copy_images(reader, folder, to_copy, result)
    write_file(folder / "deployments.csv", csv_text(DEPLOYMENT_COLUMNS, deployments))
    write_file(folder / "media.csv", csv_text(MEDIA_COLUMNS, media))
    write_file(folder / "observations.csv", csv_text(OBSERVATION_COLUMNS, observations))
    write_file(folder / "datapackage.json", json_text(descriptor))  # last: the package is complete
    result.deployments, result.media, result.observations = len(deployments), len(media), len(observations)
    return result


def _position_at(
    history: list[tuple[float, float, float, float | None]] | None,
    latest: tuple[float, float] | None,
    when: float,
) -> tuple[int, tuple[float, float] | None]:
    """(period, (lat, lon)) of a unit at `when`: the last position reported at or before it (the first
    one for captures before any report); the latest health's position for a record without history."""
    if not history:
        return 0, latest
    period = 0
    for i, (since, _lat, _lon, _alt) in enumerate(history):
        if since <= when:
            period = i
    _since, lat, lon, _alt = history[period]
    return period, (lat, lon)


def unit_positions(reader: RecordReader) -> dict[str, tuple[float, float]]:
    """(lat, lon) of each unit from its latest camera health report (``position``)."""
    out = {}
    for row in reader.units():
        for body in (row.get("camera_health"), row.get("health")):
            position = (body or {}).get("position") if isinstance(body, dict) else None
            if (
                isinstance(position, dict)
                and position.get("lat") is not None
                and position.get("lon") is not None
            ):
                out[row["unit"]] = (float(position["lat"]), float(position["lon"]))
                break
    return out


def _media_path(unit: str, image: dict[str, Any]) -> str:
    name = str(image.get("file") or f"{image.get('id')}.jpg")
    parts = [p for p in PurePosixPath(name).parts if p not in ("..", ".", "/")]
    return str(PurePosixPath("media", unit, *parts))


def _tags(capture: dict[str, Any]) -> str:
    tags = [f"trigger:{capture.get('trigger') or 'unknown'}"]
    if capture.get("night") is not None:
        tags.append(f"night:{'true' if capture['night'] else 'false'}")
    extra = capture.get("tags") or {}
    pair = extra.get("pair")
    if isinstance(pair, dict):
        if pair.get("partner"):
            tags.append(f"pair:{pair['partner']}")
        if pair.get("event_id"):
            tags.append(f"pairEvent:{pair['event_id']}")
    collars = extra.get("collars")
    if collars:
        tags.append("collars:" + ",".join(sorted(str(c) for c in collars)))
    return " | ".join(tags)


def _deployment_row(camera: _Camera) -> list[str]:
    row = {c: "" for c in DEPLOYMENT_COLUMNS}
    row.update(
        deploymentID=camera.deployment_id,
        locationID=camera.location_id,
        locationName=camera.location_id,
        latitude=number(camera.lat, 7),
        longitude=number(camera.lon, 7),
        deploymentStart=iso_seconds(camera.first),
        deploymentEnd=iso_seconds(camera.last, up=True),
        cameraID=camera.deployment_id,
        timestampIssues="true" if camera.unsynced else "false",
        deploymentComments=(
            f"{camera.unsynced} of {camera.events} events timed by an unsynced clock"
            if camera.unsynced
            else ""
        ),
    )
    return [row[c] for c in DEPLOYMENT_COLUMNS]


def _descriptor(
    cameras: list[_Camera],
    *,
    created: float,
    title: str,
    name: str,
    contributors: list[dict[str, str]],
    methods: set[str],
) -> dict[str, Any]:
    lats = [round(c.lat, 7) for c in cameras]
    lons = [round(c.lon, 7) for c in cameras]
    west, east, south, north = min(lons), max(lons), min(lats), max(lats)
    if (west, south) == (east, north):
        spatial: dict[str, Any] = {"type": "Point", "coordinates": [west, south]}
    else:
        ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
        spatial = {"type": "Polygon", "coordinates": [ring]}
    return {
        "resources": [
            {
                "name": table,
                "path": f"{table}.csv",
                "profile": "tabular-data-resource",
                "format": "csv",
                "mediatype": "text/csv",
                "encoding": "utf-8",
                "schema": f"{BASE_URL}/{table}-table-schema.json",
            }
            for table in TABLES
        ],
        "profile": PROFILE_URL,
        "name": name,
        "created": iso_seconds(created, up=True),
        "title": title,
        "contributors": contributors,
        "description": (
            "Camera-trap captures of the uncia snow-leopard monitoring network, exported from a base "
            "station's record. Events are unclassified: no species identification is made in the field."
        ),
        "project": {
            "title": title,
            "samplingDesign": "targeted",
            "captureMethod": sorted(methods) or ["activityDetection"],
            "individualAnimals": False,
            "observationLevel": ["event"],
        },
        "spatial": spatial,
        "temporal": {
            "start": iso_date(min(c.first for c in cameras)),
            "end": iso_date(max(c.last for c in cameras)),
        },
        "taxonomic": [],
    }


def _copy_images(
    reader: RecordReader, folder: Path, wanted: list[tuple[str, str, str]], result: CamtrapResult
) -> None:
    """Copy the full images the station fetched into the package (the rest stay on the cards)."""
    for unit, image_id, relative in wanted:
        source = reader.image_path(unit, image_id)
        if source is None or not source.is_file():
            result.images_not_at_station += 1
            continue
        target = folder / relative
        try:
            if not (target.exists() and target.stat().st_size == source.stat().st_size):
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
        except OSError as exc:
            raise ExportError(f"cannot copy {source} to {target} ({exc.strerror or exc})") from exc
        result.images_copied += 1
