"""The simulated PIR: a scenario's PIR output played onto a gpiozero mock pin, in simulated time.

`PirScenarioRunner` works out when the scenario's PIR output rises and falls, moves the simulated
clock to each edge and drives the pin there (``drive_high``/``drive_low``), so a `PirSensor` built on
the same mock pin factory, with the same clock, sees the edges it would see in the field, stamped
with the simulated times. Nothing sleeps: an evening of crossings plays in milliseconds.

    factory = MockFactory()
    clock = SimClock(start)
    pir = PirSensor(pin_factory=factory, clock=clock.monotonic, wall_clock=clock.now, on_motion=...)
    PirScenarioRunner(scenario, factory.pin(DEFAULT_PIR_PIN), clock).run_until(end)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from gpiozero.pins.mock import MockPin

from simulators.scenario import Scenario, SimClock


@dataclass(frozen=True, slots=True)
class Edge:
    """The PIR output changing: at `time`, to high (`rising`) or low."""

    time: datetime
    rising: bool


class PirScenarioRunner:
    """Drives a mock pin with a scenario's PIR output; the clock moves to each edge before it happens.

    ``active_high=False`` plays a sensor that pulls its output low on motion. The pin is driven to
    the scenario's level at the clock's current time when the runner is made.
    """

    def __init__(
        self, scenario: Scenario, pin: MockPin, clock: SimClock, *, active_high: bool = True
    ) -> None:
        self.scenario = scenario
        self.pin = pin
        self.clock = clock
        self.active_high = active_high
        self.edges_driven = 0
        self._high = scenario.pir_active(clock.now())
        self._drive(self._high)

    def _drive(self, active: bool) -> None:
        (self.pin.drive_high if active == self.active_high else self.pin.drive_low)()

    def edges(self, start: datetime, end: datetime) -> list[Edge]:
        """The output's edges in (start, end], in time order (a pure function of the scenario)."""
        out: list[Edge] = []
        for rise, fall in self.scenario.pir_intervals(start, end):
            if start < rise <= end:
                out.append(Edge(rise, True))
            if start < fall <= end:
                out.append(Edge(fall, False))
        return out

    def run_until(self, end: datetime) -> list[Edge]:
        """Play every edge up to `end`, then leave the clock at `end`; returns the edges played."""
        played = []
        for edge in self.edges(self.clock.now(), end):
            self.clock.advance_to(edge.time)
            if edge.rising != self._high:
                self._high = edge.rising
                self._drive(edge.rising)
                self.edges_driven += 1
                played.append(edge)
        self.clock.advance_to(end)
        return played

    def run_for(self, seconds: float) -> list[Edge]:
        """Play the next `seconds` of simulated time."""
        return self.run_until(self.clock.now() + timedelta(seconds=seconds))
