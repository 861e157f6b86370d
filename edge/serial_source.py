"""Reading a GPS receiver, collar dock or modem on a serial port that may come and go.

On a unit the device is a USB serial adapter: it is unplugged, loses power, or is held by another
program. `SerialSource` hides all that from the data path: it opens the port exclusively, hands out
byte chunks as they arrive, and when the device disappears it logs one warning, keeps retrying with
jittered exponential backoff, and logs one info line when it is back.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import random
import termios
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Iterator

import serial

# A chunk never exceeds this, so a burst (or a loop:// queue) cannot balloon memory downstream.
_MAX_CHUNK = 64 * 1024
# Longest single blocking read. A threading.Event cannot wake select(), so this bounds how late a
# `stop` is noticed when nobody calls close() (which wakes the read at once via cancel_read).
# Four wake-ups a second of an idle source cost microseconds: this is not polling for data.
_READ_SLICE = 0.25
# During a long outage, remind the log this often that the device is still missing.
_REMIND_EVERY = 300.0
# A connection that stayed up this long resets the backoff; a flapping cable keeps backing off.
_STABLE_AFTER = 10.0
# At most this many "device lost" warnings per window; more drop-outs (a loose connector) are
# counted and summarised in the next line that is logged instead of flooding the log.
_WARN_BUDGET = 3
_WARN_WINDOW = 60.0
_HINT_MISSING = "no such device: is the GPS plugged in and the udev rule installed?"


class SourceError(Exception):
    """The source can never work as configured (malformed URL, impossible setting): fix the config.

    Everything else (device missing, unplugged, busy, no permission yet) is retried, not raised.
    """


def backoff_delay(attempt: int, backoff_min: float, backoff_max: float, rng: random.Random) -> float:
    """Seconds to wait before reopen attempt number `attempt` (0 = first retry).

    The ceiling doubles from `backoff_min` up to `backoff_max`; the delay is drawn from the upper half
    of it so that sources sharing one USB hub do not all retry in lockstep. Always within
    [backoff_min, backoff_max].
    """
    ceiling = min(backoff_max, backoff_min * 2.0 ** min(attempt, 64))
    return min(ceiling, rng.uniform(max(backoff_min, ceiling / 2), ceiling))


def explain(exc: BaseException, *, reading: bool) -> str:
    """What a failed open or read means, in the words a technician at the unit can act on."""
    code = getattr(exc, "errno", None)
    if code is None and isinstance(exc, termios.error) and exc.args and isinstance(exc.args[0], int):
        code = exc.args[0]
    # pyserial repeats the path up to three times in its text; the errno's own words are enough.
    detail = os.strerror(code) if isinstance(code, int) else str(exc)
    if code == errno.ENOENT:
        what = _HINT_MISSING
    elif code in (errno.EACCES, errno.EPERM):
        what = "permission denied: the agent's user needs the dialout group (usermod -aG dialout)"
    elif code in (errno.EAGAIN, errno.EBUSY):
        what = (
            "port is in use by another program (a second uncia agent, or a terminal program left "
            "open: `fuser -v` on the port names it); only one program may read it"
        )
    elif reading:
        what = "device lost: USB unplugged, cable loose or device without power?"
    elif code == errno.ENOTTY or "Could not configure port" in str(exc):
        what = "this path is not a serial port: check the configured port and the udev rule"
    elif code in (errno.ENXIO, errno.ENODEV, errno.EIO):
        what = "device listed but not answering: replug it, or check power and cable"
    else:
        what = "cannot open the port"
    return f"{what} [{detail}]"


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


class _QuietSpell:
    """Tracks one spell without data, so the consumer hears b"" exactly once per spell."""

    def __init__(self, idle: float) -> None:
        self.idle = idle
        self.reset()

    def reset(self) -> None:
        self.since = time.monotonic()
        self.told = False

    def left(self, now: float) -> float:
        return math.inf if self.told else self.since + self.idle - now

    def due(self, now: float) -> bool:
        if self.told or now - self.since < self.idle:
            return False
        self.told = True
        return True


class SerialSource:
    """One serial device (GPS receiver, collar dock, LoRa or cell modem) read as a stream of bytes.

    Give it the udev link (``/dev/uncia-gps0``) rather than ``/dev/ttyUSB0``: USB numbering changes
    when a device is replugged, the link follows it. Any pyserial URL works too (``socket://host:port``
    for a GPS on a network bridge, ``loop://`` and ``spy://`` for tests and debugging).

    The port is opened exclusively (an advisory flock, as pyserial does it): a second agent or a
    terminal program that also locks is refused, the log says so, and the source waits for the port.
    ModemManager does not take that lock: keep it off the device with the udev rule
    (``ENV{ID_MM_DEVICE_IGNORE}="1"``).
    Unplugging logs one warning, replugging one info line (with how long it was gone), and reading
    resumes within a couple of seconds without restarting the agent. A device missing at start is the
    same situation. Only a configuration that can never work raises `SourceError`.

    Health (read-only): ``connected``, ``bytes_read``, ``reconnects`` (times the port came back after
    being lost) and ``last_error`` (the most recent problem, kept after recovery for the report).
    One thread reads with `read_chunks`; any thread may call `close`.
    """

    def __init__(
        self,
        port: str,
        *,
        baudrate: int = 9600,
        name: str | None = None,
        idle: float = 0.5,
        backoff_min: float = 0.1,
        backoff_max: float = 1.0,
        rng: random.Random | None = None,
        log: logging.Logger | None = None,
    ) -> None:
        if not idle > 0:
            raise ValueError(f"idle must be a positive number of seconds, not {idle!r}")
        if not 0 < backoff_min <= backoff_max:
            raise ValueError(f"need 0 < backoff_min <= backoff_max, got {backoff_min!r}, {backoff_max!r}")
        self.port = port
        self.name = name or port
        self.baudrate = baudrate
        self.idle = idle
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self._label = f"{name} ({port})" if name and name != port else port
        self._rng = rng if rng is not None else random.Random()
        self._log = log if log is not None else logging.getLogger(__name__)
        # Split `idle` into equal read slices so the quiet spell is noticed on time.
        self._slice = idle / math.ceil(idle / _READ_SLICE)
        # Catches unknown URL schemes and bad baud rates now, at configuration time; no I/O happens.
        self._open_port(dry_run=True)
        self._check_network_url()

        self.connected = False
        self.bytes_read = 0
        self.reconnects = 0
        self.last_error: str | None = None

        # _lock guards _serial, _busy, _closing and _reading against close() from another thread.
        self._lock = threading.Lock()
        self._serial: serial.SerialBase | None = None
        self._busy = False  # the reader is inside a pyserial call on _serial
        self._closing = False
        self._reading = False

        self._attempt = 0
        self._up_since = 0.0
        self._ever_connected = False
        self._outage_start: float | None = None
        self._outage_logged = False
        self._last_reminder = 0.0
        self._warned_at: deque[float] = deque(maxlen=_WARN_BUDGET)
        self._unlogged_drops = 0

    # -- public -------------------------------------------------------------------------------------

    def read_chunks(self, stop: threading.Event) -> Iterator[bytes]:
        """Yield byte chunks as they arrive, and b"" once per spell of `idle` seconds without data.

        Runs until `stop` is set or `close` is called, reconnecting as often as needed; the port is
        released when the iterator ends. Raises `SourceError` only if the port can never be opened.
        """
        with self._lock:
            if self._reading:
                raise RuntimeError(f"{self._label}: read_chunks is already running")
            self._reading = True
        try:
            yield from self._run(stop)
        finally:
            self._drop_port()
            with self._lock:
                self._reading = False

    def close(self) -> None:
        """Stop reading and release the port; a blocked read returns at once. Final."""
        with self._lock:
            self._closing = True
            port = self._serial
            if port is None:
                return
            if self._busy:
                # The reader owns the port while inside read(); it closes it on its way out.
                with contextlib.suppress(Exception):
                    port.cancel_read()
                return
            self._serial = None
            self.connected = False
        _close_quietly(port)

    # -- the reading loop ----------------------------------------------------------------------------

    def _run(self, stop: threading.Event) -> Iterator[bytes]:
        quiet = _QuietSpell(self.idle)
        while True:
            with self._lock:
                if self._closing or stop.is_set():
                    return
                port = self._serial
                self._busy = port is not None
            if port is None:
                try:
                    self._connect()
                # SerialException is an OSError; termios.error escapes pyserial's open() when the
                # device vanishes half-way through it (unplugged while being opened).
                except (OSError, termios.error) as exc:
                    self._failed(exc, reading=False)
                    yield from self._pause(stop, quiet)
                continue
            try:
                chunk, error = self._read_waiting(port), None
            except OSError as exc:
                chunk, error = b"", exc
            finally:
                with self._lock:
                    self._busy = False
            if error is not None:
                self._drop_port()
                self._failed(error, reading=True)
                yield from self._pause(stop, quiet)
                continue
            self._healthy()
            if chunk:
                self.bytes_read += len(chunk)
                quiet.reset()
                yield chunk
            elif quiet.due(time.monotonic()):
                yield b""

    def _read_waiting(self, port: serial.SerialBase) -> bytes:
        # read(1) sleeps in select() until a byte, a hang-up, cancel_read() or the slice timeout;
        # then everything already waiting is taken in one go.
        first = port.read(1)
        if not first:
            return b""
        buf = bytearray(first)
        while len(buf) < _MAX_CHUNK and (waiting := port.in_waiting):
            buf += port.read(min(waiting, _MAX_CHUNK - len(buf)))
        return bytes(buf)

    def _pause(self, stop: threading.Event, quiet: _QuietSpell) -> Iterator[bytes]:
        """Wait out one backoff delay, interruptibly; an outage is a quiet spell too."""
        delay = backoff_delay(self._attempt, self.backoff_min, self.backoff_max, self._rng)
        self._attempt += 1
        deadline = time.monotonic() + delay
        while not (stop.is_set() or self._closing):
            now = time.monotonic()
            if quiet.due(now):
                yield b""
                continue
            left = deadline - now
            if left <= 0:
                return
            stop.wait(min(left, quiet.left(now)))

    # -- opening and closing ---------------------------------------------------------------------------

    def _open_port(self, *, dry_run: bool = False) -> serial.SerialBase:
        try:
            return serial.serial_for_url(
                self.port,
                baudrate=self.baudrate,
                timeout=self._slice,
                exclusive=True,
                do_not_open=dry_run,
            )
        except (ValueError, KeyError) as exc:
            # KeyError: pyserial 3.5's loop:// and spy:// choke on their own error message (braces
            # in a str.format template) when the URL has an unknown option.
            raise SourceError(
                f"{self._label}: unusable port setting (check the URL, its options and the baud rate): {exc}"
            ) from exc
        except serial.SerialException as exc:
            # pyserial's URL handlers report a malformed URL with this wording and no errno.
            if "expected a string in the form" in str(exc):
                raise SourceError(f"{self._label}: malformed port URL: {exc}") from exc
            raise

    def _check_network_url(self) -> None:
        # Hand-written because pyserial 3.5 turns a missing port number into a TypeError inside
        # open(), which then looks like an ordinary (retryable) failure to connect.
        scheme, _, _ = self.port.partition("://")
        if scheme.lower() not in ("socket", "rfc2217"):
            return
        try:
            parts = urllib.parse.urlsplit(self.port)
            ok = bool(parts.hostname) and parts.port is not None
        except ValueError:
            ok = False
        if not ok:
            raise SourceError(f"{self._label}: malformed port URL: expected {scheme}://<host>:<port>")

    def _connect(self) -> None:
        port = self._open_port()
        with self._lock:
            if self._closing:
                port_to_close: serial.SerialBase | None = port
            else:
                port_to_close = None
                self._serial = port
                self.connected = True
                self._up_since = time.monotonic()
        if port_to_close is not None:
            _close_quietly(port_to_close)

    def _drop_port(self) -> None:
        with self._lock:
            port, self._serial = self._serial, None
            self.connected = False
            self._busy = False
        if port is not None:
            _close_quietly(port)

    # -- what gets logged ------------------------------------------------------------------------------

    def _failed(self, exc: Exception, *, reading: bool) -> None:
        reason = explain(exc, reading=reading)
        self.last_error = reason
        now = time.monotonic()
        if self._outage_start is None:
            self._outage_start = self._last_reminder = now
            self._outage_logged = (
                len(self._warned_at) < _WARN_BUDGET or now - self._warned_at[0] >= _WARN_WINDOW
            )
            if self._outage_logged:
                self._warned_at.append(now)
                self._log.warning("%s: %s; retrying in the background", self._label, reason)
            else:
                self._unlogged_drops += 1
                self._log.debug("%s: %s (one of many drop-outs, summarised later)", self._label, reason)
        elif now - self._last_reminder >= _REMIND_EVERY:
            self._last_reminder = now
            gone = _duration(now - self._outage_start)
            self._log.warning("%s: still unavailable after %s: %s", self._label, gone, reason)
        self._summarise_drops(now)

    def _healthy(self) -> None:
        now = time.monotonic()
        if self._attempt and now - self._up_since >= _STABLE_AFTER:
            self._attempt = 0
        if self._outage_start is not None:
            gone = _duration(max(0.0, self._up_since - self._outage_start))
            if not self._ever_connected:
                self._log.info(
                    "%s: device found after %s, reading at %d baud", self._label, gone, self.baudrate
                )
            else:
                self.reconnects += 1
                if self._outage_logged:
                    self._log.info("%s: device is back after %s", self._label, gone)
            self._outage_start = None
        elif not self._ever_connected:
            self._log.info("%s: open, reading at %d baud", self._label, self.baudrate)
        self._ever_connected = True
        self._summarise_drops(now)

    def _summarise_drops(self, now: float) -> None:
        if self._unlogged_drops and now - self._warned_at[-1] >= _WARN_WINDOW:
            self._log.warning(
                "%s: dropped out %d more times in the last %s: check cable and connector",
                self._label,
                self._unlogged_drops,
                _duration(now - self._warned_at[-1]),
            )
            self._warned_at.append(now)
            self._unlogged_drops = 0


def _close_quietly(port: serial.SerialBase) -> None:
    # Closing a port whose device is gone can itself fail; the descriptor is released regardless.
    with contextlib.suppress(OSError):
        port.close()
