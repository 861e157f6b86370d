"""`uncia export`: the command end to end through `uncia.cli.main`, its error messages and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from export_helpers import fill_record

import uncia.cli


@pytest.fixture(scope="module")
def record(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fill_record(tmp_path_factory.mktemp("record") / "station.sqlite3").path


def test_movebank_export_writes_and_summarises(record: Path, tmp_path: Path, capsys) -> None:
    code = uncia.cli.main(
        ["export", "movebank", "--record", str(record), "--out", str(tmp_path), "--collar", "7"]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "96 fixes of 1 collar(s), 1 flagged as outliers, 1 duplicate receptions dropped" in out
    assert (tmp_path / "movebank-locations.csv").exists() and (
        tmp_path / "movebank-reference-data.csv"
    ).exists()


def test_camtrap_and_geojson_through_the_command(record: Path, tmp_path: Path, capsys) -> None:
    args = ["--record", str(record), "--created", "2027-01-01", "--contributor", "Snow Leopard Survey Team"]
    assert uncia.cli.main(["export", "camtrap-dp", *args, "--out", str(tmp_path / "pkg")]) == 0
    captured = capsys.readouterr()
    assert "Camtrap DP 2 deployment(s), 21 media, 5 events" in captured.out
    assert "warning: cam-04: 1 capture(s) left out" in captured.err
    descriptor = json.loads((tmp_path / "pkg/datapackage.json").read_text())
    assert descriptor["created"] == "2027-01-01T00:00:00Z"
    assert descriptor["contributors"] == [{"title": "Snow Leopard Survey Team", "role": "contact"}]
    geo = tmp_path / "site.geojson"
    assert uncia.cli.main(["export", "geojson", "--record", str(record), "--out", str(geo), "--points"]) == 0
    assert "2 track(s) from 192 fixes, 2 camera site(s)" in capsys.readouterr().out


def test_missing_record_says_so(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "nowhere.sqlite3"
    code = uncia.cli.main(["export", "movebank", "--record", str(missing), "--out", str(tmp_path / "o")])
    assert code == 1
    assert f"uncia export movebank: no station record at {missing}" in capsys.readouterr().err


def test_bad_dates_are_usage_errors(record: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        uncia.cli.main(
            ["export", "geojson", "--record", str(record), "--out", str(tmp_path), "--since", "25/11/2026"]
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --since: '25/11/2026' is not a date or time: use ISO 8601" in err
    code = uncia.cli.main(
        [
            "export",
            "geojson",
            "--record",
            str(record),
            "--out",
            str(tmp_path),
            "--since",
            "2026-12-01",
            "--until",
            "2026-11-01",
        ]
    )
    assert code == 2
    assert (
        "--since (2026-12-01 00:00:00Z) must be before --until (2026-11-01 00:00:00Z)"
        in capsys.readouterr().err
    )


def test_nothing_matched_writes_nothing(record: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "o"
    code = uncia.cli.main(
        ["export", "movebank", "--record", str(record), "--out", str(out), "--since", "2030-01-01"]
    )
    assert code == 1 and not out.exists()
    assert "no collar fixes since 2030-01-01 00:00:00Z: nothing written" in capsys.readouterr().err


def test_config_without_station_section(tmp_path: Path, capsys) -> None:
    config = tmp_path / "gw.toml"
    config.write_text('[unit]\nid = "gw-01"\nsite = "helan"\nrole = "gateway"\n')
    code = uncia.cli.main(["export", "camtrap-dp", "-c", str(config), "--out", str(tmp_path / "o")])
    assert code == 3
    assert "[station] section" in capsys.readouterr().err


def test_config_names_the_record(record: Path, tmp_path: Path, capsys) -> None:
    config = tmp_path / "gw.toml"
    config.write_text(
        f'[unit]\nid = "gw-01"\nsite = "helan"\nrole = "gateway"\n\n[station]\nrecord = "{record}"\n'
    )
    assert uncia.cli.main(["export", "movebank", "-c", str(config), "--out", str(tmp_path / "o")]) == 0


def test_record_or_config_is_required(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        uncia.cli.main(["export", "movebank", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "one of the arguments -c/--config --record is required" in capsys.readouterr().err
