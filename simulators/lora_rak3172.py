"""An emulated RAKwireless RAK3172 with RUI3 firmware (4.x) on a pseudo-terminal, LoRa P2P side.

Behaviour as in the RUI3 AT Command Manual and the RUI3 firmware source (see `edge.lora.rak3172`):
- ``AT`` → ``OK``; ``ATE`` toggles echo; ``ATZ`` restarts without an answer; ``AT+VER=?``;
- ``AT+NWM=<0|1|2>`` prints ``OK`` (without line end, as the firmware does) and restarts; the banner
  ends ``Current Work Mode: LoRa P2P.`` (or ``LoRaWAN.``); a fresh module is in LoRaWAN mode;
- ``AT+P2P``, ``AT+PFREQ``, ``AT+PSF``, ``AT+PBW``, ``AT+PCR``, ``AT+PPL``, ``AT+PTP`` (``=?`` reads,
  answering ``AT+P2P=<f>:<sf>:<bw code>:<cr>:<pl>:<txp>``), ``AT+PRECV``, ``AT+PSEND``; any of them in
  LoRaWAN mode → ``AT_MODE_NO_SUPPORT``; out of range → ``AT_PARAM_ERROR``; a frequency outside the
  variant (``variant="low"``: 150-600 MHz, ``"high"``: 600-960 MHz) → ``AT_PARAM_ERROR``;
- in continuous receive (``AT+PRECV=65534``) ``AT+P2P=...``, ``AT+P2P=?``, ``AT+PRECV=<non-zero>`` and
  ``AT+PSEND`` → ``AT_BUSY_ERROR``; ``65535`` receives one packet, ``65533`` allows sending, other
  values open a window ending ``+EVT:RXP2P RECEIVE TIMEOUT``; ``AT+PSEND`` → ``OK``, then
  ``+EVT:TXP2P DONE`` after the packet's time on air (times ``airtime_scale``);
- packets heard: ``+EVT:RXP2P:<rssi>:<snr>:<HEX>``; unknown commands → ``AT_COMMAND_NOT_FOUND``.

Kept over a reboot (the module's NVM): work mode and every P2P parameter. Forgotten: receive mode
and echo, so a restarted module is deaf until the host sends ``AT+PRECV`` again.
"""

from __future__ import annotations

import random
import re
import time

from edge.lora.modem import RadioSettings
from edge.lora.rak3172 import BW_KHZ_OF_CODE
from simulators.lora_modem import EmulatedModem, Reply, airtime_s
from simulators.pty_port import PtyPort

_OK = Reply([b"OK"])
_BUSY = Reply([b"AT_BUSY_ERROR"], error=True)
_PARAM = Reply([b"AT_PARAM_ERROR"], error=True)
_NO_SUPPORT = Reply([b"AT_MODE_NO_SUPPORT"], error=True)
_CONTINUOUS = (65534, 65535, 65533)


class Rak3172Emulator(EmulatedModem):
    """A RAK3172: `variant` "low" (default, CN470-capable) or "high"; `work_mode` 1 (LoRaWAN, as
    shipped) or 0 (already P2P); `bw_readback` "code" (firmware 4.x) or "khz" (older docs)."""

    family = "rak3172"

    def __init__(
        self,
        port: PtyPort | None = None,
        *,
        address: int = 1,
        rng: random.Random | None = None,
        variant: str = "low",
        work_mode: int = 1,
        bw_readback: str = "code",
        version: str = "RUI_4.0.6_RAK3172-E",
        **timing: float,
    ) -> None:
        if variant not in ("low", "high") or bw_readback not in ("code", "khz") or work_mode not in (0, 1, 2):
            raise ValueError("variant low|high, bw_readback code|khz, work_mode 0|1|2")
        self.variant, self.bw_readback, self.version = variant, bw_readback, version
        self._initial_mode = work_mode
        super().__init__(port, address=address, rng=rng, **timing)  # type: ignore[arg-type]

    # -- state ----------------------------------------------------------------------------

    def _factory_state(self) -> None:
        self.work_mode = self._initial_mode
        self.frequency = 470_300_000 if self.variant == "low" else 868_000_000
        self.sf, self.bw, self.cr, self.preamble, self.power = 7, 0, 0, 8, 14
        self._lose_volatile_state()

    def _lose_volatile_state(self) -> None:
        self.rx_mode = 0  # 0 off, 65533/65534/65535 continuous modes, 1 a timed window
        self.rx_until = 0.0
        self.echo = False

    def _radio_fields(self) -> dict[str, int | float] | None:
        if self.work_mode != 0:
            return None
        return {
            "frequency_hz": self.frequency,
            "spreading_factor": self.sf,
            "bandwidth_khz": BW_KHZ_OF_CODE[self.bw],
            "coding_rate": self.cr + 1,
            "preamble": self.preamble,
            "tx_power_dbm": self.power,
            "address": self.address,
        }

    def _set(self, setting: str, attribute: str, value: int) -> None:
        if setting not in self._ignored:
            setattr(self, attribute, value)

    # -- radio ----------------------------------------------------------------------------

    def _boot_banner(self) -> bytes:
        mode = {0: "LoRa P2P", 1: "LoRaWAN", 2: "LoRa FSK"}[self.work_mode]
        lines = [
            b"",
            b"RAKwireless RAK3172-E Example",
            b"-" * 54,
            b"Version: " + self.version.encode(),
            f"Current Work Mode: {mode}.".encode(),
        ]
        return b"".join(line + self.eol for line in lines)

    def _receiving(self) -> bool:
        if self.work_mode != 0 or self.rx_mode == 0:
            return False
        return self.rx_mode in _CONTINUOUS or time.monotonic() < self.rx_until

    def _matches(self, radio: RadioSettings) -> bool:
        return (
            self.frequency == radio.frequency_hz
            and self.sf == radio.spreading_factor
            and BW_KHZ_OF_CODE[self.bw] == radio.bandwidth_khz
            and self.cr + 1 == radio.coding_rate
        )

    def _packet_line(self, payload: bytes, rssi: int, snr: float, sender: int) -> bytes:
        return b"+EVT:RXP2P:%d:%d:" % (rssi, round(snr)) + payload.hex().upper().encode()

    def _after_packet(self) -> None:
        if self.rx_mode not in (65534, 65533):  # single packet or a timed window: radio back to standby
            self.rx_mode = 0

    # -- commands -------------------------------------------------------------------------

    def _answer(self, command: bytes) -> Reply | None:
        text = command.rstrip(b"\r").decode("latin-1").strip()
        reply = self._dispatch(text)
        if reply is not None and self.echo:
            reply.lines.insert(0, text.encode("latin-1"))
        return reply

    def _dispatch(self, text: str) -> Reply | None:
        upper = text.upper()
        if upper == "AT":
            return _OK
        if upper == "ATE":
            self.echo = not self.echo
            return _OK
        if upper == "ATZ":
            self._at(0.0, self._reboot)
            return None
        if upper == "ATR":
            self._factory_state()
            return _OK
        name, equals, argument = upper.partition("=")
        if name.endswith("?") and not equals:
            return Reply([f"{name[:-1]}: (help text)".encode(), b"OK"])
        if not name.startswith("AT+"):
            return Reply([b"AT_COMMAND_NOT_FOUND"], error=True)
        key = name[3:]
        if key == "VER" and argument == "?":
            return Reply([f"AT+VER={self.version}".encode(), b"OK"])
        if key == "SN" and argument == "?":
            return Reply([b"AT+SN=AC1F09FFFE0A1B2C", b"OK"])
        if key == "NWM":
            return self._nwm(argument)
        handler = getattr(self, f"_p2p_{key.lower()}", None)
        if handler is None:
            return Reply([b"AT_COMMAND_NOT_FOUND"], error=True)
        if self.work_mode == 1:
            return _NO_SUPPORT
        if not equals:
            return _PARAM
        try:
            return handler(argument)
        except ValueError:
            return _PARAM

    def _nwm(self, argument: str) -> Reply:
        if argument == "?":
            return Reply([f"AT+NWM={self.work_mode}".encode(), b"OK"])
        if argument not in ("0", "1", "2"):
            return _PARAM

        def restart() -> None:
            self.work_mode = int(argument)
            self._reboot()

        return Reply([b"OK"], eol=False, then=restart)

    def _bw_out(self) -> int:
        return int(BW_KHZ_OF_CODE[self.bw]) if self.bw_readback == "khz" and self.bw <= 2 else self.bw

    def _frequency_ok(self, frequency: int) -> bool:
        low, high = (150_000_000, 600_000_000) if self.variant == "low" else (600_000_001, 960_000_000)
        return low <= frequency <= high

    def _p2p_p2p(self, argument: str) -> Reply:
        if self.rx_mode in _CONTINUOUS or self._receiving():
            return _BUSY
        if argument == "?":
            value = f"{self.frequency}:{self.sf}:{self._bw_out()}:{self.cr}:{self.preamble}:{self.power}"
            return Reply([f"AT+P2P={value}".encode(), b"OK"])
        parts = argument.split(":")
        if len(parts) not in (6, 7):
            return _PARAM
        frequency, sf, bw, cr, preamble, power = (int(part) for part in parts[:6])
        code = {125: 0, 250: 1, 500: 2}.get(bw, bw)
        if (
            not self._frequency_ok(frequency)
            or not 5 <= sf <= 12
            or not 0 <= code <= 9
            or not 0 <= cr <= 3
            or not 5 <= preamble <= 65535
            or not 5 <= power <= 22
        ):
            return _PARAM
        self._set("frequency_hz", "frequency", frequency)
        self._set("spreading_factor", "sf", sf)
        self._set("bandwidth_khz", "bw", code)
        self._set("coding_rate", "cr", cr)
        self._set("preamble", "preamble", preamble)
        self._set("tx_power_dbm", "power", power)
        return _OK

    def _single(self, argument: str, attribute: str, setting: str, valid: range | None) -> Reply:
        if argument == "?":
            value = self._bw_out() if attribute == "bw" else getattr(self, attribute)
            return Reply([f"AT+{setting}={value}".encode(), b"OK"])
        value = int(argument)
        if attribute == "bw":
            value = {125: 0, 250: 1, 500: 2}.get(value, value)
        if (valid is not None and value not in valid) or (
            attribute == "frequency" and not self._frequency_ok(value)
        ):
            return _PARAM
        names = {"frequency": "frequency_hz", "sf": "spreading_factor", "bw": "bandwidth_khz"}
        names |= {"cr": "coding_rate", "preamble": "preamble", "power": "tx_power_dbm"}
        self._set(names[attribute], attribute, value)
        return _OK

    def _p2p_pfreq(self, argument: str) -> Reply:
        return self._single(argument, "frequency", "PFREQ", None)

    def _p2p_psf(self, argument: str) -> Reply:
        return self._single(argument, "sf", "PSF", range(5, 13))

    def _p2p_pbw(self, argument: str) -> Reply:
        return self._single(argument, "bw", "PBW", range(0, 10))

    def _p2p_pcr(self, argument: str) -> Reply:
        return self._single(argument, "cr", "PCR", range(0, 4))

    def _p2p_ppl(self, argument: str) -> Reply:
        return self._single(argument, "preamble", "PPL", range(5, 65536))

    def _p2p_ptp(self, argument: str) -> Reply:
        return self._single(argument, "power", "PTP", range(5, 23))

    def _p2p_precv(self, argument: str) -> Reply:
        timeout = int(argument)
        if not 0 <= timeout <= 65535:
            return _PARAM
        if timeout == 0:
            self.rx_mode = 0
            return _OK
        if self.rx_mode in _CONTINUOUS:
            return _BUSY  # "RX mode must be disabled first via AT+PRECV=0"
        if timeout in _CONTINUOUS:
            self.rx_mode = timeout
            return _OK
        window = max(timeout, 15) / 1000.0
        self.rx_mode, self.rx_until = 1, time.monotonic() + window

        def window_closed() -> None:
            if self.rx_mode == 1 and time.monotonic() >= self.rx_until - 0.001:
                self.rx_mode = 0
                self._write(b"+EVT:RXP2P RECEIVE TIMEOUT" + self.eol)

        self._at(window, window_closed)
        return _OK

    def _p2p_psend(self, argument: str) -> Reply:
        if argument == "?" or len(argument) % 2 or not 2 <= len(argument) <= 500:
            return _PARAM
        if not re.fullmatch(r"[0-9A-F]+", argument):
            return _PARAM
        if self._receiving() and self.rx_mode != 65533:
            return _BUSY
        payload = bytes.fromhex(argument)
        self.sent.append(payload)
        airtime = airtime_s(self.sf, BW_KHZ_OF_CODE[self.bw], self.cr + 1, self.preamble, len(payload))
        self._at(self._delay() + airtime * self.airtime_scale, b"+EVT:TXP2P DONE" + self.eol)
        return _OK
