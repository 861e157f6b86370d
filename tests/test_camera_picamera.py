"""The Pi camera backend without a Pi: it imports anywhere and says clearly when picamera2 is missing.

There is no camera (nor libcamera) on a build machine, so the conversion code is exercised against a
small stand-in for the *third-party* picamera2 API, written from picamera2's source (Picamera2,
Job, CompletedRequest): capture_request(wait=False) returns a job, wait(job, timeout) raises
TimeoutError, a request has config/make_buffer/make_image/get_metadata/release. It checks our side
(Y-plane extraction with row padding, timestamps, frame numbering, no leaked requests), not picamera2.
"""

from __future__ import annotations

import io
import subprocess
import sys
import time
import types
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import pytest
from PIL import Image, ImageStat

from edge.camera.backend import CameraBackend, CameraError, CameraNotStarted, CameraUnavailable

NOW = datetime(2026, 11, 25, 23, 0, tzinfo=UTC)


def test_importing_the_module_does_not_import_picamera2() -> None:
    code = "import sys, edge.camera.picamera; assert 'picamera2' not in sys.modules and 'libcamera' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_without_picamera2_the_error_tells_the_technician_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)  # what Python does when the package is absent
    from edge.camera.picamera import Picamera2Camera

    with pytest.raises(
        CameraUnavailable, match=r"picamera2 is not installed: install uncia\[pi\] on Raspberry Pi OS"
    ):
        Picamera2Camera("imx708_noir.json")


class FakeRequest:
    def __init__(self, cam: FakePicamera2, sensor_ns: int) -> None:
        self.cam, self.sensor_ns = cam, sensor_ns
        self.config = {k: dict(v) for k, v in cam.camera_config.items()}

    def make_buffer(self, name: str) -> bytes:
        assert name == "lores"
        w, h = self.config["lores"]["size"]
        stride = self.config["lores"]["stride"]
        # Y rows: dark left half, bright right half, then padding bytes that must not show.
        row = bytes([40] * (w // 2) + [200] * (w - w // 2) + [255] * (stride - w))
        return row * h + bytes([128]) * (stride * h // 2)

    def make_image(self, name: str) -> Image.Image:
        assert name == "main"
        return Image.new("RGB", self.config["main"]["size"], (90, 90, 90))

    def get_metadata(self) -> dict[str, Any]:
        return {"SensorTimestamp": self.sensor_ns, "ExposureTime": 66_000, "AnalogueGain": 7.5, "Lux": 0.4}

    def release(self) -> None:
        self.cam.released += 1


class FakePicamera2:
    opened: ClassVar[list[FakePicamera2]] = []

    def __init__(self, camera_num: int = 0, tuning: Any = None) -> None:
        if camera_num != 0:
            raise IndexError("list index out of range")  # what picamera2 does with no such camera
        self.tuning, self.jobs, self.released, self.started, self.closed = tuning, [], 0, False, False
        self.camera_config: dict[str, dict[str, Any]] = {}
        FakePicamera2.opened.append(self)

    @staticmethod
    def load_tuning_file(tuning_file: str, dir: str | None = None) -> dict[str, Any]:
        if tuning_file != "imx708_noir.json":
            raise RuntimeError("Tuning file not found")
        return {"version": 2.0, "algorithms": []}

    def create_video_configuration(
        self, main: dict, lores: dict, controls: dict, **kw: Any
    ) -> dict[str, Any]:
        return {"main": main, "lores": lores, "controls": controls, **kw}

    def configure(self, config: dict[str, Any]) -> None:
        w, h = config["lores"]["size"]
        self.controls = config["controls"]
        self.camera_config = {
            "main": {"size": config["main"]["size"], "format": "BGR888"},
            "lores": {"size": (w, h), "format": "YUV420", "stride": (w + 63) // 64 * 64},
        }

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        self.closed = True

    def capture_request(self, wait: Any = None) -> Future:
        assert wait is False
        job: Future = Future()
        self.jobs.append(job)
        return job

    def wait(self, job: Future, timeout: float | None = None) -> Any:
        return job.result(timeout=timeout)

    def deliver(self, sensor_ns: int) -> None:
        """The camera's event loop completing the oldest job with a new frame."""
        self.jobs.pop(0).set_result(FakeRequest(self, sensor_ns))


@pytest.fixture
def picamera2(monkeypatch: pytest.MonkeyPatch) -> type[FakePicamera2]:
    module = types.ModuleType("picamera2")
    module.Picamera2 = FakePicamera2  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "picamera2", module)
    FakePicamera2.opened = []
    return FakePicamera2


def test_lores_is_the_grey_y_plane_and_stills_are_main_jpegs(picamera2: type[FakePicamera2]) -> None:
    from edge.camera.picamera import Picamera2Camera

    cam = Picamera2Camera("imx708_noir.json", clock=lambda: NOW, lores=(320, 240), main=(1536, 864), fps=10)
    assert isinstance(cam, CameraBackend)
    fake = picamera2.opened[0]
    assert fake.tuning == {"version": 2.0, "algorithms": []}
    with pytest.raises(CameraNotStarted):
        cam.next_lores(0)
    cam.start()
    assert fake.controls == {"FrameDurationLimits": (100_000, 100_000)}

    assert cam.next_lores(timeout=0.01) is None  # no frame yet
    assert cam.next_lores(timeout=0.01) is None
    assert len(fake.jobs) == 1  # the timed-out job is waited on again, not abandoned with a buffer
    t0 = time.monotonic_ns() - 50_000_000  # exposed 50 ms ago
    fake.deliver(t0)
    frame = cam.next_lores(timeout=1)
    assert frame is not None and frame.stream == "lores" and (frame.width, frame.height) == (320, 240)
    img = Image.open(io.BytesIO(frame.jpeg))
    assert img.mode == "L" and img.size == (320, 240)
    left, right = img.crop((0, 0, 150, 240)), img.crop((170, 0, 320, 240))
    assert ImageStat.Stat(left).mean[0] == pytest.approx(40, abs=3)
    assert ImageStat.Stat(right).mean[0] == pytest.approx(200, abs=3)  # the padding did not leak in
    assert timedelta(milliseconds=49) <= NOW - frame.time <= timedelta(seconds=5)
    assert frame.index == 0 and frame.exposure is not None
    assert (frame.exposure.exposure_us, frame.exposure.analogue_gain, frame.exposure.lux) == (
        66_000,
        7.5,
        0.4,
    )


def test_still_and_frame_numbering_from_sensor_timestamps(picamera2: type[FakePicamera2]) -> None:
    from edge.camera.picamera import Picamera2Camera

    cam = Picamera2Camera(clock=lambda: NOW, main=(640, 480), still_timeout=0.05)
    fake = picamera2.opened[0]
    assert fake.tuning is None
    cam.start()
    t0 = time.monotonic_ns()
    cam.next_lores(timeout=0)
    fake.deliver(t0)
    assert cam.next_lores(timeout=1).index == 0  # type: ignore[union-attr]
    with pytest.raises(CameraError, match="no frame from the camera"):
        cam.capture_still()
    fake.deliver(t0 + 300_000_000)  # three frames later at 10 fps: two were never taken
    still = cam.capture_still()
    img = Image.open(io.BytesIO(still.jpeg))
    assert (still.stream, still.index, img.size, img.mode) == ("main", 3, (640, 480), "RGB")
    assert fake.released == 2 and fake.jobs == []
    cam.close()
    cam.close()
    assert fake.closed and not fake.started
    with pytest.raises(CameraNotStarted):
        cam.start()


def test_missing_tuning_file_or_camera_are_clear_errors(picamera2: type[FakePicamera2]) -> None:
    from edge.camera.picamera import Picamera2Camera

    with pytest.raises(CameraUnavailable, match=r"tuning file 'imx999\.json' not found.*imx708_noir\.json"):
        Picamera2Camera("imx999.json")
    with pytest.raises(CameraUnavailable, match=r"no camera 1 could be opened.*ribbon cable"):
        Picamera2Camera(camera_num=1)
