"""An AT-command LoRa modem on a real pseudo-terminal, for drivers that must not know the difference.

`EmulatedModem` owns a `PtyPort` and one thread that reads command lines from the host side and
answers them with a few milliseconds of delay, as the family's firmware does (`RylrEmulator`,
`Rak3172Emulator` supply the command set, error codes and boot banner). It keeps the radio state the
host configured and forwards a transmission heard on the air (`deliver`) only when that state would
really receive it. Field faults on demand: `hang` (stops answering anything, the firmware lock-up
seen in the field), `hardware_reset` (what the reset line does), a host opening the port at the
wrong baud rate (answers turn to noise, checked from the pty's own line settings), plus test hooks:
`ignore` a setting silently, `fail_next` a command with a given error, `deliver_during` a command,
`inject` raw bytes.

One thread, one `select` on the pty and a wake-up pipe; nothing polls.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import math
import os
import random
import select
import termios
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from edge.lora.modem import BANDS, RadioSettingError, RadioSettings
from simulators.pty_port import PtyPort

_BAUD_CONSTANTS = {
    rate: getattr(termios, f"B{rate}")
    for rate in (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)
    if hasattr(termios, f"B{rate}")
}


def airtime_s(
    spreading_factor: int, bandwidth_khz: float, coding_rate: int, preamble: int, size: int
) -> float:
    """Seconds on air of one explicit-header LoRa packet with CRC (Semtech AN1200.13), for timing."""
    symbol = (2**spreading_factor) / (bandwidth_khz * 1000.0)
    low_rate = 1 if symbol > 0.016 else 0
    numerator = 8 * size - 4 * spreading_factor + 28 + 16
    payload = 8 + max(math.ceil(numerator / (4 * (spreading_factor - 2 * low_rate))) * (coding_rate + 4), 0)
    return (preamble + 4.25 + payload) * symbol


def band_of(frequency_hz: int) -> str | None:
    """The first regional plan in `BANDS` that contains `frequency_hz`."""
    return next((name for name, (low, high) in BANDS.items() if low <= frequency_hz <= high), None)


@dataclass
class Reply:
    """What the firmware prints for one command: lines (CR/LF added unless `eol` is False), after an
    extra delay (a transmission), then optionally does something (`then`, e.g. reboot)."""

    lines: list[bytes]
    extra_delay: float = 0.0
    then: Callable[[], None] | None = None
    eol: bool = True
    error: bool = False


@dataclass
class _Scheduled:
    due: float
    seq: int
    action: bytes | Callable[[], None] = field(compare=False)

    def __lt__(self, other: _Scheduled) -> bool:
        return (self.due, self.seq) < (other.due, other.seq)


class EmulatedModem:
    """Base of the emulated modems: the pty, the thread, timing, radio matching and fault hooks.

    ``path`` is what the driver opens. ``radio`` is the radio as the host configured it (None until
    it is a valid `RadioSettings`), ``sent`` what the host transmitted, ``counters`` counts
    ``delivered``, ``filtered``, ``commands``, ``errors``, ``reboots``.
    """

    family = "?"
    eol = b"\r\n"

    def __init__(
        self,
        port: PtyPort | None = None,
        *,
        address: int = 1,
        rng: random.Random | None = None,
        response_delay: tuple[float, float] = (0.002, 0.008),
        boot_time: float = 0.05,
        baudrate: int = 115200,
        airtime_scale: float = 1.0,
    ) -> None:
        self.port = port if port is not None else PtyPort()
        self._own_port = port is None
        self.address = address
        self.rng = rng or random.Random()
        self.response_delay = response_delay
        self.boot_time = boot_time
        self.baudrate = baudrate
        self.airtime_scale = airtime_scale
        self.sent: list[bytes] = []
        self.counters: Counter[str] = Counter()
        self._lock = threading.RLock()
        self._hung = False
        self._booting = False
        self._ignored: set[str] = set()
        self._failures: list[tuple[str, bytes]] = []
        self._during: list[tuple[str, bytes]] = []
        self._schedule: list[_Scheduled] = []
        self._seq = itertools.count()
        self._last_due = 0.0
        self._inbuf = bytearray()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._tty_fd = -1
        self._factory_state()

    # -- what subclasses provide ----------------------------------------------------------

    def _factory_state(self) -> None:
        """Set the radio state a new module has (called once, before anything else)."""

    def _lose_volatile_state(self) -> None:
        """What a reboot forgets (settings kept in flash stay)."""

    def _boot_banner(self) -> bytes:
        raise NotImplementedError

    def _answer(self, command: bytes) -> Reply | None:
        """The firmware's reply to one raw command line (with its CR, without LF); None: no reply."""
        raise NotImplementedError

    def _receiving(self) -> bool:
        raise NotImplementedError

    def _matches(self, radio: RadioSettings) -> bool:
        raise NotImplementedError

    def _packet_line(self, payload: bytes, rssi: int, snr: float, sender: int) -> bytes:
        raise NotImplementedError

    def _after_packet(self) -> None:
        """A packet went to the host (single-packet receive modes stop here)."""

    def _radio_fields(self) -> dict[str, int | float] | None:
        raise NotImplementedError

    def _take_command(self) -> bytes | None:
        """Cut one command off the input buffer (default: up to LF); None when none is complete."""
        newline = self._inbuf.find(b"\n")
        if newline < 0:
            if len(self._inbuf) > 4096:  # a real UART buffer overflows: the firmware drops it
                self._inbuf.clear()
            return None
        command = bytes(self._inbuf[:newline])
        del self._inbuf[: newline + 1]
        return command

    # -- the public API -------------------------------------------------------------------

    @property
    def path(self) -> str:
        return self.port.path

    @property
    def radio(self) -> RadioSettings | None:
        with self._lock:
            fields = self._radio_fields()
        if fields is None:
            return None
        band = band_of(int(fields["frequency_hz"]))
        if band is None:
            return None
        try:
            return RadioSettings(band=band, **fields)  # type: ignore[arg-type]
        except (RadioSettingError, TypeError, ValueError):
            return None

    def start(self) -> None:
        """Power on: the thread starts and the boot banner follows after ``boot_time``."""
        if self._thread is not None:
            return
        with contextlib.suppress(OSError):
            self._tty_fd = os.open(self.port.slave_name, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        self._thread = threading.Thread(target=self._run, name=f"emulated-{self.family}", daemon=True)
        self._thread.start()
        with self._lock:
            self._reboot(count=False)

    def wait_ready(self, timeout: float) -> bool:
        """True once the boot banner has gone out (after `start` or a reset) and commands are taken."""
        return self._ready.wait(timeout)

    def stop(self) -> None:
        self._stop.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        if self._tty_fd >= 0:
            os.close(self._tty_fd)
            self._tty_fd = -1
        if self._own_port:
            self.port.close()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._wake_r = self._wake_w = -1

    def run(self, *, duration: float | None = None, test_packet_every: float | None = None) -> int:
        """Block until `stop` (or Ctrl-C, or `duration` s); every `test_packet_every` s deliver a
        test packet on whatever radio the host configured (for bench checks of a whole unit).
        Returns how many test packets were forwarded."""
        start = time.monotonic()
        forwarded = sent = 0
        while not self._stop.is_set():
            left = None if duration is None else duration - (time.monotonic() - start)
            if left is not None and left <= 0:
                break
            wait = min(x for x in (left, test_packet_every, 3600.0) if x is not None)
            if self._stop.wait(wait) or test_packet_every is None:
                continue
            radio = self.radio
            if radio is not None:
                sent += 1
                packet = f"uncia test packet {sent}".encode()
                forwarded += self.deliver(packet, rssi=-80, snr=7.0, sender=0xFFFF, radio=radio)
        return forwarded

    def __enter__(self) -> EmulatedModem:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def deliver(
        self, payload: bytes, *, rssi: int, snr: float, sender: int = 0, radio: RadioSettings
    ) -> bool:
        """A transmission heard on the air. Forwarded to the host (as the family's packet line) only
        if the modem is alive, in receive mode and tuned as `radio`; returns whether it was."""
        with self._lock:
            if self._hung or self._booting or not self._receiving() or not self._matches(radio):
                self.counters["filtered"] += 1
                return False
            self._write(self._packet_line(payload, rssi, snr, sender) + self.eol)
            self.counters["delivered"] += 1
            self._after_packet()
            return True

    def hang(self) -> None:
        """Stop answering anything until `hardware_reset` (or a power cycle)."""
        with self._lock:
            self._hung = True
            self._schedule.clear()
            self._inbuf.clear()

    def hardware_reset(self) -> None:
        """What pulsing the reset pin does: un-hang, reboot (banner after ``boot_time``), and forget
        what a reboot forgets on this family."""
        with self._lock:
            self._hung = False
            self._reboot()
        self._wake()

    # -- test hooks -----------------------------------------------------------------------

    def ignore(self, setting: str) -> None:
        """Answer OK to writes of `setting` (a `RadioSettings` field name) but do not apply them."""
        self._ignored.add(setting)

    def fail_next(self, prefix: str, response: str) -> None:
        """Answer the next command starting with `prefix` with the line `response` instead."""
        with self._lock:
            self._failures.append((prefix, response.encode("ascii")))

    def deliver_during(self, prefix: str, payload: bytes, *, rssi: int, snr: float, sender: int = 0) -> None:
        """Print a received packet inside the answer of the next command starting with `prefix`
        (after its value lines, before its final line), whatever the radio state."""
        with self._lock:
            self._during.append((prefix, self._packet_line(payload, rssi, snr, sender)))

    def inject(self, data: bytes) -> None:
        """Raw bytes to the host now (line noise, a half line)."""
        with self._lock:
            self._write(data)

    # -- internals ------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self._host_baud_ok():
            self.port.write(data)
        else:  # what the host's UART makes of our bytes at the wrong speed
            self.port.write(self._noise(len(data)))

    def _noise(self, size: int) -> bytes:
        return bytes(self.rng.choice(b"\x00\x80\xf8\xfe\xe0\x1c\xff\x06\r\n") for _ in range(max(1, size)))

    def _host_baud_ok(self) -> bool:
        if self._tty_fd < 0 or self.baudrate not in _BAUD_CONSTANTS:
            return True
        try:
            speed = termios.tcgetattr(self._tty_fd)[5]
        except termios.error:
            return True
        return speed == _BAUD_CONSTANTS[self.baudrate]

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"!")

    def _at(self, delay: float, action: bytes | Callable[[], None]) -> None:
        """Schedule output (or an action) `delay` s from now, never before what is already queued."""
        due = max(time.monotonic() + delay, self._last_due)
        self._last_due = due
        heapq.heappush(self._schedule, _Scheduled(due, next(self._seq), action))
        self._wake()

    def _delay(self) -> float:
        low, high = self.response_delay
        return self.rng.uniform(low, high)

    def _reboot(self, count: bool = True) -> None:
        self._booting = True
        self._ready.clear()
        self._schedule.clear()
        self._last_due = 0.0
        self._inbuf.clear()
        self._lose_volatile_state()
        if count:
            self.counters["reboots"] += 1

        def ready() -> None:
            self._booting = False
            self._write(self._boot_banner())
            self._ready.set()

        self._at(self.boot_time, ready)

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                wait = 0.5 if not self._schedule else max(0.0, self._schedule[0].due - time.monotonic())
            watch = [self._wake_r] + ([self.port.fileno()] if self.port.present else [])
            try:
                ready, _, _ = select.select(watch, [], [], wait)
            except (OSError, ValueError):
                ready = []
            if self._wake_r in ready:
                with contextlib.suppress(OSError):
                    os.read(self._wake_r, 4096)
            if self.port.present and self.port.fileno() in ready:
                data = self.port.read(0.0)
                if data:
                    self._received(data)
            self._run_due()

    def _run_due(self) -> None:
        with self._lock:
            now = time.monotonic()
            while self._schedule and self._schedule[0].due <= now:
                item = heapq.heappop(self._schedule)
                if isinstance(item.action, bytes):
                    self._write(item.action)
                else:
                    item.action()

    def _received(self, data: bytes) -> None:
        with self._lock:
            if self._hung or self._booting:
                return
            if not self._host_baud_ok():
                # The firmware reads noise and complains at its own speed: noise for the host too.
                self.counters["errors"] += 1
                self._at(self._delay(), self._noise(8))
                return
            self._inbuf += data
            while (command := self._take_command()) is not None:
                self.counters["commands"] += 1
                self._handle(command)

    def _handle(self, command: bytes) -> None:
        text = command.decode("latin-1")
        for index, (prefix, response) in enumerate(self._failures):
            if text.startswith(prefix):
                del self._failures[index]
                self.counters["errors"] += 1
                self._at(self._delay(), response + self.eol)
                return
        reply = self._answer(command)
        if reply is None:
            return
        lines = list(reply.lines)
        for index, (prefix, line) in enumerate(self._during):
            if text.startswith(prefix):
                del self._during[index]
                lines.insert(max(0, len(lines) - 1), line)
                break
        if reply.error:
            self.counters["errors"] += 1
        out = b"".join(line + (self.eol if reply.eol else b"") for line in lines)
        self._at(self._delay() + reply.extra_delay, out)
        if reply.then is not None:
            self._at(0.0, reply.then)
