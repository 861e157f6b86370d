"""A capture event: one id from the trigger to the last still, and the messages that tell the station.

Like Frigate's events (``new``, ``update``, ``end`` under one id), every event of a camera unit is
published three ways on ``uncia/<site>/<unit>/<camera>/event/capture``, all with the same
``event_id``:

- ``phase: "start"`` as soon as the trigger is accepted: when, what triggered it, day or night, how
  many seconds of pre-trigger frames were kept;
- ``phase: "update"`` after each full-resolution still is on the card: which image, how many so far;
- ``phase: "end"`` when the burst is over and every image is saved: why it ended, every image id and
  file, the best still, what could not be saved and why, and timings for the technician.

Each body carries the whole summary as it stands (a subscriber that missed the start still knows
the event from the end). The thumbnail of the best still goes separately, on ``…/event/thumbnail``.

Files: an event's images are ``<YYYY-MM-DD>/<event id>-<NNN>.jpg`` under the image folder (the UTC
date of the trigger), each with its ``.json`` sidecar. NNN counts in time order from 000: the
pre-trigger frames first (low resolution), then the stills. Event ids sort by time:
``20261125T211400Z-3fa2c1`` (trigger time to the second, UTC, then 24 random bits).

Everything here is pure: plain data in, plain dicts out; the agent does the I/O.
"""

from __future__ import annotations

import base64
import random
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from edge.camera.backend import Stream
from edge.fix import ClockSource, iso_utc

CAPTURE_TYPE = "capture"
THUMBNAIL_TYPE = "thumbnail"
PHASES = ("start", "update", "end")
_MAX_REASONS = 5  # distinct save-failure reasons kept per event: enough to act on, bounded
_TAG_LOCK = threading.Lock()  # two threads tagging one event at once must not lose a tag


def new_event_id(trigger: datetime, rng: random.Random) -> str:
    """``20261125T211400Z-3fa2c1``: the UTC trigger time (sorts by time), then 24 random bits."""
    return f"{iso_utc(trigger)[:19].replace('-', '').replace(':', '')}Z-{rng.getrandbits(24):06x}"


def image_file(event_id: str, index: int, trigger: datetime) -> str:
    """Where image `index` of an event goes, relative to the image folder."""
    return f"{iso_utc(trigger)[:10]}/{event_id}-{index:03d}.jpg"


@dataclass(frozen=True, slots=True)
class SavedImage:
    """One image of an event on the card: its EXIF ImageUniqueID, file (relative to the image
    folder), capture index, stream (``lores`` pre-trigger frame or ``main`` still), time and size."""

    image_id: str
    file: str
    index: int
    stream: Stream
    time: datetime
    width: int
    height: int
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.image_id,
            "file": self.file,
            "index": self.index,
            "stream": self.stream,
            "time": iso_utc(self.time),
            "width": self.width,
            "height": self.height,
            "bytes": self.size,
        }


@dataclass
class CaptureEvent:
    """What is known about one event so far (see the module notes). Times are the unit's clock,
    whose source (`ClockSource`) is in ``clock``."""

    event_id: str
    unit_id: str
    camera_id: str
    trigger: str  # "pir", "pir-continued" (motion outlasted the rest), "manual", "pair", "self_check"
    trigger_time: datetime
    clock: ClockSource
    night: bool
    pre_trigger_frames: int = 0  # kept from the buffer (saved ones are in `images`)
    pre_trigger_s: float | None = None  # how far before the trigger the kept frames reach
    images: list[SavedImage] = field(default_factory=list)
    lost: int = 0
    lost_reasons: list[str] = field(default_factory=list)
    best: SavedImage | None = None
    ended: datetime | None = None
    end_reason: str | None = None
    first_still_ms: float | None = None  # trigger to the first still on the card
    camera_ms: list[float] = field(default_factory=list)  # time inside the camera per still
    illuminator_s: float = 0.0
    # What other parts of the unit know about the event (``pair``: the partner camera's event,
    # ``collars``: collars heard nearby). Replaced whole, never changed in place: other threads add
    # tags while the capture thread builds message bodies from it.
    tags: dict[str, Any] = field(default_factory=dict)

    def tag(self, key: str, value: Any) -> None:
        """Add or replace one tag (safe from any thread)."""
        with _TAG_LOCK:
            self.tags = {**self.tags, key: value}

    @property
    def stills(self) -> list[SavedImage]:
        return [i for i in self.images if i.stream == "main"]

    @property
    def pre_trigger(self) -> list[SavedImage]:
        return [i for i in self.images if i.stream == "lores"]

    def saved(self, image: SavedImage) -> None:
        self.images.append(image)

    def failed(self, reason: str) -> None:
        """An image of this event could not be saved (the card is full, the camera failed, ...)."""
        self.lost += 1
        if reason not in self.lost_reasons and len(self.lost_reasons) < _MAX_REASONS:
            self.lost_reasons.append(reason)

    def end(self, when: datetime, reason: str) -> None:
        self.ended, self.end_reason = when, reason

    def body(self, phase: str, latest: SavedImage | None = None) -> dict[str, Any]:
        """The ``data`` of a capture message for `phase` (``start``, ``update`` with the `latest`
        still, ``end``)."""
        if phase not in PHASES:
            raise ValueError(f"event phase {phase!r}: expected one of {', '.join(PHASES)}")
        stills = self.stills
        out: dict[str, Any] = {
            "event_id": self.event_id,
            "phase": phase,
            "camera": self.camera_id,
            "trigger": self.trigger,
            "start": iso_utc(self.trigger_time),
            "night": self.night,
            "pre_trigger": {
                "frames": self.pre_trigger_frames,
                "seconds": None if self.pre_trigger_s is None else round(self.pre_trigger_s, 3),
            },
            "stills": len(stills),
        }
        tags = self.tags
        if tags:
            out["tags"] = tags
        if phase == "update" and latest is not None:
            out["still"] = latest.to_dict()
        if phase == "end":
            out["end"] = None if self.ended is None else iso_utc(self.ended)
            out["end_reason"] = self.end_reason
            out["images"] = [i.to_dict() for i in self.images]
            out["best_image_id"] = None if self.best is None else self.best.image_id
            out["images_lost"] = self.lost
            out["lost_reasons"] = list(self.lost_reasons)
            out["illuminator_s"] = round(self.illuminator_s, 3)
            timing: dict[str, Any] = {
                "first_still_ms": None if self.first_still_ms is None else round(self.first_still_ms, 2)
            }
            if self.camera_ms:
                timing["camera_ms_max"] = round(max(self.camera_ms), 2)
            out["timing"] = timing
        return out


def thumbnail_body(
    event: CaptureEvent, image: SavedImage, jpeg: bytes, size: tuple[int, int] | None = None
) -> dict[str, Any]:
    """The ``data`` of a thumbnail message: the small JPEG (base64) of `image` (`size` is the
    thumbnail's width and height), and which image it shows, so the station can ask for the full
    picture by ``image_id``."""
    out: dict[str, Any] = {
        "event_id": event.event_id,
        "camera": event.camera_id,
        "image_id": image.image_id,
        "file": image.file,
        "time": iso_utc(image.time),
        "bytes": len(jpeg),
    }
    if size is not None:
        out["width"], out["height"] = size
    out["jpeg_b64"] = base64.b64encode(jpeg).decode("ascii")
    return out
