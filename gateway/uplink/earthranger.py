"""The EarthRanger uplink: collar fixes and camera-trap images from the station record to an
EarthRanger server, each delivered once, across outages and restarts.

How it works, one `step` at a time (a thread runs them; tests call `step` directly):

1. **Find** what is new in the record and queue it in the uplink state file (`UplinkState`): collar
   fixes by the time the station stored them (``received``), camera events once they ended. Each
   thing has an id (the fix's message id, ``capture:<event id>``) and is queued at most once,
   however often the record is read.
2. **Send** what is queued, oldest first: fixes in batches of ``batch`` observations per request,
   then each event's image (the full image if the station fetched it, else its thumbnail).
3. **Judge** the answer (`gateway.uplink.er_api`): 2xx and 409 (the server already had it) mark the
   items done; a network failure, timeout, 408, 429 or 5xx leaves them queued and the next try waits
   longer (``retry_s`` doubling up to ``retry_max_s``, with jitter); any other 4xx parks the item
   with the server's words (a refused batch is first split, so one bad fix does not hold back the
   rest); 401/403 stops sending with a "token rejected" error until the token is fixed.

The record is read with ``received`` cursors (how far each scan got) and the done items are kept
until no scan can find them again, so a fix stored late (a LoRa batch, a broker outage) still goes,
and nothing goes twice. After a restart the queue is where it was: items are marked done only after
the server's answer, and the server drops what it already has, so the worst case (a crash between
a post and its answer) is a duplicate the server ignores.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

from edge.config import software_version
from gateway.station.record import FixRow, RecordReader, iso
from gateway.uplink.er_api import (
    EarthRangerApi,
    EndpointMissing,
    ErError,
    Rejected,
    ServerUnavailable,
    TokenRejected,
)
from gateway.uplink.settings import EarthRangerSettings, read_token
from gateway.uplink.state import QueuedItem, UplinkState
from gateway.uplink.worker import RecordSource, UplinkThread

DEST = "earthranger"
FIX, CAPTURE = "fix", "capture"
# Each record scan starts this far before its cursor: the station clock stepping back, or a batch
# committed a moment after a later one was read. What a re-scan finds again is already queued.
SKEW_S = 600.0
SWEEP_EVERY_S = 86_400.0  # a full scan of the record, for fixes stored later than late_days
PRUNE_EVERY_S = 3600.0
BATCHES_PER_STEP = 20  # then the thread looks at stop() again
_FIX_COLUMNS = ", ".join(f.name for f in fields(FixRow))
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


class EarthRangerUplink:
    """Pushes collar fixes and camera-trap images from the station record to one EarthRanger server.

    ``state`` is the shared uplink state; ``token`` defaults to reading ``token_file``.
    ``clock`` is wall-clock UNIX seconds; ``rng`` jitters the retry waits.
    """

    def __init__(
        self,
        settings: EarthRangerSettings,
        record_path: str | Path,
        state: UplinkState,
        *,
        token: str | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        log: logging.Logger | None = None,
    ) -> None:
        self.settings = settings
        self.record_path = Path(record_path)
        self.state = state
        self.log = log or logging.getLogger("uncia.uplink.earthranger")
        self.api = EarthRangerApi(
            settings.url,
            token if token is not None else read_token(settings.token_file),
            settings.provider_key,
            timeout=settings.timeout_s,
        )
        self._clock = clock
        self._rng = rng or random.Random()
        self._records = RecordSource(record_path, "EarthRanger", self.log)
        self._failures = 0
        self._failing_since: float | None = None
        self._last_sweep = -1e18
        self._last_prune = -1e18
        self.counters: Counter[str] = Counter()
        self.last_error: str | None = None
        self.last_success: float | None = None
        self.token_rejected = False
        self._thread = UplinkThread("uplink-earthranger", self.step, self.log)

    # -- running -----------------------------------------------------------------------------------
    def start(self) -> None:
        self.log.info("EarthRanger uplink to %s (provider %s)", self.api.url, self.settings.provider_key)
        self._thread.start()

    def stop(self) -> None:
        self._thread.stop(timeout=self.settings.timeout_s + 5.0)
        self._records.close()

    def wake(self) -> None:
        """New data in the record: look now rather than at the next interval."""
        self._thread.wake()

    def step(self) -> float:
        """Find, send, judge once; returns the seconds to wait before the next step."""
        now = self._clock()
        reader = self._open_reader()
        if reader is None:
            return self.settings.interval_s
        self.feed(reader, now)
        if now - self._last_prune >= PRUNE_EVERY_S:
            self._prune()
            self._last_prune = now
        return self.send(reader, now)

    def _open_reader(self) -> RecordReader | None:
        return self._records.get()

    # -- 1. find -----------------------------------------------------------------------------------
    def feed(self, reader: RecordReader, now: float) -> int:
        """Queue what is new in the record; returns how many items were queued."""
        first = self.state.cursor(DEST, "fix_received") is None
        if first:
            start = now - self.settings.backfill_days * 86_400.0
            for name in ("fix_received", "sweep_received", "capture_updated"):
                self.state.set_cursor(DEST, name, start)
        queued = 0
        fix_cursor = self.state.cursor(DEST, "fix_received") or 0.0
        rows = reader.query(
            f"SELECT {_FIX_COLUMNS} FROM fixes WHERE time >= ? AND COALESCE(received, time) > ?"
            " AND track LIKE 'collar-%' ORDER BY time",
            (fix_cursor - self.settings.late_days * 86_400.0, fix_cursor - SKEW_S),
        )
        queued += self._queue_fixes(rows, "fix_received", fix_cursor, now)
        if now - self._last_sweep >= SWEEP_EVERY_S:
            sweep_cursor = self.state.cursor(DEST, "sweep_received") or 0.0
            rows = reader.query(
                f"SELECT {_FIX_COLUMNS} FROM fixes WHERE COALESCE(received, time) > ?"
                " AND track LIKE 'collar-%' ORDER BY time",
                (sweep_cursor - SKEW_S,),
            )
            found = self._queue_fixes(rows, "sweep_received", sweep_cursor, now)
            if found:
                self.log.info(
                    "EarthRanger: %d fixes stored late found by the daily sweep of the record", found
                )
            queued += found
            self._last_sweep = now
        if self.settings.images:
            queued += self._queue_captures(reader, now)
        if queued:
            self.counters["queued"] += queued
        return queued

    def _queue_fixes(self, rows: list[Any], cursor: str, value: float, now: float) -> int:
        fixes = [FixRow(*row) for row in rows]
        if not fixes:
            return 0
        items = [
            (f.msg_id, FIX, f.time, f.received if f.received is not None else f.time, self.observation(f))
            for f in fixes
        ]
        new = self.state.enqueue(DEST, items, now)
        latest = max(item[3] for item in items)
        if latest > value:
            self.state.set_cursor(DEST, cursor, latest)
        return new

    def observation(self, fix: FixRow) -> dict[str, Any]:
        """One fix as an EarthRanger generic sensor observation."""
        additional: dict[str, Any] = {"station": fix.unit, "msg_id": fix.msg_id}
        for name, key in (
            ("alt", "altitude_m"),
            ("hdop", "hdop"),
            ("sats", "satellites"),
            ("quality", "fix_quality"),
            ("speed", "speed_mps"),
            ("course", "heading_deg"),
            ("battery", "battery_percent"),
            ("rssi", "rssi_dbm"),
            ("snr", "snr_db"),
        ):
            value = getattr(fix, name)
            if value is not None:
                additional[key] = value
        if fix.received is not None:
            additional["received_at"] = iso(fix.received)
        return {
            "manufacturer_id": fix.track,
            "source_type": self.settings.source_type,
            "subject_name": fix.track,
            "subject_subtype": self.settings.subject_subtype,
            "model_name": "uncia LoRa collar" if fix.modem else f"uncia {fix.source}",
            "recorded_at": iso(fix.time),
            "location": {"lat": fix.lat, "lon": fix.lon},
            "additional": additional,
        }

    def _queue_captures(self, reader: RecordReader, now: float) -> int:
        cursor = self.state.cursor(DEST, "capture_updated") or 0.0
        rows = reader.query(
            "SELECT event_id, unit, camera, start, end, trigger, best_image_id, images, tags, updated"
            " FROM captures WHERE end IS NOT NULL AND updated > ? ORDER BY start",
            (cursor - SKEW_S,),
        )
        if not rows:
            return 0
        items = []
        for r in rows:
            event_id, unit, camera, start, end, trigger, best, images, tags, updated = tuple(r)
            if trigger == "self_check":  # the unit's daily test picture, not a detection
                continue
            images = json.loads(images or "[]")
            if best is None:
                best = next((i.get("id") for i in images if i.get("stream", "main") == "main"), None)
            if best is None:
                continue  # an event without a still (the card was full): nothing to show
            payload = {
                "unit": unit,
                "camera": camera,
                "event_id": event_id,
                "start": start,
                "end": end,
                "trigger": trigger,
                "image_id": best,
                "tags": json.loads(tags or "{}"),
                "stored": updated,
            }
            items.append((f"capture:{event_id}", CAPTURE, start, updated, payload))
        new = self.state.enqueue(DEST, items, now)
        latest = max(r[9] for r in rows)
        if latest > cursor:
            self.state.set_cursor(DEST, "capture_updated", latest)
        return new

    def _prune(self) -> None:
        horizon = min(
            self.state.cursor(DEST, "fix_received") or 0.0,
            self.state.cursor(DEST, "sweep_received") or 0.0,
            self.state.cursor(DEST, "capture_updated") or 0.0,
        )
        self.state.prune_done(DEST, horizon - SKEW_S - 86_400.0)

    # -- 2. send, 3. judge -------------------------------------------------------------------------
    def send(self, reader: RecordReader, now: float) -> float:
        """Send what is due; returns the seconds until the next step should run."""
        for _ in range(BATCHES_PER_STEP):
            if self._thread.stopping:
                return 0.0
            batch = self.state.due(DEST, FIX, now, self.settings.batch)
            kind = FIX
            if not batch:
                batch = self.state.due(DEST, CAPTURE, now, 1) if self.settings.images else []
                kind = CAPTURE
            if not batch:
                return self._idle_wait(now)
            try:
                if kind == FIX:
                    self._send_fixes(batch, now)
                else:
                    self._send_capture(reader, batch[0], now)
            except (ServerUnavailable, TokenRejected, EndpointMissing) as exc:
                return self._failed(exc, batch, now)
            self._recovered(now)
        return 0.0  # more is waiting: carry on at once

    def _idle_wait(self, now: float) -> float:
        wait = self.settings.interval_s
        due = self.state.next_due(DEST)
        if due is not None:
            wait = min(wait, max(1.0, due - now))
        return wait

    def _send_fixes(self, batch: list[QueuedItem], now: float) -> None:
        try:
            answer = self.api.post_observations([item.payload for item in batch])
        except Rejected as exc:
            if len(batch) > 1:
                self.log.warning(
                    "EarthRanger refused a batch of %d fixes (%s); sending them one by one to find the bad ones",
                    len(batch),
                    exc.words or exc.status,
                )
                for item in batch:
                    self._send_fixes([item], now)
                return
            self._park(batch[0], exc, now)
            return
        self.state.mark_done(
            DEST, [item.item_id for item in batch], now, "duplicate" if answer.duplicate else None
        )
        self.counters["fixes_sent"] += len(batch)
        if answer.duplicate:
            self.counters["fix_batches_duplicate"] += 1

    def _send_capture(self, reader: RecordReader, item: QueuedItem, now: float) -> None:
        p = item.payload
        jpeg, which = self._image(reader, p)
        if jpeg is None:
            waited_h = (now - float(p.get("stored") or item.received)) / 3600.0
            if waited_h >= self.settings.image_wait_h:
                self.state.park(
                    DEST,
                    item.item_id,
                    f"no image of event {p['event_id']} reached the station within {self.settings.image_wait_h:g} h",
                    now,
                )
                self.counters["images_parked"] += 1
            else:
                self.state.defer(
                    DEST,
                    item.item_id,
                    now + min(600.0, self.settings.interval_s * 5),
                    "waiting for the image",
                    now,
                )
            return
        fields_ = {
            "camera_name": p.get("camera") or p["unit"],
            "camera_description": f"uncia camera unit {p['unit']}",
            "camera_version": f"uncia {software_version()}",
            "time": iso(float(p["start"])) or "",
        }
        position = self._camera_position(reader, p["unit"])
        if position is not None:
            fields_["location"] = json.dumps({"latitude": position[0], "longitude": position[1]})
        filename = _SAFE.sub("_", f"{p['unit']}_{p['event_id']}") + ".jpg"
        try:
            answer = self.api.post_camera_trap(fields_, filename, jpeg)
        except Rejected as exc:
            self._park(item, exc, now)
            return
        group = answer.data.get("group_id") if isinstance(answer.data, dict) else None
        note = "duplicate" if answer.duplicate else (f"{which}; ER event {group}" if group else which)
        self.state.mark_done(DEST, [item.item_id], now, note)
        self.counters["images_sent"] += 1

    def _image(self, reader: RecordReader, p: dict[str, Any]) -> tuple[bytes | None, str]:
        path = reader.image_path(p["unit"], p["image_id"])
        if path is not None:
            try:
                return path.read_bytes(), "full image"
            except OSError as exc:
                self.log.warning("EarthRanger: cannot read %s (%s); sending the thumbnail instead", path, exc)
        thumb = reader.thumbnail(p["event_id"])
        return (thumb, "thumbnail") if thumb else (None, "")

    def _camera_position(self, reader: RecordReader, unit: str) -> tuple[float, float] | None:
        for row in reader.units():
            if row["unit"] != unit:
                continue
            for body in (row.get("camera_health"), row.get("health")):
                pos = body.get("position") if isinstance(body, dict) else None
                if (
                    isinstance(pos, dict)
                    and isinstance(pos.get("lat"), int | float)
                    and isinstance(pos.get("lon"), int | float)
                ):
                    return float(pos["lat"]), float(pos["lon"])
        return None

    def _park(self, item: QueuedItem, exc: ErError, now: float) -> None:
        reason = f"{exc.status}: {exc.words or exc}"
        self.state.park(DEST, item.item_id, reason, now)
        self.counters["parked"] += 1
        self.log.warning(
            "EarthRanger refused %s %s for good (%s); parked, see `uplink parked`. Fix the cause, then requeue",
            item.kind,
            item.item_id,
            reason,
        )

    def _failed(self, exc: ErError, batch: list[QueuedItem], now: float) -> float:
        self._failures += 1
        if self._failing_since is None:
            self._failing_since = now
        self.state.count_attempt(DEST, [i.item_id for i in batch], str(exc), now)
        self.token_rejected = isinstance(exc, TokenRejected)
        wait = min(self.settings.retry_max_s, self.settings.retry_s * 2 ** (self._failures - 1))
        wait *= 0.5 + 0.5 * self._rng.random()  # jitter: stations behind one link do not retry in step
        if isinstance(exc, ServerUnavailable) and exc.retry_after is not None:
            wait = max(wait, min(exc.retry_after, self.settings.retry_max_s))
        if isinstance(exc, TokenRejected | EndpointMissing):
            wait = max(wait, min(300.0, self.settings.retry_max_s))  # a person must act: no hammering
        message = str(exc)
        if message != self.last_error or self._failures in (1, 10, 100) or self._failures % 1000 == 0:
            level = logging.ERROR if isinstance(exc, TokenRejected | EndpointMissing) else logging.WARNING
            self.log.log(
                level, "EarthRanger: %s (failure %d; next try in %.1f s)", message, self._failures, wait
            )
        self.last_error = message
        self.counters["failures"] += 1
        return wait

    def _recovered(self, now: float) -> None:
        if self._failures:
            self.log.info(
                "EarthRanger: sending again after %d failures over %.0f s",
                self._failures,
                now - (self._failing_since or now),
            )
        self._failures = 0
        self._failing_since = None
        self.token_rejected = False
        self.last_success = now

    # -- for staff ---------------------------------------------------------------------------------
    def requeue_parked(self) -> int:
        """Send the parked items again (after fixing what the server complained about)."""
        count = self.state.requeue_parked(DEST, self._clock())
        if count:
            self.log.info("EarthRanger: %d parked items queued again", count)
            self.wake()
        return count

    def status(self) -> dict[str, Any]:
        """For the station page and `uncia status`: what waits, what failed, since when."""
        return {
            "destination": DEST,
            "url": self.api.url,
            "provider_key": self.settings.provider_key,
            "running": self._thread.running,
            **{f"items_{k}": v for k, v in self.state.counts(DEST).items()},
            "counters": dict(self.counters),
            "last_success": iso(self.last_success),
            "failing_since": iso(self._failing_since),
            "consecutive_failures": self._failures,
            "last_error": self.last_error if self._failures else None,
            "token_rejected": self.token_rejected,
            "parked": [{"item": i, "kind": k, "reason": r} for i, k, r in self.state.parked(DEST, 10)],
        }
