"""The message envelope: every JSON payload a unit publishes has the same outer shape.

    {"v":1,"unit":"gw-01","id":"3f9c0a1b2c4d-1a","source":"gps0","seq":812,"type":"fix",
     "time":"2026-11-25T12:00:01.250Z","received":"2026-11-25T12:00:01.262Z","clock":"gps",
     "data":{"time":"2026-11-25T12:00:01.250Z","lat":38.81,"lon":105.95,"quality":1}}

- ``v`` schema version; a receiver rejects versions it does not know instead of guessing.
- ``id`` unique per message; the same message sent twice (at-least-once delivery) keeps its id, so
  receivers drop duplicates by it.
- ``seq`` counts up per ``source`` and survives restarts (the outbox persists it): a jump in ``seq``
  at the receiver means messages were shed or lost, and how many.
- ``time`` is the event's own time (the fix's GPS time); ``received`` is when the unit read it, on the
  clock named by ``clock`` (``gps``, ``ntp`` or ``unsynced``).

Payloads are compact UTF-8 JSON. Encoding uses one prebuilt C JSON encoder (a few µs per fix);
decoding checks every field and raises a `MessageError` subclass that says what is wrong.
"""

from __future__ import annotations

import itertools
import json
import random
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from edge.fix import ClockSource, Fix, iso_utc

SCHEMA_VERSION = 1

# One encoder for the whole process: json.dumps(...) with custom separators builds a new encoder per
# call, which is a measurable part of a 10k msg/s budget.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, check_circular=False)
_encode = _ENCODER.encode
_CLOCKS = {c.value: c for c in ClockSource}


class MessageError(ValueError):
    """A received payload is not a valid uncia message; the text says what is wrong with it."""


class NotJsonError(MessageError):
    """The payload is not UTF-8 JSON (cut short, binary, or from another program)."""


class SchemaVersionError(MessageError):
    """The payload has no schema version, or one this program does not understand."""


class FieldError(MessageError):
    """A field of the envelope is missing or has the wrong kind of value."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        super().__init__(f"message field '{field}' {problem}")


@dataclass(frozen=True, slots=True)
class Message:
    """A decoded envelope. ``data`` is the type-specific body (``Fix.to_dict()`` for ``fix``)."""

    unit: str
    id: str
    source: str
    seq: int
    type: str
    time: str
    received: str
    clock: ClockSource
    data: dict[str, Any]
    v: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return build(
            self.unit,
            self.id,
            self.source,
            self.seq,
            self.type,
            self.data,
            time=self.time,
            received=self.received,
            clock=self.clock,
        )

    def encode(self) -> bytes:
        return _encode(self.to_dict()).encode()

    def fix(self) -> Fix:
        """The body as a `Fix` (only for ``type == "fix"``); `FieldError` if the body is not a fix."""
        if self.type != "fix":
            raise FieldError("type", f"is {self.type!r}, not 'fix'")
        try:
            return Fix.from_dict(self.data)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise FieldError("data", f"is not a valid fix ({exc!r})") from exc


class MessageIds:
    """Unique message ids: a random 48-bit prefix chosen at start, then a counter (``3f9c0a1b2c4d-1a``).

    Cheaper than a UUID per message and still unique across restarts and units, because every
    process draws a new prefix. Pass a seeded `random.Random` to get repeatable ids in tests.
    """

    __slots__ = ("_count", "prefix")

    def __init__(self, rand: random.Random | None = None) -> None:
        rand = rand or random.SystemRandom()
        self.prefix = f"{rand.getrandbits(48):012x}"
        self._count = itertools.count(1)  # next() on a count is atomic under the GIL

    def next(self) -> str:
        return f"{self.prefix}-{next(self._count):x}"

    __call__ = next


def _stamp(moment: str | datetime) -> str:
    return moment if type(moment) is str else iso_utc(moment)  # type: ignore[arg-type]


def build(
    unit: str,
    id: str,
    source: str,
    seq: int,
    type_: str,
    data: dict[str, Any],
    *,
    time: str | datetime,
    received: str | datetime,
    clock: ClockSource | str,
) -> dict[str, Any]:
    """The envelope as a dict (key order is the wire order)."""
    return {
        "v": SCHEMA_VERSION,
        "unit": unit,
        "id": id,
        "source": source,
        "seq": seq,
        "type": type_,
        "time": _stamp(time),
        "received": _stamp(received),
        "clock": str(clock),
        "data": data,
    }


def encode(envelope: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON of an envelope made by `build`."""
    return _encode(envelope).encode()


class Envelope:
    """Builds the payloads of one unit: ``Envelope("gw-01").fix("gps0", seq, fix, received=..., clock=...)``.

    This is what an `Outbox.enqueue` ``make_payload`` callback calls once the outbox has assigned the
    sequence number.
    """

    __slots__ = ("ids", "unit")

    def __init__(self, unit: str, ids: MessageIds | None = None) -> None:
        self.unit = unit
        self.ids = ids or MessageIds()

    def encode(
        self,
        source: str,
        seq: int,
        type_: str,
        data: dict[str, Any],
        *,
        time: str | datetime,
        received: str | datetime,
        clock: ClockSource | str,
    ) -> bytes:
        envelope = build(
            self.unit, self.ids.next(), source, seq, type_, data, time=time, received=received, clock=clock
        )
        return _encode(envelope).encode()

    def fix(self, source: str, seq: int, fix: Fix, *, received: str | datetime, clock: ClockSource) -> bytes:
        """A ``fix`` message; its ``time`` is the fix's own (GPS) time."""
        data = fix.to_dict()
        return self.encode(source, seq, "fix", data, time=data["time"], received=received, clock=clock)


_STR_FIELDS = ("unit", "id", "source", "type", "time", "received")


def decode(payload: bytes | str) -> Message:
    """Parse and check an envelope; raises `NotJsonError`, `SchemaVersionError` or `FieldError`."""
    try:
        obj = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        preview = payload[:40] if isinstance(payload, bytes | str) else payload
        raise NotJsonError(f"message is not UTF-8 JSON ({exc}); starts with {preview!r}") from exc
    if not isinstance(obj, dict):
        raise NotJsonError(f"message is JSON but not an object (got {type(obj).__name__})")
    version = obj.get("v")
    if version is None:
        raise SchemaVersionError("message has no schema version 'v'; it is not an uncia envelope")
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise SchemaVersionError(
            f"message schema version {version!r} is not understood here (this program reads "
            f"version {SCHEMA_VERSION}); update uncia on the receiving side"
        )
    for name in _STR_FIELDS:
        value = obj.get(name)
        if not isinstance(value, str) or not value:
            problem = "is missing" if value is None else f"= {value!r}: expected a non-empty string"
            raise FieldError(name, problem)
    for name in ("time", "received"):
        try:
            datetime.fromisoformat(obj[name].replace("Z", "+00:00"))
        except ValueError as exc:
            raise FieldError(name, f"= {obj[name]!r}: expected an ISO 8601 time") from exc
    seq = obj.get("seq")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise FieldError("seq", f"= {seq!r}: expected a whole number 0 or more")
    clock = _CLOCKS.get(obj.get("clock"))  # type: ignore[arg-type]
    if clock is None:
        raise FieldError("clock", f"= {obj.get('clock')!r}: expected one of {', '.join(_CLOCKS)}")
    data = obj.get("data")
    if not isinstance(data, dict):
        raise FieldError("data", f"= {data!r}: expected a JSON object")
    return Message(
        unit=obj["unit"],
        id=obj["id"],
        source=obj["source"],
        seq=seq,
        type=obj["type"],
        time=obj["time"],
        received=obj["received"],
        clock=clock,
        data=data,
    )
