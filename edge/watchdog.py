"""Telling systemd how the agent is doing: ready, status, stopping, and the watchdog ping.

The units in deploy/systemd/ run the agents as ``Type=notify`` with ``WatchdogSec=``. systemd then
waits for ``READY=1`` before it calls the unit started, shows the last ``STATUS=`` line in
``systemctl status``, and restarts the unit when ``WATCHDOG=1`` stops arriving. `Watchdog` pings
only while the agent says all its workers are alive (``Gateway.alive()``, ``CameraUnit.alive()``):
a dead worker thread, or a hung process, ends the pings and systemd restarts the agent.

The protocol (sd_notify(3)): newline-separated ``KEY=value`` lines in one datagram to the AF_UNIX
socket named by ``$NOTIFY_SOCKET`` (a path, or an abstract name when it starts with ``@``);
``$WATCHDOG_USEC`` is the watchdog timeout, to be pinged at half of it. Without ``$NOTIFY_SOCKET``
(run by hand, in tests, under another init) everything here does nothing.

Hand-written (the protocol is one ``sendto``) rather than a library, after looking at PyPI:
``sdnotify`` has had no release since 2017 and swallows every error without a word;
``systemd-python`` binds libsystemd in C, so the Pi would need its headers and a compiler to build
it into our venv; ``systemd-watchdog``/``sd-notify`` decide when a ping is due from the wall clock,
which jumps when a Pi without a real-time clock gets its time from NTP or GPS after boot — a jump
backwards would stop the pings and restart a healthy agent. Here waits use the monotonic clock.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator, Mapping

_LOG = logging.getLogger("uncia.watchdog")
_SEND_TIMEOUT_S = 1.0


class SystemdNotifier:
    """The agent's line to systemd (``$NOTIFY_SOCKET``); every method is a no-op when it is unset.

    Sending never raises: a failed notification is logged once (a watchdog that cannot reach
    systemd will be noticed by systemd itself), and the agent keeps running.
    """

    def __init__(
        self, environ: Mapping[str, str] | None = None, *, log: logging.Logger | None = None
    ) -> None:
        env = os.environ if environ is None else environ
        self.log = log or _LOG
        self.address: str | bytes | None = None
        raw = env.get("NOTIFY_SOCKET", "")
        if raw.startswith("@"):
            self.address = "\0" + raw[1:]  # abstract namespace: a leading NUL byte instead of '@'
        elif raw.startswith("/"):
            self.address = raw
        elif raw:
            # e.g. "vsock:2:1234" (systemd 253+, for virtual machines): not a Pi's case.
            self.log.warning(
                "NOTIFY_SOCKET=%r is not a path or an abstract socket: not notifying systemd", raw
            )
        self.watchdog_usec = _watchdog_usec(env)
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._failed_once = False

    @property
    def enabled(self) -> bool:
        """True when systemd asked for notifications (the agent runs as a Type=notify unit)."""
        return self.address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between watchdog pings (half of ``WatchdogSec``), None when no watchdog is set."""
        if not self.enabled or self.watchdog_usec is None:
            return None
        return self.watchdog_usec / 2_000_000

    def notify(self, *lines: str) -> bool:
        """Send ``KEY=value`` lines in one datagram; True if systemd got them (False when disabled)."""
        if self.address is None or not lines:
            return False
        message = "\n".join(lines).encode("utf-8", "replace")
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                    # A datagram to a full queue blocks (systemd busy or hung): never hold up the
                    # agent, above all not its stop, for longer than this.
                    self._sock.settimeout(_SEND_TIMEOUT_S)
                self._sock.sendto(message, self.address)
            except OSError as exc:
                if not self._failed_once:
                    self._failed_once = True
                    self.log.warning("cannot notify systemd at %r (%s)", self.address, exc)
                return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """Start-up is done: systemd marks the unit active (and starts counting the watchdog)."""
        return self.notify("READY=1", *([_status_line(status)] if status else []))

    def status(self, text: str) -> bool:
        """One short line for ``systemctl status`` (newlines are folded into spaces)."""
        return self.notify(_status_line(text))

    def stopping(self, status: str | None = None) -> bool:
        """The agent is shutting down on purpose: no watchdog restart while it finishes."""
        return self.notify("STOPPING=1", *([_status_line(status)] if status else []))

    def ping(self) -> bool:
        """One watchdog ping (``WATCHDOG=1``)."""
        return self.notify("WATCHDOG=1")

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


def _status_line(text: str) -> str:
    return "STATUS=" + " ".join(text.split())


def _watchdog_usec(env: Mapping[str, str]) -> int | None:
    """``$WATCHDOG_USEC`` if it is meant for this process (``$WATCHDOG_PID`` unset or ours)."""
    usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) <= 0:
        return None
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None
    return int(usec)


def _thread_names() -> set[str]:
    return {t.name for t in threading.enumerate()}


class Watchdog:
    """Pings systemd's watchdog every `interval` seconds while ``alive()`` is True.

    The first time ``alive()`` is False (or raises) it logs, once, which worker threads have gone
    since `start` (or what `describe` says), sets a STATUS line saying so, and stops pinging for
    good: systemd restarts the unit when ``WatchdogSec`` has passed without a ping. ``interval``
    defaults to the notifier's (half of ``WatchdogSec``); with no watchdog configured `start` does
    nothing. ``status``, if given, is asked for a short line at each ping and sent when it changes.
    """

    def __init__(
        self,
        notifier: SystemdNotifier,
        alive: Callable[[], bool],
        *,
        interval: float | None = None,
        status: Callable[[], str] | None = None,
        describe: Callable[[], str] | None = None,
        log: logging.Logger | None = None,
    ) -> None:
        self.notifier = notifier
        self.alive = alive
        self.interval = interval if interval is not None else notifier.watchdog_interval
        self.status = status
        self.describe = describe
        self.log = log or _LOG
        self.pings = 0
        self.dead: str | None = None  # what was dead when the pings stopped
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._threads_at_start: set[str] = set()
        self._last_status: str | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start pinging (no-op without a notify socket or a watchdog interval)."""
        if not self.notifier.enabled or not self.interval or self._thread is not None:
            return
        self._threads_at_start = _thread_names()
        self._thread = threading.Thread(target=self._run, name="uncia-watchdog", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop pinging (call it before stopping the agent, or its workers' ends look like deaths)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        assert self.interval is not None
        while True:
            if not self._healthy():
                return
            self.notifier.ping()
            self.pings += 1
            self._send_status()
            if self._stop.wait(self.interval):
                return

    def _healthy(self) -> bool:
        try:
            if self.alive():
                return True
            reason = self._what_died()
        except Exception as exc:  # a broken health check must not look like a healthy agent
            reason = f"the liveness check failed ({exc!r})"
        if self._stop.is_set():  # the agent is being stopped: its workers end on purpose
            return False
        self.dead = reason
        usec = self.notifier.watchdog_usec
        within = f"within {usec / 1e6:g} s (WatchdogSec)" if usec else "when its watchdog runs out"
        self.log.error("%s: no more watchdog pings, systemd restarts the unit %s", reason, within)
        self.notifier.status(f"failed: {reason}; waiting for the watchdog restart")
        return False

    def _what_died(self) -> str:
        if self.describe is not None:
            return self.describe()
        gone = sorted(self._threads_at_start - _thread_names())
        if gone:
            return "worker thread(s) stopped: " + ", ".join(gone)
        return "a worker reports it is not alive"

    def _send_status(self) -> None:
        if self.status is None:
            return
        try:
            text = self.status()
        except Exception:
            self.log.debug("status line failed", exc_info=True)
            return
        if text != self._last_status:
            self._last_status = text
            self.notifier.status(text)


@contextlib.contextmanager
def supervised(
    notifier: SystemdNotifier,
    alive: Callable[[], bool],
    *,
    status: Callable[[], str],
    stopping: str,
    log: logging.Logger | None = None,
) -> Iterator[Watchdog]:
    """An agent's run under systemd: READY=1 with its status, watchdog pings while `alive()`, and on
    the way out the watchdog stopped first (the workers ending after it are not deaths), then
    STOPPING=1 with `stopping` before the caller stops the agent."""
    watchdog = Watchdog(notifier, alive, status=status, log=log)
    notifier.ready(status())
    watchdog.start()
    try:
        yield watchdog
    finally:
        watchdog.stop()
        notifier.stopping(stopping)
