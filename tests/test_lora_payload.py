"""The compact collar payload: round trips within the documented resolution, every corruption caught,
any bytes at all answered with fixes or a PayloadError, and the worked example of docs/lora-payload.md."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from itertools import combinations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.lora.payload import (
    BATCH_MIN_LEN,
    EPOCH,
    HELAN,
    MAX_BATCH,
    SINGLE_LEN,
    STEP_DEG,
    TIME_MAX,
    WINDOW_DEG,
    CollarFix,
    PayloadError,
    Site,
    classify,
    crc8,
    crc16,
    decode,
    encode_batch,
    encode_fix,
    hdop_class,
    hdop_of_class,
)
from simulators.track import Track

T0 = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
EXAMPLE = CollarFix(17, T0, 38.912345, 105.987654, quality=1, hdop_class=2, battery_pct=80)
EXAMPLE_HEX = "90 44 57 4c d4 00 c2 df ec b4 2c b0"  # docs/lora-payload.md, "Worked example"
POS_TOL = STEP_DEG / 2 + 1e-9
BATTERY_TOL = 3
ANTIMERIDIAN = Site("test-antimeridian", 200, -16.5, 179.9)


def fixes_at(site: Site, collar: st.SearchStrategy[int] | None = None) -> st.SearchStrategy[CollarFix]:
    """Any fix the payload documents it can carry for `site`."""
    return st.builds(
        CollarFix,
        collar_id=collar if collar is not None else st.integers(0, 1023),
        time=st.datetimes(
            min_value=EPOCH.replace(tzinfo=None),
            max_value=(TIME_MAX - timedelta(seconds=1)).replace(tzinfo=None),
            timezones=st.just(UTC),
        ),
        lat=st.floats(site.lat - WINDOW_DEG, site.lat + WINDOW_DEG),
        lon=st.floats(site.lon - WINDOW_DEG, site.lon + WINDOW_DEG).map(
            lambda x: (x + 180.0) % 360.0 - 180.0
        ),
        quality=st.integers(1, 8),
        hdop_class=st.integers(0, 6),
        battery_pct=st.integers(0, 100),
    )


def assert_close(got: CollarFix, want: CollarFix) -> None:
    assert got.collar_id == want.collar_id
    assert abs((got.time - want.time).total_seconds()) <= 0.5
    assert got.time.tzinfo is not None and got.time.utcoffset() == timedelta(0)
    assert abs(got.lat - want.lat) <= POS_TOL
    assert abs((got.lon - want.lon + 180.0) % 360.0 - 180.0) <= POS_TOL
    assert (got.quality, got.hdop_class) == (want.quality, want.hdop_class)
    assert abs(got.battery_pct - want.battery_pct) <= BATTERY_TOL


def flipped(payload: bytes, *bits: int) -> bytes:
    out = bytearray(payload)
    for bit in bits:
        out[bit // 8] ^= 0x80 >> (bit % 8)
    return bytes(out)


def track_fixes(n: int, *, seed: int = 7, interval_s: float = 900.0, collar: int = 17) -> list[CollarFix]:
    """`n` fixes of a simulated snow leopard, one every `interval_s` seconds, battery draining."""
    track = Track(random.Random(seed), (38.85, 106.0), T0)
    rng = random.Random(seed)
    out = []
    for i in range(n):
        point = track.advance(interval_s + rng.uniform(-20.0, 40.0))
        hdop = rng.choice([0.8, 1.2, 1.6, 2.4, 4.0])
        out.append(CollarFix(collar, point.time, point.lat, point.lon, 1, hdop_class(hdop), 90 - i // 4))
    return out


# --- the worked example and the layout ------------------------------------------------------------


def test_worked_example_matches_the_document() -> None:
    payload = encode_fix(EXAMPLE)
    assert payload.hex(" ") == EXAMPLE_HEX
    assert len(payload) == SINGLE_LEN == 12
    [fix] = decode(payload)
    assert fix == CollarFix(17, T0, 38.91235, 105.98765, 1, 2, 80)


def test_to_fix_gives_the_class_midpoint_as_hdop() -> None:
    fix = decode(encode_fix(EXAMPLE))[0].to_fix()
    assert (fix.time, fix.lat, fix.lon, fix.quality, fix.hdop) == (T0, 38.91235, 105.98765, 1, 1.5)
    unknown = CollarFix(3, T0, 38.9, 106.0, 2, 0, 50).to_fix()
    assert unknown.hdop is None and unknown.quality == 2


# --- round trips --------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(fixes_at(HELAN))
def test_single_fix_round_trips_within_resolution(fix: CollarFix) -> None:
    payload = encode_fix(fix)
    assert len(payload) == 12 and classify(payload) == "compact"
    [got] = decode(payload)
    assert_close(got, fix)
    assert encode_fix(got) == payload  # a decoded fix re-encodes to the same bytes


@settings(max_examples=150, deadline=None)
@given(
    st.integers(0, 1023).flatmap(
        lambda c: st.lists(fixes_at(HELAN, st.just(c)), min_size=1, max_size=MAX_BATCH)
    )
)
def test_batch_round_trips_within_resolution(fixes: list[CollarFix]) -> None:
    payload = encode_batch(fixes)
    assert classify(payload) == "compact"
    got = decode(payload)
    assert len(got) == len(fixes)
    for g, f in zip(got, fixes, strict=True):
        assert_close(g, f)
    # The batch carries exactly what single-fix payloads carry.
    assert got == [decode(encode_fix(f))[0] for f in fixes]


@settings(max_examples=100, deadline=None)
@given(fixes_at(ANTIMERIDIAN))
def test_a_site_across_the_antimeridian_round_trips(fix: CollarFix) -> None:
    [got] = decode(encode_fix(fix, site=ANTIMERIDIAN), site=ANTIMERIDIAN)
    assert_close(got, fix)
    assert -180.0 <= got.lon < 180.0


def test_batches_cost_fewer_bytes_per_fix_on_a_real_track() -> None:
    fixes = track_fixes(64)
    for size in (4, 8, 16):
        lengths = [len(encode_batch(fixes[i : i + size])) for i in range(0, 64, size)]
        per_fix = sum(lengths) / 64
        assert per_fix < SINGLE_LEN, (size, lengths)
    assert max(len(encode_batch(fixes[i : i + 8])) for i in range(0, 64, 8)) <= 51  # CN470 SF12 limit


def test_batch_worked_example_and_worst_case_length() -> None:
    three = [
        EXAMPLE,
        CollarFix(17, T0 + timedelta(seconds=903), 38.91301, 105.98702, 1, 2, 80),
        CollarFix(17, T0 + timedelta(seconds=1799), 38.91322, 105.98571, 1, 3, 79),
    ]
    payload = encode_batch(three)
    assert payload.hex(" ") == "a2 04 45 74 cd 40 0c 2d fe cb 42 c5 a1 21 0e 1d 08 7d 38 01 54 16 64 24"
    # Every difference as large as it can be: the longest batch v1 can be (docs/lora-payload.md).
    lo, hi = HELAN.lat - WINDOW_DEG, HELAN.lat + WINDOW_DEG
    west, east = HELAN.lon - WINDOW_DEG, HELAN.lon + WINDOW_DEG
    extremes = [
        CollarFix(5, EPOCH, lo, west, 1, 0, 0) if i % 2 else CollarFix(5, TIME_MAX, hi, east, 8, 6, 100)
        for i in range(MAX_BATCH)
    ]
    worst = encode_batch(extremes)
    assert len(worst) == 167
    assert decode(worst) == [decode(encode_fix(f))[0] for f in extremes]


# --- corruption ----------------------------------------------------------------------------------


def test_every_one_two_and_three_bit_error_in_a_single_fix_is_caught() -> None:
    """CRC-8/0x2F has Hamming distance 4 over the 96-bit payload: all 1-3-bit errors are detected."""
    for fix in (EXAMPLE, CollarFix(1023, TIME_MAX, 39.5, 105.35, 8, 6, 0)):
        payload = encode_fix(fix)
        n = len(payload) * 8
        for k in (1, 2, 3):
            for bits in combinations(range(n), k):
                with pytest.raises(PayloadError):
                    decode(flipped(payload, *bits))


def test_crc8_distance_four_by_syndromes() -> None:
    """The same guarantee from the CRC's linearity: no 1-3 columns of its parity check sum to zero."""
    n = SINGLE_LEN - 1
    syndromes = [crc8((1 << (8 * n - 1 - i)).to_bytes(n, "big")) for i in range(8 * n)]
    syndromes += [1 << j for j in range(8)]
    pairs = {a ^ b for a, b in combinations(syndromes, 2)}
    assert 0 not in syndromes and 0 not in pairs
    assert all(a ^ b ^ c for a, b, c in combinations(syndromes, 3))


def test_every_one_and_two_bit_error_in_a_batch_is_caught() -> None:
    """CRC-16/XMODEM has Hamming distance 4 up to 32751 bits; batches are at most 167 bytes."""
    payload = encode_batch(track_fixes(8))
    n = len(payload) * 8
    for k in (1, 2):
        for bits in combinations(range(n), k):
            with pytest.raises(PayloadError):
                decode(flipped(payload, *bits))


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_three_bit_errors_in_a_batch_are_caught(data: st.DataObject) -> None:
    payload = encode_batch(track_fixes(data.draw(st.integers(1, 16))))
    bits = data.draw(st.lists(st.integers(0, len(payload) * 8 - 1), min_size=3, max_size=3, unique=True))
    with pytest.raises(PayloadError) as caught:
        decode(flipped(payload, *bits))
    assert caught.value.reason in {"bad_crc", "not_compact", "unknown_version", "too_short", "too_long"}


def test_cut_short_or_lengthened_payloads_are_refused() -> None:
    single, batch = encode_fix(EXAMPLE), encode_batch(track_fixes(5))
    for payload in (single, batch):
        for cut in range(len(payload)):
            with pytest.raises(PayloadError):
                decode(payload[:cut])
        with pytest.raises(PayloadError):
            decode(payload + b"\x00")
    with pytest.raises(PayloadError) as caught:
        decode(single[:7])
    assert caught.value.reason == "too_short"
    with pytest.raises(PayloadError) as caught:
        decode(single + b"\x00")
    assert caught.value.reason == "too_long"


def test_the_wrong_site_always_fails_the_crc() -> None:
    """A station configured for another site never places a fix: the site number is in the CRC."""
    other = Site("elsewhere", 2, HELAN.lat, HELAN.lon)  # even with the same centre
    for fixes in (track_fixes(1), track_fixes(3), track_fixes(16)):
        for payload in (encode_fix(fixes[0]), encode_batch(fixes)):
            with pytest.raises(PayloadError) as caught:
                decode(payload, site=other)
            assert caught.value.reason == "bad_crc"
            assert "another site" in str(caught.value)


# --- any bytes at all --------------------------------------------------------------------------------


def decodes_or_refuses(payload: bytes) -> None:
    try:
        fixes = decode(payload)
    except PayloadError as exc:
        assert exc.reason in {
            "too_short",
            "too_long",
            "not_compact",
            "unknown_version",
            "bad_crc",
            "bad_length",
            "bad_field",
        }
        assert str(exc)
        return
    assert fixes and all(isinstance(f, CollarFix) for f in fixes)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=260))
def test_any_bytes_decode_or_raise_payload_error(payload: bytes) -> None:
    decodes_or_refuses(payload)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from([0x90, 0xA0]), st.binary(min_size=0, max_size=80))
def test_any_body_with_a_valid_crc_decodes_or_raises_payload_error(kind: int, rest: bytes) -> None:
    """Past the CRC: random fields, counts and widths that a CRC cannot tell from real ones."""
    if kind == 0x90:
        body = bytes([kind | (rest[:1] or b"\x00")[0] & 0x0F]) + rest[1:11].ljust(10, b"\x00")
        decodes_or_refuses(body + bytes([crc8(body, HELAN.number)]))
    else:
        body = bytes([kind | (rest[:1] or b"\x00")[0] & 0x0F]) + rest[1:]
        body = body.ljust(BATCH_MIN_LEN - 2, b"\x00")
        decodes_or_refuses(body + crc16(body, HELAN.number).to_bytes(2, "big"))


def test_reasons_for_foreign_payloads() -> None:
    cases = {
        b"": "too_short",
        b"$GPGGA,120000.00,3854.74070,N,10559.25924,E,1,08,1.2,2500.0,M,-30.0,M,,*4A": "not_compact",
        b"hello": "not_compact",
        bytes([0x80]) + bytes(11): "unknown_version",
        bytes([0xF3]) + bytes(30): "unknown_version",
    }
    for payload, reason in cases.items():
        with pytest.raises(PayloadError) as caught:
            decode(payload)
        assert caught.value.reason == reason, payload


def test_classify_routes_by_the_first_byte() -> None:
    assert classify(b"$GNGGA,120000.00,...") == "nmea"
    assert classify(encode_fix(EXAMPLE)) == "compact"
    assert classify(encode_batch([EXAMPLE])) == "compact"
    assert classify(bytes([0xF0])) == "compact"  # a future version: decode says unknown_version
    assert classify(b"") == "unknown"
    assert classify(b"AT+OK") == "unknown"
    assert classify(bytes([0x24])) == "nmea"


# --- what the encoder refuses --------------------------------------------------------------------


def test_encoder_refuses_what_the_payload_cannot_carry() -> None:
    with pytest.raises(ValueError, match="outside site helan-shan"):
        encode_fix(CollarFix(1, T0, 45.1, 7.2, 1, 1, 50))
    with pytest.raises(ValueError, match="outside what the payload carries"):
        encode_fix(CollarFix(1, datetime(2023, 12, 31, tzinfo=UTC), 38.9, 106.0, 1, 1, 50))
    with pytest.raises(ValueError, match="one collar"):
        encode_batch([EXAMPLE, CollarFix(18, T0, 38.9, 106.0, 1, 1, 50)])
    with pytest.raises(ValueError, match="at most 16"):
        encode_batch([EXAMPLE] * 17)
    with pytest.raises(ValueError, match="at least one"):
        encode_batch([])


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("collar_id", 1024, "collar id"),
        ("collar_id", -1, "collar id"),
        ("time", datetime(2026, 1, 1), "timezone-aware"),
        ("lat", 91.0, "latitude"),
        ("lon", float("nan"), "longitude"),
        ("quality", 0, "0 is no fix"),
        ("hdop_class", 7, "HDOP class"),
        ("battery_pct", 101, "battery"),
    ],
)
def test_collar_fix_says_which_field_is_wrong(field: str, value: object, words: str) -> None:
    fields = {
        "collar_id": 1,
        "time": T0,
        "lat": 38.9,
        "lon": 106.0,
        "quality": 1,
        "hdop_class": 1,
        "battery_pct": 5,
    }
    fields[field] = value
    with pytest.raises(ValueError, match=words):
        CollarFix(**fields)  # type: ignore[arg-type]


def test_a_non_utc_time_is_carried_as_the_same_instant() -> None:
    from zoneinfo import ZoneInfo

    local = T0.astimezone(ZoneInfo("Asia/Shanghai"))
    [got] = decode(encode_fix(CollarFix(1, local, 38.9, 106.0, 1, 1, 50)))
    assert got.time == T0 and got.time.tzinfo == UTC


# --- HDOP classes ----------------------------------------------------------------------------------


@given(st.floats(0.0, 1000.0))
def test_hdop_class_midpoint_falls_in_its_own_class(hdop: float) -> None:
    c = hdop_class(hdop)
    assert 1 <= c <= 6
    assert hdop_class(hdop_of_class(c)) == c


def test_hdop_class_boundaries() -> None:
    assert [hdop_class(h) for h in (None, 0.5, 1.0, 1.01, 2.0, 4.9, 5.0, 10.0, 20.0, 20.1, 99.9)] == [
        0, 1, 1, 2, 2, 3, 3, 4, 5, 6, 6,
    ]  # fmt: skip
    assert hdop_of_class(0) is None
    with pytest.raises(ValueError):
        hdop_of_class(7)
    with pytest.raises(ValueError):
        hdop_class(-1.0)
    with pytest.raises(ValueError):
        hdop_class(float("nan"))


def test_battery_steps_are_within_three_percent() -> None:
    for pct in range(101):
        [got] = decode(encode_fix(CollarFix(1, T0, 38.9, 106.0, 1, 1, pct)))
        assert abs(got.battery_pct - pct) <= BATTERY_TOL
    assert decode(encode_fix(CollarFix(1, T0, 38.9, 106.0, 1, 1, 0)))[0].battery_pct == 0
    assert decode(encode_fix(CollarFix(1, T0, 38.9, 106.0, 1, 1, 100)))[0].battery_pct == 100
