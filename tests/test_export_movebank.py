"""Movebank export: exact columns and formats, outliers flagged (never dropped), deployments, filters,
determinism. The record is filled by the real `StationRecord` (tests/export_helpers.py)."""

from __future__ import annotations

import csv
import math
import re
from datetime import timedelta
from pathlib import Path

import pytest
from export_helpers import COLLARS, FIXES_PER_COLLAR, SPIKE_INDEX, T0, fill_record
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.export import AnimalRegistry, ExportError, ExportFilter, NothingToExport, export_movebank
from gateway.export.movebank import LOCATION_COLUMNS, REFERENCE_COLUMNS, flag_outliers
from gateway.station.record import FixRow, RecordReader

TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3}$")


@pytest.fixture(scope="module")
def record(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fill_record(tmp_path_factory.mktemp("record") / "station.sqlite3").path


def read(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def export(record: Path, out: Path, **kw):
    with RecordReader(record) as reader:
        return export_movebank(reader, out, **kw)


def test_location_csv_has_movebank_columns_and_formats(record: Path, tmp_path: Path) -> None:
    result = export(record, tmp_path)
    header, rows = read(result.locations)
    assert header == list(LOCATION_COLUMNS)
    assert result.duplicates == 1  # collar-7's fix 10 heard by gw-02 too
    assert len(rows) == result.fixes == FIXES_PER_COLLAR * len(COLLARS)
    assert {r["tag-local-identifier"] for r in rows} == set(COLLARS)  # gw-01/gps0 is no animal
    assert all(TIMESTAMP.match(r["timestamp"]) for r in rows)
    assert {r["sensor-type"] for r in rows} == {"gps"}
    assert {r["algorithm-marked-outlier"] for r in rows} <= {"true", "false"}
    keys = [(r["tag-local-identifier"], r["timestamp"]) for r in rows]
    assert keys == sorted(keys)
    with RecordReader(record) as reader:
        first = next(reader.iter_fixes(tracks=["collar-7"]))
    row = rows[0]
    assert row["timestamp"] == (T0 + timedelta(seconds=900)).strftime("%Y-%m-%d %H:%M:%S.000")
    assert float(row["location-long"]) == pytest.approx(first.lon, abs=1e-7)  # longitude first
    assert float(row["location-lat"]) == pytest.approx(first.lat, abs=1e-7)
    assert float(row["height-above-msl"]) == pytest.approx(first.alt, abs=0.05)
    assert float(row["ground-speed"]) == pytest.approx(first.speed, abs=0.005)  # m/s, as recorded
    assert row["heading"] == f"{first.course:g}"
    assert int(row["gps:satellite-count"]) == first.sats and float(row["gps:hdop"]) == first.hdop
    assert row["gps:fix-type-raw"] == "1"
    assert row["lora:rssi"] == "-100" and row["lora:snr"] == "7.5" and row["battery-charge-percent"] == "90"
    assert row["uncia:receiver"] == "gw-01" and row["uncia:clock-source"] == "gps"
    assert row["individual-local-identifier"] == "collar-7"  # no deployments file: the collar itself
    dup = [r for r in rows if r["tag-local-identifier"] == "collar-7"][10]
    assert dup["uncia:receiver"] == "gw-01" and dup["lora:rssi"] == "-103"  # the louder copy kept


def test_reference_data_without_deployments_names_each_collar(record: Path, tmp_path: Path) -> None:
    header, rows = read(export(record, tmp_path).reference)
    assert header == list(REFERENCE_COLUMNS)
    assert [(r["animal-id"], r["tag-id"], r["animal-taxon"]) for r in rows] == [
        ("collar-7", "collar-7", "Panthera uncia"),
        ("collar-9", "collar-9", "Panthera uncia"),
    ]
    assert all(r["deploy-on-date"] == r["deploy-off-date"] == "" for r in rows)


def test_the_spike_is_flagged_not_deleted(record: Path, tmp_path: Path) -> None:
    result = export(record, tmp_path)
    _, rows = read(result.locations)
    collar7 = [r for r in rows if r["tag-local-identifier"] == "collar-7"]
    flagged = [i for i, r in enumerate(collar7) if r["algorithm-marked-outlier"] == "true"]
    assert flagged == [SPIKE_INDEX] and result.outliers == 1
    assert "m/s from the good fix at" in collar7[SPIKE_INDEX]["outlier-comments"]
    assert all(r["outlier-comments"] == "" for r in rows if r["algorithm-marked-outlier"] == "false")


def fix(i: int, lat: float, lon: float = 106.0, dt: float = 600.0) -> FixRow:
    return FixRow(f"m{i}", "collar-1", "gw", "collar-1", i, i * dt, lat, lon)


def test_outlier_rule_first_fix_wrong_and_two_in_a_row() -> None:
    good = [fix(i, 38.80 + i * 0.001) for i in range(6)]
    wrong_first = [fix(0, 39.5), *good[1:]]
    assert [bool(w) for w in flag_outliers(wrong_first)] == [True, False, False, False, False, False]
    assert "to the next fix" in flag_outliers(wrong_first)[0]
    pair = [*good[:2], fix(2, 39.5), fix(3, 39.501), *good[4:]]
    assert [bool(w) for w in flag_outliers(pair)] == [False, False, True, True, False, False]
    same_time = [fix(0, 38.8), FixRow("x", "collar-1", "gw", "collar-1", 1, 0.0, 38.9, 106.0)]
    assert "infinite" in flag_outliers(same_time)[0]  # two fixes, one wrong: the walk starts at the last
    assert flag_outliers([]) == [] and flag_outliers([fix(0, 38.8)]) == [""]
    assert [bool(w) for w in flag_outliers(good, max_speed=0.2)] == [False] * 6  # 111 m in 600 s: 0.19 m/s


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=2, max_size=30), st.floats(0.0, 359.0))
def test_a_track_within_the_speed_limit_has_no_outliers(steps: list[float], bearing: float) -> None:
    # Each step moves at most 10 km in 10 min (< 25 m/s) in one direction.
    lat, lon, fixes = 38.8, 106.0, []
    for i, frac in enumerate(steps):
        fixes.append(fix(i, lat, lon))
        lat += frac * 0.09 * math.cos(math.radians(bearing))
        lon += frac * 0.09 * math.sin(math.radians(bearing)) / math.cos(math.radians(lat))
    assert flag_outliers(fixes) == [""] * len(fixes)


def test_deployments_file_maps_collars_to_animals(record: Path, tmp_path: Path) -> None:
    animals = tmp_path / "deployments.csv"
    animals.write_text(
        "tag-id,animal-id,deploy-on-date,deploy-off-date,animal-sex,animal-nickname\n"
        f"7,PU-F03,{(T0 + timedelta(hours=6)).isoformat()},,f,Dolma\n"
    )
    result = export(record, tmp_path / "out", animals=AnimalRegistry.load(animals))
    _, rows = read(result.locations)
    collar7 = [r for r in rows if r["tag-local-identifier"] == "collar-7"]
    assert {r["individual-local-identifier"] for r in collar7[:23]} == {""}  # before the fitting
    assert {r["individual-local-identifier"] for r in collar7[23:]} == {"PU-F03"}  # from 06:00 on
    _, reference = read(result.reference)
    assert reference[0] == {
        "animal-id": "PU-F03",
        "tag-id": "collar-7",
        "animal-taxon": "Panthera uncia",
        "animal-sex": "f",
        "animal-nickname": "Dolma",
        "animal-life-stage": "",
        "deploy-on-date": "2026-11-25 06:00:00.000",
        "deploy-off-date": "",
        "deployment-comments": "",
    }
    assert reference[1]["animal-id"] == "collar-9"


def test_bad_deployments_files_say_what_to_fix(tmp_path: Path) -> None:
    bad = tmp_path / "d.csv"
    bad.write_text("tag-id,animal-id,colour\ncollar-7,A,red\n")
    with pytest.raises(ExportError, match="unknown column 'colour'"):
        AnimalRegistry.load(bad)
    bad.write_text("tag-id,animal-id,deploy-on-date\ncollar-7,A,yesterday\n")
    with pytest.raises(ExportError, match="line 2, deploy-on-date"):
        AnimalRegistry.load(bad)
    bad.write_text(
        "tag-id,animal-id,deploy-on-date,deploy-off-date\ncollar-7,A,2026-01-01,\ncollar-7,B,2026-02-01,\n"
    )
    with pytest.raises(ExportError, match="overlap"):
        AnimalRegistry.load(bad)


def test_filters_time_range_and_collars(record: Path, tmp_path: Path) -> None:
    since, until = T0 + timedelta(hours=2), T0 + timedelta(hours=4)
    window = ExportFilter(since=since.timestamp(), until=until.timestamp(), collars=("9",))
    _, rows = read(export(record, tmp_path / "a", filters=window).locations)
    assert {r["tag-local-identifier"] for r in rows} == {"collar-9"}
    assert [r["timestamp"][11:16] for r in rows] == [
        f"{h:02d}:{m:02d}" for h in (2, 3) for m in (0, 15, 30, 45)
    ]
    _, rows = read(export(record, tmp_path / "b", filters=ExportFilter(collars=("gw-01/gps0",))).locations)
    assert {r["tag-local-identifier"] for r in rows} == {"gw-01/gps0"} and len(rows) == 4
    with pytest.raises(NothingToExport, match="collars collar-42"):
        export(record, tmp_path / "c", filters=ExportFilter(collars=("42",)))
    assert not (tmp_path / "c").exists()
    with pytest.raises(ExportError, match="must be before"):
        ExportFilter(since=until.timestamp(), until=since.timestamp())


def test_twice_run_exports_are_byte_identical(record: Path, tmp_path: Path) -> None:
    first, second = export(record, tmp_path / "1"), export(record, tmp_path / "2")
    assert first.locations.read_bytes() == second.locations.read_bytes()
    assert first.reference.read_bytes() == second.reference.read_bytes()
