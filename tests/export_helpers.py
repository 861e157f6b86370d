"""A station record filled the way the hub fills it, for the export tests.

Everything goes through `StationRecord`'s own write methods with bodies built by the real producers:
fixes are `edge.fix.Fix.to_dict()` of a simulated snow leopard (`simulators.track.Track`) plus the
LoRa extras, captures are `CaptureEvent.body("start"/"update"/"end")` of real `SavedImage`s,
thumbnails and fetched images are real JPEGs, camera health carries a ``position`` as
`edge/camera/health.py` reports it.

What the record holds (the tests assert against these):

- collar-7 and collar-9: one fix every 15 min for 24 h from `T0`, heard by gw-01 (collar-7's fix
  at `SPIKE_INDEX` is 55 km off: an outlier); collar-7's fix 10 was also heard by gw-02, weaker;
- gw-01/gps0: the station's own serial GPS, 4 fixes (not an animal);
- cam-03 (position known, clock gps): 3 PIR events, one paired and near collar-7, each with 2
  pre-trigger frames and 3 stills, plus a self-check picture;
- cam-05 (position known, clock unsynced): 1 PIR event;
- cam-04 (no position ever reported): 1 PIR event.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from PIL import Image

from edge.camera.events import CaptureEvent, SavedImage, image_file, new_event_id, thumbnail_body
from edge.camera.exif import image_unique_id
from edge.fix import ClockSource, Fix, iso_utc
from gateway.station.record import FixRow, StationRecord
from simulators.track import Track

T0 = datetime(2026, 11, 25, 0, 0, tzinfo=UTC)
FIX_INTERVAL_S = 900
FIXES_PER_COLLAR = 96
SPIKE_INDEX = 40
COLLARS = ("collar-7", "collar-9")
POSITIONS = {"cam-03": (38.8412345, 105.9712345, 2410.0), "cam-05": (38.9012, 106.0101, 2650.0)}


@dataclass
class Filled:
    path: Path
    fixes: dict[str, list[Fix]] = field(default_factory=dict)
    events: dict[str, list[CaptureEvent]] = field(default_factory=dict)
    image_dir: Path | None = None


def jpeg(size: tuple[int, int] = (64, 48), shade: int = 90) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (shade, shade, shade)).save(out, format="JPEG", quality=80)
    return out.getvalue()


def camera_health(camera: str, position: tuple[float, float, float] | None) -> dict:
    """A ``<camera>/state/health`` body shaped like `CameraHealth.status()`."""
    return {
        "camera": camera,
        "state": "ok",
        "degraded": False,
        "reasons": [],
        "uptime_s": 86400.0,
        "counters": {"pir_triggers": 4, "events": {"pir": 3}, "stills": 9, "pre_trigger_frames": 6},
        "blank": {"judged": {}, "blank": {}, "ratio": None, "ratio_all": None},
        "light": {"mean": 40.0, "lux": None, "last_change": None, "hours_since_change": 0.5},
        "disk": {"free_bytes": 10_000_000, "total_bytes": 30_000_000, "used_percent": 66.7},
        "position": None if position is None else dict(zip(("lat", "lon", "alt"), position, strict=True)),
        "cpu_temp_c": 31.5,
        "battery_v": 12.4,
        "self_check": None,
    }


def fill_record(path: Path, *, image_dir: Path | None = None) -> Filled:
    record = StationRecord(path)
    filled = Filled(path=path, image_dir=image_dir)
    _collars(record, filled)
    _serial_gps(record)
    rng = random.Random(3)
    for unit, camera, clock, starts in (
        ("cam-03", "cam0", ClockSource.GPS, (2.0, 7.5, 19.25)),
        ("cam-05", "cam0", ClockSource.UNSYNCED, (5.0,)),
        ("cam-04", "cam0", ClockSource.NETWORK, (9.0,)),
    ):
        if unit in POSITIONS:
            record.unit_health(unit, camera_health(camera, POSITIONS[unit]), T0.timestamp(), camera=True)
        else:
            record.unit_health(unit, camera_health(camera, None), T0.timestamp(), camera=True)
        events = filled.events.setdefault(unit, [])
        for n, hours in enumerate(starts):
            event = _event(record, unit, camera, clock, T0 + timedelta(hours=hours), rng, image_dir)
            if unit == "cam-03" and n == 1:
                event.tag(
                    "pair", {"partner": "cam-06", "camera": "cam0", "event_id": "20261125T073000Z-abcdef"}
                )
                event.tag("collars", ["collar-9", "collar-7"])
                record.update_capture(
                    unit, event.body("end"), clock=str(clock), now=event.ended.timestamp() + 2
                )
            events.append(event)
        if unit == "cam-03":
            events.append(_self_check(record, unit, camera, T0 + timedelta(hours=12), rng))
    record.commit()
    record.close()
    return filled


def _collars(record: StationRecord, filled: Filled) -> None:
    for collar, seed in zip(COLLARS, (7, 9), strict=True):
        track = Track(random.Random(seed), (38.85 + seed / 1000, 105.95), T0)
        fixes = []
        for i in range(FIXES_PER_COLLAR):
            p = track.advance(FIX_INTERVAL_S)
            lat = p.lat + (0.5 if collar == "collar-7" and i == SPIKE_INDEX else 0.0)
            fix = Fix(
                time=p.time,
                lat=lat,
                lon=p.lon,
                quality=1,
                alt=round(p.alt, 1),
                speed=round(p.speed_mps, 2),
                course=round(p.course_deg, 1),
                sats=8 + i % 4,
                hdop=round(0.8 + (i % 5) / 10, 1),
            )
            fixes.append(fix)
            data = {
                **fix.to_dict(),
                "collar": int(collar[7:]),
                "rssi": -100.0 - i % 7,
                "snr": 7.5,
                "battery": 90.0,
            }
            received = p.time.timestamp() + 1.5
            row = FixRow.from_message(
                "gw-01", f"gw01-{collar}-{i}", collar, i, data, received=received, clock="gps"
            )
            record.add_fix(row)
            if collar == "collar-7" and i == 10:  # the same fix, heard by a second gateway
                weaker = {**data, "rssi": -118.0}
                dup = FixRow.from_message(
                    "gw-02", f"gw02-{collar}-{i}", collar, i, weaker, received=received, clock="ntp"
                )
                record.add_fix(dup)
        filled.fixes[collar] = fixes


def _serial_gps(record: StationRecord) -> None:
    for i in range(4):
        moment = T0 + timedelta(hours=i)
        fix = Fix(time=moment, lat=38.80, lon=105.90, quality=2, alt=1520.0, sats=11, hdop=0.7)
        record.add_fix(FixRow.from_message("gw-01", f"gw01-gps0-{i}", "gps0", i, fix.to_dict(), clock="gps"))


def _image(unit: str, event: CaptureEvent, index: int, stream: str, when: datetime) -> SavedImage:
    size = (640, 480) if stream == "lores" else (2304, 1296)
    return SavedImage(
        image_unique_id(unit, event.event_id, index),
        image_file(event.event_id, index, event.trigger_time),
        index,
        stream,  # type: ignore[arg-type]
        when,
        *size,
        18_000 if stream == "lores" else 900_000,
    )


def _event(
    record: StationRecord,
    unit: str,
    camera: str,
    clock: ClockSource,
    trigger: datetime,
    rng: random.Random,
    image_dir: Path | None,
) -> CaptureEvent:
    event = CaptureEvent(
        event_id=new_event_id(trigger, rng),
        unit_id=unit,
        camera_id=camera,
        trigger="pir",
        trigger_time=trigger,
        clock=clock,
        night=trigger.hour < 6 or trigger.hour >= 19,
        pre_trigger_frames=2,
        pre_trigger_s=1.0,
    )
    now = trigger.timestamp()
    record.update_capture(unit, event.body("start"), clock=str(clock), now=now + 0.3)
    for k in range(2):
        event.saved(_image(unit, event, k, "lores", trigger - timedelta(seconds=1.0 - 0.5 * k)))
    for k in range(3):
        still = _image(unit, event, 2 + k, "main", trigger + timedelta(seconds=0.2 + 0.5 * k))
        event.saved(still)
        record.update_capture(unit, event.body("update", still), clock=str(clock), now=now + 1 + k)
    event.best = event.stills[1]
    event.end(trigger + timedelta(seconds=2.4), "motion_ended")
    record.update_capture(unit, event.body("end"), clock=str(clock), now=now + 5)
    small = jpeg((160, 90))
    record.add_thumbnail(unit, thumbnail_body(event, event.best, small, (160, 90)), small)
    if image_dir is not None and unit == "cam-03":
        for image in event.images[2:]:  # the station fetched the stills, not the pre-trigger frames
            target = image_dir / unit / image.file
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(jpeg((96, 54), shade=40 + image.index))
            record.add_image(unit, image.image_id, target, sha256=None, now=now + 60)
    return event


def _self_check(
    record: StationRecord, unit: str, camera: str, trigger: datetime, rng: random.Random
) -> CaptureEvent:
    event = CaptureEvent(
        event_id=new_event_id(trigger, rng),
        unit_id=unit,
        camera_id=camera,
        trigger="self_check",
        trigger_time=trigger,
        clock=ClockSource.GPS,
        night=False,
    )
    record.update_capture(unit, event.body("start"), clock="gps", now=trigger.timestamp())
    still = _image(unit, event, 0, "main", trigger + timedelta(seconds=0.3))
    event.saved(still)
    event.best = still
    event.end(trigger + timedelta(seconds=0.5), "single")
    record.update_capture(unit, event.body("end"), clock="gps", now=trigger.timestamp() + 1)
    return event


def iso(moment: datetime) -> str:
    return iso_utc(moment)
