"""EXIF for camera-trap pictures: when, where, and which unit and camera took them.

Photo tools, camera-trap software (Timelapse, camtrapR, Wildlife Insights) and GIS read EXIF, so
every image a unit saves carries, whatever happens to its sidecar:

| what                       | tag(s)                                                             |
| -------------------------- | ------------------------------------------------------------------ |
| capture time               | DateTimeOriginal + OffsetTimeOriginal + SubSecTimeOriginal (ms);   |
|                            | DateTime + OffsetTime the same                                     |
| position (WGS 84)          | GPS IFD: GPSLatitude/Ref, GPSLongitude/Ref, GPSAltitude/Ref,       |
|                            | GPSMapDatum "WGS-84", GPSDateStamp + GPSTimeStamp (UTC)            |
| maker and model            | Make "uncia", Model "uncia", Software "uncia"                      |
| unit id                    | HostComputer (the unit is the computer that wrote the image)       |
| camera id                  | BodySerialNumber (the unit id when the unit has a single camera)   |
| image id                   | ImageUniqueID (32 hex digits, see `image_unique_id`)               |
| exposure                   | ExposureTime, ISOSpeedRatings (gain x 100, as picamera2 writes it) |

`write_exif` builds the EXIF block with Pillow and splices it into the JPEG in place of any EXIF it
had, keeping tags it does not set (picamera2's own exposure tags, for instance). The picture data is
not touched: re-encoding would cost quality and, at full resolution on a Pi, a large part of a
second. Pillow can only attach EXIF while encoding, so the splicing (walking the JPEG's leading
marker segments, a few dozen lines) is hand-written; piexif would do it but is one more dependency
for this alone.
"""

from __future__ import annotations

import io
import math
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from fractions import Fraction
from typing import Any

from PIL import ExifTags, Image, UnidentifiedImageError
from PIL.TiffImagePlugin import IFDRational

from edge.camera.backend import Exposure

MAKE = MODEL = SOFTWARE = "uncia"
_EXIF_HEADER = b"Exif\x00\x00"
_MAX_SEGMENT = 0xFFFF - 2  # a JPEG segment's length field counts itself and is 16 bits
_DMS_SCALE = 10_000  # seconds of arc in 1/10000: about 3 mm on the ground
_UID_NAMESPACE = uuid.UUID("5f0c1d7a-52a4-4a3b-9a57-0c1a2e6b7d10")  # fixed: same inputs, same id

Base, GPS = ExifTags.Base, ExifTags.GPS


class ExifError(ValueError):
    """The image or a value cannot be written as EXIF; the message says which and why."""


@dataclass(frozen=True, slots=True)
class Position:
    """Where the unit stands: WGS 84 degrees (north and east positive) and metres above sea level."""

    lat: float
    lon: float
    alt: float | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lat) and -90.0 <= self.lat <= 90.0):
            raise ExifError(f"latitude {self.lat!r}: expected degrees from -90 (south) to 90 (north)")
        if not (math.isfinite(self.lon) and -180.0 <= self.lon <= 180.0):
            raise ExifError(f"longitude {self.lon!r}: expected degrees from -180 (west) to 180 (east)")
        if self.alt is not None and not (math.isfinite(self.alt) and -1000.0 <= self.alt <= 10_000.0):
            raise ExifError(f"altitude {self.alt!r}: expected metres above sea level, -1000 to 10000")

    def to_dict(self) -> dict[str, float]:
        out = {"lat": self.lat, "lon": self.lon}
        if self.alt is not None:
            out["alt"] = self.alt
        return out


def image_unique_id(*parts: object) -> str:
    """A stable 32-hex-digit ImageUniqueID from e.g. (unit id, event id, capture index)."""
    return uuid.uuid5(_UID_NAMESPACE, "/".join(str(p) for p in parts)).hex


def write_exif(
    jpeg: bytes,
    *,
    time: datetime,
    unit_id: str,
    camera_id: str | None = None,
    position: Position | None = None,
    image_id: str | None = None,
    exposure: Exposure | None = None,
) -> bytes:
    """The same JPEG with our EXIF tags (see the module table); the picture data is left as it was.

    ``time`` must be timezone-aware; it is written in its own offset (pass UTC, or local time if the
    site prefers), and the GPS time stamp in UTC. ``camera_id`` defaults to ``unit_id``.
    """
    if time.tzinfo is None or time.utcoffset() is None:
        raise ExifError(f"capture time {time!r} has no timezone: pass an aware datetime (UTC)")
    _check_ascii("unit id", unit_id)
    camera_id = unit_id if camera_id is None else camera_id
    _check_ascii("camera id", camera_id)
    if image_id is not None and not re.fullmatch(r"[0-9a-f]{32}", image_id):
        raise ExifError(f"image id {image_id!r}: expected 32 lowercase hex digits (see image_unique_id)")
    img = _open(jpeg)
    exif = _existing_exif(img)

    stamp = time.strftime("%Y:%m:%d %H:%M:%S")
    offset = _format_offset(time.utcoffset() or timedelta(0))
    exif[Base.Make], exif[Base.Model], exif[Base.Software] = MAKE, MODEL, SOFTWARE
    exif[Base.HostComputer] = unit_id
    exif[Base.DateTime] = stamp
    ifd = exif.get_ifd(ExifTags.IFD.Exif)
    ifd[Base.DateTimeOriginal] = stamp
    ifd[Base.OffsetTimeOriginal] = offset
    ifd[Base.OffsetTime] = offset
    ifd[Base.SubsecTimeOriginal] = ifd[Base.SubsecTime] = f"{time.microsecond // 1000:03d}"
    ifd[Base.BodySerialNumber] = camera_id
    if image_id is not None:
        ifd[Base.ImageUniqueID] = image_id
    if exposure is not None and exposure.exposure_us is not None:
        ifd[Base.ExposureTime] = _rational(Fraction(exposure.exposure_us, 1_000_000))
    if exposure is not None and exposure.analogue_gain is not None:
        ifd[Base.ISOSpeedRatings] = max(1, min(65535, round(exposure.analogue_gain * 100)))
    if position is not None:
        _write_gps(exif.get_ifd(ExifTags.IFD.GPSInfo), position, time.astimezone(UTC))
    payload = exif.tobytes()
    if not payload.startswith(_EXIF_HEADER):  # Pillow >= 8.2 adds it; older ones did not
        payload = _EXIF_HEADER + payload
    return _splice_exif(jpeg, payload)


def read_tags(jpeg: bytes) -> dict[str, Any]:
    """Our tags read back: make, model, software, unit_id, camera_id, image_id, time (aware if the
    offset was written), lat, lon, alt, gps_time (UTC), exposure_us, iso. Absent tags are left out."""
    exif = _open(jpeg).getexif()
    ifd = exif.get_ifd(ExifTags.IFD.Exif)
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    out: dict[str, Any] = {}
    for key, value in (
        ("make", exif.get(Base.Make)),
        ("model", exif.get(Base.Model)),
        ("software", exif.get(Base.Software)),
        ("unit_id", exif.get(Base.HostComputer)),
        ("camera_id", ifd.get(Base.BodySerialNumber)),
        ("image_id", ifd.get(Base.ImageUniqueID)),
        ("iso", ifd.get(Base.ISOSpeedRatings)),
    ):
        if value is not None:
            out[key] = value
    if Base.DateTimeOriginal in ifd:
        moment = datetime.strptime(ifd[Base.DateTimeOriginal], "%Y:%m:%d %H:%M:%S")
        subsec = str(ifd.get(Base.SubsecTimeOriginal, "")).strip()
        if subsec.isdigit():
            moment = moment.replace(microsecond=int(subsec[:6].ljust(6, "0")))
        offset = ifd.get(Base.OffsetTimeOriginal)
        if offset:
            moment = moment.replace(tzinfo=_parse_offset(offset))
        out["time"] = moment
    if Base.ExposureTime in ifd:
        out["exposure_us"] = round(float(ifd[Base.ExposureTime]) * 1_000_000)
    if GPS.GPSLatitude in gps and GPS.GPSLongitude in gps:
        out["lat"] = _from_dms(gps[GPS.GPSLatitude], gps.get(GPS.GPSLatitudeRef, "N"), "S")
        out["lon"] = _from_dms(gps[GPS.GPSLongitude], gps.get(GPS.GPSLongitudeRef, "E"), "W")
    if GPS.GPSAltitude in gps:
        below = gps.get(GPS.GPSAltitudeRef) in (1, b"\x01")
        out["alt"] = -float(gps[GPS.GPSAltitude]) if below else float(gps[GPS.GPSAltitude])
    if GPS.GPSDateStamp in gps and GPS.GPSTimeStamp in gps:
        h, m, s = (float(v) for v in gps[GPS.GPSTimeStamp])
        day = datetime.strptime(gps[GPS.GPSDateStamp], "%Y:%m:%d").replace(tzinfo=UTC)
        out["gps_time"] = day + timedelta(hours=h, minutes=m, seconds=s)
    return out


def _check_ascii(what: str, value: str) -> None:
    if not value or not value.isascii() or not value.isprintable():
        raise ExifError(f"{what} {value!r}: EXIF needs printable ASCII (letters, digits, - _ . /)")


def _open(jpeg: bytes) -> Image.Image:
    try:
        img = Image.open(io.BytesIO(jpeg))
    except (UnidentifiedImageError, OSError) as exc:
        raise ExifError(f"not a readable image ({len(jpeg)} bytes): {exc}") from exc
    if img.format != "JPEG":
        raise ExifError(f"expected a JPEG, got {img.format}")
    return img


def _existing_exif(img: Image.Image) -> Image.Exif:
    """The image's own EXIF (picamera2 writes exposure tags) to build on, else a fresh one; with the
    tags the EXIF standard requires of a JPEG, so validators (exiftool -validate) find nothing amiss but
    ComponentsConfiguration, which Pillow can only write with the wrong type (and which a greyscale
    night picture would not match anyway)."""
    exif = img.getexif()
    try:
        exif.tobytes()
    except Exception:  # a tag Pillow cannot write back (odd maker notes): start clean
        exif = Image.Exif()
    for tag, value in (
        (Base.XResolution, IFDRational(72, 1)),
        (Base.YResolution, IFDRational(72, 1)),
        (Base.ResolutionUnit, 2),  # inches
        (Base.YCbCrPositioning, 1),  # centred
    ):
        exif.setdefault(tag, value)
    ifd = exif.get_ifd(ExifTags.IFD.Exif)
    ifd[Base.ExifVersion] = b"0232"
    ifd[Base.FlashPixVersion] = b"0100"
    ifd[Base.ColorSpace] = 1  # sRGB
    ifd[Base.ExifImageWidth], ifd[Base.ExifImageHeight] = img.size
    return exif


def _rational(value: Fraction) -> IFDRational:
    return IFDRational(value.numerator, value.denominator)


def _to_dms(degrees: float) -> tuple[IFDRational, IFDRational, IFDRational]:
    # Whole degrees and minutes, seconds in 1/10000: integer arithmetic, so 59.99999" never rounds to
    # an impossible 60".
    total = round(abs(degrees) * 3600 * _DMS_SCALE)
    d, rest = divmod(total, 3600 * _DMS_SCALE)
    m, s = divmod(rest, 60 * _DMS_SCALE)
    return IFDRational(d, 1), IFDRational(m, 1), _rational(Fraction(s, _DMS_SCALE))


def _from_dms(dms: tuple[Any, Any, Any], ref: str, negative: str) -> float:
    d, m, s = (float(v) for v in dms)
    value = d + m / 60 + s / 3600
    return -value if ref.strip().upper() == negative else value


def _write_gps(gps: dict[int, Any], position: Position, utc: datetime) -> None:
    gps[GPS.GPSVersionID] = b"\x02\x03\x00\x00"
    gps[GPS.GPSLatitudeRef] = "N" if position.lat >= 0 else "S"
    gps[GPS.GPSLatitude] = _to_dms(position.lat)
    gps[GPS.GPSLongitudeRef] = "E" if position.lon >= 0 else "W"
    gps[GPS.GPSLongitude] = _to_dms(position.lon)
    if position.alt is not None:
        gps[GPS.GPSAltitudeRef] = b"\x00" if position.alt >= 0 else b"\x01"
        gps[GPS.GPSAltitude] = _rational(Fraction(round(abs(position.alt) * 100), 100))
    gps[GPS.GPSMapDatum] = "WGS-84"
    gps[GPS.GPSDateStamp] = utc.strftime("%Y:%m:%d")
    seconds = Fraction(utc.second * 1000 + utc.microsecond // 1000, 1000)
    gps[GPS.GPSTimeStamp] = (IFDRational(utc.hour, 1), IFDRational(utc.minute, 1), _rational(seconds))


def _format_offset(offset: timedelta) -> str:
    minutes = round(offset.total_seconds() / 60)
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _parse_offset(text: str) -> timezone:
    match = re.fullmatch(r"\s*([+-])(\d\d):(\d\d)\s*", str(text))
    if not match:
        raise ExifError(f"EXIF time offset {text!r}: expected +HH:MM or -HH:MM")
    sign = -1 if match[1] == "-" else 1
    return timezone(sign * timedelta(hours=int(match[2]), minutes=int(match[3])))


def _splice_exif(jpeg: bytes, payload: bytes) -> bytes:
    """`jpeg` with its EXIF APP1 segments replaced by one holding `payload` (``Exif\\0\\0`` + TIFF).

    The new segment goes after a leading JFIF APP0 (as Pillow and cameras place it), else right
    after the start-of-image marker. Only the leading APPn/COM segments are walked; the compressed
    picture after them is copied unchanged.
    """
    if len(payload) > _MAX_SEGMENT:
        raise ExifError(f"EXIF block of {len(payload)} bytes exceeds a JPEG segment ({_MAX_SEGMENT} bytes)")
    if jpeg[:2] != b"\xff\xd8":
        raise ExifError("not a JPEG: it does not start with the FF D8 start-of-image marker")
    kept: list[bytes] = []
    pos = 2
    while pos + 4 <= len(jpeg) and jpeg[pos] == 0xFF:
        marker = jpeg[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if not (0xE0 <= marker <= 0xEF or marker == 0xFE):
            break  # tables, frame header, scan: the picture itself starts here
        length = int.from_bytes(jpeg[pos + 2 : pos + 4], "big")
        end = pos + 2 + length
        if length < 2 or end > len(jpeg):
            raise ExifError(f"damaged JPEG: segment FF{marker:02X} at byte {pos} runs past the end")
        segment = jpeg[pos:end]
        if not (marker == 0xE1 and segment[4:10] == _EXIF_HEADER):
            kept.append(segment)
        pos = end
    app1 = b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload
    at = 1 if kept and kept[0][1] == 0xE0 and kept[0][4:9] == b"JFIF\x00" else 0
    kept.insert(at, app1)
    return b"\xff\xd8" + b"".join(kept) + jpeg[pos:]
