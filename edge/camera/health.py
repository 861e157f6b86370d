"""The camera's own health: counters, blank triggers, disk, temperature, battery, a daily self-check
picture, and **degraded** when the camera has seen no light change for days.

What the station gets (retained, so a dashboard sees the latest at once) on
``uncia/<site>/<unit>/<camera>/state/health``, every ``health_interval_s`` (default 10 min), at
start, and at once when the camera becomes degraded or recovers (envelope type ``camera_health``,
source ``<camera>-health``; body in docs/camera.md):

- **counters**: PIR triggers, events by trigger (``pir``, ``pir-continued``, ``pair``, ``manual``,
  ``self_check``), stills, pre-trigger frames, images lost, camera errors, triggers turned away;
- **blank triggers**: an event is *blank* when its best still differs from the oldest pre-trigger
  frame (the empty scene just before) by less than `BLANK_BELOW` (`edge.camera.capture.difference`,
  brightness evened out: the IR lamp alone is no change). Judged for events triggered by a sensor
  (PIR or the partner camera), not for manual or self-check pictures. A high blank ratio means a PIR
  seeing wind in the grass or sun-warmed rock: re-aim it or lower its sensitivity;
- **disk**: free bytes on the image card and the image store's counts;
- **CPU temperature** (``/sys/class/thermal/thermal_zone0/temp`` when the board has it) and
  **battery voltage** (only if a reader is wired in: `HealthSensors.battery_volts`);
- **self-check**: a minute after start and then every 24 h the unit takes a picture on its own (an
  event with trigger ``self_check``: its thumbnail goes to the station like any other), so someone
  can look at what the camera sees without waiting for an animal; it waits for a quiet moment (no
  event for 30 s, the PIR at rest) so it never takes the place of a real capture;
- **degraded**: the camera looks at one low-resolution frame a minute and compares its brightness
  (mean grey level and the camera's own lux estimate) and its picture (a 64 × 48 grey signature)
  with the last one that was different. Days pass with dawns and dusks, animals and shadows; a
  camera buried in snow or with an iced lens sees a flat glow that never changes. No change for
  ``degraded_after_h`` hours (default 48) → ``degraded: true`` and a warning in the log; the first
  change clears it.

`LightWatch` and `is_blank` are pure; `CameraHealth` is the add-on (its own thread, ``uncia-health``,
publishes and schedules the self-check; the hooks only sample and count).
"""

from __future__ import annotations

import io
import logging
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image, ImageStat, UnidentifiedImageError

from edge.camera.addons import CameraAddon
from edge.camera.backend import Frame
from edge.camera.capture import Verdict, difference, signature
from edge.camera.events import CaptureEvent
from edge.clock import Clock
from edge.fix import ClockSource, iso_utc
from edge.outbox import OutboxError, Priority

if TYPE_CHECKING:
    from edge.camera.agent import CameraUnit

HEALTH_TYPE = "camera_health"
SELF_CHECK = "self_check"  # the trigger of the self-check picture
JUDGED_TRIGGERS = frozenset({"pir", "pir-continued", "pair"})  # blank or not: sensor-triggered events
PIR_TRIGGERS = frozenset({"pir", "pir-continued"})
THERMAL_ZONE = Path("/sys/class/thermal/thermal_zone0/temp")

# Measured on the simulated NoIR scene (tests/test_camera_health.py): an empty still scores 0.01-0.03
# against the frame before the trigger (sensor noise, lamp flicker), a snow leopard anywhere in the
# picture 0.10-0.15. The same threshold decides whether the picture itself changed (LightWatch).
BLANK_BELOW = 0.05
# Brightness counts as changed beyond this fraction of the reference and this many grey levels (a
# black night picture's 2 → 3 is not a change); the camera's lux estimate, by this ratio.
MEAN_CHANGE = 0.15
MEAN_CHANGE_LEVELS = 4.0
LUX_CHANGE_RATIO = 1.5
SAMPLE_EVERY_S = 60.0  # one lores frame a minute is plenty for a check measured in days
SELF_CHECK_FIRST_S = 60.0
SELF_CHECK_EVERY_S = 86_400.0
SELF_CHECK_RETRY_S = 60.0  # a self-check turned away (a burst, a rest) is asked for again after this
SELF_CHECK_QUIET_S = 30.0  # ... and it waits for a quiet moment: no event for this long, PIR at rest


def read_cpu_temperature(path: Path = THERMAL_ZONE) -> float | None:
    """The SoC temperature in °C from the kernel's thermal zone (millidegrees), or None without one."""
    try:
        return round(int(path.read_text().strip()) / 1000.0, 1)
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class HealthSensors:
    """Where the health report reads the board's sensors. ``battery_volts`` is the seam for a
    battery monitor (an INA219 on I²C, an ADC on the charge controller): a callable returning volts,
    or None when the unit has none wired (the report then says ``battery_v: null``)."""

    thermal_path: Path = THERMAL_ZONE
    battery_volts: Callable[[], float | None] | None = None


@dataclass(frozen=True)
class LightSample:
    """What a frame says about the light: mean grey level (0-255), the camera's lux estimate (None if
    it gives none) and a small grey signature of the picture."""

    mean: float
    lux: float | None
    signature: Image.Image = field(repr=False, compare=False)

    @classmethod
    def of(cls, frame: Frame) -> LightSample | None:
        """The sample of `frame`, or None if its JPEG cannot be read."""
        sig = signature(frame.jpeg)
        if sig is None:
            return None
        lux = frame.exposure.lux if frame.exposure is not None else None
        return cls(float(ImageStat.Stat(sig).mean[0]), lux, sig)

    def differs_from(self, other: LightSample) -> bool:
        """Whether the light or the picture changed between `other` and this sample (module notes)."""
        step = abs(self.mean - other.mean)
        if step >= MEAN_CHANGE_LEVELS and step >= MEAN_CHANGE * max(other.mean, 1.0):
            return True
        if self.lux and other.lux and max(self.lux, other.lux) / min(self.lux, other.lux) >= LUX_CHANGE_RATIO:
            return True
        return difference(self.signature, other.signature) >= BLANK_BELOW


class LightWatch:
    """Tells a camera that sees its world change from one that sees the same flat picture for days.

    Pure: `observe` takes a sample and a monotonic time (seconds; a wall clock can jump when GPS or NTP
    sets it). The reference is the last sample that differed from the one before it, so a slow dusk
    still adds up to a change.
    """

    def __init__(self, degraded_after_s: float) -> None:
        self.degraded_after_s = degraded_after_s
        self.reference: LightSample | None = None
        self.changed_at: float | None = None  # monotonic
        self.changed_wall: datetime | None = None
        self.latest: LightSample | None = None
        self.latest_at: float | None = None
        self.samples = 0
        self.changes = 0

    def observe(self, sample: LightSample, now: float, wall: datetime | None = None) -> bool:
        """Take one sample at `now`; returns whether the camera is degraded after it."""
        self.samples += 1
        self.latest, self.latest_at = sample, now
        if self.reference is None or self.changed_at is None or now < self.changed_at:
            self.reference, self.changed_at, self.changed_wall = sample, now, wall
        elif sample.differs_from(self.reference):
            self.changes += 1
            self.reference, self.changed_at, self.changed_wall = sample, now, wall
        return self.degraded(now)

    def since_change_s(self, now: float) -> float | None:
        return None if self.changed_at is None else max(0.0, now - self.changed_at)

    def degraded(self, now: float) -> bool:
        since = self.since_change_s(now)
        return since is not None and since >= self.degraded_after_s


def is_blank(background: bytes | None, best: bytes | None) -> bool | None:
    """Whether an event's best still shows nothing that was not in its pre-trigger background; None
    when it cannot be told (no background frame, no still, or an unreadable JPEG)."""
    if background is None or best is None:
        return None
    base, still = signature(background), signature(best)
    if base is None or still is None:
        return None
    return difference(still, base) < BLANK_BELOW


def _brightness(jpeg: bytes) -> float | None:
    try:
        with Image.open(io.BytesIO(jpeg)) as img:
            img.draft("L", (64, 48))
            return round(float(ImageStat.Stat(img.convert("L")).mean[0]), 1)
    except (UnidentifiedImageError, OSError, ValueError):
        return None


class CameraHealth(CameraAddon):
    """The camera's status, published retained on its ``state/health`` topic (module notes)."""

    name = "health"

    def __init__(
        self,
        unit: CameraUnit,
        *,
        clock: Clock,
        monotonic: Callable[[], float],
        clock_source: Callable[[], ClockSource],
        sensors: HealthSensors | None = None,
        poll_s: float = 0.5,
        log: logging.Logger | None = None,
    ) -> None:
        s = unit.settings
        self.unit = unit
        self.sensors = sensors or HealthSensors()
        self.interval_s = s.health_interval_s
        self.topic = unit.topics.state(unit.camera_id, "health")
        self.source = f"{unit.camera_id}-health"
        self.light = LightWatch(s.degraded_after_h * 3600.0)
        self.events: Counter[str] = Counter()
        self.judged: Counter[str] = Counter()
        self.blank: Counter[str] = Counter()
        self.self_check: dict[str, Any] | None = None
        self.published = 0
        self.degraded = False
        self._clock, self._mono, self._clock_source = clock, monotonic, clock_source
        self.log = log or logging.getLogger("uncia.camera.health")
        self._poll_s = poll_s
        self._started = monotonic()
        self._next_sample = self._started
        self._next_status = self._started  # the first status right at start
        self._self_check_due = self._started + SELF_CHECK_FIRST_S
        self._self_check_asked: float | None = None
        self._last_event_end: float | None = None
        self._published_degraded = False
        self._status_asked = False  # publish at the next round (a self-check was taken)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="uncia-health", daemon=True)

    # --- hooks (the agent's threads) --------------------------------------------------------------------

    def start(self) -> None:
        self._started = self._mono()
        self._next_status = self._started
        self._self_check_due = self._started + SELF_CHECK_FIRST_S
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(5.0)

    def on_lores(self, frame: Frame) -> None:
        now = self._mono()
        if now < self._next_sample:
            return
        self._next_sample = now + SAMPLE_EVERY_S
        sample = LightSample.of(frame)
        if sample is None:
            return
        degraded = self.light.observe(sample, now, frame.time)
        if degraded != self.degraded:
            self.degraded = degraded
            self._wake.set()  # the health thread publishes at once

    def event_ended(self, event: CaptureEvent, background: bytes | None, best: bytes | None) -> None:
        trigger = event.trigger
        self.events[trigger] += 1
        self._last_event_end = self._mono()
        if trigger == SELF_CHECK:
            self._self_check_asked = None
            self._self_check_due = self._mono() + SELF_CHECK_EVERY_S
            self.self_check = {
                "event_id": event.event_id,
                "time": iso_utc(event.trigger_time),
                "image_id": None if event.best is None else event.best.image_id,
                "night": event.night,
                "brightness": None if best is None else _brightness(best),
            }
            self._status_asked = True
            self._wake.set()
            return
        if trigger in JUDGED_TRIGGERS:
            blank = is_blank(background, best)
            if blank is not None:
                self.judged[trigger] += 1
                self.blank[trigger] += int(blank)

    def report(self) -> dict[str, Any]:
        """Short form for the unit's periodic health message (the full status has its own topic)."""
        now = self._mono()
        since = self.light.since_change_s(now)
        return {
            "degraded": self.degraded,
            "blank_trigger_ratio": self._ratio(PIR_TRIGGERS),
            "hours_since_light_change": None if since is None else round(since / 3600.0, 2),
            "status_topic": self.topic,
        }

    # --- the status -----------------------------------------------------------------------------------

    def _ratio(self, triggers: frozenset[str]) -> float | None:
        judged = sum(self.judged[t] for t in triggers)
        return None if judged == 0 else round(sum(self.blank[t] for t in triggers) / judged, 3)

    def status(self) -> dict[str, Any]:
        """The body of the status message (docs/camera.md)."""
        unit, now = self.unit, self._mono()
        counters = unit.counters
        since = self.light.since_change_s(now)
        reasons = []
        if self.degraded:
            reasons.append(
                f"no light change for {since / 3600.0:.1f} h: buried in snow, lens iced or covered?"
                if since is not None
                else "no light change"
            )
        try:
            free, total = unit.store.usage()
        except OSError:
            free = total = None
        battery = None
        if self.sensors.battery_volts is not None:
            try:
                battery = self.sensors.battery_volts()
            except Exception as exc:  # a loose I²C wire must not cost the rest of the report
                reasons.append(f"battery monitor not answering ({exc})")
        latest = self.light.latest
        return {
            "camera": unit.camera_id,
            "state": "degraded" if self.degraded else "ok",
            "degraded": self.degraded,
            "reasons": reasons,
            "uptime_s": round(now - self._started, 1),
            "counters": {
                "pir_triggers": unit.pir.triggers,
                "events": dict(self.events),
                "stills": counters["stills"],
                "pre_trigger_frames": counters["pre_trigger_frames"],
                "images_lost": counters["images_lost"],
                "camera_errors": counters["camera_errors"],
                "turned_away": unit.gate.counts[Verdict.BUSY] + unit.gate.counts[Verdict.RESTING],
            },
            "blank": {
                "judged": dict(self.judged),
                "blank": dict(self.blank),
                "ratio": self._ratio(PIR_TRIGGERS),
                "ratio_all": self._ratio(JUDGED_TRIGGERS),
            },
            "light": {
                "mean": None if latest is None else round(latest.mean, 1),
                "lux": None if latest is None else latest.lux,
                "last_change": None if self.light.changed_wall is None else iso_utc(self.light.changed_wall),
                "hours_since_change": None if since is None else round(since / 3600.0, 2),
                "degraded_after_h": round(self.light.degraded_after_s / 3600.0, 2),
                "samples": self.light.samples,
            },
            "disk": {
                "free_bytes": free,
                "total_bytes": total,
                "used_percent": None if not total else round(100.0 * (total - free) / total, 1),
                **unit.store.stats(),
            },
            "position": unit.position.to_dict() if unit.position is not None else None,
            "cpu_temp_c": read_cpu_temperature(self.sensors.thermal_path),
            "battery_v": None if battery is None else round(float(battery), 2),
            "self_check": self.self_check,
        }

    def publish(self) -> bool:
        """Queue the status (retained, through the outbox); False if the outbox refused it."""
        body = self.status()
        moment, clock = self._clock(), self._clock_source()
        envelope = self.unit.envelope

        def payload(seq: int) -> bytes:
            return envelope.encode(
                self.source, seq, HEALTH_TYPE, body, time=moment, received=moment, clock=clock
            )

        try:
            self.unit.outbox.enqueue(
                self.source, self.topic, payload, qos=1, retain=True, priority=Priority.STATUS
            )
        except OutboxError as exc:
            self.log.error("camera status not queued: %s", exc)
            return False
        self.published += 1
        return True

    # --- the health thread ------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:
                self.log.exception("camera health check failed; trying again")
            self._wake.wait(self._poll_s)
            self._wake.clear()

    def _quiet(self, now: float) -> bool:
        """Whether a self-check may be asked for now: not too soon after the last ask, and not while an
        animal is about (it would take the place of, or cut short, a real capture)."""
        if self._self_check_asked is not None and now - self._self_check_asked < SELF_CHECK_RETRY_S:
            return False
        if self._last_event_end is not None and now - self._last_event_end < SELF_CHECK_QUIET_S:
            return False
        return self.unit.current is None and not self.unit.pir.motion_detected

    def tick(self) -> None:
        """One round of the health thread: ask for a self-check when one is due, and publish the status
        when it is due, when degraded changed, or after a self-check."""
        now = self._mono()
        if now >= self._self_check_due and self._quiet(now):
            self._self_check_asked = now
            self.unit.trigger(SELF_CHECK)
        degraded = self.degraded
        changed = degraded != self._published_degraded
        if changed and degraded:
            self.log.warning(
                "camera %s has seen no light change for %.1f h: buried in snow, lens iced or covered?"
                " Reported as degraded",
                self.unit.camera_id,
                (self.light.since_change_s(now) or 0.0) / 3600.0,
            )
        elif changed:
            self.log.info("camera %s sees the light change again: no longer degraded", self.unit.camera_id)
        if changed or self._status_asked or now >= self._next_status:
            self._status_asked = False
            if self.publish():
                self._published_degraded = degraded
                self._next_status = now + self.interval_s


def unit_report(unit: CameraUnit, clock_state: ClockSource) -> dict[str, Any]:
    """The camera agent's part of the unit's periodic health message (``unit/state/health``): camera,
    clock, PIR, triggers turned away, counters, IR lamp, image store, last event, and each add-on's
    short report (``health``, ``pairing``, ``proximity``)."""
    lamp = unit.illuminator
    last = unit.completed[-1] if unit.completed else None
    try:
        free: int | None = unit.store.free_bytes()
    except OSError:
        free = None
    return {
        "camera": {"id": unit.camera_id, "backend": unit.camera.name, "buffered_frames": len(unit.ring)},
        "clock": str(clock_state),
        "night": unit.night,
        "pir": {"triggers": unit.pir.triggers, "bounces": unit.pir.bounces},
        "turned_away": {
            "busy": unit.gate.counts[Verdict.BUSY],
            "resting": unit.gate.counts[Verdict.RESTING],
        },
        "counters": dict(unit.counters),
        "illuminator": {
            "lit": lamp.is_lit,
            "activations": lamp.activations,
            "on_time_s": round(lamp.on_time_s, 1),
            "watchdog_trips": lamp.watchdog_trips,
        },
        "store": {**unit.store.stats(), "free_bytes": free},
        "last_event": None
        if last is None
        else {"id": last.event_id, "first_still_ms": last.first_still_ms, "stills": len(last.stills)},
        **unit.addons.reports(),
    }
