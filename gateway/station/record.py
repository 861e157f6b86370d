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
own connection (`StationRecord.open_reader`) and never block the writer. Retention: `prune` deletes
fixes, captures, raw packets and cleared alerts older than ``retention_days``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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
CREATE TABLE IF NOT EXISTS raw (
    msg_id TEXT PRIMARY KEY,
    unit TEXT NOT NULL,
    source TEXT NOT NULL,
    time REAL NOT NULL,
    reason TEXT,
    data TEXT NOT NULL
) WITHOUT ROWID;
"""


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
        """From a fix envelope's fields (``data`` = ``Fix.to_dict()`` plus the radio extras)."""
        return cls(
            msg_id=msg_id,
            track=track_of(unit, source),
            unit=unit,
            source=source,
            seq=seq,
            time=epoch(data["time"]) or 0.0,
            lat=float(data["lat"]),
            lon=float(data["lon"]),
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


_FIX_COLUMNS = [f for f in FixRow.__dataclass_fields__]
_FIX_INSERT = (
    f"INSERT OR IGNORE INTO fixes ({', '.join(_FIX_COLUMNS)}) VALUES ({', '.join('?' * len(_FIX_COLUMNS))})"
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
        values = [getattr(row, c) for c in _FIX_COLUMNS]
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

    def unit_health(self, unit: str, body: dict[str, Any], at: float, *, camera: bool = False) -> None:
        """The latest health report (``camera`` for a camera's own ``<camera>/state/health``)."""
        text = json.dumps(body, separators=(",", ":"))
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
        return _capture(rows[0]) if rows else None

    def active_alerts(self) -> list[dict[str, Any]]:
        return [_alert(r) for r in self.select("SELECT * FROM alerts WHERE cleared IS NULL ORDER BY since")]

    def fixes_since(self, since: float) -> list[FixRow]:
        """Every fix from `since` on, in time order (the hub replays them into the alert rules)."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {', '.join(_FIX_COLUMNS)} FROM fixes WHERE time >= ? ORDER BY time", (since,)
            ).fetchall()
        return [FixRow(*row) for row in rows]

    def open_reader(self) -> RecordReader:
        return RecordReader(self.path)


def _bool(value: Any) -> int | None:
    return None if value is None else int(bool(value))


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
        sql = f"SELECT {', '.join(_FIX_COLUMNS)} FROM fixes"
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
            f"SELECT {', '.join(_FIX_COLUMNS)} FROM fixes f WHERE time = (SELECT MAX(time) FROM fixes g"
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
            yield _capture(row)

    def latest_captures(self, limit: int = 20) -> list[dict[str, Any]]:
        rows = self.query("SELECT * FROM captures ORDER BY start DESC, event_id LIMIT ?", (limit,))
        return [_capture(row) for row in rows]

    def capture(self, event_id: str) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM captures WHERE event_id = ?", (event_id,))
        return _capture(rows[0]) if rows else None

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
        out = []
        for row in self.query("SELECT * FROM units ORDER BY unit"):
            item = dict(row)
            for key in ("health", "camera_health"):
                item[key] = json.loads(item[key]) if item[key] else None
            out.append(item)
        return out

    def active_alerts(self) -> list[dict[str, Any]]:
        return [_alert(r) for r in self.query("SELECT * FROM alerts WHERE cleared IS NULL ORDER BY since")]

    def alerts(self, *, since: float | None = None, limit: int = 200) -> list[dict[str, Any]]:
        """Alerts raised since `since` (active and cleared), newest first."""
        rows = self.query(
            "SELECT * FROM alerts WHERE raised >= ? ORDER BY raised DESC LIMIT ?", (since or 0.0, limit)
        )
        return [_alert(r) for r in rows]

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


def _capture(row: sqlite3.Row | dict[str, Any]) -> dict[str, Any]:
    item = dict(row)
    item["images"] = json.loads(item["images"])
    item["tags"] = json.loads(item["tags"])
    item["night"] = None if item["night"] is None else bool(item["night"])
    return item


def _alert(row: sqlite3.Row | dict[str, Any]) -> dict[str, Any]:
    item = dict(row)
    item["details"] = json.loads(item["details"])
    item["active"] = item["cleared"] is None
    return item
