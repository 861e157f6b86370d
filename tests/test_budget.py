"""`uncia budget`: the pure calculations (hypothesis where a property says more than an example) and
the command's lines and exit codes on real config files."""

from __future__ import annotations

import argparse
import math
import textwrap
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.budget import (
    BATTERY_USABLE,
    COLLAR_FIX_BYTES,
    DRAWS,
    SIDECAR_BYTES,
    airtime_budget,
    channel_load,
    energy_budget,
    jpeg_bytes,
    lamp_seconds_per_day,
    night_hours,
    storage_budget,
)
from edge.config import CameraSettings
from edge.lora.modem import RadioSettings
from uncia.commands import budget as budget_command

radios = st.builds(
    RadioSettings,
    spreading_factor=st.integers(7, 12),
    bandwidth_khz=st.sampled_from([125, 250, 500]),
    coding_rate=st.integers(1, 4),
    preamble=st.integers(6, 24),
)


# --- airtime --------------------------------------------------------------------------------------


def test_a_collar_fix_at_the_reserves_default_radio() -> None:
    budget = airtime_budget(RadioSettings(), COLLAR_FIX_BYTES, 4, 1.0)  # CN470, SF9, 125 kHz, 4/5
    assert budget.airtime_s == pytest.approx(0.14438, abs=1e-5)  # 35.25 symbols of 4.096 ms
    assert budget.max_packets_per_hour == 249 and not budget.over


def test_sf12_collars_at_a_fix_a_minute_break_the_one_percent_rule() -> None:
    budget = airtime_budget(RadioSettings(spreading_factor=12), COLLAR_FIX_BYTES, 60, 1.0)
    assert budget.airtime_s == pytest.approx(1.155, abs=1e-3)  # low-data-rate optimisation on
    assert budget.over and budget.max_packets_per_hour == 31


@given(radios, st.integers(1, 255), st.floats(0.1, 100.0))
def test_max_packets_is_exactly_the_limit(radio: RadioSettings, size: int, limit: float) -> None:
    most = airtime_budget(radio, size, 1, limit).max_packets_per_hour
    assert not airtime_budget(radio, size, most, limit).over
    assert airtime_budget(radio, size, most + 1, limit).over


@given(radios, st.integers(0, 255), st.floats(0, 1000), st.floats(0, 1000))
def test_airtime_adds_up_per_packet(radio: RadioSettings, size: int, a: float, b: float) -> None:
    one, two = airtime_budget(radio, size, a, 1.0), airtime_budget(radio, size, b, 1.0)
    both = airtime_budget(radio, size, a + b, 1.0)
    assert both.seconds_per_hour == pytest.approx(one.seconds_per_hour + two.seconds_per_hour)
    assert both.percent_of_hour == pytest.approx(both.seconds_per_hour / 3600 * 100)


@given(radios, st.floats(0, 200), st.integers(1, 500))
def test_collisions_grow_with_collars_and_stay_a_probability(
    radio: RadioSettings, rate: float, n: int
) -> None:
    per = airtime_budget(radio, COLLAR_FIX_BYTES, rate, 1.0)
    fewer, more = channel_load(per, n), channel_load(per, n + 1)
    assert 0.0 <= fewer.collision_probability <= 1.0  # 1.0 in floats once the channel is saturated
    assert more.collision_probability >= fewer.collision_probability
    assert channel_load(per, 1).collision_probability == 0.0


def test_negative_rates_are_refused() -> None:
    with pytest.raises(ValueError, match="packets per hour"):
        airtime_budget(RadioSettings(), 12, -1, 1.0)


# --- storage --------------------------------------------------------------------------------------

CAM = CameraSettings(lat=38.8, lon=105.9)  # 1920x1080 stills, 320x240 at 10 fps, 2 s pre-trigger


def test_bytes_per_event_from_the_camera_settings() -> None:
    budget = storage_budget(CAM, 20, 10**10)
    stills = 10 * (jpeg_bytes(1920, 1080, 2.5) + SIDECAR_BYTES)
    frames = 21 * (jpeg_bytes(320, 240, 1.5) + SIDECAR_BYTES)
    assert budget.stills_per_event == 10 and budget.pre_trigger_frames == 21
    assert budget.bytes_per_event == stills + frames
    assert budget.days_until_low == pytest.approx((10**10 - 500_000_000) / (20 * (stills + frames)))


@given(st.floats(0.1, 500), st.integers(0, 10**12), st.integers(1, 100))
def test_storage_days_fall_as_captures_rise(events: float, free: int, stills: int) -> None:
    one = storage_budget(CAM, events, free, stills_per_event=stills)
    double = storage_budget(CAM, 2 * events, free, stills_per_event=stills)
    assert 0 <= one.days_until_low <= one.days_until_hard
    assert double.days_until_low == pytest.approx(one.days_until_low / 2)


def test_no_captures_never_fill_the_card() -> None:
    assert math.isinf(storage_budget(CAM, 0, 10**9).days_until_low)


# --- energy ---------------------------------------------------------------------------------------


@given(
    st.sampled_from(["pi-zero-2w", "pi-4b"]),
    st.floats(0, 86_400),
    st.integers(0, 3),
    st.integers(0, 3),
    st.floats(1, 10_000),
)
def test_energy_adds_up_and_autonomy_follows(
    board: str, lamp_s: float, modems: int, gps: int, wh: float
) -> None:
    budget = energy_budget(
        board=board,
        role="camera",
        camera=True,
        lamp_on_s_per_day=lamp_s,
        lora_modems=modems,
        gps_receivers=gps,
        battery_wh=wh,
    )
    assert budget.wh_per_day == pytest.approx(sum(budget.items.values()))
    assert budget.autonomy_days * budget.wh_per_day == pytest.approx(wh * BATTERY_USABLE)
    assert budget.items["IR lamp"] == pytest.approx(DRAWS["ir lamp"] * lamp_s / 3600)
    bare = energy_budget(board=board, role="camera", camera=False)
    assert bare.wh_per_day < budget.wh_per_day and "IR lamp" not in bare.items


def test_a_zero_2w_camera_unit_and_a_pi4_gateway() -> None:
    camera = energy_budget(board="pi-zero-2w", role="camera", camera=True)
    assert camera.items["board"] == pytest.approx(24 * (0.6 * 0.5 + 1.75 * 0.5))
    assert camera.items["camera"] == pytest.approx(30.0)
    gateway = energy_budget(board="pi-4b", role="gateway", lora_modems=1, gps_receivers=1)
    assert gateway.autonomy_days is None and set(gateway.items) == {"board", "LoRa", "GPS"}
    with pytest.raises(ValueError, match="board"):
        energy_budget(board="pi-5", role="gateway")


def test_lamp_lit_only_for_bursts_at_night() -> None:
    assert lamp_seconds_per_day(CAM, 24, 12.0, 10) == pytest.approx(12 * 10 * 0.5)
    assert lamp_seconds_per_day(CAM, 24, 0.0, 10) == 0.0


def test_night_hours_by_latitude_and_season() -> None:
    winter, summer = date(2026, 12, 21), date(2026, 6, 21)
    helan = night_hours(38.8, 105.9, -6.0, winter)
    assert 13.0 <= helan <= 14.5  # Helan Shan's longest night, civil dusk to dawn
    assert night_hours(38.8, 105.9, -6.0, summer) < helan
    assert night_hours(80.0, 15.0, -6.0, winter) == 24.0  # polar night
    assert night_hours(80.0, 15.0, -6.0, summer) == 0.0


# --- the command ----------------------------------------------------------------------------------

CAMERA_UNIT = """
    [unit]
    id = "cam-07"
    site = "helan"
    role = "camera"
    [outbox]
    path = "{tmp}/outbox.sqlite3"
    [camera]
    lat = 38.8143
    lon = 105.9387
    backend = "simulated"
    image_dir = "{tmp}/images"
    [[lora]]
    name = "lora0"
    port = "/dev/uncia-lora0"
    family = "rak3172"
    spreading_factor = {sf}
"""


def _run(tmp_path: Path, argv: list[str], capsys, *, sf: int = 9, text: str | None = None) -> tuple[int, str]:
    unit_file = tmp_path / "unit.toml"
    unit_file.write_text(text or textwrap.dedent(CAMERA_UNIT).format(tmp=tmp_path, sf=sf))
    parser = argparse.ArgumentParser()
    budget_command.register(parser.add_subparsers(dest="command"))
    code = budget_command.run(parser.parse_args(["budget", "-c", str(unit_file), *argv]))
    return code, capsys.readouterr().out


def test_the_example_camera_unit_is_within_every_limit(tmp_path: Path, capsys) -> None:
    code, out = _run(tmp_path, ["--card-gb", "64", "--battery-wh", "600"], capsys)
    assert code == 0, out
    assert out.splitlines()[-1] == "within every limit"
    assert "OK    lora lora0 collars: a 12-byte fix at SF9/125 kHz/CR4/5 is 144 ms on air" in out
    assert "20 stills 1920x1080" in out  # a [[lora]] modem arms longer bursts: the card's worst case
    assert "Wh/day on a Raspberry Pi Zero 2 W" in out and "battery: 600 Wh" in out


def test_limits_exceeded_warn_and_exit_1(tmp_path: Path, capsys) -> None:
    code, out = _run(
        tmp_path,
        ["--fixes-per-hour", "60", "--card-gb", "8", "--battery-wh", "50", "--captures-per-day", "100"],
        capsys,
        sf=12,
    )
    assert code == 1
    warns = [line for line in out.splitlines() if line.startswith("WARN")]
    assert any("collars: a 12-byte fix at SF12" in w and "at most 31 fixes/h" in w for w in warns)
    assert any(w.startswith("WARN  storage:") for w in warns)
    assert any(w.startswith("WARN  battery: 50 Wh") for w in warns)
    assert "limit(s) exceeded" in out.splitlines()[-1]
    assert out.count("-> ") == len(warns)  # every WARN says what to change


def test_a_gateway_and_a_broken_config(tmp_path: Path, capsys) -> None:
    gateway = f'[unit]\nid = "gw-01"\nsite = "helan"\n[outbox]\npath = "{tmp_path}/o.sqlite3"\n'
    code, out = _run(tmp_path, [], capsys, text=gateway)
    assert code == 0
    assert "no [[lora]] modem configured" in out and "Raspberry Pi 4 B" in out and "storage:" not in out
    code, out = _run(tmp_path, [], capsys, text='[unit]\nid = "gw-01"\n')
    assert code == 3 and "unit.site" in out
