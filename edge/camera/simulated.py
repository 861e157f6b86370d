"""A simulated NoIR camera: a rocky night slope under a 940 nm illuminator, as real JPEG frames.

`SimulatedCamera` behaves like the Pi camera behind `CameraBackend`: a low-resolution stream at
`fps` and full-resolution stills on demand, each a real JPEG made with Pillow. The scene is grey (an
IR picture has no colour): a dark sky above a ridge, a textured slope with rocks, brightest where the
illuminator points and falling off to the edges, with sensor noise that changes every frame. When
``animal_in_view(t)`` returns x in [0, 1] a snow leopard (long body, long thick tail, eyeshine) stands
at that horizontal position (x outside [0, 1] puts it partly or wholly off the picture).

Faults to test health checks against, settable at any time:
- ``brightness``: scene brightness factor (1.0 normal, 0.0 black: illuminator dead or lens capped);
- ``frozen``: snow or frost on the lens, a flat blurred picture in which nothing changes but the
  sensor noise, and no animal is seen.

Timing: frame k of the schedule is taken at ``t0 + k / fps`` where t0 is `clock()` at `start()`.
Unpaced (default), frames come as fast as they are asked for, for tests and simulations faster than
real time. With ``paced=True`` `next_lores` waits (with ``sleep``) until the clock reaches the next
frame and skips frames a slow reader missed, as a real sensor does. Everything random comes from the
``rng`` passed in, so a seed gives the same scene and the same frames.
"""

from __future__ import annotations

import io
import math
import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from PIL import Image, ImageChops, ImageDraw, ImageFilter

from edge.camera.backend import CameraBackend, CameraNotStarted, Exposure, Frame, Size, Stream

# Sensor noise: uniform in +-_NOISE grey levels. A few pre-drawn noise images, shifted by a random
# offset each frame, look like fresh noise at a fraction of the cost of drawing new noise per frame
# (2 M random bytes per full-resolution frame would cost more than the JPEG encoding).
_NOISE = 7
_NOISE_TILES = 3
_JPEG_QUALITY = {"lores": 80, "main": 88}


class SimulatedCamera(CameraBackend):
    """A camera that needs no hardware: same interface and threading rules as the Pi camera.

    ``lores`` and ``main`` are (width, height) of the two streams; ``fps`` the lores frame rate.
    Building the scene takes a few tens of milliseconds; each frame then costs one noise overlay,
    the animal (if any) and the JPEG encoding.
    """

    name = "simulated"

    def __init__(
        self,
        clock: Callable[[], datetime],
        rng: random.Random,
        *,
        animal_in_view: Callable[[datetime], float | None] = lambda t: None,
        lores: Size = (320, 240),
        main: Size = (1920, 1080),
        fps: float = 10.0,
        brightness: float = 1.0,
        frozen: bool = False,
        paced: bool = False,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        for label, (w, h) in (("lores", lores), ("main", main)):
            if w < 16 or h < 16:
                raise ValueError(f"{label} size {w}x{h}: expected at least 16x16 pixels")
        if not fps > 0:
            raise ValueError(f"fps={fps!r}: expected a positive frame rate")
        self._clock = clock
        self._rng = rng
        self._animal_in_view = animal_in_view
        self._sizes: dict[Stream, Size] = {"lores": lores, "main": main}
        self.fps = fps
        self.brightness = brightness
        self.frozen = frozen
        self._paced = paced
        self._sleep = sleep
        self._lock = threading.Lock()  # the frame schedule and the rng
        self._t0: datetime | None = None
        self._next = 0
        self._closed = False
        main_scene = _draw_scene(main, rng)
        self._scene: dict[Stream, Image.Image] = {
            "main": main_scene,
            "lores": main_scene.resize(lores, Image.Resampling.BOX),
        }
        # Snow on the lens: the scene smeared into a bright, featureless glow.
        blur = max(main) // 20
        self._snow: dict[Stream, Image.Image] = {}
        for stream, img in self._scene.items():
            r = max(1, blur * img.width // main[0])
            self._snow[stream] = img.filter(ImageFilter.BoxBlur(r)).point(lambda v: 150 + v // 3)
        self._noise: dict[Stream, list[Image.Image]] = {
            stream: [_noise_image(size, rng) for _ in range(_NOISE_TILES)]
            for stream, size in self._sizes.items()
        }
        self._spots = [
            (rng.uniform(-4.0, 4.0), rng.uniform(-1.0, 0.9), rng.uniform(0.25, 0.45)) for _ in range(14)
        ]

    @property
    def resolution(self) -> Size:
        return self._sizes["main"]

    @property
    def lores_resolution(self) -> Size:
        return self._sizes["lores"]

    def start(self) -> None:
        with self._lock:
            if self._closed:
                raise CameraNotStarted("the simulated camera was closed; make a new one")
            if self._t0 is None:
                t0 = self._clock()
                if t0.utcoffset() is None:
                    raise ValueError(f"the clock gave {t0!r} without a timezone: frame times must be UTC")
                self._t0 = t0.astimezone(UTC)

    def close(self) -> None:
        with self._lock:
            self._closed = True

    def slot_time(self, index: int) -> datetime:
        """When frame `index` of the schedule is taken (after `start()`)."""
        if self._t0 is None:
            raise CameraNotStarted("the simulated camera has not been started")
        return self._t0 + timedelta(seconds=index / self.fps)

    def next_lores(self, timeout: float | None = None) -> Frame | None:
        index = self._take_slot(timeout)
        return None if index is None else self._render(index, "lores")

    def capture_still(self) -> Frame:
        index = self._take_slot(None)
        assert index is not None  # no timeout: always a slot
        return self._render(index, "main")

    def _take_slot(self, timeout: float | None) -> int | None:
        """Claim the next frame of the schedule; when paced, wait for it (or give up after `timeout`)."""
        if self._paced:
            with self._lock:
                self._check_running()
                due = self.slot_time(self._next)
            wait = (due - self._clock()).total_seconds()
            if wait > 0:
                if timeout is not None and wait > timeout:
                    self._sleep(timeout)
                    return None
                self._sleep(wait)
        with self._lock:
            self._check_running()
            index = self._next
            if self._paced:
                assert self._t0 is not None
                # A reader slower than the sensor gets the newest frame; the ones in between are gone.
                elapsed = (self._clock() - self._t0).total_seconds()
                index = max(index, math.floor(elapsed * self.fps + 1e-9))
            self._next = index + 1
            return index

    def _check_running(self) -> None:
        if self._closed:
            raise CameraNotStarted("the simulated camera is closed")
        if self._t0 is None:
            raise CameraNotStarted("the simulated camera has not been started: call start() first")

    def _render(self, index: int, stream: Stream) -> Frame:
        moment = self.slot_time(index)
        w, h = self._sizes[stream]
        with self._lock:  # the rng is shared by both streams' threads
            tile = self._rng.randrange(_NOISE_TILES)
            dx, dy = self._rng.randrange(w), self._rng.randrange(h)
            flicker = self._rng.uniform(-0.03, 0.03)
            frozen, brightness = self.frozen, self.brightness
        x = None if frozen else self._animal_in_view(moment)
        base = self._snow[stream] if frozen else self._scene[stream]
        img = ImageChops.add(base, ImageChops.offset(self._noise[stream][tile], dx, dy), 1.0, -_NOISE)
        if x is not None:
            self._draw_animal(img, x)
        gain = max(0.0, brightness * (1.0 + flicker))
        img = img.point([min(255, int(v * gain)) for v in range(256)])
        out = io.BytesIO()
        img.save(out, "JPEG", quality=_JPEG_QUALITY[stream])
        # Plausible night-time AGC: long exposure, gain rising as the scene darkens.
        exposure = Exposure(
            exposure_us=min(int(1e6 / self.fps), 100_000),
            analogue_gain=round(min(16.0, 4.0 / max(brightness, 0.25)), 2),
            lux=round(0.6 * brightness, 3),
        )
        return Frame(out.getvalue(), moment, w, h, stream, index, exposure)

    def _draw_animal(self, img: Image.Image, x: float) -> None:
        """A snow leopard in profile facing right, centred at x * width, standing on the slope.

        IR light makes the pale fur bright against rock; rosettes read as darker blotches; the eyes
        reflect the illuminator. Size: the body is about a fifth of the picture's width.
        """
        w, h = img.size
        u = w * 0.022  # a tenth of a body length
        cx, cy = x * w, h * 0.66
        fur, tail_fur, spot, leg = 196, 184, 128, 170
        d = ImageDraw.Draw(img)

        def ell(px: float, py: float, rx: float, ry: float, shade: int) -> None:
            d.ellipse(
                (cx + (px - rx) * u, cy + (py - ry) * u, cx + (px + rx) * u, cy + (py + ry) * u), fill=shade
            )

        # Tail first (behind the body): as long as the body, thick, sweeping down and curling up.
        tail = [(-4.6, -0.2), (-6.8, 1.0), (-8.6, 2.0), (-10.4, 2.0), (-11.8, 1.0), (-12.4, -0.4)]
        d.line(
            [(cx + a * u, cy + b * u) for a, b in tail],
            fill=tail_fur,
            width=max(2, int(1.6 * u)),
            joint="curve",
        )
        ell(-12.4, -0.5, 0.9, 0.9, tail_fur)
        for px in (-3.6, -2.4, 2.4, 3.6):  # legs
            d.line(
                [(cx + px * u, cy + 0.6 * u), (cx + px * u, cy + 3.9 * u)],
                fill=leg,
                width=max(2, int(0.95 * u)),
            )
            ell(px + 0.2, 3.9, 0.6, 0.3, leg)
        ell(0.0, 0.0, 5.0, 1.6, fur)  # body
        ell(3.2, -0.3, 1.9, 1.8, fur)  # shoulders and chest
        ell(4.9, -1.1, 1.4, 1.0, fur)  # neck
        ell(6.0, -1.7, 1.3, 1.1, fur)  # head
        ell(5.5, -2.8, 0.35, 0.4, fur)  # ears
        ell(6.3, -2.8, 0.35, 0.4, fur)
        for px, py, r in self._spots:
            ell(px, py, r, r * 0.8, spot)
        ell(6.7, -1.9, 0.18, 0.18, 255)  # eyeshine


def _noise_image(size: Size, rng: random.Random) -> Image.Image:
    """Uniform noise of 0..2*_NOISE grey levels (added with an offset of -_NOISE)."""
    w, h = size
    raw = Image.frombytes("L", size, rng.randbytes(w * h))
    return raw.point([v * (2 * _NOISE) // 255 for v in range(256)])


def _texture(size: Size, grid: Size, low: int, high: int, rng: random.Random) -> Image.Image:
    """Random values on a coarse grid, smoothly enlarged: blotches of rock, gravel and snow patches."""
    gw, gh = grid
    cells = Image.frombytes("L", grid, bytes(rng.randrange(low, high) for _ in range(gw * gh)))
    return cells.resize(size, Image.Resampling.BICUBIC)


def _draw_scene(size: Size, rng: random.Random) -> Image.Image:
    """The still part of the picture: sky, ridge line, slope texture, rocks, illuminator fall-off."""
    w, h = size
    sky = _texture(size, (8, 5), 8, 22, rng)
    ground = ImageChops.add(_texture(size, (24, 14), 55, 115, rng), _texture(size, (120, 68), 0, 45, rng))
    ridge = [(0.0, h * rng.uniform(0.22, 0.4))]
    for i in range(1, 13):
        y = ridge[-1][1] + h * rng.uniform(-0.05, 0.05)
        ridge.append((w * i / 12, min(h * 0.45, max(h * 0.15, y))))
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).polygon([*ridge, (w, h), (0, h)], fill=255)
    scene = Image.composite(ground, sky, mask)
    draw = ImageDraw.Draw(scene)
    for _ in range(14):  # rocks, bigger the nearer (lower) they are
        cy = h * rng.uniform(0.45, 0.98)
        r = w * 0.1 * (cy / h) ** 2 * rng.uniform(0.4, 1.0)
        cx = w * rng.uniform(-0.05, 1.05)
        corners = [
            (cx + r * rng.uniform(0.7, 1.2) * math.cos(a), cy + 0.6 * r * rng.uniform(0.7, 1.2) * math.sin(a))
            for a in (2 * math.pi * k / 7 for k in range(7))
        ]
        draw.polygon([(x, y + 0.25 * r) for x, y in corners], fill=rng.randrange(20, 45))  # shadow
        draw.polygon(corners, fill=rng.randrange(95, 175))
    # The illuminator lights the middle distance best; corners and the far slope fade into the dark.
    fw, fh = 64, 36
    falloff = bytes(
        int(255 * (0.3 + 0.7 * math.exp(-(((i / fw - 0.5) / 0.55) ** 2) - (((j / fh - 0.7) / 0.5) ** 2))))
        for j in range(fh)
        for i in range(fw)
    )
    lamp = Image.frombytes("L", (fw, fh), falloff).resize(size, Image.Resampling.BILINEAR)
    return ImageChops.multiply(scene, lamp)
