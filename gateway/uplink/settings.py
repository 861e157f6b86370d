"""The ``[uplink]`` section of a gateway's config: where the station's data goes beyond the station.

Example (both uplinks are optional; a station with internet usually runs only EarthRanger)::

    [uplink]
    state = "/var/lib/uncia/uplink.sqlite3"   # what was sent where; the credit ledger

    [uplink.earthranger]
    url = "https://snowleopard.pamdas.org"     # the server; /api/v1.0 is added
    token_file = "/etc/uncia/earthranger.token" # the bearer token, first line, mode 0600
    provider_key = "uncia-helan"               # the source provider's natural key in ER admin
    batch = 100

    [uplink.iridium]
    port = "/dev/uncia-iridium"
    credits_per_day = 30
    interval_h = 6

Mistakes raise `edge.config.ConfigError` (key, value found, what is expected), like the rest of the
config. The token is read only when the uplink starts (`read_token`), never logged.
"""

from __future__ import annotations

import math
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

# `_section` checks keys and value types exactly as the rest of the config does; when the integrator
# moves this section into edge/config.py it becomes a local call.
from edge.config import ConfigError, _section
from edge.lora.payload import SITES

# The EarthRanger server accepts provider keys matching this in its sensors URLs (er-server
# das/sensors/urls.py: ``(?P<provider_key>[\w-]{3,20})``); any other key is a 404 for every post.
PROVIDER_KEY = re.compile(r"^[A-Za-z0-9_-]{3,20}$")
SBD_MAX_BYTES = 340  # 9602/9603 mobile-originated buffer
SBD_CREDIT_BYTES = 50  # RockBLOCK bills one credit per started 50 bytes of a message


@dataclass(frozen=True)
class EarthRangerSettings:
    """``[uplink.earthranger]``: push collar fixes and camera-trap images to an EarthRanger server.

    ``subject_subtype`` must exist on the server (ER admin › Observations › Subject subtypes), or the
    server refuses the first fix of every new collar (the item is parked with the server's words).
    """

    url: str
    token_file: str
    provider_key: str
    batch: int = 100  # observations per request (the server itself works in batches of 128)
    interval_s: float = 60.0  # how often the record is looked at when nothing is waiting
    timeout_s: float = 30.0  # one HTTP request
    retry_s: float = 10.0  # first wait after a failure; doubles up to retry_max_s
    retry_max_s: float = 1800.0
    images: bool = True  # camera-trap images (the full image if fetched, else the thumbnail)
    image_wait_h: float = 6.0  # how long an ended event may wait for its image before it is parked
    subject_subtype: str = "snow_leopard"
    source_type: str = "tracking-device"
    late_days: float = 7.0  # fixes heard this late (fix time vs. reception) are still found quickly
    backfill_days: float = 30.0  # on the very first start, what the record already holds from this far back


@dataclass(frozen=True)
class IridiumSettings:
    """``[uplink.iridium]``: a digest over a RockBLOCK-class Iridium 9602/9603 SBD modem.

    Digests go out at UTC midnight + k × ``interval_h``; a new critical alert (mortality, geofence,
    conflict) goes out at once when ``alert_now`` and the budget allow. ``credits_per_day`` is never
    exceeded by what this station sends (RockBLOCK: one credit per started 50 bytes).
    """

    port: str
    baudrate: int = 19200  # RockBLOCK's default
    credits_per_day: int = 30
    interval_h: float = 6.0
    max_bytes: int = SBD_MAX_BYTES  # one message; fewer bytes, fewer credits
    alert_now: bool = True
    retry_s: float = 60.0  # RockBLOCK: wait a minute before retrying a failed session
    retry_max_s: float = 1200.0
    session_timeout_s: float = 90.0  # one AT+SBDIX
    site: int = 1  # the site number (edge.lora.payload.SITES) positions are relative to


@dataclass(frozen=True)
class UplinkSettings:
    """``[uplink]``: the shared state file and the uplinks configured (None: not used)."""

    state: str = "/var/lib/uncia/uplink.sqlite3"
    earthranger: EarthRangerSettings | None = None
    iridium: IridiumSettings | None = None


class TokenError(ConfigError):
    """The token file is missing, empty or readable by others."""


def parse_uplink(raw: Any, source: str | None = None) -> UplinkSettings:
    """Validate an ``[uplink]`` table (as loaded from TOML); raise `ConfigError` on the first problem."""
    if not isinstance(raw, Mapping):
        raise ConfigError("uplink", raw, "a table ([uplink])", source)
    known = {"state", "earthranger", "iridium"}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(f"uplink.{key}", value, f"one of {', '.join(sorted(known))}", source)
    state = raw.get("state", UplinkSettings.state)
    if not isinstance(state, str) or not state.strip():
        raise ConfigError("uplink.state", state, "a file path for the uplinks' state", source)
    er = _earthranger(raw["earthranger"], source) if "earthranger" in raw else None
    ir = _iridium(raw["iridium"], source) if "iridium" in raw else None
    return UplinkSettings(state=state, earthranger=er, iridium=ir)


def _finite(prefix: str, obj: Any, source: str | None) -> None:
    for f in fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{prefix}.{f.name}", value, "a finite number", source)


def _earthranger(raw: Any, source: str | None) -> EarthRangerSettings:
    er = _section(raw, "uplink.earthranger", EarthRangerSettings, source)
    _finite("uplink.earthranger", er, source)

    def need(key: str, ok: bool, expected: str) -> None:
        if not ok:
            raise ConfigError(f"uplink.earthranger.{key}", getattr(er, key), expected, source)

    url = urlparse(er.url)
    need(
        "url",
        url.scheme in ("https", "http") and bool(url.netloc),
        "the server, e.g. https://site.pamdas.org",
    )
    need("token_file", bool(er.token_file.strip()), "the file holding the bearer token")
    need("provider_key", bool(PROVIDER_KEY.match(er.provider_key)), "3-20 letters, digits, '-' or '_'")
    need("batch", 1 <= er.batch <= 500, "observations per request, 1 to 500")
    need("interval_s", 1.0 <= er.interval_s <= 86_400.0, "seconds, 1 to 86400")
    need("timeout_s", 1.0 <= er.timeout_s <= 600.0, "seconds, 1 to 600")
    need("retry_s", 0.1 <= er.retry_s <= 3600.0, "seconds, 0.1 to 3600")
    need("retry_max_s", er.retry_s <= er.retry_max_s <= 86_400.0, "seconds, retry_s to 86400")
    need("image_wait_h", 0.0 <= er.image_wait_h <= 720.0, "hours, 0 to 720")
    need("subject_subtype", bool(er.subject_subtype.strip()), "an ER subject subtype, e.g. snow_leopard")
    need("source_type", bool(er.source_type.strip()), "an ER source type, e.g. tracking-device")
    need("late_days", 0.1 <= er.late_days <= 400.0, "days, 0.1 to 400")
    need("backfill_days", 0.0 <= er.backfill_days <= 3650.0, "days, 0 to 3650")
    return er


def _iridium(raw: Any, source: str | None) -> IridiumSettings:
    ir = _section(raw, "uplink.iridium", IridiumSettings, source)
    _finite("uplink.iridium", ir, source)

    def need(key: str, ok: bool, expected: str) -> None:
        if not ok:
            raise ConfigError(f"uplink.iridium.{key}", getattr(ir, key), expected, source)

    need("port", bool(ir.port.strip()), "the modem's serial port, e.g. /dev/uncia-iridium")
    need("baudrate", ir.baudrate in (9600, 19200, 38400, 57600, 115200), "9600, 19200 (RockBLOCK) ... 115200")
    need("credits_per_day", 1 <= ir.credits_per_day <= 10_000, "credits, 1 to 10000")
    # A digest at most every 15 minutes; the slots start at UTC midnight, so 24 h / interval_h
    # should be whole (6 h: 00, 06, 12, 18 UTC).
    need("interval_h", 0.25 <= ir.interval_h <= 24.0, "hours between digests, 0.25 to 24")
    need("max_bytes", 16 <= ir.max_bytes <= SBD_MAX_BYTES, f"bytes per message, 16 to {SBD_MAX_BYTES}")
    need("retry_s", 1.0 <= ir.retry_s <= 3600.0, "seconds, 1 to 3600")
    need("retry_max_s", ir.retry_s <= ir.retry_max_s <= 86_400.0, "seconds, retry_s to 86400")
    need("session_timeout_s", 10.0 <= ir.session_timeout_s <= 600.0, "seconds, 10 to 600")
    need("site", ir.site in SITES, f"a known site number ({', '.join(map(str, sorted(SITES)))})")
    return ir


def read_token(path: str | Path, key: str = "uplink.earthranger.token_file") -> str:
    """The bearer token: the first line of `path`, which only its owner may read (mode 0600 or 0400).

    Raises `TokenError` (never showing the token) when the file is missing, empty, or readable by the
    group or others: a token in a world-readable file is a leaked token.
    """
    path = Path(path)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TokenError(key, str(path), f"a readable file with the token ({exc.strerror})") from exc
    if mode & 0o077:
        raise TokenError(
            key, str(path), f"a file only its owner can read (it is {mode:04o}): chmod 600 {path}"
        )
    lines = text.splitlines()
    token = lines[0].strip() if lines else ""
    if not token:
        raise TokenError(key, str(path), "the token on the file's first line (the file is empty)")
    return token
