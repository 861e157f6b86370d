"""Unit config: good files load; every mistake names the key, the value and what is expected."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.config import ConfigError, load_config, parse_config

EXAMPLE = Path(__file__).resolve().parent.parent / "deploy" / "gateway.example.toml"
MINIMAL = {"unit": {"id": "gw-01", "site": "helan"}}


def test_the_shipped_example_is_valid():
    config = load_config(EXAMPLE)
    assert config.unit.id == "gw-01"
    assert [s.name for s in config.serial] == ["gps0"]
    assert config.mqtt.window == 200 and config.fixes.min_quality == 1


def test_defaults_fill_what_is_left_out():
    config = parse_config(MINIMAL)
    assert config.mqtt.host == "127.0.0.1" and config.mqtt.port == 1883
    assert config.serial == () and config.fixes.max_hdop is None


@pytest.mark.parametrize(
    ("data", "key", "says"),
    [
        ({"unit": {"id": "GW 01", "site": "helan"}}, "unit.id", "lowercase"),
        ({"unit": {"site": "helan"}}, "unit.id", "required"),
        ({}, "unit", "[unit]"),
        ({**MINIMAL, "mqtt": {"port": "1883"}}, "mqtt.port", "whole number"),
        ({**MINIMAL, "mqtt": {"port": 70000}}, "mqtt.port", "between 1 and 65535"),
        ({**MINIMAL, "mqtt": {"hots": "x"}}, "mqtt.hots", "one of"),
        ({**MINIMAL, "mqtt": {"tls": "yes"}}, "mqtt.tls", "true or false"),
        ({**MINIMAL, "mqtt": {"password_file": "/nonexistent"}}, "mqtt.username", "user name"),
        (
            {**MINIMAL, "mqtt": {"ca_file": "/nonexistent/ca.crt", "tls": True}},
            "mqtt.ca_file",
            "existing file",
        ),
        ({**MINIMAL, "serial": {"name": "gps0"}}, "serial", "[[serial]]"),
        ({**MINIMAL, "serial": [{"name": "gps0"}]}, "serial[0].port", "required"),
        (
            {**MINIMAL, "serial": [{"name": "gps0", "port": "/dev/x", "baudrate": 9601}]},
            "serial[0].baudrate",
            "9600",
        ),
        (
            {**MINIMAL, "serial": [{"name": "g", "port": "/dev/a"}, {"name": "g", "port": "/dev/b"}]},
            "serial[1].name",
            "only once",
        ),
        ({**MINIMAL, "fixes": {"min_quality": 9}}, "fixes.min_quality", "0-8"),
        ({**MINIMAL, "fixes": {"max_hdop": -1}}, "fixes.max_hdop", "greater than 0"),
        ({**MINIMAL, "outbox": {"max_messages": 10}}, "outbox.max_messages", "at least"),
        ({**MINIMAL, "cameras": {}}, "cameras", "sections"),
    ],
)
def test_mistakes_are_named(data, key, says):
    with pytest.raises(ConfigError) as info:
        parse_config(data, source="unit.toml")
    message = str(info.value)
    assert info.value.key == key
    assert message.startswith("unit.toml: ") and f"'{key}'" in message and says in message


def test_syntax_error_points_at_the_file(tmp_path):
    path = tmp_path / "gw.toml"
    path.write_text("[unit\nid = 1\n")
    with pytest.raises(ConfigError, match="valid TOML"):
        load_config(path)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="readable config file"):
        load_config(tmp_path / "absent.toml")


def test_password_comes_from_its_file(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    config = parse_config({**MINIMAL, "mqtt": {"username": "gw-01", "password_file": str(secret)}})
    assert config.mqtt.password() == "s3cret"


@given(st.dictionaries(st.text(max_size=8), st.one_of(st.integers(), st.text(max_size=8), st.booleans())))
def test_any_junk_is_a_config_error_not_a_crash(junk):
    with contextlib.suppress(ConfigError):
        parse_config({"unit": junk})


LORA = {"name": "lora0", "port": "/dev/uncia-lora0", "family": "rylr"}


def test_lora_defaults_to_cn470():
    radio = parse_config({**MINIMAL, "lora": [LORA]}).lora[0].radio()
    assert radio.band == "CN470" and 470_000_000 <= radio.frequency_hz <= 510_000_000


@pytest.mark.parametrize(
    ("change", "key", "says"),
    [
        ({"family": "sx1276"}, "lora[0].family", "'rylr' or 'rak3172'"),
        ({"spreading_factor": 13}, "lora[0].spreading_factor", "7 to 12"),
        ({"frequency_hz": 868_100_000}, "lora[0].frequency_hz", "CN470, 470-510 MHz"),
        ({"bandwidth_khz": 62}, "lora[0].bandwidth_khz", "125, 250 or 500"),
        ({"band": "XX868"}, "lora[0].band", "one of CN470"),
        ({"name": "gps0"}, "lora[0].name", "no other source"),
        ({"duty_cycle_percent": 0}, "lora[0].duty_cycle_percent", "above 0"),
        ({"reset_pin": 40}, "lora[0].reset_pin", "BCM GPIO"),
    ],
)
def test_lora_mistakes_are_named(change, key, says):
    data = {**MINIMAL, "serial": [{"name": "gps0", "port": "/dev/x"}], "lora": [{**LORA, **change}]}
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert info.value.key == key and says in str(info.value)


def test_station_section_is_checked_and_only_for_gateways(tmp_path):
    config = load_config(EXAMPLE)
    assert config.station is not None and config.station.web_port == 8080 and config.station.mortality_h == 12
    with pytest.raises(ConfigError, match=r"station\.boundary"):
        parse_config({**MINIMAL, "station": {"boundary": str(tmp_path / "missing.geojson")}})
    with pytest.raises(ConfigError, match=r"station\.mortality_h"):
        parse_config({**MINIMAL, "station": {"mortality_h": 0}})
    with pytest.raises(ConfigError, match=r"station\.disk_full_percent"):
        parse_config({**MINIMAL, "station": {"disk_full_percent": 120}})
    camera = {"unit": {"id": "cam-01", "site": "helan", "role": "camera"}, "station": {}}
    with pytest.raises(ConfigError, match="only in a gateway"):
        parse_config(camera)


def test_a_name_with_a_trailing_newline_is_refused():
    # `re.match` with `$` would accept "gw-01\n": a newline in a topic or a generated file.
    with pytest.raises(ConfigError, match=r"unit\.id"):
        parse_config({"unit": {"id": "gw-01\n", "site": "helan"}})
