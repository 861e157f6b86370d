"""The Iridium digest: the byte format round-trips exactly, packing never exceeds its budget and
keeps the priority order (alerts, then fixes, then units), and the decoder refuses what is not a
digest with a `DigestError`, never anything else."""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.lora.payload import EPOCH, HELAN, STEP_DEG
from gateway.uplink.digest import (
    ALERT_KINDS,
    FAR_FIX_LEN,
    FIX_LEN,
    HEADER_LEN,
    Digest,
    DigestAlert,
    DigestError,
    DigestFix,
    DigestUnit,
    build_digest,
    credits_for,
    decode_digest,
    encode_digest,
    format_digest,
)

NOW = 1_790_000_000
DOC = Path(__file__).resolve().parent.parent / "docs" / "iridium-digest.md"


@dataclass(frozen=True)
class Row:  # what RecordReader.latest_fixes() gives, as far as the digest looks
    track: str
    time: float
    lat: float
    lon: float
    quality: int | None = 1
    hdop: float | None = 1.2
    battery: float | None = 80.0


names = st.from_regex(r"[a-z][a-z0-9-]{0,10}(/[a-z0-9]{1,6})?", fullmatch=True)
subjects = st.one_of(st.integers(0, 1023).map(lambda n: f"collar-{n}"), names)


@st.composite
def positions(draw) -> tuple[float, float]:
    if draw(st.booleans()):
        dlat, dlon = draw(st.integers(-65536, 65535)), draw(st.integers(-65536, 65535))
        return round(HELAN.lat + dlat * STEP_DEG, 7), round(HELAN.lon + dlon * STEP_DEG, 7)
    lat, lon = draw(st.integers(-9_000_000, 9_000_000)), draw(st.integers(-18_000_000, 18_000_000))
    return round(lat * STEP_DEG, 7), round(lon * STEP_DEG, 7)


@st.composite
def fixes(draw) -> DigestFix:
    lat, lon = draw(positions())
    return DigestFix(
        subject=draw(subjects),
        age_min=draw(st.integers(0, 65535)),
        lat=lat,
        lon=lon,
        quality=draw(st.one_of(st.none(), st.integers(1, 8))),
        hdop_class=draw(st.integers(0, 6)),
        battery_pct=draw(st.one_of(st.none(), st.integers(0, 20).map(lambda b: 5 * b))),
    )


alerts = st.builds(
    DigestAlert,
    kind=st.sampled_from([*ALERT_KINDS, "other"]),
    subject=subjects,
    critical=st.booleans(),
    active=st.booleans(),
    since_min=st.integers(0, 65535),
)
units = st.builds(
    DigestUnit,
    name=names,
    online=st.one_of(st.none(), st.booleans()),
    degraded=st.booleans(),
    role=st.sampled_from([None, "gateway", "camera", "other"]),
    battery_v=st.one_of(st.none(), st.integers(0, 254).map(lambda v: v / 10)),
    disk_percent=st.one_of(st.none(), st.integers(0, 100)),
    seen_h=st.one_of(st.none(), st.integers(0, 254)),
)
digests = st.builds(
    Digest,
    site=st.just(1),
    time=st.integers(int(EPOCH.timestamp()), NOW + 10**8),
    seq=st.integers(0, 65535),
    alerts=st.lists(alerts, max_size=12).map(tuple),
    fixes=st.lists(fixes(), max_size=25).map(tuple),
    units=st.lists(units, max_size=12).map(tuple),
    omitted=st.one_of(st.none(), st.tuples(*[st.integers(0, 255)] * 3)),
)


@given(digests)
@settings(max_examples=200, deadline=None)
def test_encode_then_decode_gives_the_digest_back(digest):
    assert decode_digest(encode_digest(digest)) == digest


@given(st.binary(max_size=400))
@settings(max_examples=500, deadline=None)
def test_anything_that_is_not_a_digest_raises_a_digest_error_only(data):
    with contextlib.suppress(DigestError):
        decode_digest(data)


@given(digests, st.data())
@settings(max_examples=100, deadline=None)
def test_a_cut_digest_is_refused_or_visibly_shorter(digest, data):
    raw = encode_digest(digest)
    cut = data.draw(st.integers(0, len(raw) - 1))
    try:
        decoded = decode_digest(raw[:cut])
    except DigestError:
        return
    assert decoded != digest  # cut at a section boundary: a valid digest, with less in it


record_alerts = st.lists(
    st.fixed_dictionaries(
        {
            "kind": st.sampled_from([*ALERT_KINDS, "battery_weird"]),
            "subject": subjects,
            "severity": st.sampled_from(["critical", "warning"]),
            "since": st.floats(NOW - 10**7, NOW),
            "cleared": st.one_of(st.none(), st.floats(NOW - 10**6, NOW)),
        }
    ),
    max_size=10,
)
record_fixes = st.lists(
    st.builds(
        Row,
        track=st.integers(0, 60).map(lambda n: f"collar-{n}"),
        time=st.floats(NOW - 10**6, NOW),
        lat=st.floats(38.0, 39.9),
        lon=st.floats(105.0, 107.0),
        battery=st.one_of(st.none(), st.floats(0, 100)),
    ),
    max_size=40,
)
record_units = st.lists(
    st.fixed_dictionaries(
        {
            "unit": names,
            "role": st.sampled_from([None, "gateway", "camera", "relay"]),
            "online": st.sampled_from([None, 0, 1]),
            "last_seen": st.one_of(st.none(), st.floats(NOW - 10**7, NOW)),
            "camera_health": st.one_of(
                st.none(), st.fixed_dictionaries({"battery_v": st.floats(10, 14), "degraded": st.booleans()})
            ),
            "health": st.just(None),
        }
    ),
    max_size=10,
    unique_by=lambda u: u["unit"],
)


@given(record_alerts, record_fixes, record_units, st.integers(13, 340), st.integers(0, 1000))
@settings(max_examples=150, deadline=None)
def test_packing_keeps_the_budget_and_the_priority_order(alerts_, fixes_, units_, max_bytes, rotate):
    digest, data = build_digest(
        now=NOW,
        seq=rotate,
        site=1,
        alerts=alerts_,
        fixes=fixes_,
        units=units_,
        max_bytes=max_bytes,
        rotate=rotate,
    )
    assert len(data) <= max_bytes
    assert decode_digest(data) == digest
    left = digest.omitted or (0, 0, 0)
    assert len(digest.alerts) + left[0] == len(alerts_)
    assert len(digest.fixes) + left[1] == len({f.track for f in fixes_})
    assert len(digest.units) + left[2] == len(units_)
    if digest.fixes:
        assert left[0] == 0  # no fix while an alert is left out
    if digest.units:
        assert left[0] == left[1] == 0  # no unit while an alert or a fix is left out
    ranks = [ALERT_KINDS.index(a.kind) if a.kind in ALERT_KINDS else 99 for a in digest.alerts]
    assert ranks == sorted(ranks)


def test_alerts_first_then_the_alerted_collars_then_the_rest_then_units_by_trouble():
    alerts_ = [
        {"kind": "low_battery", "subject": "collar-2", "severity": "warning", "since": NOW - 60},
        {"kind": "conflict_zone", "subject": "collar-9", "severity": "critical", "since": NOW - 600},
        {"kind": "mortality", "subject": "collar-4", "severity": "critical", "since": NOW - 3600},
        {"kind": "geofence_exit", "subject": "collar-7", "severity": "critical", "since": NOW - 60},
        {
            "kind": "mortality",
            "subject": "collar-1",
            "severity": "critical",
            "since": NOW - 7200,
            "cleared": NOW - 5,
        },
    ]
    fixes_ = [Row(f"collar-{n}", NOW - 60 * n, 38.8 + n / 100, 106.0) for n in range(10)]
    fixes_.append(Row("gw-01/gps0", NOW, 38.85, 106.0))  # the station's own receiver: not a collar
    units_ = [
        {"unit": "gw-01", "role": "gateway", "online": 1, "last_seen": NOW},
        {
            "unit": "cam-02",
            "role": "camera",
            "online": 1,
            "last_seen": NOW,
            "camera_health": {"degraded": True},
        },
        {"unit": "cam-01", "role": "camera", "online": 0, "last_seen": NOW - 7200},
    ]
    digest, data = build_digest(now=NOW, seq=0, site=1, alerts=alerts_, fixes=fixes_, units=units_)
    assert [(a.kind, a.subject, a.active) for a in digest.alerts] == [
        ("mortality", "collar-4", True),
        ("mortality", "collar-1", False),
        ("geofence_exit", "collar-7", True),
        ("conflict_zone", "collar-9", True),
        ("low_battery", "collar-2", True),
    ]
    assert [f.subject for f in digest.fixes][:5] == [
        "collar-4",
        "collar-1",
        "collar-7",
        "collar-9",
        "collar-2",
    ]
    assert [f.subject for f in digest.fixes][5:] == [
        "collar-0",
        "collar-3",
        "collar-5",
        "collar-6",
        "collar-8",
    ]
    assert [u.name for u in digest.units] == ["cam-01", "cam-02", "gw-01"]
    assert digest.omitted is None
    text = format_digest(decode_digest(data))
    assert "!! mortality collar-4 ACTIVE" in text and "cam-01 (camera): OFFLINE" in text


def test_a_tight_budget_leaves_out_the_lowest_priority_and_rotation_shares_the_room():
    fixes_ = [Row(f"collar-{n}", NOW - 60, 38.8, 106.0 + n / 100) for n in range(20)]
    units_ = [{"unit": "gw-01", "role": "gateway", "online": 1, "last_seen": NOW}]
    alert = [{"kind": "mortality", "subject": "collar-3", "severity": "critical", "since": NOW - 60}]
    first, data = build_digest(
        now=NOW, seq=0, site=1, alerts=alert, fixes=fixes_, units=units_, max_bytes=100
    )
    assert len(data) <= 100 and credits_for(len(data)) == 2
    assert len(first.alerts) == 1 and first.units == () and first.fixes[0].subject == "collar-3"
    assert first.omitted == (0, 20 - len(first.fixes), 1)
    later, _ = build_digest(
        now=NOW, seq=5, site=1, alerts=alert, fixes=fixes_, units=units_, max_bytes=100, rotate=5
    )
    assert later.fixes[0].subject == "collar-3"
    assert {f.subject for f in later.fixes[1:]} != {f.subject for f in first.fixes[1:]}


def test_a_collar_far_from_the_site_is_sent_with_absolute_coordinates():
    near = Row("collar-1", NOW, 38.9, 106.1)
    far = Row("collar-2", NOW, 42.12345, 101.54321)
    _, data = build_digest(now=NOW, seq=0, site=1, fixes=[near, far])
    assert len(data) == HEADER_LEN + 2 + FIX_LEN + FAR_FIX_LEN
    back = decode_digest(data)
    assert (back.fixes[1].lat, back.fixes[1].lon) == (42.12345, 101.54321)
    assert abs(back.fixes[0].lat - 38.9) < 1e-9


def test_what_the_decoder_refuses():
    good = encode_digest(Digest(site=1, time=NOW, seq=1, units=(DigestUnit("gw-01"),)))
    with pytest.raises(DigestError, match="not an uncia digest"):
        decode_digest(b"\x41" + good[1:])
    with pytest.raises(DigestError, match="version"):
        decode_digest(b"\xd2" + good[1:])
    with pytest.raises(DigestError, match="site number 77"):
        decode_digest(good[:1] + b"\x4d" + good[2:])
    with pytest.raises(DigestError, match="ends after"):
        decode_digest(good[:-1])
    with pytest.raises(DigestError, match="section type"):
        decode_digest(good + good[HEADER_LEN:])
    with pytest.raises(ValueError, match="site 9"):
        encode_digest(Digest(site=9, time=NOW, seq=0))


def test_the_worked_example_in_the_docs_decodes_as_the_docs_say():
    text = DOC.read_text()
    hex_block = re.search(r"```hex\n(.*?)```", text, re.S)
    assert hex_block, "docs/iridium-digest.md has a ```hex block"
    digest = decode_digest(bytes.fromhex(hex_block.group(1).replace("\n", " ")))
    shown = re.search(r"```text\n(.*?)```", text, re.S)
    assert shown is not None
    assert format_digest(digest) == shown.group(1).rstrip("\n")
