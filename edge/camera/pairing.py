"""Paired cameras: two units on either flank of a trail capture together, for individual identification.

A snow leopard is told apart by the rosettes on its flanks, and the two flanks differ. Two units at
one site, facing the trail from both sides, are configured as a pair (``pair_with = "<the other
unit's id>"`` in each one's ``[camera]``). A trigger on either makes both capture:

1. The unit whose own sensor fired (trigger ``pir``, ``pir-continued`` or ``manual``) publishes a
   **pair trigger** the moment its event starts, before its first still, on
   ``uncia/<site>/<unit>/<camera>/event/pair_trigger`` (QoS 1, not retained): the event id, what
   triggered it, and the trigger time (the envelope's ``time``). When its burst ends it publishes
   the same with ``phase: "end"``.
2. The partner, subscribed to ``uncia/<site>/<partner>/+/event/pair_trigger`` (renewed on every
   reconnect by the relay), starts its own burst with trigger ``pair``, tagged with the partner's
   event id (``tags.pair`` in every message of the event), so exports can join the two flanks. Its
   burst goes on while its own PIR sees motion **or the partner's burst is still running** (until the
   partner's ``end``, at most ``max_burst`` stills), so both flanks are shot for the same span.
3. A ``pair`` event never sends a pair trigger itself: no ping-pong. When both PIRs fire at once,
   each unit's pair trigger reaches the other during its own burst; that burst is then tagged with
   the other's event id (``started_by: "self"``) and nothing new starts.

Timing: the trigger goes out through `Relay.publish_now`, not the outbox, and in the test the partner's
event starts within a few milliseconds of the first unit's trigger on a local broker (the spec: 100 ms).
Over the site's Wi-Fi add the network's latency. ``tags.pair.lag_ms`` records, per event, partner
trigger → own trigger, meaningful when both clocks are synchronised (``clocks_synced``).

A pair trigger turned away (the partner is resting after a burst, or lost because the broker was
unreachable) is counted in the health report (``pairing``), never retried: a late picture of the other
flank shows an empty trail.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from edge.camera.addons import CameraAddon
from edge.camera.events import CaptureEvent
from edge.clock import Clock
from edge.fix import ClockSource, iso_utc
from edge.messages import Envelope, MessageError, decode
from edge.topics import EVENT, TopicError, Topics

if TYPE_CHECKING:
    from edge.camera.agent import CameraUnit

PAIR_TRIGGER_TYPE = "pair_trigger"
PAIR_TRIGGER = "pair"  # the trigger of an event started by the partner
OWN_TRIGGERS = frozenset({"pir", "pir-continued", "manual"})  # what a unit tells its partner about
PHASES = ("start", "end")
# Beyond this, a pair trigger (by the two units' synchronised clocks) is too old to be worth a picture.
STALE_AFTER_S = 5.0


class PairMessageError(ValueError):
    """A message on a pair-trigger topic is not a pair trigger from the partner; says what is wrong."""


@dataclass(frozen=True)
class PairTrigger:
    """One pair-trigger message: ``phase`` ``start`` (an event began) or ``end`` (its burst is over)
    of event `event_id` on `unit`'s `camera`, triggered by `trigger` at `trigger_time` (the sender's
    clock, whose source is `clock`)."""

    phase: str
    unit: str
    camera: str
    event_id: str
    trigger: str
    trigger_time: datetime
    clock: ClockSource

    def data(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "camera": self.camera,
            "event_id": self.event_id,
            "trigger": self.trigger,
        }

    @classmethod
    def parse(cls, payload: bytes) -> PairTrigger:
        """Decode a pair-trigger message; `PairMessageError` says why it is not one."""
        try:
            message = decode(payload)
        except MessageError as exc:
            raise PairMessageError(f"not an uncia message: {exc}") from exc
        if message.type != PAIR_TRIGGER_TYPE:
            raise PairMessageError(f"message type {message.type!r}, expected {PAIR_TRIGGER_TYPE!r}")
        data = message.data
        phase = data.get("phase")
        if phase not in PHASES:
            raise PairMessageError(f"phase {phase!r}, expected 'start' or 'end'")
        fields = {}
        for key in ("camera", "event_id", "trigger"):
            value = data.get(key)
            if not isinstance(value, str) or not value:
                raise PairMessageError(f"'{key}' = {value!r}: expected a non-empty string")
            fields[key] = value
        when = datetime.fromisoformat(message.time.replace("Z", "+00:00"))  # decode() checked it
        return cls(phase, message.unit, trigger_time=when, clock=message.clock, **fields)


def pair_filter(site: str, partner: str) -> str:
    """The subscription for `partner`'s pair triggers (any of its cameras)."""
    return f"{Topics(site, partner).base}/+/{EVENT}/{PAIR_TRIGGER_TYPE}"


class PairedCamera(CameraAddon):
    """This unit's half of a camera pair (see the module notes). `report()` counts what went each way."""

    name = "pairing"

    def __init__(
        self,
        unit: CameraUnit,
        partner: str,
        *,
        clock: Clock,
        monotonic: Callable[[], float],
        clock_source: Callable[[], ClockSource],
        log: logging.Logger | None = None,
    ) -> None:
        self.unit = unit
        self.partner = partner
        self.topic = unit.topics.event(unit.camera_id, PAIR_TRIGGER_TYPE)
        self.filter = pair_filter(unit.topics.site, partner)
        self._clock, self._mono, self._clock_source = clock, monotonic, clock_source
        self.log = log or logging.getLogger("uncia.camera.pairing")
        # Not the unit's envelope seq: these never enter the outbox, so they count per process.
        self._envelope = Envelope(unit.unit_id)
        self._source = f"{unit.camera_id}-pair"
        self._seq = 0
        self._lock = threading.Lock()
        self._latest: tuple[PairTrigger, datetime] | None = None  # the partner's start, and when heard
        self._partner_busy_until = 0.0  # monotonic: the partner's burst is running until then
        self._partner_event: str | None = None
        s = unit.settings
        self._longest_burst_s = s.max_burst * s.burst_interval_s + 1.0
        self.counts: Counter[str] = Counter()
        self.last_problem: str | None = None

    # --- hooks ---------------------------------------------------------------------------------------

    def start(self) -> None:
        self.unit.relay.subscribe(self.filter, self._on_message, qos=1)

    def event_started(self, event: CaptureEvent) -> None:
        if event.trigger == PAIR_TRIGGER:
            with self._lock:
                latest = self._latest
            if latest is not None:
                event.tag("pair", self._tag(latest[0], event.trigger_time, started_by="partner"))
            return
        if event.trigger in OWN_TRIGGERS:
            sent = self._send("start", event)
            tag: dict[str, Any] = {"partner": self.partner, "started_by": "self", "sent": sent}
            with self._lock:
                latest = self._latest if self.motion() else None
            if latest is not None:  # both PIRs fired: the partner's trigger came just before ours
                tag.update(self._tag(latest[0], event.trigger_time, started_by="self"))
            event.tag("pair", tag)

    def event_ended(self, event: CaptureEvent, background: bytes | None, best: bytes | None) -> None:
        if event.trigger in OWN_TRIGGERS:
            self._send("end", event)

    def motion(self) -> bool:
        return self._mono() < self._partner_busy_until

    def report(self) -> dict[str, Any]:
        return {
            "partner": self.partner,
            "topic": self.topic,
            "counts": dict(self.counts),
            "last_problem": self.last_problem,
        }

    # --- sending -------------------------------------------------------------------------------------

    def _send(self, phase: str, event: CaptureEvent) -> bool:
        # QoS 1 but NOT through the durable outbox: a pair trigger is only worth anything in the next
        # second. Queued in the outbox during a link outage it would reach the partner minutes or hours
        # later and make it photograph an empty trail (and wear its card and battery for nothing).
        with self._lock:
            self._seq += 1
            seq = self._seq
        payload = self._envelope.encode(
            self._source,
            seq,
            PAIR_TRIGGER_TYPE,
            {"phase": phase, "camera": event.camera_id, "event_id": event.event_id, "trigger": event.trigger},
            time=event.trigger_time,
            received=self._clock(),
            clock=event.clock,
        )
        if self.unit.relay.publish_now(self.topic, payload, qos=1):
            self.counts[f"sent_{phase}"] += 1
            return True
        self.counts[f"not_sent_{phase}"] += 1
        self._problem(f"pair trigger for event {event.event_id} not sent: the broker is not connected")
        return False

    # --- receiving (on the relay thread) ---------------------------------------------------------------

    def _on_message(self, topic: str, payload: bytes) -> None:
        try:
            parts = Topics.parse(topic)
            message = PairTrigger.parse(payload)
        except (TopicError, PairMessageError) as exc:
            self.counts["bad_messages"] += 1
            self._problem(f"ignored a message on {topic}: {exc}")
            return
        if parts.unit != self.partner or message.unit != self.partner:
            self.counts["not_from_partner"] += 1
            self._problem(
                f"ignored a pair trigger on {topic} from unit {message.unit!r}: not {self.partner!r}"
            )
            return
        if message.phase == "end":
            self.counts["partner_ends"] += 1
            with self._lock:
                if message.event_id == self._partner_event:
                    self._partner_busy_until = 0.0
            return
        self.counts["received"] += 1
        heard = self._clock()
        age = (heard - message.trigger_time).total_seconds()
        if self._synced(message) and abs(age) > STALE_AFTER_S:
            self.counts["stale"] += 1
            self._problem(
                f"pair trigger of event {message.event_id} is {age:.1f} s old by our clocks; ignored"
                " (if this repeats, one unit's clock is wrong: check its GPS/NTP)"
            )
            return
        with self._lock:
            self._latest = (message, heard)
            self._partner_event = message.event_id
            self._partner_busy_until = self._mono() + self._longest_burst_s
        current = self.unit.current
        if current is not None:
            # Both PIRs fired (or a burst was running anyway): this burst covers the partner's event.
            self.counts["joined"] += 1
            before = current.tags.get("pair", {})
            if before.get("event_id") is None:
                joined = self._tag(message, current.trigger_time, started_by=_started_by(current))
                current.tag("pair", {**before, **joined})
            return
        self.unit.trigger(PAIR_TRIGGER)

    def _synced(self, message: PairTrigger) -> bool:
        ours = self._clock_source()
        return ClockSource.UNSYNCED not in (ours, message.clock)

    def _tag(self, message: PairTrigger, own_trigger: datetime, *, started_by: str) -> dict[str, Any]:
        return {
            "partner": message.unit,
            "started_by": started_by,
            "camera": message.camera,
            "event_id": message.event_id,
            "trigger": message.trigger,
            "trigger_time": iso_utc(message.trigger_time),
            "lag_ms": round((own_trigger - message.trigger_time).total_seconds() * 1000, 1),
            "clocks_synced": self._synced(message),
        }

    def _problem(self, text: str) -> None:
        if text != self.last_problem:
            self.log.warning("%s", text)
        self.last_problem = text


def _started_by(event: CaptureEvent) -> str:
    return "partner" if event.trigger == PAIR_TRIGGER else "self"
