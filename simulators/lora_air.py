"""One site's LoRa radio channel: collars transmit into it, station and camera-unit modems hear from it.

Each receiver is a modem (a station gateway's or a camera unit's emulator) at a place. A transmission
reaches each receiver with a signal strength from a log-distance path-loss model with log-normal
shadowing, and is demodulated only if its SNR clears the spreading factor's floor, so packets thin
out with distance the way they do in the field. Two transmissions that overlap in time on the same
frequency and spreading factor collide at a receiver: both are lost unless one is at least 6 dB
stronger than everything else on the air (capture effect), which then survives.

Time is simulated seconds (floats, any origin) and chance comes from a `random.Random` passed in, so
a run is exactly repeatable and runs as fast as the CPU allows.

When packets reach the modems: a collision is only known once every overlapping transmission has
been sent, so `transmit` only queues a transmission; `advance_to(t)` then resolves, in order of
their end, every transmission whose airtime has ended by `t`, and hands the survivors to the
receiving modems' `deliver` (that is the moment a real modem prints ``+RCV=``). The one rule for
callers: transmissions are sent in time order, never before `now` (the time last advanced to).

Every transmission and its outcome at every receiver is kept in `log`, so a test can account for
every packet: `delivered`, `too_weak`, `collided`, `not_listening` (the modem's settings do not
match, or it is not in receive mode) or `busy` (the receiving modem was itself transmitting).
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from edge.lora.airtime import time_on_air
from edge.lora.modem import RadioSettings

Position = tuple[float, float, float]
"""(latitude °, longitude °, altitude m above sea level)."""

# Semtech SX1276/77/78/79 datasheet, table 13 (also SX126x): the lowest SNR at which each spreading
# factor still demodulates. LoRa works below the noise floor; higher SFs trade airtime for depth.
DEMOD_FLOOR_DB: dict[int, float] = {7: -7.5, 8: -10.0, 9: -12.5, 10: -15.0, 11: -17.5, 12: -20.0}
THERMAL_NOISE_DBM_PER_HZ = -174.0
M_PER_DEG_LAT = 111_320.0


@dataclass(frozen=True, slots=True)
class ChannelModel:
    """The radio-propagation parameters of a site.

    Path loss (dB) = ``ref_loss_db`` + 10 · ``exponent`` · log10(d / ``ref_distance_m``) + X, with X a
    zero-mean normal draw of ``shadowing_sigma_db`` per transmission and receiver (log-normal
    shadowing: a ridge, a boulder or the animal's own body between the antennas).

    Defaults are for CN470 in steep mountain terrain between a collar at ground level and a station
    antenna on a mast. 112 dB at 1 km sits between free space (86 dB at 470 MHz) and Okumura-Hata for
    open country with a low mobile antenna (~102 dB) plus the collar's lossy antenna against the
    neck (~-5 dBi) and a small station whip (+3 dBi); an exponent of 3 and σ = 7 dB are typical for
    hilly, rough terrain. With 14 dBm at SF10/125 kHz half the packets get through at ~14 km (SF7
    ~8 km, SF12 ~20 km).

    Receiver noise floor = -174 dBm/Hz + 10 · log10(bandwidth) + ``noise_figure_db`` (-117 dBm at
    125 kHz with the SX127x's ~6 dB). If ``terrain`` (altitude in m from lat, lon, e.g.
    `simulators.track.terrain_alt`) is given, a path whose straight line dips below the ground
    somewhere costs ``blocked_penalty_db`` more.
    """

    ref_loss_db: float = 112.0
    ref_distance_m: float = 1000.0
    exponent: float = 3.0
    shadowing_sigma_db: float = 7.0
    noise_figure_db: float = 6.0
    capture_margin_db: float = 6.0
    terrain: Callable[[float, float], float] | None = None
    blocked_penalty_db: float = 10.0

    def path_loss_db(self, distance_m: float, *, shadowing_db: float = 0.0, blocked: bool = False) -> float:
        # Closer than 10 m the far-field model means nothing; clamp so log10 stays finite.
        d = max(distance_m, 10.0)
        loss = self.ref_loss_db + 10.0 * self.exponent * math.log10(d / self.ref_distance_m)
        return loss + shadowing_db + (self.blocked_penalty_db if blocked else 0.0)

    def noise_floor_dbm(self, bandwidth_khz: float) -> float:
        return THERMAL_NOISE_DBM_PER_HZ + 10.0 * math.log10(bandwidth_khz * 1000.0) + self.noise_figure_db

    def blocked(self, a: Position, b: Position, samples: int = 24) -> bool:
        """Whether the ground rises above the straight line from `a` to `b` (False without terrain)."""
        if self.terrain is None:
            return False
        for i in range(1, samples):
            f = i / samples
            ground = self.terrain(a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f)
            if ground > a[2] + (b[2] - a[2]) * f:
                return True
        return False


def distance_m(a: Position, b: Position) -> float:
    """Straight-line distance in metres, altitude included (flat earth: fine over a site's tens of km)."""
    north = (b[0] - a[0]) * M_PER_DEG_LAT
    east = (b[1] - a[1]) * M_PER_DEG_LAT * math.cos(math.radians((a[0] + b[0]) / 2.0))
    return math.sqrt(north * north + east * east + (b[2] - a[2]) ** 2)


class Listener(Protocol):
    """A receiving modem: what `simulators.lora_modem.EmulatedModem` offers the air."""

    def deliver(
        self, payload: bytes, *, rssi: int, snr: float, sender: int = 0, radio: RadioSettings
    ) -> bool:
        """Hand a received packet to the modem; True if it forwarded it to its host."""
        ...


class Outcome(StrEnum):
    """What became of one transmission at one receiver."""

    DELIVERED = "delivered"
    TOO_WEAK = "too_weak"  # SNR below the spreading factor's demodulation floor
    COLLIDED = "collided"  # overlapped another packet on the same channel and did not capture
    NOT_LISTENING = "not_listening"  # heard, but the modem's deliver() refused it (settings, mode)
    BUSY = "busy"  # the receiving modem was transmitting itself (LoRa modems are half duplex)


@dataclass(frozen=True, slots=True)
class Reception:
    """One transmission at one receiver. `rssi`/`snr` are what the modem was (or would have been) told;
    `interferers` are the `seq` numbers of same-channel transmissions that overlapped it there."""

    receiver: str
    distance_m: float
    path_loss_db: float
    blocked: bool
    rssi: int
    snr: float
    outcome: Outcome
    interferers: tuple[int, ...] = ()


@dataclass(slots=True)
class _Signal:
    """A transmission's signal at one receiver, fixed when it is sent (the shadowing draw)."""

    distance_m: float
    path_loss_db: float
    blocked: bool
    power_dbm: float
    snr_db: float


@dataclass(slots=True, eq=False)
class Transmission:
    """One packet on the air, from `start` to `end` (simulated seconds). `receptions` is filled, one
    entry per receiver other than the sender, when the airtime has ended and the air advanced past it."""

    seq: int
    sender: str
    sender_address: int
    position: Position
    payload: bytes
    radio: RadioSettings
    tx_power_dbm: float
    start: float
    end: float
    receptions: dict[str, Reception] = field(default_factory=dict)
    resolved: bool = False
    _signals: dict[str, _Signal] = field(default_factory=dict, repr=False)

    @property
    def airtime(self) -> float:
        return self.end - self.start

    def overlaps(self, other: Transmission) -> bool:
        # Touching ends do not overlap: one packet's last symbol is over when the next preamble starts.
        return self.start < other.end and other.start < self.end

    def same_channel(self, other: Transmission) -> bool:
        return (
            self.radio.frequency_hz == other.radio.frequency_hz
            and self.radio.spreading_factor == other.radio.spreading_factor
        )


@dataclass(slots=True)
class _Receiver:
    name: str
    modem: Listener
    position: Position


class Air:
    """The radio channel of one site, in simulated time.

    Add receivers with `add_receiver`, send with `transmit`, move time on with `advance_to` (or
    `flush` at the end of a run); `log` then holds every transmission with its outcome at each
    receiver. Thread-safe: a demo may transmit from one thread while `run_realtime` paces another.
    """

    def __init__(self, rng: random.Random, *, model: ChannelModel | None = None, start: float = 0.0) -> None:
        self.rng = rng
        self.model = model if model is not None else ChannelModel()
        self.log: list[Transmission] = []
        self._now = float(start)
        self._receivers: dict[str, _Receiver] = {}
        self._pending: list[Transmission] = []
        # Resolved transmissions that may still overlap a pending one.
        self._recent: list[Transmission] = []
        self._lock = threading.RLock()

    @property
    def now(self) -> float:
        return self._now

    @property
    def receivers(self) -> dict[str, Position]:
        return {name: r.position for name, r in self._receivers.items()}

    def add_receiver(self, name: str, modem: Listener, position: Position) -> None:
        """Put a modem at `position` (lat, lon, altitude in m); it hears transmissions sent from now on."""
        with self._lock:
            if name in self._receivers:
                raise ValueError(f"a receiver called {name!r} is already on the air; names must be unique")
            lat, lon, alt = (float(v) for v in position)
            self._receivers[name] = _Receiver(name, modem, (lat, lon, alt))

    def transmit(
        self,
        sender: str,
        position: Position,
        payload: bytes,
        radio: RadioSettings,
        at: float,
        *,
        tx_power_dbm: float = 14,
    ) -> Transmission:
        """Start sending `payload` at simulated second `at` from `position`; returns its log record.

        The sender's modem address (what a receiver reports as the source) is `radio.address`. The
        packet reaches receivers when the air is advanced past its end (`at` + time on air).
        """
        if not payload:
            raise ValueError("a LoRa packet needs at least one byte of payload")
        with self._lock:
            if at < self._now:
                raise ValueError(
                    f"transmission from {sender} at {at:.3f} s is in the past: the air is at {self._now:.3f} s"
                )
            tx = Transmission(
                seq=len(self.log),
                sender=sender,
                sender_address=radio.address,
                position=(float(position[0]), float(position[1]), float(position[2])),
                payload=bytes(payload),
                radio=radio,
                tx_power_dbm=float(tx_power_dbm),
                start=float(at),
                end=float(at) + time_on_air(len(payload), radio),
            )
            noise = self.model.noise_floor_dbm(radio.bandwidth_khz)
            for name, receiver in self._receivers.items():
                if name == sender:
                    continue
                d = distance_m(tx.position, receiver.position)
                blocked = self.model.blocked(tx.position, receiver.position)
                shadow = self.rng.gauss(0.0, self.model.shadowing_sigma_db)
                loss = self.model.path_loss_db(d, shadowing_db=shadow, blocked=blocked)
                power = tx.tx_power_dbm - loss
                tx._signals[name] = _Signal(d, loss, blocked, power, power - noise)
            self.log.append(tx)
            self._pending.append(tx)
            return tx

    def next_resolution(self) -> float | None:
        """When the earliest queued transmission ends (None if nothing is on the air)."""
        with self._lock:
            return min((tx.end for tx in self._pending), default=None)

    def advance_to(self, t: float) -> list[Transmission]:
        """Move simulated time to `t`: resolve and deliver every transmission that has ended by then."""
        with self._lock:
            if t < self._now:
                raise ValueError(
                    f"time only moves forward: the air is at {self._now:.3f} s, asked for {t:.3f} s"
                )
            self._now = float(t)
            done = sorted((tx for tx in self._pending if tx.end <= t), key=lambda tx: (tx.end, tx.seq))
            if not done:
                return []
            self._pending = [tx for tx in self._pending if tx.end > t]
            self._recent.extend(done)
            for tx in done:
                self._resolve(tx)
            horizon = min([self._now, *(tx.start for tx in self._pending)])
            self._recent = [tx for tx in self._recent if tx.end > horizon]
            return done

    def flush(self) -> list[Transmission]:
        """Let every queued transmission end and deliver it (the end of a run)."""
        with self._lock:
            end = self.next_resolution()
            if end is None:
                return []
            return self.advance_to(max(self._now, *(tx.end for tx in self._pending)))

    def _resolve(self, tx: Transmission) -> None:
        neighbours = [o for o in (*self._recent, *self._pending) if o is not tx and o.overlaps(tx)]
        floor = DEMOD_FLOOR_DB[tx.radio.spreading_factor]
        for name, sig in tx._signals.items():
            receiver = self._receivers[name]
            rssi = round(sig.power_dbm)
            # SX127x reports packet SNR in quarter-dB steps.
            snr = round(sig.snr_db * 4.0) / 4.0
            rivals = [o for o in neighbours if o.same_channel(tx) and name in o._signals]
            if any(o.sender == name for o in neighbours):
                outcome = Outcome.BUSY
            elif sig.snr_db < floor:
                outcome = Outcome.TOO_WEAK
            elif rivals and not self._captures(sig.power_dbm, [o._signals[name].power_dbm for o in rivals]):
                outcome = Outcome.COLLIDED
            elif receiver.modem.deliver(
                tx.payload, rssi=rssi, snr=snr, sender=tx.sender_address, radio=tx.radio
            ):
                outcome = Outcome.DELIVERED
            else:
                outcome = Outcome.NOT_LISTENING
            tx.receptions[name] = Reception(
                receiver=name,
                distance_m=sig.distance_m,
                path_loss_db=sig.path_loss_db,
                blocked=sig.blocked,
                rssi=rssi,
                snr=snr,
                outcome=outcome,
                interferers=tuple(o.seq for o in rivals),
            )
        tx.resolved = True

    def _captures(self, power_dbm: float, rival_dbm: list[float]) -> bool:
        # Interferers add up as power: two rivals each 6 dB down together are only 3 dB down.
        interference = 10.0 * math.log10(sum(10.0 ** (p / 10.0) for p in rival_dbm))
        return power_dbm - interference >= self.model.capture_margin_db

    def outcomes(self) -> Counter[Outcome]:
        """How many (transmission, receiver) pairs ended each way so far."""
        with self._lock:
            return Counter(r.outcome for tx in self.log for r in tx.receptions.values())

    def run_realtime(
        self,
        until: float,
        speedup: float = 1.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
        stop: threading.Event | None = None,
    ) -> float:
        """Advance to `until`, delivering each packet when its airtime ends, paced at `speedup` times the
        wall clock (for demos; other threads may `transmit` meanwhile). Returns the time reached."""
        return pace(
            self.advance_to,
            self.next_resolution,
            start=self._now,
            until=until,
            speedup=speedup,
            clock=clock,
            sleep=sleep,
            stop=stop,
        )


# Longest single wait, in wall seconds: keeps `stop` and newly queued events noticed promptly.
_PACE_SLICE_S = 0.1


def pace(
    advance: Callable[[float], object],
    next_event: Callable[[], float | None],
    *,
    start: float,
    until: float,
    speedup: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], object] = time.sleep,
    stop: threading.Event | None = None,
) -> float:
    """Drive a simulated-time `advance(t)` so that simulated time keeps step with `speedup` × the wall
    clock from `start` to `until`, stopping at each `next_event()` on the way. Returns the time reached
    (less than `until` only if `stop` was set)."""
    if speedup <= 0:
        raise ValueError(f"speedup must be positive, got {speedup}")
    wall0 = clock()
    reached = start
    while reached < until:
        if stop is not None and stop.is_set():
            break
        upcoming = next_event()
        target = until if upcoming is None else min(max(upcoming, reached), until)
        lag = wall0 + (target - start) / speedup - clock()
        if lag > 0:
            sleep(min(lag, _PACE_SLICE_S))
            continue
        advance(target)
        reached = target
    return reached
