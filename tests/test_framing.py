"""LineFramer: candidate sentences out of whatever bytes a serial line delivers."""

from __future__ import annotations

from collections import Counter
from functools import reduce
from operator import xor

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.framing import LineFramer


def nmea(body: str) -> bytes:
    return f"${body}*{reduce(xor, body.encode(), 0):02X}".encode()


GGA = nmea("GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,")
RMC = nmea("GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W")


def frame(data: bytes, max_line: int = 200) -> tuple[list[bytes], Counter[str]]:
    framer = LineFramer(max_line)
    lines = framer.feed(data) + framer.flush()
    return lines, framer.dropped


def reference(data: bytes, max_line: int) -> tuple[list[bytes], Counter[str]]:
    """The framing rules byte by byte, as plainly as they can be written (and slow)."""
    lines: list[bytes] = []
    dropped: Counter[str] = Counter()
    buf: bytearray | None = None  # None: outside any candidate
    checksum_left = 0
    for byte in data:
        if byte == ord("$"):
            if buf is not None:
                dropped["truncated_line"] += 1
            buf, checksum_left = bytearray(b"$"), 0
        elif buf is None:
            if byte not in b"\r\n":
                dropped["noise_bytes"] += 1
        elif byte in b"\r\n":
            lines.append(bytes(buf))
            buf = None
        elif len(buf) >= max_line:
            dropped["overlong_line"] += 1
            dropped["noise_bytes"] += 1
            buf = None
        else:
            buf.append(byte)
            if checksum_left:
                checksum_left -= 1
                if not checksum_left:
                    lines.append(bytes(buf))
                    buf = None
            elif byte == ord("*"):
                checksum_left = 2
    if buf is not None:
        lines.append(bytes(buf))
    return lines, +dropped


def test_sentences_split_on_crlf_and_lose_their_line_ends():
    assert frame(GGA + b"\r\n" + RMC + b"\r\n") == ([GGA, RMC], Counter())


def test_partial_sentence_at_start_is_noise():
    lines, dropped = frame(b"545.4,M,46.9,M,,*47\r\n" + GGA + b"\r\n")
    assert lines == [GGA]
    assert dropped == Counter(noise_bytes=len(b"545.4,M,46.9,M,,*47"))


def test_missing_line_ends_a_dollar_starts_the_next_sentence():
    assert frame(GGA + RMC + GGA) == ([GGA, RMC, GGA], Counter())


def test_trailing_junk_after_checksum_is_cut_off_and_counted():
    lines, dropped = frame(GGA + b"\x00\xffjunk\r\n" + RMC + b"\n")
    assert lines == [GGA, RMC]
    assert dropped == Counter(noise_bytes=6)


def test_sentence_cut_short_by_the_next_dollar_is_truncated():
    lines, dropped = frame(GGA[:30] + RMC + b"\r\n")
    assert lines == [RMC]
    assert dropped == Counter(truncated_line=1)


def test_line_without_checksum_is_still_a_candidate_for_the_parser_to_judge():
    assert frame(b"$GPGGA,no,checksum\r\n")[0] == [b"$GPGGA,no,checksum"]


def test_binary_noise_around_sentences_is_skipped():
    noise = bytes(range(0x80, 0x100)) + b"\xb5b\x01\x07\x5c\x00"  # high bytes + a UBX header
    lines, dropped = frame(noise + GGA + b"\r\n" + noise + RMC + b"\r\n" + noise)
    assert lines == [GGA, RMC]
    assert dropped == Counter(noise_bytes=3 * len(noise))


def test_overlong_line_is_dropped_and_the_next_sentence_recovered():
    long_line = b"$GPTXT," + b"A" * 300 + b"\r\n"
    lines, dropped = frame(long_line + GGA + b"\r\n", max_line=100)
    assert lines == [GGA]
    assert dropped["overlong_line"] == 1
    assert "truncated_line" not in dropped


def test_last_line_without_line_end_is_kept_at_end_of_stream():
    framer = LineFramer()
    assert framer.feed(b"$GPGGA,no,checksum") == []
    assert framer.flush() == [b"$GPGGA,no,checksum"]
    assert framer.flush() == []


def test_a_complete_sentence_is_returned_without_waiting_for_its_line_end():
    framer = LineFramer()
    assert framer.feed(GGA) == [GGA]
    assert framer.buffered == 0


@pytest.mark.parametrize("filler", [b"A", b"$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", b"\x00\xff*"])
def test_ten_megabytes_without_a_line_end_keep_the_buffer_within_max_line(filler):
    framer = LineFramer(max_line=120)
    chunk = (filler * (65536 // len(filler) + 1))[:65536]
    framer.feed(b"$GPGGA,")  # start inside a candidate, the worst case
    for _ in range(10 * 1024 * 1024 // len(chunk)):
        framer.feed(chunk)
        assert framer.buffered <= 120
    # The line end closes whatever was pending (a parser will reject it); then all is normal.
    assert framer.feed(b"\r\n" + GGA + b"\r\n")[-1:] == [GGA]
    assert framer.buffered == 0


def test_max_line_must_leave_room_for_a_sentence():
    with pytest.raises(ValueError, match="max_line"):
        LineFramer(max_line=3)


# Bytes that matter to the framer, plus enough others to build sentences and noise.
_BYTES = st.binary(max_size=300) | st.lists(
    st.sampled_from([b"$", b"*", b"\r", b"\n", b"\r\n", b"A", b"7F", b",", b"\xff", GGA, RMC]),
    max_size=60,
).map(b"".join)


@settings(max_examples=400, deadline=None)
@given(data=_BYTES, cuts=st.lists(st.integers(min_value=0, max_value=300)), max_line=st.integers(4, 90))
def test_any_chunking_gives_the_same_output_as_the_byte_by_byte_rules(data, cuts, max_line):
    expected = reference(data, max_line)
    framer = LineFramer(max_line)
    lines: list[bytes] = []
    start = 0
    for cut in [*sorted({c for c in cuts if c < len(data)}), len(data)]:
        lines += framer.feed(data[start:cut])
        assert framer.buffered <= max_line
        start = cut
    lines += framer.flush()
    assert (lines, +framer.dropped) == expected


@settings(max_examples=200, deadline=None)
@given(data=_BYTES, max_line=st.integers(4, 90))
def test_one_byte_at_a_time_gives_the_same_output(data, max_line):
    framer = LineFramer(max_line)
    lines = [line for i in range(len(data)) for line in framer.feed(data[i : i + 1])]
    lines += framer.flush()
    assert (lines, +framer.dropped) == reference(data, max_line)
