"""The station record: what the station has heard, on disk, across restarts (SQLite, WAL).

One file (``[station] record``) holds:

- ``fixes``: every position fix the station heard, once (keyed by the message id, so a fix delivered
  twice is stored once), with the radio details of collars heard over LoRa. ``track`` names whose
  fix it is: the collar (``collar-7``) for LoRa collars, ``<unit>/<source>`` for a serial GPS or
  collar dock (``gw-01/gps0``).
- ``captures``: one row per camera event (start, updates and end merged), its images as a JSON list;
  ``thumbnails`` (the JPEG of each event's best still) and ``images`` (full images fetched to the
  station's disk).
- ``units``: the unit registry: availability, last seen, the latest health reports.
- ``alerts``: every alert raised, with the time it cleared (NULL while active).
- ``raw``: radio packets that did not decode, with the reason (diagnosis; pruned like the rest).

Times are stored as UNIX seconds (UTC). Readers (the web page, ``uncia status``, exports) open their
own connection (`StationRecord.open_reader`, `gateway.station.reader`) and never block the writer;
rows are decoded in `gateway.station.rows`. Retention: `prune` deletes
fixes, captures, raw packets and cleared alerts older than ``retention_days``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from gateway.station.geo import haversine_m
from gateway.station.reader import RecordReader
from gateway.station.rows import (
    FIX_COLUMNS,
    FixRow,
    RecordError,
    decode_alert,
    decode_capture,
    decode_unit,
    epoch,
    iso,
    track_of,
)

# What the rest of the project imports from here (the record is the station's one file).
__all__ = ["FixRow", "RecordError", "RecordReader", "StationRecord", "epoch", "iso", "track_of"]

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS fixes (
    msg_id TEXT PRIMARY KEY,
    track TEXT NOT NULL,
    unit TEXT NOT NULL,
    source TEXT NOT NULL,
    seq INTEGER,
    time REAL NOT NULL,
    lat REAL NOT NULL,
    lon REAL NOT NULL,
    alt REAL,
    quality INTEGER,
    hdop REAL,
    sats INTEGER,
    speed REAL,
    course REAL,
    battery REAL,
    rssi REAL,
    snr REAL,
    modem TEXT,
    received REAL,
    clock TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS fixes_track_time ON fixes (track, time);
CREATE INDEX IF NOT EXISTS fixes_time ON fixes (time);
CREATE TABLE IF NOT EXISTS captures (
    event_id TEXT PRIMARY KEY,
    unit TEXT NOT NULL,
    camera TEXT NOT NULL,
    start REAL NOT NULL,
    end REAL,
    trigger TEXT,
    night INTEGER,
    stills INTEGER NOT NULL DEFAULT 0,
    best_image_id TEXT,
    end_reason TEXT,
    images_lost INTEGER NOT NULL DEFAULT 0,
    images TEXT NOT NULL DEFAULT '[]',
    tags TEXT NOT NULL DEFAULT '{}',
    clock TEXT,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS captures_start ON captures (start);
CREATE TABLE IF NOT EXISTS thumbnails (
    image_id TEXT PRIMARY KEY,
    event_id TEXT NOT NULL,
    unit TEXT NOT NULL,
    camera TEXT NOT NULL,
    time REAL NOT NULL,
    width INTEGER,
    height INTEGER,
    jpeg BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS thumbnails_event ON thumbnails (event_id);
CREATE TABLE IF NOT EXISTS images (
    unit TEXT NOT NULL,
    image_id TEXT NOT NULL,
    path TEXT NOT NULL,
    bytes INTEGER,
    sha256 TEXT,
    fetched REAL NOT NULL,
    PRIMARY KEY (unit, image_id)
);
CREATE TABLE IF NOT EXISTS units (
    unit TEXT PRIMARY KEY,
    role TEXT,
    online INTEGER,
    availability_at REAL,
    last_seen REAL,
    health TEXT,
    health_at REAL,
    camera_health TEXT,
    camera_health_at REAL
);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    severity TEXT NOT NULL,
    message TEXT NOT NULL,
    details TEXT NOT NULL,
    since REAL NOT NULL,
    raised REAL NOT NULL,
    cleared REAL
);
CREATE UNIQUE INDEX IF NOT EXISTS alerts_active ON alerts (key) WHERE cleared IS NULL;
CREATE TABLE IF NOT EXISTS unit_positions (
    unit TEXT NOT NULL,
    since REAL NOT NULL,
    lat REAL NOT NULL,
    lon REAL NOT NULL,
    alt REAL,
    PRIMARY KEY (unit, since)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS raw (
    msg_id TEXT PRIMARY KEY,
    unit TEXT NOT NULL,
    source TEXT NOT NULL,
    time REAL NOT NULL,
    reason TEXT,
    data TEXT NOT NULL
) WITHOUT ROWID;
"""


_FIX_INSERT = (
    f"INSERT OR IGNORE INTO fixes ({', '.join(FIX_COLUMNS)}) VALUES ({', '.join('?' * len(FIX_COLUMNS))})"
)


class StationRecord:
    """The station record file. One writer (the hub) holds this object; readers use `open_reader`.

    Writes are grouped: call `commit()` after a batch (the hub commits every batch of messages it took
    from the broker before acknowledging them, so nothing acknowledged is lost in a crash).
    """

    def __init__(self, path: str | Path, *, log: logging.Logger | None = None) -> None:
        self.path = Path(path)
        self.log = log or logging.getLogger("uncia.station.record")
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(_SCHEMA)
            self._db.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
            self._db.execute("BEGIN")
        except (OSError, sqlite3.Error) as exc:
            raise RecordError(
                f"cannot open the station record {self.path} ({exc}): check [station] record in the "
                "gateway config and that the folder is writable"
            ) from exc
        self._dirty = False

    # -- writing -----------------------------------------------------------------------------------
    def commit(self) -> None:
        with self._lock:
            if self._dirty:
                self._db.execute("COMMIT")
                self._db.execute("BEGIN")
                self._dirty = False

    def rollback(self) -> None:
        """Forget the writes since the last commit (a batch that failed half-way is taken again whole)."""
        with self._lock:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("BEGIN")
            self._dirty = False

    def close(self) -> None:
        with self._lock:
            if self._db is None:
                return
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("COMMIT")
            self._db.close()
            self._db = None  # type: ignore[assignment]

    def _write(self, sql: str, params: tuple[Any, ...] | list[Any]) -> int:
        with self._lock:
            cursor = self._db.execute(sql, params)
            self._dirty = True
            return cursor.rowcount

    def add_fix(self, row: FixRow) -> bool:
        """Store a fix; False if a fix with the same message id is already stored (a duplicate)."""
        values = [getattr(row, c) for c in FIX_COLUMNS]
        return self._write(_FIX_INSERT, values) == 1

    def add_raw(self, msg_id: str, unit: str, source: str, time: float, data: dict[str, Any]) -> bool:
        return (
            self._write(
                "INSERT OR IGNORE INTO raw (msg_id, unit, source, time, reason, data) VALUES (?, ?, ?, ?, ?, ?)",
                (msg_id, unit, source, time, data.get("reason"), json.dumps(data, separators=(",", ":"))),
            )
            == 1
        )

    def update_capture(self, unit: str, data: dict[str, Any], *, clock: str | None, now: float) -> None:
        """Merge one capture message (phase start/update/end) into its event's row."""
        event_id = data["event_id"]
        start = epoch(data.get("start")) or now
        with self._lock:
            row = self._db.execute(
                "SELECT images, end FROM captures WHERE event_id = ?", (event_id,)
            ).fetchone()
            if row is None:
                self._write(
                    "INSERT INTO captures (event_id, unit, camera, start, trigger, night, stills, tags, clock,"
                    " updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        event_id,
                        unit,
                        data.get("camera", ""),
                        start,
                        data.get("trigger"),
                        _bool(data.get("night")),
                        int(data.get("stills") or 0),
                        json.dumps(data.get("tags") or {}),
                        clock,
                        now,
                    ),
                )
                images: list[dict[str, Any]] = []
                ended = None
            else:
                images = json.loads(row[0])
                ended = row[1]
            phase = data.get("phase")
            if phase == "end":
                images = list(data.get("images") or images)
                self._write(
                    "UPDATE captures SET end = ?, stills = ?, best_image_id = ?, end_reason = ?, images_lost = ?,"
                    " images = ?, tags = ?, updated = ? WHERE event_id = ?",
                    (
                        epoch(data.get("end")) or now,
                        int(data.get("stills") or 0),
                        data.get("best_image_id"),
                        data.get("end_reason"),
                        int(data.get("images_lost") or 0),
                        json.dumps(images, separators=(",", ":")),
                        json.dumps(data.get("tags") or {}),
                        now,
                        event_id,
                    ),
                )
            elif ended is None:  # an update after the end (a late duplicate) changes nothing
                still = data.get("still")
                if still and all(i.get("id") != still.get("id") for i in images):
                    images.append(still)
                self._write(
                    "UPDATE captures SET stills = MAX(stills, ?), images = ?, tags = ?, updated = ? WHERE event_id = ?",
                    (
                        int(data.get("stills") or 0),
                        json.dumps(images, separators=(",", ":")),
                        json.dumps(data.get("tags") or {}),
                        now,
                        event_id,
                    ),
                )

    def add_thumbnail(self, unit: str, data: dict[str, Any], jpeg: bytes) -> None:
        self._write(
            "INSERT OR REPLACE INTO thumbnails (image_id, event_id, unit, camera, time, width, height, jpeg)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                data["image_id"],
                data["event_id"],
                unit,
                data.get("camera", ""),
                epoch(data.get("time")) or 0.0,
                data.get("width"),
                data.get("height"),
                jpeg,
            ),
        )

    def add_image(self, unit: str, image_id: str, path: Path, *, sha256: str | None, now: float) -> None:
        """A full image fetched from a unit is on the station's disk at `path`."""
        size = path.stat().st_size if path.exists() else None
        self._write(
            "INSERT OR REPLACE INTO images (unit, image_id, path, bytes, sha256, fetched) VALUES (?, ?, ?, ?, ?, ?)",
            (unit, image_id, str(path), size, sha256, now),
        )

    def unit_seen(self, unit: str, at: float) -> None:
        self._write(
            "INSERT INTO units (unit, last_seen) VALUES (?, ?)"
            " ON CONFLICT (unit) DO UPDATE SET last_seen = MAX(COALESCE(last_seen, 0), excluded.last_seen)",
            (unit, at),
        )

    def unit_availability(self, unit: str, online: bool, at: float) -> None:
        self._write(
            "INSERT INTO units (unit, online, availability_at) VALUES (?, ?, ?)"
            " ON CONFLICT (unit) DO UPDATE SET online = excluded.online, availability_at = excluded.availability_at",
            (unit, int(online), at),
        )

    def unit_health(
        self,
        unit: str,
        body: dict[str, Any],
        at: float,
        *,
        camera: bool = False,
        observed: float | None = None,
    ) -> None:
        """The latest health report (``camera`` for a camera's own ``<camera>/state/health``); a camera's
        ``position`` also goes into the unit's position history when it moved (`observed`: the report's
        own time, so a report delivered late after an outage is placed when it was true)."""
        text = json.dumps(body, separators=(",", ":"))
        position = body.get("position")
        if isinstance(position, dict) and position.get("lat") is not None and position.get("lon") is not None:
            self._note_position(unit, observed if observed is not None else at, position)
        if camera:
            sql = (
                "INSERT INTO units (unit, camera_health, camera_health_at, role) VALUES (?, ?, ?, 'camera')"
                " ON CONFLICT (unit) DO UPDATE SET camera_health = excluded.camera_health,"
                " camera_health_at = excluded.camera_health_at, role = 'camera'"
            )
            self._write(sql, (unit, text, at))
        else:
            sql = (
                "INSERT INTO units (unit, health, health_at, role) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (unit) DO UPDATE SET health = excluded.health, health_at = excluded.health_at,"
                " role = COALESCE(excluded.role, units.role)"
            )
            self._write(sql, (unit, text, at, body.get("role")))

    def _note_position(self, unit: str, since: float, position: dict[str, Any]) -> None:
        lat, lon = float(position["lat"]), float(position["lon"])
        with self._lock:
            last = self._db.execute(
                "SELECT lat, lon FROM unit_positions WHERE unit = ? AND since <= ? ORDER BY since DESC LIMIT 1",
                (unit, since),
            ).fetchone()
            if last is not None and haversine_m(last[0], last[1], lat, lon) < MOVED_M:
                return
            self._write(
                "INSERT OR REPLACE INTO unit_positions (unit, since, lat, lon, alt) VALUES (?, ?, ?, ?, ?)",
                (unit, since, lat, lon, position.get("alt")),
            )

    def raise_alert(self, alert: dict[str, Any], at: float) -> None:
        """Store a raised alert (an `Alert.to_dict()`); an alert already active under its key is updated."""
        with self._lock:
            active = self._db.execute(
                "SELECT id FROM alerts WHERE key = ? AND cleared IS NULL", (alert["key"],)
            ).fetchone()
            details = json.dumps(alert.get("details") or {}, separators=(",", ":"))
            if active:
                self._write(
                    "UPDATE alerts SET severity = ?, message = ?, details = ? WHERE id = ?",
                    (alert["severity"], alert["message"], details, active[0]),
                )
            else:
                self._write(
                    "INSERT INTO alerts (key, kind, subject, severity, message, details, since, raised)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        alert["key"],
                        alert["kind"],
                        alert["subject"],
                        alert["severity"],
                        alert["message"],
                        details,
                        epoch(alert.get("since")) or at,
                        at,
                    ),
                )

    def clear_alert(self, key: str, at: float) -> bool:
        return self._write("UPDATE alerts SET cleared = ? WHERE key = ? AND cleared IS NULL", (at, key)) > 0

    def prune(self, now: float, retention_days: float) -> dict[str, int]:
        """Delete what is older than the retention; returns the counts deleted per table."""
        cutoff = now - retention_days * 86400.0
        counts = {}
        with self._lock:
            for table, column in (
                ("fixes", "time"),
                ("raw", "time"),
                ("thumbnails", "time"),
                ("captures", "start"),
            ):
                counts[table] = self._write(f"DELETE FROM {table} WHERE {column} < ?", (cutoff,))
            counts["alerts"] = self._write(
                "DELETE FROM alerts WHERE cleared IS NOT NULL AND cleared < ?", (cutoff,)
            )
            self.commit()
        if any(counts.values()):
            self.log.info(
                "retention (%g days): deleted %s",
                retention_days,
                ", ".join(f"{n} {t}" for t, n in counts.items() if n),
            )
        return counts

    # -- reading (the writer's own view, for the hub) ------------------------------------------------
    def select(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with self._lock:
            cursor = self._db.execute(sql, params)
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def capture(self, event_id: str) -> dict[str, Any] | None:
        rows = self.select("SELECT * FROM captures WHERE event_id = ?", (event_id,))
        return decode_capture(rows[0]) if rows else None

    def units(self, names: Iterable[str]) -> list[dict[str, Any]]:
        """These units' registry rows, health bodies decoded."""
        names = tuple(names)
        marks = ", ".join("?" * len(names))
        return [decode_unit(r) for r in self.select(f"SELECT * FROM units WHERE unit IN ({marks})", names)]

    def active_alerts(self) -> list[dict[str, Any]]:
        return [
            decode_alert(r) for r in self.select("SELECT * FROM alerts WHERE cleared IS NULL ORDER BY since")
        ]

    def fixes_since(self, since: float) -> list[FixRow]:
        """Every fix from `since` on, in time order (the hub replays them into the alert rules)."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {', '.join(FIX_COLUMNS)} FROM fixes WHERE time >= ? ORDER BY time", (since,)
            ).fetchall()
        return [FixRow(*row) for row in rows]

    def open_reader(self) -> RecordReader:
        return RecordReader(self.path)


MOVED_M = 100.0  # a camera's reported position further than this from the last one: it was moved


def _bool(value: Any) -> int | None:
    return None if value is None else int(bool(value))
