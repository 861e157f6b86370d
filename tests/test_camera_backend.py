"""The camera interface and the simulated NoIR camera: real JPEGs, deterministic, faults, pacing."""

from __future__ import annotations

import io
import random
import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest
from PIL import Image, ImageChops, ImageStat

from edge.camera.backend import CameraBackend, CameraNotStarted, Frame, pump_lores
from edge.camera.simulated import SimulatedCamera

T0 = datetime(2026, 11, 25, 19, 30, tzinfo=UTC)
SMALL = {"lores": (160, 120), "main": (480, 270)}  # small main stream keeps these tests quick


class FakeClock:
    """A clock that moves only when told to (or when the camera sleeps on it)."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += timedelta(seconds=seconds)


def camera(seed: int = 7, **kwargs: object) -> SimulatedCamera:
    options: dict[str, object] = {**SMALL, **kwargs}
    cam = SimulatedCamera(FakeClock(), random.Random(seed), **options)  # type: ignore[arg-type]
    cam.start()
    return cam


def grey(frame: Frame) -> Image.Image:
    img = Image.open(io.BytesIO(frame.jpeg))
    img.load()
    return img


def test_frames_are_real_jpegs_of_the_stream_size() -> None:
    cam = camera()
    assert isinstance(cam, CameraBackend)
    assert cam.resolution == (480, 270) and cam.lores_resolution == (160, 120)
    lores, still = cam.next_lores(), cam.capture_still()
    assert lores is not None
    for frame, stream, size in ((lores, "lores", (160, 120)), (still, "main", (480, 270))):
        img = grey(frame)
        assert img.format == "JPEG" and img.size == size == (frame.width, frame.height)
        assert frame.stream == stream and frame.time.tzinfo is not None
        assert frame.exposure is not None and frame.exposure.exposure_us
    assert (lores.index, still.index) == (0, 1)  # one sensor frame count for both streams
    assert still.time - lores.time == timedelta(seconds=0.1)


def test_default_sizes_are_lores_320x240_and_main_1080p() -> None:
    cam = SimulatedCamera(FakeClock(), random.Random(1))
    cam.start()
    assert grey(cam.capture_still()).size == (1920, 1080)
    frame = cam.next_lores()
    assert frame is not None and grey(frame).size == (320, 240)


def test_same_seed_same_frames_and_frames_change_over_time() -> None:
    a, b = camera(seed=3), camera(seed=3)
    frames_a = [a.next_lores() for _ in range(4)]
    frames_b = [b.next_lores() for _ in range(4)]
    assert [f.jpeg for f in frames_a if f] == [f.jpeg for f in frames_b if f]
    assert len({f.jpeg for f in frames_a if f}) == 4
    assert camera(seed=4).next_lores().jpeg != frames_a[0].jpeg  # type: ignore[union-attr]


def column_of_change(with_animal: Frame, without: Frame) -> float:
    """Where (0..1 of the width) the two pictures differ most, by column sums of the difference."""
    diff = ImageChops.difference(grey(with_animal), grey(without)).point(lambda v: 255 if v > 40 else 0)
    w = diff.width
    columns = list(diff.resize((w, 1), Image.Resampling.BOX).tobytes())  # mean of each column
    total = sum(columns)
    assert total > 0, "the animal left no trace in the picture"
    return sum(x * c for x, c in enumerate(columns)) / total / w


@pytest.mark.parametrize("x", [0.25, 0.5, 0.8])
def test_the_animal_appears_where_animal_in_view_says(x: float) -> None:
    seen, empty = camera(seed=5, animal_in_view=lambda t: x), camera(seed=5)
    for stream in ("lores", "main"):
        if stream == "lores":
            with_animal, without = seen.next_lores(), empty.next_lores()
            assert with_animal is not None and without is not None
        else:
            with_animal, without = seen.capture_still(), empty.capture_still()
        # The body's centre is at x; the long tail pulls the centre of the silhouette back a little.
        assert column_of_change(with_animal, without) == pytest.approx(x - 0.06, abs=0.06)


def test_animal_in_view_is_asked_with_the_frame_time() -> None:
    asked: list[datetime] = []
    cam = camera(animal_in_view=lambda t: asked.append(t))
    frames = [cam.next_lores() for _ in range(3)]
    assert asked == [f.time for f in frames if f]


def contrast(frame: Frame) -> float:
    return ImageStat.Stat(grey(frame)).stddev[0]


def test_frozen_lens_gives_a_featureless_picture_that_does_not_change() -> None:
    cam = camera(seed=9, animal_in_view=lambda t: 0.5)
    normal = [cam.next_lores() for _ in range(2)]
    cam.frozen = True
    frozen = [cam.next_lores() for _ in range(2)]
    assert all(contrast(f) < 20 for f in frozen if f) and all(contrast(f) > 35 for f in normal if f)
    change = ImageStat.Stat(ImageChops.difference(grey(frozen[0]), grey(frozen[1]))).mean[0]  # type: ignore[arg-type]
    assert change < 6  # sensor noise only


def test_brightness_zero_is_a_black_picture() -> None:
    cam = camera(brightness=0.0)
    frame = cam.next_lores()
    assert frame is not None and ImageStat.Stat(grey(frame)).mean[0] < 3
    cam.brightness = 1.0
    assert ImageStat.Stat(grey(cam.next_lores())).mean[0] > 30  # type: ignore[arg-type]


def test_unpaced_frames_follow_the_schedule_without_waiting() -> None:
    clock = FakeClock()
    cam = SimulatedCamera(clock, random.Random(1), fps=4, sleep=clock.sleep, **SMALL)  # type: ignore[arg-type]
    cam.start()
    times = [cam.next_lores().time for _ in range(3)]  # type: ignore[union-attr]
    assert times == [T0, T0 + timedelta(seconds=0.25), T0 + timedelta(seconds=0.5)]
    assert clock.sleeps == []


def test_paced_camera_waits_for_the_frame_and_skips_frames_a_slow_reader_missed() -> None:
    clock = FakeClock()
    cam = SimulatedCamera(clock, random.Random(1), fps=10, paced=True, sleep=clock.sleep, **SMALL)  # type: ignore[arg-type]
    cam.start()
    assert cam.next_lores(timeout=0).index == 0  # type: ignore[union-attr]
    assert cam.next_lores(timeout=0.04) is None  # frame 1 is due at +0.1 s
    assert clock.sleeps == [0.04]
    frame = cam.next_lores(timeout=1.0)
    assert frame is not None and frame.index == 1 and clock.now == frame.time == T0 + timedelta(seconds=0.1)
    clock.now += timedelta(seconds=1.03)  # the reader was busy for a second
    late = cam.next_lores(timeout=0)
    assert late is not None and late.index == 11 and late.time <= clock.now


def test_using_a_camera_before_start_or_after_close_is_a_typed_error() -> None:
    cam = SimulatedCamera(FakeClock(), random.Random(1), **SMALL)  # type: ignore[arg-type]
    with pytest.raises(CameraNotStarted, match="start"):
        cam.next_lores()
    with cam:
        assert cam.capture_still().stream == "main"
    with pytest.raises(CameraNotStarted, match="closed"):
        cam.capture_still()


def test_bad_sizes_and_rates_are_refused() -> None:
    with pytest.raises(ValueError, match="lores size 8x8"):
        SimulatedCamera(FakeClock(), random.Random(1), lores=(8, 8))
    with pytest.raises(ValueError, match="fps"):
        SimulatedCamera(FakeClock(), random.Random(1), fps=0)


def test_frame_times_must_be_utc() -> None:
    with pytest.raises(ValueError, match="UTC"):
        Frame(b"", datetime(2026, 1, 1), 1, 1, "lores", 0)
    with pytest.raises(ValueError, match="UTC"):
        Frame(b"", datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=8))), 1, 1, "lores", 0)
    assert "lores #3 1x1" in repr(Frame(b"abc", T0, 1, 1, "lores", 3))


def test_pump_hands_every_frame_on_while_another_thread_takes_stills() -> None:
    cam = camera()
    got: list[Frame] = []
    stop = threading.Event()

    def on_frame(frame: Frame) -> None:
        got.append(frame)
        if len(got) == 40:
            stop.set()

    pump = threading.Thread(target=pump_lores, args=(cam, on_frame, stop))
    pump.start()
    stills = [cam.capture_still() for _ in range(5)]
    pump.join(timeout=30)
    assert not pump.is_alive() and len(got) == 40
    indices = sorted([f.index for f in got] + [s.index for s in stills])
    assert indices == list(range(45))  # every sensor frame went to exactly one stream
