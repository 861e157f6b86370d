"""The [camera] section: the shipped example loads, defaults fill in, every mistake names its key."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.config import CameraSettings, ConfigError, load_config, parse_config

EXAMPLE = Path(__file__).resolve().parent.parent / "deploy" / "camera.example.toml"
UNIT = {"unit": {"id": "cam-07", "site": "helan", "role": "camera"}}
WHERE = {"lat": 38.81, "lon": 105.94}


def _camera(**kw: object) -> dict:
    return {**UNIT, "camera": {**WHERE, **kw}}


def test_the_shipped_example_is_valid() -> None:
    config = load_config(EXAMPLE)
    cam = config.camera
    assert cam is not None and cam.id == "cam0" and cam.backend == "picamera2"
    assert (cam.pir_pin, cam.illuminator_pin, cam.light_sensor_pin) == (17, 23, -1)
    assert cam.pre_trigger_s == 2.0 and cam.burst_interval_s == 0.5
    assert cam.alt == 2310.0


def test_defaults_and_no_camera_section() -> None:
    assert parse_config(UNIT).camera is None
    cam = parse_config(_camera()).camera
    assert cam == CameraSettings(lat=38.81, lon=105.94)
    assert cam.alt is None and cam.max_burst == 10 and cam.thumbnail_bytes == 20_000
    assert parse_config(_camera(alt=2310)).camera.alt == 2310.0  # an integer is a number too


@pytest.mark.parametrize(
    ("camera", "key", "says"),
    [
        ({"lon": 105.9}, "camera.lat", "required"),
        ({**WHERE, "lat": 91}, "camera.lat", "-90"),
        ({**WHERE, "lon": "105E"}, "camera.lon", "a number"),
        ({**WHERE, "alt": 12000}, "camera.alt", "metres"),
        ({**WHERE, "id": "Cam 0"}, "camera.id", "lowercase"),
        ({**WHERE, "backend": "usb"}, "camera.backend", "'picamera2' or 'simulated'"),
        ({**WHERE, "pre_trigger_s": 1.5}, "camera.pre_trigger_s", "2 to 30"),
        ({**WHERE, "pre_trigger_s": float("inf")}, "camera.pre_trigger_s", "finite"),
        ({**WHERE, "burst_interval_s": 0.01}, "camera.burst_interval_s", "0.1 to 60"),
        ({**WHERE, "max_burst": 0}, "camera.max_burst", "1 to 100"),
        ({**WHERE, "max_burst": 2.5}, "camera.max_burst", "whole number"),
        ({**WHERE, "retrigger_interval_s": -1}, "camera.retrigger_interval_s", "0 to 3600"),
        ({**WHERE, "pir_pin": 40}, "camera.pir_pin", "0-27"),
        ({**WHERE, "illuminator_pin": 17}, "camera.illuminator_pin", "camera pir_pin"),
        ({**WHERE, "light_sensor_pin": 23}, "camera.light_sensor_pin", "camera illuminator_pin"),
        ({**WHERE, "light_sensor_pin": -2}, "camera.light_sensor_pin", "-1 for none"),
        ({**WHERE, "low_free_mb": 50, "hard_free_mb": 100}, "camera.low_free_mb", "hard_free_mb"),
        ({**WHERE, "thumbnail_bytes": 50_000}, "camera.thumbnail_bytes", "20000"),
        ({**WHERE, "lores_width": 4000}, "camera.lores_width", "main_width"),
        ({**WHERE, "image_dir": " "}, "camera.image_dir", "folder"),
        ({**WHERE, "pre_trigger": 3}, "camera.pre_trigger", "pre_trigger_s"),
    ],
)
def test_mistakes_are_named(camera: dict, key: str, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({**UNIT, "camera": camera}, source="cam.toml")
    assert info.value.key == key
    message = str(info.value)
    assert message.startswith("cam.toml: ") and f"'{key}'" in message and says in message


def test_a_pin_shared_with_a_lora_reset_line_is_refused() -> None:
    lora = [{"name": "lora0", "port": "/dev/x", "family": "rylr", "reset_pin": 17}]
    with pytest.raises(ConfigError, match="lora lora0 reset_pin") as info:
        parse_config({**_camera(), "lora": lora})
    assert info.value.key == "camera.pir_pin"


_VALUES = st.one_of(st.integers(-100, 100_000), st.floats(allow_nan=True), st.text(max_size=6), st.booleans())


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(CameraSettings.__dataclass_fields__)), _VALUES, max_size=6))
def test_any_junk_is_a_config_error_or_a_valid_camera(junk: dict) -> None:
    with contextlib.suppress(ConfigError):
        cam = parse_config({**UNIT, "camera": {**WHERE, **junk}}).camera
        assert cam is not None and 2.0 <= cam.pre_trigger_s <= 30.0
        assert len({cam.pir_pin, cam.illuminator_pin, cam.light_sensor_pin}) == 3
