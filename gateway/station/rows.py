"""Rows of the station record as Python values: fixes, times, and the decoding of stored JSON.

Shared by the writer (`gateway.station.record`) and the readers (`gateway.station.reader`).
Times are stored as UNIX seconds (UTC); `iso` and `epoch` convert to and from the ISO-8601 ``Z`` form
every uncia message uses.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


class RecordError(RuntimeError):
    """The station record cannot be opened or written; the message names the file and what to do."""


def epoch(value: datetime | str | float | None) -> float | None:
    """UNIX seconds from an aware datetime, an ISO-8601 string (``Z`` allowed) or seconds."""
    if value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def iso(seconds: float | None) -> str | None:
    """ISO-8601 UTC with milliseconds and ``Z``, as in every uncia message; None stays None."""
    if seconds is None:
        return None
    stamp = datetime.fromtimestamp(seconds, UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def track_of(unit: str, source: str) -> str:
    """Whose fix it is: the collar for LoRa collars, ``<unit>/<source>`` for a serial receiver."""
    return source if source.startswith("collar-") else f"{unit}/{source}"


@dataclass(frozen=True, slots=True)
class FixRow:
    """A fix as stored; ``time``/``received`` in UNIX seconds."""

    msg_id: str
    track: str
    unit: str
    source: str
    seq: int | None
    time: float
    lat: float
    lon: float
    alt: float | None = None
    quality: int | None = None
    hdop: float | None = None
    sats: int | None = None
    speed: float | None = None
    course: float | None = None
    battery: float | None = None
    rssi: float | None = None
    snr: float | None = None
    modem: str | None = None
    received: float | None = None
    clock: str | None = None

    @classmethod
    def from_message(
        cls, unit: str, msg_id: str, source: str, seq: int, data: dict[str, Any], **kw: Any
    ) -> FixRow:
        """From a fix envelope's fields (``data`` = ``Fix.to_dict()`` plus the radio extras); ValueError for a
        position that is not one (a fix never enters the record with lat 95 or lon NaN)."""
        lat, lon = float(data["lat"]), float(data["lon"])
        if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
            raise ValueError(f"lat {lat}, lon {lon} is not a position")
        return cls(
            msg_id=msg_id,
            track=track_of(unit, source),
            unit=unit,
            source=source,
            seq=seq,
            time=epoch(data["time"]) or 0.0,
            lat=lat,
            lon=lon,
            alt=data.get("alt"),
            quality=data.get("quality"),
            hdop=data.get("hdop"),
            sats=data.get("sats"),
            speed=data.get("speed"),
            course=data.get("course"),
            battery=data.get("battery"),
            rssi=data.get("rssi"),
            snr=data.get("snr"),
            modem=data.get("modem"),
            **kw,
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"time": iso(self.time), "lat": self.lat, "lon": self.lon}
        for name in ("alt", "quality", "hdop", "sats", "speed", "course", "battery", "rssi", "snr"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


FIX_COLUMNS = [f for f in FixRow.__dataclass_fields__]


def decode_capture(row: sqlite3.Row | dict[str, Any]) -> dict[str, Any]:
    item = dict(row)
    item["images"] = json.loads(item["images"])
    item["tags"] = json.loads(item["tags"])
    item["night"] = None if item["night"] is None else bool(item["night"])
    return item


def decode_alert(row: sqlite3.Row | dict[str, Any]) -> dict[str, Any]:
    item = dict(row)
    item["details"] = json.loads(item["details"])
    item["active"] = item["cleared"] is None
    return item


def decode_unit(row: sqlite3.Row | dict[str, Any]) -> dict[str, Any]:
    """A unit registry row with its health bodies decoded."""
    item = dict(row)
    for key in ("health", "camera_health"):
        item[key] = json.loads(item[key]) if item[key] else None
    return item
