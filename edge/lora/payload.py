"""The compact collar payload: a GPS fix in 12 bytes, or several fixes of one collar in one packet.

A collar's LoRa packet is either this binary payload or, from older collars, one NMEA GGA sentence as
text. `classify` tells them apart from the first byte alone: text starts with ``$`` (0x24), and every
compact payload starts with a byte of 0x80 or more, whose high nibble names the form and its version:

- ``0x9`` single fix v1, exactly 12 bytes (`encode_fix`);
- ``0xA`` batch v1, 1-16 fixes of one collar, the first in full and the rest as bit-packed
  differences to the fix before (`encode_batch`);
- ``0x8`` and ``0xB``-``0xF`` are reserved: `decode` rejects them with ``unknown_version``.

Positions are relative to a `Site` (the Helan Shan reserve by default): 12 bytes cannot hold an
absolute whole-Earth position to 1 m *and* an absolute time to 1 s *and* a CRC (see
docs/lora-payload.md for the arithmetic). A collar and its station are configured for the same site;
the site's number is folded into the CRC, so a packet decoded against the wrong site always fails its
integrity check instead of landing in the wrong place, and a fix outside the site's area (±0.655°)
cannot be encoded at all. Byte layouts, resolutions and a worked example: docs/lora-payload.md.
"""

from __future__ import annotations

import binascii
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Literal

from edge.fix import Fix

SINGLE_KIND = 0x9
BATCH_KIND = 0xA
SINGLE_LEN = 12
MAX_BATCH = 16  # the count travels in a nibble

EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
TIME_BITS = 30  # whole seconds since EPOCH: good until 2058-01-09
TIME_MAX = EPOCH + timedelta(seconds=2**TIME_BITS - 1)
STEP_DEG = 1e-5  # 1.11 m north-south; 0.86 m east-west at 39°N
OFFSET_BITS = 17  # signed offsets from the site centre, in STEP_DEG
_OFF_MIN, _OFF_MAX = -(2 ** (OFFSET_BITS - 1)), 2 ** (OFFSET_BITS - 1) - 1
WINDOW_DEG = 0.655  # every fix within this of the site centre (both axes) can be encoded
COLLAR_BITS = 10
BATTERY_LEVELS = 15  # battery travels as 0..15, i.e. in steps of 6.7 %

# HDOP classes after the usual DOP ratings (ideal/excellent/good/moderate/fair/poor). Upper bounds
# are inclusive; the representative value is the class midpoint (30 for the open-ended class 6).
HDOP_BOUNDS = (1.0, 2.0, 5.0, 10.0, 20.0)
HDOP_MIDPOINTS = {1: 0.75, 2: 1.5, 3: 3.5, 4: 7.5, 5: 15.0, 6: 30.0}
HDOP_UNKNOWN = 0

# Header of a batch: kind, count, collar, first fix, six field widths.
_BATCH_HEADER_BITS = 4 + 4 + COLLAR_BITS + TIME_BITS + 2 * OFFSET_BITS + 3 + 3 + 4 + 3 * 5 + 3 * 3
BATCH_MIN_LEN = (_BATCH_HEADER_BITS + 7) // 8 + 2


@dataclass(frozen=True)
class Site:
    """A study area a collar reports positions in: its centre, and a number (1-255) unique to it.

    Positions travel as offsets from the centre, so a site covers ±0.655° of latitude and longitude
    around it (about 145 x 113 km at the reserve), far more than any one station's radio range. The
    number goes into every CRC: add a new site with a new number, never reuse one.
    """

    name: str
    number: int
    lat: float
    lon: float

    def __post_init__(self) -> None:
        if not 1 <= self.number <= 255:
            raise ValueError(f"site number must be 1 to 255, got {self.number}")
        if not (-89.0 <= self.lat <= 89.0 and -180.0 <= self.lon < 180.0):
            raise ValueError(f"site centre {self.lat}, {self.lon} must be within ±89°N and -180..180°E")


HELAN = Site("helan-shan", 1, 38.85, 106.0)
SITES = {HELAN.number: HELAN}


class PayloadError(ValueError):
    """A LoRa payload that does not decode into fixes. ``reason`` is a stable snake_case word for counts
    and logs (too_short, too_long, not_compact, unknown_version, bad_crc, bad_length, bad_field); the
    message says what a technician should make of it."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


@dataclass(frozen=True)
class CollarFix:
    """One fix as a collar reports it over LoRa: collar id (0-1023), UTC time, WGS 84 degrees, the GGA
    fix-quality code (1-8), an HDOP class (0 unknown, 1-6 see `hdop_class`) and battery charge (0-100 %).

    After a trip through the payload, time is to the nearest second, lat/lon within 0.000005° (0.56 m),
    battery within 3 percentage points.
    """

    collar_id: int
    time: datetime
    lat: float
    lon: float
    quality: int
    hdop_class: int
    battery_pct: int

    def __post_init__(self) -> None:
        if not 0 <= self.collar_id < 2**COLLAR_BITS:
            raise ValueError(f"collar id must be 0 to {2**COLLAR_BITS - 1}, got {self.collar_id}")
        if self.time.tzinfo is None:
            raise ValueError("fix time must be timezone-aware (UTC), e.g. datetime(..., tzinfo=UTC)")
        if not (math.isfinite(self.lat) and -90.0 <= self.lat <= 90.0):
            raise ValueError(f"latitude must be -90 to 90 degrees, got {self.lat}")
        if not (math.isfinite(self.lon) and -180.0 <= self.lon <= 180.0):
            raise ValueError(f"longitude must be -180 to 180 degrees, got {self.lon}")
        if not 1 <= self.quality <= 8:
            raise ValueError(f"fix quality must be a GGA code 1 to 8 (0 is no fix), got {self.quality}")
        if self.hdop_class not in (HDOP_UNKNOWN, *HDOP_MIDPOINTS):
            raise ValueError(f"HDOP class must be 0 (unknown) to 6, got {self.hdop_class}")
        if not 0 <= self.battery_pct <= 100:
            raise ValueError(f"battery must be 0 to 100 %, got {self.battery_pct}")

    def to_fix(self) -> Fix:
        """The `Fix` the rest of uncia handles; HDOP is the class midpoint (None when unknown)."""
        return Fix(
            time=self.time,
            lat=self.lat,
            lon=self.lon,
            quality=self.quality,
            hdop=hdop_of_class(self.hdop_class),
        )


def hdop_class(hdop: float | None) -> int:
    """0 for unknown (None); 1: ≤1, 2: ≤2, 3: ≤5, 4: ≤10, 5: ≤20, 6: over 20."""
    if hdop is None:
        return HDOP_UNKNOWN
    if not (math.isfinite(hdop) and hdop >= 0.0):
        raise ValueError(f"HDOP must be a non-negative number, got {hdop}")
    return 1 + sum(hdop > bound for bound in HDOP_BOUNDS)


def hdop_of_class(c: int) -> float | None:
    """The representative HDOP of class `c` (its midpoint), None for 0 (unknown)."""
    if c == HDOP_UNKNOWN:
        return None
    try:
        return HDOP_MIDPOINTS[c]
    except KeyError:
        raise ValueError(f"HDOP class must be 0 (unknown) to 6, got {c}") from None


# --- the integrity checks ----------------------------------------------------------------------------

_CRC8_POLY = 0x2F


def _crc8_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        reg = byte
        for _ in range(8):
            reg = ((reg << 1) ^ _CRC8_POLY) & 0xFF if reg & 0x80 else (reg << 1) & 0xFF
        table.append(reg)
    return tuple(table)


_CRC8_TABLE = _crc8_table()


def crc8(data: bytes, init: int = 0) -> int:
    """CRC-8, polynomial 0x2F (AUTOSAR's CRC-8H2F polynomial), MSB first, no final XOR.

    Hand-written because no maintained package offers it and it is five lines; chosen over the more
    common 0x07 because Koopman's tables give 0x2F Hamming distance 4 up to 119 data bits: every 1-,
    2- and 3-bit error in our 88-bit single-fix body is detected (tests check this exhaustively).
    """
    reg = init & 0xFF
    for byte in data:
        reg = _CRC8_TABLE[reg ^ byte]
    return reg


def crc16(data: bytes, init: int = 0) -> int:
    """CRC-16/XMODEM (polynomial 0x1021) from the standard library: Hamming distance 4 up to 32751 bits."""
    return binascii.crc_hqx(data, init)


# --- bit packing -------------------------------------------------------------------------------------


class _Bits:
    """Big-endian bit writer/reader over one Python int."""

    def __init__(self, value: int = 0, length: int = 0) -> None:
        self.value, self.length, self.pos = value, length, 0

    def put(self, field: int, width: int) -> None:
        assert 0 <= field < (1 << width) or width == field == 0, (field, width)
        self.value = (self.value << width) | field
        self.length += width

    def take(self, width: int) -> int:
        if self.pos + width > self.length:
            raise PayloadError("bad_length", "the payload ends in the middle of a fix: it was cut short")
        self.pos += width
        return (self.value >> (self.length - self.pos)) & ((1 << width) - 1)

    def to_bytes(self) -> bytes:
        pad = -self.length % 8
        return (self.value << pad).to_bytes((self.length + pad) // 8, "big")


def _twos(value: int, width: int) -> int:
    return value & ((1 << width) - 1)


def _signed(field: int, width: int) -> int:
    return field - (1 << width) if field >> (width - 1) else field


def _zigzag(n: int) -> int:
    return 2 * n if n >= 0 else -2 * n - 1


def _unzigzag(z: int) -> int:
    return z >> 1 if not z & 1 else -((z + 1) >> 1)


# --- fields <-> integers -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Raw:
    """A fix as the integers that travel: seconds, offsets, quality-1, HDOP class, battery level."""

    seconds: int
    dlat: int
    dlon: int
    q: int
    h: int
    b: int


def _raw(fix: CollarFix, site: Site) -> _Raw:
    micros = (fix.time - EPOCH) // timedelta(microseconds=1)
    seconds = (micros + 500_000) // 1_000_000
    if not 0 <= seconds < 2**TIME_BITS:
        raise ValueError(
            f"collar {fix.collar_id}: fix time {fix.time.isoformat()} is outside what the payload carries "
            f"({EPOCH:%Y-%m-%d} to {TIME_MAX:%Y-%m-%d}); check the collar's clock"
        )
    dlat = round((fix.lat - site.lat) / STEP_DEG)
    dlon = round(((fix.lon - site.lon + 180.0) % 360.0 - 180.0) / STEP_DEG)
    if not (_OFF_MIN <= dlat <= _OFF_MAX and _OFF_MIN <= dlon <= _OFF_MAX):
        raise ValueError(
            f"collar {fix.collar_id}: fix at {fix.lat:.5f}, {fix.lon:.5f} is outside site {site.name} "
            f"(within {WINDOW_DEG}° of {site.lat}, {site.lon}); configure the collar for the site it is in"
        )
    level = (fix.battery_pct * BATTERY_LEVELS + 50) // 100
    return _Raw(seconds, dlat, dlon, fix.quality - 1, fix.hdop_class, level)


def _fix(collar_id: int, raw: _Raw, site: Site) -> CollarFix:
    if not (
        0 <= raw.seconds < 2**TIME_BITS
        and _OFF_MIN <= raw.dlat <= _OFF_MAX
        and _OFF_MIN <= raw.dlon <= _OFF_MAX
    ):
        raise PayloadError("bad_field", "a fix's time or position is out of range: not a payload uncia wrote")
    if not (0 <= raw.q <= 7 and raw.h in (HDOP_UNKNOWN, *HDOP_MIDPOINTS) and 0 <= raw.b <= BATTERY_LEVELS):
        raise PayloadError("bad_field", "a fix's quality, HDOP class or battery is out of range")
    lon = (site.lon + raw.dlon * STEP_DEG + 180.0) % 360.0 - 180.0
    return CollarFix(
        collar_id=collar_id,
        time=EPOCH + timedelta(seconds=raw.seconds),
        lat=round(site.lat + raw.dlat * STEP_DEG, 7),
        lon=round(lon, 7),
        quality=raw.q + 1,
        hdop_class=raw.h,
        battery_pct=(raw.b * 100 + BATTERY_LEVELS // 2) // BATTERY_LEVELS,
    )


def _put_full(bits: _Bits, r: _Raw) -> None:
    bits.put(r.seconds, TIME_BITS)
    bits.put(_twos(r.dlat, OFFSET_BITS), OFFSET_BITS)
    bits.put(_twos(r.dlon, OFFSET_BITS), OFFSET_BITS)
    bits.put(r.q, 3)
    bits.put(r.h, 3)
    bits.put(r.b, 4)


def _take_full(bits: _Bits) -> _Raw:
    seconds = bits.take(TIME_BITS)
    dlat = _signed(bits.take(OFFSET_BITS), OFFSET_BITS)
    dlon = _signed(bits.take(OFFSET_BITS), OFFSET_BITS)
    return _Raw(seconds, dlat, dlon, bits.take(3), bits.take(3), bits.take(4))


# --- the two forms ---------------------------------------------------------------------------------


def encode_fix(fix: CollarFix, *, site: Site = HELAN) -> bytes:
    """The 12-byte single-fix payload. Raises ValueError if the fix is outside `site` or its time range."""
    bits = _Bits()
    bits.put(SINGLE_KIND, 4)
    bits.put(fix.collar_id, COLLAR_BITS)
    _put_full(bits, _raw(fix, site))
    body = bits.to_bytes()
    return body + bytes([crc8(body, site.number)])


# Field order and the widths their zigzagged differences can need (the width field's bits).
_DELTA_FIELDS = ("seconds", "dlat", "dlon", "q", "h", "b")
_WIDTH_BITS = (5, 5, 5, 3, 3, 3)


def encode_batch(fixes: Sequence[CollarFix], *, site: Site = HELAN) -> bytes:
    """One packet for 1-16 fixes of one collar, in the order given (normally time order).

    Each fix after the first costs only the bits its differences need: with fixes every 15 minutes
    about 5 bytes, against 12 for a single-fix packet. Raises ValueError for mixed collars, no fixes,
    more than `MAX_BATCH`, or a fix `encode_fix` would refuse.
    """
    if not fixes:
        raise ValueError("a batch needs at least one fix")
    if len(fixes) > MAX_BATCH:
        raise ValueError(f"a batch holds at most {MAX_BATCH} fixes, got {len(fixes)}: send several packets")
    collars = {f.collar_id for f in fixes}
    if len(collars) > 1:
        raise ValueError(f"a batch carries one collar's fixes, got collars {sorted(collars)}")
    raws = [_raw(f, site) for f in fixes]
    deltas = [
        [_zigzag(getattr(cur, name) - getattr(prev, name)) for name in _DELTA_FIELDS]
        for prev, cur in pairwise(raws)
    ]
    widths = [max((row[i].bit_length() for row in deltas), default=0) for i in range(len(_DELTA_FIELDS))]
    bits = _Bits()
    bits.put(BATCH_KIND, 4)
    bits.put(len(fixes) - 1, 4)
    bits.put(fixes[0].collar_id, COLLAR_BITS)
    _put_full(bits, raws[0])
    for width, width_bits in zip(widths, _WIDTH_BITS, strict=True):
        bits.put(width, width_bits)
    for row in deltas:
        for value, width in zip(row, widths, strict=True):
            bits.put(value, width)
    body = bits.to_bytes()
    return body + crc16(body, site.number).to_bytes(2, "big")


def classify(payload: bytes) -> Literal["compact", "nmea", "unknown"]:
    """Route a packet by its first byte: ``nmea`` for ``$``, ``compact`` for 0x80 and up, else unknown.

    Cheap and never raises; whether a compact payload is intact is for `decode` to say.
    """
    if not payload:
        return "unknown"
    if payload[0] == 0x24:
        return "nmea"
    return "compact" if payload[0] & 0x80 else "unknown"


_BAD_CRC = (
    "integrity check failed: the packet was damaged on the way, or it comes from a collar configured "
    "for another site than {site}"
)


def decode(payload: bytes, *, site: Site = HELAN) -> list[CollarFix]:
    """The fixes in a compact payload, checked by its CRC. Raises `PayloadError`, never anything else,
    and never returns a fix from a payload whose CRC does not match."""
    payload = bytes(payload)
    if not payload:
        raise PayloadError("too_short", "empty payload")
    kind = payload[0] >> 4
    if not payload[0] & 0x80:
        raise PayloadError("not_compact", "not a compact collar payload (text, or another device's format)")
    if kind == SINGLE_KIND:
        return _decode_single(payload, site)
    if kind == BATCH_KIND:
        return _decode_batch(payload, site)
    raise PayloadError(
        "unknown_version",
        f"compact payload type 0x{kind:X} is not one this station knows: a newer collar firmware? "
        "update the station software",
    )


def _decode_single(payload: bytes, site: Site) -> list[CollarFix]:
    if len(payload) < SINGLE_LEN:
        raise PayloadError("too_short", f"single-fix payload of {len(payload)} bytes, expected {SINGLE_LEN}")
    if len(payload) > SINGLE_LEN:
        raise PayloadError("too_long", f"single-fix payload of {len(payload)} bytes, expected {SINGLE_LEN}")
    if crc8(payload[:-1], site.number) != payload[-1]:
        raise PayloadError("bad_crc", _BAD_CRC.format(site=site.name))
    bits = _Bits(int.from_bytes(payload[:-1], "big"), 8 * (SINGLE_LEN - 1))
    bits.take(4)
    collar = bits.take(COLLAR_BITS)
    return [_fix(collar, _take_full(bits), site)]


def _decode_batch(payload: bytes, site: Site) -> list[CollarFix]:
    if len(payload) < BATCH_MIN_LEN:
        raise PayloadError(
            "too_short", f"batch payload of {len(payload)} bytes, at least {BATCH_MIN_LEN} needed"
        )
    body = payload[:-2]
    if crc16(body, site.number) != int.from_bytes(payload[-2:], "big"):
        raise PayloadError("bad_crc", _BAD_CRC.format(site=site.name))
    bits = _Bits(int.from_bytes(body, "big"), 8 * len(body))
    bits.take(4)
    count = bits.take(4) + 1
    collar = bits.take(COLLAR_BITS)
    raws = [_take_full(bits)]
    widths = [bits.take(width_bits) for width_bits in _WIDTH_BITS]
    for _ in range(count - 1):
        prev = raws[-1]
        values = [
            getattr(prev, name) + _unzigzag(bits.take(w))
            for name, w in zip(_DELTA_FIELDS, widths, strict=True)
        ]
        raws.append(_Raw(*values))
    if bits.length - bits.pos >= 8 or bits.take(bits.length - bits.pos) != 0:
        raise PayloadError(
            "bad_length", f"batch of {count} fixes does not fill its {len(payload)} bytes exactly"
        )
    return [_fix(collar, raw, site) for raw in raws]
