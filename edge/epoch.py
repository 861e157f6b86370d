"""Merging the sentences of one receiver epoch into one `Fix`.

A receiver reports each position several times over - GGA, RMC, GSA, VTG... all for the same
instant. `EpochMerger` gathers the sentences of one epoch (same UTC time of day; VTG and GSA carry
no time and belong to the epoch they follow) and emits one `Fix` per epoch, as soon as the epoch
is complete.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

from edge.fix import Fix
from edge.nmea import Sentence

_HALF_DAY_US = 43_200_000_000
_ONE_DAY = timedelta(days=1)
# Which sentence's position wins when several in an epoch have one: GGA/GNS carry quality and
# altitude, RMC at least speed and date, GLL only the position.
_POSITION_RANK = {"GGA": 3, "GNS": 3, "RMC": 2, "GLL": 1}
# Sentence types that must carry a time to be placed in an epoch.
_MUST_HAVE_TIME = frozenset({"GGA", "RMC", "GNS", "ZDA"})
# Untimed sentences seen before any epoch are held for the first one; a stream of nothing else
# must not grow memory.
_MAX_PENDING = 16


class EpochMerger:
    """Turns a receiver's checked sentences into one `Fix` per epoch, with a quality gate.

    When a fix is emitted: the merger learns which sentence closes the receiver's output cycle
    (the last one before the time of day changes, e.g. "the second GSA"), as gpsd does, and emits
    the epoch the moment that sentence arrives. Until it has learned (the first epoch) or when a
    cycle comes up short, the epoch is emitted when the time changes or at `flush()` (call it at
    end of stream or when the receiver goes quiet). A change of cycle is adopted once it has
    been seen twice in a row, so one odd cycle does not upset the next. Sentences of an epoch
    that arrive after it was emitted are discarded: an epoch is never reported twice.

    What is dropped, counted in ``dropped``:

    * ``no_fix`` - a GGA/RMC/GLL/GNS saying the receiver has no fix (GGA quality 0, status V, mode
      N, or no position). Such a sentence never contributes a position; an epoch without any
      valid position produces no `Fix` at all, never a (0, 0).
    * ``below_min_quality`` - GGA quality code (or the RMC/GNS/GLL mode indicator mapped to it:
      A 1, D 2, R 4, F 5, E 6) below ``min_quality``. The codes are compared as numbers.
    * ``hdop_too_high`` - HDOP above ``max_hdop`` (an epoch with no HDOP at all is let through).
    * ``no_date`` - a fix whose date is unknown: dates come from RMC/ZDA; epochs without them use
      the last date seen (rolling over at midnight), else ``date_hint()`` (e.g. the host's UTC
      date); with neither the fix cannot be timestamped and is dropped.
    * ``no_time`` - a GGA/RMC/GNS position without a time, or a VTG/GSA that never found an epoch.
    """

    def __init__(
        self,
        *,
        min_quality: int = 1,
        max_hdop: float | None = None,
        date_hint: Callable[[], date] | None = None,
    ) -> None:
        self.min_quality = min_quality
        self.max_hdop = max_hdop
        self.date_hint = date_hint
        self.dropped: Counter[str] = Counter()
        self._time: int | None = None  # time of day (us) of the current epoch
        self._parts: list[Sentence] = []
        self._emitted = False
        self._pending: list[Sentence] = []
        # The learned cycle ender: emit when the n-th sentence of this type arrives.
        self._ender: tuple[str, int] | None = None
        self._candidate: tuple[str, int] | None = None
        self._seen = 0  # sentences of the ender type so far in this epoch
        self._ref_date: date | None = None
        self._ref_tod = 0
        self._midnight: tuple[date, datetime] | None = None

    @property
    def cycle_ender(self) -> tuple[str, int] | None:
        """The learned end of the receiver's cycle, e.g. ``("GSA", 2)``; None before learning."""
        return self._ender

    def feed(self, sentence: Sentence) -> list[Fix]:
        """Add one checked sentence; return the fixes it completes (zero or one, rarely two)."""
        kind = sentence.sentence_type
        t = sentence.time_us
        if not sentence.fix_ok and kind in _POSITION_RANK:
            self.dropped["no_fix"] += 1
        if t is None and kind in _MUST_HAVE_TIME:
            if sentence.fix_ok and kind != "ZDA":
                self.dropped["no_time"] += 1
            return []

        out: list[Fix] = []
        if t is None:
            if self._time is None:
                if len(self._pending) >= _MAX_PENDING:
                    del self._pending[0]
                    self.dropped["no_time"] += 1
                self._pending.append(sentence)
                return out
            self._parts.append(sentence)
        elif t != self._time:
            if self._time is not None:
                self._learn_ender()
                if not self._emitted:
                    self._emit(out)
            parts = self._pending
            parts.append(sentence)
            self._pending = []
            self._parts = parts
            self._time = t
            self._emitted = False
            ender = self._ender
            if ender is None:
                return out
            if len(parts) == 1:
                self._seen = 1 if kind == ender[0] else 0
            else:
                self._seen = sum(1 for p in parts if p.sentence_type == ender[0])
            if self._seen == ender[1]:
                self._emit(out)
            return out
        else:
            self._parts.append(sentence)

        ender = self._ender
        if ender is not None and kind == ender[0] and not self._emitted:
            self._seen += 1
            if self._seen == ender[1]:
                self._emit(out)
        return out

    def flush(self) -> list[Fix]:
        """End of stream or the receiver went quiet: emit the epoch in progress, if any."""
        out: list[Fix] = []
        if self._time is not None and not self._emitted:
            self._emit(out)
        self._time = None
        self._parts = []
        self._emitted = False
        if self._pending:
            self.dropped["no_time"] += len(self._pending)
            self._pending = []
        return out

    def _learn_ender(self) -> None:
        parts = self._parts
        last = parts[-1].sentence_type
        candidate = (last, sum(1 for p in parts if p.sentence_type == last))
        if self._ender is None or candidate == self._candidate:
            self._ender = candidate
        self._candidate = candidate

    def _emit(self, out: list[Fix]) -> None:
        self._emitted = True
        tod = self._time
        assert tod is not None
        best: Sentence | None = None
        rank = 0
        day: date | None = None
        alt: float | None = None
        hdop: float | None = None
        gsa_hdop: float | None = None
        speed: float | None = None
        course: float | None = None
        sats: int | None = None
        mode = 0
        for p in self._parts:
            kind = p.sentence_type
            r = _POSITION_RANK.get(kind, 0)
            if not p.fix_ok:
                if p.date is not None and day is None:
                    day = p.date  # a date is good even while the receiver has no fix
                continue
            if r > rank:
                best, rank = p, r
            if r == 3:
                if alt is None:
                    alt = p.alt
                if sats is None:
                    sats = p.sats
                if hdop is None:
                    hdop = p.hdop
            elif kind == "GSA":
                if p.mode is not None and p.mode > mode:
                    mode = p.mode
                if gsa_hdop is None:
                    gsa_hdop = p.hdop
            elif kind == "RMC" or kind == "VTG":
                if speed is None:
                    speed = p.speed
                if course is None:
                    course = p.course
            if p.date is not None and (day is None or kind == "ZDA"):
                day = p.date  # ZDA's four-digit year beats RMC's two

        day = self._resolve_date(day, tod)
        if best is None:
            return
        if hdop is None:
            hdop = gsa_hdop
        quality = best.quality or 0
        if quality < self.min_quality:
            self.dropped["below_min_quality"] += 1
            return
        if self.max_hdop is not None and hdop is not None and hdop > self.max_hdop:
            self.dropped["hdop_too_high"] += 1
            return
        if day is None and self.date_hint is not None:
            day = self.date_hint()
        if day is None:
            self.dropped["no_date"] += 1
            return
        midnight = self._midnight
        if midnight is None or midnight[0] != day:
            midnight = (day, datetime(day.year, day.month, day.day, tzinfo=UTC))
            self._midnight = midnight
        out.append(
            Fix(
                time=midnight[1] + timedelta(microseconds=tod),
                lat=best.lat,  # type: ignore[arg-type]  # fix_ok implies a position
                lon=best.lon,  # type: ignore[arg-type]
                quality=quality,
                alt=alt,
                speed=speed,
                course=course,
                sats=sats,
                hdop=hdop,
                mode=mode or None,
                talker=best.talker,
            )
        )

    def _resolve_date(self, day: date | None, tod: int) -> date | None:
        if day is None:
            if self._ref_date is None:
                return None
            day = self._ref_date
            # Time of day jumping back by more than half a day is the midnight rollover (and
            # the other way round a late sentence from before it).
            if tod < self._ref_tod - _HALF_DAY_US:
                day += _ONE_DAY
            elif tod > self._ref_tod + _HALF_DAY_US:
                day -= _ONE_DAY
        self._ref_date = day
        self._ref_tod = tod
        return day
