"""What every LoRa modem driver offers, whatever its AT dialect.

A collar's fixes reach the station through a LoRa modem on a serial port (USB or the Pi's UART).
Drivers (`edge.lora.reyax.RylrModem`, `edge.lora.rak3172.Rak3172Modem`) implement `LoraModem` over
pyserial; the gateway only ever talks to this interface. Every failure is a `ModemError` whose message
alone tells a technician why the modem is not receiving.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# Regional plans a modem may be configured for: name -> (lowest, highest) centre frequency in Hz.
# CN470 (China, 470-510 MHz) is the reserve's default.
BANDS: dict[str, tuple[int, int]] = {
    "CN470": (470_000_000, 510_000_000),
    "EU868": (863_000_000, 870_000_000),
    "US915": (902_000_000, 928_000_000),
    "AS923": (915_000_000, 928_000_000),
    "IN865": (865_000_000, 867_000_000),
}


class RadioSettingError(ValueError):
    """One radio setting is impossible; `field` names it, the message says what is expected."""

    def __init__(self, field: str, expected: str) -> None:
        self.field, self.expected = field, expected
        super().__init__(f"{field}: expected {expected}")


@dataclass(frozen=True)
class RadioSettings:
    """The LoRa link both ends must agree on. Defaults: CN470 at 470.3 MHz, SF9, 125 kHz, 4/5."""

    band: str = "CN470"
    frequency_hz: int = 470_300_000
    spreading_factor: int = 9  # 7..12; REYAX RYLR498/998 take at most 9 at 125 kHz
    bandwidth_khz: int = 125  # 125, 250, 500
    coding_rate: int = 1  # 1..4 meaning 4/5..4/8
    preamble: int = 8  # symbols; Reyax fixes 4..24 via AT+PARAMETER (RYLR998), RAK 2..65535
    tx_power_dbm: int = 17
    network_id: int = 18  # Reyax AT+NETWORKID; ignored by families without one
    address: int = 1  # this modem's own address (Reyax AT+ADDRESS)

    def __post_init__(self) -> None:
        if self.band not in BANDS:
            raise RadioSettingError("band", f"one of {', '.join(BANDS)}")
        low, high = BANDS[self.band]
        if not low <= self.frequency_hz <= high:
            raise RadioSettingError(
                "frequency_hz",
                f"a frequency in {self.band}, {low // 1_000_000}-{high // 1_000_000} MHz (in Hz)",
            )
        if not 7 <= self.spreading_factor <= 12:
            raise RadioSettingError("spreading_factor", "7 to 12")
        if self.bandwidth_khz not in (125, 250, 500):
            raise RadioSettingError("bandwidth_khz", "125, 250 or 500")
        if not 1 <= self.coding_rate <= 4:
            raise RadioSettingError("coding_rate", "1 (4/5) to 4 (4/8)")
        if not 2 <= self.preamble <= 65535:
            raise RadioSettingError("preamble", "2 to 65535 symbols")


@dataclass(frozen=True)
class Packet:
    """One packet as the modem heard it: payload bytes, signal strength (dBm) and SNR (dB)."""

    payload: bytes
    rssi: int
    snr: float
    received: datetime
    sender: int | None = None  # the sending address, for families that report one (Reyax)
    extra: dict[str, Any] = field(default_factory=dict)


class ModemError(Exception):
    """The modem refused, failed or stopped answering. `code` is the datasheet's error code if any."""

    def __init__(self, message: str, *, code: str | int | None = None, command: str | None = None) -> None:
        self.code, self.command = code, command
        super().__init__(message)


class ModemTimeout(ModemError):
    """No answer within the datasheet's response time: wiring, baud rate, power, or a hung modem."""


class ModemMismatch(ModemError):
    """A setting read back from the modem differs from the configured one; the modem is not used."""


class LoraModem(abc.ABC):
    """A LoRa modem on a serial port, in point-to-point mode.

    Lifecycle: `probe` (AT → OK), `configure` (write every setting, then read every one back and raise
    `ModemMismatch` on any difference), `receive` packets, `health_check` on a timer, and `recover`
    (hardware reset if wired, else soft reset, then reconfigure) when it stops answering.
    """

    family: str = "?"

    @abc.abstractmethod
    def probe(self) -> None:
        """Raise `ModemTimeout`/`ModemError` unless the modem answers `AT` with `OK`."""

    @abc.abstractmethod
    def configure(self, settings: RadioSettings) -> dict[str, Any]:
        """Write `settings`, read them back, raise `ModemMismatch` on a difference; return the read-back."""

    @abc.abstractmethod
    def read_settings(self) -> dict[str, Any]:
        """The modem's current settings, as read back from it."""

    @abc.abstractmethod
    def receive(self, timeout: float) -> Packet | None:
        """The next received packet, or None if none arrived within `timeout` seconds."""

    @abc.abstractmethod
    def send(self, payload: bytes, *, to: int = 0) -> None:
        """Transmit one packet (for camera units that relay over LoRa, and for tests)."""

    @abc.abstractmethod
    def health_check(self) -> None:
        """A cheap check that the modem still answers; raises `ModemError` if not."""

    @abc.abstractmethod
    def recover(self) -> None:
        """Reset the modem (hardware line if wired, else soft reset) and reconfigure it."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the serial port."""


ResetLine = Callable[[], None]
"""Pulses the modem's reset pin (on a Pi: a gpiozero DigitalOutputDevice on NRST; in tests: the emulator)."""
