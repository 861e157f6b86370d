"""The position fix: what one epoch of a GPS receiver or collar says about where it is.

A `Fix` is the unit of collar telemetry everywhere in uncia: the NMEA merger emits it, the relay
publishes it, the LoRa payload codec packs it, exports read it. Fields a receiver did not report stay
``None``; a fix never carries an invented (0, 0) position.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class ClockSource(StrEnum):
    """Where a timestamp came from, so exports can flag doubtful times."""

    GPS = "gps"
    NETWORK = "ntp"
    UNSYNCED = "unsynced"


# GGA fix-quality codes (NMEA 0183). 0 means "no fix" and never becomes a Fix.
QUALITY_NAMES = {
    1: "gps",
    2: "dgps",
    3: "pps",
    4: "rtk",
    5: "float-rtk",
    6: "estimated",
    7: "manual",
    8: "simulation",
}


def iso_utc(moment: datetime) -> str:
    """ISO 8601 in UTC with millisecond precision and a ``Z``: ``2026-11-25T12:00:01.250Z``."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass(frozen=True, slots=True)
class Fix:
    """One merged position fix of one epoch.

    Units: degrees (WGS 84) for ``lat``/``lon``, metres above mean sea level for ``alt``, metres per
    second for ``speed``, degrees true for ``course``. ``quality`` is the GGA fix-quality code
    (1 GPS, 2 DGPS, 4 RTK, 6 dead reckoning, ...); ``mode`` is 2 or 3 for a 2D/3D fix when a GSA
    sentence said so.
    """

    time: datetime
    lat: float
    lon: float
    quality: int
    alt: float | None = None
    speed: float | None = None
    course: float | None = None
    sats: int | None = None
    hdop: float | None = None
    mode: int | None = None
    talker: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``time`` as ISO 8601 UTC, absent fields left out."""
        out: dict[str, Any] = {"time": iso_utc(self.time), "lat": self.lat, "lon": self.lon}
        for name in ("alt", "speed", "course", "quality", "sats", "hdop", "mode", "talker"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fix:
        """Inverse of `to_dict` (used by receivers and tests)."""
        stamp = datetime.fromisoformat(data["time"].replace("Z", "+00:00"))
        return cls(
            time=stamp,
            lat=data["lat"],
            lon=data["lon"],
            quality=data["quality"],
            alt=data.get("alt"),
            speed=data.get("speed"),
            course=data.get("course"),
            sats=data.get("sats"),
            hdop=data.get("hdop"),
            mode=data.get("mode"),
            talker=data.get("talker"),
        )
