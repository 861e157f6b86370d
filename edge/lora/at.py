"""The AT channel: commands and their answers over one serial port, with packets arriving any time.

A LoRa modem answers each command with zero or more value lines and one final line (``+OK`` /
``+ERR=n`` on REYAX modules, ``OK`` / ``AT_PARAM_ERROR`` ... on RUI3 firmware), and in between it
prints what its radio heard (``+RCV=...``, ``+EVT:RXP2P:...``) whenever that happens, even in the
middle of a command's answer. `AtChannel` keeps the two apart: one reader thread blocks on the port
(pyserial's select, no polling), cuts bytes into lines (`LineFramer`), queues event lines and hands
every other line to the one command waiting for its answer. What each family's lines look like is a
`Dialect`, defined next to each driver.

Every command is logged at debug; every error answer at warning, with the datasheet's words and what
to check (`edge.lora.errors`), in one line that names the modem and its port.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

import serial

from edge.lora.errors import ErrorMeaning
from edge.lora.modem import LoraModem, ModemError, ModemTimeout, RadioSettings

# Longest single blocking read: bounds how late a partial length-framed packet is given up on.
# close() wakes the read at once through pyserial's cancel_read, so this is not polling.
_READ_SLICE = 0.25
# A length-framed line (REYAX +RCV) that stays incomplete this long lost bytes on the UART: it is
# then cut at the next line end instead, so one damaged packet cannot swallow the answers after it.
_STALE_FRAME = 0.3
# A radio error line (a broken packet heard) that arrives while a command waits is taken as that
# command's answer only if no other final line follows within this time.
_ASYNC_GRACE = 0.1
# After a command timed out its answer may still come; for this long no command is started, so a
# late answer finds no command waiting and is dropped instead of being taken for the next one's.
_LATE_ANSWER = 0.15

LineKind = Literal["ok", "error", "event", "boot", "info", "value", "garbage"]


@dataclass(frozen=True)
class Dialect:
    """How one firmware family's lines look. Patterns match a whole line (CR/LF removed)."""

    name: str
    ok: re.Pattern[bytes]  # final line of a successful command
    error: re.Pattern[bytes]  # final line of a failed command; group 1 is the code
    event: re.Pattern[bytes]  # unsolicited: what the radio heard or did
    boot: re.Pattern[bytes]  # the line that says the modem has (re)started and is ready
    info: re.Pattern[bytes]  # other harmless lines (the rest of a boot banner)
    value: re.Pattern[bytes]  # a value line inside a command's answer
    meaning: Callable[[str], ErrorMeaning]  # error code (as printed) -> datasheet meaning
    # Error lines the modem may also print on its own (a broken packet heard): see _ASYNC_GRACE.
    radio_error: Callable[[str], bool] = lambda code: False
    # Lines whose length is in the line itself because their data may hold CR/LF (REYAX +RCV):
    # measure(buffer starting with frame_start) -> whole frame length incl. CR/LF, None if more
    # bytes are needed, -1 if the header is not a valid frame (then the line is cut at CR/LF).
    frame_start: bytes | None = None
    measure: Callable[[bytes], int | None] | None = None

    def classify(self, line: bytes) -> LineKind:
        for kind, pattern in (
            ("event", self.event),
            ("ok", self.ok),
            ("error", self.error),
            ("boot", self.boot),
            ("value", self.value),
            ("info", self.info),
        ):
            if pattern.fullmatch(line):
                return kind  # type: ignore[return-value]
        return "garbage"

    def error_code(self, line: bytes) -> str:
        match = self.error.fullmatch(line)
        return match.group(1).decode("ascii", "replace") if match else line.decode("ascii", "replace")

    def resync(self, line: bytes) -> tuple[LineKind, bytes, bytes]:
        """Split noise off the front of a line: (kind, the recognised tail, the noise before it)."""
        kind = self.classify(line)
        if kind != "garbage":
            return kind, line, b""
        for start in range(1, len(line)):
            if line[start] in b"+AORC-":  # where any known line of either family can begin
                tail_kind = self.classify(line[start:])
                if tail_kind != "garbage":
                    return tail_kind, line[start:], line[:start]
        return "garbage", b"", line


class LineFramer:
    """Pure: bytes from the modem in, complete lines out (CR/LF removed, empty lines skipped).

    Memory is bounded: a line longer than `max_line` without a line end is emitted as it is (it is
    noise, and the classifier will say so). Length-framed lines are cut by their own length.
    """

    def __init__(
        self,
        *,
        frame_start: bytes | None = None,
        measure: Callable[[bytes], int | None] | None = None,
        max_line: int = 1024,
        stale_after: float = _STALE_FRAME,
    ) -> None:
        self._buf = bytearray()
        self._frame_start = frame_start if measure is not None else None
        self._measure = measure
        self._max_line = max_line
        self._stale_after = stale_after
        self._waiting_since: float | None = None
        self._unframed = False  # the frame at the head gave up on its length: cut it at CR/LF
        self._partial_since: float | None = None

    def feed(self, data: bytes, now: float = 0.0) -> list[bytes]:
        self._buf += data
        return self._drain(now)

    def expire(self, now: float) -> list[bytes]:
        """Called when no bytes came for a while: an incomplete frame goes stale, and a partial line
        left waiting that long is emitted as it is (a modem ends its lines at once: it is noise)."""
        out = self._drain(now)
        if self._buf and self._partial_since is not None and now - self._partial_since >= self._stale_after:
            out.append(bytes(self._buf))
            self._buf.clear()
            self._consumed_head()
        return out

    @property
    def pending(self) -> int:
        return len(self._buf)

    def _drain(self, now: float) -> list[bytes]:
        out: list[bytes] = []
        buf = self._buf
        while True:
            skip = 0
            while skip < len(buf) and buf[skip] in b"\r\n":
                skip += 1
            if skip:
                del buf[:skip]
            if not buf:
                break
            newline = buf.find(b"\n")
            if self._frame_start is not None and self._measure is not None:
                start = buf.find(self._frame_start, 0, newline if newline >= 0 else len(buf))
                if start > 0:  # noise in front of a framed line: emit it on its own
                    out.append(bytes(buf[:start]))
                    del buf[:start]
                    continue
                if start == 0 and not self._unframed:
                    size = self._measure(bytes(buf))
                    if size is not None and size > 0:
                        out.append(bytes(buf[:size]).rstrip(b"\r\n"))
                        del buf[:size]
                        self._waiting_since = None
                        continue
                    if size is None:
                        if self._waiting_since is None:
                            self._waiting_since = now
                        if now - self._waiting_since < self._stale_after and len(buf) <= 4 * self._max_line:
                            break
                    self._unframed = True  # invalid or stale: fall back to the line end
            if newline < 0:
                if len(buf) > self._max_line:
                    out.append(bytes(buf))
                    buf.clear()
                    self._consumed_head()
                break
            line = bytes(buf[:newline]).rstrip(b"\r")
            del buf[: newline + 1]
            self._consumed_head()
            if line:
                out.append(line)
        if not buf:
            self._partial_since = None
        elif self._partial_since is None:
            self._partial_since = now
        return out

    def _consumed_head(self) -> None:
        self._waiting_since = None
        self._unframed = False


@dataclass(frozen=True)
class AtReply:
    """A command's answer: its value lines and the final line."""

    command: str
    lines: tuple[bytes, ...]
    final: bytes


@dataclass(frozen=True)
class AtEvent:
    """An unsolicited line, with when it was read (monotonic seconds and wall-clock time)."""

    line: bytes
    at: float
    received: datetime


@dataclass
class _Pending:
    command: bytes
    extra_ok: frozenset[bytes]
    ends_on_boot: bool = False
    value_is_final: bool = False
    lines: list[bytes] = field(default_factory=list)
    final: bytes | None = None
    radio_error: bytes | None = None
    radio_error_at: float = 0.0
    noise: bytearray = field(default_factory=bytearray)


def _open_problem(exc: BaseException) -> str:
    code = getattr(exc, "errno", None)
    if code == errno.ENOENT:
        return "no such device: is the modem plugged in and its udev rule installed?"
    if code in (errno.EACCES, errno.EPERM):
        return "permission denied: the agent's user needs the dialout group"
    if code in (errno.EAGAIN, errno.EBUSY):
        return "port in use by another program (a terminal left open? `fuser -v` names it)"
    return f"cannot open the port: {exc}"


class AtChannel:
    """One modem's serial port: `command` waits for the answer, `next_event` for unsolicited lines.

    Commands are serialised (one at a time, from any thread). Event lines are queued (at most
    `max_events`; the oldest are dropped and counted beyond that). ``boots`` counts boot messages
    seen, so a driver notices a modem that restarted on its own and lost its settings. ``noise_bytes``
    counts bytes that were not any known line: a steady rise means wrong baud rate or a bad cable.
    """

    def __init__(
        self,
        port: str,
        *,
        baudrate: int,
        dialect: Dialect,
        name: str | None = None,
        model: str = "?",
        timeout: float = 1.0,
        log: logging.Logger | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        max_events: int = 1024,
    ) -> None:
        self.port, self.baudrate, self.dialect = port, baudrate, dialect
        self.name = name or port
        self.model = model
        self.timeout = timeout
        self.log = log or logging.getLogger("uncia.lora")
        self._now = now
        self.boots = 0
        self.noise_bytes = 0
        self.events_dropped = 0
        self._events: deque[AtEvent] = deque()
        self._max_events = max_events
        self._cond = threading.Condition()
        self._command_lock = threading.Lock()
        self._pending: _Pending | None = None
        self._failed: str | None = None
        self._timed_out_at = -1e9
        self._closing = threading.Event()
        self._framer = LineFramer(frame_start=dialect.frame_start, measure=dialect.measure)
        try:
            self._serial = serial.serial_for_url(
                port, baudrate=baudrate, exclusive=True, timeout=_READ_SLICE, write_timeout=2.0
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            raise ModemError(f"{self.label}: {_open_problem(exc.__context__ or exc)}") from exc
        self._reader = threading.Thread(target=self._read_loop, name=f"at-{self.name}", daemon=True)
        self._reader.start()

    @property
    def label(self) -> str:
        """How every log line and error names this modem: ``lora0 (/dev/uncia-lora0, RYLR998)``."""
        return f"{self.name} ({self.port}, {self.model})"

    # -- commands ---------------------------------------------------------------------------

    def command(
        self,
        command: str,
        *,
        data: bytes = b"",
        timeout: float | None = None,
        extra_ok: tuple[bytes, ...] = (),
        ends_on_boot: bool = False,
        value_is_final: bool = False,
    ) -> AtReply:
        """Send ``command`` (+ raw `data`) and CR/LF; return the answer, or raise.

        Raises `ModemTimeout` when no final line comes within `timeout` and `ModemError` on an error
        line (message: the datasheet meaning and a hint) or a lost port. `extra_ok` names further
        lines that end this command successfully (``+RESET`` for a REYAX soft reset); with
        `ends_on_boot` a boot message ends it too (a RUI3 ``AT+NWM`` reboots the module); with
        `value_is_final` the first value line is the whole answer (REYAX queries print no ``+OK``).
        """
        wait = self.timeout if timeout is None else timeout
        with self._command_lock:
            late = self._timed_out_at + _LATE_ANSWER - time.monotonic()
            if late > 0:
                time.sleep(late)
            pending = _Pending(command.encode("ascii"), frozenset(extra_ok), ends_on_boot, value_is_final)
            with self._cond:
                self._raise_if_failed(command)
                self._pending = pending
            self.log.debug("%s: -> %s%s", self.label, command, f" + {len(data)} data bytes" if data else "")
            try:
                self._write(pending.command + data + b"\r\n", command)
                final = self._await_final(pending, wait)
            finally:
                with self._cond:
                    self._pending = None
            if final is None:
                self._timed_out_at = time.monotonic()
                message = self._timeout_message(command, wait, pending)
                self.log.warning("%s", message)
                raise ModemTimeout(message, command=command)
            if self.dialect.classify(final) == "error":
                code = self.dialect.error_code(final)
                meaning = self.dialect.meaning(code)
                message = f"{self.label}: {meaning.describe(final.decode('ascii', 'replace'))} after {command} — {meaning.hint}"
                self.log.warning("%s", message)
                raise ModemError(message, code=int(code) if code.isdigit() else code, command=command)
            self.log.debug("%s: <- %s", self.label, b" | ".join([*pending.lines, final]).decode("latin-1"))
            return AtReply(command, tuple(pending.lines), final)

    def send_only(self, command: str) -> None:
        """Send a command that has no answer (a RUI3 ``ATZ`` reboots at once)."""
        with self._command_lock:
            with self._cond:
                self._raise_if_failed(command)
            self.log.debug("%s: -> %s (no answer expected)", self.label, command)
            self._write(command.encode("ascii") + b"\r\n", command)

    def _write(self, data: bytes, command: str) -> None:
        try:
            self._serial.write(data)
        except serial.SerialTimeoutException as exc:
            raise ModemTimeout(
                f"{self.label}: could not write {command}: the port stays blocked (hardware flow control "
                "on, or the USB adapter hung?)",
                command=command,
            ) from exc
        except (serial.SerialException, OSError) as exc:
            raise ModemError(
                f"{self.label}: port lost while sending {command}: {exc}", command=command
            ) from exc

    def _await_final(self, pending: _Pending, wait: float) -> bytes | None:
        deadline = time.monotonic() + wait
        with self._cond:
            while pending.final is None and self._failed is None:
                now = time.monotonic()
                remaining = deadline - now
                if pending.radio_error is not None:
                    remaining = min(remaining, pending.radio_error_at + _ASYNC_GRACE - now)
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            if pending.final is None and pending.radio_error is not None:
                return pending.radio_error  # nothing else came: it was this command's answer
            if pending.radio_error is not None:  # printed on its own by the radio, not the answer
                self._queue_event(pending.radio_error, pending.radio_error_at)
            if pending.final is None and self._failed is not None:
                raise ModemError(f"{self.label}: {self._failed}", command=pending.command.decode())
            return pending.final

    def _timeout_message(self, command: str, wait: float, pending: _Pending) -> str:
        head = f"{self.label}: no answer to {command} within {wait:.1f} s"
        unfinished = self._framer.pending  # bytes still waiting for a line end: noise too
        if pending.noise or unfinished:
            sample = repr(bytes(pending.noise[:16])) if pending.noise else "an unfinished line"
            return (
                f"{head}; {len(pending.noise) + unfinished} bytes of noise came back instead ({sample}) — wrong "
                f"baud rate (the port is set to {self.baudrate}) or a bad cable?"
            )
        if pending.lines:
            return f"{head}; the answer stopped after {pending.lines[-1]!r} — modem hung mid-answer?"
        return (
            f"{head} — modem hung or without power, TX/RX wires swapped, or wrong baud rate "
            f"(the port is set to {self.baudrate})?"
        )

    def _raise_if_failed(self, command: str) -> None:
        if self._failed is not None:
            raise ModemError(f"{self.label}: {self._failed}", command=command)

    # -- events and boots -------------------------------------------------------------------

    def next_event(self, timeout: float, match: Callable[[bytes], bool] | None = None) -> AtEvent | None:
        """The oldest queued event line accepted by `match` (others stay queued), or None."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            while True:
                for index, event in enumerate(self._events):
                    if match is None or match(event.line):
                        del self._events[index]
                        return event
                if self._failed is not None:
                    raise ModemError(f"{self.label}: {self._failed}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)

    def wait_boot(self, since: int, timeout: float) -> bool:
        """True once more than `since` boot messages have been seen (within `timeout`)."""
        with self._cond:
            return self._cond.wait_for(lambda: self.boots > since or self._failed is not None, timeout) and (
                self.boots > since
            )

    def discard_events(self, match: Callable[[bytes], bool]) -> int:
        with self._cond:
            keep = [event for event in self._events if not match(event.line)]
            dropped = len(self._events) - len(keep)
            self._events = deque(keep)
            return dropped

    def _queue_event(self, line: bytes, at: float) -> None:
        # Called with self._cond held.
        if len(self._events) >= self._max_events:
            self._events.popleft()
            self.events_dropped += 1
            if self.events_dropped in (1, 10, 100) or self.events_dropped % 1000 == 0:
                self.log.warning(
                    "%s: %d received lines dropped: nobody is reading packets from this modem",
                    self.label,
                    self.events_dropped,
                )
        self._events.append(AtEvent(line, at, self._now()))
        self._cond.notify_all()

    # -- the reader thread ------------------------------------------------------------------

    def _read_loop(self) -> None:
        port = self._serial
        while not self._closing.is_set():
            try:
                data = port.read(port.in_waiting or 1)  # blocks in select up to _READ_SLICE
            except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
                if not self._closing.is_set():
                    self._fail(f"serial port lost (USB unplugged, cable loose?): {exc}")
                return
            now = time.monotonic()
            lines = self._framer.feed(data, now) if data else self._framer.expire(now)
            for line in lines:
                self._dispatch(line, now)

    def _dispatch(self, raw: bytes, now: float) -> None:
        kind, line, noise = self.dialect.resync(raw)
        with self._cond:
            pending = self._pending
            if noise:
                self.noise_bytes += len(noise)
                if pending is not None:
                    pending.noise += noise
                self.log.debug("%s: noise on the line: %r", self.label, noise[:64])
            if kind == "garbage":
                return
            if kind == "event":
                self._queue_event(line, now)
            elif kind == "error" and self.dialect.radio_error(self.dialect.error_code(line)):
                if pending is None:
                    self._queue_event(line, now)
                elif pending.radio_error is None and pending.final is None:
                    pending.radio_error, pending.radio_error_at = line, now
                else:
                    self._queue_event(line, now)
            elif kind == "boot":
                self.boots += 1
                self.log.debug("%s: boot message %r", self.label, line)
                if pending is not None and pending.ends_on_boot and pending.final is None:
                    pending.final = line
            elif kind == "info":
                self.log.debug("%s: %r", self.label, line)
            elif pending is not None and pending.final is None:
                if line == pending.command:
                    pass  # command echo (RUI3 ATE)
                elif kind in ("ok", "error") or line in pending.extra_ok:
                    pending.final = line
                else:
                    pending.lines.append(line)
                    if pending.value_is_final and kind == "value":
                        pending.final = line
            else:
                self.log.debug("%s: line outside any command: %r", self.label, line)
            self._cond.notify_all()

    def _fail(self, reason: str) -> None:
        with self._cond:
            self._failed = reason
            self._cond.notify_all()
        self.log.warning("%s: %s", self.label, reason)

    def close(self) -> None:
        """Stop the reader and release the port (safe to call twice)."""
        self._closing.set()
        with contextlib.suppress(AttributeError, OSError, serial.SerialException):
            self._serial.cancel_read()
        if self._reader.is_alive() and self._reader is not threading.current_thread():
            self._reader.join(timeout=2.0)
        with contextlib.suppress(OSError, serial.SerialException):
            self._serial.close()
        with self._cond:
            if self._failed is None:
                self._failed = "port closed"
            self._cond.notify_all()


class AtModem(LoraModem):
    """What the AT-command drivers share: the channel, the label, and how a recovery ends.

    Subclasses set ``channel``, ``log``, ``settings`` (the last configured, or None), ``boot_timeout``
    and ``_reset`` (the reset line or None) in their constructor.
    """

    channel: AtChannel
    log: logging.Logger
    settings: RadioSettings | None
    boot_timeout: float
    _reset: Callable[[], None] | None

    # How the modem shows it restarted, and what that cost it (in the health-check warning).
    RESTART_SIGN = "boot banner"
    RESTART_LOSS = "its radio settings are lost until it is reconfigured"
    _boots_seen: int

    @property
    def label(self) -> str:
        return self.channel.label

    def health_check(self) -> None:
        """`AT` answers, and the modem did not restart on its own since it was configured (a restart
        without a reset from us loses the radio settings: raised, so the worker reconfigures it)."""
        self.channel.command("AT")
        if self.settings is not None and self.channel.boots > self._boots_seen:
            self._restarted()
            message = (
                f"{self.label}: restarted on its own ({self.RESTART_SIGN} without a reset from us: power dip,"
                f" brown-out or watchdog?) — {self.RESTART_LOSS}"
            )
            self.log.warning("%s", message)
            raise ModemError(message)

    def _restarted(self) -> None:
        """HOOK: the modem restarted (on its own or reset by us); forget state the restart lost."""

    def _reset_by_line_or(self, soft: Callable[[], str]) -> str:
        """Pulse the reset line when one is wired, else `soft` (the driver's own reset command);
        returns how it was done, for the log and the timeout message."""
        if self._reset is not None:
            how = "pulsing the reset line"
            self.log.warning("%s: %s", self.label, how)
            self._reset()
        else:
            how = soft()
        self._restarted()
        return how

    def _finish_recovery(self, boots: int, how: str, banner: str, cause: str) -> None:
        """After a reset (`how`): wait for the boot `banner`, then configure again (or just probe)."""
        if not self.channel.wait_boot(boots, self.boot_timeout):
            raise ModemTimeout(
                f"{self.label}: no {banner} within {self.boot_timeout:.1f} s after {how} — {cause}"
            )
        if self.settings is not None:
            self.configure(self.settings)
        else:
            self.probe()
        self.log.info("%s: recovered after %s", self.label, how)

    def close(self) -> None:
        self.channel.close()
