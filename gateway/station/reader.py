"""Read-only views of the station record, one per thread: the web page, `uncia status`, exports, uplinks.

A reader opens the file read-only (SQLite WAL: it never blocks the hub's writer) and returns rows
decoded (`gateway.station.rows`).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gateway.station.rows import FIX_COLUMNS, FixRow, RecordError, decode_alert, decode_capture, decode_unit


class RecordReader:
    """A read-only view of the record for one thread (web handlers, `uncia status`, exports)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise RecordError(
                f"no station record at {self.path}: has the gateway run with a [station] section?"
            )
        try:
            self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
            self._db.execute("PRAGMA busy_timeout=5000")
        except sqlite3.Error as exc:
            raise RecordError(f"cannot read the station record {self.path} ({exc})") from exc
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> RecordReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def iter_fixes(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        tracks: list[str] | None = None,
        batch: int = 5000,
    ) -> Iterator[FixRow]:
        """Fixes in (track, time) order — what exports and track drawings want."""
        where, params = _range("time", since, until)
        if tracks:
            where.append(f"track IN ({', '.join('?' * len(tracks))})")
            params += tuple(tracks)
        sql = f"SELECT {', '.join(FIX_COLUMNS)} FROM fixes"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY track, time, msg_id"
        with self._lock:
            cursor = self._db.execute(sql, params)
            while rows := cursor.fetchmany(batch):
                for row in rows:
                    yield FixRow(*row)

    def tracks(self) -> list[str]:
        return [r[0] for r in self.query("SELECT DISTINCT track FROM fixes ORDER BY track")]

    def latest_fixes(self) -> dict[str, FixRow]:
        """The newest fix of every track."""
        rows = self.query(
            f"SELECT {', '.join(FIX_COLUMNS)} FROM fixes f WHERE time = (SELECT MAX(time) FROM fixes g"
            " WHERE g.track = f.track) ORDER BY track"
        )
        return {row["track"]: FixRow(*row) for row in rows}

    def track_points(self, track: str, since: float, limit: int = 2000) -> list[tuple[float, float, float]]:
        """(time, lat, lon) of `track` since `since`, oldest first, at most `limit` (the newest)."""
        rows = self.query(
            "SELECT time, lat, lon FROM fixes WHERE track = ? AND time >= ? ORDER BY time DESC LIMIT ?",
            (track, since, limit),
        )
        return [(r[0], r[1], r[2]) for r in reversed(rows)]

    def count_fixes(self, track: str, since: float) -> int:
        return self.query("SELECT COUNT(*) FROM fixes WHERE track = ? AND time >= ?", (track, since))[0][0]

    def iter_captures(
        self, *, since: float | None = None, until: float | None = None, units: list[str] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Captures in start order, images and tags decoded."""
        where, params = _range("start", since, until)
        if units:
            where.append(f"unit IN ({', '.join('?' * len(units))})")
            params += tuple(units)
        sql = "SELECT * FROM captures" + (" WHERE " + " AND ".join(where) if where else "")
        for row in self.query(sql + " ORDER BY start, event_id", params):
            yield decode_capture(row)

    def latest_captures(self, limit: int = 20) -> list[dict[str, Any]]:
        rows = self.query("SELECT * FROM captures ORDER BY start DESC, event_id LIMIT ?", (limit,))
        return [decode_capture(row) for row in rows]

    def capture(self, event_id: str) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM captures WHERE event_id = ?", (event_id,))
        return decode_capture(rows[0]) if rows else None

    def thumbnail(self, event_id: str) -> bytes | None:
        """The JPEG of the event's best still (the one its unit sent), if it arrived."""
        rows = self.query(
            "SELECT jpeg FROM thumbnails WHERE event_id = ? ORDER BY time DESC LIMIT 1", (event_id,)
        )
        return bytes(rows[0][0]) if rows else None

    def thumbnail_info(self, event_id: str) -> dict[str, Any] | None:
        rows = self.query(
            "SELECT image_id, unit, camera, time, width, height FROM thumbnails WHERE event_id = ?"
            " ORDER BY time DESC LIMIT 1",
            (event_id,),
        )
        return dict(rows[0]) if rows else None

    def image_path(self, unit: str, image_id: str) -> Path | None:
        rows = self.query("SELECT path FROM images WHERE unit = ? AND image_id = ?", (unit, image_id))
        return Path(rows[0][0]) if rows else None

    def units(self) -> list[dict[str, Any]]:
        """The unit registry rows, health bodies decoded."""
        return [decode_unit(row) for row in self.query("SELECT * FROM units ORDER BY unit")]

    def positions(self) -> dict[str, list[tuple[float, float, float, float | None]]]:
        """Each unit's position history: ``[(since, lat, lon, alt), ...]`` oldest first (a camera moved
        to another trail starts a new entry)."""
        out: dict[str, list[tuple[float, float, float, float | None]]] = {}
        for row in self.query("SELECT unit, since, lat, lon, alt FROM unit_positions ORDER BY unit, since"):
            out.setdefault(row[0], []).append((row[1], row[2], row[3], row[4]))
        return out

    def active_alerts(self) -> list[dict[str, Any]]:
        return [
            decode_alert(r) for r in self.query("SELECT * FROM alerts WHERE cleared IS NULL ORDER BY since")
        ]

    def alerts(self, *, since: float | None = None, limit: int = 200) -> list[dict[str, Any]]:
        """Alerts raised since `since` (active and cleared), newest first."""
        rows = self.query(
            "SELECT * FROM alerts WHERE raised >= ? ORDER BY raised DESC LIMIT ?", (since or 0.0, limit)
        )
        return [decode_alert(r) for r in rows]

    def raw_counts(self, since: float) -> dict[str, int]:
        rows = self.query("SELECT reason, COUNT(*) FROM raw WHERE time >= ? GROUP BY reason", (since,))
        return {r[0] or "unknown": r[1] for r in rows}


def _range(column: str, since: float | None, until: float | None) -> tuple[list[str], tuple[Any, ...]]:
    where: list[str] = []
    params: tuple[Any, ...] = ()
    if since is not None:
        where.append(f"{column} >= ?")
        params += (since,)
    if until is not None:
        where.append(f"{column} < ?")
        params += (until,)
    return where, params
