"""What every camera of a camera unit offers, real or simulated.

A camera unit keeps its camera running all night: a small low-resolution ("lores") picture streams
continuously into the pre-trigger buffer (`edge.camera.ring.PreTriggerBuffer`) and is what motion
checks look at; when the PIR fires, the agent asks for full-resolution ("main") stills. Both come out
as a `Frame`: JPEG bytes plus when, how big and from which stream.

Implementations: `edge.camera.simulated.SimulatedCamera` (draws a night scene, no hardware) and
`edge.camera.picamera.Picamera2Camera` (the Pi camera through picamera2). Agent code only ever holds
a `CameraBackend` and never knows which one it has.

Threads: one thread reads `next_lores()` in a loop (see `pump_lores`); any other thread may call
`capture_still()` at the same time. `start()`/`close()` belong to whoever owns the camera.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Self

Stream = Literal["lores", "main"]
Size = tuple[int, int]


class CameraError(Exception):
    """The camera cannot deliver pictures; the message says what a technician should check."""


class CameraUnavailable(CameraError):
    """The camera (or the software stack it needs) is not there at all: nothing will fix it by retrying."""


class CameraNotStarted(CameraError):
    """A frame was asked for before `start()` or after `close()`: a bug in the caller, not the camera."""


@dataclass(frozen=True, slots=True)
class Exposure:
    """How the sensor exposed one frame, as reported by the camera (None where it did not say).

    ``exposure_us`` is the shutter time in microseconds, ``analogue_gain`` the sensor gain (1.0 = none),
    ``lux`` the camera's own scene-brightness estimate. Night IR frames typically show long exposures
    and high gain; a value stuck at its limit means the illuminator is off or the lens is covered.
    """

    exposure_us: int | None = None
    analogue_gain: float | None = None
    lux: float | None = None

    def to_dict(self) -> dict[str, int | float]:
        """JSON-ready form with absent values left out."""
        return {
            k: v
            for k, v in (
                ("exposure_us", self.exposure_us),
                ("analogue_gain", self.analogue_gain),
                ("lux", self.lux),
            )
            if v is not None
        }


@dataclass(frozen=True, slots=True)
class Frame:
    """One picture from the camera, already JPEG-encoded.

    ``time`` is when the sensor took it (timezone-aware, UTC); ``index`` counts sensor frames since
    `start()`, shared by both streams, so a gap in lores indices is a dropped frame and a still's index
    says where it falls among the lores frames. ``width``/``height`` are those of the JPEG.
    """

    jpeg: bytes
    time: datetime
    width: int
    height: int
    stream: Stream
    index: int
    exposure: Exposure | None = None

    def __post_init__(self) -> None:
        if self.time.utcoffset() != timedelta(0):
            raise ValueError(f"Frame.time must be timezone-aware UTC, got {self.time!r}")
        if self.stream not in ("lores", "main"):
            raise ValueError(f"Frame.stream must be 'lores' or 'main', got {self.stream!r}")

    def __repr__(self) -> str:  # the JPEG bytes would flood a log line
        return (
            f"Frame({self.stream} #{self.index} {self.width}x{self.height} "
            f"{self.time.isoformat()} {len(self.jpeg)} B)"
        )


class CameraBackend(abc.ABC):
    """A camera that streams low-resolution frames and takes full-resolution stills on demand.

    Lifecycle: construct (cheap, no hardware touched beyond opening the device), `start()` (sensor
    running; the first frames may take a while as exposure settles), `next_lores()` /
    `capture_still()` as often as needed, `close()` (idempotent). Also a context manager that starts
    and closes it.
    """

    #: Short name for logs and health reports: ``"simulated"``, ``"picamera2"``.
    name: str = "camera"

    @property
    @abc.abstractmethod
    def resolution(self) -> Size:
        """Width and height of full-resolution stills (the main stream)."""

    @property
    @abc.abstractmethod
    def lores_resolution(self) -> Size:
        """Width and height of the continuously streamed low-resolution frames."""

    @abc.abstractmethod
    def start(self) -> None:
        """Start the sensor streaming. Raises `CameraError` if the camera cannot be started."""

    @abc.abstractmethod
    def next_lores(self, timeout: float | None = None) -> Frame | None:
        """The next low-resolution frame, waiting up to `timeout` seconds (None: as long as it takes).

        Returns None if no frame came in time. Frames the caller was too slow to take are dropped by
        the camera, as real sensors do: the returned frame is recent, and `Frame.index` shows the gap.
        """

    @abc.abstractmethod
    def capture_still(self) -> Frame:
        """A full-resolution JPEG of the next sensor frame. Raises `CameraError` on failure."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop the sensor and release the device. Safe to call more than once."""

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def pump_lores(
    camera: CameraBackend,
    on_frame: Callable[[Frame], None],
    stop: threading.Event,
    *,
    poll: float = 0.5,
) -> int:
    """The camera thread's loop: hand every lores frame to `on_frame` until `stop` is set.

    Returns the number of frames handed on. `poll` bounds how late a `stop` is noticed when the camera
    delivers nothing. A `CameraError` ends the loop (and propagates) so the owner can restart or report
    the camera; an exception from `on_frame` propagates too.
    """
    count = 0
    while not stop.is_set():
        frame = camera.next_lores(timeout=poll)
        if frame is None:
            continue
        on_frame(frame)
        count += 1
    return count
