"""LoRa ingest: one worker per modem, from radio packets to collar fixes (station and camera units).

Each packet is accounted for exactly once: decoded into collar fixes (relayed with the radio's RSSI
and SNR, the receiving modem and the collar id), or relayed raw to the modem's ``event/raw`` topic
with the reason it could not be decoded (unknown format, corrupt, NMEA without a fix). Nothing heard
is dropped silently, and nothing corrupt is decoded into a wrong fix: the payload's CRC decides.

The modem is driven through `edge.lora.modem.LoraModem`; a modem that stops answering is reset and
reconfigured, and one that cannot be opened or configured is retried with backoff, each with one log
line saying why the modem is not receiving.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edge.config import LoraSettings
from edge.decoder import FixDecoder
from edge.fix import Fix
from edge.lora.airtime import DutyCycleAccount, time_on_air
from edge.lora.modem import LoraModem, ModemError, Packet
from edge.lora.payload import HELAN, PayloadError, Site, classify, decode

ModemFactory = Callable[[LoraSettings], LoraModem]


@dataclass(frozen=True)
class RadioFix:
    """A collar fix as heard by one modem: what goes into the collar's fix message."""

    collar: str  # entity name in topics, e.g. "collar-17"
    fix: Fix
    rssi: int
    snr: float
    modem: str
    battery_pct: int | None = None

    def extra(self) -> dict[str, Any]:
        out: dict[str, Any] = {"collar": self.collar, "rssi": self.rssi, "snr": self.snr, "modem": self.modem}
        if self.battery_pct is not None:
            out["battery"] = self.battery_pct
        return out


@dataclass(frozen=True)
class RawPacket:
    """A packet that did not decode into fixes, relayed as it was heard with the reason."""

    modem: str
    packet: Packet
    reason: str

    def data(self) -> dict[str, Any]:
        return {
            "payload_hex": self.packet.payload.hex(),
            "length": len(self.packet.payload),
            "reason": self.reason,
            "rssi": self.packet.rssi,
            "snr": self.packet.snr,
            "sender": self.packet.sender,
            "modem": self.modem,
        }


_reset_lines: dict[int, Any] = {}


def reset_line(pin: int) -> Any:
    """The GPIO reset line on `pin`, made once per process (a pin can be claimed only once)."""
    if pin not in _reset_lines:
        from edge.lora.reset_line import GpioResetLine

        _reset_lines[pin] = GpioResetLine(pin)
    return _reset_lines[pin]


def open_modem(settings: LoraSettings) -> LoraModem:
    """The driver for `settings.family` on `settings.port` (imported late: only what is used loads)."""
    reset = reset_line(settings.reset_pin) if settings.reset_pin >= 0 else None
    if settings.family == "rylr":
        from edge.lora.reyax import RylrModem

        return RylrModem(settings.port, baudrate=settings.baudrate, reset=reset, name=settings.name)
    from edge.lora.rak3172 import Rak3172Modem

    return Rak3172Modem(settings.port, baudrate=settings.baudrate, reset=reset, name=settings.name)


def collar_entity(collar_id: int) -> str:
    return f"collar-{collar_id}"


class PacketDecoder:
    """Pure: a received packet → collar fixes, or the reason it is raw. Counts every outcome."""

    def __init__(self, modem: str, site: Site = HELAN) -> None:
        self.modem = modem
        self.site = site
        self.counts: Counter[str] = Counter()

    def decode(self, packet: Packet) -> list[RadioFix] | RawPacket:
        kind = classify(packet.payload)
        if kind == "compact":
            try:
                collar_fixes = decode(packet.payload, site=self.site)
            except PayloadError as exc:
                self.counts[f"raw_{exc.reason}"] += 1
                return RawPacket(self.modem, packet, exc.reason)
            self.counts["compact_packets"] += 1
            self.counts["fixes"] += len(collar_fixes)
            return [
                RadioFix(
                    collar_entity(cf.collar_id),
                    cf.to_fix(),
                    packet.rssi,
                    packet.snr,
                    self.modem,
                    cf.battery_pct,
                )
                for cf in collar_fixes
            ]
        if kind == "nmea":
            # Older collars send a GGA as text. It carries no collar id: the radio address stands in.
            decoder = FixDecoder(date_hint=lambda: packet.received.date())
            fixes = decoder.feed(packet.payload) + decoder.flush()
            if not fixes:
                reason = "nmea_" + (next(iter(decoder.dropped), None) or "without_fix")
                self.counts[f"raw_{reason}"] += 1
                return RawPacket(self.modem, packet, reason)
            self.counts["nmea_packets"] += 1
            self.counts["fixes"] += len(fixes)
            collar = collar_entity(packet.sender or 0)
            return [RadioFix(collar, fix, packet.rssi, packet.snr, self.modem) for fix in fixes]
        self.counts["raw_unknown_format"] += 1
        return RawPacket(self.modem, packet, "unknown_format")


class LoraWorker:
    """Runs one modem in its own thread: configure, receive, decode, hand over; check health; recover."""

    def __init__(
        self,
        settings: LoraSettings,
        on_fix: Callable[[RadioFix], None],
        on_raw: Callable[[RawPacket], None],
        stop: threading.Event,
        *,
        modem_factory: ModemFactory = open_modem,
        log: logging.Logger | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        retry_min: float = 1.0,
        retry_max: float = 30.0,
    ) -> None:
        self.settings = settings
        self.radio = settings.radio()
        self.decoder = PacketDecoder(settings.name, settings.payload_site())
        self.duty = DutyCycleAccount(limit_fraction=settings.duty_cycle_percent / 100.0, clock=clock)
        self.airtime_heard = 0.0
        self._on_fix, self._on_raw = on_fix, on_raw
        self._stop = stop
        self._factory = modem_factory
        self._log = log or logging.getLogger(f"uncia.lora.{settings.name}")
        self._clock = clock
        self._rng = rng or random.Random()
        self._retry_min, self._retry_max = retry_min, retry_max
        self.modem: LoraModem | None = None
        self.state = "starting"
        self.last_error: str | None = None
        self.counts: Counter[str] = Counter()
        self.thread = threading.Thread(target=self._run, name=f"lora-{settings.name}", daemon=True)

    @property
    def label(self) -> str:
        return f"{self.settings.name} ({self.settings.port}, {self.settings.family})"

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            try:
                self._open_and_configure()
                attempt = 0
                self._receive_loop()
            except ModemError as exc:
                self._fail(exc)
            except OSError as exc:  # the port itself: unplugged, busy, permissions
                self._fail(ModemError(f"serial port problem: {exc}"))
            finally:
                self._close()
            if self._stop.is_set():
                break
            attempt += 1
            delay = min(self._retry_max, self._retry_min * 2 ** min(attempt - 1, 10))
            self._stop.wait(delay * self._rng.uniform(0.5, 1.0))

    def _open_and_configure(self) -> None:
        self.state = "configuring"
        self.modem = self._factory(self.settings)
        self.modem.probe()
        applied = self.modem.configure(self.radio)
        self.state = "receiving"
        if self.last_error is not None:
            self._log.info("%s: receiving again (%s)", self.label, _describe(applied))
        else:
            self._log.info("%s: receiving on %s", self.label, _describe(applied))
        self.last_error = None

    def _receive_loop(self) -> None:
        assert self.modem is not None
        next_check = self._clock() + self.settings.health_interval
        while not self._stop.is_set():
            wait = max(0.0, min(1.0, next_check - self._clock()))
            packet = self.modem.receive(wait)
            if packet is not None:
                self._handle(packet)
            if self._clock() >= next_check:
                self._check_health()
                next_check = self._clock() + self.settings.health_interval

    def _check_health(self) -> None:
        assert self.modem is not None
        try:
            self.modem.health_check()
        except ModemError as exc:
            self.counts["resets"] += 1
            self._log.warning("%s: stopped answering (%s); resetting and reconfiguring", self.label, exc)
            self.state = "resetting"
            self.modem.recover()  # a ModemError here leaves to the outer retry loop
            self.state = "receiving"
            self._log.info("%s: reset worked, receiving again", self.label)

    def _handle(self, packet: Packet) -> None:
        self.counts["packets"] += 1
        self.airtime_heard += time_on_air(len(packet.payload), self.radio)
        result = self.decoder.decode(packet)
        if isinstance(result, RawPacket):
            self._log.debug("%s: raw packet (%s) %s", self.label, result.reason, packet.payload[:24].hex())
            self._on_raw(result)
        else:
            for radio_fix in result:
                self._on_fix(radio_fix)

    def _fail(self, exc: ModemError) -> None:
        message = str(exc)
        self.state = "failed"
        if message != self.last_error:
            # Driver messages already name the port and model; ours (a serial error) need the label.
            who = self.settings.name if self.settings.port in message else self.label
            self._log.warning("%s: not receiving: %s", who, message)
        self.last_error = message
        self.counts["failures"] += 1

    def _close(self) -> None:
        if self.modem is not None:
            try:
                self.modem.close()
            except Exception:  # closing a dead port must not hide the original problem
                self._log.debug("%s: close failed", self.label, exc_info=True)
            self.modem = None

    def stats(self) -> dict[str, Any]:
        return {
            "port": self.settings.port,
            "family": self.settings.family,
            "state": self.state,
            "last_error": self.last_error,
            "packets": self.counts["packets"],
            "resets": self.counts["resets"],
            "outcomes": dict(self.decoder.counts),
            "airtime_heard_s": round(self.airtime_heard, 3),
            "duty_cycle_fraction": round(self.duty.fraction(), 5),
        }


def _describe(applied: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in applied.items()) if applied else "configured"
