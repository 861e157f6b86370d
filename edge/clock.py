"""The unit's clock and where its time comes from.

A receive timestamp is only as good as the clock behind it. A field unit without network time starts
with whatever its RTC (or, on a Pi without one, the last shutdown) says, so every record carries the
clock source: `gps` when the time came from a fix, `ntp` when the kernel says the system clock is
synchronised (by chrony/ntpd/systemd-timesyncd, possibly GPS-disciplined), `unsynced` otherwise.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable
from datetime import UTC, datetime

from edge.fix import ClockSource

_TIME_ERROR = 5  # adjtimex(2): "clock not synchronized"


def _adjtimex_state() -> int | None:
    """The kernel's clock state from adjtimex(2) in read-only mode, or None where unavailable."""
    # Hand-written because no maintained library exposes adjtimex; `timedatectl` needs systemd/D-Bus,
    # which a container or an early-boot agent may not have. A zeroed struct timex (modes=0) only reads.
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        buf = ctypes.create_string_buffer(512)  # larger than struct timex on every Linux ABI
        return int(libc.adjtimex(buf))
    except (OSError, AttributeError):
        return None


def system_clock_source() -> ClockSource:
    """`ntp` if the kernel reports the system clock synchronised, else `unsynced`."""
    state = _adjtimex_state()
    if state is None or state == _TIME_ERROR or state < 0:
        return ClockSource.UNSYNCED
    return ClockSource.NETWORK


def utc_now() -> datetime:
    return datetime.now(UTC)


Clock = Callable[[], datetime]
