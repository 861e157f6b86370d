"""Add-ons of a camera unit: features that ride on the capture path without living in the agent.

The agent (`edge.camera.agent.CameraUnit`) runs the trigger → burst → save path. Everything else a
unit may do around a capture is an add-on with its own module, seeing the unit's life through a few
hooks:

- `edge.camera.pairing.PairedCamera` (``pair_with``): the other flank's camera captures too;
- `edge.camera.proximity.CollarListener` (a ``[[lora]]`` table): a collar heard nearby arms capture
  and tags the pictures with its id;
- `edge.camera.health.CameraHealth` (always): counters, blank triggers, disk, temperature, battery,
  a daily self-check picture, and "degraded" when the camera sees no light change for days.

For the technician: an add-on that fails is logged (with its traceback, once per hook) and counted
in the unit's health as ``addon_errors``; it never stops a capture or the unit.

Hooks run on the agent's threads, so each must be short: ``on_lores`` on the camera thread for every
low-resolution frame (10 a second), ``event_started``/``event_ended``/``motion``/``policy`` on the
capture thread (``event_started`` comes before the first still: it delays it).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from edge.camera.backend import Frame
from edge.camera.capture import BurstPolicy
from edge.camera.events import CaptureEvent
from edge.clock import Clock
from edge.config import UnitConfig
from edge.fix import ClockSource

if TYPE_CHECKING:
    from edge.camera.agent import CameraUnit
    from edge.camera.health import HealthSensors


class CameraAddon:
    """One add-on of a camera unit. Every hook does nothing unless overridden."""

    name = "addon"

    def start(self) -> None:
        """The unit started (relay, camera and capture running)."""

    def stop(self) -> None:
        """The unit is stopping: end threads, release ports. Called before the relay stops."""

    def on_lores(self, frame: Frame) -> None:
        """A low-resolution frame (camera thread, every frame: keep it to a few microseconds)."""

    def event_started(self, event: CaptureEvent) -> None:
        """An event was accepted; its first still comes right after this returns."""

    def event_ended(self, event: CaptureEvent, background: bytes | None, best: bytes | None) -> None:
        """The event ended. `background` is its oldest pre-trigger frame, `best` its best still (JPEGs,
        either may be None)."""

    def motion(self) -> bool:
        """True to keep a running burst going as if the PIR still saw motion."""
        return False

    def policy(self, policy: BurstPolicy) -> BurstPolicy:
        """The burst policy to use now, given the one so far (the configured one, or another add-on's)."""
        return policy

    def report(self) -> dict[str, Any] | None:
        """This add-on's part of the unit's health report (None: nothing to say)."""
        return None


class Addons:
    """The add-ons of one unit, called together; a failing hook is logged and counted, never raised."""

    def __init__(self, addons: Iterable[CameraAddon], log: logging.Logger) -> None:
        self.addons = list(addons)
        self.log = log
        self.errors: Counter[str] = Counter()

    def __iter__(self) -> Any:
        return iter(self.addons)

    def get(self, kind: type[Any]) -> Any:
        """The add-on of class `kind`, or None."""
        return next((a for a in self.addons if isinstance(a, kind)), None)

    def _failed(self, addon: CameraAddon, hook: str) -> None:
        key = f"{addon.name}.{hook}"
        self.errors[key] += 1
        if self.errors[key] == 1:
            self.log.exception("%s failed in %s (ignored; the unit keeps capturing)", addon.name, hook)
        else:
            self.log.debug("%s failed in %s again", addon.name, hook, exc_info=True)

    def each(self, hook: str, *args: Any) -> None:
        """Call hook `hook` of every add-on with `args`."""
        for addon in self.addons:
            try:
                getattr(addon, hook)(*args)
            except Exception:
                self._failed(addon, hook)

    def motion(self) -> bool:
        for addon in self.addons:
            try:
                if addon.motion():
                    return True
            except Exception:
                self._failed(addon, "motion")
        return False

    def policy(self, base: BurstPolicy) -> BurstPolicy:
        policy = base
        for addon in self.addons:
            try:
                policy = addon.policy(policy)
            except Exception:
                self._failed(addon, "policy")
        return policy

    def reports(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for addon in self.addons:
            try:
                report = addon.report()
            except Exception:
                self._failed(addon, "report")
                continue
            if report is not None:
                out[addon.name] = report
        if self.errors:
            out["addon_errors"] = dict(self.errors)
        return out


def longest_burst(config: UnitConfig) -> int:
    """The most stills a burst of this unit can take (the IR lamp's watchdog must allow them all)."""
    assert config.camera is not None
    if not config.lora:
        return config.camera.max_burst
    from edge.camera.proximity import armed_policy

    return armed_policy(BurstPolicy(max_stills=config.camera.max_burst)).max_stills


def build_addons(
    unit: CameraUnit,
    *,
    clock: Clock,
    monotonic: Callable[[], float],
    clock_source: Callable[[], ClockSource],
    health_sensors: HealthSensors | None = None,
) -> Addons:
    """The add-ons `unit`'s config asks for: health always, pairing with ``pair_with``, collar proximity
    with a ``[[lora]]`` table. Not started."""
    from edge.camera.health import CameraHealth
    from edge.camera.pairing import PairedCamera
    from edge.camera.proximity import CollarListener

    s, log = unit.settings, unit.log
    addons: list[CameraAddon] = []
    if unit.config.serial:  # a GPS on the unit: position and clock source follow its fixes
        from edge.camera.gps import UnitGps

        gps = UnitGps(unit, monotonic=monotonic, fallback=clock_source, log=log.getChild("gps"))
        addons.append(gps)
        clock_source = gps.clock_source
    addons.append(
        CameraHealth(
            unit,
            clock=clock,
            monotonic=monotonic,
            clock_source=clock_source,
            sensors=health_sensors,
            log=log.getChild("health"),
        )
    )
    if s.pair_with:
        addons.append(
            PairedCamera(
                unit,
                s.pair_with,
                clock=clock,
                monotonic=monotonic,
                clock_source=clock_source,
                log=log.getChild("pairing"),
            )
        )
    if unit.config.lora:
        addons.append(
            CollarListener(unit, unit.config.lora, monotonic=monotonic, log=log.getChild("proximity"))
        )
    return Addons(addons, log)
