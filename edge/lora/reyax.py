"""REYAX RYLR998 / RYLR498 (and older RYLR896 / RYLR406) LoRa modems, driven by AT commands.

What the driver follows, from the REYAX "LoRa AT Command Guide" documents:
- RYLR998/RYLR498, document 56312E33 (2023 and 2025 issues): 115200 baud default; every command
  ends in CR/LF and must wait for ``+OK`` before the next; ``AT+BAND=<Hz>``;
  ``AT+PARAMETER=<SF>,<BW code>,<CR>,<preamble>`` with BW 7=125, 8=250, 9=500 kHz, CR 1..4 =
  4/5..4/8, SF "5~11" but only SF7-9 at 125 kHz, SF7-10 at 250 kHz, SF7-11 at 500 kHz, preamble
  4-24 only when NETWORKID is 18 (else exactly 12); NETWORKID 3-15 or 18; ``AT+CPIN`` an 8-hex-digit
  password, forgotten at reset; ``AT+CRFOP`` 0-22 dBm; ``AT+RESET`` answers ``+RESET`` then
  ``+READY``; received packets ``+RCV=<addr>,<len>,<data>,<rssi>,<snr>``; error codes in
  `edge.lora.errors`.
- RYLR896/RYLR406, document 56322E3x (2018, 2022): SF 7-12, BW codes 0-9 (7=125 kHz), preamble
  4-7, NETWORKID 0-16, a 32-hex-digit AES password, CRFOP 0-15. ``AT+VER?`` answers e.g.
  ``+VER=RYLR89C_V1.2.7`` there and ``+VER=RYLR998_V1.2.1`` (or ``RYLRxx8``) on the newer parts.

Where the guides are silent we chose, and the emulator (`simulators.lora_reyax`) does the same:
- ``<data>`` in +RCV may hold commas, CR/LF and any byte: it is cut by ``<len>``, never split.
  The guides say "ASCII format"; the driver sends and receives raw bytes by length.
- Models are told apart by their ``+VER`` (or the ``model`` given); the 868/915 MHz parts (RYLR998,
  RYLR896) are refused frequencies below 600 MHz and the 433/470 MHz parts (RYLR498, RYLR406) above,
  the split RAKwireless documents for its own two variants.
- ``+ERR=12/19`` (a broken packet heard) may come without a command: counted and logged.
- A value out of range is answered ``+ERR=4`` by the emulator (seen from real RYLR896 firmware for
  commands it does not accept); the driver checks the guides' ranges first and names the setting.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from edge.lora.at import AtChannel, AtModem, AtReply, Dialect
from edge.lora.errors import REYAX_RADIO_ERRORS, reyax_meaning
from edge.lora.modem import (
    ModemError,
    ModemMismatch,
    ModemTimeout,
    Packet,
    RadioSettings,
    ResetLine,
)

_RCV_HEAD = re.compile(rb"\+RCV=(\d{1,5}),(\d{1,3}),")
_RCV_TAIL = re.compile(rb",(-?\d{1,4}),(-?\d{1,3})")
_RCV_TAIL_PARTIAL = re.compile(rb",?-?\d{0,4},?-?\d{0,3}\r?")

REYAX = Dialect(
    name="REYAX",
    ok=re.compile(rb"\+OK"),
    error=re.compile(rb"\+ERR=(\d{1,3})"),
    event=re.compile(rb"\+RCV=.*", re.DOTALL),
    boot=re.compile(rb"\+READY"),
    info=re.compile(rb"\+FACTORY"),
    value=re.compile(rb"\+[A-Z]+=.*|\+RESET", re.DOTALL),
    meaning=lambda code: reyax_meaning(int(code) if code.isdigit() else -1),
    radio_error=lambda code: code.isdigit() and int(code) in REYAX_RADIO_ERRORS,
    frame_start=b"+RCV=",
    measure=lambda buffer: measure_rcv(buffer),
)

# AT+PARAMETER bandwidth codes, kHz (RYLR896 knows 0-9, RYLR998 only 7-9).
BW_CODES: dict[int, float] = {
    0: 7.8,
    1: 10.4,
    2: 15.6,
    3: 20.8,
    4: 31.25,
    5: 41.7,
    6: 62.5,
    7: 125,
    8: 250,
    9: 500,
}
BW_CODE_OF = {125: 7, 250: 8, 500: 9}


def measure_rcv(buffer: bytes) -> int | None:
    """Length of the +RCV frame at the start of `buffer` (incl. CR/LF); None: need more; -1: invalid."""
    head = _RCV_HEAD.match(buffer)
    if head is None:
        return None if re.fullmatch(rb"\+RCV=[0-9,]{0,9}", buffer) else -1
    end = head.end() + int(head.group(2))
    if len(buffer) <= end:
        return None
    tail = _RCV_TAIL.match(buffer, end)
    if tail is not None and buffer[tail.end() : tail.end() + 2] == b"\r\n":
        return tail.end() + 2
    if tail is not None and buffer[tail.end() : tail.end() + 1] == b"\n":
        return tail.end() + 1
    return None if _RCV_TAIL_PARTIAL.fullmatch(buffer, end) else -1


def parse_rcv(line: bytes) -> tuple[int, bytes, int, int]:
    """``+RCV=<addr>,<len>,<data>,<rssi>,<snr>`` → (sender, data, rssi, snr); data cut by length."""
    head = _RCV_HEAD.match(line)
    if head is None:
        raise ValueError("not a +RCV line")
    length = int(head.group(2))
    start = head.end()
    data = line[start : start + length]
    tail = _RCV_TAIL.fullmatch(line, start + length)
    if len(data) != length or tail is None:
        raise ValueError(f"+RCV announces {length} data bytes but the line does not match that length")
    return int(head.group(1)), data, int(tail.group(1)), int(tail.group(2))


@dataclass(frozen=True)
class RylrModel:
    """Which REYAX part is fitted, as far as its firmware version (or the config) tells."""

    name: str  # the token shown in logs: RYLR998, RYLR89C, RYLRxx8, ...
    generation: int  # 1 = RYLR896/RYLR406 guide, 2 = RYLR998/RYLR498 guide, 0 = unknown
    high_band: bool | None  # True: 868/915 MHz part, False: 433/470 MHz part, None: unknown


def model_from_version(text: str) -> RylrModel:
    """``+VER`` text (``RYLR998_V1.2.1``, ``RYLR89C_V1.2.7``, ``RYLRxx8_V1.3``) or a model name."""
    token = text.strip().removeprefix("+VER=").split("_")[0].upper()
    name = token.replace("XX", "xx")
    if re.fullmatch(r"RYLR(99|49|XX)8", token):
        return RylrModel(name, 2, {"99": True, "49": False}.get(token[4:6]))
    if re.fullmatch(r"RYLR(89|40)[0-9A-Z]", token):
        return RylrModel(name, 1, token[4:6] == "89")
    return RylrModel(name or "RYLR", 0, None)


def check_settings(model: RylrModel, settings: RadioSettings, password: str | None) -> list[str]:
    """What this model cannot do of `settings`, per its AT command guide (empty: all fine)."""
    problems: list[str] = []
    sf, bw = settings.spreading_factor, settings.bandwidth_khz
    if not 0 <= settings.address <= 65535:
        problems.append(f"address {settings.address}: the modem takes 0-65535")
    if model.high_band is True and settings.frequency_hz < 600_000_000:
        problems.append(
            f"{model.name} is a 868/915 MHz part; {settings.frequency_hz} Hz needs an RYLR498/RYLR406"
        )
    if model.high_band is False and settings.frequency_hz > 600_000_000:
        problems.append(
            f"{model.name} is a 433/470 MHz part; {settings.frequency_hz} Hz needs an RYLR998/RYLR896"
        )
    if model.generation == 2:
        top = {125: 9, 250: 10, 500: 11}[bw]
        if not 5 <= sf <= top:
            problems.append(
                f"SF{sf} at {bw} kHz: the RYLR998/RYLR498 guide allows SF7-9 at 125 kHz, SF7-10 at 250 kHz, "
                "SF7-11 at 500 kHz (use a lower SF or a wider bandwidth)"
            )
        if settings.network_id == 18 and not 4 <= settings.preamble <= 24:
            problems.append(f"preamble {settings.preamble}: 4-24 with NETWORKID 18")
        if settings.network_id != 18 and settings.preamble != 12:
            problems.append(f"preamble {settings.preamble}: must be 12 unless NETWORKID is 18")
        if not (3 <= settings.network_id <= 15 or settings.network_id == 18):
            problems.append(f"network id {settings.network_id}: the guide allows 3-15 or 18")
        if not 0 <= settings.tx_power_dbm <= 22:
            problems.append(f"TX power {settings.tx_power_dbm} dBm: 0-22")
        if password is not None and not re.fullmatch(r"[0-9A-Fa-f]{8}", password):
            problems.append("password: 8 hex digits (00000001-FFFFFFFF)")
    elif model.generation == 1:
        if not 7 <= sf <= 12:
            problems.append(f"SF{sf}: 7-12")
        if not 4 <= settings.preamble <= 7:
            problems.append(f"preamble {settings.preamble}: the RYLR896/RYLR406 guide allows 4-7")
        if not 0 <= settings.network_id <= 16:
            problems.append(f"network id {settings.network_id}: 0-16")
        if not 0 <= settings.tx_power_dbm <= 15:
            problems.append(f"TX power {settings.tx_power_dbm} dBm: 0-15")
        if password is not None and not re.fullmatch(r"[0-9A-Fa-f]{32}", password):
            problems.append("password: 32 hex digits (AES-128)")
    return problems


def _value(reply: AtReply, command: str) -> str:
    for line in reply.lines:
        if line.startswith(b"+") and b"=" in line:
            return line.split(b"=", 1)[1].decode("ascii", "replace").strip()
    raise ModemError(f"answer to {command} holds no value: {reply.lines!r}", command=command)


def _ints(text: str, count: int, command: str) -> list[int]:
    parts = [part.strip() for part in text.split(",")]
    try:
        numbers = [int(part) for part in parts]
    except ValueError:
        numbers = []
    if len(numbers) != count:
        raise ModemError(f"unreadable answer to {command}: {text!r}", command=command)
    return numbers


class RylrModem(AtModem):
    """A REYAX RYLR998/RYLR498 (or RYLR896/RYLR406) on a serial port, receiving collar packets.

    Wiring: modem TXD to the Pi's RXD and RXD to TXD, 3.3 V only; the modem's RST pin (active low)
    on a GPIO given as `reset` lets `recover` restart a hung modem, otherwise ``AT+RESET`` is tried.
    Default 115200 baud (the guide's default; ``AT+IPR`` changes it and the modem remembers).

    Every failure is a `ModemError` naming the modem, its port and model, the datasheet meaning and
    a hint, e.g. ``lora0 (/dev/uncia-lora0, RYLR998): +ERR=2 "The head of AT command is not "AT"
    string" after AT+BAND=470300000 — wrong baud rate or line noise?``. Counters for the health
    report: ``malformed`` (+RCV lines that did not parse), ``radio_errors`` (codes heard on their own).
    """

    family = "rylr"

    def __init__(
        self,
        port: str,
        *,
        baudrate: int = 115200,
        reset: ResetLine | None = None,
        log: logging.Logger | None = None,
        name: str | None = None,
        model: str | None = None,
        password: str | None = None,
        timeout: float = 1.0,
        send_timeout: float = 15.0,
        boot_timeout: float = 3.0,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._reset = reset
        self.model = model_from_version(model) if model else None
        self.password = password
        self.timeout, self.send_timeout, self.boot_timeout = timeout, send_timeout, boot_timeout
        self.firmware: str | None = None
        self.settings: RadioSettings | None = None
        self.malformed = 0
        self.radio_errors: Counter[int] = Counter()
        self.channel = AtChannel(
            port,
            baudrate=baudrate,
            dialect=REYAX,
            name=name,
            model=self.model.name if self.model else "RYLR",
            timeout=timeout,
            log=log or logging.getLogger("uncia.lora.reyax"),
            now=now,
        )
        self.log = self.channel.log
        self._boots_seen = 0

    def probe(self) -> None:
        self.channel.command("AT")
        if self.firmware is not None:
            return
        try:
            self.firmware = _value(self._query("AT+VER?"), "AT+VER?")
        except ModemTimeout:
            raise
        except ModemError:
            self.firmware = "?"
        if self.model is None or self.model.generation == 0:
            self.model = model_from_version(self.firmware)
            if self.model.name.startswith("RYLR"):
                self.channel.model = self.model.name
        self.log.info("%s: answering, firmware %s", self.label, self.firmware)

    def configure(self, settings: RadioSettings) -> dict[str, Any]:
        if self.firmware is None:
            self.probe()
        assert self.model is not None
        problems = check_settings(self.model, settings, self.password)
        if problems:
            message = f"{self.label}: cannot use these radio settings: {'; '.join(problems)}"
            self.log.warning("%s", message)
            raise ModemError(message)
        if self.password is None:
            self._clear_password()
        writes = self._writes(settings)
        for command in dict.fromkeys(writes.values()):  # each once, in order
            if command != "AT+RESET":
                self.channel.command(command)
        read = self.read_settings()
        for key, wanted in self._wanted(settings).items():
            if read.get(key) != wanted:
                message = (
                    f"{self.label}: {key} reads back {read.get(key)!r} after {writes[key]} set it to {wanted!r}"
                    " — the modem did not take the setting; not receiving on a mismatched radio"
                )
                self.log.warning("%s", message)
                raise ModemMismatch(message, command=writes[key])
        self.settings = settings
        self._boots_seen = self.channel.boots
        self.log.info(
            "%s: configured %.1f MHz SF%d %d kHz CR4/%d, preamble %d, network %d, address %d",
            self.label,
            settings.frequency_hz / 1e6,
            settings.spreading_factor,
            settings.bandwidth_khz,
            settings.coding_rate + 4,
            settings.preamble,
            settings.network_id,
            settings.address,
        )
        return read

    def _writes(self, settings: RadioSettings) -> dict[str, str]:
        """Each setting -> the command that writes it (in the order they are sent)."""
        parameter = (
            f"AT+PARAMETER={settings.spreading_factor},{BW_CODE_OF[settings.bandwidth_khz]},"
            f"{settings.coding_rate},{settings.preamble}"
        )
        # NETWORKID before PARAMETER: on the RYLR998 the allowed preamble depends on it.
        return {
            "mode": "AT+MODE=0",
            "address": f"AT+ADDRESS={settings.address}",
            "network_id": f"AT+NETWORKID={settings.network_id}",
            "frequency_hz": f"AT+BAND={settings.frequency_hz}",
            "spreading_factor": parameter,
            "bandwidth_khz": parameter,
            "coding_rate": parameter,
            "preamble": parameter,
            "tx_power_dbm": f"AT+CRFOP={settings.tx_power_dbm}",
            "password": f"AT+CPIN={self.password}" if self.password else "AT+RESET",  # see _clear_password
        }

    def _wanted(self, settings: RadioSettings) -> dict[str, Any]:
        return {
            "mode": 0,
            "address": settings.address,
            "network_id": settings.network_id,
            "frequency_hz": settings.frequency_hz,
            "spreading_factor": settings.spreading_factor,
            "bandwidth_khz": settings.bandwidth_khz,
            "coding_rate": settings.coding_rate,
            "preamble": settings.preamble,
            "tx_power_dbm": settings.tx_power_dbm,
            "password": self.password.lower() if self.password else None,
        }

    def _clear_password(self) -> None:
        # A password left in the modem makes it deaf to collars without one; the guide says a reset
        # forgets it (unless it was stored with ",M").
        current = _value(self._query("AT+CPIN?"), "AT+CPIN?")
        if _password(current) is None:
            return
        self.log.warning(
            "%s: a password is set in the modem and none is configured: resetting it", self.label
        )
        boots = self.channel.boots
        self.channel.command("AT+RESET", extra_ok=(b"+RESET",))
        self.channel.wait_boot(boots, self.boot_timeout)

    def read_settings(self) -> dict[str, Any]:
        def query(command: str) -> str:
            return _value(self._query(command), command)

        sf, bw, cr, preamble = _ints(query("AT+PARAMETER?"), 4, "AT+PARAMETER?")
        return {
            "mode": _ints(query("AT+MODE?").split(",")[0], 1, "AT+MODE?")[0],
            "address": _ints(query("AT+ADDRESS?"), 1, "AT+ADDRESS?")[0],
            "network_id": _ints(query("AT+NETWORKID?"), 1, "AT+NETWORKID?")[0],
            "frequency_hz": _ints(query("AT+BAND?"), 1, "AT+BAND?")[0],
            "spreading_factor": sf,
            "bandwidth_khz": BW_CODES.get(bw, f"code {bw}"),
            "coding_rate": cr,
            "preamble": preamble,
            "tx_power_dbm": _ints(query("AT+CRFOP?"), 1, "AT+CRFOP?")[0],
            "password": _password(query("AT+CPIN?")),
        }

    def _query(self, command: str) -> AtReply:
        # A REYAX read is answered by its value line alone, without +OK.
        return self.channel.command(command, value_is_final=True)

    def receive(self, timeout: float) -> Packet | None:
        deadline = time.monotonic() + timeout
        while True:
            event = self.channel.next_event(max(0.0, deadline - time.monotonic()))
            if event is None:
                return None
            line = event.line
            if line.startswith(b"+RCV="):
                try:
                    sender, data, rssi, snr = parse_rcv(line)
                except ValueError as exc:
                    self.malformed += 1
                    self.log.warning("%s: damaged packet line dropped (%s): %r", self.label, exc, line[:80])
                    continue
                return Packet(data, rssi, float(snr), event.received, sender=sender)
            code = REYAX.error_code(line)
            if code.isdigit():
                self.radio_errors[int(code)] += 1
                meaning = reyax_meaning(int(code))
                self.log.warning(
                    "%s: %s while receiving — %s", self.label, meaning.describe(line.decode()), meaning.hint
                )

    def send(self, payload: bytes, *, to: int = 0) -> None:
        if not 1 <= len(payload) <= 240:
            raise ModemError(f"{self.label}: a packet holds 1-240 bytes, not {len(payload)}")
        self.channel.command(f"AT+SEND={to},{len(payload)},", data=payload, timeout=self.send_timeout)

    RESTART_SIGN = "+READY"

    def recover(self) -> None:
        boots = self.channel.boots
        how = self._reset_by_line_or(self._soft_reset)
        cause = "reset line not wired to RST, or modem without power?" if self._reset else "modem hung?"
        self._finish_recovery(boots, how, "+READY", cause)

    def _soft_reset(self) -> str:
        try:
            self.channel.command("AT+RESET", extra_ok=(b"+RESET",))
        except ModemTimeout as exc:
            raise ModemTimeout(
                f"{self.label}: does not answer AT+RESET and no reset line is wired: power-cycle the modem "
                "(or wire its RST pin to a GPIO)",
                command="AT+RESET",
            ) from exc
        return "AT+RESET"


def _password(text: str) -> str | None:
    """The password as read back, lower case; None when the modem says there is none."""
    if "no password" in text.lower() or re.fullmatch(r"0+", text):
        return None
    return text.lower()
