"""GeoJSON export: RFC 7946 structure (lon/lat order, no crs), a line per collar without its
outliers, fix points on request, camera sites; deterministic bytes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from export_helpers import FIXES_PER_COLLAR, POSITIONS, SPIKE_INDEX, fill_record

from gateway.export import ExportFilter, export_geojson
from gateway.station.record import RecordReader
from simulators.track import HELAN_BOX


@pytest.fixture(scope="module")
def record(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fill_record(tmp_path_factory.mktemp("record") / "station.sqlite3").path


def export(record: Path, out: Path, **kw) -> dict:
    with RecordReader(record) as reader:
        result = export_geojson(reader, out, **kw)
    return json.loads(result.path.read_text())


def test_tracks_and_cameras_follow_rfc_7946(record: Path, tmp_path: Path) -> None:
    document = export(record, tmp_path / "site.geojson")
    assert document["type"] == "FeatureCollection" and "crs" not in document
    kinds = [f["properties"]["kind"] for f in document["features"]]
    assert kinds == ["track", "track", "camera", "camera"]
    tracks = [f for f in document["features"] if f["properties"]["kind"] == "track"]
    assert [t["properties"]["collar"] for t in tracks] == ["collar-7", "collar-9"]
    for track in tracks:
        assert track["type"] == "Feature" and track["geometry"]["type"] == "LineString"
        for lon, lat in track["geometry"]["coordinates"]:  # [longitude, latitude]
            assert HELAN_BOX.contains(lat, lon)
    seven = tracks[0]["properties"]
    assert seven == {
        "kind": "track",
        "collar": "collar-7",
        "individual": "collar-7",
        "first": "2026-11-25T00:15:00.000Z",
        "last": "2026-11-26T00:00:00.000Z",
        "fixes": FIXES_PER_COLLAR - 1,
        "outliers": 1,
    }
    assert len(tracks[0]["geometry"]["coordinates"]) == FIXES_PER_COLLAR - 1  # the spike left out
    cameras = [f for f in document["features"] if f["properties"]["kind"] == "camera"]
    assert [c["properties"]["unit"] for c in cameras] == ["cam-03", "cam-05"]  # cam-04: no position
    lat, lon, _ = POSITIONS["cam-03"]
    assert cameras[0]["geometry"] == {"type": "Point", "coordinates": [lon, lat]}
    assert cameras[0]["properties"]["captures"] == 4


def test_points_and_filters(record: Path, tmp_path: Path) -> None:
    document = export(record, tmp_path, points=True, filters=ExportFilter(collars=("7",), units=("cam-05",)))
    assert (tmp_path / "uncia.geojson").exists()  # a folder given: the default file name in it
    fixes = [f for f in document["features"] if f["properties"]["kind"] == "fix"]
    assert len(fixes) == FIXES_PER_COLLAR
    assert [i for i, f in enumerate(fixes) if f["properties"]["outlier"]] == [SPIKE_INDEX]
    assert fixes[0]["geometry"]["type"] == "Point" and set(fixes[0]["properties"]) == {
        "kind",
        "collar",
        "individual",
        "time",
        "alt",
        "hdop",
        "sats",
        "outlier",
    }
    assert [
        f["properties"].get("unit") for f in document["features"] if f["properties"]["kind"] == "camera"
    ] == ["cam-05"]


def test_twice_run_exports_are_byte_identical(record: Path, tmp_path: Path) -> None:
    with RecordReader(record) as reader:
        a = export_geojson(reader, tmp_path / "a.geojson", points=True)
        b = export_geojson(reader, tmp_path / "b.geojson", points=True)
    assert a.path.read_bytes() == b.path.read_bytes()
