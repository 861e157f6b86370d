"""Time on air against published reference values, the duty-cycle account, and the airtime benchmark.

Reference values come from outside this tree:

- [semtech] Semtech's "SX1261 LoRa Calculator", as transcribed in micropython-lib,
  micropython/lora/tests/test_time_on_air.py (SF7+ figures equal the SX1276 datasheet formula there).
- [toa] tanupoo/lorawan_toa, test.py (a ToA calculator after SX1276 datasheet §4.1.1.6).
- [avb] avbentem/airtime-calculator, src/lora/Airtime.test.ts (checked against a public LoRaWAN
  airtime spreadsheet).

No published SF10 / 125 kHz table was found; SF10 is checked against a hand computation below and
follows the same code path (no low-data-rate optimisation) as the SF7, SF8 and SF12/500 kHz references.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.lora.airtime import DutyCycleAccount, symbol_time, time_on_air
from edge.lora.modem import RadioSettings


@pytest.mark.parametrize(
    ("payload", "radio", "explicit", "crc", "expected_ms", "source"),
    [
        # The brief's anchor: SF7/125 kHz/4/5, 8-symbol preamble, 10 bytes.
        (10, (7, 125, 1, 8), True, True, 41.216, "semtech formula"),
        (12, (7, 125, 1, 8), True, True, 41.216, "toa test_31"),
        (14, (7, 125, 1, 8), True, True, 46.336, "avb"),
        (16, (7, 125, 1, 8), True, True, 51.456, "avb"),
        (25, (7, 125, 4, 8), True, True, 86.272, "avb"),
        (14, (8, 125, 1, 8), True, True, 82.432, "avb"),
        (1, (8, 125, 2, 8), True, True, 53.760, "semtech"),
        (3, (8, 125, 2, 8), True, True, 66.048, "semtech"),
        (253, (8, 125, 2, 8), True, True, 827.904, "semtech"),
        (10, (8, 125, 2, 12), False, True, 86.528, "semtech"),
        # SF11/SF12 at 125 kHz: low-data-rate optimisation switches itself on.
        (14, (11, 125, 1, 8), True, True, 659.456, "avb"),
        (25, (11, 125, 1, 8), True, True, 823.296, "avb"),
        (32, (11, 125, 1, 8), True, True, 987.136, "toa test_12"),
        (32, (12, 125, 1, 8), True, True, 1810.432, "toa test_11"),
        (64, (12, 125, 1, 8), True, True, 2793.472, "toa README"),
        (64, (12, 125, 1, 8), False, True, 2793.472, "toa test_21"),
        (64, (12, 125, 1, 8), True, False, 2793.472, "toa test_22"),
        # SF12 at 250 kHz still has symbols over 16 ms; at 500 kHz it does not.
        (32, (12, 250, 1, 8), True, True, 905.216, "toa test_13"),
        (1, (12, 500, 1, 8), True, True, 206.848, "semtech"),
        (64, (12, 500, 1, 12), True, True, 649.216, "semtech"),
        (1, (12, 500, 1, 8), True, False, 165.888, "semtech"),
        (192, (12, 500, 1, 8), True, True, 1476.608, "semtech"),
        (16, (12, 500, 1, 12), False, False, 280.576, "semtech"),
        (12, (7, 500, 4, 6), False, False, 10.816, "toa test_41"),
        # Narrow bandwidths, optimisation on.
        (16, (11, 10.42, 3, 25), True, True, 12824.568, "semtech"),
        (16, (11, 10.42, 3, 25), False, False, 11448.752, "semtech"),
        (253, (12, 7.81, 4, 128), True, True, 287532.907, "semtech"),
    ],
)
def test_time_on_air_matches_published_values(payload, radio, explicit, crc, expected_ms, source) -> None:
    got = time_on_air(payload, radio, explicit_header=explicit, crc=crc) * 1000.0
    assert got == pytest.approx(expected_ms, rel=1e-5, abs=1e-6), source


def test_sf10_by_hand() -> None:
    # T_sym = 1024/125 kHz = 8.192 ms; 12 bytes: ceil((96 - 40 + 28 + 16) / 40) = 3 blocks of 5
    # symbols, + 8 = 23 payload symbols; (8 + 4.25 + 23) * 8.192 ms = 288.768 ms.
    assert time_on_air(12, (10, 125, 1, 8)) == pytest.approx(0.288768, rel=1e-12)
    # 51 bytes: ceil((408 - 40 + 28 + 16) / 40) = 11 blocks -> 63 symbols; 75.25 * 8.192 ms.
    assert time_on_air(51, (10, 125, 1, 8)) == pytest.approx(0.616448, rel=1e-12)


def test_radio_settings_and_tuple_agree() -> None:
    for sf in range(7, 13):
        radio = RadioSettings(spreading_factor=sf, bandwidth_khz=125, coding_rate=2, preamble=12)
        assert time_on_air(20, radio) == time_on_air(20, (sf, 125, 2, 12))


def test_low_data_rate_optimisation_is_automatic_above_16_ms_symbols() -> None:
    assert symbol_time(10, 125) < 0.016 < symbol_time(11, 125)
    for sf, on in ((10, False), (11, True), (12, True)):
        auto = time_on_air(40, (sf, 125, 1, 8))
        assert auto == time_on_air(40, (sf, 125, 1, 8), low_data_rate_optimize=on)
    # Forcing it changes the payload symbol count.
    assert time_on_air(40, (12, 125, 1, 8), low_data_rate_optimize=False) < time_on_air(40, (12, 125, 1, 8))


@given(st.integers(0, 254), st.sampled_from([7, 8, 9, 10, 11, 12]), st.sampled_from([125, 250, 500]))
def test_airtime_never_shrinks_with_a_longer_payload(length: int, sf: int, bw: int) -> None:
    assert time_on_air(length, (sf, bw, 1, 8)) <= time_on_air(length + 1, (sf, bw, 1, 8))


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ((256, (7, 125, 1, 8)), "0 to 255"),
        ((-1, (7, 125, 1, 8)), "0 to 255"),
        ((10, (13, 125, 1, 8)), "spreading factor"),
        ((10, (7, 0, 1, 8)), "bandwidth"),
        ((10, (7, 125, 5, 8)), "coding rate"),
        ((10, (7, 125, 1, -1)), "preamble"),
    ],
)
def test_time_on_air_refuses_impossible_settings(args, words) -> None:
    with pytest.raises(ValueError, match=words):
        time_on_air(*args)


# --- the duty-cycle account ------------------------------------------------------------------------


class SimClock:
    """A settable clock: seconds of simulated time."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_duty_cycle_budget_fills_and_slides() -> None:
    clock = SimClock()
    duty = DutyCycleAccount(limit_fraction=0.01, window_s=3600.0, clock=clock)
    assert duty.budget == pytest.approx(36.0)
    airtime = time_on_air(12, RadioSettings(spreading_factor=12))  # 1.155 s
    sent = 0
    while not duty.would_exceed(airtime):
        duty.record(airtime)
        sent += 1
        clock.now += 10.0
    assert sent == int(36.0 / airtime) == 31
    assert duty.used() == pytest.approx(sent * airtime)
    assert duty.fraction() == pytest.approx(sent * airtime / 3600.0)
    assert duty.remaining() == pytest.approx(36.0 - sent * airtime)
    # The first packet leaves the window one hour after it ended; then one more fits.
    first_end = 1000.0 + airtime
    assert duty.next_allowed(airtime) == pytest.approx(first_end + 3600.0)
    clock.now = first_end + 3600.0 - 0.001
    assert duty.would_exceed(airtime)
    clock.now = first_end + 3600.0
    assert not duty.would_exceed(airtime)
    # Long after, the account is empty.
    assert duty.used(now=clock.now + 7200.0) == 0.0
    assert duty.remaining(now=clock.now + 7200.0) == pytest.approx(36.0)


def test_duty_cycle_counts_a_transmission_until_it_has_wholly_left_the_window() -> None:
    clock = SimClock()
    duty = DutyCycleAccount(limit_fraction=0.5, window_s=10.0, clock=clock)
    duty.record(4.0)  # on air from 1000 to 1004
    assert duty.used(now=1013.9) == 4.0  # still partly inside [1003.9, 1013.9]
    assert duty.used(now=1014.0) == 0.0
    assert duty.next_allowed(1.0) == 1000.0  # 4 + 1 <= 5: fits now
    assert duty.next_allowed(2.0) == 1014.0


def test_duty_cycle_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="limit"):
        DutyCycleAccount(limit_fraction=0.0)
    with pytest.raises(ValueError, match="window"):
        DutyCycleAccount(window_s=0.0)
    duty = DutyCycleAccount(clock=SimClock())
    with pytest.raises(ValueError, match="airtime"):
        duty.record(-1.0)
    with pytest.raises(ValueError, match="whole budget"):
        duty.next_allowed(40.0)


# --- the benchmark still runs -------------------------------------------------------------------


def test_airtime_benchmark_prints_a_table_then_json() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.lora_airtime", "--quick"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) > 3, "a readable table comes before the JSON line"
    figures = json.loads(lines[-1])
    for sf in ("sf7", "sf10", "sf12"):
        assert set(figures[sf]) == {"single", "batch4", "batch8", "gga"}
        assert figures[sf]["single"]["bytes_per_fix"] == 12
        assert figures[sf]["batch8"]["bytes_per_fix"] < figures[sf]["batch4"]["bytes_per_fix"] < 12
        assert 60 <= figures[sf]["gga"]["bytes_per_fix"] <= 82
    assert figures["sf7"]["single"]["airtime_ms_per_fix"] == pytest.approx(41.22, abs=0.01)
