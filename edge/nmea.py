"""Checking and reading one NMEA 0183 sentence from a GNSS receiver.

`parse_sentence` turns one candidate line (from `edge.framing.LineFramer`) into exactly one of:

* `Sentence` - a checked GGA/RMC/GLL/GNS/VTG/ZDA/GSA from an accepted talker, its fields already
  converted (degrees, metres, m/s, UTC time of day) so the epoch merger does no string work;
* `Ignored` - well-formed, but nothing a fix is made of (GSV, TXT, proprietary ``$P...``, ...);
* `Rejected` - dropped, with a stable snake_case ``reason`` and a short ``detail`` for the log.

Each `Sentence` carries pynmea2's object for its type (built with pynmea2's documented
constructor, ``pynmea2.GGA(talker, "GGA", fields)``), for anyone needing a field we do not convert.
The rest is done here, on purpose:

* the checksum is required and checked here: pynmea2 silently accepts a sentence without one, and
  its check cannot tell "missing" from "wrong" - two different faults in the field (a receiver
  set up without checksums versus a noisy cable);
* address and fields are split here rather than by ``pynmea2.parse()``, whose regex would redo
  what the checksum check has just found - 1.5 us a sentence out of the ~25 us per fix the relay
  can spend on framing, checking and merging;
* fields are converted from the raw strings by index, not through pynmea2's properties: those
  return 0.0 for an empty latitude (a phantom fix at 0°N 0°E) and cost microseconds each.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from functools import reduce
from operator import xor
from typing import Any

import pynmea2

# Talkers of GNSS receivers: GPS, multi-GNSS, GLONASS, Galileo, BeiDou (old and new id), QZSS.
TALKERS = frozenset({"GP", "GN", "GL", "GA", "BD", "GB", "QZ"})
# Sentence types a fix is made of; every other well-formed sentence is `Ignored`.
FIX_TYPES = frozenset({"GGA", "RMC", "GLL", "GNS", "VTG", "ZDA", "GSA"})

NO_CHECKSUM = "no_checksum"
BAD_CHECKSUM = "bad_checksum"
NOT_ASCII = "not_ascii"
UNKNOWN_TALKER = "unknown_talker"
PARSE_ERROR = "parse_error"
IGNORED = "ignored"

KNOTS_TO_MPS = 1852.0 / 3600.0
KMH_TO_MPS = 1.0 / 3.6

# FAA mode indicator (RMC, GLL, GNS, VTG; NMEA 2.3+) as a GGA fix-quality code. 0 = no fix.
MODE_QUALITY = {
    "A": 1,  # autonomous
    "D": 2,  # differential
    "P": 2,  # precise (NMEA 4): gpsd files it with DGPS too
    "R": 4,  # RTK fixed
    "F": 5,  # RTK float
    "E": 6,  # estimated / dead reckoning
    "M": 7,  # manual input
    "S": 8,  # simulator
    "N": 0,  # not valid
}
# GNS carries one mode character per constellation ("AAN"); the best one describes the fix.
_MODE_RANK = "RFDPAEMS"


@dataclass(frozen=True, slots=True)
class Rejected:
    """A line that was dropped: ``reason`` is a stable key for counters, ``detail`` says why."""

    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class Ignored(Rejected):
    """A well-formed sentence that carries nothing for a fix (GSV, TXT, ``$PUBX``...).

    Not a fault: receivers send these all the time. ``sentence_type`` is what to count them by:
    the three-letter type for talker sentences (``GSV``), the whole address for proprietary ones
    (``PUBX``, ``PGRME``).
    """

    sentence_type: str


@dataclass(slots=True, eq=False)
class Sentence:
    """One checked fix-bearing sentence, fields converted; treat it as read-only.

    ``time_us`` is the UTC time of day in microseconds since midnight (None when the sentence has
    no time: VTG, GSA, or a receiver without a fix). ``fix_ok`` is the receiver's own verdict:
    GGA quality > 0, RMC/GLL status ``A``, GNS mode not all ``N`` - and for those types a position
    is present. A sentence with ``fix_ok`` False never contributes a position. ``quality`` is the
    GGA fix-quality code (for RMC/GLL/GNS derived from the mode indicator), ``mode`` the GSA fix
    type (1 none, 2 2D, 3 3D). ``message`` is pynmea2's object, for anyone needing other fields.
    """

    talker: str
    sentence_type: str
    time_us: int | None
    fix_ok: bool
    message: Any
    date: date | None = None
    lat: float | None = None
    lon: float | None = None
    alt: float | None = None
    speed: float | None = None
    course: float | None = None
    quality: int | None = None
    sats: int | None = None
    hdop: float | None = None
    mode: int | None = None


class _FieldError(ValueError):
    """A field that does not hold what NMEA says it must; becomes a `parse_error`."""


def _xor_checksum(body: bytes) -> int:
    # XOR of all bytes, folded over one big integer: about 3x faster than a Python loop for
    # sentence-sized input, which matters at thousands of sentences per second.
    if len(body) > 256:
        return reduce(xor, body, 0)
    x = int.from_bytes(body, "little")
    if len(body) > 128:
        x = (x >> 1024) ^ (x & _M1024)
    if len(body) > 64:
        x = (x >> 512) ^ (x & _M512)
    x = (x >> 256) ^ (x & _M256)
    x = (x >> 128) ^ (x & _M128)
    x = (x >> 64) ^ (x & _M64)
    x = (x >> 32) ^ (x & 0xFFFFFFFF)
    x = (x >> 16) ^ (x & 0xFFFF)
    return (x >> 8) ^ (x & 0xFF)


_M1024, _M512, _M256, _M128, _M64 = ((1 << b) - 1 for b in (1024, 512, 256, 128, 64))
_HEXDIGITS = "0123456789ABCDEFabcdef"


def parse_sentence(line: bytes) -> Sentence | Rejected:
    """Check and read one candidate line (``$...*hh``, without CR/LF). Never raises."""
    address = "?"
    try:
        if not line.isascii():
            return Rejected(NOT_ASCII, "contains bytes that are not ASCII text (binary or noise)")
        text = line.decode("ascii")
        if not text.isprintable():
            return Rejected(NOT_ASCII, "contains control characters (binary data or noise)")
        if text[:1] != "$":
            return Rejected(PARSE_ERROR, "does not start with '$'")
        star = text.rfind("*")
        if star < 0:
            return Rejected(NO_CHECKSUM, f"no '*hh' checksum: {text[:24]}")
        given = _HEX_VALUE.get(line[star + 1 :])
        if given is None:
            return Rejected(BAD_CHECKSUM, f"checksum '{text[star + 1 :][:8]}' is not two hex digits")
        actual = _xor_checksum(line[1:star])
        if given != actual:
            return Rejected(BAD_CHECKSUM, f"checksum says {given:02X}, content gives {actual:02X}")
        comma = text.find(",", 1, star)
        if comma < 0:
            return Rejected(PARSE_ERROR, f"no fields after the sentence name: {text[:24]}")
        address = text[1:comma]
        verdict = _ADDRESSES.get(address) or _classify(address)
        if type(verdict) is not tuple:
            return verdict  # type: ignore[return-value]  # Ignored or Rejected
        talker, kind, model, reader = verdict
        fields = text[comma + 1 : star].split(",")
        # pynmea2's documented constructor (``pynmea2.GGA(talker, "GGA", fields)``) rather than
        # pynmea2.parse(): parse's regex would re-find the address and checksum checked above,
        # 1.5 us per sentence of the ~25 us per fix the relay can spend here.
        return reader(talker, model(talker, kind, fields), fields)
    except _FieldError as exc:
        return Rejected(PARSE_ERROR, f"{address}: {exc}"[:120])
    except (ValueError, IndexError):
        return Rejected(PARSE_ERROR, f"{address}: missing or malformed field")
    except Exception as exc:  # a parser must not take the agent down, whatever the line holds
        return Rejected(PARSE_ERROR, f"unreadable sentence ({type(exc).__name__}: {exc})"[:120])


_Reader = Callable[[str, Any, list[str]], Sentence]
_Verdict = tuple[str, str, type, _Reader] | Rejected
# Verdict per sentence address ("GPGGA"): receivers use a handful, so it is worked out once.
_ADDRESSES: dict[str, _Verdict] = {}
_HEX_VALUE = {(a + b).encode(): int(a + b, 16) for a in _HEXDIGITS for b in _HEXDIGITS}


def _classify(address: str) -> _Verdict:
    verdict: _Verdict
    talker, kind = address[:2], address[2:]
    if address[:1] == "P" and address.isalnum():
        verdict = Ignored(IGNORED, "proprietary sentence", address)
    elif len(address) < 5 or not address.isalnum() or not address.isupper():
        verdict = Rejected(PARSE_ERROR, f"no valid sentence name: '{address[:12]}'")
    elif talker not in TALKERS:
        verdict = Rejected(UNKNOWN_TALKER, f"talker '{talker}' is not a GNSS receiver ({address})")
    elif kind not in FIX_TYPES:
        verdict = Ignored(IGNORED, f"{kind} carries no fix", kind)
    else:
        verdict = (talker, kind, *_READERS[kind])
    if len(_ADDRESSES) >= 256:  # noise with valid checksums must not grow the table
        _ADDRESSES.clear()
    _ADDRESSES[address] = verdict
    return verdict


# ---- field conversion -------------------------------------------------------------------------
# Plain functions and inlined checks rather than pynmea2's properties: this runs for every
# sentence the relay forwards (see the module docstring). The small caches serve the sentences
# of one epoch, which repeat the same time and position text.


def _opt_float(v: str) -> float | None:
    if not v:
        return None
    x = float(v)
    if not math.isfinite(x):
        raise _FieldError(f"number '{v}' is not finite")
    return x


_FRACTION_SCALE = (0, 100_000, 10_000, 1_000, 100, 10, 1)
# Memos for the fields the sentences of one epoch repeat (time, position); cleared when full, so
# a stream of ever-new values costs one dict insert each and no memory. Shared by all decoders and
# threads: a value depends only on its key, so a race can at worst compute it twice.
_MEMO_SIZE = 64
_TIMES: dict[str, int] = {}
_MINUTES: dict[str, float] = {}
_DATES: dict[str, date] = {}


def _time_of_day(v: str) -> int | None:
    """``hhmmss[.sss]`` as microseconds since midnight."""
    us = _TIMES.get(v)
    if us is not None:
        return us
    if not v:
        return None
    head = v[:6]
    if len(head) != 6 or not head.isdigit():
        raise _FieldError(f"time '{v}' is not hhmmss")
    x = int(head)
    h, m, s = x // 10000, x // 100 % 100, x % 100
    # A leap second (60) cannot be represented as a datetime; that one epoch is dropped.
    if h > 23 or m > 59 or s > 59:
        raise _FieldError(f"time '{v}' out of range")
    us = ((h * 60 + m) * 60 + s) * 1_000_000
    if len(v) > 6:
        frac = v[7:]
        if v[6] != "." or (frac and not frac.isdigit()):
            raise _FieldError(f"time '{v}' is not hhmmss.ss")
        if frac:
            frac = frac[:6]
            us += int(frac) * _FRACTION_SCALE[len(frac)]
    if len(_TIMES) >= _MEMO_SIZE:
        _TIMES.clear()
    _TIMES[v] = us
    return us


def _ddmmyy(v: str) -> date | None:
    day = _DATES.get(v)
    if day is not None or not v:
        return day
    if len(v) != 6 or not v.isdigit():
        raise _FieldError(f"date '{v}' is not ddmmyy")
    yy = int(v[4:6])
    # GPS started in 1980: two-digit years 80-99 are the 1900s (old recordings), the rest 2000s.
    day = date(1900 + yy if yy >= 80 else 2000 + yy, int(v[2:4]), int(v[0:2]))
    if len(_DATES) >= _MEMO_SIZE:
        _DATES.clear()
    _DATES[v] = day
    return day


def _angle(v: str, hemi: str) -> float | None:
    """NMEA ``ddmm.mmmm,N`` / ``dddmm.mmmm,E`` as signed degrees; None when empty."""
    if not v:
        return None
    degrees = _MINUTES.get(v)
    if degrees is None:
        if not v[0].isdigit():
            raise _FieldError(f"position '{v},{hemi}' is malformed")
        x = float(v)
        whole = x // 100.0
        degrees = whole + (x - whole * 100.0) / 60.0
        if len(_MINUTES) >= _MEMO_SIZE:
            _MINUTES.clear()
        _MINUTES[v] = degrees
    if hemi == "N" or hemi == "E":
        sign = 1.0
    elif hemi == "S" or hemi == "W":
        sign = -1.0
    else:
        raise _FieldError(f"position '{v},{hemi}' has no N/S or E/W")
    if not degrees <= _HEMISPHERE_LIMIT[hemi]:  # also catches nan
        raise _FieldError(f"position '{v},{hemi}' out of range")
    return sign * degrees


_HEMISPHERE_LIMIT = {"N": 90.0, "S": 90.0, "E": 180.0, "W": 180.0}
_NS = frozenset({"N", "S", ""})
_EW = frozenset({"E", "W", ""})


def _position(f: list[str], at: int) -> tuple[float | None, float | None]:
    if f[at + 1] not in _NS or f[at + 3] not in _EW:
        raise _FieldError(f"position '{','.join(f[at : at + 4])}' has no N/S or E/W")
    lat = _angle(f[at], f[at + 1])
    lon = _angle(f[at + 2], f[at + 3])
    if (lat is None) != (lon is None):
        raise _FieldError("latitude without longitude or the other way round")
    return lat, lon


def _mode_quality(modes: str) -> int:
    """Quality from FAA mode indicator(s); the best constellation wins for GNS."""
    for c in _MODE_RANK:
        if c in modes:
            return MODE_QUALITY[c]
    return 0


def _field(f: list[str], i: int) -> str:
    return f[i] if i < len(f) else ""


# ---- one reader per sentence type -------------------------------------------------------------


def _gga(talker: str, msg: Any, f: list[str]) -> Sentence:
    lat, lon = _position(f, 1)
    quality = int(f[5]) if f[5] else None
    alt = _opt_float(f[8])
    if alt is not None and f[9] not in ("M", ""):
        raise _FieldError(f"altitude unit '{f[9]}' is not metres")
    return Sentence(
        talker,
        "GGA",
        _time_of_day(f[0]),
        bool(quality) and lat is not None,
        msg,
        None,
        lat,
        lon,
        alt,
        None,
        None,
        quality,
        int(f[6]) if f[6] else None,
        _opt_float(f[7]),
    )


def _rmc(talker: str, msg: Any, f: list[str]) -> Sentence:
    lat, lon = _position(f, 2)
    mode = f[11] if len(f) > 11 else ""
    ok = f[1] == "A" and lat is not None and mode != "N"
    knots = _opt_float(f[6])
    return Sentence(
        talker,
        "RMC",
        _time_of_day(f[0]),
        ok,
        msg,
        _ddmmyy(f[8]),
        lat,
        lon,
        None,
        None if knots is None else knots * KNOTS_TO_MPS,
        _opt_float(f[7]),
        (_mode_quality(mode) if mode else 1) if ok else 0,
    )


def _gll(talker: str, msg: Any, f: list[str]) -> Sentence:
    lat, lon = _position(f, 0)
    mode = _field(f, 6)
    ok = _field(f, 5) == "A" and lat is not None and mode != "N"
    return Sentence(
        talker,
        "GLL",
        _time_of_day(_field(f, 4)),
        ok,
        msg,
        lat=lat,
        lon=lon,
        quality=(_mode_quality(mode) if mode else 1) if ok else 0,
    )


def _gns(talker: str, msg: Any, f: list[str]) -> Sentence:
    lat, lon = _position(f, 1)
    quality = _mode_quality(f[5])
    return Sentence(
        talker,
        "GNS",
        _time_of_day(f[0]),
        quality > 0 and lat is not None,
        msg,
        lat=lat,
        lon=lon,
        alt=_opt_float(f[8]),
        quality=quality,
        sats=int(f[6]) if f[6] else None,
        hdop=_opt_float(f[7]),
    )


def _vtg(talker: str, msg: Any, f: list[str]) -> Sentence:
    if _field(f, 1) == "T" or _field(f, 3) == "M":
        course, knots, kmh, mode = f[0], _field(f, 4), _field(f, 6), _field(f, 8)
    else:  # NMEA 1.x layout without unit letters: track, magnetic track, knots, km/h
        course, knots, kmh, mode = f[0], _field(f, 2), _field(f, 3), ""
    ok = mode not in ("N", "E")  # gpsd ignores dead-reckoned VTG too
    speed = _opt_float(knots)
    if speed is not None:
        speed *= KNOTS_TO_MPS
    else:
        speed = _opt_float(kmh)
        if speed is not None:
            speed *= KMH_TO_MPS
    return Sentence(
        talker,
        "VTG",
        None,
        ok,
        msg,
        speed=speed if ok else None,
        course=_opt_float(course) if ok else None,
    )


def _zda(talker: str, msg: Any, f: list[str]) -> Sentence:
    day, month, year = _field(f, 1), _field(f, 2), _field(f, 3)
    when = None
    if day and month and year:
        if not (day.isdigit() and month.isdigit() and year.isdigit() and len(year) == 4):
            raise _FieldError(f"date '{day},{month},{year}' is not dd,mm,yyyy")
        when = date(int(year), int(month), int(day))
    return Sentence(talker, "ZDA", _time_of_day(f[0]), when is not None, msg, date=when)


def _gsa(talker: str, msg: Any, f: list[str]) -> Sentence:
    mode = int(f[1]) if f[1] else None
    return Sentence(
        talker,
        "GSA",
        None,
        bool(mode and mode >= 2),
        msg,
        mode=mode,
        hdop=_opt_float(f[15]) if len(f) > 15 else None,
    )


_READERS: dict[str, tuple[type, _Reader]] = {
    "GGA": (pynmea2.GGA, _gga),
    "RMC": (pynmea2.RMC, _rmc),
    "GLL": (pynmea2.GLL, _gll),
    "GNS": (pynmea2.GNS, _gns),
    "VTG": (pynmea2.VTG, _vtg),
    "ZDA": (pynmea2.ZDA, _zda),
    "GSA": (pynmea2.GSA, _gsa),
}
