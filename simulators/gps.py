"""The simulated GPS collar receiver: a moving animal's NMEA output on a real pseudo-terminal.

`GpsSimulator` turns a `Track` into one epoch of sentences per 1/rate seconds of simulated time and
spoils them on request the way field wiring does (`FaultPlan`): binary noise between sentences, bad
checksums, truncated lines, lost line ends, no-fix periods, and the USB device vanishing and coming
back. Every epoch is kept in a truth log (`Epoch`: the track point, the `Fix` the sentences encode
or None for a no-fix epoch, the clean sentences and the bytes actually sent) so a test can compare
what an agent decoded against what the device said.

Three ways to run it:
- ``start()``/``stop()`` (or blocking ``run()``): real time on the pty, for the demo and reconnect tests;
- ``run_fast(n)``: n epochs onto the pty as fast as the reader takes them, nothing dropped;
- ``record(n)`` / ``nmea_bytes(n)`` / `benchmark_stream`: just the bytes, no port at all.
"""

from __future__ import annotations

import logging
import os
import random
import select
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from edge.fix import Fix
from simulators.nmea_out import Profile, get_profile, render_epoch
from simulators.pty_port import PtyPort
from simulators.track import Track, TrackPoint, random_start

log = logging.getLogger(__name__)


class Fault(StrEnum):
    """One way a sentence was spoilt on its way to the host."""

    NOISE = "noise"  # a burst of random bytes just before the sentence (the sentence itself intact)
    BAD_CHECKSUM = "bad-checksum"  # the *HH no longer matches the sentence
    TRUNCATED = "truncated"  # the line ends early: the tail and checksum are missing, CR/LF kept
    LOST_CRLF = "lost-crlf"  # CR/LF missing: the sentence runs straight into the next one


# Faults after which a framer that resyncs on "$" still cannot recover the sentence.
SPOILING = frozenset({Fault.BAD_CHECKSUM, Fault.TRUNCATED})


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """What goes wrong, and how often. Rates are per-sentence probabilities (0..1); schedules are in
    seconds of simulated time: a no-fix (or unplugged) spell of ``*_for`` seconds starts every
    ``*_every`` seconds, the first one ``*_every`` seconds after the start."""

    noise: float = 0.0
    bad_checksum: float = 0.0
    truncate: float = 0.0
    lost_crlf: float = 0.0
    no_fix_every: float | None = None
    no_fix_for: float = 10.0
    vanish_every: float | None = None
    vanish_for: float = 5.0
    noise_max_bytes: int = 32

    def __post_init__(self) -> None:
        for name in ("noise", "bad_checksum", "truncate", "lost_crlf"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"fault rate {name}={value!r}: expected a probability from 0 to 1")
        for every, length in (("no_fix_every", "no_fix_for"), ("vanish_every", "vanish_for")):
            period, span = getattr(self, every), getattr(self, length)
            if period is None:
                continue
            if not period > 0 or not 0 < span < period:
                raise ValueError(
                    f"fault schedule {every}={period!r}, {length}={span!r}: expected "
                    f"0 < {length} < {every} (seconds)"
                )
        if self.noise_max_bytes < 1:
            raise ValueError(f"noise_max_bytes={self.noise_max_bytes!r}: expected at least 1")

    @staticmethod
    def _in_spell(elapsed: float, every: float | None, span: float) -> bool:
        return every is not None and elapsed >= every and elapsed % every < span

    def no_fix_at(self, elapsed: float) -> bool:
        """True if the receiver has lost its fix `elapsed` simulated seconds after the start."""
        return self._in_spell(elapsed, self.no_fix_every, self.no_fix_for)

    def vanished_at(self, elapsed: float) -> bool:
        """True if the device is unplugged `elapsed` simulated seconds after the start."""
        return self._in_spell(elapsed, self.vanish_every, self.vanish_for)


@dataclass(frozen=True, slots=True)
class SentenceFault:
    sentence: int  # index into Epoch.sentences
    kind: Fault


@dataclass(frozen=True, slots=True)
class Epoch:
    """One epoch of the truth log. ``wire`` is what went out (b"" while unplugged)."""

    index: int
    elapsed: float
    point: TrackPoint
    fix: Fix | None
    sentences: tuple[bytes, ...]
    wire: bytes
    faults: tuple[SentenceFault, ...]
    delivered: bool

    def intact(self) -> list[bytes]:
        """Sentences that went out whole (noise before them or a lost CR/LF does not spoil them)."""
        spoilt = {f.sentence for f in self.faults if f.kind in SPOILING}
        return [s for i, s in enumerate(self.sentences) if self.delivered and i not in spoilt]


@dataclass(slots=True)
class Recording:
    """A run of epochs: the concatenated bytes and the per-epoch truth."""

    data: bytes
    epochs: list[Epoch] = field(default_factory=list)

    @property
    def truth(self) -> list[Fix | None]:
        """Per epoch, the Fix the device sent (None: no fix, or the device was unplugged)."""
        return [e.fix if e.delivered else None for e in self.epochs]


def inject_faults(
    sentences: list[bytes] | tuple[bytes, ...], plan: FaultPlan, rng: random.Random
) -> tuple[bytes, tuple[SentenceFault, ...]]:
    """Spoil `sentences` per `plan` using `rng`; return the wire bytes and what was done to which."""
    if not (plan.noise or plan.bad_checksum or plan.truncate or plan.lost_crlf):
        return b"".join(sentences), ()  # clean line: the benchmark's hot path
    out = bytearray()
    faults: list[SentenceFault] = []
    for i, sentence in enumerate(sentences):
        # Always draw four numbers, so one fault's rate does not reshuffle where the others land.
        r_noise, r_checksum, r_truncate, r_crlf = rng.random(), rng.random(), rng.random(), rng.random()
        line = sentence[:-2]  # without CR/LF
        if r_noise < plan.noise:
            out += rng.randbytes(rng.randint(1, plan.noise_max_bytes))
            faults.append(SentenceFault(i, Fault.NOISE))
        if r_truncate < plan.truncate:
            line = line[: rng.randint(1, len(line) - 1)]
            faults.append(SentenceFault(i, Fault.TRUNCATED))
        elif r_checksum < plan.bad_checksum:
            good = int(line[-2:], 16)
            line = line[:-2] + f"{good ^ rng.randint(1, 255):02X}".encode("ascii")
            faults.append(SentenceFault(i, Fault.BAD_CHECKSUM))
        out += line
        if r_crlf < plan.lost_crlf:
            faults.append(SentenceFault(i, Fault.LOST_CRLF))
        else:
            out += b"\r\n"
    return bytes(out), tuple(faults)


class GpsSimulator:
    """A GPS/GNSS receiver on a collar, talking NMEA on `port` (a `PtyPort`, or None for bytes only).

    ``profile`` names the receiver type (see `simulators.nmea_out.PROFILES`); ``rate_hz`` its epoch
    rate; ``rng`` drives the faults only (the track has its own), so the same seeds give the same
    bytes. ``clock`` paces real-time runs; simulated time comes from the track, never the clock.
    The truth log keeps the last ``log_limit`` epochs (`epochs`, `truth`).
    """

    def __init__(
        self,
        port: PtyPort | None,
        *,
        track: Track,
        rng: random.Random,
        profile: str | Profile = "gn-multi",
        rate_hz: float = 1.0,
        faults: FaultPlan | None = None,
        clock: Callable[[], float] = time.monotonic,
        log_limit: int | None = 100_000,
    ) -> None:
        if not rate_hz > 0:
            raise ValueError(f"rate_hz={rate_hz!r}: expected a positive epoch rate in Hz (1, 5, 10 ...)")
        self.port = port
        self.track = track
        self.profile = get_profile(profile)
        self.rate_hz = float(rate_hz)
        self.faults = faults if faults is not None else FaultPlan()
        self._rng = rng
        self._clock = clock
        self._index = 0
        self._track_elapsed = 0.0
        self._log: deque[Epoch] = deque(maxlen=log_limit)
        self._log_lock = threading.Lock()
        self.fault_counts: Counter[Fault] = Counter()
        self.sentences_sent = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- the pure core: one epoch at a time ----------------------------------------------------

    def next_epoch(self) -> Epoch:
        """Advance simulated time by one epoch and produce (but do not send) its bytes."""
        elapsed = self._index / self.rate_hz
        point = self.track.advance(elapsed - self._track_elapsed)
        self._track_elapsed = elapsed
        sentences, fix = render_epoch(point, profile=self.profile, fix=not self.faults.no_fix_at(elapsed))
        delivered = not self.faults.vanished_at(elapsed)
        wire, faults = inject_faults(sentences, self.faults, self._rng) if delivered else (b"", ())
        epoch = Epoch(self._index, elapsed, point, fix, tuple(sentences), wire, faults, delivered)
        self._index += 1
        self.fault_counts.update(f.kind for f in faults)
        self.sentences_sent += len(sentences) if delivered else 0
        with self._log_lock:
            self._log.append(epoch)
        return epoch

    def iter_epochs(self, n_epochs: int) -> Iterator[Epoch]:
        for _ in range(n_epochs):
            yield self.next_epoch()

    def record(self, n_epochs: int) -> Recording:
        """The next `n_epochs` as bytes plus their truth, without any port."""
        epochs = list(self.iter_epochs(n_epochs))
        return Recording(b"".join(e.wire for e in epochs), epochs)

    def nmea_bytes(self, n_epochs: int) -> bytes:
        """Just the bytes of the next `n_epochs` (truth still lands in `truth`/`epochs`)."""
        return b"".join(e.wire for e in self.iter_epochs(n_epochs))

    @property
    def epochs(self) -> list[Epoch]:
        with self._log_lock:
            return list(self._log)

    @property
    def truth(self) -> list[Fix | None]:
        """Per logged epoch, the Fix sent (None: no fix, or nothing sent because unplugged)."""
        return [e.fix if e.delivered else None for e in self.epochs]

    # --- the shell: onto the pseudo-terminal --------------------------------------------------

    def run_fast(self, n_epochs: int, *, timeout: float = 10.0) -> Recording:
        """Write `n_epochs` onto the port as fast as the reader takes them, losing nothing.

        Unlike a real UART this waits for the reader (so a benchmark measures the reader, not
        dropped bytes). Unplugged epochs are skipped without unplugging the port: use `start()` to
        exercise reconnects. Raises TimeoutError if nobody reads for `timeout` seconds.
        """
        port = self._need_port()
        epochs = []
        for epoch in self.iter_epochs(n_epochs):
            epochs.append(epoch)
            self._write_all(port, epoch.wire, timeout)
        return Recording(b"".join(e.wire for e in epochs), epochs)

    def _write_all(self, port: PtyPort, data: bytes, timeout: float) -> None:
        # Straight to the master fd: PtyPort.write() drops what does not fit, and here nothing may drop.
        view = memoryview(data)
        while view:
            _, writable, _ = select.select([], [port.fileno()], [], timeout)
            if not writable:
                raise TimeoutError(f"nobody read {port.path} for {timeout:g} s; {len(view)} bytes unsent")
            try:
                view = view[os.write(port.fileno(), view) :]
            except BlockingIOError:
                continue

    def run(self, duration: float | None = None) -> None:
        """Send epochs in real time until `stop()` or `duration` seconds (blocking)."""
        port = self._need_port()
        self._stop.clear()
        t0 = self._clock()
        sent = 0
        while not self._stop.is_set():
            due = sent / self.rate_hz
            if duration is not None and due >= duration:
                break
            wait = t0 + due - self._clock()
            if wait > 0 and self._stop.wait(wait):
                break
            epoch = self.next_epoch()
            self._plug(port, epoch.delivered)
            if epoch.delivered:
                port.write(epoch.wire)
            sent += 1

    def _plug(self, port: PtyPort, present: bool) -> None:
        if present and not port.present:
            port.reappear()
            log.info("GPS simulator: device back on %s -> %s", port.path, port.slave_name)
        elif not present and port.present:
            port.vanish()
            log.info("GPS simulator: device unplugged (%s gone)", port.path)

    def start(self, duration: float | None = None) -> None:
        """Run in real time on a background thread; `stop()` ends it."""
        self._need_port()
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("GPS simulator already running")
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, args=(duration,), name="gps-sim", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _need_port(self) -> PtyPort:
        if self.port is None:
            raise RuntimeError("this GPS simulator has no port: use record()/nmea_bytes() instead")
        return self.port


def make_simulator(
    port: PtyPort | None,
    *,
    seed: int,
    profile: str | Profile = "gn-multi",
    rate_hz: float = 1.0,
    faults: FaultPlan | None = None,
    start_time: datetime | None = None,
    start: tuple[float, float] | None = None,
    log_limit: int | None = 100_000,
) -> GpsSimulator:
    """A simulator for one animal, everything derived from `seed` (track and faults separately).

    ``start_time`` defaults to 2026-01-01T00:00Z so byte streams are reproducible; pass the current
    time for a live demo.
    """
    track_rng = random.Random(f"uncia-track-{seed}")
    track = Track(
        track_rng,
        start=start if start is not None else random_start(track_rng),
        start_time=start_time if start_time is not None else datetime(2026, 1, 1, tzinfo=UTC),
    )
    return GpsSimulator(
        port,
        track=track,
        rng=random.Random(f"uncia-faults-{seed}"),
        profile=profile,
        rate_hz=rate_hz,
        faults=faults,
        log_limit=log_limit,
    )


def benchmark_stream(
    n_epochs: int, *, seed: int = 0, profile: str = "gp-basic", rate_hz: float = 1.0
) -> tuple[bytes, list[Fix]]:
    """`n_epochs` clean epochs (3 sentences each with "gp-basic") and the Fix of each, in order."""
    sim = make_simulator(None, seed=seed, profile=profile, rate_hz=rate_hz, log_limit=0)
    chunks: list[bytes] = []
    fixes: list[Fix] = []
    for epoch in sim.iter_epochs(n_epochs):
        chunks.append(epoch.wire)
        if epoch.fix is not None:  # always, as no faults are planned
            fixes.append(epoch.fix)
    return b"".join(chunks), fixes
