"""GPS collars that transmit their fixes over LoRa: the senders on a site's simulated air.

A `Collar` wakes every ``fix_interval_s`` of simulated time on a fixed schedule (real collars fix on
the clock: every collar set to 15 minutes wakes at :00, :15, :30, :45), takes a GPS fix of its animal
(`Track`) - or fails to, with probability ``no_fix_prob`` (under an overhang, in a cave) - and
transmits each fix, or every ``batch`` fixes together, after a small random delay (``tx_jitter_s``).
The jitter keeps collars out of lock step, but two can still pick overlapping moments: that is how
collisions happen in the field. The battery drains with every fix, every transmission and while
asleep; an empty collar falls silent.

Every collar keeps a truth log: `fixes` (every fix it took), `missed` (when it found no fix) and `sent`
(each packet: when, which fixes, the bytes, and the air's record of what each receiver made of it).

`CollarFleet` runs several collars and the air together in simulated time: ``fleet.run_until(t)``.
"""

from __future__ import annotations

import math
import random
import threading
import time
from bisect import insort
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Literal

from edge.lora.airtime import time_on_air
from edge.lora.modem import RadioSettings
from edge.lora.payload import MAX_BATCH, CollarFix, encode_batch, encode_fix, hdop_class
from simulators.lora_air import Air, Transmission, pace
from simulators.nmea_out import render_epoch
from simulators.track import Track

# The collar's antenna rides on the animal's neck, about half a metre above the ground.
COLLAR_HEIGHT_M = 0.5
# GPS-only receiver, GGA+RMC: the cheapest profile to render; older collars send its GGA line.
_GPS_PROFILE = "gp-basic"

# SX1276 supply current while transmitting (datasheet table 6, RFO up to +14 dBm, PA_BOOST above),
# as (dBm, mA); interpolated linearly in between.
_TX_CURRENT_MA = ((7.0, 20.0), (13.0, 29.0), (17.0, 87.0), (20.0, 120.0))


@dataclass(slots=True)
class Battery:
    """A collar's battery, in mAh. Drains per GPS fix (receiver on until it has a fix), per
    transmission (radio current at the transmit power for the packet's airtime) and while asleep.

    Defaults: a 7,000 mAh lithium pack (a C-size Li-SOCl2 cell class), a GPS fix costing 0.15 mAh
    (~30 mA for ~18 s, hot start) and 10 µA asleep: years at 15-minute fixes, as real collars do.
    """

    capacity_mah: float = 7000.0
    remaining_mah: float | None = None
    gps_fix_mah: float = 0.15
    sleep_ua: float = 10.0

    def __post_init__(self) -> None:
        if self.capacity_mah <= 0:
            raise ValueError(f"battery capacity must be positive (mAh), got {self.capacity_mah}")
        if self.remaining_mah is None:
            self.remaining_mah = self.capacity_mah

    @property
    def charge_mah(self) -> float:
        return max(0.0, self.remaining_mah or 0.0)

    @property
    def percent(self) -> int:
        """Charge left, 0-100, rounded down (what the collar reports in its packets)."""
        return max(0, min(100, math.floor(100.0 * self.charge_mah / self.capacity_mah)))

    @property
    def empty(self) -> bool:
        return self.charge_mah <= 0.0

    @staticmethod
    def tx_current_ma(power_dbm: float) -> float:
        points = _TX_CURRENT_MA
        if power_dbm <= points[0][0]:
            return points[0][1]
        for (p0, i0), (p1, i1) in pairwise(points):
            if power_dbm <= p1:
                return i0 + (i1 - i0) * (power_dbm - p0) / (p1 - p0)
        return points[-1][1]

    def _use(self, mah: float) -> None:
        self.remaining_mah = self.charge_mah - mah

    def drain_fix(self) -> None:
        self._use(self.gps_fix_mah)

    def drain_tx(self, airtime_s: float, power_dbm: float) -> None:
        self._use(self.tx_current_ma(power_dbm) * airtime_s / 3600.0)

    def drain_sleep(self, seconds: float) -> None:
        self._use(self.sleep_ua / 1000.0 * seconds / 3600.0)


@dataclass(frozen=True, slots=True)
class SentPacket:
    """One packet a collar sent: when (simulated s), which fixes, the bytes, and the air's record."""

    at: float
    fixes: tuple[CollarFix, ...]
    payload: bytes
    transmission: Transmission


@dataclass(order=True, slots=True)
class _Queued:
    at: float
    fixes: tuple[CollarFix, ...] = field(compare=False)
    payload: bytes = field(compare=False)


PayloadFormat = Literal["compact", "nmea"]


class Collar:
    """One GPS collar on one animal, transmitting on `radio` (whose ``address`` is the sender address a
    receiving modem reports) at ``tx_power_dbm``.

    ``start`` is the simulated second at which `track` stands at its current point; the first fix is
    at ``first_fix_at`` (default: one interval after ``start``), then every ``fix_interval_s``.
    ``payload_format="nmea"`` sends the fix as one GGA sentence of text (some older collars do)
    instead of the compact binary payload; it sends single fixes only (``batch=1``).
    """

    def __init__(
        self,
        collar_id: int,
        track: Track,
        *,
        radio: RadioSettings,
        rng: random.Random,
        fix_interval_s: float = 900.0,
        batch: int = 1,
        tx_power_dbm: float = 14,
        battery: Battery | None = None,
        no_fix_prob: float = 0.05,
        tx_jitter_s: float = 10.0,
        payload_format: PayloadFormat = "compact",
        start: float = 0.0,
        first_fix_at: float | None = None,
        name: str | None = None,
    ) -> None:
        if fix_interval_s <= 0:
            raise ValueError(f"fix_interval_s must be positive (seconds), got {fix_interval_s}")
        if not 1 <= batch <= MAX_BATCH:
            raise ValueError(f"batch must be 1 to {MAX_BATCH} fixes per packet, got {batch}")
        if not 0.0 <= tx_jitter_s < fix_interval_s:
            raise ValueError(f"tx_jitter_s must be from 0 to less than fix_interval_s, got {tx_jitter_s}")
        if not 0.0 <= no_fix_prob <= 1.0:
            raise ValueError(f"no_fix_prob is a probability from 0 to 1, got {no_fix_prob}")
        if payload_format not in ("compact", "nmea"):
            raise ValueError(f"payload_format must be 'compact' or 'nmea', got {payload_format!r}")
        if payload_format == "nmea" and batch != 1:
            raise ValueError("NMEA collars send one GGA sentence per packet: use batch=1")
        self.collar_id = collar_id
        self.name = name if name is not None else f"collar-{collar_id}"
        self.track = track
        self.radio = radio
        self.rng = rng
        self.fix_interval_s = float(fix_interval_s)
        self.batch = batch
        self.tx_power_dbm = tx_power_dbm
        self.battery = battery if battery is not None else Battery()
        self.no_fix_prob = no_fix_prob
        self.tx_jitter_s = float(tx_jitter_s)
        self.payload_format = payload_format
        self.fixes: list[CollarFix] = []
        self.missed: list[float] = []
        self.sent: list[SentPacket] = []
        self.died_at: float | None = None
        self._track_t = float(start)
        self._battery_t = float(start)
        self._next_fix = (
            float(first_fix_at) if first_fix_at is not None else float(start) + self.fix_interval_s
        )
        if self._next_fix < start:
            raise ValueError(f"first_fix_at {first_fix_at} is before the collar's start {start}")
        self._buffer: list[CollarFix] = []
        self._queue: list[_Queued] = []

    @property
    def unsent(self) -> tuple[CollarFix, ...]:
        """Fixes taken but not yet sent (waiting for a full batch, or queued for their jitter delay)."""
        return tuple(self._buffer) + tuple(f for q in self._queue for f in q.fixes)

    def next_event(self) -> float | None:
        """When this collar next does something (a fix or a transmission); None once it is dead."""
        if self.died_at is not None:
            return None
        return min(self._next_fix, self._queue[0].at) if self._queue else self._next_fix

    def step(self, air: Air) -> None:
        """Do the next thing this collar has to do, at `next_event()`, sending on `air`."""
        due = self.next_event()
        if due is None:
            return
        self.battery.drain_sleep(due - self._battery_t)
        self._battery_t = due
        if self.battery.empty:
            self.died_at = due
            return
        if self._queue and self._queue[0].at <= self._next_fix:
            self._send(air, self._queue.pop(0))
        else:
            self._take_fix(due)
            self._next_fix += self.fix_interval_s

    def _move_to(self, t: float) -> None:
        self.track.advance(max(0.0, t - self._track_t))
        self._track_t = max(t, self._track_t)

    def _take_fix(self, t: float) -> None:
        self._move_to(t)
        self.battery.drain_fix()
        if self.rng.random() < self.no_fix_prob:
            self.missed.append(t)
            return
        sentences, truth = render_epoch(self.track.point, profile=_GPS_PROFILE)
        assert truth is not None  # render_epoch always has a fix when asked for one
        fix = CollarFix(
            collar_id=self.collar_id,
            time=truth.time,
            lat=truth.lat,
            lon=truth.lon,
            quality=truth.quality,
            hdop_class=hdop_class(truth.hdop),
            battery_pct=self.battery.percent,
        )
        self.fixes.append(fix)
        self._buffer.append(fix)
        if len(self._buffer) < self.batch:
            return
        fixes, self._buffer = tuple(self._buffer), []
        if self.payload_format == "nmea":
            # The GGA line without its CR LF: a line end inside the payload would split the receiving
            # modem's own "+RCV=..." line in two.
            payload = next(s for s in sentences if s[3:6] == b"GGA").rstrip(b"\r\n")
        elif len(fixes) == 1:
            payload = encode_fix(fixes[0])
        else:
            payload = encode_batch(list(fixes))
        insort(self._queue, _Queued(t + self.rng.uniform(0.0, self.tx_jitter_s), fixes, payload))

    def _send(self, air: Air, queued: _Queued) -> None:
        self._move_to(queued.at)
        point = self.track.point
        self.battery.drain_tx(time_on_air(len(queued.payload), self.radio), self.tx_power_dbm)
        tx = air.transmit(
            self.name,
            (point.lat, point.lon, point.alt + COLLAR_HEIGHT_M),
            queued.payload,
            self.radio,
            queued.at,
            tx_power_dbm=self.tx_power_dbm,
        )
        self.sent.append(SentPacket(queued.at, queued.fixes, queued.payload, tx))


class CollarFleet:
    """Several collars on one air, run together in simulated time (events strictly in time order)."""

    def __init__(self, air: Air, collars: Iterable[Collar]) -> None:
        self.air = air
        self.collars = list(collars)
        names = [c.name for c in self.collars]
        if len(set(names)) != len(names):
            raise ValueError(f"collar names must be unique on one air: {names}")

    def next_event(self) -> float | None:
        """The next moment a collar acts or a packet finishes its airtime."""
        times = [t for t in (c.next_event() for c in self.collars) if t is not None]
        air_next = self.air.next_resolution()
        if air_next is not None:
            times.append(air_next)
        return min(times, default=None)

    def run_until(self, t: float) -> None:
        """Run every collar and the air up to simulated second `t` (packets ending by `t` delivered)."""
        while True:
            due = [(e, i) for i, c in enumerate(self.collars) if (e := c.next_event()) is not None and e <= t]
            if not due:
                break
            at, index = min(due)
            # Packets that ended before this moment reach the modems first, as they would on the air.
            self.air.advance_to(max(self.air.now, at))
            self.collars[index].step(self.air)
        self.air.advance_to(max(self.air.now, t))

    def run_realtime(
        self,
        until: float,
        speedup: float = 1.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
        stop: threading.Event | None = None,
    ) -> float:
        """`run_until(until)` paced at `speedup` × the wall clock (for demos). Returns the time reached."""
        return pace(
            self.run_until,
            self.next_event,
            start=self.air.now,
            until=until,
            speedup=speedup,
            clock=clock,
            sleep=sleep,
            stop=stop,
        )
