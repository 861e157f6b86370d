"""The camera unit's image store: which images are on the card, which reached the base station, and
what to delete when the card fills.

The rules, in the order they apply (for the technician reading the log):

- Nothing is deleted while free space is at or above ``low_free_bytes`` (the low mark).
- Below the low mark, images **already relayed** to the base station are deleted, oldest first, with
  their sidecars, until free space is back above the mark. Each deletion is logged (INFO) with what
  was deleted, how much it freed and why.
- An image **not yet relayed** is only deleted when free space is below ``hard_free_bytes`` (the
  hard limit) and no relayed image is left: oldest first, only until free space is back above the
  hard limit. That loses data, so each one is logged as a WARNING saying so.
- "Oldest" is the order images were added, not their timestamps: a Pi without a real-time clock can
  boot with the wrong time, and the order of arrival survives that.

Sidecars are the files beside an image whose name starts with the image's name without its suffix
and a dot (``IMG_0001.jpg`` → ``IMG_0001.json``, ``IMG_0001.thumb.jpg``, ``IMG_0001.jpg.json``),
plus any named when the image was added.

The index (which images, relayed or not, in which order) is a small SQLite file in the store's root,
each change one transaction, so it survives restarts and power cuts. A full card never crashes the
store: when the index cannot be written (``database or disk is full``, ENOSPC) the change is kept in
memory, the failure logged once, and the write retried after the next clean-up has freed space.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import sqlite3
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from edge.clock import Clock, utc_now

INDEX_NAME = ".image-index.sqlite3"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS images (seq INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE,"
    " added TEXT NOT NULL, relayed INTEGER NOT NULL, sidecars TEXT NOT NULL)"
)
_PUT = "INSERT OR REPLACE INTO images (seq, path, added, relayed, sidecars) VALUES (?, ?, ?, ?, ?)"
_RELAYED = "UPDATE images SET relayed = 1 WHERE path = ?"
_FORGET = "DELETE FROM images WHERE path = ?"


class StoreError(ValueError):
    """An image cannot be registered (outside the store, or not on disk); the message says which."""


class DiskUsage(Protocol):
    """What `shutil.disk_usage` returns; only ``free`` (bytes available to the agent) is read."""

    @property
    def free(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Deletion:
    """One image deleted by `ImageStore.enforce`, with its sidecars, and why."""

    path: Path
    sidecars: tuple[Path, ...]
    bytes_freed: int
    relayed: bool
    added: datetime
    reason: str


@dataclass(slots=True)
class _Entry:
    seq: int
    path: str  # relative to the root, POSIX separators
    added: datetime
    relayed: bool
    sidecars: tuple[str, ...]


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


class ImageStore:
    """Images under ``root`` with their relay state; `enforce` keeps free space above the watermarks.

    ``disk_usage(root)`` reports free space (``shutil.disk_usage`` on a unit; a test passes its own).
    Safe to call from several threads (the camera adds, the relay marks, a timer enforces).
    """

    def __init__(
        self,
        root: str | Path,
        *,
        low_free_bytes: int,
        hard_free_bytes: int,
        disk_usage: Callable[[Path], DiskUsage] = shutil.disk_usage,
        clock: Clock = utc_now,
        log: logging.Logger | None = None,
    ) -> None:
        if not 0 <= hard_free_bytes <= low_free_bytes:
            raise ValueError(
                f"image store watermarks: need 0 <= hard_free_bytes ({hard_free_bytes}) <= low_free_bytes"
                f" ({low_free_bytes}); the hard limit is the emergency floor below the low mark"
            )
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.low_free_bytes = low_free_bytes
        self.hard_free_bytes = hard_free_bytes
        self._disk_usage = disk_usage
        self._clock = clock
        self._log = log or logging.getLogger(__name__)
        self._lock = threading.RLock()
        self._entries: dict[str, _Entry] = {}
        self._next_seq = 1
        self._pending: list[tuple[str, tuple[Any, ...]]] = []
        self._db: sqlite3.Connection | None = None
        self._index_unsaved = False
        self._short_of_space = False
        self.deleted_relayed = 0
        self.deleted_unrelayed = 0
        self._load()

    # --- the index -------------------------------------------------------------------------------

    @property
    def index_path(self) -> Path:
        return self.root / INDEX_NAME

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            db = sqlite3.connect(self.index_path, isolation_level=None, check_same_thread=False)
            try:
                # A persistent rollback journal, not WAL: reading needs no new file (WAL needs its -shm),
                # so a full card can still be read at start, and the journal keeps its blocks between
                # writes, so small writes often still fit on a nearly full card.
                db.execute("PRAGMA journal_mode=PERSIST")
                db.execute("PRAGMA synchronous=FULL")  # an unsaved entry is an image never cleaned up
                db.execute(_SCHEMA)
            except BaseException:
                db.close()
                raise
            self._db = db
        return self._db

    def _load(self) -> None:
        try:
            rows = (
                self._connect().execute("SELECT seq, path, added, relayed, sidecars FROM images").fetchall()
            )
        except sqlite3.OperationalError as exc:
            if self.index_path.exists() and self.index_path.stat().st_size > 0:
                raise StoreError(
                    f"cannot read the image index {self.index_path} ({exc}): check the card and the file's"
                    " permissions, or move the file aside (the images are then taken back as not relayed)"
                ) from exc
            # No index yet and none can be created (a full card): start empty; it is created later.
            self._log.error("image index %s cannot be created yet (%s); kept in memory", self.index_path, exc)
            self._index_unsaved = True
            return
        except sqlite3.DatabaseError as exc:
            self._move_aside_damaged(exc)
            return
        for seq, path, added, relayed, sidecars in sorted(rows):
            names = tuple(s for s in sidecars.split("\n") if s)
            self._entries[path] = _Entry(seq, path, datetime.fromisoformat(added), bool(relayed), names)
            self._next_seq = seq + 1

    def _move_aside_damaged(self, exc: Exception) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        stamp = self._clock().strftime("%Y%m%dT%H%M%SZ")
        for suffix in ("", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                Path(f"{self.index_path}{suffix}").rename(f"{self.index_path}{suffix}.corrupt-{stamp}")
        self._log.error(
            "image index %s was damaged (%s); moved aside, and the images already on the card are"
            " taken back as NOT relayed (so none is lost before it is sent again)",
            self.index_path,
            exc,
        )
        self.adopt_untracked()

    def _write(self, sql: str, params: tuple[Any, ...]) -> None:
        self._pending.append((sql, params))
        self._flush()

    def _flush(self) -> bool:
        if not self._pending:
            return True
        try:
            db = self._connect()
            db.execute("BEGIN IMMEDIATE")
            try:
                for sql, params in self._pending:
                    db.execute(sql, params)
                db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                raise
        except (sqlite3.Error, OSError) as exc:
            if not self._index_unsaved:
                self._log.error(
                    "image index not saved (%s): %d change(s) kept in memory and retried after the next"
                    " clean-up; a restart before then forgets them",
                    exc,
                    len(self._pending),
                )
            self._index_unsaved = True
            return False
        if self._index_unsaved:
            self._log.info("image index saved again (%d held change(s) written)", len(self._pending))
            self._index_unsaved = False
        self._pending.clear()
        return True

    def _take_seq(self) -> int:
        seq, self._next_seq = self._next_seq, self._next_seq + 1
        return seq

    # --- registering images ----------------------------------------------------------------------

    def _rel(self, path: str | Path) -> str:
        full = Path(path) if Path(path).is_absolute() else self.root / path
        try:
            return full.resolve().relative_to(self.root).as_posix()
        except ValueError:
            raise StoreError(f"image {path} is outside the image store {self.root}") from None

    def add(self, path: str | Path, relayed: bool = False, sidecars: Iterable[str | Path] = ()) -> None:
        """Register an image written under the root (absolute, or relative to the root).

        Adding a path again replaces its entry (a new capture under the same name is the newest).
        """
        rel = self._rel(path)
        if not (self.root / rel).is_file():
            raise StoreError(f"image {self.root / rel} is not on disk: write the file before adding it")
        names = tuple(self._rel(s) for s in sidecars)
        with self._lock:
            seq = self._take_seq()
            self._entries.pop(rel, None)
            entry = _Entry(seq, rel, self._clock(), relayed, names)
            self._entries[rel] = entry
            self._write(_PUT, (seq, rel, entry.added.isoformat(), int(relayed), "\n".join(names)))

    def mark_relayed(self, path: str | Path) -> bool:
        """Record that the base station has the image; False if the store does not know it (any more)."""
        rel = self._rel(path)
        with self._lock:
            entry = self._entries.get(rel)
            if entry is None:
                self._log.info(
                    "image %s reported relayed, but it is not in the store (already deleted?)", rel
                )
                return False
            if not entry.relayed:
                entry.relayed = True
                self._write(_RELAYED, (rel,))
            return True

    def adopt_untracked(self) -> int:
        """Take image files under the root that the index does not know as NOT relayed, oldest file
        first (by modification time); returns how many. For after a lost index or a manual copy."""
        with self._lock:
            owners = {((self.root / rel).parent, Path(rel).stem) for rel in self._entries}
            candidates = [
                p
                for p in self.root.rglob("*")
                if p.suffix.lower() in IMAGE_SUFFIXES
                and p.is_file()
                and p.relative_to(self.root).as_posix() not in self._entries
            ]
            adopted: list[Path] = []
            # Shortest names first: IMG_7.jpg is seen before IMG_7.thumb.jpg, which is then its sidecar.
            for p in sorted(candidates, key=lambda p: len(p.name)):
                parts = p.name.split(".")
                if any((p.parent, ".".join(parts[:n])) in owners for n in range(1, len(parts))):
                    continue
                owners.add((p.parent, p.stem))
                adopted.append(p)
            adopted.sort(key=lambda p: p.stat().st_mtime)
            for p in adopted:
                seq = self._take_seq()
                added = datetime.fromtimestamp(p.stat().st_mtime, UTC)
                rel = p.relative_to(self.root).as_posix()
                self._entries[rel] = _Entry(seq, rel, added, False, ())
                self._pending.append((_PUT, (seq, rel, added.isoformat(), 0, "")))
            self._flush()
            if adopted:
                self._log.warning("image store took back %d untracked image(s) as not relayed", len(adopted))
            return len(adopted)

    # --- the watermarks --------------------------------------------------------------------------

    def free_bytes(self) -> int:
        return int(self._disk_usage(self.root).free)

    def usage(self) -> tuple[int, int]:
        """(free, total) bytes of the card holding the images."""
        du = self._disk_usage(self.root)
        return int(du.free), int(du.total)

    def enforce(self) -> list[Deletion]:
        """Delete what the watermarks require (see the module notes); returns what was deleted."""
        with self._lock:
            try:
                free = self.free_bytes()
            except OSError as exc:
                self._log.error("cannot read free space on %s (%s); nothing deleted", self.root, exc)
                return []
            deletions: list[Deletion] = []
            low, hard = self.low_free_bytes, self.hard_free_bytes
            for entry in self._oldest(relayed=True):
                if free >= low:
                    break
                reason = f"already relayed; free space {_size(free)} was below the low mark {_size(low)}"
                free = self._delete(entry, reason, deletions, free)
            for entry in self._oldest(relayed=False):
                if free >= hard:
                    break
                reason = (
                    f"NOT yet relayed, so this image is lost: free space {_size(free)} was below the hard limit"
                    f" {_size(hard)} and no relayed image was left to delete"
                )
                free = self._delete(entry, reason, deletions, free)
            self._report_shortage(free)
            self._flush()
            return deletions

    def _oldest(self, *, relayed: bool) -> list[_Entry]:
        return sorted((e for e in self._entries.values() if e.relayed == relayed), key=lambda e: e.seq)

    def _sidecars(self, entry: _Entry) -> list[Path]:
        image = self.root / entry.path
        named = {self.root / s for s in entry.sidecars}
        images = {self.root / rel for rel in self._entries}
        with contextlib.suppress(OSError):
            prefix = image.stem + "."
            named.update(
                p
                for p in image.parent.iterdir()
                if p.name.startswith(prefix) and p not in images and p.is_file()
            )
        named.discard(image)
        return sorted(named)

    def _delete(self, entry: _Entry, reason: str, deletions: list[Deletion], free: int) -> int:
        image = self.root / entry.path
        sidecars = self._sidecars(entry)
        size = 0
        try:
            size = image.stat().st_size
            size += sum(p.stat().st_size for p in sidecars if p.exists())
            # Sidecars first: a power cut in between leaves an image still listed, deleted next time.
            for p in sidecars:
                p.unlink(missing_ok=True)
            image.unlink()
        except FileNotFoundError:
            for p in sidecars:
                with contextlib.suppress(OSError):
                    p.unlink(missing_ok=True)
            self._log.info("image %s was already gone from the card; dropped from the index", entry.path)
            self._forget(entry)
            return self._free_after(free)
        except OSError as exc:
            self._log.error(
                "could not delete image %s (%s); it stays, the next one is tried", entry.path, exc
            )
            return free
        self._forget(entry)
        if entry.relayed:
            self.deleted_relayed += 1
        else:
            self.deleted_unrelayed += 1
        deletion = Deletion(image, tuple(sidecars), size, entry.relayed, entry.added, reason)
        deletions.append(deletion)
        self._log.log(
            logging.INFO if entry.relayed else logging.WARNING,
            "deleted image %s (added %s, %s with %d sidecar(s)): %s",
            entry.path,
            entry.added.isoformat(),
            _size(size),
            len(sidecars),
            reason,
        )
        return self._free_after(free + size)

    def _free_after(self, estimate: int) -> int:
        try:
            return self.free_bytes()
        except OSError:
            return estimate

    def _forget(self, entry: _Entry) -> None:
        del self._entries[entry.path]
        self._pending.append((_FORGET, (entry.path,)))

    def _report_shortage(self, free: int) -> None:
        short = free < self.low_free_bytes
        if short and not self._short_of_space:
            what = (
                "below the hard limit even after deleting every image allowed: something else is filling the card"
                if free < self.hard_free_bytes
                else "below the low mark with only unrelayed images left: they wait for the relay"
            )
            self._log.warning("image store on %s: free space %s is %s", self.root, _size(free), what)
        elif not short and self._short_of_space:
            self._log.info(
                "image store on %s: free space %s is above the low mark again", self.root, _size(free)
            )
        self._short_of_space = short

    # --- reporting -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, path: object) -> bool:
        if not isinstance(path, str | Path):
            return False
        try:
            return self._rel(path) in self._entries
        except StoreError:
            return False

    def is_relayed(self, path: str | Path) -> bool | None:
        """True/False for a known image, None for one the store does not hold."""
        entry = self._entries.get(self._rel(path))
        return None if entry is None else entry.relayed

    def stats(self) -> dict[str, Any]:
        """Counts for the unit's health report."""
        with self._lock:
            relayed = sum(e.relayed for e in self._entries.values())
            return {
                "images": len(self._entries),
                "relayed": relayed,
                "unrelayed": len(self._entries) - relayed,
                "deleted_relayed": self.deleted_relayed,
                "deleted_unrelayed": self.deleted_unrelayed,
                "index_saved": not self._index_unsaved,
            }

    def close(self) -> None:
        """Write what is held in memory if possible, and close the index."""
        with self._lock:
            self._flush()
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> ImageStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
