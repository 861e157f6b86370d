"""Camtrap DP export: the package is valid against the standard's own Camtrap DP 1.0.2 schemas
(vendored in tests/data/camtrap-dp-1.0.2, since tests run offline) checked by frictionless, and its
datapackage.json against the 1.0.2 profile with jsonschema; timestampIssues follows the clock;
deterministic bytes."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import frictionless
import jsonschema
import pytest
import referencing
from export_helpers import POSITIONS, fill_record
from referencing.jsonschema import DRAFT4

from gateway.export import ExportFilter, NothingToExport, export_camtrap, parse_time
from gateway.export.camtrap import PROFILE_URL
from gateway.station.record import RecordReader

SCHEMAS = Path(__file__).parent / "data" / "camtrap-dp-1.0.2"


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("record")
    return fill_record(folder / "station.sqlite3", image_dir=folder / "station-images")


@pytest.fixture(scope="module")
def package(filled, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("package")
    with RecordReader(filled.path) as reader:
        return export_camtrap(reader, out, copy_images=True)


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def frictionless_report(folder: Path) -> frictionless.Report:
    """Validate every resource (types, constraints, primary and foreign keys) against the vendored
    table schemas: the descriptor is ours with each schema URL swapped for the local copy."""
    descriptor = json.loads((folder / "datapackage.json").read_text())
    for resource in descriptor["resources"]:
        assert resource["schema"] == (
            f"https://raw.githubusercontent.com/tdwg/camtrap-dp/1.0.2/{resource['name']}-table-schema.json"
        )
        resource["schema"] = json.loads((SCHEMAS / f"{resource['name']}-table-schema.json").read_text())
    descriptor.pop("profile")  # the remote profile is checked below, with jsonschema
    return frictionless.Package(descriptor, basepath=str(folder)).validate()


def profile_errors(descriptor: dict[str, Any]) -> list[str]:
    """datapackage.json against the 1.0.2 profile. Its two remote references resolve offline: the
    Data Package schema to an empty one (frictionless checks Data Package rules itself, above), the
    GeoJSON schema to the copy frictionless ships."""
    profile = json.loads((SCHEMAS / "camtrap-dp-profile.json").read_text())
    geojson = json.loads((Path(frictionless.__file__).parent / "assets/profiles/geojson.json").read_text())
    registry = referencing.Registry().with_resources(
        [
            ("https://specs.frictionlessdata.io/schemas/data-package.json", DRAFT4.create_resource({})),
            ("http://json.schemastore.org/geojson.json", DRAFT4.create_resource(geojson)),
        ]
    )
    validator = jsonschema.Draft4Validator(
        profile, registry=registry, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER
    )
    return [error.message for error in validator.iter_errors(descriptor)]


def test_package_is_valid_camtrap_dp_1_0_2(package) -> None:
    report = frictionless_report(package.folder)
    assert report.valid, report.flatten(["rowNumber", "fieldName", "type", "message"])
    assert [task.stats["rows"] for task in report.tasks] == [2, 21, 5]
    descriptor = json.loads((package.folder / "datapackage.json").read_text())
    assert descriptor["profile"] == PROFILE_URL
    assert profile_errors(descriptor) == []


def test_validators_catch_a_broken_package(package, tmp_path: Path) -> None:
    # The same checks reject what the standard forbids: milliseconds in a timestamp, a missing
    # required column value, a deployment the media point to but that does not exist, bad metadata.
    for name in ("deployments.csv", "media.csv", "observations.csv", "datapackage.json"):
        (tmp_path / name).write_bytes((package.folder / name).read_bytes())
    media = (tmp_path / "media.csv").read_text().splitlines()
    first = media[1].split(",")
    first[3] = first[3].replace("Z", ".250Z")
    first[1] = "cam-99/cam0"
    (tmp_path / "media.csv").write_text("\n".join([media[0], ",".join(first), *media[2:]]) + "\n")
    report = frictionless_report(tmp_path)
    kinds = {error[0] for error in report.flatten(["type"])}
    assert {"type-error", "foreign-key"} <= kinds
    descriptor = json.loads((package.folder / "datapackage.json").read_text())
    descriptor["project"]["samplingDesign"] = "random"
    del descriptor["temporal"]
    assert len(profile_errors(descriptor)) == 2


def test_deployments_from_health_position_and_clock(package) -> None:
    deployments = {r["deploymentID"]: r for r in rows(package.folder / "deployments.csv")}
    assert sorted(deployments) == ["cam-03/cam0", "cam-05/cam0"]  # cam-04 never reported a position
    assert package.skipped == [
        "cam-04: 1 capture(s) left out, the unit never reported a position (set [camera] lat/lon on the "
        "unit, or give it a GPS)"
    ]
    cam03 = deployments["cam-03/cam0"]
    lat, lon, _alt = POSITIONS["cam-03"]
    assert (float(cam03["latitude"]), float(cam03["longitude"])) == (lat, lon)
    assert cam03["locationID"] == "cam-03" and cam03["timestampIssues"] == "false"
    assert (cam03["deploymentStart"], cam03["deploymentEnd"]) == (
        "2026-11-25T01:59:59Z",
        "2026-11-25T19:15:03Z",
    )
    cam05 = deployments["cam-05/cam0"]
    assert cam05["timestampIssues"] == "true"  # its captures were timed by an unsynced clock
    assert cam05["deploymentComments"] == "1 of 1 events timed by an unsynced clock"


def test_media_one_row_per_image(package, filled) -> None:
    media = rows(package.folder / "media.csv")
    images = [i for unit in ("cam-03", "cam-05") for e in filled.events[unit] for i in e.images]
    assert sorted(r["mediaID"] for r in media) == sorted(i.image_id for i in images)
    by_id = {r["mediaID"]: r for r in media}
    event = filled.events["cam-03"][0]
    pre, best = event.images[0], event.best
    assert by_id[pre.image_id]["mediaComments"] == "pre-trigger frame (low resolution)"
    assert by_id[pre.image_id]["filePath"] == f"media/cam-03/{pre.file}"
    assert by_id[best.image_id]["favorite"] == "true"
    assert sum(r["favorite"] == "true" for r in media) == 5  # one best still per event
    assert {r["fileMediatype"] for r in media} == {"image/jpeg"} and {r["filePublic"] for r in media} == {
        "false"
    }
    self_check = filled.events["cam-03"][-1].images[0]
    assert by_id[self_check.image_id]["captureMethod"] == "timeLapse"
    # The fetched stills were copied into the package; the pre-trigger frames stay on the cards.
    assert package.images_copied == 9 and package.images_not_at_station == 12
    assert (package.folder / by_id[best.image_id]["filePath"]).read_bytes()[:2] == b"\xff\xd8"


def test_observations_one_unclassified_event_each(package, filled) -> None:
    observations = {r["eventID"]: r for r in rows(package.folder / "observations.csv")}
    assert len(observations) == 5
    assert {r["observationLevel"] for r in observations.values()} == {"event"}
    assert {r["observationType"] for r in observations.values()} == {"unclassified"}
    paired = observations[filled.events["cam-03"][1].event_id]
    assert paired["observationTags"] == (
        "trigger:pir | night:false | pair:cam-06 | pairEvent:20261125T073000Z-abcdef | collars:collar-7,collar-9"
    )
    first = observations[filled.events["cam-03"][0].event_id]
    assert (first["eventStart"], first["eventEnd"]) == ("2026-11-25T01:59:59Z", "2026-11-25T02:00:03Z")
    assert observations[filled.events["cam-03"][-1].event_id]["cameraSetupType"] == "calibration"
    unsynced = observations[filled.events["cam-05"][0].event_id]
    assert unsynced["observationComments"] == "timestamp from an unsynced clock: may be off"


def test_descriptor_metadata(package) -> None:
    descriptor = json.loads((package.folder / "datapackage.json").read_text())
    assert descriptor["created"] == "2026-11-25T19:15:03Z"  # the end of the newest event, not "now"
    assert descriptor["temporal"] == {"start": "2026-11-25", "end": "2026-11-25"}
    assert descriptor["spatial"]["type"] == "Polygon"
    assert descriptor["spatial"]["coordinates"][0][0] == [105.9712345, 38.8412345]  # lon, lat
    assert descriptor["project"]["captureMethod"] == ["activityDetection", "timeLapse"]
    assert descriptor["project"]["observationLevel"] == ["event"] and descriptor["taxonomic"] == []


def test_filters_and_created_flag(filled, tmp_path: Path) -> None:
    only = ExportFilter(units=("cam-05",))
    with RecordReader(filled.path) as reader:
        result = export_camtrap(
            reader, tmp_path / "a", filters=only, created=parse_time("2027-01-01T00:00:00Z")
        )
        assert (result.deployments, result.media, result.observations) == (1, 5, 1)
        assert json.loads((tmp_path / "a/datapackage.json").read_text())["created"] == "2027-01-01T00:00:00Z"
        assert frictionless_report(tmp_path / "a").valid
        window = ExportFilter(since=parse_time("2026-11-25T07:00Z"), until=parse_time("2026-11-25T08:00Z"))
        assert export_camtrap(reader, tmp_path / "b", filters=window).observations == 1
        with pytest.raises(NothingToExport, match="cam-04: 1 capture"):
            export_camtrap(reader, tmp_path / "c", filters=ExportFilter(units=("cam-04",)))
    assert not (tmp_path / "c").exists()


def test_twice_run_packages_are_byte_identical(filled, tmp_path: Path) -> None:
    with RecordReader(filled.path) as reader:
        first = export_camtrap(reader, tmp_path / "1")
        second = export_camtrap(reader, tmp_path / "2")
    for a, b in zip(first.files, second.files, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name


def test_a_camera_moved_to_another_trail_is_a_new_deployment(tmp_path: Path) -> None:
    import random
    from datetime import timedelta

    from export_helpers import T0, _event, camera_health

    from edge.fix import ClockSource
    from gateway.station.record import StationRecord

    record = StationRecord(tmp_path / "station.sqlite3")
    rng = random.Random(8)
    first, second = (38.80, 105.95, 2400.0), (38.82, 105.97, 2550.0)  # ~2.8 km apart
    record.unit_health("cam-07", camera_health("cam0", first), T0.timestamp(), camera=True)
    _event(record, "cam-07", "cam0", ClockSource.GPS, T0 + timedelta(hours=2), rng, None)
    # GPS noise of a few metres is not a move
    jitter = (first[0] + 0.00003, first[1], first[2])
    record.unit_health("cam-07", camera_health("cam0", jitter), T0.timestamp() + 3 * 3600, camera=True)
    _event(record, "cam-07", "cam0", ClockSource.GPS, T0 + timedelta(hours=4), rng, None)
    record.unit_health("cam-07", camera_health("cam0", second), T0.timestamp() + 24 * 3600, camera=True)
    _event(record, "cam-07", "cam0", ClockSource.GPS, T0 + timedelta(hours=30), rng, None)
    record.commit()
    record.close()
    with RecordReader(tmp_path / "station.sqlite3") as reader:
        assert len(reader.positions()["cam-07"]) == 2
        result = export_camtrap(reader, tmp_path / "package")
    deployments = {r["deploymentID"]: r for r in rows(result.folder / "deployments.csv")}
    assert sorted(deployments) == ["cam-07/cam0", "cam-07/cam0@2"]
    assert float(deployments["cam-07/cam0"]["latitude"]) == 38.8
    assert float(deployments["cam-07/cam0@2"]["latitude"]) == 38.82
    assert deployments["cam-07/cam0@2"]["locationID"] == "cam-07@2"
    per_deployment = [r["deploymentID"] for r in rows(result.folder / "observations.csv")]
    assert per_deployment.count("cam-07/cam0") == 2 and per_deployment.count("cam-07/cam0@2") == 1
    report = frictionless_report(result.folder)
    assert report.valid, report.flatten(["rowNumber", "fieldName", "type", "message"])
