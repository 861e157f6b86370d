"""From a trigger to a burst of stills: when a camera unit captures, and which still shows most.

The policy, as Snow Leopard Trust field teams set their traps (for the technician):

- A PIR trigger starts an **event**, unless a burst is already running (the trigger is part of it)
  or the unit is **resting**: for ``retrigger_s`` after a burst ends, triggers start nothing. A
  resting period stops one animal lingering in front of the trap from filling the card; when it is
  over and the PIR still sees motion, a new event starts by itself (the animal is still there, and
  a PIR held high gives no new edge to wake us).
- In an event, the first still is taken at once, then one every ``interval_s`` **while motion
  lasts** (the PIR output is still active when the next still is due), at most ``max_stills``.
- A still that came late (the camera or the card was slow) does not make the next one come at
  once: the next is due on the burst's grid, but never sooner than half an interval after it.

Everything here is pure: times are plain seconds of a monotonic clock passed in by the caller, and
the still ranking is a function of JPEG bytes. The agent (`edge.camera.agent`) does the waiting.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from PIL import Image, ImageChops, ImageStat, UnidentifiedImageError

from edge.camera.backend import Frame

SIGNATURE_SIZE = (64, 48)  # enough to tell where an animal stands; decoding at 1/8 scale makes it cheap


class Verdict(StrEnum):
    """What a trigger did."""

    START = "start"  # a new event begins
    BUSY = "busy"  # a burst is running: the trigger is part of it
    RESTING = "resting"  # within the re-trigger interval after a burst: ignored


class EndReason(StrEnum):
    """Why a burst stopped."""

    MOTION_ENDED = "motion_ended"
    MAX_STILLS = "max_stills"
    STOPPED = "stopped"  # the agent is shutting down
    CAMERA_ERROR = "camera_error"
    INTERNAL_ERROR = "internal_error"  # a bug: logged with its traceback; the unit keeps watching


@dataclass(frozen=True, slots=True)
class BurstPolicy:
    """How many stills, how far apart, and how long to rest after a burst (seconds)."""

    interval_s: float = 0.5
    max_stills: int = 10
    retrigger_s: float = 5.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.interval_s) and self.interval_s > 0):
            raise ValueError(f"burst interval {self.interval_s!r}: expected more than 0 s")
        if self.max_stills < 1:
            raise ValueError(f"max stills {self.max_stills!r}: expected at least 1")
        if not (math.isfinite(self.retrigger_s) and self.retrigger_s >= 0):
            raise ValueError(f"re-trigger interval {self.retrigger_s!r}: expected 0 s or more")


class TriggerGate:
    """Decides whether a trigger starts an event (see the module notes); counts what it turned away."""

    def __init__(self, policy: BurstPolicy) -> None:
        self.policy = policy
        self.in_burst = False
        self.resting_until: float | None = None
        self.counts: dict[Verdict, int] = dict.fromkeys(Verdict, 0)

    def offer(self, now: float) -> Verdict:
        """A trigger at `now`: START (the caller runs a burst, then calls `finished`), BUSY or RESTING."""
        if self.in_burst:
            verdict = Verdict.BUSY
        elif self.resting_until is not None and now < self.resting_until:
            verdict = Verdict.RESTING
        else:
            verdict = Verdict.START
            self.in_burst = True
        self.counts[verdict] += 1
        return verdict

    def finished(self, now: float) -> None:
        """The burst ended at `now`: rest for the re-trigger interval."""
        self.in_burst = False
        self.resting_until = now + self.policy.retrigger_s

    def rearm(self, now: float, motion: bool) -> bool:
        """True once when the rest is over and motion goes on: the caller then offers a trigger."""
        if self.in_burst or self.resting_until is None or now < self.resting_until:
            return False
        self.resting_until = None  # only once per rest: a later event needs motion to go on again
        return motion


class Burst:
    """The schedule of one burst that started at `start` (monotonic seconds)."""

    def __init__(self, policy: BurstPolicy, start: float) -> None:
        self.policy = policy
        self.start = start
        self.taken = 0
        self.last_taken: float | None = None

    def took(self, at: float) -> None:
        """A still was taken (or tried: a failed still counts, or a broken camera would loop) at `at`."""
        self.taken += 1
        self.last_taken = at

    def next_due(self) -> float | None:
        """When the next still is due, or None when the burst has all its stills."""
        if self.taken >= self.policy.max_stills:
            return None
        due = self.start + self.taken * self.policy.interval_s
        if self.last_taken is not None:
            due = max(due, self.last_taken + self.policy.interval_s / 2)
        return due

    def carry_on(self, motion: bool) -> EndReason | None:
        """Asked when a still is due: None to take it, else why the burst ends."""
        if self.taken >= self.policy.max_stills:
            return EndReason.MAX_STILLS
        return None if motion else EndReason.MOTION_ENDED


def pre_trigger_frames(frames: Sequence[Frame], trigger: datetime, seconds: float) -> list[Frame]:
    """The frames to keep from the pre-trigger buffer: from the newest one taken at or before
    ``trigger - seconds`` (so the kept frames reach at least `seconds` back when the buffer had them),
    up to the trigger. Frames are taken oldest first; later ones (the camera ran on) are dropped."""
    frames = [f for f in frames if f.time <= trigger]
    edge = trigger - timedelta(seconds=seconds)
    first = 0
    for i, frame in enumerate(frames):
        if frame.time <= edge:
            first = i
    return frames[first:]


def signature(jpeg: bytes) -> Image.Image | None:
    """A tiny grey picture of a frame, for comparing frames cheaply; None if it is not a readable image."""
    try:
        img = Image.open(io.BytesIO(jpeg))
        img.draft("L", SIGNATURE_SIZE)  # the JPEG decoder scales by up to 1/8 while decoding
        return img.convert("L").resize(SIGNATURE_SIZE, Image.Resampling.BILINEAR)
    except (UnidentifiedImageError, OSError, ValueError):
        return None


def difference(a: Image.Image, b: Image.Image) -> float:
    """How different two signatures are, 0 (same) and up, after evening out overall brightness:
    a still lit by the IR lamp against a background frame taken without it must not win on light
    alone; what counts is what changed in the picture (an animal)."""
    mean_a = ImageStat.Stat(a).mean[0] or 1.0
    mean_b = ImageStat.Stat(b).mean[0] or 1.0
    scale = mean_a / mean_b
    evened = b.point(lambda v: min(255, round(v * scale)))
    return float(ImageStat.Stat(ImageChops.difference(a, evened)).mean[0]) / mean_a


class BestStill:
    """Keeps the best still seen so far, and only its bytes, so a long burst costs no memory.

    The best is the still most different from `background` (a frame from before the trigger, when
    the picture was empty); without a background, the largest JPEG (more detail). A still that
    cannot be read never wins over one that can; on a tie the earlier still stays.
    """

    def __init__(self, background: bytes | None = None) -> None:
        self._background = background
        self._base: Image.Image | None = None
        self.best_key: object = None
        self.best_jpeg: bytes | None = None
        self._best_score = -math.inf

    def offer(self, key: object, jpeg: bytes) -> bool:
        """Rank one still (``key`` names it for the caller); True if it is the new best."""
        if self._background is not None:  # decoded on first use: not on the way to the first still
            self._base, self._background = signature(self._background), None
        if self._base is None:
            score = float(len(jpeg))
        else:
            sig = signature(jpeg)
            score = -1.0 if sig is None else difference(sig, self._base)
        if score > self._best_score:
            self.best_key, self.best_jpeg, self._best_score = key, jpeg, score
            return True
        return False


def best_still(stills: Sequence[bytes], background: bytes | None = None) -> int:
    """The index of the best of `stills` as `BestStill` ranks them. `stills` must not be empty."""
    if not stills:
        raise ValueError("best_still needs at least one still")
    ranker = BestStill(background)
    for index, jpeg in enumerate(stills):
        ranker.offer(index, jpeg)
    assert isinstance(ranker.best_key, int)
    return ranker.best_key
