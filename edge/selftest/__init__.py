"""`uncia selftest`: does every part of this unit answer, before it goes up the mountain?

One check per device or resource in the unit's config, each ending in one line a technician can
act on::

    PASS  gps gps0 (/dev/uncia-gps0): 14 NMEA sentences in 1.2 s, fix quality 1 with 9 satellites
    FAIL  lora lora0 (/dev/uncia-lora0, rylr): lora0 (/dev/uncia-lora0, RYLR498): no answer ...
          -> fix: check TX/RX are crossed, 3.3 V power and lora.baudrate
    WARN  clock: not synchronised ...
    selftest cam-07 (helan): 6 PASS, 1 WARN, 1 FAIL

Checks (in this order): each ``[[serial]]`` GPS sends checksummed NMEA; each ``[[lora]]`` modem
answers ``AT`` and keeps the configured radio settings; on a camera unit the PIR, IR lamp (and
light sensor) pins can be claimed and the camera takes a JPEG; free space where the outbox and the
images go; the clock's source; the broker accepts the unit's credentials.

Run it with the agent stopped (``systemctl stop uncia-gateway`` / ``uncia-camera``): the agent holds
the serial ports, the pins and the camera, and the self-test needs them too. A check never raises:
whatever goes wrong becomes its FAIL line.

Seams for tests and simulators: the pin factory, the camera and modem factories, the disk-usage
function, the clock and its source.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from edge.clock import system_clock_source, utc_now
from edge.config import UnitConfig
from edge.fix import ClockSource
from edge.storage import DiskUsage


class Status(StrEnum):
    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"


@dataclass(frozen=True)
class CheckResult:
    """One check's verdict: what was checked, what was seen, and what to do about it."""

    name: str
    status: Status
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.status.value:<5} {self.name}: {self.detail}"
        return text + (f"\n      -> fix: {self.fix}" if self.fix else "")


def passed(name: str, detail: str) -> CheckResult:
    return CheckResult(name, Status.PASS, detail)


def warned(name: str, detail: str, fix: str = "") -> CheckResult:
    return CheckResult(name, Status.WARN, detail, fix)


def failed(name: str, detail: str, fix: str = "") -> CheckResult:
    return CheckResult(name, Status.FAIL, detail, fix)


class SelfTest:
    """The checks for one unit's config; iterate `checks()` to run them one after the other.

    ``gps_wait_s``: how long to listen to each GPS (receivers talk once a second; a cold receiver
    needs minutes for a fix, which is only a WARN). ``broker_timeout_s``: for the connection and the
    broker's answer. Factories default to the agent's own: ``edge.lora.ingest.open_modem``, the
    config's camera backend, gpiozero's default pin factory.
    """

    def __init__(
        self,
        config: UnitConfig,
        *,
        pin_factory: Any = None,
        camera_factory: Callable[[Any], Any] | None = None,
        modem_factory: Callable[[Any], Any] | None = None,
        disk_usage: Callable[[Path], DiskUsage] = shutil.disk_usage,
        clock_source: Callable[[], ClockSource] = system_clock_source,
        now: Callable[[], datetime] = utc_now,
        gps_wait_s: float = 5.0,
        camera_wait_s: float = 20.0,
        broker_timeout_s: float = 10.0,
    ) -> None:
        self.config = config
        self.pin_factory = pin_factory
        self.camera_factory = camera_factory
        self.modem_factory = modem_factory
        self.disk_usage = disk_usage
        self.clock_source = clock_source
        self.now = now
        self.gps_wait_s = gps_wait_s
        self.camera_wait_s = camera_wait_s
        self.broker_timeout_s = broker_timeout_s

    def plan(self) -> list[tuple[str, Callable[[], CheckResult]]]:
        """(name, check) for every check this config calls for, in the order they run."""
        from edge.selftest import devices, system

        config = self.config
        out: list[tuple[str, Callable[[], CheckResult]]] = []
        for serial in config.serial:
            out.append((devices.gps_name(serial), lambda s=serial: devices.check_gps(s, self.gps_wait_s)))
        for lora in config.lora:
            out.append((devices.lora_name(lora), lambda s=lora: devices.check_lora(s, self.modem_factory)))
        if config.camera is not None:
            cam = config.camera
            out.append(("camera pins", lambda: devices.check_pins(cam, self.pin_factory)))
            out.append(
                (
                    f"camera {cam.id} ({cam.backend})",
                    lambda: devices.check_camera(cam, self.camera_factory, self.camera_wait_s),
                )
            )
        outbox_dir = Path(config.outbox.path).parent
        out.append(("disk outbox", lambda: system.check_outbox_disk(outbox_dir, self.disk_usage)))
        if config.camera is not None:
            cam = config.camera
            out.append(("disk images", lambda: system.check_image_disk(cam, self.disk_usage)))
        if config.station is not None:
            from edge.selftest import station

            st = config.station
            out.append(("station record", lambda: station.check_record_disk(st, self.disk_usage)))
            out.append(("reserve boundary", lambda: station.check_boundary(st)))
            out.append((f"staff page {st.web_host}:{st.web_port}", lambda: station.check_web_port(st)))
        out.append(("clock", lambda: system.check_clock(self.clock_source, self.now)))
        out.append(
            (
                system.broker_name(config.mqtt),
                lambda: system.check_broker(config.mqtt, config.unit, self.broker_timeout_s),
            )
        )
        return out

    def checks(self) -> Iterator[CheckResult]:
        """Run every check in turn, yielding each verdict as soon as it is known."""
        for name, check in self.plan():
            started = time.monotonic()
            try:
                yield check()
            except Exception as exc:  # a self-test must end in a line, never in a traceback
                yield failed(
                    name,
                    f"the check itself failed after {time.monotonic() - started:.1f} s ({exc!r})",
                    "a bug in the self-test: report this line with the unit's config",
                )


def summary(unit: str, site: str, results: list[CheckResult]) -> str:
    counts = {status: sum(r.status is status for r in results) for status in Status}
    text = f"selftest {unit} ({site}): " + ", ".join(f"{n} {s.value}" for s, n in counts.items())
    if counts[Status.FAIL]:
        return text + " -- fix the FAIL lines before the unit goes out"
    if counts[Status.WARN]:
        return text + " -- usable; read the WARN lines"
    return text + " -- all checks passed"


def exit_code(results: list[CheckResult]) -> int:
    """0 when nothing failed (warnings allowed), 1 when any check failed."""
    return 1 if any(r.status is Status.FAIL for r in results) else 0
