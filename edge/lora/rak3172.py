"""RAKwireless RAK3172 (RUI3 firmware) in LoRa point-to-point mode, driven by AT commands.

What the driver follows, from RAKwireless's "RUI3 AT Command Manual" (RUI 4.x, P2P section) and the
RUI3 firmware source it documents (RAK-STM32-RUI: ``atcmd_p2p.c``, ``service_lora_p2p.c``):
- 115200 baud default; every command answers its value line(s) and a status line (``OK``,
  ``AT_PARAM_ERROR``, ``AT_BUSY_ERROR``, ``AT_MODE_NO_SUPPORT``, ...); reads are ``AT+XXX=?`` and
  answer ``AT+XXX=<value>``.
- ``AT+NWM=0`` selects LoRa P2P; setting it prints ``OK`` and the module restarts at once, printing its
  banner ending ``Current Work Mode: LoRa P2P.``. P2P commands in LoRaWAN mode answer
  ``AT_MODE_NO_SUPPORT``.
- ``AT+P2P=<freq>:<SF>:<BW>:<CR>:<preamble>:<TX power>``; SF 5-12; CR as a code 0-3 = 4/5-4/8 (our
  `RadioSettings.coding_rate` 1-4 minus one); preamble 5-65535; TX power 5-22 dBm; frequency
  150-960 MHz, and on the RAK3172 only 150-600 MHz on the low-band variant, 600-960 MHz on the high.
- ``AT+PRECV=65534``: receive continuously; while it runs, ``AT+PRECV`` with another value, ``AT+P2P``
  and ``AT+PSEND`` answer ``AT_BUSY_ERROR``, so ``AT+PRECV=0`` comes first. ``AT+PSEND=<hex>``
  answers ``OK`` at once and ``+EVT:TXP2P DONE`` when the packet has left.
- received packets: ``+EVT:RXP2P:<rssi>:<snr>:<payload hex>``.

Where the sources disagree we chose:
- bandwidth in ``AT+P2P``: the manual shows both kHz (``868000000:7:125:0:8:14``) and codes
  (``...:7:0:0:20:14``); firmware 4.x takes either (125/250/500 or 0-9) and reads back the code. We
  write kHz and accept either on read-back.
- preamble: the manual's AT+P2P note says 2-65535, AT+PPL and the firmware say 5-65535: we need 5.
- payload: "2...500 hex digits" vs "1...256 bytes": we send at most 250 bytes.
- Only RUI3 firmware is supported; the pre-RUI3 firmware (v1.0.x, other command set) is not.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from edge.lora.at import AtChannel, AtModem, AtReply, Dialect
from edge.lora.errors import rak_meaning
from edge.lora.modem import (
    ModemError,
    ModemMismatch,
    ModemTimeout,
    Packet,
    RadioSettings,
    ResetLine,
)

RUI3 = Dialect(
    name="RUI3",
    ok=re.compile(rb"OK"),
    error=re.compile(rb"(AT_[A-Z_]+)"),
    event=re.compile(rb"\+EVT:.*", re.DOTALL),
    boot=re.compile(rb"Current Work Mode: .*"),
    info=re.compile(rb"RAKwireless.*|-{8,}|Version: .*|LoRa \(R\) .*"),
    value=re.compile(rb"AT\+[A-Z0-9]+[=:].*|[0-9A-Fa-f:.\-]+"),
    meaning=rak_meaning,
)

BW_KHZ_OF_CODE: dict[int, float] = {
    0: 125,
    1: 250,
    2: 500,
    3: 7.8,
    4: 10.4,
    5: 15.63,
    6: 20.83,
    7: 31.25,
    8: 41.67,
    9: 62.5,
}
_RXP2P = re.compile(rb"\+EVT:RXP2P:(-?\d{1,4}):(-?\d{1,3}):([0-9A-Fa-f]*)")
MAX_PAYLOAD = 250


def parse_rxp2p(line: bytes) -> tuple[int, int, bytes]:
    """``+EVT:RXP2P:<rssi>:<snr>:<hex>`` → (rssi, snr, payload)."""
    match = _RXP2P.fullmatch(line)
    if match is None or len(match.group(3)) % 2:
        raise ValueError("not a +EVT:RXP2P packet line")
    return int(match.group(1)), int(match.group(2)), bytes.fromhex(match.group(3).decode("ascii"))


def parse_p2p(text: str) -> dict[str, Any]:
    """The value of ``AT+P2P=?`` (``470300000:10:0:0:8:17``) → settings; BW as code or kHz."""
    parts = text.replace(",", ":").split(":")
    try:
        frequency, sf, bw, cr, preamble, power = (int(part) for part in parts)
    except ValueError:
        raise ValueError(f"unreadable AT+P2P value {text!r}") from None
    return {
        "frequency_hz": frequency,
        "spreading_factor": sf,
        "bandwidth_khz": bw if bw in (125, 250, 500) else BW_KHZ_OF_CODE.get(bw, f"code {bw}"),
        "coding_rate": cr + 1,
        "preamble": preamble,
        "tx_power_dbm": power,
    }


def check_settings(settings: RadioSettings) -> list[str]:
    """What RUI3 P2P cannot do of `settings` (empty: all fine)."""
    problems = []
    if not 150_000_000 <= settings.frequency_hz <= 960_000_000:
        problems.append(f"frequency {settings.frequency_hz} Hz: 150-960 MHz")
    if not 5 <= settings.spreading_factor <= 12:
        problems.append(f"SF{settings.spreading_factor}: 5-12")
    if not 5 <= settings.preamble <= 65535:
        problems.append(f"preamble {settings.preamble}: RUI3 takes 5-65535 symbols")
    if not 5 <= settings.tx_power_dbm <= 22:
        problems.append(f"TX power {settings.tx_power_dbm} dBm: 5-22")
    return problems


def _value(reply: AtReply, command: str) -> str:
    for line in reply.lines:
        text = line.decode("ascii", "replace")
        if text.startswith("AT+") and "=" in text:
            return text.split("=", 1)[1].strip()
        if not text.startswith("AT+"):
            return text.strip()
    raise ModemError(f"answer to {command} holds no value: {reply.lines!r}", command=command)


class Rak3172Modem(AtModem):
    """A RAK3172 (RUI3 firmware) on a serial port, receiving collar packets in LoRa P2P mode.

    Wiring: module UART2 (pin 1 RX2, pin 2 TX2) to the Pi's TXD/RXD, 3.3 V only; its NRST pin on a
    GPIO given as `reset` lets `recover` restart a hung module (else ``ATZ`` is tried). A module fresh
    from the factory is in LoRaWAN mode: `configure` switches it to P2P once (it restarts; logged).
    The RAK3172 comes in a low-band (150-600 MHz, for CN470) and a high-band (600-960 MHz) variant;
    the wrong one answers ``AT_PARAM_ERROR`` to the frequency, and the message says so.

    Every failure is a `ModemError` naming the modem, its port, the RUI3 status, its meaning and a
    hint. Counters: ``malformed`` (packet lines that did not parse), ``receive_errors``.
    """

    family = "rak3172"

    def __init__(
        self,
        port: str,
        *,
        baudrate: int = 115200,
        reset: ResetLine | None = None,
        log: logging.Logger | None = None,
        name: str | None = None,
        timeout: float = 1.0,
        send_timeout: float = 15.0,
        boot_timeout: float = 5.0,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._reset = reset
        self.timeout, self.send_timeout, self.boot_timeout = timeout, send_timeout, boot_timeout
        self.firmware: str | None = None
        self.settings: RadioSettings | None = None
        self.receiving = False
        self.malformed = 0
        self.receive_errors: Counter[str] = Counter()
        self.channel = AtChannel(
            port,
            baudrate=baudrate,
            dialect=RUI3,
            name=name,
            model="RAK3172",
            timeout=timeout,
            log=log or logging.getLogger("uncia.lora.rak3172"),
            now=now,
        )
        self.log = self.channel.log
        self._boots_seen = 0

    def probe(self) -> None:
        self.channel.command("AT")
        if self.firmware is not None:
            return
        try:
            self.firmware = _value(self.channel.command("AT+VER=?"), "AT+VER=?")
        except ModemTimeout:
            raise
        except ModemError:
            self.firmware = "?"
        self.log.info("%s: answering, firmware %s", self.label, self.firmware)

    def configure(self, settings: RadioSettings) -> dict[str, Any]:
        if self.firmware is None:
            self.probe()
        problems = check_settings(settings)
        if problems:
            message = f"{self.label}: cannot use these radio settings: {'; '.join(problems)}"
            self.log.warning("%s", message)
            raise ModemError(message)
        self._p2p_mode()
        self._stop_receiving()
        command = (
            f"AT+P2P={settings.frequency_hz}:{settings.spreading_factor}:{settings.bandwidth_khz}:"
            f"{settings.coding_rate - 1}:{settings.preamble}:{settings.tx_power_dbm}"
        )
        self.channel.command(command)
        read = self._read()
        wanted = {
            "work_mode": 0,
            "frequency_hz": settings.frequency_hz,
            "spreading_factor": settings.spreading_factor,
            "bandwidth_khz": settings.bandwidth_khz,
            "coding_rate": settings.coding_rate,
            "preamble": settings.preamble,
            "tx_power_dbm": settings.tx_power_dbm,
        }
        for key, want in wanted.items():
            if read.get(key) != want:
                message = (
                    f"{self.label}: {key} reads back {read.get(key)!r} after {command} set it to {want!r}"
                    " — the module did not take the setting; not receiving on a mismatched radio"
                )
                self.log.warning("%s", message)
                raise ModemMismatch(message, command=command)
        self._start_receiving()
        self.settings = settings
        self._boots_seen = self.channel.boots
        self.log.info(
            "%s: configured P2P %.1f MHz SF%d %d kHz CR4/%d, preamble %d, %d dBm; receiving",
            self.label,
            settings.frequency_hz / 1e6,
            settings.spreading_factor,
            settings.bandwidth_khz,
            settings.coding_rate + 4,
            settings.preamble,
            settings.tx_power_dbm,
        )
        return read

    def _p2p_mode(self) -> None:
        mode = _value(self.channel.command("AT+NWM=?"), "AT+NWM=?")
        if mode == "0":
            return
        boots = self.channel.boots
        # The module restarts right after its OK; the banner's last line ends the wait.
        self.channel.command("AT+NWM=0", timeout=self.boot_timeout, ends_on_boot=True)
        if not self.channel.wait_boot(boots, self.boot_timeout):
            raise ModemTimeout(
                f"{self.label}: no restart banner within {self.boot_timeout:.1f} s after AT+NWM=0",
                command="AT+NWM=0",
            )
        self.receiving = False
        self.log.info(
            "%s: switched from work mode %s (%s) to LoRa P2P; the module restarted",
            self.label,
            mode,
            {"1": "LoRaWAN", "2": "FSK"}.get(mode, "?"),
        )

    def _soft_reset(self) -> str:
        self.channel.send_only("ATZ")
        return "ATZ"

    def _stop_receiving(self) -> None:
        self.channel.command("AT+PRECV=0")
        self.receiving = False

    def _start_receiving(self) -> None:
        self.channel.command("AT+PRECV=65534")
        self.receiving = True

    def _read(self) -> dict[str, Any]:
        mode = _value(self.channel.command("AT+NWM=?"), "AT+NWM=?")
        text = _value(self.channel.command("AT+P2P=?"), "AT+P2P=?")
        try:
            read = parse_p2p(text)
        except ValueError as exc:
            raise ModemError(f"{self.label}: {exc}", command="AT+P2P=?") from exc
        return {"work_mode": int(mode) if mode.isdigit() else mode, **read}

    def read_settings(self) -> dict[str, Any]:
        # While receiving continuously the module refuses AT+P2P=? (AT_BUSY_ERROR).
        was_receiving = self.receiving
        if was_receiving:
            self._stop_receiving()
        try:
            return self._read()
        finally:
            if was_receiving:
                self._start_receiving()

    def receive(self, timeout: float) -> Packet | None:
        deadline = time.monotonic() + timeout
        while True:
            event = self.channel.next_event(
                max(0.0, deadline - time.monotonic()), match=lambda line: line.startswith(b"+EVT:RX")
            )
            if event is None:
                return None
            try:
                rssi, snr, payload = parse_rxp2p(event.line)
            except ValueError:
                text = event.line.decode("ascii", "replace")
                if "RECEIVE" in text:  # RECEIVE ERROR / RECEIVE TIMEOUT
                    self.receive_errors[text] += 1
                    self.log.warning("%s: %s", self.label, text)
                else:
                    self.malformed += 1
                    self.log.warning("%s: damaged packet line dropped: %r", self.label, event.line[:80])
                continue
            return Packet(payload, rssi, float(snr), event.received)

    def send(self, payload: bytes, *, to: int = 0) -> None:
        """Transmit `payload` (P2P has no addresses: `to` is ignored). Receiving pauses meanwhile."""
        if not 1 <= len(payload) <= MAX_PAYLOAD:
            raise ModemError(f"{self.label}: a packet holds 1-{MAX_PAYLOAD} bytes, not {len(payload)}")
        resume = self.receiving
        self.channel.discard_events(lambda line: line.startswith(b"+EVT:TXP2P"))
        if resume:
            self._stop_receiving()
        try:
            self.channel.command(f"AT+PSEND={payload.hex().upper()}")
            done = self.channel.next_event(
                self.send_timeout, match=lambda line: line.startswith(b"+EVT:TXP2P")
            )
            if done is None:
                raise ModemTimeout(
                    f"{self.label}: no +EVT:TXP2P DONE within {self.send_timeout:.1f} s after AT+PSEND — "
                    "transmission stuck (antenna, supply voltage)?",
                    command="AT+PSEND",
                )
        finally:
            if resume:
                self._start_receiving()

    RESTART_SIGN = "banner"
    RESTART_LOSS = "it is no longer receiving until reconfigured"

    def _restarted(self) -> None:
        self.receiving = False

    def recover(self) -> None:
        boots = self.channel.boots
        how = self._reset_by_line_or(self._soft_reset)
        cause = (
            "reset line not wired to NRST, or module without power?"
            if self._reset
            else "module hung: power-cycle it (or wire NRST to a GPIO)"
        )
        self._finish_recovery(boots, how, "restart banner", cause)
