"""How long a LoRa packet occupies the channel, and the duty-cycle account that keeps a modem legal.

`time_on_air` is the Semtech formula (SX1276 datasheet §4.1.1.7, AN1200.13 "LoRa Modem Designer's
Guide"); the SX126x family gives the same figures for SF7-SF12. `DutyCycleAccount` sums a modem's
own transmissions over a sliding window (an hour, as ETSI EN 300 220 and LoRaWAN regional plans
count it) so it can say whether one more packet still fits.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

from edge.lora.modem import RadioSettings

# Above this symbol time the modem must use low-data-rate optimisation (SX1276 datasheet): SF11 and
# SF12 at 125 kHz, SF12 at 250 kHz.
LDRO_SYMBOL_S = 0.016

RadioTuple = tuple[int, float, int, int]
"""(spreading factor, bandwidth in kHz, coding rate 1..4 for 4/5..4/8, preamble symbols)."""


def symbol_time(spreading_factor: int, bandwidth_khz: float) -> float:
    """Seconds per LoRa symbol: 2^SF / BW."""
    return (1 << spreading_factor) / (bandwidth_khz * 1000.0)


def time_on_air(
    payload_len: int,
    settings: RadioSettings | RadioTuple,
    *,
    explicit_header: bool = True,
    crc: bool = True,
    low_data_rate_optimize: bool | None = None,
) -> float:
    """Seconds on air for a packet of `payload_len` bytes (the modem's payload, 0-255).

    ``low_data_rate_optimize=None`` turns it on when a symbol lasts longer than 16 ms, as the modems
    do. Example: 10 bytes at SF7/125 kHz/4/5 with an 8-symbol preamble take 41.216 ms.
    """
    if isinstance(settings, RadioSettings):
        sf, bw, cr, preamble = (
            settings.spreading_factor,
            settings.bandwidth_khz,
            settings.coding_rate,
            settings.preamble,
        )
    else:
        sf, bw, cr, preamble = settings
    if not 0 <= payload_len <= 255:
        raise ValueError(f"a LoRa payload is 0 to 255 bytes, got {payload_len}")
    if not 6 <= sf <= 12:
        raise ValueError(f"spreading factor must be 6 to 12, got {sf}")
    if not bw > 0:
        raise ValueError(f"bandwidth must be positive (kHz), got {bw}")
    if not 1 <= cr <= 4:
        raise ValueError(f"coding rate must be 1 (4/5) to 4 (4/8), got {cr}")
    if preamble < 0:
        raise ValueError(f"preamble must be 0 or more symbols, got {preamble}")
    t_sym = symbol_time(sf, bw)
    de = t_sym > LDRO_SYMBOL_S if low_data_rate_optimize is None else low_data_rate_optimize
    ih = 0 if explicit_header else 1
    numerator = 8 * payload_len - 4 * sf + 28 + 16 * int(crc) - 20 * ih
    # Integer ceiling: the float division would put 3.0000000001 symbols into the next block.
    blocks = -(-numerator // (4 * (sf - 2 * int(de))))
    payload_symbols = 8 + max(blocks * (cr + 4), 0)
    return (preamble + 4.25 + payload_symbols) * t_sym


class DutyCycleAccount:
    """The airtime one modem has used in the last `window_s` seconds, against `limit_fraction` of it.

    Regional rules (1 % on most EU868 sub-bands; CN470 plans commonly adopt 1 % too) limit each
    transmitter's share of every hour. Record each transmission as it starts; a transmission counts in
    full until it has wholly left the window, so the account errs on the side of the rules. One account
    per modem. `clock` is seconds from any fixed point (`time.monotonic`, or a simulation's clock).
    """

    def __init__(
        self,
        limit_fraction: float = 0.01,
        window_s: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0.0 < limit_fraction <= 1.0:
            raise ValueError(
                f"duty-cycle limit must be a fraction above 0 and at most 1, got {limit_fraction}"
            )
        if not window_s > 0.0:
            raise ValueError(f"duty-cycle window must be positive (seconds), got {window_s}")
        self.limit_fraction = limit_fraction
        self.window_s = window_s
        self.clock = clock
        self._sent: deque[tuple[float, float]] = deque()  # (end, airtime) in start order

    @property
    def budget(self) -> float:
        """Seconds of airtime allowed per window."""
        return self.limit_fraction * self.window_s

    def _now(self, now: float | None) -> float:
        return self.clock() if now is None else now

    def _expire(self, now: float) -> None:
        while self._sent and self._sent[0][0] + self.window_s <= now:
            self._sent.popleft()

    def record(self, airtime_s: float, now: float | None = None) -> None:
        """A transmission of `airtime_s` seconds starts now."""
        if not (math.isfinite(airtime_s) and airtime_s >= 0.0):
            raise ValueError(f"airtime must be a non-negative number of seconds, got {airtime_s}")
        start = self._now(now)
        self._expire(start)
        self._sent.append((start + airtime_s, airtime_s))

    def used(self, now: float | None = None) -> float:
        """Seconds of airtime in the window ending now."""
        at = self._now(now)
        return sum(airtime for end, airtime in self._sent if end + self.window_s > at)

    def fraction(self, now: float | None = None) -> float:
        """`used` as a share of the window (0.01 is 1 %)."""
        return self.used(now) / self.window_s

    def remaining(self, now: float | None = None) -> float:
        """Seconds of airtime still allowed in the window ending now."""
        return max(0.0, self.budget - self.used(now))

    def would_exceed(self, airtime_s: float, now: float | None = None) -> bool:
        """True if sending `airtime_s` more now would break the limit."""
        return self.used(now) + airtime_s > self.budget * (1.0 + 1e-12)

    def next_allowed(self, airtime_s: float, now: float | None = None) -> float:
        """The earliest clock time at which `airtime_s` fits (now, if it fits now)."""
        if airtime_s > self.budget:
            raise ValueError(
                f"one packet of {airtime_s:.3f} s on air exceeds the whole budget of {self.budget:.3f} s "
                "per window: use a lower spreading factor or a shorter payload"
            )
        at = self._now(now)
        live = [(end, airtime) for end, airtime in self._sent if end + self.window_s > at]
        excess = sum(airtime for _, airtime in live) + airtime_s - self.budget * (1.0 + 1e-12)
        for end, airtime in sorted(live):
            if excess <= 0.0:
                break
            at = end + self.window_s
            excess -= airtime
        return at
