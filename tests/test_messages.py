"""The message envelope and the topic scheme."""

from __future__ import annotations

import contextlib
import json
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.fix import ClockSource, Fix
from edge.messages import (
    Envelope,
    FieldError,
    Message,
    MessageError,
    MessageIds,
    NotJsonError,
    SchemaVersionError,
    build,
    decode,
    encode,
)
from edge.topics import TopicError, TopicParts, Topics

RECEIVED = datetime(2026, 11, 25, 12, 0, 1, 262000, tzinfo=UTC)

fixes = st.builds(
    Fix,
    time=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)
    ).map(lambda t: t.replace(microsecond=t.microsecond // 1000 * 1000)),
    lat=st.floats(-90, 90),
    lon=st.floats(-180, 180),
    quality=st.integers(1, 8),
    alt=st.none() | st.floats(-500, 9000),
    speed=st.none() | st.floats(0, 100),
    course=st.none() | st.floats(0, 360),
    sats=st.none() | st.integers(0, 64),
    hdop=st.none() | st.floats(0, 99),
    mode=st.none() | st.sampled_from([2, 3]),
    talker=st.none() | st.sampled_from(["GP", "GN", "GL"]),
)


@settings(max_examples=60, deadline=None)
@given(fixes, st.integers(0, 2**53), st.sampled_from(list(ClockSource)))
def test_fix_round_trip(fix: Fix, seq: int, clock: ClockSource) -> None:
    envelope = Envelope("gw-01", MessageIds(random.Random(1)))
    payload = envelope.fix("gps0", seq, fix, received=RECEIVED, clock=clock)
    message = decode(payload)
    assert (message.unit, message.source, message.seq, message.type) == ("gw-01", "gps0", seq, "fix")
    assert message.clock is clock
    assert message.received == "2026-11-25T12:00:01.262Z"
    assert message.time == fix.to_dict()["time"]
    assert message.fix() == fix
    assert decode(message.encode()) == message


def test_wire_form_is_compact_utf8_with_fields_in_order() -> None:
    envelope = Envelope("gw-01", MessageIds(random.Random(7)))
    fix = Fix(time=RECEIVED - timedelta(milliseconds=12), lat=38.81, lon=105.95, quality=1)
    payload = envelope.fix("gps0", 812, fix, received=RECEIVED, clock=ClockSource.GPS)
    assert b" " not in payload
    text = payload.decode("utf-8")
    assert list(json.loads(text)) == [
        "v",
        "unit",
        "id",
        "source",
        "seq",
        "type",
        "time",
        "received",
        "clock",
        "data",
    ]
    assert text.startswith('{"v":1,"unit":"gw-01","id":"')
    assert '"time":"2026-11-25T12:00:01.250Z","received":"2026-11-25T12:00:01.262Z","clock":"gps"' in text


def test_non_ascii_is_kept_as_utf8() -> None:
    payload = Envelope("gw-01").encode(
        "cam0", 1, "note", {"text": "雪豹"}, time=RECEIVED, received=RECEIVED, clock=ClockSource.NETWORK
    )
    assert "雪豹".encode() in payload
    assert decode(payload).data == {"text": "雪豹"}


def test_ids_are_unique_and_differ_between_processes() -> None:
    first, second = MessageIds(), MessageIds()
    ids = {first.next() for _ in range(1000)} | {second() for _ in range(1000)}
    assert len(ids) == 2000
    assert MessageIds(random.Random(3)).next() == MessageIds(random.Random(3)).next()


def test_build_and_encode_match_envelope() -> None:
    body = build(
        "gw-01", "x-1", "unit", 3, "health", {"ok": True}, time=RECEIVED, received=RECEIVED, clock="ntp"
    )
    message = decode(encode(body))
    assert message == Message(
        "gw-01", "x-1", "unit", 3, "health", message.time, message.received, ClockSource.NETWORK, {"ok": True}
    )


GOOD = json.loads(
    Envelope("gw-01").encode("gps0", 1, "fix", {}, time=RECEIVED, received=RECEIVED, clock=ClockSource.GPS)
)


@pytest.mark.parametrize(
    ("payload", "error", "words"),
    [
        (b"\xff\xfe garbage", NotJsonError, "not UTF-8 JSON"),
        (b'{"v":1,', NotJsonError, "not UTF-8 JSON"),
        (b"[1,2]", NotJsonError, "not an object"),
        (json.dumps({**GOOD, "v": 2}).encode(), SchemaVersionError, "version 2 is not understood"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "v"}).encode(), SchemaVersionError, "no schema"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "id"}).encode(), FieldError, "'id' is missing"),
        (json.dumps({**GOOD, "seq": -1}).encode(), FieldError, "'seq'"),
        (json.dumps({**GOOD, "seq": True}).encode(), FieldError, "'seq'"),
        (json.dumps({**GOOD, "clock": "sundial"}).encode(), FieldError, "'clock'"),
        (json.dumps({**GOOD, "time": "yesterday"}).encode(), FieldError, "ISO 8601"),
        (json.dumps({**GOOD, "data": [1]}).encode(), FieldError, "'data'"),
    ],
)
def test_decode_errors_are_typed_and_say_what_is_wrong(payload: bytes, error: type, words: str) -> None:
    with pytest.raises(error, match=words):
        decode(payload)


def test_fix_of_a_non_fix_message_is_a_field_error() -> None:
    with pytest.raises(FieldError, match="not 'fix'"):
        decode(json.dumps({**GOOD, "type": "health"})).fix()
    with pytest.raises(FieldError, match="not a valid fix"):
        decode(json.dumps(GOOD)).fix()


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_decode_never_raises_anything_but_message_errors(payload: bytes) -> None:
    with contextlib.suppress(MessageError):
        decode(payload)


# -- topics -----------------------------------------------------------------------------------------
def test_topics_of_a_unit() -> None:
    t = Topics("helan", "gw-01")
    assert t.fix("gps0") == "uncia/helan/gw-01/gps0/event/fix"
    assert t.raw("gps0") == "uncia/helan/gw-01/gps0/event/raw"
    assert t.availability() == "uncia/helan/gw-01/unit/state/availability"
    assert t.health() == "uncia/helan/gw-01/unit/state/health"
    assert t.command("restart") == "uncia/helan/gw-01/unit/command/restart"
    assert t.command_response("restart") == "uncia/helan/gw-01/unit/command/restart/response"
    assert t.all_fixes() == "uncia/helan/gw-01/+/event/fix"
    assert t.all_commands() == "uncia/helan/gw-01/unit/command/+"
    assert t.all() == "uncia/helan/gw-01/#"
    assert Topics.site_wildcard("helan", kind="event", type_="fix") == "uncia/helan/+/+/event/fix"


def test_parse_is_the_inverse() -> None:
    t = Topics("helan", "gw-01")
    assert Topics.parse(t.fix("gps0")) == TopicParts("helan", "gw-01", "gps0", "event", "fix")
    assert Topics.parse(t.command_response("restart")).response is True


@pytest.mark.parametrize(
    "topic",
    [
        "foo/helan/gw-01/gps0/event/fix",
        "uncia/helan/gw-01/gps0/shout/fix",
        "uncia/helan/gw-01/gps0/event",
        "uncia/helan/gw-01/gps0/event/fix/response",
        "uncia/helan/GW/gps0/event/fix",
    ],
)
def test_parse_rejects_foreign_topics(topic: str) -> None:
    with pytest.raises(TopicError):
        Topics.parse(topic)


@pytest.mark.parametrize("bad", ["", "a/b", "+", "#", "Helan", "x" * 70])
def test_segments_cannot_break_the_scheme(bad: str) -> None:
    with pytest.raises(TopicError, match="cannot be used in an MQTT topic"):
        Topics(bad, "gw-01")
    with pytest.raises(TopicError):
        Topics("helan", "gw-01").fix(bad)


def test_topic_segment_with_a_trailing_newline_is_refused():
    import pytest

    from edge.topics import TopicError, Topics

    with pytest.raises(TopicError):
        Topics("helan", "gw-01\n")
