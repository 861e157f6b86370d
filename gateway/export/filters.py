"""What an export takes from the record: a time range, some collars, some camera units.

The three filters narrow different data, each its own kind:

- ``since``/``until`` (UTC, ``since`` included, ``until`` excluded) apply to fix times and capture
  start times alike;
- ``collars`` narrow the tracks (fixes). A collar is named ``collar-7`` or just ``7``; a serial GPS
  track is named in full (``gw-01/gps0``). Without ``collars`` every **collar** track is exported:
  a unit's own GPS receiver is not an animal, so its track comes out only when named;
- ``units`` narrow the camera units (captures, camera sites).

A collar heard by two gateways arrives as two messages with different ids; the record keeps both.
`unique_fixes` keeps one of each (same track, time and position), the one heard loudest.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from gateway.station.record import FixRow, RecordReader


class ExportError(RuntimeError):
    """An export cannot be made; the message says what to change."""


class NothingToExport(ExportError):
    """The filters matched nothing in the record (no file was written)."""


def parse_time(text: str) -> float:
    """UNIX seconds from ISO 8601 (``2026-11-25``, ``2026-11-25T12:00``, ``…Z``, ``…+08:00``).

    A time without an offset is UTC (the record and every uncia message are in UTC).
    """
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ExportError(
            f"{text!r} is not a date or time: use ISO 8601, e.g. 2026-11-25 or 2026-11-25T12:00:00Z"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def collar_track(name: str) -> str:
    """The track name for what a person types: ``7`` → ``collar-7``; others unchanged."""
    name = name.strip()
    return f"collar-{name}" if name.isdigit() else name


@dataclass(frozen=True)
class ExportFilter:
    """Which part of the record to export (see the module notes). Empty tuples mean "all"."""

    since: float | None = None
    until: float | None = None
    collars: tuple[str, ...] = ()
    units: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ExportError(f"--since ({_day(self.since)}) must be before --until ({_day(self.until)})")
        object.__setattr__(self, "collars", tuple(sorted({collar_track(c) for c in self.collars})))
        object.__setattr__(self, "units", tuple(sorted(set(self.units))))

    def wants_track(self, track: str) -> bool:
        if self.collars:
            return track in self.collars
        return track.startswith("collar-")

    def describe(self) -> str:
        """In words, for "nothing to export" messages."""
        parts = []
        if self.since is not None:
            parts.append(f"since {_day(self.since)}")
        if self.until is not None:
            parts.append(f"until {_day(self.until)}")
        if self.collars:
            parts.append("collars " + ", ".join(self.collars))
        if self.units:
            parts.append("units " + ", ".join(self.units))
        return " ".join(parts) if parts else "in the whole record"

    # -- reading the record ------------------------------------------------------------------------
    def fixes(self, reader: RecordReader) -> Iterator[FixRow]:
        """The wanted fixes in (track, time) order."""
        tracks = list(self.collars) or None
        for fix in reader.iter_fixes(since=self.since, until=self.until, tracks=tracks):
            if self.wants_track(fix.track):
                yield fix

    def count_fixes(self, reader: RecordReader) -> int:
        """How many rows `fixes` will read (for a progress bar; duplicates included)."""
        sql, params = "SELECT COUNT(*) FROM fixes WHERE 1=1", []
        if self.since is not None:
            sql, params = sql + " AND time >= ?", [*params, self.since]
        if self.until is not None:
            sql, params = sql + " AND time < ?", [*params, self.until]
        if self.collars:
            sql += f" AND track IN ({', '.join('?' * len(self.collars))})"
            params += list(self.collars)
        else:
            sql += " AND track LIKE 'collar-%'"
        return int(reader.query(sql, tuple(params))[0][0])

    def count_captures(self, reader: RecordReader) -> int:
        sql, params = "SELECT COUNT(*) FROM captures WHERE 1=1", []
        if self.since is not None:
            sql, params = sql + " AND start >= ?", [*params, self.since]
        if self.until is not None:
            sql, params = sql + " AND start < ?", [*params, self.until]
        if self.units:
            sql += f" AND unit IN ({', '.join('?' * len(self.units))})"
            params += list(self.units)
        return int(reader.query(sql, tuple(params))[0][0])

    def captures(self, reader: RecordReader) -> Iterator[dict]:
        """The wanted captures in (start, event id) order."""
        return reader.iter_captures(since=self.since, until=self.until, units=list(self.units) or None)


def unique_fixes(fixes: Iterable[FixRow]) -> Iterator[FixRow]:
    """Drop copies of one fix heard by several receivers (same track, time and position).

    Keeps the copy with the strongest signal (then the smallest message id), so the radio columns
    describe the best reception. Input and output are in (track, time) order.
    """
    for _key, group in itertools.groupby(fixes, key=lambda f: (f.track, f.time, f.lat, f.lon)):
        copies = list(group)
        if len(copies) == 1:
            yield copies[0]
        else:
            yield min(copies, key=lambda f: (-(f.rssi if f.rssi is not None else -1e9), f.msg_id))


def by_track(fixes: Iterable[FixRow]) -> Iterator[tuple[str, list[FixRow]]]:
    """(track, its fixes in time order) for fixes already in (track, time) order."""
    for track, group in itertools.groupby(fixes, key=lambda f: f.track):
        yield track, list(group)


def _day(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
