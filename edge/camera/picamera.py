"""The Raspberry Pi camera (a NoIR module such as the Camera Module 3 NoIR) through picamera2.

Why the camera streams all night instead of starting when the PIR fires: configuring and starting
libcamera costs a few hundred milliseconds, and the first frames after a start come out while the
automatic exposure and gain are still settling (picamera2 and rpicam-apps discard them), so a camera
started on the trigger sees the animal half a second to a second late, often leaving. Streaming a
small lores picture into the pre-trigger buffer (`edge.camera.ring.PreTriggerBuffer`) keeps the
exposure settled and gives the seconds *before* the trigger; a still is then just the main-stream
image of the next frame, with no mode switch.

Stream set-up (one video configuration, both streams produced by the ISP from every sensor frame):
- main: ``main`` size, BGR888 (Pillow sees RGB), encoded to JPEG only when a still is asked for;
- lores: ``lores`` size, YUV420 (the only format picamera2 allows for lores); we keep its Y plane,
  the grey picture, which is all an IR night picture has, and skip the colour conversion;
- ``FrameDurationLimits`` fixed at 1/fps: a steady frame rate, and at 10 fps exposures up to 100 ms.
A full-sensor-resolution still would need ``switch_mode_and_capture_file``, which stops the stream,
reconfigures and drops frames again: exactly the delay the design avoids, so it is not offered here.

Tuning: a NoIR module needs its own tuning file (``imx708_noir.json``, ``imx219_noir.json``), or the
colour and exposure algorithms assume an IR-cut filter that is not there. Pass the file name (looked
up in libcamera's directories by ``Picamera2.load_tuning_file``) or a path.

This module imports anywhere; picamera2 is imported only when a `Picamera2Camera` is made.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from PIL import Image

from edge.camera.backend import (
    CameraBackend,
    CameraError,
    CameraNotStarted,
    CameraUnavailable,
    Exposure,
    Frame,
    Size,
)
from edge.clock import utc_now

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "picamera2 is not installed: install uncia[pi] on Raspberry Pi OS "
    "(sudo apt install python3-picamera2, and create the virtualenv with --system-site-packages "
    "so it sees libcamera; pip install 'uncia[pi]' alone cannot provide libcamera)"
)
_CABLE_HINT = "check the ribbon cable and that 'rpicam-hello --list-cameras' lists the camera"


class Picamera2Camera(CameraBackend):
    """The Pi camera: lores frames streamed continuously, full-resolution stills on demand.

    ``tuning_file``: e.g. ``"imx708_noir.json"`` for a Camera Module 3 NoIR (None: libcamera's default
    for the sensor, wrong for NoIR). ``camera_num``: which camera, 0 for the only one. ``clock``: the
    wall clock that frame times are expressed in (sensor timestamps are converted to it).
    ``rotate_180``: the unit is mounted upside down. Raises `CameraUnavailable` if picamera2, the
    tuning file or the camera is missing.
    """

    name = "picamera2"

    def __init__(
        self,
        tuning_file: str | None = None,
        *,
        camera_num: int = 0,
        lores: Size = (320, 240),
        main: Size = (1920, 1080),
        fps: float = 10.0,
        clock: Callable[[], datetime] = utc_now,
        rotate_180: bool = False,
        quality: int = 90,
        lores_quality: int = 80,
        still_timeout: float = 5.0,
    ) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError as exc:
            raise CameraUnavailable(INSTALL_HINT) from exc
        if not fps > 0:
            raise ValueError(f"fps={fps!r}: expected a positive frame rate")
        self._clock = clock
        self._sizes = {"lores": lores, "main": main}
        self.fps = fps
        self._quality, self._lores_quality = quality, lores_quality
        self._still_timeout = still_timeout
        self._lock = threading.Lock()
        self._pending: dict[str, Any] = {}  # stream -> picamera2 Job still waiting for a frame
        self._first_ts: int | None = None
        self._started = False
        self._closed = False
        tuning: str | dict[str, Any] | None = None
        if tuning_file is not None:
            if os.path.isfile(tuning_file):
                tuning = tuning_file
            else:
                try:
                    tuning = Picamera2.load_tuning_file(tuning_file)
                except RuntimeError as exc:
                    raise CameraUnavailable(
                        f"camera tuning file {tuning_file!r} not found in libcamera's directories "
                        "(/usr/share/libcamera/ipa/rpi/...): check the name, e.g. imx708_noir.json "
                        "for a Camera Module 3 NoIR"
                    ) from exc
        try:
            self._cam = Picamera2(camera_num, tuning=tuning)
        except (RuntimeError, IndexError) as exc:
            raise CameraUnavailable(f"no camera {camera_num} could be opened ({exc}): {_CABLE_HINT}") from exc
        period_us = round(1_000_000 / fps)
        self._period_ns = period_us * 1000
        try:
            options: dict[str, Any] = {}
            if rotate_180:
                from libcamera import Transform

                options["transform"] = Transform(hflip=1, vflip=1)
            self._config = self._cam.create_video_configuration(
                main={"size": main, "format": "BGR888"},
                lores={"size": lores, "format": "YUV420"},
                controls={"FrameDurationLimits": (period_us, period_us)},
                display=None,
                encode=None,
                **options,
            )
        except (RuntimeError, ValueError) as exc:
            self._cam.close()  # or the device stays held until this process exits
            raise CameraError(f"camera settings not accepted (main {main}, lores {lores}): {exc}") from exc

    @property
    def resolution(self) -> Size:
        return self._sizes["main"]

    @property
    def lores_resolution(self) -> Size:
        return self._sizes["lores"]

    def start(self) -> None:
        with self._lock:
            if self._closed:
                raise CameraNotStarted("this camera was closed; open a new Picamera2Camera")
            if self._started:
                return
            try:
                self._cam.configure(self._config)
                self._cam.start()
            except RuntimeError as exc:
                raise CameraError(f"the camera would not start ({exc}): {_CABLE_HINT}") from exc
            self._started = True
            # libcamera may round sizes to what the ISP can produce; report what we really get.
            for stream in ("main", "lores"):
                self._sizes[stream] = tuple(self._cam.camera_config[stream]["size"])  # type: ignore[assignment]
            log.info(
                "camera started: main %s, lores %s, %.1f fps",
                self._sizes["main"],
                self._sizes["lores"],
                self.fps,
            )

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._started = False
        try:
            self._cam.stop()
        finally:
            self._cam.close()

    def next_lores(self, timeout: float | None = None) -> Frame | None:
        request = self._next_request("lores", timeout)
        if request is None:
            return None
        try:
            w, h = self._sizes["lores"]
            stride = request.config["lores"]["stride"]
            # The Y plane (first h rows of `stride` bytes) is the grey picture; U and V follow it.
            y_plane = bytes(request.make_buffer("lores")[: stride * h])
            img = Image.frombuffer("L", (w, h), y_plane, "raw", "L", stride, 1)
            return self._frame(img, request.get_metadata(), "lores", self._lores_quality)
        finally:
            request.release()

    def capture_still(self) -> Frame:
        request = self._next_request("main", self._still_timeout)
        if request is None:
            raise CameraError(f"no frame from the camera for {self._still_timeout:.0f} s: {_CABLE_HINT}")
        try:
            return self._frame(request.make_image("main"), request.get_metadata(), "main", self._quality)
        finally:
            request.release()

    def _next_request(self, stream: str, timeout: float | None) -> Any:
        """The next completed request, or None after `timeout`.

        A timed-out picamera2 job stays queued and would take (and never give back) a later frame
        buffer, starving the camera; so the job is kept and waited on again by the next call.
        """
        with self._lock:
            if not self._started:
                raise CameraNotStarted("the camera is not running: call start() first")
            job = self._pending.get(stream)
            if job is None:
                job = self._pending[stream] = self._cam.capture_request(wait=False)
        try:
            request = self._cam.wait(job, timeout=timeout)
        except TimeoutError:
            return None
        except Exception as exc:  # cancelled or failed inside the camera's event loop
            with self._lock:
                self._pending.pop(stream, None)
            raise CameraError(f"the camera failed while capturing ({exc!r}): {_CABLE_HINT}") from exc
        with self._lock:
            self._pending.pop(stream, None)
        return request

    def _frame(self, img: Image.Image, metadata: dict[str, Any], stream: str, quality: int) -> Frame:
        # SensorTimestamp is CLOCK_MONOTONIC in ns (picamera2 compares it with time.monotonic_ns());
        # its age now, taken off the wall clock, dates the frame without trusting two clocks to agree.
        sensor_ns = int(metadata.get("SensorTimestamp", time.monotonic_ns()))
        moment = self._clock() - timedelta(microseconds=(time.monotonic_ns() - sensor_ns) / 1000)
        with self._lock:
            if self._first_ts is None:
                self._first_ts = sensor_ns
            index = round((sensor_ns - self._first_ts) / self._period_ns)
        out = io.BytesIO()
        img.save(out, "JPEG", quality=quality)
        exposure = Exposure(
            exposure_us=_int_or_none(metadata.get("ExposureTime")),
            analogue_gain=_float_or_none(metadata.get("AnalogueGain")),
            lux=_float_or_none(metadata.get("Lux")),
        )
        return Frame(out.getvalue(), moment, img.width, img.height, stream, index, exposure)  # type: ignore[arg-type]


def _int_or_none(value: object) -> int | None:
    return None if value is None else int(value)  # type: ignore[call-overload]


def _float_or_none(value: object) -> float | None:
    return None if value is None else round(float(value), 3)  # type: ignore[arg-type]
