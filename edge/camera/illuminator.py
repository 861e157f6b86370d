"""The 940 nm infrared illuminator: on only while a night capture is exposing, never left on.

An IR lamp left burning empties a field battery in a night and lights up the trap for every animal
that can see a faint red glow. So the lamp is never switched on by itself: it is lit by
``with illuminator.lit(): ...`` around a capture and is off again when the block ends, whatever
happened inside it. Behind that, in order:

- a watchdog timer forces it off after ``max_on_s`` even if the capture hangs inside ``lit()``;
- ``close()`` switches it off before releasing the pin;
- at interpreter exit an ``atexit`` hook switches it off;
- ``switch_off_on_sigterm(illuminator)`` installs a SIGTERM handler (systemd's stop) that switches it
  off first, then exits as SIGTERM would have.

Hardware (for the technician)
-----------------------------
The Pi does not power the LEDs: GPIO **BCM 23 (physical pin 16)** drives the gate of a logic-level
N-MOSFET (specified at Vgs ≤ 2.5 V, e.g. AO3400A) through ~100 Ω, switching the low side of the IR
LED board or the enable input of its constant-current driver. **Fit a 100 kΩ pull-down from gate to
source.** It is what keeps the lamp OFF whenever nothing drives the pin: while the Pi boots, after
gpiozero's ``close()`` (which turns the pin back into an input), with the agent stopped, with a dead
Pi. GPIO 23 also comes up pulled low at power-on on the Pi, so there is no flash at boot.

What software cannot do: after ``kill -9`` or a kernel hang no Python code runs, and the kernel may
leave the line at its last level (its own words: it "may revert to its default state"). The
deployment therefore switches the pin off again after the agent stops for any reason (a systemd
``ExecStopPost=`` running ``pinctrl set 23 op dl``), and the agent switches it off when it starts
(``initial_value=False``). A unit that must be safe even against that needs a hardware limit (an
RC-coupled gate or a one-shot timer on the driver's enable).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import signal
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from types import FrameType

from gpiozero import DigitalOutputDevice
from gpiozero.pins import Factory, Pin

log = logging.getLogger(__name__)

DEFAULT_ILLUMINATOR_PIN = 23  # BCM numbering; physical pin 16


class IlluminatorError(RuntimeError):
    """The illuminator cannot be lit (it was closed)."""


class IrIlluminator:
    """The IR lamp on one GPIO; lit only inside ``with illuminator.lit():``.

    ``max_on_s`` is the longest the lamp may stay on in one go: a capture that takes longer is a hung
    capture, and the watchdog switches the lamp off (``watchdog_trips`` counts it, a warning is
    logged). Blocks may nest (the lamp goes off when the outermost one ends). Counters for health
    reports: ``activations`` (times switched on), ``on_time_s`` (total seconds on, the current spell
    included), ``watchdog_trips``. ``clock`` is monotonic seconds.
    """

    def __init__(
        self,
        pin: int | str = DEFAULT_ILLUMINATOR_PIN,
        *,
        pin_factory: Factory | None = None,
        max_on_s: float = 10.0,
        active_high: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not max_on_s > 0:
            raise ValueError(f"illuminator max_on_s must be more than 0 s, got {max_on_s!r}")
        self.max_on_s = max_on_s
        self._clock = clock
        # Re-entrant: the SIGTERM handler may run on the main thread while it is inside `lit()`.
        self._lock = threading.RLock()
        self._depth = 0
        self._on_since: float | None = None
        self._watchdog: threading.Timer | None = None
        self._closed = False
        self.activations = 0
        self.watchdog_trips = 0
        self._on_time_done = 0.0
        self._device = DigitalOutputDevice(
            pin, active_high=active_high, initial_value=False, pin_factory=pin_factory
        )
        self._pin_name = str(self._device.pin)
        # A weak reference, so the hook does not keep a forgotten illuminator alive; it runs before
        # gpiozero's own exit hook (atexit is last-in, first-out), while the pin is still ours.
        self._exit_hook = _exit_hook(weakref.ref(self))
        atexit.register(self._exit_hook)

    @property
    def pin(self) -> Pin:
        """The gpiozero pin (a ``MockPin`` in tests: ``pin.state`` is the gate level)."""
        return self._device.pin

    @property
    def is_lit(self) -> bool:
        with self._lock:
            return not self._closed and bool(self._device.value)

    @property
    def on_time_s(self) -> float:
        with self._lock:
            spell = 0.0 if self._on_since is None else self._clock() - self._on_since
            return self._on_time_done + spell

    @contextlib.contextmanager
    def lit(self, enabled: bool = True) -> Iterator[IrIlluminator]:
        """Light the lamp for the block; off when the block ends, exceptions included.

        ``enabled=False`` makes the block a no-op, so a capture reads the same by day and by night:
        ``with illuminator.lit(daylight.is_night()): camera.capture()``.
        """
        if not enabled:
            yield self
            return
        self._enter()
        try:
            yield self
        finally:
            self._leave()

    def _enter(self) -> None:
        with self._lock:
            if self._closed:
                raise IlluminatorError("the IR illuminator was closed; it cannot be lit any more")
            self._depth += 1
            if self._depth > 1:
                return
            self._on_since = self._clock()
            self.activations += 1
            self._watchdog = threading.Timer(self.max_on_s, self._watchdog_fired)
            self._watchdog.daemon = True
            # Armed before the lamp goes on: there is no moment when it is on without a watchdog.
            self._watchdog.start()
            self._device.on()

    def _leave(self) -> None:
        with self._lock:
            self._depth = max(0, self._depth - 1)
            if self._depth == 0 and not self._closed:
                self._switch_off()

    def _watchdog_fired(self) -> None:
        with self._lock:
            if self._on_since is None or self._watchdog is not threading.current_thread():
                return  # switched off normally while this timer was firing
            self.watchdog_trips += 1
            on_for = self._clock() - self._on_since
            self._switch_off()
        log.warning(
            "IR illuminator forced off by its watchdog after %.1f s on (limit max_on_s = %.1f s): a capture"
            " took too long or hung; the capture goes on in the dark",
            on_for,
            self.max_on_s,
        )

    def _switch_off(self) -> None:
        # The pin first, the bookkeeping after: whatever fails below, the lamp is already off.
        self._device.off()
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self._on_since is not None:
            self._on_time_done += self._clock() - self._on_since
            self._on_since = None

    def off(self) -> None:
        """Switch the lamp off now, even inside a ``lit()`` block (for signal handlers and shutdown)."""
        with self._lock:
            if not self._closed:
                self._switch_off()

    def close(self) -> None:
        """Switch off and release the pin (it becomes an input; the gate pull-down holds the lamp off)."""
        with self._lock:
            if self._closed:
                return
            self._switch_off()
            self._closed = True
            self._device.close()
        atexit.unregister(self._exit_hook)

    def __enter__(self) -> IrIlluminator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"IrIlluminator(pin={self._pin_name}, lit={self.is_lit}, activations={self.activations},"
            f" on_time_s={self.on_time_s:.1f}, watchdog_trips={self.watchdog_trips})"
        )


def _exit_hook(ref: weakref.ReferenceType[IrIlluminator]) -> Callable[[], None]:
    def switch_off_at_exit() -> None:
        illuminator = ref()
        if illuminator is not None:
            illuminator.close()

    return switch_off_at_exit


def switch_off_on_sigterm(illuminator: IrIlluminator) -> None:
    """On SIGTERM, switch the lamp off first, then do what the previous handler did (by default: exit).

    Call it from the main thread (Python only installs signal handlers there). Exiting raises
    ``SystemExit`` in the main thread, so ``finally`` blocks and ``atexit`` hooks run as well.
    """
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        illuminator.off()
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:
            raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_sigterm)
