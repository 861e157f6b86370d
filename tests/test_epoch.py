"""EpochMerger: one Fix per receiver epoch, emitted as soon as the epoch is complete."""

from __future__ import annotations

from datetime import UTC, date, datetime
from functools import reduce
from operator import xor

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.epoch import EpochMerger
from edge.fix import Fix
from edge.nmea import Sentence, parse_sentence


def sentence(body: str) -> Sentence:
    result = parse_sentence(f"${body}*{reduce(xor, body.encode(), 0):02X}".encode())
    assert isinstance(result, Sentence), result
    return result


def feed(merger: EpochMerger, *bodies: str) -> list[Fix]:
    return [fix for body in bodies for fix in merger.feed(sentence(body))]


def gga(t: str, q: int = 1, lat: str = "4807.038", hdop: str = "0.9", talker: str = "GP") -> str:
    return f"{talker}GGA,{t},{lat},N,01131.000,E,{q},08,{hdop},545.4,M,46.9,M,,"


def rmc(t: str, d: str = "230394", status: str = "A", mode: str = "A") -> str:
    return f"GPRMC,{t},{status},4807.038,N,01131.000,E,022.4,084.4,{d},003.1,W,{mode}"


GSA = "GPGSA,A,3,04,05,,09,12,,,24,,,,,2.5,1.3,2.1"


def epoch(t: str) -> tuple[str, str, str]:
    return gga(t), rmc(t), GSA


def test_three_sentences_make_one_fix_with_everything_merged():
    merger = EpochMerger()
    assert feed(merger, *epoch("123519")) == []  # first epoch: cycle not learned yet
    [fix] = feed(merger, gga("123520"))  # time moved on: the first epoch is complete
    assert fix == Fix(
        time=datetime(1994, 3, 23, 12, 35, 19, tzinfo=UTC),
        lat=pytest.approx(48 + 7.038 / 60),
        lon=pytest.approx(11 + 31.0 / 60),
        quality=1,
        alt=545.4,
        speed=pytest.approx(22.4 * 1852 / 3600),
        course=84.4,
        sats=8,
        hdop=0.9,
        mode=3,
        talker="GP",
    )


def test_once_the_cycle_is_learned_a_fix_comes_with_the_last_sentence_of_its_epoch():
    merger = EpochMerger()
    feed(merger, *epoch("000001"))
    feed(merger, *epoch("000002"))
    assert merger.cycle_ender == ("GSA", 1)
    for second in range(3, 10):
        t = f"0000{second:02d}"
        assert feed(merger, gga(t), rmc(t)) == []
        [fix] = feed(merger, GSA)
        assert fix.time.second == second
    assert merger.flush() == []  # nothing left over: every epoch went out on time


def test_a_cycle_with_two_gsa_ends_on_the_second():
    merger = EpochMerger()
    two = ("GNGSA,A,2,19,27,,,,,,,,,,,02.1,01.8,00.9", "GNGSA,A,2,67,84,83,75,,,,,,,,,02.1,01.8,00.9")
    feed(merger, gga("135651"), rmc("135651"), *two)
    feed(merger, gga("135652"), rmc("135652"), *two)
    assert merger.cycle_ender == ("GSA", 2)
    assert feed(merger, gga("135653"), rmc("135653"), two[0]) == []
    [fix] = feed(merger, two[1])
    assert fix.mode == 2


def test_one_short_cycle_does_not_change_the_learned_ender():
    merger = EpochMerger()
    for t in ("000001", "000002", "000003"):
        feed(merger, *epoch(t))
    [late] = feed(merger, gga("000004"), rmc("000004"), gga("000005"))  # GSA missing once
    assert late.time.second == 4
    assert merger.cycle_ender == ("GSA", 1)
    assert feed(merger, rmc("000005")) == []
    assert [f.time.second for f in feed(merger, GSA)] == [5]


def test_untimed_vtg_and_gsa_belong_to_the_epoch_they_follow():
    merger = EpochMerger()
    feed(merger, rmc("120000"), "GPVTG,054.7,T,034.4,M,005.5,N,010.2,K,A", gga("120000"), GSA)
    [fix] = merger.flush()
    assert (fix.course, fix.mode) == (84.4, 3)  # RMC first; GSA merged


def test_an_epoch_is_never_reported_twice():
    merger = EpochMerger()
    fixes = feed(merger, *epoch("000001"), *epoch("000002"), *epoch("000002"), *epoch("000003"))
    fixes += merger.flush()
    assert [f.time.second for f in fixes] == [1, 2, 3]


@pytest.mark.parametrize(
    "no_fix",
    [
        (gga("120000", q=0), rmc("120000", status="V", mode="N")),
        ("GPGGA,120000,,,,,0,00,99.99,,,,,,", "GPRMC,120000,V,,,,,,,230394,,,N"),
        ("GPGLL,,,,,120000,V,N",),
        ("GNGNS,120000,,,,,NNN,00,,,,,",),
    ],
)
def test_no_fix_never_makes_a_position(no_fix):
    merger = EpochMerger(min_quality=0)
    assert feed(merger, *no_fix, GSA) + merger.flush() == []
    assert merger.dropped["no_fix"] == len(no_fix)


def test_quality_gate():
    merger = EpochMerger(min_quality=2)
    assert feed(merger, *epoch("120000")) + merger.flush() == []
    assert merger.dropped == {"below_min_quality": 1}
    merger = EpochMerger(min_quality=2)
    assert len(feed(merger, gga("120000", q=2), rmc("120000")) + merger.flush()) == 1


def test_hdop_gate():
    merger = EpochMerger(max_hdop=2.0)
    fixes = feed(merger, gga("120000", hdop="2.5"), rmc("120000"))
    fixes += feed(merger, gga("120001", hdop="1.5"), rmc("120001")) + merger.flush()
    assert [f.hdop for f in fixes] == [1.5]
    assert merger.dropped == {"hdop_too_high": 1}


@pytest.mark.parametrize(("mode", "quality"), [("A", 1), ("D", 2), ("E", 6), ("R", 4), ("F", 5)])
def test_quality_comes_from_the_mode_indicator_without_gga(mode, quality):
    merger = EpochMerger()
    feed(merger, rmc("120000", mode=mode))
    [fix] = merger.flush()
    assert (fix.quality, fix.alt) == (quality, None)


def test_gga_only_epochs_take_the_last_date_and_roll_over_at_midnight():
    merger = EpochMerger()
    fixes = feed(merger, gga("235958"), rmc("235958", d="311299"), gga("235959"), gga("000000"))
    fixes += feed(merger, gga("000001")) + merger.flush()
    assert [f.time for f in fixes] == [
        datetime(1999, 12, 31, 23, 59, 58, tzinfo=UTC),
        datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC),
        datetime(2000, 1, 1, 0, 0, 0, tzinfo=UTC),
        datetime(2000, 1, 1, 0, 0, 1, tzinfo=UTC),
    ]


def test_zda_gives_the_date_with_its_four_digit_year():
    merger = EpochMerger()
    feed(merger, "GPZDA,120000.00,04,07,2079,00,00", gga("120000.00"))
    [fix] = merger.flush()
    assert fix.time == datetime(2079, 7, 4, 12, tzinfo=UTC)


def test_without_any_date_the_hint_is_used_else_the_fix_is_dropped():
    merger = EpochMerger(date_hint=lambda: date(2026, 11, 25))
    feed(merger, gga("120000"))
    assert merger.flush()[0].time == datetime(2026, 11, 25, 12, tzinfo=UTC)
    merger = EpochMerger()
    feed(merger, gga("120000"))
    assert merger.flush() == []
    assert merger.dropped == {"no_date": 1}


def test_a_position_without_time_is_dropped():
    merger = EpochMerger()
    assert feed(merger, gga(""), rmc("")) + merger.flush() == []
    assert merger.dropped == {"no_time": 2}


def test_untimed_sentences_waiting_for_a_first_epoch_are_bounded():
    merger = EpochMerger()
    feed(merger, *[GSA] * 100)
    assert merger.dropped["no_time"] == 100 - 16
    assert merger.flush() == []
    assert merger.dropped["no_time"] == 100


def test_flush_ends_the_epoch_in_progress_and_starts_afresh():
    merger = EpochMerger()
    feed(merger, *epoch("120000"))
    assert len(merger.flush()) == 1
    assert merger.flush() == []
    feed(merger, GSA, gga("120005"), rmc("120005"))  # after a quiet spell
    assert [f.time.second for f in merger.flush()] == [5]


@settings(max_examples=100, deadline=None)
@given(
    seconds=st.lists(st.integers(0, 86_399), min_size=1, max_size=30, unique=True),
    order=st.permutations(["GGA", "RMC", "GSA", "VTG"]),
)
def test_every_epoch_yields_exactly_one_fix_in_any_sentence_order(seconds, order):
    merger = EpochMerger()
    fixes: list[Fix] = []
    for s in seconds:
        t = f"{s // 3600:02d}{s // 60 % 60:02d}{s % 60:02d}"
        bodies = {
            "GGA": gga(t),
            "RMC": rmc(t, d="251126"),
            "GSA": GSA,
            "VTG": "GPVTG,084.4,T,034.4,M,022.4,N,041.5,K,A",
        }
        fixes += feed(merger, *(bodies[k] for k in order))
    fixes += merger.flush()
    assert [f.time.hour * 3600 + f.time.minute * 60 + f.time.second for f in fixes] == seconds
    assert all(f.time.date() == date(2026, 11, 25) for f in fixes)
    assert all((f.alt, f.sats, f.course) == (545.4, 8, 84.4) for f in fixes)
