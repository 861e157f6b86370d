"""Animals on a camera trail, for as long as a demo runs: crossings in real time on mock PIR pins.

A `Scenario` (simulators/scenario.py) is a fixed list of crossings; a demo has no end. `TrailTraffic`
keeps drawing crossings ahead of the wall clock (one every ``every_s`` seconds, a range drawn from
the seed), keeps a few minutes of them in a `Scenario` and plays each unit's PIR output onto that
unit's mock pin as real time passes (`PirScenarioRunner`, driven to the wall clock).

Paired units stand on both flanks of one trail and both cameras see every animal that passes
(`animal_in_view`), but a PIR does not fire for every animal: its cone is narrow, an animal close to
the other flank passes outside it. So each crossing is *felt* by one unit's PIR, now and then by
both; the other camera then captures through the pairing (edge/camera/pairing.py), which is what
pairing is for.

    traffic = TrailTraffic(["cam-01", "cam-02"], random.Random(7))
    camera = SimulatedCamera(utc_now, rng, animal_in_view=traffic.animal_in_view, ...)
    traffic.attach("cam-01", factory_01.pin(17))
    traffic.start()   # ... traffic.stop()
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from gpiozero.pins.mock import MockPin

from edge.clock import utc_now
from simulators.pir import PirScenarioRunner
from simulators.scenario import Crossing, PirModel, Scenario, SimClock

_AHEAD_S = 300.0  # crossings are drawn this far ahead of the wall clock ...
_KEEP_S = 60.0  # ... and kept this long after they ended (a burst may still look at them)
_SPECIES = (("snow leopard", 0.7), ("blue sheep", 0.15), ("red fox", 0.1), ("pallas's cat", 0.05))
_BOTH_PIRS = 0.15  # chance that both flanks' PIRs feel the same animal


class TrailTraffic:
    """Animals walking past the units in `units` (one trail, typically a pair), forever.

    ``every_s``: seconds between crossings (drawn uniformly in the range); ``first_in_s``: the first
    crossing comes this long after the traffic is made (leave the cameras time to fill their
    pre-trigger buffer). ``tick_s``: how often the PIR pins are brought up to date (edges land at
    most this late). ``clock`` is the wall clock the cameras stamp frames with.
    """

    def __init__(
        self,
        units: Sequence[str],
        rng: random.Random,
        *,
        every_s: tuple[float, float] = (20.0, 40.0),
        first_in_s: float = 6.0,
        duration_s: tuple[float, float] = (1.5, 4.0),
        pir: PirModel | None = None,
        clock: Callable[[], datetime] = utc_now,
        tick_s: float = 0.05,
    ) -> None:
        if not units:
            raise ValueError("a trail needs at least one camera unit")
        low, high = every_s
        if not 0 < low <= high:
            raise ValueError(f"every_s={every_s!r}: expected (low, high) seconds with 0 < low <= high")
        self.units = tuple(units)
        self.rng = rng
        self.every_s = every_s
        self.duration_s = duration_s
        self.pir = pir or PirModel(fire_at=0.35, hold_s=2.0)
        self.clock = clock
        self.tick_s = tick_s
        # Crossings drawn so far (the last minute's and the next minutes'), with the PIRs that feel each.
        self.crossings: list[tuple[Crossing, frozenset[str]]] = []
        self._next = clock() + timedelta(seconds=first_in_s)
        self._runners: dict[str, PirScenarioRunner] = {}
        self._scene = Scenario()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._refill(clock())

    # --- what the cameras see --------------------------------------------------------------------

    def animal_in_view(self, t: datetime) -> float | None:
        """Where across the picture the animal in front of the trail's cameras is at `t` (0..1)."""
        return self._scene.animal_in_view(t)

    # --- the PIRs --------------------------------------------------------------------------------

    def attach(self, unit: str, pin: MockPin) -> None:
        """Play `unit`'s PIR output onto `pin` (a gpiozero mock pin) from now on."""
        if unit not in self.units:
            raise ValueError(f"{unit!r} is not on this trail ({', '.join(self.units)})")
        with self._lock:
            self._runners[unit] = PirScenarioRunner(self._pir_scenario(unit), pin, SimClock(self.clock()))

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="uncia-trail", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.tick_s):
            self.play(self.clock())

    def play(self, now: datetime) -> None:
        """Bring every attached PIR pin up to `now` (the thread calls this every tick)."""
        with self._lock:
            if self._next < now + timedelta(seconds=_AHEAD_S / 2):
                self._refill(now)
            for runner in self._runners.values():
                runner.run_until(max(now, runner.clock.now()))

    # --- drawing crossings -----------------------------------------------------------------------

    def _refill(self, now: datetime) -> None:
        horizon = now + timedelta(seconds=_AHEAD_S)
        while self._next < horizon:
            species = self.rng.choices([s for s, _ in _SPECIES], [w for _, w in _SPECIES])[0]
            crossing = Crossing(
                start=self._next,
                duration_s=round(self.rng.uniform(*self.duration_s), 2),
                species=species,
                left_to_right=self.rng.random() < 0.5,
            )
            felt = (
                frozenset(self.units)
                if self.rng.random() < _BOTH_PIRS
                else frozenset({self.rng.choice(self.units)})
            )
            self.crossings.append((crossing, felt))
            self._next += timedelta(seconds=self.rng.uniform(*self.every_s))
        cutoff = now - timedelta(seconds=_KEEP_S)
        self.crossings = [(c, f) for c, f in self.crossings if c.end >= cutoff]
        self._scene = Scenario([c for c, _ in self.crossings], self.pir)
        for unit, runner in self._runners.items():
            runner.scenario = self._pir_scenario(unit)

    def _pir_scenario(self, unit: str) -> Scenario:
        return Scenario([c for c, felt in self.crossings if unit in felt], self.pir)
