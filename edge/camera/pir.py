"""The PIR motion sensor that wakes the camera.

Wiring (for the technician)
---------------------------
- **HC-SR501**: VCC to 5 V (pin 2), GND to ground (pin 6), OUT to **BCM GPIO 17 (physical pin 11)**.
  Its output is 3.3 V high (it has its own regulator), safe for the Pi. Set the jumper to *H*
  (repeat trigger: the output stays high while the animal keeps moving) and the time pot fully
  anticlockwise (shortest hold, ~3 s); the camera decides how long to record, not the sensor.
- **Panasonic EKMB (PaPIRs)**: VDD to 3.3 V (pin 1), never 5 V; GND; OUT to GPIO 17. It is a
  low-current sensor (µA), good for battery units.
- Both drive the line high on motion (``active_high=True``). The Pi's pull-down is switched on, so
  a cut cable reads "no motion" rather than floating and firing at random. Long cables pick up the
  radio: keep the lead short or shielded, away from the LoRa antenna.
- Both need up to a minute after power-up to settle; triggers in that time are noise.

Edge-driven, not polled: why we do not use gpiozero's ``MotionSensor``
---------------------------------------------------------------------
``MotionSensor`` is a ``SmoothedInputDevice``: a background thread *polls* the pin into a queue
(``sample_rate`` 10 Hz by default) and averages it, so a motion event is seen up to ~100 ms late,
later still with a longer queue. A snow leopard crosses the frame in about a second: 100 ms is a
tenth of the crossing. ``PirSensor`` uses a ``DigitalInputDevice``, whose callbacks come from the
pin's edge interrupt (lgpio's alert thread on the Pi, Pi 5 included), so ``on_motion`` runs within
the scheduling delay of one thread wake-up.

Bounce
------
``bounce_time`` is applied here, in software, with the clock passed in: after an accepted change,
further changes for ``bounce_time`` seconds are counted in ``bounces`` and ignored. It is not
handed to the pin because gpiozero's backends disagree on what it means: lgpio treats it as a glitch
filter (a level must be stable for the whole time before it is reported, so every trigger would
arrive ``bounce_time`` late), RPi.GPIO as a hold-off after an edge, and the mock pins ignore it. A
change swallowed by the hold-off is not lost: it is applied when the hold-off ends (a timer) or at
the next edge, whichever comes first, so ``on_motion``/``on_still`` always alternate and always end
on the pin's true level.

Callbacks run on gpiozero's event thread: keep them short (set an event, queue a capture).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime

from gpiozero import DigitalInputDevice
from gpiozero.pins import Factory, Pin

from edge.clock import Clock, utc_now

log = logging.getLogger(__name__)

DEFAULT_PIR_PIN = 17  # BCM numbering; physical pin 11

Callback = Callable[[], None]


class PirSensor:
    """A PIR motion sensor on one GPIO, edge-driven, with trigger counts and times.

    ``on_motion`` is called when the sensor's output goes active (a trigger), ``on_still`` when it
    goes inactive again. ``clock`` (monotonic seconds) times the bounce hold-off; ``wall_clock``
    stamps ``last_trigger_at``. Pass ``pin_factory=MockFactory()`` to run without a Pi.

    A sensor already active when this object is made (still settling after power-up, or an animal
    in front of it) is not a trigger: triggers are rising edges seen from then on.
    """

    def __init__(
        self,
        pin: int | str = DEFAULT_PIR_PIN,
        *,
        pin_factory: Factory | None = None,
        bounce_time: float = 0.05,
        active_high: bool = True,
        on_motion: Callback | None = None,
        on_still: Callback | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Clock = utc_now,
    ) -> None:
        if bounce_time < 0:
            raise ValueError(f"PIR bounce_time must be 0 s or more, got {bounce_time!r}")
        self.bounce_time = bounce_time
        self.on_motion = on_motion
        self.on_still = on_still
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._settle_timer: threading.Timer | None = None
        self._closed = False
        self.triggers = 0
        self.bounces = 0
        self.last_trigger_at: datetime | None = None
        self.last_trigger_monotonic: float | None = None
        self._last_change: float | None = None
        # The pull follows the active level: a disconnected sensor then reads "no motion".
        self._device = DigitalInputDevice(
            pin, pull_up=not active_high, bounce_time=None, pin_factory=pin_factory
        )
        # The state the callbacks have announced; the pin's own level is `motion_detected`.
        self._announced = self._device.is_active
        self._device.when_activated = self._edge
        self._device.when_deactivated = self._edge

    @property
    def pin(self) -> Pin:
        """The gpiozero pin (a ``MockPin`` in tests and simulators: ``drive_high()`` plays the PIR)."""
        return self._device.pin

    @property
    def motion_detected(self) -> bool:
        """True while the sensor's output is active, read from the pin now."""
        return bool(self._device.is_active)

    def _edge(self) -> None:
        # gpiozero calls this for both directions; the pin's level says which, and reading it (rather
        # than trusting the edge) keeps us right after any edges the hold-off swallowed.
        self._update(from_edge=True)

    def settle(self) -> None:
        """Apply a change the bounce hold-off held back, if the hold-off is over (a timer calls this)."""
        self._update(from_edge=False)

    def _update(self, *, from_edge: bool) -> None:
        fire: list[Callback | None] = []
        with self._lock:
            if self._closed:
                return
            now = self._clock()
            level = bool(self._device.is_active)
            if self._last_change is not None and 0 <= now - self._last_change < self.bounce_time:
                if from_edge:
                    self.bounces += 1
                self._arm_settle(self._last_change + self.bounce_time - now)
                return
            if from_edge and level == self._announced:
                # The opposite change was swallowed and the pin has come back: the sensor did go
                # through it, so announce both (a still spell, then a new trigger, or vice versa).
                fire.append(self._announce(not level, now))
            if level != self._announced:
                fire.append(self._announce(level, now))
        for callback in fire:
            if callback is not None:
                callback()

    def _announce(self, active: bool, now: float) -> Callback | None:
        self._announced = active
        self._last_change = now
        if active:
            self.triggers += 1
            self.last_trigger_monotonic = now
            self.last_trigger_at = self._wall_clock()
            return self.on_motion
        return self.on_still

    def _arm_settle(self, delay: float) -> None:
        if self._settle_timer is not None and self._settle_timer.is_alive():
            return
        # A few ms past the end, so the timer never wakes a hair before the hold-off is over.
        self._settle_timer = threading.Timer(max(0.0, delay) + 0.005, self.settle)
        self._settle_timer.daemon = True
        self._settle_timer.start()

    def close(self) -> None:
        """Release the pin (it reverts to an input); no callback runs after this returns."""
        with self._lock:
            self._closed = True
            timer, self._settle_timer = self._settle_timer, None
        if timer is not None:
            timer.cancel()
        self._device.close()

    def __enter__(self) -> PirSensor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"PirSensor(pin={self._device.pin}, motion={self.motion_detected}, triggers={self.triggers},"
            f" bounces={self.bounces})"
        )
