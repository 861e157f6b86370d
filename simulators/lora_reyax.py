"""An emulated REYAX RYLR998 / RYLR498 / RYLR896 / RYLR406 LoRa modem on a pseudo-terminal.

Command set, ranges, answers and error codes as in the REYAX "LoRa AT Command Guide" documents
(see `edge.lora.reyax` for the sources and for the choices made where the guides are silent; this
emulator makes the same choices). In short:

- ``AT`` → ``+OK``; ``AT+RESET`` → ``+RESET``, then ``+READY`` after the boot time;
- ``AT+MODE``, ``AT+IPR``, ``AT+BAND``, ``AT+PARAMETER``, ``AT+ADDRESS``, ``AT+NETWORKID``,
  ``AT+CPIN``, ``AT+CRFOP``, ``AT+SEND``, ``AT+UID?``, ``AT+VER?``, ``AT+FACTORY``; ``?`` reads;
- a line without CR before LF → ``+ERR=1``; not starting with ``AT`` → ``+ERR=2``; unknown command or
  value out of range → ``+ERR=4``; RYLR998 preamble rule → ``+ERR=18``; ``AT+SEND`` length mismatch
  → ``+ERR=5``, over 240 bytes → ``+ERR=13``; ``+OK`` to ``AT+SEND`` once the packet is on the air;
- received packets ``+RCV=<addr>,<len>,<data>,<rssi>,<snr>`` with the data as raw bytes.

Kept over a reboot (flash): address, network id, baud rate, and band/password written with ``,M``.
Forgotten: band, RF parameters, output power, password, mode (our choice: the guide only says the
password is forgotten and that address and network id are "memorized in Flash").
"""

from __future__ import annotations

import random
import re
import time

from edge.lora.modem import RadioSettings
from edge.lora.reyax import BW_CODES
from simulators.lora_modem import EmulatedModem, Reply, airtime_s
from simulators.pty_port import PtyPort

# model -> (generation, factory band in Hz, AT+VER answer)
MODELS: dict[str, tuple[int, int, str]] = {
    "RYLR998": (2, 915_000_000, "RYLR998_V1.2.1"),
    "RYLR498": (2, 490_000_000, "RYLR498_V1.2.1"),
    "RYLR896": (1, 915_000_000, "RYLR89C_V1.2.7"),
    "RYLR406": (1, 434_000_000, "RYLR40C_V1.2.7"),
}
_BAUDS = (300, 1200, 4800, 9600, 19200, 28800, 38400, 57600, 115200)
_SEND = re.compile(rb"AT\+SEND=(\d{1,5}),(\d{1,3}),")
_OK, _ERR4 = Reply([b"+OK"]), Reply([b"+ERR=4"], error=True)


def _err(code: int) -> Reply:
    return Reply([b"+ERR=%d" % code], error=True)


class RylrEmulator(EmulatedModem):
    """A REYAX modem: `model` one of RYLR998, RYLR498 (default: the 470 MHz part for CN470), RYLR896,
    RYLR406. `address` is the module's own address as stored in its flash."""

    family = "rylr"

    def __init__(
        self,
        port: PtyPort | None = None,
        *,
        address: int = 1,
        rng: random.Random | None = None,
        model: str = "RYLR498",
        **timing: float,
    ) -> None:
        if model not in MODELS:
            raise ValueError(f"model {model!r}: expected one of {', '.join(MODELS)}")
        self.model = model
        self.generation, self._factory_band, self.version = MODELS[model]
        self._flash_address = address
        super().__init__(port, address=address, rng=rng, **timing)  # type: ignore[arg-type]

    # -- state ----------------------------------------------------------------------------

    def _factory_state(self) -> None:
        self.address = self._flash_address
        self.network_id = 18 if self.generation == 2 else 0
        self.kept_band: int | None = None
        self.kept_password: str | None = None
        self.last_send = (0, b"")
        self._tx_until = 0.0
        self._lose_volatile_state()

    def _lose_volatile_state(self) -> None:
        self.mode = 0
        self.band = self.kept_band or self._factory_band
        self.password = self.kept_password
        if self.generation == 2:
            self.sf, self.bw, self.cr, self.preamble, self.power = 9, 7, 1, 12, 22
        else:
            self.sf, self.bw, self.cr, self.preamble, self.power = 12, 7, 1, 4, 15

    def _radio_fields(self) -> dict[str, int | float] | None:
        return {
            "frequency_hz": self.band,
            "spreading_factor": self.sf,
            "bandwidth_khz": BW_CODES[self.bw],
            "coding_rate": self.cr,
            "preamble": self.preamble,
            "tx_power_dbm": self.power,
            "network_id": self.network_id,
            "address": self.address,
        }

    def _set(self, setting: str, attribute: str, value: object) -> None:
        """Apply a write unless the test told us to ignore `setting` (a RadioSettings field name)."""
        if setting not in self._ignored:
            setattr(self, attribute, value)

    # -- radio ----------------------------------------------------------------------------

    def _boot_banner(self) -> bytes:
        return b"+READY" + self.eol

    def _receiving(self) -> bool:
        return self.mode == 0

    def _matches(self, radio: RadioSettings) -> bool:
        return (
            self.band == radio.frequency_hz
            and self.sf == radio.spreading_factor
            and BW_CODES[self.bw] == radio.bandwidth_khz
            and self.cr == radio.coding_rate
            and self.network_id == radio.network_id
        )

    def _packet_line(self, payload: bytes, rssi: int, snr: float, sender: int) -> bytes:
        return b"+RCV=%d,%d," % (sender, len(payload)) + payload + b",%d,%d" % (rssi, round(snr))

    # -- commands -------------------------------------------------------------------------

    def _take_command(self) -> bytes | None:
        send = _SEND.match(self._inbuf)
        if send is None:
            return super()._take_command()
        size = send.end() + int(send.group(2)) + 2  # the data is cut by its length, then CR/LF
        if len(self._inbuf) < size:
            return None
        command = bytes(self._inbuf[:size])
        del self._inbuf[:size]
        return command[:-1] if command.endswith(b"\n") else command + b"\x00"  # \x00: length wrong

    def _answer(self, command: bytes) -> Reply | None:
        if not command.endswith(b"\r"):
            return _err(1)
        line = command[:-1]
        if not line.startswith(b"AT"):
            return _err(2)
        if line.startswith(b"AT+SEND=") and _SEND.match(line):
            return self._send(line)
        text = line.decode("latin-1")
        if text == "AT":
            return _OK
        if not text.startswith("AT+"):
            return _ERR4
        name, equals, argument = text[3:].partition("=")
        if name.endswith("?"):
            return self._query(name[:-1])
        if name == "RESET":
            return Reply([b"+RESET"], then=self._reboot)
        if name == "FACTORY":
            self.kept_band = self.kept_password = None
            self._factory_state()
            return Reply([b"+FACTORY"])
        if not equals:
            return _err(3) if self.generation == 1 else _ERR4
        handler = getattr(self, f"_set_{name.lower()}", None)
        if handler is None:
            return _ERR4
        try:
            return handler(argument)
        except ValueError:
            return _ERR4

    def _query(self, name: str) -> Reply:
        values = {
            "MODE": str(self.mode),
            "IPR": str(self.baudrate),
            "BAND": str(self.band),
            "PARAMETER": f"{self.sf},{self.bw},{self.cr},{self.preamble}",
            "ADDRESS": str(self.address),
            "NETWORKID": str(self.network_id),
            "CRFOP": str(self.power),
            "VER": self.version,
            "SEND": f"{self.last_send[0]},{len(self.last_send[1])},",
        }
        if self.generation == 2:
            values["UID"] = "104737333437353600170029"
            values["CPIN"] = self.password or "No Password!"
        else:
            values["CPIN"] = self.password or "0" * 32
        if name not in values:
            return _ERR4
        value = values[name].encode("latin-1")
        if name == "SEND":
            value += self.last_send[1]
        return Reply([b"+" + name.encode() + b"=" + value])

    def _set_mode(self, argument: str) -> Reply:
        parts = [int(part) for part in argument.split(",")]
        if parts[0] not in ((0, 1, 2) if self.generation == 2 else (0, 1)):
            return _ERR4
        if parts[0] == 2 and (len(parts) != 3 or not all(30 <= t <= 60000 for t in parts[1:])):
            return _err(20)
        self._set("mode", "mode", parts[0])
        return _OK

    def _set_ipr(self, argument: str) -> Reply:
        rate = int(argument)
        if rate not in _BAUDS:
            return _ERR4
        # Answers at the old speed, then listens at the new one (and remembers it).
        return Reply([b"+IPR=%d" % rate], then=lambda: setattr(self, "baudrate", rate))

    def _set_band(self, argument: str) -> Reply:
        value, _, memory = argument.partition(",")
        frequency = int(value)
        if not 100_000_000 <= frequency <= 1_020_000_000 or memory not in ("", "M"):
            return _ERR4
        self._set("frequency_hz", "band", frequency)
        if memory == "M" and "frequency_hz" not in self._ignored:
            self.kept_band = frequency
        return _OK

    def _set_parameter(self, argument: str) -> Reply:
        sf, bw, cr, preamble = (int(part) for part in argument.split(","))
        if self.generation == 2:
            top = {7: 9, 8: 10, 9: 11}.get(bw)
            if top is None or not 5 <= sf <= top or not 1 <= cr <= 4:
                return _ERR4
            if (self.network_id == 18 and not 4 <= preamble <= 24) or (
                self.network_id != 18 and preamble != 12
            ):
                return _err(18)
        elif not 7 <= sf <= 12 or bw not in BW_CODES or not 1 <= cr <= 4 or not 4 <= preamble <= 7:
            return _ERR4
        self._set("spreading_factor", "sf", sf)
        self._set("bandwidth_khz", "bw", bw)
        self._set("coding_rate", "cr", cr)
        self._set("preamble", "preamble", preamble)
        return _OK

    def _set_address(self, argument: str) -> Reply:
        address = int(argument)
        if not 0 <= address <= 65535:
            return _ERR4
        self._set("address", "address", address)
        return _OK

    def _set_networkid(self, argument: str) -> Reply:
        network = int(argument)
        valid = (3 <= network <= 15 or network == 18) if self.generation == 2 else 0 <= network <= 16
        if not valid:
            return _ERR4
        self._set("network_id", "network_id", network)
        return _OK

    def _set_cpin(self, argument: str) -> Reply:
        password, _, memory = argument.partition(",")
        digits = 8 if self.generation == 2 else 32
        if not re.fullmatch(f"[0-9A-Fa-f]{{{digits}}}", password) or memory not in ("", "M"):
            return _ERR4
        if "password" not in self._ignored:
            self.password = password.lower()
            if memory == "M":
                self.kept_password = self.password
        return _OK

    def _set_crfop(self, argument: str) -> Reply:
        power = int(argument)
        if not 0 <= power <= (22 if self.generation == 2 else 15):
            return _ERR4
        self._set("tx_power_dbm", "power", power)
        return _OK

    def _send(self, line: bytes) -> Reply:
        header = _SEND.match(line)
        assert header is not None
        address, size = int(header.group(1)), int(header.group(2))
        data = line[header.end() :]
        if size > 240:
            return _err(13)
        if len(data) != size or not 0 <= address <= 65535:
            return _err(5) if self.generation == 2 else _ERR4
        now = time.monotonic()
        if now < self._tx_until and self.generation == 2:
            return _err(17)
        self.sent.append(data)
        self.last_send = (address, data)
        airtime = airtime_s(self.sf, BW_CODES[self.bw], self.cr, self.preamble, size + 8) * self.airtime_scale
        self._tx_until = now + airtime
        return Reply([b"+OK"], extra_delay=airtime)
