"""FixDecoder: raw receiver bytes in, fixes out, every loss counted."""

from __future__ import annotations

import math
from functools import reduce
from operator import xor

from hypothesis import given, settings
from hypothesis import strategies as st

from edge.decoder import DROP_REASONS, FixDecoder
from edge.fix import Fix


def nmea(body: str) -> bytes:
    return f"${body}*{reduce(xor, body.encode(), 0):02X}\r\n".encode()


def epoch(second: int, lat: str = "3840.1234", talker: str = "GN") -> bytes:
    t = f"{second // 3600:02d}{second // 60 % 60:02d}{second % 60:02d}.00"
    return (
        nmea(f"{talker}GGA,{t},{lat},N,10530.4321,E,1,09,0.8,2501.3,M,-30.1,M,,")
        + nmea(f"{talker}RMC,{t},A,{lat},N,10530.4321,E,0.12,231.0,251126,,,A")
        + nmea(f"{talker}GSA,A,3,01,03,07,08,11,,,,,,,,1.4,0.8,1.1")
        + nmea("GPGSV,1,1,04,01,40,083,46,03,17,308,41,07,13,172,39,08,45,052,45")
    )


def decode(data: bytes, **kwargs) -> tuple[list[Fix], FixDecoder]:
    decoder = FixDecoder(**kwargs)
    return decoder.feed(data) + decoder.flush(), decoder


def test_bytes_to_fixes_with_every_loss_counted():
    data = (
        b"\xb5\x62\x01\x07junk"  # binary frame header: noise
        + epoch(36000)
        + nmea("GPGGA,100001.00,3840.1234,N,10530.4321,E,1,09,0.8,2501.3,M,-30.1,M,,")[:-4]
        + b"00\r\n"  # corrupted checksum
        + b"$GNGGA,100001.00,no checksum\r\n"
        + nmea("IIXDR,C,12.5,C,AIRTEMP")
        + nmea("PUBX,00,100001.00")
        + epoch(36002)
    )
    fixes, decoder = decode(data)
    assert [f.time.second for f in fixes] == [0, 2]
    assert fixes[0].lat == 38 + 40.1234 / 60
    assert fixes[0].talker == "GN"
    assert decoder.dropped == {
        "noise_bytes": 8,
        "bad_checksum": 1,
        "no_checksum": 1,
        "unknown_talker": 1,
    }
    assert decoder.ignored == {"GSV": 2, "PUBX": 1}
    assert decoder.sentences_ok == 6
    assert set(decoder.dropped) <= set(DROP_REASONS)


def test_filters_and_date_hint_reach_the_merger():
    _, strict = decode(epoch(36000), min_quality=2)
    assert strict.dropped == {"below_min_quality": 1}
    _, picky = decode(epoch(36000), max_hdop=0.5)
    assert picky.dropped == {"hdop_too_high": 1}


def test_every_drop_reason_is_explained_for_the_technician():
    reasons = {"noise_bytes", "truncated_line", "overlong_line", "no_checksum", "bad_checksum"}
    reasons |= {"not_ascii", "unknown_talker", "parse_error", "no_fix", "below_min_quality"}
    reasons |= {"hdop_too_high", "no_date", "no_time"}
    assert set(DROP_REASONS) == reasons


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=600)
    | st.lists(
        st.sampled_from([b"$", b"*", b",", b"\r\n", b"GPGGA", b"GNRMC", b"A", b"7", epoch(5)]),
        max_size=40,
    ).map(b"".join)
)
def test_no_exception_escapes_for_any_byte_stream(data):
    fixes, _ = decode(data)
    for fix in fixes:
        assert isinstance(fix, Fix)
        assert math.isfinite(fix.lat) and math.isfinite(fix.lon)


# Garbage a receiver might interleave: anything but '$', CR and LF (which would start or end a
# line of their own).
_GARBAGE = st.binary(max_size=40).map(lambda b: b.replace(b"$", b"").translate(None, b"\r\n"))


@settings(max_examples=150, deadline=None)
@given(
    seconds=st.lists(st.integers(0, 86_399), min_size=1, max_size=12, unique=True).map(sorted),
    garbage=st.lists(_GARBAGE, min_size=60, max_size=60),
    cuts=st.lists(st.integers(1, 3000), max_size=20),
)
def test_valid_sentences_embedded_in_garbage_are_all_recovered(seconds, garbage, cuts):
    clean = b"".join(epoch(s) for s in seconds)
    expected, reference = decode(clean)
    # Garbage between sentences, in place of line ends, and after checksums.
    noisy = b""
    lines = clean.split(b"\r\n")[:-1]
    for i, line in enumerate(lines):
        noisy += garbage[i % 60] + line + garbage[(i + 7) % 60] + (b"\r\n" if i % 3 else b"")
    decoder = FixDecoder()
    fixes: list[Fix] = []
    start = 0
    for cut in [*sorted(c for c in cuts if c < len(noisy)), len(noisy)]:
        fixes += decoder.feed(noisy[start:cut])
        start = cut
    fixes += decoder.flush()
    assert fixes == expected
    assert decoder.sentences_ok == reference.sentences_ok == 3 * len(seconds)
    assert decoder.ignored == reference.ignored
