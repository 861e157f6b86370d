"""The Iridium SBD modem: a RockBLOCK-class 9602/9603 on a serial port, spoken to in AT commands.

The commands used (ISU AT Command Reference, Iridium, v2.45, and RockBLOCK's command pages):

=================  ===================================================================================
``ATE0``           no echo of commands (the modem echoes by default after power-up)
``AT&K0``          no RTS/CTS flow control: a RockBLOCK's serial link has only TX, RX and ground
``AT+SBDMTA=0``    no ring-alert lines between commands: this station asks, the modem answers
``AT+SBDWB=<n>``   load the outgoing (MO) buffer: the modem says ``READY``, gets n bytes and a 2-byte
                   checksum (the low 16 bits of the byte sum, high byte first), answers 0 written,
                   1 timeout (bytes lost), 2 checksum wrong (bytes damaged), 3 size not 1-340
``AT+SBDIX``       one session with the satellite: sends the MO buffer, fetches the oldest waiting
                   MT message; ``+SBDIX: <MO status>, <MOMSN>, <MT status>, <MTMSN>, <MT length>,
                   <MT queued>`` (MO status 0-4: sent; `MO_STATUS` for the rest)
``AT+SBDRB``       the received (MT) message: 2-byte length, the bytes, 2-byte checksum (binary)
``AT+SBDD0``       clear the MO buffer
``AT+CSQ``         signal bars 0-5 (a hint only: RockBLOCK advise trying a session rather than
                   waiting for bars)
=================  ===================================================================================

Why not `edge.lora.at.AtChannel`: it is built for modems that print received packets at any time,
and cuts everything it reads into lines. A 9602 speaks only when asked (ring alerts off), and two of
its exchanges are binary (the MO upload after ``READY``, the length-prefixed ``SBDRB`` answer), in
which any byte may be CR or LF. So this driver is synchronous: write a command, read its answer
with a deadline, lines or exact byte counts as the command requires.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import re
import time
from dataclasses import dataclass

import serial

SBD_MAX = 340


class SbdError(Exception):
    """The modem refused, failed or stopped answering; the message says what to check."""

    def __init__(self, message: str, *, command: str | None = None) -> None:
        self.command = command
        super().__init__(message)


class SbdTimeout(SbdError):
    """No answer in time: power, wiring, baud rate."""


@dataclass(frozen=True)
class MoMeaning:
    """One +SBDIX MO status: the reference's words, what to check, and what to do next:
    ``sent``; ``retry`` (sky, network: soon); ``account`` or ``hardware`` (a person must act: rarely);
    ``message`` (this message cannot go as it is)."""

    words: str
    hint: str
    action: str


_SKY = "no satellite reachable: is the antenna's view of the sky blocked (snow, terrain, a wall)?"
MO_STATUS: dict[int, MoMeaning] = {
    0: MoMeaning("MO message, if any, transferred successfully", "", "sent"),
    1: MoMeaning(
        "MO message, if any, transferred successfully, but the MT message in the queue was too big",
        "a message from HQ is longer than the modem takes: ask HQ to send shorter ones",
        "sent",
    ),
    2: MoMeaning(
        "MO message, if any, transferred successfully, but the requested Location Update was not accepted",
        "",
        "sent",
    ),
    10: MoMeaning("GSS reported that the call did not complete in the allowed time", _SKY, "retry"),
    11: MoMeaning(
        "MO message queue at the GSS is full",
        "the Iridium gateway holds too many messages from this modem: check the RockBLOCK account's delivery",
        "account",
    ),
    12: MoMeaning("MO message has too many segments", "the message is too long for this modem", "message"),
    13: MoMeaning("GSS reported that the session did not complete", _SKY, "retry"),
    14: MoMeaning("Invalid segment size", "the message is too long for this modem", "message"),
    15: MoMeaning(
        "Access is denied",
        "the Iridium gateway refuses this modem: line rental lapsed or no credits left on the RockBLOCK account",
        "account",
    ),
    16: MoMeaning(
        "ISU has been locked and may not make SBD calls (see +CULK command)",
        "unlock the modem (AT+CULK with its unlock key)",
        "hardware",
    ),
    17: MoMeaning("Gateway not responding (local session timeout)", _SKY, "retry"),
    18: MoMeaning("Connection lost (RF drop)", _SKY, "retry"),
    19: MoMeaning("Link failure (A protocol error caused termination of the call)", _SKY, "retry"),
    32: MoMeaning("No network service, unable to initiate call", _SKY, "retry"),
    33: MoMeaning(
        "Antenna fault, unable to initiate call", "check the antenna and its cable and connector", "hardware"
    ),
    34: MoMeaning(
        "Radio is disabled, unable to initiate call (see *Rn command)", "enable the radio (AT*R1)", "hardware"
    ),
    35: MoMeaning("ISU is busy, unable to initiate call", "the modem is busy: try again shortly", "retry"),
    36: MoMeaning("Try later, must wait 3 minutes since last registration", "wait three minutes", "retry"),
    37: MoMeaning("SBD service is temporarily disabled", "Iridium-side outage: try again later", "retry"),
    38: MoMeaning(
        "Try later, traffic management period (see +SBDLOE command)", "Iridium asks for a pause", "retry"
    ),
    64: MoMeaning(
        "Band violation (attempt to transmit outside permitted frequency band)", "modem fault", "hardware"
    ),
    65: MoMeaning("PLL lock failure; hardware error during attempted transmit", "modem fault", "hardware"),
}


def mo_meaning(code: int) -> MoMeaning:
    """The meaning of an MO status; the reference's reserved ranges: 3-4 success, the rest failure."""
    if code in MO_STATUS:
        return MO_STATUS[code]
    if code in (3, 4):
        return MoMeaning("Reserved, but indicate MO session success if used", "", "sent")
    return MoMeaning("Reserved, but indicate failure if used", "newer firmware? note the code", "retry")


@dataclass(frozen=True)
class Session:
    """What one ``AT+SBDIX`` reported."""

    mo_status: int
    momsn: int
    mt_status: int
    mtmsn: int
    mt_length: int
    mt_queued: int

    @property
    def sent(self) -> bool:
        return self.mo_status <= 4

    @property
    def meaning(self) -> MoMeaning:
        return mo_meaning(self.mo_status)


_SBDIX = re.compile(rb"\+SBDIX:\s*(\d+),\s*(\d+),\s*(\d+),\s*(\d+),\s*(\d+),\s*(\d+)")


def checksum(data: bytes) -> bytes:
    """The SBD checksum: the least significant 16 bits of the sum of the bytes, high byte first."""
    return (sum(data) & 0xFFFF).to_bytes(2, "big")


def _open_problem(exc: BaseException) -> str:
    code = getattr(exc, "errno", None)
    if code == errno.ENOENT:
        return "no such device: is the RockBLOCK plugged in and its udev rule installed?"
    if code in (errno.EACCES, errno.EPERM):
        return "permission denied: the gateway's user needs the dialout group"
    if code in (errno.EAGAIN, errno.EBUSY):
        return "port in use by another program (a terminal left open? `fuser -v` names it)"
    return f"cannot open the port: {exc}"


class SbdModem:
    """A RockBLOCK 9602/9603 on `port` (a path or pyserial URL). Not thread-safe: one uplink owns it.

    `open` then `configure` once (and again after any error); `write_mo` + `session` send a message;
    `read_mt` fetches what a session received. Every exchange is logged at debug, without payloads.
    """

    def __init__(
        self,
        port: str,
        *,
        baudrate: int = 19200,
        name: str = "iridium",
        command_timeout: float = 5.0,
        session_timeout: float = 90.0,
        log: logging.Logger | None = None,
    ) -> None:
        self.port, self.baudrate, self.name = port, baudrate, name
        self.command_timeout = command_timeout
        self.session_timeout = session_timeout
        self.log = log or logging.getLogger("uncia.uplink.iridium")
        self.imei: str | None = None
        self._serial: serial.Serial | None = None
        self._buf = bytearray()
        self.noise_bytes = 0

    @property
    def label(self) -> str:
        return f"{self.name} ({self.port}{', IMEI ' + self.imei if self.imei else ''})"

    @property
    def is_open(self) -> bool:
        return self._serial is not None

    def open(self) -> None:
        if self._serial is not None:
            return
        try:
            self._serial = serial.serial_for_url(
                self.port, baudrate=self.baudrate, exclusive=True, timeout=0.2, write_timeout=5.0
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            raise SbdError(f"{self.label}: {_open_problem(exc.__context__ or exc)}") from exc
        self._buf.clear()

    def close(self) -> None:
        if self._serial is not None:
            with contextlib.suppress(serial.SerialException, OSError):
                self._serial.close()
            self._serial = None

    def configure(self) -> None:
        """Echo off, flow control off, ring alerts off, the MO buffer empty; learn the IMEI."""
        self.open()
        self._discard_input()
        self.command("AT")
        self.command("ATE0")
        self.command("AT&K0")
        self.command("AT+SBDMTA=0")
        self.clear_mo()
        if self.imei is None:
            lines = self.command("AT+CGSN")
            self.imei = next((x.decode("ascii", "replace") for x in lines if x.strip().isdigit()), None)

    def signal(self) -> int:
        """Signal bars 0-5 (``AT+CSQ``)."""
        for line in self.command("AT+CSQ", timeout=max(self.command_timeout, 10.0)):
            if line.startswith(b"+CSQ:"):
                return int(line[5:].strip() or 0)
        raise SbdError(f"{self.label}: no +CSQ line in the answer to AT+CSQ", command="AT+CSQ")

    def clear_mo(self) -> None:
        lines = self.command("AT+SBDD0")
        if b"1" in lines:
            raise SbdError(
                f"{self.label}: could not clear the MO buffer (AT+SBDD0 answered 1)", command="AT+SBDD0"
            )

    def write_mo(self, data: bytes) -> None:
        """Load `data` (1-340 bytes) into the MO buffer with ``AT+SBDWB``."""
        if not 1 <= len(data) <= SBD_MAX:
            raise ValueError(f"an SBD message is 1 to {SBD_MAX} bytes, not {len(data)}")
        command = f"AT+SBDWB={len(data)}"
        self._write(command.encode() + b"\r", command)
        deadline = time.monotonic() + self.command_timeout
        while True:
            line = self._line(deadline, command)
            if line == b"READY":
                break
            if line in (b"3", b"ERROR"):
                self._finish(deadline, command)
                raise SbdError(
                    f"{self.label}: the modem refused a {len(data)}-byte message ({line.decode()})",
                    command=command,
                )
        self._write(data + checksum(data), command)
        deadline = time.monotonic() + self.command_timeout
        result = self._line(deadline, command)
        if result != b"1":  # 1 (timeout) is the one answer without OK after it
            self._finish(deadline, command)
        if result == b"0":
            return
        meaning = {
            b"1": "write timeout: bytes were lost between the station and the modem (cable? baud rate?)",
            b"2": "checksum wrong: bytes were damaged on the serial line (cable, ground, baud rate?)",
            b"3": "message size refused",
        }.get(result, f"unexpected answer {result!r}")
        raise SbdError(f"{self.label}: AT+SBDWB failed: {meaning}", command=command)

    def session(self) -> Session:
        """One ``AT+SBDIX``: send the MO buffer, receive the oldest waiting MT message."""
        deadline = time.monotonic() + self.session_timeout
        self._write(b"AT+SBDIX\r", "AT+SBDIX")
        found: Session | None = None
        while True:
            line = self._line(deadline, "AT+SBDIX", session=True)
            match = _SBDIX.fullmatch(line.strip())
            if match:
                found = Session(*(int(x) for x in match.groups()))
            elif line == b"OK" and found is not None:
                return found
            elif line == b"ERROR":
                raise SbdError(f"{self.label}: AT+SBDIX answered ERROR", command="AT+SBDIX")

    def read_mt(self) -> bytes:
        """The message in the MT buffer (``AT+SBDRB``); b"" when it is empty."""
        command = "AT+SBDRB"
        self._write(b"AT+SBDRB\r", command)
        deadline = time.monotonic() + self.command_timeout
        # The line end after the last OK may still be in the buffer. Safe to skip: the length's high
        # byte is 0 or 1 (an MT message is at most 270 bytes on a 9602/9603), never CR or LF.
        while not self._buf.lstrip(b"\r\n"):
            self._buf.clear()
            self._fill(deadline, command)
        del self._buf[: len(self._buf) - len(self._buf.lstrip(b"\r\n"))]
        head = self._take(2, deadline, command)
        if head == b"AT":  # echo left on by a power cycle: skip "+SBDRB\r" and read on
            self._take(7, deadline, command)
            head = self._take(2, deadline, command)
        size = int.from_bytes(head, "big")
        body = self._take(size + 2, deadline, command)
        data, check = body[:size], body[size:]
        self._finish(deadline, command)
        if size and check != checksum(data):
            raise SbdError(
                f"{self.label}: received message damaged on the serial line (checksum)", command=command
            )
        return data

    # -- the wire ---------------------------------------------------------------------------------
    def command(self, command: str, *, timeout: float | None = None) -> list[bytes]:
        """Send an AT command; return the lines before ``OK``; raise on ``ERROR`` or no answer."""
        self._write(command.encode() + b"\r", command)
        return self._finish(time.monotonic() + (timeout or self.command_timeout), command)

    def _finish(self, deadline: float, command: str) -> list[bytes]:
        lines = []
        while True:
            line = self._line(deadline, command)
            if line == b"OK":
                self.log.debug(
                    "%s: %s -> %s", self.label, command, b" | ".join(lines).decode("latin-1") or "OK"
                )
                return lines
            if line == b"ERROR":
                raise SbdError(
                    f"{self.label}: the modem answered ERROR to {command} (not a 9602/9603, or a garbled command?)",
                    command=command,
                )
            lines.append(line)

    def _write(self, data: bytes, command: str) -> None:
        if self._serial is None:
            raise SbdError(f"{self.label}: port not open", command=command)
        try:
            self._serial.write(data)
            self._serial.flush()
        except serial.SerialTimeoutException as exc:
            raise SbdTimeout(
                f"{self.label}: could not write {command}: the port stays blocked", command=command
            ) from exc
        except (serial.SerialException, OSError) as exc:
            raise SbdError(
                f"{self.label}: port lost while sending {command}: {exc}", command=command
            ) from exc

    def _fill(self, deadline: float, command: str, session: bool = False) -> None:
        assert self._serial is not None
        if time.monotonic() >= deadline:
            if session:
                message = (
                    f"{self.label}: no end to {command} within {self.session_timeout:g} s — a session normally "
                    "takes 10-60 s: modem lost power during the transmit (RockBLOCK needs its 5 V supply to "
                    "deliver the transmit peak)?"
                )
            elif self._buf:
                self.noise_bytes += len(self._buf)
                message = (
                    f"{self.label}: no proper answer to {command}; {len(self._buf)} bytes of noise came back "
                    f"({bytes(self._buf[:16])!r}) — wrong baud rate (the port is set to {self.baudrate})?"
                )
            else:
                message = (
                    f"{self.label}: no answer to {command} — modem without power, TX/RX swapped, or wrong baud "
                    f"rate (the port is set to {self.baudrate}; a RockBLOCK uses 19200)?"
                )
            raise SbdTimeout(message, command=command)
        try:
            chunk = self._serial.read(self._serial.in_waiting or 1)
        except (serial.SerialException, OSError, TypeError) as exc:
            raise SbdError(
                f"{self.label}: serial port lost (USB unplugged, cable loose?): {exc}", command=command
            ) from exc
        self._buf += chunk

    def _line(self, deadline: float, command: str, session: bool = False) -> bytes:
        """The next non-empty line (CR or LF ends it), skipping the echo of `command`."""
        while True:
            cut = min((i for i in (self._buf.find(b"\r"), self._buf.find(b"\n")) if i >= 0), default=-1)
            if cut >= 0:
                line = bytes(self._buf[:cut]).strip()
                del self._buf[: cut + 1]
                if line and line != command.encode():
                    return line
                continue
            self._fill(deadline, command, session)

    def _take(self, count: int, deadline: float, command: str) -> bytes:
        while len(self._buf) < count:
            self._fill(deadline, command)
        chunk = bytes(self._buf[:count])
        del self._buf[:count]
        return chunk

    def _discard_input(self) -> None:
        assert self._serial is not None
        try:
            self._serial.reset_input_buffer()
        except (serial.SerialException, OSError) as exc:
            raise SbdError(f"{self.label}: serial port lost: {exc}") from exc
        self._buf.clear()
