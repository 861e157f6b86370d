"""The [uplink] config section and the token file: mistakes are ConfigErrors that say what to fix."""

from __future__ import annotations

import os
import tomllib

import pytest

from edge.config import ConfigError
from gateway.uplink.settings import TokenError, parse_uplink, read_token

EXAMPLE = """
[uplink]
state = "/var/lib/uncia/uplink.sqlite3"

[uplink.earthranger]
url = "https://snowleopard.pamdas.org"
token_file = "/etc/uncia/earthranger.token"
provider_key = "uncia-helan"
batch = 100

[uplink.iridium]
port = "/dev/uncia-iridium"
credits_per_day = 30
interval_h = 6
"""


def test_the_documented_example_parses():
    settings = parse_uplink(tomllib.loads(EXAMPLE)["uplink"], "gateway.toml")
    assert settings.earthranger is not None and settings.earthranger.provider_key == "uncia-helan"
    assert settings.earthranger.batch == 100 and settings.earthranger.timeout_s == 30.0
    assert settings.iridium is not None and settings.iridium.interval_h == 6.0
    assert settings.iridium.credits_per_day == 30 and settings.iridium.max_bytes == 340


def test_either_uplink_is_optional():
    assert parse_uplink({}).earthranger is None
    only = parse_uplink({"iridium": {"port": "/dev/ttyUSB0"}})
    assert only.earthranger is None and only.iridium is not None


@pytest.mark.parametrize(
    ("raw", "key", "words"),
    [
        ({"satellite": {}}, "uplink.satellite", "one of"),
        (
            {"earthranger": {"url": "snowleopard.pamdas.org", "token_file": "t", "provider_key": "abc"}},
            "uplink.earthranger.url",
            "https://",
        ),
        (
            {"earthranger": {"url": "https://x.org", "token_file": "t", "provider_key": "a b"}},
            "uplink.earthranger.provider_key",
            "3-20",
        ),
        (
            {"earthranger": {"url": "https://x.org", "token_file": "t"}},
            "uplink.earthranger.provider_key",
            "required",
        ),
        (
            {"earthranger": {"url": "https://x.org", "token_file": "t", "provider_key": "abc", "batch": 0}},
            "uplink.earthranger.batch",
            "1 to 500",
        ),
        (
            {
                "earthranger": {
                    "url": "https://x.org",
                    "token_file": "t",
                    "provider_key": "abc",
                    "token": "s3cret",
                }
            },
            "uplink.earthranger.token",
            "one of",
        ),
        ({"iridium": {"port": "/dev/x", "credits_per_day": 0}}, "uplink.iridium.credits_per_day", "1 to"),
        ({"iridium": {"port": "/dev/x", "max_bytes": 341}}, "uplink.iridium.max_bytes", "16 to 340"),
        ({"iridium": {"port": "/dev/x", "site": 42}}, "uplink.iridium.site", "known site"),
        ({"iridium": {"port": "/dev/x", "interval_h": "6"}}, "uplink.iridium.interval_h", "a number"),
        ({"iridium": {"port": "/dev/x", "interval_h": float("nan")}}, "uplink.iridium.interval_h", "finite"),
    ],
)
def test_mistakes_name_the_key_and_what_is_expected(raw, key, words):
    with pytest.raises(ConfigError) as caught:
        parse_uplink(raw, "gateway.toml")
    assert caught.value.key == key
    assert words in str(caught.value) and "gateway.toml" in str(caught.value)


def test_the_token_comes_from_an_owner_only_file(tmp_path):
    path = tmp_path / "earthranger.token"
    path.write_text("abc123token\n")
    os.chmod(path, 0o600)
    assert read_token(path) == "abc123token"
    os.chmod(path, 0o644)
    with pytest.raises(TokenError) as caught:
        read_token(path)
    assert "chmod 600" in str(caught.value) and "abc123token" not in str(caught.value)
    os.chmod(path, 0o600)
    path.write_text("\n")
    with pytest.raises(TokenError, match="empty"):
        read_token(path)
    with pytest.raises(TokenError, match="readable file"):
        read_token(tmp_path / "missing.token")
