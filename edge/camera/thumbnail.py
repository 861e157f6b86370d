"""Thumbnails small enough for the radio link: a JPEG that never exceeds a byte budget.

A unit reports each event with a thumbnail over MQTT (and, where there is no network, over a slow
LoRa or satellite link), so its size is a hard limit, not a wish. `thumbnail` shrinks the picture to
`max_side`, then lowers the JPEG quality step by step, and only if the lowest quality still does not
fit, makes the picture smaller again, until it fits. The result carries no EXIF (the event message
says where and when), and a night picture stays greyscale, which costs a third fewer bytes.

Sensor noise is the worst case for JPEG, so a dark, grainy IR frame needs a lower quality than its
look suggests; a typical 320x240 night thumbnail fits 20 kB at quality 70-85.
"""

from __future__ import annotations

import io

from PIL import Image, ImageOps, UnidentifiedImageError

MIN_BYTES = 1024  # a 16x16 colour JPEG of pure noise fits in ~500 bytes, so this always succeeds
MIN_SIDE = 16
_QUALITY_MAX = 85  # above this JPEG grows fast for no visible gain at thumbnail size
_QUALITY_MIN = 20  # below this blocks hide an animal; a smaller picture at better quality shows more


class ThumbnailError(ValueError):
    """The image could not be read, or the requested limits are impossible."""


def thumbnail(jpeg: bytes, *, max_bytes: int = 20_000, max_side: int = 320) -> bytes:
    """A JPEG of at most `max_bytes` whose longer side is at most `max_side` pixels.

    Raises `ThumbnailError` if `jpeg` is not a readable image or the limits are below `MIN_BYTES` /
    `MIN_SIDE`. Any format Pillow reads is accepted; the output is always JPEG.
    """
    if max_bytes < MIN_BYTES:
        raise ThumbnailError(f"max_bytes={max_bytes}: a thumbnail needs at least {MIN_BYTES} bytes")
    if max_side < MIN_SIDE:
        raise ThumbnailError(f"max_side={max_side}: a thumbnail needs at least {MIN_SIDE} pixels a side")
    img = _load(jpeg, max_side)
    size = _fit(img.size, max_side)
    while True:
        small = img if img.size == size else img.resize(size, Image.Resampling.BICUBIC, reducing_gap=2.0)
        best = _best_quality(small, max_bytes)
        if best is not None:
            return best
        # Too big even at the lowest quality: shrink the area in proportion to the overshoot, at least
        # by a tenth so the loop always ends (a 16x16 picture fits MIN_BYTES at any content).
        overshoot = len(_encode(small, _QUALITY_MIN)) / max_bytes
        scale = min(0.9, max(0.5, 0.95 / overshoot**0.5))
        if max(size) <= MIN_SIDE:
            raise ThumbnailError(f"cannot fit {max_bytes} bytes even at {size[0]}x{size[1]}")
        size = _fit(size, max(MIN_SIDE, int(max(size) * scale)))


def _load(data: bytes, max_side: int) -> Image.Image:
    try:
        img = Image.open(io.BytesIO(data))
        mode = "L" if img.mode in ("L", "1", "I", "I;16", "F") else "RGB"
        # Let the JPEG decoder scale by 1/2, 1/4 or 1/8 while decoding: a 1080p still decodes in a
        # fraction of the time when only a thumbnail is wanted.
        img.draft(mode, (max_side, max_side))
        img = ImageOps.exif_transpose(img)
        img = img.convert(mode)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ThumbnailError(f"not a readable image ({len(data)} bytes): {exc}") from exc
    return img


def _fit(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    w, h = size
    if max(w, h) <= max_side:
        return w, h
    scale = max_side / max(w, h)
    return max(1, min(max_side, round(w * scale))), max(1, min(max_side, round(h * scale)))


def _encode(img: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality, optimize=True)
    return out.getvalue()


def _best_quality(img: Image.Image, max_bytes: int) -> bytes | None:
    """The highest-quality encoding within `max_bytes` (binary search on quality), or None."""
    first = _encode(img, _QUALITY_MAX)
    if len(first) <= max_bytes:
        return first
    low, high, best = _QUALITY_MIN, _QUALITY_MAX - 1, None
    while low <= high:
        quality = (low + high) // 2
        data = _encode(img, quality)
        if len(data) <= max_bytes:
            best, low = data, quality + 1
        else:
            high = quality - 1
    return best
