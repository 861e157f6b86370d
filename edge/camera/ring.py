"""The pre-trigger buffer: the last seconds of low-resolution frames before the PIR fired.

A PIR fires when an animal is already in the picture, and a still takes a moment to come out of the
camera, so without a buffer every event would start late (often with the animal's tail leaving the
frame). The camera thread appends every lores frame; when a trigger comes, `snapshot()` hands over
the frames of the last `seconds`, which become the start of the event.

Which frames are kept ("the window"): those taken at or after ``end - seconds``, where ``end`` is the
later of the newest frame's time and the clock's "now" at `snapshot()`, and at most the newest
`max_frames` of them. So a camera that stopped delivering frames yields an empty snapshot instead of
stale pictures presented as "just before the trigger". If a frame arrives that is older than the
newest one, the system clock was stepped back (NTP or GPS time arriving): the buffer restarts from
that frame, since the older frames' times belong to the previous time scale.

Memory: at most `max_frames` frames (a 320x240 night frame is ~10-15 kB, so the default 300 frames
stay under ~5 MB), and nothing older than the window survives the next `append`.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta

from edge.camera.backend import Frame
from edge.clock import utc_now


class PreTriggerBuffer:
    """A thread-safe ring of recent lores frames covering the last `seconds` (see module docstring).

    ``clock`` gives "now" (timezone-aware UTC; `edge.clock.utc_now` by default). Any thread may `append`
    and `snapshot` at the same time; a snapshot is a copy the caller owns.
    """

    def __init__(
        self, seconds: float = 2.0, clock: Callable[[], datetime] = utc_now, *, max_frames: int = 300
    ) -> None:
        if not seconds >= 0:
            raise ValueError(f"pre-trigger seconds={seconds!r}: expected zero or more seconds")
        if max_frames < 1:
            raise ValueError(f"max_frames={max_frames!r}: expected at least 1 frame")
        self.seconds = seconds
        self.max_frames = max_frames
        self._span = timedelta(seconds=seconds)
        self._clock = clock
        self._frames: deque[Frame] = deque(maxlen=max_frames)
        self._lock = threading.Lock()
        self.restarts = 0  # times the clock was seen stepping back

    def append(self, frame: Frame) -> None:
        """Add the newest frame and drop what fell out of the window."""
        with self._lock:
            frames = self._frames
            if frames and frame.time < frames[-1].time:
                frames.clear()
                self.restarts += 1
            frames.append(frame)  # the deque's maxlen drops the oldest beyond max_frames
            oldest_kept = frame.time - self._span
            while frames[0].time < oldest_kept:
                frames.popleft()

    def snapshot(self) -> list[Frame]:
        """The frames of the window, oldest first (empty if the camera delivered none lately)."""
        now = self._clock()
        with self._lock:
            if not self._frames:
                return []
            end = max(now, self._frames[-1].time)
            start = end - self._span
            return [f for f in self._frames if f.time >= start]

    def clear(self) -> None:
        """Forget every frame (after the camera restarted, for instance)."""
        with self._lock:
            self._frames.clear()

    def __len__(self) -> int:
        """Frames held now (some may be outside the window by the clock until the next append)."""
        with self._lock:
            return len(self._frames)
