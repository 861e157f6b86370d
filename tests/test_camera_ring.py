"""The pre-trigger buffer keeps exactly the frames of its window, in order, from any thread."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.camera.backend import Frame
from edge.camera.ring import PreTriggerBuffer
from edge.camera.simulated import SimulatedCamera

T0 = datetime(2026, 11, 25, 21, 0, tzinfo=UTC)


def frame_at(ms: int, index: int) -> Frame:
    return Frame(b"\xff\xd8", T0 + timedelta(milliseconds=ms), 320, 240, "lores", index)


class Now:
    def __init__(self) -> None:
        self.ms = 0

    def __call__(self) -> datetime:
        return T0 + timedelta(milliseconds=self.ms)


# A step is: a frame arriving dt ms after the previous one (negative: the clock was stepped back),
# the clock moving on by dt ms, or a snapshot.
steps = st.lists(
    st.one_of(
        st.tuples(st.just("frame"), st.integers(-300, 400)),
        st.tuples(st.just("tick"), st.integers(0, 3000)),
        st.tuples(st.just("snap"), st.just(0)),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(steps=steps, seconds_20ms=st.integers(0, 150), max_frames=st.integers(1, 40))
def test_any_sequence_keeps_exactly_the_window_in_order(
    steps: list[tuple[str, int]], seconds_20ms: int, max_frames: int
) -> None:
    seconds = seconds_20ms * 0.02
    now = Now()
    ring = PreTriggerBuffer(seconds, now, max_frames=max_frames)
    seq: list[Frame] = []  # the model: every frame since the clock last went back
    last_ms = 0
    for n, (kind, dt) in enumerate(steps):
        if kind == "frame":
            last_ms += dt
            frame = frame_at(last_ms, n)
            if seq and frame.time < seq[-1].time:
                seq = []
            seq.append(frame)
            ring.append(frame)
        elif kind == "tick":
            now.ms += dt
        end = max(now(), seq[-1].time) if seq else now()
        expected = [f for f in seq[-max_frames:] if f.time >= end - timedelta(seconds=seconds)]
        assert ring.snapshot() == expected
        assert len(ring) <= max_frames


def test_two_seconds_at_ten_fps_is_twenty_one_frames_oldest_first() -> None:
    now = Now()
    ring = PreTriggerBuffer(2.0, now)
    for i in range(50):
        ring.append(frame_at(100 * i, i))
    now.ms = 4900
    assert [f.index for f in ring.snapshot()] == list(range(29, 50))
    assert len(ring) == 21  # older frames are gone, not just hidden


def test_a_camera_that_stopped_gives_an_empty_snapshot() -> None:
    now = Now()
    ring = PreTriggerBuffer(2.0, now)
    ring.append(frame_at(0, 0))
    now.ms = 2500
    assert ring.snapshot() == []


def test_clock_stepped_back_restarts_the_buffer() -> None:
    ring = PreTriggerBuffer(2.0, Now())
    ring.append(frame_at(60_000, 0))
    ring.append(frame_at(1_000, 1))
    assert [f.index for f in ring.snapshot()] == [1] and ring.restarts == 1
    ring.clear()
    assert ring.snapshot() == [] and len(ring) == 0


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="seconds"):
        PreTriggerBuffer(-1.0)
    with pytest.raises(ValueError, match="max_frames"):
        PreTriggerBuffer(2.0, max_frames=0)


def test_camera_thread_appends_while_triggers_read() -> None:
    """A real simulated camera streams into the buffer; every snapshot is a gap-free, in-order window."""
    cam = SimulatedCamera(lambda: T0, random.Random(2), lores=(64, 48), main=(64, 48), fps=50)
    cam.start()
    ring = PreTriggerBuffer(0.5, lambda: T0, max_frames=1000)  # the window ends at the newest frame
    done = threading.Event()

    def camera_thread() -> None:
        for _ in range(400):
            ring.append(cam.next_lores())  # type: ignore[arg-type]
        done.set()

    thread = threading.Thread(target=camera_thread)
    thread.start()
    snapshots = 0
    while not done.is_set() or snapshots < 5:
        snap = ring.snapshot()
        snapshots += 1
        if snap:
            indices = [f.index for f in snap]
            assert indices == list(range(indices[0], indices[0] + len(indices)))
            assert len(snap) <= 26  # 0.5 s at 50 fps, both ends included
    thread.join()
    assert [f.index for f in ring.snapshot()] == list(range(374, 400))
