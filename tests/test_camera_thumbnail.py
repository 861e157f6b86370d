"""Thumbnails never exceed their byte budget, whatever the picture (noise is JPEG's worst case)."""

from __future__ import annotations

import io
import random
from datetime import UTC, datetime

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from PIL import Image

from edge.camera.simulated import SimulatedCamera
from edge.camera.thumbnail import MIN_BYTES, ThumbnailError, thumbnail


def make_image(kind: str, mode: str, size: tuple[int, int], seed: int, fmt: str) -> bytes:
    w, h = size
    if kind == "noise":
        img = Image.frombytes(mode, size, random.Random(seed).randbytes(w * h * len(mode)))
    elif kind == "gradient":
        img = Image.linear_gradient("L").resize(size).convert(mode)
    else:
        img = Image.new(mode, size, 90 if mode == "L" else (90, 40, 200))
    out = io.BytesIO()
    img.save(out, fmt, **({"quality": 97} if fmt == "JPEG" else {}))
    return out.getvalue()


def opened(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


@settings(max_examples=40, deadline=None)
@given(
    kind=st.sampled_from(["noise", "noise", "gradient", "flat"]),
    mode=st.sampled_from(["L", "RGB"]),
    size=st.tuples(st.integers(1, 900), st.integers(1, 700)),
    seed=st.integers(0, 2**32),
    fmt=st.sampled_from(["JPEG", "JPEG", "PNG"]),
    max_bytes=st.integers(MIN_BYTES, 40_000),
    max_side=st.integers(16, 640),
)
# The worst cases, always tried: large pure noise against the smallest and the default budgets.
@example(kind="noise", mode="RGB", size=(900, 700), seed=1, fmt="PNG", max_bytes=MIN_BYTES, max_side=640)
@example(kind="noise", mode="RGB", size=(640, 640), seed=2, fmt="PNG", max_bytes=20_000, max_side=640)
@example(kind="noise", mode="L", size=(640, 480), seed=3, fmt="JPEG", max_bytes=20_000, max_side=320)
def test_never_over_the_byte_limit_or_the_side_limit(
    kind: str, mode: str, size: tuple[int, int], seed: int, fmt: str, max_bytes: int, max_side: int
) -> None:
    data = thumbnail(make_image(kind, mode, size, seed, fmt), max_bytes=max_bytes, max_side=max_side)
    assert len(data) <= max_bytes
    img = opened(data)
    assert img.format == "JPEG" and img.mode == mode
    assert max(img.size) <= max_side
    assert not img.getexif()


def test_full_resolution_noise_fits_by_getting_smaller() -> None:
    noisy = make_image("noise", "RGB", (1280, 960), 1, "PNG")
    data = thumbnail(noisy, max_bytes=5_000, max_side=320)
    img = opened(data)
    assert len(data) <= 5_000 and max(img.size) <= 320
    assert img.width / img.height == pytest.approx(4 / 3, abs=0.05)


def test_a_night_still_keeps_full_thumbnail_size_and_aspect() -> None:
    cam = SimulatedCamera(
        lambda: datetime(2026, 11, 25, tzinfo=UTC), random.Random(3), animal_in_view=lambda t: 0.5
    )
    cam.start()
    data = thumbnail(cam.capture_still().jpeg)
    img = opened(data)
    assert len(data) <= 20_000 and img.size == (320, 180) and img.mode == "L"


def test_small_pictures_are_not_enlarged() -> None:
    img = opened(thumbnail(make_image("gradient", "RGB", (100, 50), 0, "JPEG")))
    assert img.size == (100, 50)


def test_exif_orientation_is_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    out = io.BytesIO()
    Image.new("L", (200, 100), 50).save(out, "JPEG", exif=exif)
    assert opened(thumbnail(out.getvalue())).size == (100, 200)


def test_bad_input_and_impossible_limits_are_typed_errors() -> None:
    with pytest.raises(ThumbnailError, match="not a readable image"):
        thumbnail(b"\xff\xd8 not really a jpeg")
    jpeg = make_image("flat", "L", (64, 64), 0, "JPEG")
    with pytest.raises(ThumbnailError, match="max_bytes"):
        thumbnail(jpeg, max_bytes=500)
    with pytest.raises(ThumbnailError, match="max_side"):
        thumbnail(jpeg, max_side=4)
