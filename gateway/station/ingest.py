"""Every message the station hears, put where it belongs: the record, the alert rules, the live view.

`Ingest.handle(topic, payload, now)` takes one MQTT message from the site (``uncia/<site>/#``) and
returns what it changed; it does no I/O of its own beyond the record (the hub commits and publishes).

| topic | goes to |
| --- | --- |
| ``…/unit/state/availability`` | registry (online/offline), unit_offline rule |
| ``…/unit/state/health`` | registry (software, config hash, clock, outbox, modems), modem/battery rules |
| ``…/<camera>/state/health`` | registry (camera state, disk, battery, position), disk/battery rules |
| ``…/<source>/event/fix`` | fixes (once per message id), collar rules, coarse feed, live view |
| ``…/<modem>/event/raw`` | raw packets (diagnosis) |
| ``…/<camera>/event/capture`` / ``thumbnail`` | captures and thumbnails, live view |

Anything else (image chunks, command traffic, the station's own alerts) only counts as "unit seen".
A message that does not parse is counted and logged once per unit and reason, never fatal.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from edge.messages import MessageError, decode
from edge.topics import COMMAND, EVENT, STATE, TopicError, Topics
from gateway.station.alerts import AlertChange, AlertEngine
from gateway.station.record import FixRow, StationRecord, epoch
from gateway.station.view import capture_view, fix_view

STATION_ENTITY = "station"
SEEN_RESOLUTION_S = 1.0  # how often a unit's "last seen" is written to the record  # the hub's own topics: uncia/<site>/<gateway>/station/...


@dataclass
class Outcome:
    """What one message changed."""

    changes: list[AlertChange] = field(default_factory=list)
    live: list[dict[str, Any]] = field(default_factory=list)
    new_fix: FixRow | None = None
    unit_changed: str | None = None


class Ingest:
    def __init__(
        self,
        record: StationRecord,
        engine: AlertEngine,
        *,
        site: str,
        station: str,
        log: logging.Logger | None = None,
    ) -> None:
        self.record = record
        self.engine = engine
        self.site = site
        self.station = station
        self.log = log or logging.getLogger("uncia.station.ingest")
        self.counts: Counter[str] = Counter()
        self._complained: set[tuple[str, str]] = set()
        self.camera_units: set[str] = set()
        self._seen_written: dict[str, float] = {}

    def handle(self, topic: str, payload: bytes, now: float) -> Outcome:
        out = Outcome()
        try:
            parts = Topics.parse(topic)
        except TopicError:
            self.counts["foreign_topic"] += 1
            return out
        unit = parts.unit
        if parts.site != self.site or parts.entity == STATION_ENTITY or parts.kind == COMMAND:
            self.counts["ignored"] += 1
            if parts.kind == COMMAND and parts.response:
                self.record.unit_seen(unit, now)
            return out
        at = datetime.fromtimestamp(now, UTC)
        if now - self._seen_written.get(unit, -1e18) >= SEEN_RESOLUTION_S:
            # "last seen" to the second is plenty, and a write per message is not
            self.record.unit_seen(unit, now)
            self._seen_written[unit] = now
        out.changes += self.engine.unit_seen(unit, at)
        if parts.kind == STATE and parts.type == "availability":
            online = payload.strip() == b"online"
            self.record.unit_availability(unit, online, now)
            out.changes += self.engine.unit_availability(unit, online, at)
            out.unit_changed = unit
            self.counts["availability"] += 1
            return out
        try:
            message = decode(payload)
        except MessageError as exc:
            self._complain(unit, type(exc).__name__, f"{topic}: {exc}")
            return out
        data = message.data
        kind = (parts.kind, parts.type)
        try:
            if kind == (EVENT, "fix"):
                self._fix(unit, parts.entity, message, now, out)
            elif kind == (STATE, "health"):
                camera = message.type == "camera_health"
                if camera:
                    self.camera_units.add(unit)
                observed = epoch(message.time)
                self.record.unit_health(unit, data, now, camera=camera, observed=observed)
                out.changes += self.engine.unit_health(unit, data, at)
                out.unit_changed = unit
                self.counts["health"] += 1
            elif kind == (EVENT, "raw"):
                self.record.add_raw(message.id, unit, parts.entity, now, data)
                self.counts["raw"] += 1
            elif kind == (EVENT, "capture"):
                self.camera_units.add(unit)
                self.record.update_capture(unit, data, clock=str(message.clock), now=now)
                self._capture_changed(data["event_id"], out)
                self.counts["capture"] += 1
            elif kind == (EVENT, "thumbnail"):
                jpeg = base64.b64decode(data["jpeg_b64"], validate=True)
                self.record.add_thumbnail(unit, data, jpeg)
                self._capture_changed(data["event_id"], out)
                self.counts["thumbnail"] += 1
            else:
                self.counts["other"] += 1
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            self._complain(unit, f"bad_{parts.type}", f"{topic}: {type(exc).__name__} {exc}")
        return out

    def _fix(self, unit: str, source: str, message: Any, now: float, out: Outcome) -> None:
        row = FixRow.from_message(
            unit, message.id, source, message.seq, message.data, received=now, clock=str(message.clock)
        )
        if not self.record.add_fix(row):
            self.counts["duplicate_fix"] += 1
            return
        self.counts["fix"] += 1
        out.new_fix = row
        out.live.append({"type": "fix", "track": row.track, "fix": fix_view(row)})
        if unit in self.camera_units and row.track != row.source:
            return  # a camera unit's own GPS: where the unit stands, not an animal (collars it relays count)
        out.changes += self.engine.fix(
            row.track,
            datetime.fromtimestamp(row.time, UTC),
            row.lat,
            row.lon,
            battery_percent=row.battery,
        )

    def _capture_changed(self, event_id: str, out: Outcome) -> None:
        """The page shows the capture as just written (read through the writer's own connection)."""
        row = self.record.capture(event_id)
        if row is not None:
            out.live.append({"type": "capture", "capture": capture_view(row)})

    def _complain(self, unit: str, reason: str, text: str) -> None:
        self.counts[reason] += 1
        if (unit, reason) not in self._complained:
            self._complained.add((unit, reason))
            self.log.warning(
                "unit %s sent a message the station cannot use (%s); further ones are only counted",
                unit,
                text,
            )
