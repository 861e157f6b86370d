"""A GPS on a camera unit: where the unit is, and whether its clock can be trusted.

A camera unit with a GPS receiver on a serial port (`[[serial]]` in its config) reads it like the
gateway does (`edge.fix_source.SourceWorker`): each fix is relayed through the outbox on the unit's
own fix topic, the unit's position for EXIF and sidecars follows the fixes, and the records' clock
source says ``gps`` while fresh fixes agree with the system clock — so exports can tell GPS-timed
captures from ones stamped by an unsynchronised clock.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from edge.camera.addons import CameraAddon
from edge.camera.exif import Position
from edge.decoder import FixDecoder
from edge.fix import ClockSource, Fix
from edge.fix_source import SourceWorker, publish_fix

if TYPE_CHECKING:
    from edge.camera.agent import CameraUnit

FRESH_S = 10.0  # a fix older than this says nothing about the clock now
AGREE_S = 1.0  # the system clock within this of GPS time counts as GPS-timed


class UnitGps(CameraAddon):
    """Reads the unit's GPS receivers; `clock_source()` answers ``gps`` while fresh fixes agree."""

    name = "gps"

    def __init__(
        self,
        unit: CameraUnit,
        *,
        monotonic: Callable[[], float],
        fallback: Callable[[], ClockSource],
        log: logging.Logger,
    ) -> None:
        self.unit = unit
        self._mono = monotonic
        self._fallback = fallback
        self._log = log
        self._stop = threading.Event()
        self.last_fix: Fix | None = None
        self._last_fix_mono = 0.0
        self.fixes = 0
        gate = unit.config.fixes
        self.workers = [
            SourceWorker(
                settings,
                FixDecoder(min_quality=gate.min_quality, max_hdop=gate.max_hdop),
                self._on_fix,
                self._stop,
                log.getChild(settings.name),
            )
            for settings in unit.config.serial
        ]

    def _on_fix(self, source: str, fix: Fix) -> None:
        unit = self.unit
        received = unit._clock()
        publish_fix(
            unit.outbox, unit.topics, unit.envelope, source, fix, received=received, clock=self.clock_source()
        )
        if self.last_fix is None:
            self._log.info("GPS fix: the unit is at %.6f, %.6f; EXIF and sidecars use it", fix.lat, fix.lon)
        self.last_fix, self._last_fix_mono = fix, self._mono()
        self.fixes += 1
        # A new immutable Position: readers on the capture thread see the old or the new one, whole.
        unit.position = Position(fix.lat, fix.lon, fix.alt if fix.alt is not None else unit.settings.alt)

    def clock_source(self) -> ClockSource:
        fix = self.last_fix
        if fix is not None and self._mono() - self._last_fix_mono <= FRESH_S:
            offset = abs((self.unit._clock() - fix.time).total_seconds())
            if offset <= AGREE_S + (self._mono() - self._last_fix_mono):
                return ClockSource.GPS
        return self._fallback()

    def start(self) -> None:
        for worker in self.workers:
            worker.thread.start()

    def stop(self) -> None:
        self._stop.set()
        for worker in self.workers:
            worker.source.close()
            worker.thread.join(5)

    def report(self) -> dict[str, Any] | None:
        return {
            "fixes": self.fixes,
            "clock": str(self.clock_source()),
            "sources": {w.settings.name: w.stats() for w in self.workers},
        }
