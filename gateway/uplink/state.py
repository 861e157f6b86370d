"""The uplinks' own memory (``[uplink] state``, SQLite): what waits to be sent where, what was sent,
what the server refused, how far each uplink has read the record, and the satellite credit ledger.

It lives in its own file so the station record's schema stays the hub's alone: the record says what
the station heard, this file says what left the station. Losing it means re-sending (EarthRanger
drops duplicates) and forgetting the day's credits, so it is written with ``synchronous=FULL``:
writes are few (one per batch, one per satellite message) and each must survive a power cut.

Tables:

- ``items``: one row per thing to send per destination (``dest`` = ``earthranger``), keyed by its id
  (a fix's message id, ``capture:<event id>``). ``state`` is ``queued``, ``done`` or ``parked`` (the
  server refused it for good; ``note`` holds the server's words). ``payload`` is what will be sent
  (cleared when done). Done rows stay until the record scans can no longer find them again
  (`prune_done`), so a fix is queued once however often the record is read.
- ``cursors``: named numbers per destination (how far the record was read, a digest counter).
- ``credits``: per UTC day, what the Iridium uplink spent and sent (``reserved`` is a session whose
  outcome is unknown: counted as spent until known, so a crash can never lead past the budget).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    dest TEXT NOT NULL,
    item_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'queued',
    time REAL NOT NULL,
    received REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_try REAL NOT NULL DEFAULT 0,
    payload TEXT,
    note TEXT,
    updated REAL NOT NULL,
    PRIMARY KEY (dest, item_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS items_due ON items (dest, state, kind, next_try, time);
CREATE TABLE IF NOT EXISTS cursors (
    dest TEXT NOT NULL,
    name TEXT NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (dest, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS credits (
    day TEXT PRIMARY KEY,
    credits INTEGER NOT NULL DEFAULT 0,
    reserved INTEGER NOT NULL DEFAULT 0,
    messages INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0,
    mt_messages INTEGER NOT NULL DEFAULT 0,
    mt_credits INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
"""


class StateError(RuntimeError):
    """The uplink state file cannot be opened or written; the message names the file."""


@dataclass(frozen=True)
class QueuedItem:
    dest: str
    item_id: str
    kind: str
    time: float
    received: float
    attempts: int
    payload: dict[str, Any]
    note: str | None


@dataclass(frozen=True)
class Ledger:
    """One UTC day of satellite use. ``spent`` counts reserved credits too (outcome unknown)."""

    day: str
    credits: int = 0
    reserved: int = 0
    messages: int = 0
    bytes: int = 0
    mt_messages: int = 0
    mt_credits: int = 0

    @property
    def spent(self) -> int:
        return self.credits + self.reserved + self.mt_credits


class UplinkState:
    """One connection to the state file; safe to share between threads (calls are serialised)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StateError(
                f"cannot open the uplink state {self.path} ({exc}): check [uplink] state in the gateway "
                "config and that the folder is writable"
            ) from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _run(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Cursor:
        with self._lock:
            try:
                return self._db.execute(sql, tuple(params))
            except sqlite3.Error as exc:
                raise StateError(f"uplink state {self.path}: {exc}") from exc

    def _many(self, sql: str, rows: list[tuple[Any, ...]]) -> int:
        if not rows:
            return 0
        with self._lock:
            try:
                self._db.execute("BEGIN")
                count = sum(self._db.execute(sql, row).rowcount for row in rows)
                self._db.execute("COMMIT")
                return count
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise StateError(f"uplink state {self.path}: {exc}") from exc

    # -- the queue ---------------------------------------------------------------------------------
    def enqueue(
        self, dest: str, items: Iterable[tuple[str, str, float, float, dict[str, Any]]], now: float
    ) -> int:
        """Queue ``(item_id, kind, time, received, payload)`` rows not seen before; returns how many
        were new (an id already queued, sent or parked is left alone)."""
        rows = [
            (dest, item_id, kind, time, received, json.dumps(payload, separators=(",", ":")), now)
            for item_id, kind, time, received, payload in items
        ]
        return self._many(
            "INSERT OR IGNORE INTO items (dest, item_id, kind, time, received, payload, updated)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows,
        )

    def due(self, dest: str, kind: str, now: float, limit: int) -> list[QueuedItem]:
        """Queued items of `kind` whose time to try has come, oldest first."""
        rows = self._run(
            "SELECT item_id, kind, time, received, attempts, payload, note FROM items"
            " WHERE dest = ? AND state = 'queued' AND kind = ? AND next_try <= ? ORDER BY time, item_id LIMIT ?",
            (dest, kind, now, limit),
        ).fetchall()
        return [QueuedItem(dest, r[0], r[1], r[2], r[3], r[4], json.loads(r[5] or "{}"), r[6]) for r in rows]

    def next_due(self, dest: str) -> float | None:
        """The earliest ``next_try`` of a queued item (None: nothing queued)."""
        row = self._run(
            "SELECT MIN(next_try) FROM items WHERE dest = ? AND state = 'queued'", (dest,)
        ).fetchone()
        return row[0]

    def mark_done(self, dest: str, item_ids: Iterable[str], now: float, note: str | None = None) -> int:
        return self._many(
            "UPDATE items SET state = 'done', payload = NULL, note = ?, attempts = attempts + 1, updated = ?"
            " WHERE dest = ? AND item_id = ? AND state = 'queued'",
            [(note, now, dest, i) for i in item_ids],
        )

    def park(self, dest: str, item_id: str, reason: str, now: float) -> None:
        """The server refused this item for good: keep it (with the reason) but stop sending it."""
        self._run(
            "UPDATE items SET state = 'parked', note = ?, attempts = attempts + 1, updated = ?"
            " WHERE dest = ? AND item_id = ?",
            (reason[:2000], now, dest, item_id),
        )

    def defer(self, dest: str, item_id: str, until: float, note: str, now: float) -> None:
        """Not sendable yet (an image still on its way): look again at `until`."""
        self._run(
            "UPDATE items SET next_try = ?, note = ?, updated = ? WHERE dest = ? AND item_id = ?",
            (until, note, now, dest, item_id),
        )

    def count_attempt(self, dest: str, item_ids: Iterable[str], note: str, now: float) -> None:
        self._many(
            "UPDATE items SET attempts = attempts + 1, note = ?, updated = ? WHERE dest = ? AND item_id = ?",
            [(note[:2000], now, dest, i) for i in item_ids],
        )

    def requeue_parked(self, dest: str, now: float) -> int:
        """Send parked items again (after the cause was fixed on the server); returns how many."""
        return self._run(
            "UPDATE items SET state = 'queued', next_try = 0, updated = ? WHERE dest = ? AND state = 'parked'",
            (now, dest),
        ).rowcount

    def counts(self, dest: str) -> dict[str, int]:
        rows = self._run(
            "SELECT state, COUNT(*) FROM items WHERE dest = ? GROUP BY state", (dest,)
        ).fetchall()
        out = {"queued": 0, "done": 0, "parked": 0}
        out.update({r[0]: r[1] for r in rows})
        return out

    def parked(self, dest: str, limit: int = 50) -> list[tuple[str, str, str | None]]:
        """(item_id, kind, reason) of parked items, most recent first."""
        rows = self._run(
            "SELECT item_id, kind, note FROM items WHERE dest = ? AND state = 'parked' ORDER BY updated DESC LIMIT ?",
            (dest, limit),
        ).fetchall()
        return [(r[0], r[1], r[2]) for r in rows]

    def state_of(self, dest: str, item_id: str) -> str | None:
        row = self._run("SELECT state FROM items WHERE dest = ? AND item_id = ?", (dest, item_id)).fetchone()
        return None if row is None else row[0]

    def prune_done(self, dest: str, received_before: float) -> int:
        """Forget done items received before this (no record scan can find them again)."""
        return self._run(
            "DELETE FROM items WHERE dest = ? AND state = 'done' AND received < ?", (dest, received_before)
        ).rowcount

    # -- cursors -----------------------------------------------------------------------------------
    def cursor(self, dest: str, name: str, default: float | None = None) -> float | None:
        row = self._run("SELECT value FROM cursors WHERE dest = ? AND name = ?", (dest, name)).fetchone()
        return default if row is None else row[0]

    def set_cursor(self, dest: str, name: str, value: float) -> None:
        self._run(
            "INSERT INTO cursors (dest, name, value) VALUES (?, ?, ?)"
            " ON CONFLICT (dest, name) DO UPDATE SET value = excluded.value",
            (dest, name, value),
        )

    # -- the satellite credit ledger ---------------------------------------------------------------
    def ledger(self, day: str) -> Ledger:
        row = self._run(
            "SELECT credits, reserved, messages, bytes, mt_messages, mt_credits FROM credits WHERE day = ?",
            (day,),
        ).fetchone()
        return Ledger(day) if row is None else Ledger(day, *row)

    def reserve(self, day: str, credits: int) -> None:
        """Before a session: these credits may be spent (outcome unknown until the modem answers)."""
        self._run(
            "INSERT INTO credits (day, reserved) VALUES (?, ?)"
            " ON CONFLICT (day) DO UPDATE SET reserved = reserved + excluded.reserved",
            (day, credits),
        )

    def settle(self, day: str, reserved: int, *, sent: bool, size: int, credits: int) -> None:
        """After a session: release the reservation; if the message went, book it."""
        self._run(
            "UPDATE credits SET reserved = MAX(0, reserved - ?), credits = credits + ?, messages = messages + ?,"
            " bytes = bytes + ? WHERE day = ?",
            (reserved, credits if sent else 0, int(sent), size if sent else 0, day),
        )

    def book_mt(self, day: str, credits: int) -> None:
        """A message from HQ was received (RockBLOCK bills received messages too)."""
        self._run(
            "INSERT INTO credits (day, mt_messages, mt_credits) VALUES (?, 1, ?)"
            " ON CONFLICT (day) DO UPDATE SET mt_messages = mt_messages + 1, mt_credits = mt_credits + ?",
            (day, credits, credits),
        )

    def ledgers(self, limit: int = 30) -> list[Ledger]:
        rows = self._run(
            "SELECT day, credits, reserved, messages, bytes, mt_messages, mt_credits FROM credits"
            " ORDER BY day DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [Ledger(*r) for r in rows]
