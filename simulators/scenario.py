"""A camera-trap scenario: animals crossing the frame at given times, and what the PIR makes of it.

A scenario is the ground truth both simulated devices read: the simulated camera asks
``animal_in_view(t)`` (where across the picture the animal is, 0 = left edge, 1 = right edge) and the
simulated PIR asks ``pir_active(t)``. Everything is a pure function of the time asked about (and a
seed): no clock is read, nothing sleeps, the same scenario always gives the same answers.

The PIR model, for people tuning the agent:

- A real PIR's output rises *before* the animal is in the middle of the picture: its cone is wide
  and it reacts to the animal's heat moving across its zones. ``fire_at`` is the fraction of the
  crossing done when the output rises (0.35: a third of the way across; negative: before the animal
  enters the picture at all).
- The output stays high while the animal is in view and ``hold_s`` seconds after it has gone (the
  HC-SR501 in repeat-trigger mode holds it for its set time after the last movement).
- False triggers: wind moving sun-warmed grass, a rock cooling at dusk, a bird. They come at random
  (a Poisson process, ``false_triggers_per_hour``) and last ``false_pulse_s`` each. They are drawn per
  hour of time from ``seed``, so ``pir_active`` needs no precomputed list and has no end.

Overlapping causes make one longer pulse, as on the real output line (it is one wire).

A scenario can be written by hand as TOML (or the same structure in JSON)::

    [pir]
    fire_at = 0.35
    hold_s = 2.5
    false_triggers_per_hour = 2
    seed = 7

    [[crossing]]
    start = 2026-11-25T21:14:00Z
    duration_s = 1.2
    collar_id = 1042

    [[crossing]]
    start = 2026-11-25T23:02:30Z
    duration_s = 3.0
    species = "red fox"
    left_to_right = false
"""

from __future__ import annotations

import json
import math
import random
import threading
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

_BUCKET_S = 3600  # false triggers are drawn per hour of simulated time
_FALSE_CAUSES = ("wind in the grass", "a sun-warmed rock cooling", "a bird")


class ScenarioError(ValueError):
    """A scenario file or value is wrong; the message says where, what was found and what is expected."""


def _aware(value: datetime, what: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ScenarioError(
            f"{what} = {value.isoformat()}: expected a time with a time zone (e.g. ...Z for UTC)"
        )
    return value


@dataclass(frozen=True, slots=True)
class Crossing:
    """One animal crossing the picture: in at one edge at `start`, out at the other `duration_s` later."""

    start: datetime
    duration_s: float
    species: str = "snow leopard"
    collar_id: int | None = None
    left_to_right: bool = True

    def __post_init__(self) -> None:
        _aware(self.start, "crossing start")
        if not (
            isinstance(self.duration_s, int | float)
            and math.isfinite(self.duration_s)
            and self.duration_s > 0
        ):
            raise ScenarioError(
                f"crossing duration_s = {self.duration_s!r}: expected a positive number of seconds"
            )
        if self.collar_id is not None and (
            isinstance(self.collar_id, bool) or not isinstance(self.collar_id, int)
        ):
            raise ScenarioError(f"crossing collar_id = {self.collar_id!r}: expected a whole number, or none")

    @property
    def end(self) -> datetime:
        return self.start + timedelta(seconds=self.duration_s)

    def x_at(self, t: datetime) -> float | None:
        """Where the animal is across the picture at `t` (0 left edge, 1 right edge), None if not in it."""
        done = (t - self.start).total_seconds() / self.duration_s
        if not 0.0 <= done <= 1.0:
            return None
        return done if self.left_to_right else 1.0 - done


@dataclass(frozen=True, slots=True)
class PirModel:
    """How the simulated PIR reacts (see the module notes)."""

    fire_at: float = 0.35
    hold_s: float = 2.5
    false_triggers_per_hour: float = 0.0
    false_pulse_s: float = 2.5
    seed: int = 0

    def __post_init__(self) -> None:
        checks = (
            (
                "fire_at",
                self.fire_at < 1.0,
                "a fraction of the crossing below 1 (it must fire while the animal is in view)",
            ),
            ("hold_s", self.hold_s >= 0.0, "0 s or more"),
            ("false_triggers_per_hour", self.false_triggers_per_hour >= 0.0, "0 or more"),
            ("false_pulse_s", self.false_pulse_s > 0.0, "more than 0 s"),
        )
        for name, ok, expected in checks:
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and ok):
                raise ScenarioError(f"pir {name} = {value!r}: expected {expected}")


@dataclass(frozen=True, slots=True)
class FalseTrigger:
    """A PIR pulse with no animal behind it: when, how long, and what set it off."""

    start: datetime
    duration_s: float
    cause: str

    @property
    def end(self) -> datetime:
        return self.start + timedelta(seconds=self.duration_s)


class Scenario:
    """Animals crossing at given times and the PIR output they (and the weather) cause."""

    def __init__(self, crossings: Iterable[Crossing] = (), pir: PirModel | None = None) -> None:
        self.crossings: tuple[Crossing, ...] = tuple(sorted(crossings, key=lambda c: c.start))
        self.pir = pir or PirModel()
        self._rate_per_s = self.pir.false_triggers_per_hour / 3600.0

    # --- what the camera sees --------------------------------------------------------------------

    def crossing_at(self, t: datetime) -> Crossing | None:
        """The crossing in view at `t` (the earliest started, if animals overlap), or None."""
        for crossing in self.crossings:
            if crossing.start > t:
                break
            if crossing.x_at(t) is not None:
                return crossing
        return None

    def animal_in_view(self, t: datetime) -> float | None:
        """x across the picture (0..1) of the animal in view at `t`, or None when the frame is empty."""
        crossing = self.crossing_at(t)
        return None if crossing is None else crossing.x_at(t)

    # --- what the PIR says -----------------------------------------------------------------------

    def _animal_pulse(self, c: Crossing) -> tuple[datetime, datetime]:
        rise = c.start + timedelta(seconds=self.pir.fire_at * c.duration_s)
        return rise, c.end + timedelta(seconds=self.pir.hold_s)

    def false_triggers(self, start: datetime, end: datetime) -> list[FalseTrigger]:
        """The false triggers that begin in [start, end), in time order."""
        _aware(start, "start")
        _aware(end, "end")
        if self._rate_per_s <= 0.0 or end <= start:
            return []
        out: list[FalseTrigger] = []
        first = math.floor(start.timestamp() / _BUCKET_S)
        last = math.floor(end.timestamp() / _BUCKET_S)
        for bucket in range(first, last + 1):
            # One generator per hour, seeded by (seed, hour): any hour can be drawn alone, in any order.
            rng = random.Random(f"uncia-pir:{self.pir.seed}:{bucket}")
            offset = 0.0
            while True:
                offset += rng.expovariate(self._rate_per_s)
                if offset >= _BUCKET_S:
                    break
                cause = rng.choice(_FALSE_CAUSES)
                when = datetime.fromtimestamp(bucket * _BUCKET_S + offset, UTC)
                if start <= when < end:
                    out.append(FalseTrigger(when, self.pir.false_pulse_s, cause))
        return out

    def pir_intervals(self, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
        """The PIR output's high spells [rise, fall) that touch [start, end], merged, in time order.

        A spell may begin before `start` or end after `end`; spells that touch make one spell.
        """
        _aware(start, "start")
        _aware(end, "end")
        raw = [self._animal_pulse(c) for c in self.crossings]
        lead = timedelta(seconds=self.pir.false_pulse_s)
        raw += [(f.start, f.end) for f in self.false_triggers(start - lead, end + timedelta(microseconds=1))]
        merged: list[list[datetime]] = []
        for rise, fall in sorted(raw):
            if merged and rise <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], fall)
            else:
                merged.append([rise, fall])
        return [(rise, fall) for rise, fall in merged if rise <= end and fall >= start]

    def pir_active(self, t: datetime) -> bool:
        """Whether the PIR's output is high at `t`."""
        return any(rise <= t < fall for rise, fall in self.pir_intervals(t, t))

    # --- loading ---------------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "scenario") -> Scenario:
        """Build from the parsed TOML/JSON structure (``[pir]`` and ``[[crossing]]``)."""
        _only(data, {"pir", "crossing"}, source)
        pir_data = data.get("pir", {})
        if not isinstance(pir_data, Mapping):
            raise ScenarioError(f"{source}: [pir] must be a table of settings")
        _only(pir_data, {f.name for f in fields(PirModel)}, f"{source} [pir]")
        pir = PirModel(**pir_data)
        crossings = []
        for n, item in enumerate(data.get("crossing", []), start=1):
            where = f"{source} crossing {n}"
            if not isinstance(item, Mapping):
                raise ScenarioError(f"{where}: expected a table with start and duration_s")
            _only(item, {f.name for f in fields(Crossing)}, where)
            values = dict(item)
            if "start" not in values or "duration_s" not in values:
                raise ScenarioError(f"{where}: start and duration_s are required")
            values["start"] = _time(values["start"], f"{where} start")
            try:
                crossings.append(Crossing(**values))
            except ScenarioError as exc:
                raise ScenarioError(f"{where}: {exc}") from None
        return cls(crossings, pir)

    @classmethod
    def from_file(cls, path: str | Path) -> Scenario:
        """Load a ``.toml`` or ``.json`` scenario file."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
            data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
        except (OSError, ValueError) as exc:
            raise ScenarioError(f"{path}: cannot read the scenario ({exc})") from exc
        return cls.from_dict(data, str(path))


def _only(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ScenarioError(
            f"{where}: unknown key(s) {', '.join(unknown)}; expected some of {', '.join(sorted(allowed))}"
        )


def _time(value: object, where: str) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ScenarioError(
                f"{where} = {value!r}: expected an ISO 8601 time like 2026-11-25T21:14:00Z"
            ) from None
    if not isinstance(value, datetime):
        raise ScenarioError(f"{where} = {value!r}: expected a date and time with a time zone")
    return _aware(value, where)


class SimClock:
    """Simulated time for a run: a UTC datetime moved forward by whoever drives the simulation.

    ``now()`` (also calling the clock) is the time for timestamps; ``monotonic()`` is seconds on the
    same timeline, for anything that measures intervals. It never goes backwards.
    """

    def __init__(self, start: datetime) -> None:
        self._start = _aware(start, "clock start")
        self._now = self._start
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    __call__ = now

    def monotonic(self) -> float:
        with self._lock:
            return (self._now - self._start).total_seconds()

    def advance_to(self, t: datetime) -> None:
        with self._lock:
            if t < self._now:
                raise ValueError(
                    f"simulated time cannot go back from {self._now.isoformat()} to {t.isoformat()}"
                )
            self._now = t

    def advance(self, seconds: float) -> None:
        self.advance_to(self.now() + timedelta(seconds=seconds))
