"""EXIF written into real JPEGs from the simulated camera, read back with Pillow."""

from __future__ import annotations

import io
import random
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import ExifTags, Image

from edge.camera.backend import Exposure, Frame
from edge.camera.exif import ExifError, Position, image_unique_id, read_tags, write_exif
from edge.camera.simulated import SimulatedCamera

T = datetime(2026, 11, 25, 20, 14, 7, 250_000, tzinfo=UTC)
HELAN = Position(38.8432, 105.9101, 2350.4)


def frames() -> tuple[Frame, Frame]:
    cam = SimulatedCamera(lambda: T, random.Random(11), main=(640, 360), animal_in_view=lambda t: 0.4)
    cam.start()
    lores = cam.next_lores()
    assert lores is not None
    return lores, cam.capture_still()


LORES, STILL = frames()


def pixels(jpeg: bytes) -> bytes:
    img = Image.open(io.BytesIO(jpeg))
    img.load()
    return img.tobytes()


@pytest.mark.parametrize("frame", [LORES, STILL], ids=["lores", "main"])
def test_round_trip_on_camera_frames(frame: Frame) -> None:
    uid = image_unique_id("helan-07", "E42", 3)
    out = write_exif(
        frame.jpeg,
        time=frame.time,
        unit_id="helan-07",
        camera_id="cam0",
        position=HELAN,
        image_id=uid,
        exposure=frame.exposure,
    )
    tags = read_tags(out)
    assert tags["make"] == tags["model"] == "uncia"
    assert (tags["unit_id"], tags["camera_id"], tags["image_id"]) == ("helan-07", "cam0", uid)
    assert tags["time"] == frame.time.replace(microsecond=frame.time.microsecond // 1000 * 1000)
    assert tags["gps_time"] == tags["time"]
    assert tags["lat"] == pytest.approx(38.8432, abs=1e-7) and tags["lon"] == pytest.approx(
        105.9101, abs=1e-7
    )
    assert tags["alt"] == pytest.approx(2350.4)
    assert tags["exposure_us"] == frame.exposure.exposure_us  # type: ignore[union-attr]
    assert tags["iso"] == round(frame.exposure.analogue_gain * 100)  # type: ignore[union-attr]
    assert pixels(out) == pixels(frame.jpeg)  # spliced in: the picture was not re-encoded
    assert out.endswith(frame.jpeg[-2000:])


def test_pillow_reopens_the_image_and_sees_the_standard_tags() -> None:
    out = write_exif(STILL.jpeg, time=T, unit_id="helan-07", position=HELAN)
    img = Image.open(io.BytesIO(out))
    img.load()
    assert img.format == "JPEG" and img.size == (640, 360)
    exif = img.getexif()
    assert exif[ExifTags.Base.Make] == "uncia" and exif[ExifTags.Base.HostComputer] == "helan-07"
    sub = exif.get_ifd(ExifTags.IFD.Exif)
    assert sub[ExifTags.Base.DateTimeOriginal] == "2026:11:25 20:14:07"
    assert (
        sub[ExifTags.Base.OffsetTimeOriginal] == "+00:00" and sub[ExifTags.Base.SubsecTimeOriginal] == "250"
    )
    assert (sub[ExifTags.Base.ExifImageWidth], sub[ExifTags.Base.ExifImageHeight]) == (640, 360)
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    assert gps[ExifTags.GPS.GPSLatitudeRef] == "N" and gps[ExifTags.GPS.GPSLongitudeRef] == "E"
    assert gps[ExifTags.GPS.GPSMapDatum] == "WGS-84" and gps[ExifTags.GPS.GPSDateStamp] == "2026:11:25"
    assert [float(v) for v in gps[ExifTags.GPS.GPSTimeStamp]] == [20.0, 14.0, 7.25]


@pytest.mark.parametrize(
    ("lat", "lon", "alt", "refs"),
    [
        (-33.8688, 151.2093, 58.0, ("S", "E")),
        (40.7128, -74.0060, 10.0, ("N", "W")),
        (-54.8019, -68.3030, -12.5, ("S", "W")),  # and below sea level
        (0.0, 0.0, 0.0, ("N", "E")),
        (89.99999999, -179.99999999, None, ("N", "W")),  # rounds up to whole degrees, never 60"
    ],
)
def test_hemispheres_and_signs(lat: float, lon: float, alt: float | None, refs: tuple[str, str]) -> None:
    out = write_exif(LORES.jpeg, time=T, unit_id="u1", position=Position(lat, lon, alt))
    tags = read_tags(out)
    assert tags["lat"] == pytest.approx(lat, abs=1e-7) and tags["lon"] == pytest.approx(lon, abs=1e-7)
    assert tags.get("alt") == (None if alt is None else pytest.approx(alt))
    gps = Image.open(io.BytesIO(out)).getexif().get_ifd(ExifTags.IFD.GPSInfo)
    assert (gps[ExifTags.GPS.GPSLatitudeRef], gps[ExifTags.GPS.GPSLongitudeRef]) == refs
    for dms in (gps[ExifTags.GPS.GPSLatitude], gps[ExifTags.GPS.GPSLongitude]):
        assert float(dms[1]) < 60 and float(dms[2]) < 60


@settings(max_examples=60, deadline=None)
@given(
    lat=st.floats(-90, 90),
    lon=st.floats(-180, 180),
    alt=st.one_of(st.none(), st.floats(-1000, 10_000)),
    micro=st.integers(0, 999_999),
    offset_minutes=st.integers(-12 * 60, 14 * 60),
)
def test_any_position_and_time_round_trip(
    lat: float, lon: float, alt: float | None, micro: int, offset_minutes: int
) -> None:
    local = T.replace(microsecond=micro).astimezone(timezone(timedelta(minutes=offset_minutes)))
    tags = read_tags(write_exif(LORES.jpeg, time=local, unit_id="u1", position=Position(lat, lon, alt)))
    assert abs(tags["lat"] - lat) < 1e-7 and abs(tags["lon"] - lon) < 1e-7  # 1/10000" is ~3 mm
    if alt is not None:
        assert abs(tags["alt"] - alt) <= 0.005
    assert tags["time"] == local.replace(microsecond=micro // 1000 * 1000)
    assert tags["time"].utcoffset() == timedelta(minutes=offset_minutes)
    assert tags["gps_time"] == tags["time"]


def test_rewriting_replaces_our_exif_and_keeps_foreign_tags() -> None:
    exif = Image.Exif()
    exif[ExifTags.Base.Artist] = "field team"
    img = Image.open(io.BytesIO(STILL.jpeg))
    own = io.BytesIO()
    img.save(own, "JPEG", exif=exif, quality=80)
    once = write_exif(own.getvalue(), time=T, unit_id="a", exposure=Exposure(exposure_us=66_000))
    twice = write_exif(once, time=T + timedelta(seconds=1), unit_id="b", camera_id="cam1")
    assert twice.count(b"Exif\x00\x00") == 1
    tags = read_tags(twice)
    assert (tags["unit_id"], tags["camera_id"], tags["exposure_us"]) == ("b", "cam1", 66_000)
    assert tags["time"] == T + timedelta(seconds=1)
    assert Image.open(io.BytesIO(twice)).getexif()[ExifTags.Base.Artist] == "field team"


def test_jpeg_without_jfif_header_gets_exif_right_after_start_of_image() -> None:
    bare = b"\xff\xd8" + STILL.jpeg[2 + 2 + int.from_bytes(STILL.jpeg[4:6], "big") :]  # APP0 removed
    out = write_exif(bare, time=T, unit_id="u1")
    assert out[2:4] == b"\xff\xe1" and out[6:12] == b"Exif\x00\x00"
    assert pixels(out) == pixels(STILL.jpeg)


def test_bad_input_gets_clear_errors() -> None:
    with pytest.raises(ExifError, match="timezone"):
        write_exif(LORES.jpeg, time=datetime(2026, 1, 1), unit_id="u1")
    with pytest.raises(ExifError, match="not a readable image"):
        write_exif(b"hello", time=T, unit_id="u1")
    with pytest.raises(ExifError, match="expected a JPEG"):
        png = io.BytesIO()
        Image.new("L", (4, 4)).save(png, "PNG")
        write_exif(png.getvalue(), time=T, unit_id="u1")
    with pytest.raises(ExifError, match="ASCII"):
        write_exif(LORES.jpeg, time=T, unit_id="雪豹-1")
    with pytest.raises(ExifError, match="32 lowercase hex"):
        write_exif(LORES.jpeg, time=T, unit_id="u1", image_id="E42-3")
    with pytest.raises(ExifError, match="latitude"):
        Position(91.0, 0.0)
    with pytest.raises(ExifError, match="longitude"):
        Position(0.0, float("nan"))


def test_image_unique_id_is_stable_and_distinct() -> None:
    a = image_unique_id("helan-07", "E42", 0)
    assert a == image_unique_id("helan-07", "E42", 0) != image_unique_id("helan-07", "E42", 1)
    assert len(a) == 32 and int(a, 16) >= 0
