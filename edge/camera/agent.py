"""The camera unit agent: PIR → IR lamp → a burst of infrared stills, with the seconds before it.

What the unit does, for the technician:

1. The camera streams a small picture all the time into the pre-trigger buffer (the last
   ``pre_trigger_s`` seconds and half a second more), so an event starts *before* the PIR fired;
   an event keeps the frames from the last one taken at or before ``pre_trigger_s`` ahead of the
   trigger (so they reach at least that far back) up to the trigger.
2. A PIR trigger (edge-driven, see `edge.camera.pir`) starts an event unless a burst is running or
   the unit is resting after one (`edge.camera.capture`). At night (light sensor, else the sun's
   elevation at the unit's position) the IR lamp is lit for the burst only, never longer.
3. The burst: a full-resolution still at once, then one every ``burst_interval_s`` while the PIR
   still sees motion, at most ``max_burst``. Each still gets EXIF (time and offset, the unit's
   position, unit/camera/image ids) and is saved with its JSON sidecar, power-cut safe, then
   registered in the image store. Between stills, and after the burst with the lamp off, the
   pre-trigger frames are saved the same way (low resolution) as images 000, 001, ... of the event.
4. Start, update (per still) and end messages of the event, and a thumbnail (at most
   ``thumbnail_bytes``) of the still that shows most, go through the durable outbox to the station
   broker (`edge.camera.events`, docs/topics.md).
5. After every event (and every minute), the card's watermarks are enforced (`edge.storage`).

A full card never stops the unit: an image that cannot be saved is counted and named in the event's
end message (``images_lost``, ``lost_reasons``), the watermarks are enforced at once, and capture
goes on. The outbox keeps its messages in memory while its own writes fail (`edge.outbox`).

Threads: ``camera`` (lores frames into the buffer; restarts the stream after camera errors),
``capture`` (events, one at a time), gpiozero's pin thread (the PIR callback only sets a flag),
the outbox committer and the relay; the add-ons' own (``uncia-health``, one per LoRa modem).

Add-ons (`edge.camera.addons`): the camera's health status, paired cameras (``pair_with``) and
collar-proximity arming (a ``[[lora]]`` table) live in their own modules and see the capture path
through a few hooks (event started/ended, lores frames, burst policy, motion).

Seams: the camera backend, the pin factory, the wall clock (frame and event times), the monotonic
clock (intervals), the clock's source (``edge.clock.system_clock_source``; pass one that answers
``ClockSource.GPS`` on a unit whose clock follows its GPS), the day/night source, the disk-usage
function and the random source are all passed in.
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import random
import re
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from gpiozero.pins import Factory
from PIL import Image

from edge.camera.addons import build_addons, longest_burst
from edge.camera.backend import CameraBackend, CameraError, Frame, pump_lores
from edge.camera.capture import (
    BestStill,
    Burst,
    BurstPolicy,
    EndReason,
    TriggerGate,
    Verdict,
    pre_trigger_frames,
)
from edge.camera.daylight import DaylightSource, LightSensorDaylight, SunElevation
from edge.camera.events import (
    CAPTURE_TYPE,
    THUMBNAIL_TYPE,
    CaptureEvent,
    SavedImage,
    image_file,
    new_event_id,
    thumbnail_body,
)
from edge.camera.exif import ExifError, Position, image_unique_id, write_exif
from edge.camera.gps import UnitGps
from edge.camera.health import HealthSensors, unit_report
from edge.camera.illuminator import IrIlluminator
from edge.camera.pir import PirSensor
from edge.camera.ring import PreTriggerBuffer
from edge.camera.sidecar import Sidecar, SidecarError, recover_directory, write_capture
from edge.camera.thumbnail import ThumbnailError, thumbnail
from edge.camera.transfer import ImageSender
from edge.clock import Clock, system_clock_source, utc_now
from edge.config import ConfigError, UnitConfig, unit_identity
from edge.fix import ClockSource
from edge.fix_source import publish_heard
from edge.messages import Envelope
from edge.outbox import Outbox, OutboxError
from edge.relay import Relay
from edge.storage import DiskUsage, ImageStore, StoreError
from edge.topics import Topics
from edge.unit_commands import BadRequest, UnitCommands

_HOUSEKEEPING_S = 60.0  # watermarks are also enforced this often when no event runs
_LAMP_MARGIN_S = 10.0  # the lamp's watchdog allows the whole burst plus this
_RECENT_EVENTS = 50
_PRE_TRIGGER_MARGIN_S = 0.5
_IMAGE_NAME = re.compile(r"^(\d{8}T\d{6}Z-[0-9a-f]{6})-(\d{3,})\.jpg$")  # see edge.camera.events


class CameraUnit:
    """The camera unit agent. `start()`, then `stop()`; `health()` for the periodic status.

    ``camera`` is a `CameraBackend` not yet started (the unit starts and closes it). ``pin_factory``
    is gpiozero's (None: the default, lgpio on a Pi; ``MockFactory()`` in tests and simulation).
    ``clock`` is the wall clock events are stamped with (the camera stamps its own frames: give both
    the same clock); ``monotonic`` times intervals. The IR lamp's pin is driven low before anything
    else is set up, whatever a crashed run left on the line.
    """

    def __init__(
        self,
        config: UnitConfig,
        camera: CameraBackend,
        *,
        pin_factory: Factory | None = None,
        clock: Clock = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
        clock_source: Callable[[], ClockSource] = system_clock_source,
        daylight: DaylightSource | None = None,
        disk_usage: Callable[[Path], DiskUsage] = shutil.disk_usage,
        rng: random.Random | None = None,
        health_sensors: HealthSensors | None = None,
        log: logging.Logger | None = None,
    ) -> None:
        settings = config.camera
        if settings is None:
            raise ConfigError("camera", None, "a [camera] table (see deploy/camera.example.toml)")
        self.config = config
        self.settings = settings
        self.camera = camera
        self.log = log or logging.getLogger("uncia.camera")
        self.policy = BurstPolicy(
            settings.burst_interval_s, settings.max_burst, settings.retrigger_interval_s
        )
        # The lamp first: if the last run died with it lit, this drives the line low before any
        # slower set-up below (opening the store or the outbox can take seconds on a big card).
        self.illuminator = IrIlluminator(
            settings.illuminator_pin,
            pin_factory=pin_factory,
            max_on_s=longest_burst(config) * settings.burst_interval_s + _LAMP_MARGIN_S,
            clock=monotonic,
        )
        self._clock = clock
        self._mono = monotonic
        self._clock_source = clock_source
        self._rng = rng or random.SystemRandom()
        self.unit_id = config.unit.id
        self.camera_id = settings.id
        self.position = Position(settings.lat, settings.lon, settings.alt)
        self.capture_mode = "normal"
        self.topics = Topics(config.unit.site, config.unit.id)
        self.capture_topic = self.topics.event(settings.id, CAPTURE_TYPE)
        self.thumbnail_topic = self.topics.event(settings.id, THUMBNAIL_TYPE)
        self.envelope = Envelope(config.unit.id)
        self.gate = TriggerGate(self.policy)
        self.counters: dict[str, int] = dict.fromkeys(
            (
                "events",
                "stills",
                "pre_trigger_frames",
                "images_lost",
                "thumbnails",
                "lores_frames",
                "camera_errors",
                "internal_errors",
                "paused_triggers",
                "collar_fixes_relayed",
            ),
            0,
        )
        self.completed: deque[CaptureEvent] = deque(maxlen=_RECENT_EVENTS)
        self.current: CaptureEvent | None = None
        self.night: bool | None = None
        self._images: dict[str, str] = {}  # image id -> file relative to the image folder
        self._stop = threading.Event()
        self._triggered = threading.Event()
        self._trigger_lock = threading.Lock()
        self._pending: tuple[str, float, datetime] | None = None
        self._running = False
        self._saved_at = 0.0  # monotonic time the last image and its sidecar were on the card
        self._write_estimate = 0.02  # seconds per pre-trigger frame saved, learnt as they are written
        self._threads: list[threading.Thread] = []
        self._closing = contextlib.ExitStack()
        self._closing.callback(self.illuminator.close)
        try:
            self._build(pin_factory, daylight, disk_usage)
            self.addons = build_addons(
                self,
                clock=clock,
                monotonic=monotonic,
                clock_source=clock_source,
                health_sensors=health_sensors,
            )
            gps = self.addons.get(UnitGps)
            if gps is not None:  # records say "gps" while the unit's own GPS vouches for the clock
                self._clock_source = gps.clock_source
        except BaseException:
            self._closing.close()
            raise

    def _build(
        self,
        pin_factory: Factory | None,
        daylight: DaylightSource | None,
        disk_usage: Callable[[Path], DiskUsage],
    ) -> None:
        s, config = self.settings, self.config
        if daylight is None:
            if s.light_sensor_pin >= 0:
                sensor = LightSensorDaylight(s.light_sensor_pin, pin_factory=pin_factory, clock=self._mono)
                self._closing.callback(sensor.close)
                daylight = sensor
            else:
                position = (s.lat, s.lon, s.alt or 0.0)
                daylight = SunElevation(position, threshold_deg=s.night_below_deg, clock=self._clock)
        self.daylight = daylight
        # Half a second more than asked: the kept frames reach at least pre_trigger_s back even when
        # the frames right at that edge are missing (a still took the sensor frame, a slow moment).
        span = s.pre_trigger_s + _PRE_TRIGGER_MARGIN_S + 1.0 / s.fps
        self.ring = PreTriggerBuffer(span, self._clock, max_frames=int(span * s.fps) + 8)
        self.store = ImageStore(
            s.image_dir,
            low_free_bytes=int(s.low_free_mb * 1_000_000),
            hard_free_bytes=int(s.hard_free_mb * 1_000_000),
            disk_usage=disk_usage,
            clock=self._clock,
            log=self.log.getChild("store"),
        )
        self._closing.callback(self.store.close)
        # Image ids follow from the file names (unit, camera, event id, index): no file is read.
        for path in self.store.root.glob("*/*.jpg"):
            match = _IMAGE_NAME.match(path.name)
            if match:
                image_id = image_unique_id(self.unit_id, self.camera_id, match[1], int(match[2]))
                self._images[image_id] = path.relative_to(self.store.root).as_posix()
        self.outbox = Outbox(
            config.outbox.path,
            max_messages=config.outbox.max_messages,
            commit_interval=config.outbox.commit_interval,
            log=self.log.getChild("outbox"),
        )
        self._closing.callback(self.outbox.close)
        self._clock_state = self._clock_source()
        self.relay = Relay(
            self.outbox,
            config.mqtt,
            self.topics,
            unit=config.unit,
            health_interval=config.health.interval,
            health_extra=self.health,
            identity=unit_identity(config),
            clock_source=lambda: self._clock_state,
            envelope=self.envelope,
            log=self.log.getChild("relay"),
        )
        # ping, config, capture_mode, capture: request/response with correlation ids (edge/unit_commands.py)
        self.commands = UnitCommands(
            config,
            self.outbox,
            self.topics,
            self.envelope,
            clock_source=lambda: self._clock_state,
            wall=self._clock,
            mono=self._mono,
            log=self.log.getChild("commands"),
        )
        self.commands.add("capture_mode", self._command_capture_mode)
        self.commands.add("capture", self._command_capture)
        self.commands.attach(self.relay)
        # The full image on request from the station: chunked, checksummed, resumable, via the outbox.
        self.image_sender = ImageSender(
            self.outbox,
            self.topics,
            self.envelope,
            self.find_image,
            on_delivered=self.mark_relayed,
            camera=self.camera_id,
            clock_source=lambda: self._clock_state,
            log=self.log.getChild("transfer"),
        )
        self.image_sender.attach(self.relay)
        # Last: its callback may fire as soon as it exists (it only sets a flag until start()).
        self.pir = PirSensor(
            s.pir_pin,
            pin_factory=pin_factory,
            bounce_time=s.pir_bounce_s,
            on_motion=self._on_motion,
            clock=self._mono,
            wall_clock=self._clock,
        )
        self._closing.callback(self.pir.close)

    # --- life cycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Tidy the card, start the relay, the camera and the capture; raises `CameraError` if the
        camera cannot start (the lamp stays off; the caller stops the unit)."""
        s = self.settings
        self._tidy_card()
        self.relay.start()
        self.camera.start()
        self._running = True
        for name, target in (("camera", self._camera_loop), ("capture", self._capture_loop)):
            thread = threading.Thread(target=target, name=f"uncia-{name}", daemon=True)
            self._threads.append(thread)
            thread.start()
        self.addons.each("start")
        self.log.info(
            "camera unit %s/%s camera %s (%s) watching: PIR GPIO%d, IR lamp GPIO%d, %s s pre-trigger,"
            " a still every %s s up to %d, rest %s s; images in %s; broker %s:%d",
            self.config.unit.site,
            self.unit_id,
            self.camera_id,
            self.camera.name,
            s.pir_pin,
            s.illuminator_pin,
            s.pre_trigger_s,
            s.burst_interval_s,
            s.max_burst,
            s.retrigger_interval_s,
            self.store.root,
            self.config.mqtt.host,
            self.config.mqtt.port,
        )

    def alive(self) -> bool:
        """True while the relay and every thread of the unit run: the systemd watchdog pings only then."""
        return self.relay.alive() and bool(self._threads) and all(t.is_alive() for t in self._threads)

    def stop(self, timeout: float = 5.0) -> None:
        """End a running burst (its end message is still sent), stop the camera, give the relay
        `timeout` s to send what waits, and release every pin with the lamp off."""
        self._stop.set()
        self._running = False
        self._triggered.set()
        for thread in self._threads:
            thread.join(timeout + 5.0)
        self.addons.each("stop")
        self.illuminator.off()
        with contextlib.suppress(Exception):
            self.camera.close()
        with contextlib.suppress(OutboxError):
            self.outbox.commit()
        self.relay.stop(timeout)
        self._closing.close()
        self.log.info("camera unit stopped")

    def relay_collar_fix(self, heard: Any) -> None:
        """A collar fix heard on the unit's LoRa modem (an `edge.lora.ingest.RadioFix`), relayed to the
        station as the gateway relays its own; the station keeps each reception and its rules take a
        fix once (by its time)."""
        publish_heard(
            self.outbox, self.topics, self.envelope, heard, received=self._clock(), clock=self._clock_state
        )
        self.counters["collar_fixes_relayed"] += 1

    CAPTURE_MODES = ("normal", "paused")

    def _command_capture_mode(self, fields: dict[str, Any]) -> dict[str, Any]:
        """``capture_mode``: ``{"mode": "paused"}`` ignores the PIR and the partner (a team servicing
        the site, livestock penned by the trail); ``"normal"`` watches again. No mode: just report it."""
        mode = fields.get("mode")
        if mode is not None:
            if mode not in self.CAPTURE_MODES:
                raise BadRequest(f"mode {mode!r}: expected one of {', '.join(self.CAPTURE_MODES)}")
            if mode != self.capture_mode:
                self.log.warning("capture mode %s -> %s (by command)", self.capture_mode, mode)
            self.capture_mode = mode
        return {"message": f"capture mode {self.capture_mode}", "mode": self.capture_mode}

    def _command_capture(self, _fields: dict[str, Any]) -> dict[str, Any]:
        """``capture``: take a picture now, as a manual trigger (turned away during a burst or rest)."""
        self.trigger("manual")
        return {"message": "manual trigger offered", "mode": self.capture_mode}

    def trigger(self, reason: str = "manual") -> None:
        """Start an event as a PIR trigger would (a manual or test capture): one still, and more
        only while the PIR sees motion; turned away like any trigger during a burst or the rest."""
        self._offer(reason)

    # --- the full-image transfer's hooks (`ImageSender`, edge/camera/transfer.py) ------------------

    def find_image(self, image_id: str) -> Path | None:
        """HOOK for serving a full-image request from the station (`edge.camera.transfer.ImageSender`'s
        ``find_image``): the file of a saved image by its id (the ``image_id`` of a thumbnail or an
        event, also from before a restart), or None if it is not (any more) on the card. A dictionary
        look-up: it runs on the relay thread and must never scan the card."""
        rel = self._images.get(image_id)
        if rel is None:
            return None
        path = self.store.root / rel
        return path if path.is_file() else None

    def mark_relayed(self, image_id: str) -> bool:
        """HOOK for the transfer: the station has the full image, so the card may free it first."""
        path = self.find_image(image_id)
        return path is not None and self.store.mark_relayed(path)

    # --- triggers --------------------------------------------------------------------------------

    def _on_motion(self) -> None:
        # On gpiozero's pin thread: note the moment and wake the capture thread, nothing more.
        self._offer("pir")

    def _offer(self, reason: str) -> None:
        if not self._running:
            return
        if self.capture_mode == "paused" and reason != "manual":
            self.counters["paused_triggers"] += 1
            return
        with self._trigger_lock:
            if self._pending is None:
                at = self.pir.last_trigger_at if reason == "pir" else None
                self._pending = (reason, self._mono(), at or self._clock())
        self._triggered.set()

    def _take_pending(self) -> tuple[str, float, datetime] | None:
        with self._trigger_lock:
            pending, self._pending = self._pending, None
            self._triggered.clear()
            return pending

    # --- threads ---------------------------------------------------------------------------------

    def _camera_loop(self) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            try:
                pump_lores(self.camera, self._on_lores, self._stop)
            except CameraError as exc:
                if self._stop.is_set():
                    break
                self.counters["camera_errors"] += 1
                self.ring.clear()
                self.log.error("camera stopped streaming (%s); trying again in %.0f s", exc, backoff)
            except Exception:
                self.counters["internal_errors"] += 1
                self.log.exception("camera thread error; trying again in %.0f s", backoff)
            if self._stop.wait(backoff):
                break
            backoff = min(backoff * 2, 60.0)

    def _on_lores(self, frame: Frame) -> None:
        self.ring.append(frame)
        self.counters["lores_frames"] += 1
        self.addons.each("on_lores", frame)

    def _capture_loop(self) -> None:
        next_housekeeping = self._mono() + _HOUSEKEEPING_S
        while not self._stop.is_set():
            self._triggered.wait(0.25)
            if self._stop.is_set():
                break
            pending = self._take_pending()
            now = self._mono()
            if pending is None and self.gate.rearm(now, self.pir.motion_detected):
                pending = ("pir-continued", now, self._clock())
            if pending is not None and self.gate.offer(pending[1]) is Verdict.START:
                try:
                    self._run_event(*pending)
                except Exception:
                    self.counters["internal_errors"] += 1
                    self.log.exception("capture event failed by an internal error; the unit keeps watching")
                    self._end_broken_event()
                finally:
                    if self._take_pending() is not None:
                        self.gate.offer(self._mono())  # a trigger during the burst: counted as part of it
                    self.gate.policy = self.addons.policy(self.policy)  # e.g. no rest while a collar is near
                    self.gate.finished(self._mono())
                    next_housekeeping = 0.0
            if self._mono() >= next_housekeeping:
                self._forget(self.store.enforce())
                next_housekeeping = self._mono() + _HOUSEKEEPING_S

    # --- one event -------------------------------------------------------------------------------

    def _run_event(self, trigger: str, trigger_mono: float, trigger_at: datetime) -> None:
        s = self.settings
        pre = pre_trigger_frames(self.ring.snapshot(), trigger_at, s.pre_trigger_s)
        self._clock_state = self._clock_source()
        night = self._is_night()
        event = CaptureEvent(
            event_id=new_event_id(trigger_at, self._rng),
            unit_id=self.unit_id,
            camera_id=self.camera_id,
            trigger=trigger,
            trigger_time=trigger_at,
            clock=self._clock_state,
            night=night,
            pre_trigger_frames=len(pre),
            pre_trigger_s=(trigger_at - pre[0].time).total_seconds() if pre else None,
        )
        self.current = event
        self.counters["events"] += 1
        self.addons.each("event_started", event)  # tags, and the paired camera's trigger, go first
        self._publish(event, "start")
        waiting = list(enumerate(pre))  # pre-trigger frames still to save: images 000, 001, ...
        index = len(pre)
        ranker = BestStill(pre[0].jpeg if pre else None)
        burst = Burst(self.addons.policy(self.policy), trigger_mono)
        reason: EndReason | None = None
        lamp_before = self.illuminator.on_time_s
        with self.illuminator.lit(night):
            while reason is None:
                asked = self._mono()
                try:
                    frame = self.camera.capture_still()
                except CameraError as exc:
                    self.counters["camera_errors"] += 1
                    event.failed(f"camera: {exc}")
                    self.log.error(
                        "event %s: the camera gave no still (%s); burst ended", event.event_id, exc
                    )
                    reason = EndReason.CAMERA_ERROR
                    break
                event.camera_ms.append((self._mono() - asked) * 1000)
                burst.took(asked)
                saved = self._save(event, frame, index)
                index += 1
                if saved is not None:
                    if event.first_still_ms is None:
                        event.first_still_ms = (self._saved_at - trigger_mono) * 1000
                    self.counters["stills"] += 1
                    self._publish(event, "update", saved)
                    ranker.offer(saved, frame.jpeg)
                due = burst.next_due()
                if due is None:
                    reason = EndReason.MAX_STILLS
                    break
                waiting = self._save_while_waiting(event, waiting, due)
                if not self._wait_until(due):
                    reason = EndReason.STOPPED
                    break
                reason = burst.carry_on(self.pir.motion_detected or self.addons.motion())
        event.illuminator_s = self.illuminator.on_time_s - lamp_before
        for i, frame in waiting:  # the lamp is off now: the rest of the pre-trigger frames
            self._save(event, frame, i)
        event.images.sort(key=lambda image: image.index)
        self._send_thumbnail(event, ranker)
        event.end(self._clock(), str(reason))
        self._publish(event, "end")
        if event.lost:
            self.log.warning(
                "event %s: %d image(s) could not be saved (%s)",
                event.event_id,
                event.lost,
                "; ".join(event.lost_reasons),
            )
        self.log.info(
            "event %s (%s, %s): %d still(s), %d of %d pre-trigger frame(s) saved, reaching %s s back;"
            " ended: %s",
            event.event_id,
            trigger,
            "night, IR lamp lit" if night else "day",
            len(event.stills),
            len(event.pre_trigger),
            event.pre_trigger_frames,
            "-" if event.pre_trigger_s is None else f"{event.pre_trigger_s:.2f}",
            reason,
        )
        self.addons.each("event_ended", event, pre[0].jpeg if pre else None, ranker.best_jpeg)
        self.completed.append(event)
        self.current = None

    def _end_broken_event(self) -> None:
        """An event cut short by a bug still gets its end message: one id, start to end, always."""
        event, self.current = self.current, None
        if event is None or event.ended is not None:
            return
        with contextlib.suppress(Exception):
            event.images.sort(key=lambda image: image.index)
            event.end(self._clock(), str(EndReason.INTERNAL_ERROR))
            self._publish(event, "end")
            self.addons.each("event_ended", event, None, None)
            self.completed.append(event)

    def _is_night(self) -> bool:
        try:
            self.night = bool(self.daylight.is_night())
        except Exception as exc:
            # Lighting a day picture costs a little power; not lighting a night one loses the picture.
            self.log.warning("cannot tell day from night (%s); lighting the IR lamp to be safe", exc)
            self.night = True
        return self.night

    def _wait_until(self, due: float) -> bool:
        """Wait for the monotonic clock to reach `due`; False if the unit is stopping."""
        while (left := due - self._mono()) > 0:
            if self._stop.wait(left):
                return False
        return not self._stop.is_set()

    def _save_while_waiting(
        self, event: CaptureEvent, waiting: list[tuple[int, Frame]], due: float
    ) -> list[tuple[int, Frame]]:
        """Save pre-trigger frames while the next still is not due (never making it late)."""
        while waiting and self._mono() + self._write_estimate < due:
            began = self._mono()
            index, frame = waiting.pop(0)
            self._save(event, frame, index)
            took = self._mono() - began
            self._write_estimate = 0.8 * self._write_estimate + 0.2 * took
        return waiting

    def _save(self, event: CaptureEvent, frame: Frame, index: int) -> SavedImage | None:
        """EXIF, sidecar, both written power-cut safe, registered in the store; None if it failed."""
        rel = image_file(event.event_id, index, event.trigger_time)
        path = self.store.root / rel
        image_id = image_unique_id(self.unit_id, self.camera_id, event.event_id, index)
        try:
            jpeg = write_exif(
                frame.jpeg,
                time=frame.time,
                unit_id=self.unit_id,
                camera_id=self.camera_id,
                position=self.position,
                image_id=image_id,
                exposure=frame.exposure,
            )
        except ExifError as exc:  # keep the picture even if the camera's JPEG takes no EXIF
            self.log.warning("image %s saved without EXIF: %s", rel, exc)
            jpeg = frame.jpeg
        sidecar = Sidecar.describe(
            jpeg,
            frame,
            image=path.name,
            event_id=event.event_id,
            index=index,
            clock_source=event.clock,
            unit_id=self.unit_id,
            trigger=event.trigger,
            camera_id=self.camera_id,
            position=self.position,
            extra={
                "image_id": image_id,
                "night": event.night,
                "pre_trigger": frame.stream == "lores",
                **event.tags,
            },
        )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            image_path, json_path = write_capture(path.parent, jpeg, sidecar)
        except (OSError, SidecarError) as exc:
            self._save_failed(event, rel, path, exc)
            return None
        self._saved_at = self._mono()
        try:
            self.store.add(image_path, sidecars=[json_path])
        except StoreError as exc:
            self.log.error("image %s saved but not registered in the store: %s", rel, exc)
        self._images[image_id] = rel
        saved = SavedImage(
            image_id, rel, index, frame.stream, frame.time, frame.width, frame.height, len(jpeg)
        )
        event.saved(saved)
        if frame.stream == "lores":
            self.counters["pre_trigger_frames"] += 1
        return saved

    def _save_failed(self, event: CaptureEvent, rel: str, path: Path, exc: Exception) -> None:
        self.counters["images_lost"] += 1
        words = getattr(exc, "strerror", None) or str(exc)
        first = not event.lost
        event.failed(f"{type(exc).__name__}: {words}")
        self.log.log(
            logging.WARNING if first else logging.DEBUG,
            "event %s: image %s not saved (%s); capture goes on",
            event.event_id,
            rel,
            words,
        )
        if path.is_file():  # the image made it, its sidecar did not: keep it under the store's care
            with contextlib.suppress(StoreError, OSError):
                self.store.add(path)
        if getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
            self._forget(self.store.enforce())

    def _forget(self, deletions: list[Any]) -> None:
        gone = {d.path.relative_to(self.store.root).as_posix() for d in deletions}
        if gone:
            self._images = {k: v for k, v in self._images.items() if v not in gone}

    def _send_thumbnail(self, event: CaptureEvent, ranker: BestStill) -> None:
        if not isinstance(ranker.best_key, SavedImage) or ranker.best_jpeg is None:
            return
        best = ranker.best_key
        event.best = best
        try:
            small = thumbnail(ranker.best_jpeg, max_bytes=self.settings.thumbnail_bytes)
            with Image.open(io.BytesIO(small)) as img:
                size = img.size
        except (ThumbnailError, OSError) as exc:
            self.log.error("event %s: no thumbnail (%s)", event.event_id, exc)
            return
        data = thumbnail_body(event, best, small, size)
        received = self._clock()

        def payload(seq: int) -> bytes:
            return self.envelope.encode(
                self.camera_id,
                seq,
                THUMBNAIL_TYPE,
                data,
                time=best.time,
                received=received,
                clock=event.clock,
            )

        if self._enqueue(self.thumbnail_topic, payload):
            self.counters["thumbnails"] += 1

    def _publish(self, event: CaptureEvent, phase: str, latest: SavedImage | None = None) -> None:
        data = event.body(phase, latest)
        received = self._clock()

        def payload(seq: int) -> bytes:
            return self.envelope.encode(
                self.camera_id,
                seq,
                CAPTURE_TYPE,
                data,
                time=event.trigger_time,
                received=received,
                clock=event.clock,
            )

        self._enqueue(self.capture_topic, payload)

    def _enqueue(self, topic: str, payload: Callable[[int], bytes]) -> bool:
        try:
            self.outbox.enqueue(self.camera_id, topic, payload)
        except OutboxError as exc:
            self.log.error("message for %s not queued: %s", topic, exc)
            return False
        return True

    # --- the card --------------------------------------------------------------------------------

    def _tidy_card(self) -> None:
        """After a crash or power cut: temp files removed, whole images without sidecar kept."""
        root = self.store.root
        orphans = 0
        for folder in [root, *sorted(p for p in root.iterdir() if p.is_dir())]:
            try:
                orphans += len(recover_directory(folder).orphans)
            except OSError as exc:
                self.log.error("cannot tidy %s: %s", folder, exc)
        adopted = self.store.adopt_untracked()
        if orphans or adopted:
            self.log.warning(
                "image card after an unclean stop: %d image(s) without sidecar, %d image(s) taken back"
                " into the store as not relayed",
                orphans,
                adopted,
            )
        self._forget(self.store.enforce())

    # --- health ----------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """The agent's part of the unit's health report (also in the relay's periodic message); the
        camera's own status goes on its ``state/health`` topic (`edge.camera.health`)."""
        return unit_report(self, self._clock_state)
