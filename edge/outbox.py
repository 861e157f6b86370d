"""The durable outbox: every message the unit will publish, on disk until the broker acknowledged it.

Why our own queue: paho keeps unacknowledged messages in memory only (lost on a restart or power cut)
and numbers them with 16-bit ids (at most 65,535 waiting). A station may be cut off from its broker
for days; the outbox keeps millions of messages on the SD card and drains them in order afterwards.

How it works (for the technician reading logs):

- ``enqueue`` gives the message the next sequence number of its source, builds the payload and
  holds it in memory for at most ``commit_interval`` seconds (or ``commit_rows`` messages).
- A commit writes the batch and the new sequence numbers in ONE SQLite transaction (WAL journal,
  ``synchronous=FULL``: the commit returns only after the data is on the medium). From then on the
  message is *accepted*: it survives kill -9 and power loss, and its sequence number is never reused.
- Only committed messages are handed to the relay; a row is deleted after the broker's PUBACK.
- A damaged file is moved aside (``outbox.sqlite3.corrupt-<time>``) and a new one started. A full
  disk never crashes the agent: messages wait in memory (bounded) and commits are retried.
- Over ``max_messages`` the outbox sheds, in this order: health/status messages, then other
  non-fix messages, then fixes, oldest first. Every shed is logged with counts and counted in health.

Threads: any number of producers call ``enqueue`` (a short lock around a list append; no disk I/O);
one background committer thread writes batches with a single writer connection (``executemany``, one
fsync per batch); the relay reads committed rows through its own read-only connection, which WAL lets
run while a commit is in progress, so neither side waits for the other's fsync.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from enum import IntEnum
from functools import lru_cache
from itertools import chain
from pathlib import Path
from typing import Any, NamedTuple

from edge.config import OutboxSettings

SCHEMA_VERSION = 1
# integrity_check also cross-checks every index against its table; on a big file on an SD card that
# can delay the agent's start by minutes. quick_check reads every page and record (O(N)) and catches
# the damage a power cut or failing card does; it is what we run above this size.
FULL_CHECK_MAX_BYTES = 64 * 1024 * 1024
# Shed in chunks down to 95 % of the limit, so shedding runs once per many commits, not every commit.
SHED_HEADROOM = 0.05
# After a failed commit, held messages are retried in chunks this size: as many as the space allows.
_RETRY_CHUNK = 32

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY, priority INTEGER NOT NULL,"
    " qos INTEGER NOT NULL, retain INTEGER NOT NULL, topic TEXT NOT NULL, payload BLOB NOT NULL)",
    # Only non-fix rows are indexed (they are few); fixes are shed oldest-first by rowid order.
    "CREATE INDEX IF NOT EXISTS outbox_nonfix ON outbox(priority, id) WHERE priority < 2",
    "CREATE TABLE IF NOT EXISTS seqs (source TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID",
)
# Rows are inserted many per statement: executemany() steps (and so releases and re-takes the GIL)
# once per row, which under load hands the GIL to another thread each time. 150 rows x 6 values stays
# under SQLite's oldest variable limit (999).
_INSERT_ROWS = 150
_INSERT = "INSERT INTO outbox (id, topic, payload, qos, retain, priority) VALUES "
_SAVE_SEQ = (
    "INSERT INTO seqs (source, seq) VALUES (?, ?) ON CONFLICT(source) DO UPDATE SET seq = excluded.seq"
)
_PEEK = "SELECT id, topic, payload, qos, retain, priority FROM outbox WHERE id > ? ORDER BY id LIMIT ?"
_TAKE = (
    "SELECT id, topic, payload, qos, retain, priority FROM outbox"
    " WHERE id > ? AND id <= ? ORDER BY id LIMIT ?"
)
# Committed rows the relay has not taken yet are also kept in memory (up to this many), so in steady
# state the relay never reads the database; a backlog beyond it is read from disk.
READY_LIMIT = 20_000
_SHED = {
    0: "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE priority < 2 AND priority = 0"
    " AND id > ? ORDER BY priority, id LIMIT ?)",
    1: "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE priority < 2 AND priority = 1"
    " AND id > ? ORDER BY priority, id LIMIT ?)",
    2: "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE priority = 2"
    " AND id > ? ORDER BY id LIMIT ?)",
}
_CORRUPT_CODES = {"SQLITE_CORRUPT", "SQLITE_NOTADB"}


class Priority(IntEnum):
    """Who goes first when the outbox is full: STATUS is shed first, FIX last."""

    STATUS = 0  # health and status reports: the next one says the same, newer
    EVENT = 1  # other messages (raw sentences, alerts, ...)
    FIX = 2  # position fixes: the reason the network exists


_PRIORITY_WORDS = {Priority.STATUS: "health/status", Priority.EVENT: "other", Priority.FIX: "fix"}


class OutboxRow(NamedTuple):
    """A committed message waiting for the broker."""

    id: int
    topic: str
    payload: bytes
    qos: int
    retain: int
    priority: int


class OutboxError(RuntimeError):
    """The outbox cannot be used (in use by another process, directory not writable, closed)."""


def _errname(exc: BaseException) -> str:
    return getattr(exc, "sqlite_errorname", "") or ""


def _is_full(exc: BaseException) -> bool:
    return _errname(exc) == "SQLITE_FULL" or "full" in str(exc)


class Outbox:
    """The durable queue between the NMEA pipeline and the MQTT relay (see the module text)."""

    def __init__(
        self,
        path: str | Path,
        *,
        max_messages: int = 2_000_000,
        commit_interval: float = 0.05,
        log: logging.Logger | None = None,
        commit_rows: int = 2000,
        memory_limit: int = 100_000,
        max_file_bytes: int | None = None,
        background: bool = True,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.max_messages = max_messages
        self.commit_interval = commit_interval
        self.commit_rows = commit_rows
        self.memory_limit = memory_limit
        self.max_file_bytes = max_file_bytes
        self.log = log or logging.getLogger("uncia.outbox")
        self._wall = wall
        self._lock = threading.Lock()  # pending list, seq counters, acks, counters
        self._write_lock = threading.Lock()  # the writer connection
        self._read_lock = threading.Lock()  # the reader connection and the hand-out cursor
        self._pending: list[OutboxRow] = []
        self._dirty_seqs: dict[str, int] = {}
        self._acks: list[int] = []
        self._held: list[OutboxRow] = []  # failed commits, retried
        self._held_seqs: dict[str, int] = {}
        self._write_failing = False
        self._handed_out = 0  # highest id given to the relay by take(): never shed at or below it
        self._ready: deque[OutboxRow] = deque()  # committed, above _db_through, not yet taken
        self._listener: Callable[[int], None] | None = None
        self._closed = False
        self.counts: dict[str, int] = dict.fromkeys(
            ("enqueued", "committed", "published", "acked", "shed", "shed_status", "shed_event", "shed_fix"),
            0,
        )
        self.counts["write_errors"] = 0
        self._lockfile = self._take_lock()
        try:
            self._db, self._reader = self._open()
        except BaseException:
            self._release_lock()
            raise
        self._stored = self._db.execute("SELECT count(*) FROM outbox").fetchone()[0]  # rows on disk
        self._unacked = self._stored  # + enqueued, - acknowledged and deleted, - shed
        self._committed_through = self._db.execute("SELECT max(id) FROM outbox").fetchone()[0] or 0
        self._db_through = self._committed_through  # rows up to here are taken from the database
        self._next_id = self._committed_through + 1
        self._seqs: dict[str, int] = dict(self._db.execute("SELECT source, seq FROM seqs").fetchall())
        if self._stored:
            self.log.info(
                "outbox %s: %s messages from before the restart are waiting to be sent",
                self.path,
                f"{self._stored:,}",
            )
        self._wake = threading.Event()  # there is something to commit
        self._full = threading.Event()  # ... and it should not wait for commit_interval
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._commit_loop, name="uncia-outbox-commit", daemon=True)
            self._thread.start()

    @classmethod
    def from_settings(cls, settings: OutboxSettings, log: logging.Logger | None = None, **kw: Any) -> Outbox:
        return cls(
            settings.path,
            max_messages=settings.max_messages,
            commit_interval=settings.commit_interval,
            log=log,
            **kw,
        )

    # -- opening -----------------------------------------------------------------------------------
    def _take_lock(self) -> Any:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(f"{self.path}.lock", "a+")  # noqa: SIM115 (held for the outbox's lifetime)
        except OSError as exc:
            raise OutboxError(
                f"cannot create the outbox in {self.path.parent} ({exc.strerror}); "
                "check that the directory exists and is writable by the uncia user"
            ) from exc
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            handle.seek(0)
            owner = handle.read().strip() or "unknown"
            handle.close()
            raise OutboxError(
                f"the outbox {self.path} is in use by another uncia process (pid {owner}); "
                "only one agent may use an outbox file"
            ) from exc
        handle.truncate(0)
        handle.write(str(os.getpid()))
        handle.flush()
        return handle

    def _release_lock(self) -> None:
        with contextlib.suppress(OSError):
            self._lockfile.close()

    def _open(self) -> tuple[sqlite3.Connection, sqlite3.Connection]:
        try:
            return self._connect()
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and _errname(exc) not in _CORRUPT_CODES:
                raise OutboxError(f"cannot open the outbox {self.path}: {exc}") from exc
            problem = str(exc)
        except _Damaged as exc:
            problem = str(exc)
        aside = self._move_aside()
        self.log.error(
            "outbox %s is damaged (%s); moved it aside to %s and started a new, empty outbox "
            "(messages in the damaged file were not sent)",
            self.path,
            problem,
            aside,
        )
        return self._connect()

    def _connect(self) -> tuple[sqlite3.Connection, sqlite3.Connection]:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            size = self.path.stat().st_size
            check = "integrity_check" if size <= FULL_CHECK_MAX_BYTES else "quick_check"
            rows = db.execute(f"PRAGMA {check}").fetchall()
            if rows != [("ok",)]:
                raise _Damaged(f"{check}: " + "; ".join(str(r[0]) for r in rows[:3]))
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise _Damaged(f"it has schema version {version}, this program writes {SCHEMA_VERSION}")
            if db.execute("PRAGMA journal_mode=WAL").fetchone()[0].lower() != "wal":
                raise OutboxError(f"the outbox {self.path} cannot use a WAL journal on this file system")
            db.execute("PRAGMA synchronous=FULL")
            if self.max_file_bytes:
                page = db.execute("PRAGMA page_size").fetchone()[0]
                db.execute(f"PRAGMA max_page_count={max(8, self.max_file_bytes // page)}")
            for statement in _SCHEMA:
                db.execute(statement)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            reader = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            reader.execute("PRAGMA query_only=1")
            return db, reader
        except BaseException:
            db.close()
            raise

    def _move_aside(self) -> Path:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self._wall()))
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            source = Path(f"{self.path}{suffix}")
            if source.exists():
                source.rename(f"{aside}{suffix}")
        return aside

    # -- producers ---------------------------------------------------------------------------------
    def enqueue(
        self,
        source: str,
        topic: str,
        make_payload: Callable[[int], bytes],
        *,
        qos: int = 1,
        retain: bool = False,
        priority: Priority | None = None,
    ) -> int:
        """Queue one message; returns its sequence number. It is accepted at the next commit.

        ``make_payload(seq)`` builds the payload once the sequence number is known (it runs under
        the outbox lock, so keep it to encoding). Without a `priority`, it follows from the topic:
        ``…/event/fix`` is a FIX, ``…/state/…`` a STATUS, anything else an EVENT.
        """
        if priority is None:
            priority = _priority_of(topic)
        with self._lock:
            if self._closed:
                raise OutboxError("the outbox is closed; the message was not queued")
            seq = self._seqs.get(source, 0) + 1
            payload = make_payload(seq)
            if type(payload) is not bytes:
                raise TypeError(f"make_payload must return bytes, not {type(payload).__name__}")
            self._seqs[source] = seq
            self._dirty_seqs[source] = seq
            self._pending.append(OutboxRow(self._next_id, topic, payload, qos, retain, priority))
            self._next_id += 1
            self.counts["enqueued"] += 1
            self._unacked += 1
            waiting = len(self._pending)
            if waiting == 1:
                self._wake.set()
            elif waiting == self.commit_rows:
                self._full.set()
        return seq

    def last_seq(self, source: str) -> int:
        """The last sequence number given to `source` (0 if none yet)."""
        with self._lock:
            return self._seqs.get(source, 0)

    # -- the relay's side --------------------------------------------------------------------------
    def set_commit_listener(self, listener: Callable[[int], None] | None) -> None:
        """Call ``listener(n)`` (on the committer thread) after each commit that added n messages."""
        self._listener = listener

    def take(self, limit: int) -> list[OutboxRow]:
        """The relay's read: the next (up to `limit`) committed messages, oldest first, each once.

        The relay keeps what it took until the broker acknowledges it (and re-sends it after a
        reconnect); a new process starts again from the oldest unacknowledged row.
        """
        with self._read_lock:
            if self._handed_out < self._db_through:
                rows = self._reader.execute(_TAKE, (self._handed_out, self._db_through, limit)).fetchall()
                if rows:
                    self._handed_out = rows[-1][0]
                    return [OutboxRow._make(r) for r in rows]
                self._handed_out = self._db_through  # the rest of the backlog was acked or shed
            ready = self._ready
            while ready and ready[0].id <= self._handed_out:
                ready.popleft()
            taken = [ready.popleft() for _ in range(min(limit, len(ready)))]
            if taken:
                self._handed_out = taken[-1].id
            return taken

    def rewind(self) -> None:
        """Hand out every unacknowledged row again, oldest first (a new relay starts from scratch)."""
        with self._read_lock:
            self._handed_out = 0
            self._ready.clear()
            self._db_through = self._committed_through

    def peek(self, after_id: int, limit: int) -> list[OutboxRow]:
        """Up to `limit` committed messages with ids above `after_id`, oldest first (read only)."""
        with self._read_lock:
            rows = self._reader.execute(_PEEK, (after_id, limit)).fetchall()
        return [OutboxRow._make(r) for r in rows]

    def ack(self, ids: Iterable[int]) -> None:
        """The broker acknowledged these messages: delete them (at the next commit)."""
        with self._lock:
            if not self._acks:
                self._wake.set()
            self._acks.extend(ids)

    def note_published(self, count: int) -> None:
        """Counted for health: `count` messages were handed to the broker connection."""
        with self._lock:
            self.counts["published"] += count

    @property
    def depth(self) -> int:
        """Messages not yet acknowledged by the broker: on disk, waiting to commit, or held in memory."""
        with self._lock:
            return self._unacked - len(self._acks)

    def stats(self) -> dict[str, int]:
        """Counts by outcome plus the current depth, for health reports."""
        with self._lock:
            out = dict(self.counts)
            out["waiting"] = self._unacked - len(self._acks)
            out["held_in_memory"] = len(self._held)
        return out

    # -- committing --------------------------------------------------------------------------------
    def _commit_loop(self) -> None:
        # Sleeps while there is nothing to do (an idle unit should not wake 20 times a second); once
        # a first message or acknowledgement arrives, waits commit_interval to gather a batch.
        while not self._closed:
            self._wake.wait()
            self._wake.clear()
            if self._closed:
                break
            self._full.wait(self.commit_interval)
            self._full.clear()
            try:
                self.commit()
            except Exception:  # the committer must outlive any one bad commit
                self.log.exception("outbox commit failed unexpectedly; will retry")
            if self._held:
                self._wake.set()  # a failed write is retried after commit_interval

    def commit(self) -> int:
        """Write everything queued so far to disk now; returns how many messages were committed.

        On a write error (full disk, I/O error) nothing is lost: the batch stays in memory and the
        next commit retries it. The return value is then 0.
        """
        with self._write_lock:
            with self._lock:
                batch, self._pending = self._pending, []
                seqs, self._dirty_seqs = self._dirty_seqs, {}
                acks, self._acks = self._acks, []
            if self._held:
                batch = self._held + batch
                seqs = {**self._held_seqs, **seqs}
                self._held, self._held_seqs = [], {}
            if not batch and not acks:
                return 0
            try:
                self._write(batch, seqs, acks)
                written = len(batch)
            except sqlite3.Error as exc:
                written = self._write_failed(exc, batch, seqs, acks)
            if written and self._write_failing and not self._held:
                self._write_failing = False
                self.log.warning("outbox writes work again; all held messages are now on disk")
        if written and self._listener is not None:
            self._listener(written)
        return written

    flush = commit

    def _write(self, batch: list[OutboxRow], seqs: dict[str, int], acks: list[int]) -> None:
        db = self._db
        shed: dict[Priority, int] = {}
        with contextlib.ExitStack() as stack:
            locked = False
            db.execute("BEGIN IMMEDIATE")
            try:
                deleted = self._delete(acks) if acks else 0
                for start in range(0, len(batch), _INSERT_ROWS):
                    chunk = batch[start : start + _INSERT_ROWS]
                    db.execute(_insert_statement(len(chunk)), list(chain.from_iterable(chunk)))
                if seqs:
                    db.executemany(_SAVE_SEQ, seqs.items())
                stored = self._stored - deleted + len(batch)
                if stored > self.max_messages:
                    # Hold the reader until the hand-over, so the relay cannot take a row being shed.
                    stack.enter_context(self._read_lock)
                    locked = True
                    shed = self._shed(stored)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            if batch or shed:
                if not locked:
                    stack.enter_context(self._read_lock)
                self._hand_over(batch, bool(shed))
        with self._lock:
            self._stored = stored - sum(shed.values())
            self._unacked -= deleted
            self.counts["committed"] += len(batch)
            self.counts["acked"] += deleted
        if shed:
            self._count_shed(shed, where="on disk")

    def _hand_over(self, batch: list[OutboxRow], shed: bool) -> None:
        """Make just-committed rows available to `take` (called with the read lock held)."""
        if batch:
            self._committed_through = batch[-1].id
        ready = self._ready
        if shed or self._handed_out < self._db_through or len(ready) + len(batch) > READY_LIMIT:
            # Backlog (or rows just shed): the relay reads from the database until it catches up.
            ready.clear()
            self._db_through = self._committed_through
        else:
            ready.extend(batch)

    def _delete(self, ids: list[int]) -> int:
        """Delete acknowledged rows as runs of consecutive ids (acks nearly always come in order)."""
        ids.sort()
        runs: list[tuple[int, int]] = []
        start = prev = ids[0]
        for i in ids[1:]:
            if i != prev + 1:
                runs.append((start, prev))
                start = i
            prev = i
        runs.append((start, prev))
        before = self._db.total_changes
        self._db.executemany("DELETE FROM outbox WHERE id BETWEEN ? AND ?", runs)
        return self._db.total_changes - before

    def _shed(self, stored: int) -> dict[Priority, int]:
        need = stored - int(self.max_messages * (1 - SHED_HEADROOM))
        shed: dict[Priority, int] = {}
        for priority in Priority:
            if need <= 0:
                break
            n = self._db.execute(_SHED[priority], (self._handed_out, need)).rowcount
            if n:
                shed[priority] = n
                need -= n
        return shed

    def _count_shed(self, shed: dict[Priority, int], where: str) -> None:
        with self._lock:
            for priority, n in shed.items():
                self._unacked -= n
                self.counts["shed"] += n
                self.counts["shed_" + priority.name.lower()] += n
        words = ", ".join(f"{n:,} {_PRIORITY_WORDS[p]}" for p, n in sorted(shed.items()))
        level = logging.ERROR if Priority.FIX in shed else logging.WARNING
        self.log.log(
            level,
            "outbox full (limit %s messages): shed %s messages %s (oldest first)%s",
            f"{self.max_messages:,}",
            words,
            where,
            "; FIXES WERE DROPPED" if Priority.FIX in shed else "",
        )

    def _write_failed(
        self, exc: sqlite3.Error, batch: list[Any], seqs: dict[str, int], acks: list[int]
    ) -> int:
        """Keep what could not be written in memory; returns how many messages did get written."""
        with self._lock:
            self.counts["write_errors"] += 1
        written = 0
        try:
            # Deleting acknowledged rows frees space, so a full disk can recover: do that alone,
            # then write the batch in small chunks, as far as the space goes.
            if acks:
                self._write([], {}, acks)
            while batch and written < len(batch):
                chunk = batch[written : written + _RETRY_CHUNK]
                self._write(chunk, seqs, [])
                written += len(chunk)
        except sqlite3.Error:
            if acks and not written:
                with self._lock:
                    self._acks[:0] = acks
        self._held, self._held_seqs = batch[written:], seqs
        if len(self._held) > self.memory_limit:
            self._held, shed = _shed_list(self._held, len(self._held) - self.memory_limit)
            self._count_shed(shed, where="from memory")
        if self._held and not self._write_failing:
            self._write_failing = True
            cause = "the disk (or the outbox size cap) is full" if _is_full(exc) else f"write error: {exc}"
            self.log.error(
                "outbox cannot write to %s: %s; keeping %s messages in memory (up to %s) and retrying",
                self.path,
                cause,
                f"{len(self._held):,}",
                f"{self.memory_limit:,}",
            )
        return written

    # -- closing -----------------------------------------------------------------------------------
    def close(self) -> None:
        """Commit what is queued, stop the committer, close the file. Safe to call twice."""
        if self._closed:
            return
        with self._lock:
            self._closed = True
        self._wake.set()
        self._full.set()
        if self._thread is not None:
            self._thread.join()
        try:
            self.commit()
            if self._held:
                self.log.error(
                    "outbox closed with %s messages it could not write to disk; they are lost",
                    f"{len(self._held):,}",
                )
        finally:
            with self._read_lock:
                self._reader.close()
            with self._write_lock:
                self._db.close()
            self._release_lock()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@lru_cache(maxsize=16)
def _insert_statement(rows: int) -> str:
    return _INSERT + ",".join(["(?, ?, ?, ?, ?, ?)"] * rows)


def _priority_of(topic: str) -> Priority:
    if topic.endswith("/event/fix"):
        return Priority.FIX
    if "/state/" in topic:
        return Priority.STATUS
    return Priority.EVENT


class _Damaged(Exception):
    """The file opened but failed its integrity check."""


def _shed_list(rows: list[OutboxRow], need: int) -> tuple[list[OutboxRow], dict[Priority, int]]:
    """Drop `need` rows from an in-memory batch by the same policy as on disk."""
    drop: set[int] = set()
    shed: dict[Priority, int] = {}
    for priority in Priority:
        for row in rows:
            if len(drop) >= need:
                break
            if row.priority == priority:
                drop.add(row.id)
                shed[priority] = shed.get(priority, 0) + 1
    return [r for r in rows if r.id not in drop], shed
