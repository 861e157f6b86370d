"""parse_sentence: checksum required, talkers allow-listed, fields converted, typed rejections."""

from __future__ import annotations

from datetime import date
from functools import reduce
from operator import xor

import pynmea2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge import nmea
from edge.nmea import FIX_TYPES, TALKERS, Ignored, Rejected, Sentence, parse_sentence


def cs(body: str) -> str:
    return f"{reduce(xor, body.encode(), 0):02X}"


def nmea_line(body: str) -> bytes:
    return f"${body}*{cs(body)}".encode()


def parsed(body: str) -> Sentence:
    result = parse_sentence(nmea_line(body))
    assert isinstance(result, Sentence), result
    return result


def rejected(line: bytes) -> Rejected:
    result = parse_sentence(line)
    assert isinstance(result, Rejected), result
    return result


GGA = "GPGGA,123519.25,4807.038,N,01131.000,W,1,08,0.9,545.4,M,46.9,M,,"


def test_gga_fields_are_converted():
    s = parsed(GGA)
    assert (s.talker, s.sentence_type, s.fix_ok) == ("GP", "GGA", True)
    assert s.time_us == ((12 * 60 + 35) * 60 + 19) * 1_000_000 + 250_000
    assert s.lat == pytest.approx(48 + 7.038 / 60, abs=1e-12)
    assert s.lon == pytest.approx(-(11 + 31.0 / 60), abs=1e-12)
    assert (s.alt, s.quality, s.sats, s.hdop) == (545.4, 1, 8, 0.9)
    assert isinstance(s.message, pynmea2.GGA)  # pynmea2's object rides along
    assert s.message.gps_qual == 1


def test_rmc_fields_are_converted():
    s = parsed("GNRMC,235959.999,A,3340.1234,S,15112.5000,E,10.0,084.4,311299,003.1,W,D")
    assert (s.talker, s.fix_ok, s.quality) == ("GN", True, 2)  # mode D: differential
    assert s.date == date(1999, 12, 31)
    assert s.time_us == 86_399_999_000
    assert s.lat == pytest.approx(-(33 + 40.1234 / 60))
    assert s.speed == pytest.approx(10.0 * 1852 / 3600)
    assert s.course == 84.4


@pytest.mark.parametrize(
    "body",
    [
        "GPGGA,123519,,,,,0,00,99.99,,,,,,",  # receiver without fix: empty position
        "GPGGA,123519,4807.038,N,01131.000,E,0,00,,,,,,,",  # quality 0 with a stale position
        "GPRMC,123519,V,,,,,,,230394,,,N",
        "GPRMC,123519,V,4807.038,N,01131.000,E,0.0,0.0,230394,,,N",
        "GPGLL,,,,,123519,V,N",
        "GNGNS,123519,,,,,NNN,00,,,,,",
    ],
)
def test_no_fix_is_never_a_position_and_never_zero_zero(body):
    s = parsed(body)
    assert not s.fix_ok
    assert (s.lat, s.lon) != (0.0, 0.0)
    assert s.quality in (0, None)


def test_empty_position_fields_are_none_not_zero():
    s = parsed("GPGGA,123519,,,,,0,00,99.99,,,,,,")
    assert (s.lat, s.lon, s.alt) == (None, None, None)


@pytest.mark.parametrize("talker", sorted(TALKERS))
def test_every_gnss_talker_is_accepted(talker):
    assert parsed(talker + GGA[2:]).talker == talker


def test_checksum_missing_and_checksum_wrong_are_told_apart():
    line = nmea_line(GGA)
    assert rejected(line[:-3]).reason == "no_checksum"
    wrong = line[:-2] + (b"00" if line[-2:] != b"00" else b"01")
    assert rejected(wrong).reason == "bad_checksum"
    assert "checksum says" in rejected(wrong).detail
    assert rejected(line[:-1]).reason == "bad_checksum"  # one hex digit only
    assert rejected(line[:-2] + b"G1").reason == "bad_checksum"


def test_lower_case_checksum_is_accepted():
    line = nmea_line(GGA)
    assert isinstance(parse_sentence(line[:-2] + line[-2:].lower()), Sentence)


def test_binary_bytes_are_not_ascii():
    assert rejected(b"$GPGGA,\xb5\x62,*00").reason == "not_ascii"
    assert rejected(nmea_line("GPGGA,\x01,")).reason == "not_ascii"


def test_unknown_talker_is_rejected():
    result = rejected(nmea_line("IIGGA" + GGA[5:]))
    assert result.reason == "unknown_talker"
    assert "II" in result.detail


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        ("GPGSV,3,1,11,03,03,111,00,04,15,270,00,06,01,010,00,13,06,292,00", "GSV"),
        ("GNTXT,01,01,02,u-blox AG - www.u-blox.com", "TXT"),
        ("PUBX,00,081350.00,4717.113210,N,00833.915187,E", "PUBX"),
        ("PGRME,15.0,M,45.0,M,25.0,M", "PGRME"),
        ("GAGSV,1,1,01,02,33,240,35", "GSV"),
        ("GPGBS,204227.00,12.300,16.350,17.007,,,,", "GBS"),
    ],
)
def test_well_formed_sentences_without_a_fix_are_ignored_not_dropped(body, kind):
    result = parse_sentence(nmea_line(body))
    assert isinstance(result, Ignored)
    assert (result.reason, result.sentence_type) == ("ignored", kind)


@pytest.mark.parametrize(
    "body",
    [
        "GPGGA,123519,48x7.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,",
        "GPGGA,127519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,",  # minute 75
        "GPGGA,12:35:19,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,",
        "GPGGA,123519,9107.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,",  # 91 degrees north
        "GPGGA,123519,4807.038,,01131.000,E,1,08,0.9,545.4,M,46.9,M,,",  # no hemisphere
        "GPGGA,123519,-4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,",
        "GPGGA,123519,4807.038,N,,,1,08,0.9,545.4,M,46.9,M,,",  # latitude without longitude
        "GPGGA,123519,4807.038,N,01131.000,E,1,08,nan,545.4,M,46.9,M,,",
        "GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,F,46.9,M,,",  # feet
        "GPGGA,123519,4807.038,N",  # too short
        "GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,320394,003.1,W",  # 32nd day
        "GPZDA,123519,32,13,20,00,00",
        "GPGGA",
    ],
)
def test_malformed_fields_are_parse_errors(body):
    result = rejected(nmea_line(body))
    assert result.reason == "parse_error"
    assert result.detail


def test_gll_gns_vtg_zda_gsa():
    gll = parsed("GPGLL,4916.45,N,12311.12,W,225444,A,A")
    assert (gll.fix_ok, gll.time_us, gll.quality) == (True, (22 * 3600 + 54 * 60 + 44) * 10**6, 1)
    assert gll.lon == pytest.approx(-(123 + 11.12 / 60))
    gns = parsed("GNGNS,014035.00,4332.69262,S,17235.48549,E,RNN,13,0.9,25.63,11.24,,")
    assert (gns.fix_ok, gns.quality, gns.sats, gns.alt) == (True, 4, 13, 25.63)
    vtg = parsed("GPVTG,054.7,T,034.4,M,005.5,N,010.2,K,A")
    assert vtg.time_us is None
    assert (vtg.course, vtg.speed) == (54.7, pytest.approx(5.5 * 1852 / 3600))
    old_vtg = parsed("GPVTG,054.7,034.4,005.5,010.2")  # NMEA 1.x, no unit letters
    assert (old_vtg.course, old_vtg.speed) == (54.7, pytest.approx(5.5 * 1852 / 3600))
    assert parsed("GPVTG,,T,,M,,N,,K,N").speed is None
    zda = parsed("GPZDA,201530.00,04,07,2002,00,00")
    assert (zda.date, zda.time_us) == (date(2002, 7, 4), (20 * 3600 + 15 * 60 + 30) * 10**6)
    gsa = parsed("GNGSA,A,3,80,71,73,79,69,,,,,,,,1.83,1.09,1.47")
    assert (gsa.mode, gsa.hdop, gsa.fix_ok) == (3, 1.09, True)
    assert not parsed("GPGSA,A,1,,,,,,,,,,,,,99.99,99.99,99.99").fix_ok


@pytest.mark.parametrize(("modes", "quality"), [("A", 1), ("D", 2), ("E", 6), ("R", 4), ("F", 5)])
def test_quality_from_mode_indicator(modes, quality):
    s = parsed(f"GPRMC,123519,A,4807.038,N,01131.000,E,0.0,0.0,230394,,,{modes}")
    assert s.quality == quality


def test_gns_takes_the_best_constellation():
    assert parsed("GNGNS,014035.00,4332.69262,S,17235.48549,E,NAD,13,0.9,25.6,11.2,,").quality == 2
    assert parsed("GNGNS,014035.00,4332.69262,S,17235.48549,E,NNN,13,0.9,25.6,11.2,,").quality == 0


def test_fix_types_and_talkers_are_what_the_brief_says():
    assert frozenset({"GGA", "RMC", "GLL", "GNS", "VTG", "ZDA", "GSA"}) == FIX_TYPES
    assert frozenset({"GP", "GN", "GL", "GA", "BD", "GB", "QZ"}) == TALKERS


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_no_exception_escapes_for_any_bytes(line):
    assert isinstance(parse_sentence(line), Rejected | Sentence)


_FIELD = st.text(alphabet="0123456789.,NSEWAVDMT-+ena_ ", max_size=14)


@settings(max_examples=400, deadline=None)
@given(
    talker=st.sampled_from([*sorted(TALKERS), "II", "P"]),
    kind=st.sampled_from([*sorted(FIX_TYPES), "GSV", "TXT"]),
    fields=st.lists(_FIELD, max_size=20),
)
def test_no_exception_escapes_for_any_checksummed_fields(talker, kind, fields):
    # Valid checksums drive the input past the checks into the field readers.
    result = parse_sentence(nmea_line(talker + kind + "," + ",".join(fields)))
    assert isinstance(result, Rejected | Sentence)
    if isinstance(result, Sentence) and result.lat is not None:
        assert -90.0 <= result.lat <= 90.0
        assert -180.0 <= result.lon <= 180.0  # type: ignore[operator]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_fast_checksum_is_the_xor_of_all_bytes(body):
    assert nmea._xor_checksum(body) == reduce(xor, body, 0)
