"""The simulated GPS receiver: sentences a real parser accepts, faults as planned, bytes on a real pty."""

from __future__ import annotations

import os
import random
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pynmea2
import pytest
import serial
from hypothesis import given, settings
from hypothesis import strategies as st

from simulators.gps import (
    Fault,
    FaultPlan,
    GpsSimulator,
    benchmark_stream,
    inject_faults,
    make_simulator,
)
from simulators.nmea_out import (
    KNOT_MPS,
    LATLON_PRECISION_DEG,
    PROFILES,
    checksum,
    epoch_sentences,
    render_epoch,
)
from simulators.pty_port import PtyPort
from simulators.track import Track, TrackPoint
from uncia.cli import main

T0 = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
WAIT_S = 10.0  # generous limit for anything that crosses a pty; never an assertion on speed


def _parse(sentence: bytes) -> pynmea2.NMEASentence:
    assert sentence.endswith(b"\r\n")
    return pynmea2.parse(sentence.decode("ascii").strip(), check=True)


def _point(**kw: object) -> TrackPoint:
    base = {"time": T0, "lat": 38.85, "lon": 106.0, "alt": 2900.0, "speed_mps": 1.2, "course_deg": 45.0}
    return TrackPoint(**{**base, **kw})  # type: ignore[arg-type]


# --- sentences ----------------------------------------------------------------------------------


def test_checksum_of_the_textbook_gga() -> None:
    assert checksum("GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,") == "47"


points = st.builds(
    TrackPoint,
    # RMC's two-digit year reads back as 1969-2068 (strptime's %y pivot).
    time=st.datetimes(datetime(2000, 1, 1), datetime(2068, 12, 31), timezones=st.just(UTC)),
    lat=st.floats(-89.999, 89.999),
    lon=st.floats(-179.999, 179.999),
    alt=st.floats(-400.0, 8848.0),
    speed_mps=st.floats(0.0, 50.0),
    course_deg=st.floats(0.0, 359.999),
)


@settings(max_examples=60, deadline=None)
@given(point=points, profile=st.sampled_from(sorted(PROFILES)))
def test_every_sentence_parses_and_says_what_the_truth_says(point: TrackPoint, profile: str) -> None:
    sentences, fix = render_epoch(point, profile=profile)
    assert fix is not None
    seen = {}
    for raw in sentences:
        msg = _parse(raw)
        seen[msg.talker + msg.sentence_type] = msg
        if hasattr(msg, "latitude") and msg.lat:
            assert abs(msg.latitude - point.lat) <= LATLON_PRECISION_DEG
            assert abs(msg.longitude - point.lon) <= LATLON_PRECISION_DEG
            assert (msg.latitude, msg.longitude) == (fix.lat, fix.lon)
    talker = PROFILES[profile].talker
    gga, rmc = seen[talker + "GGA"], seen[talker + "RMC"]
    assert gga.gps_qual == fix.quality == 1
    assert gga.altitude == fix.alt == pytest.approx(point.alt, abs=0.05)
    assert int(gga.num_sats) == fix.sats and float(gga.horizontal_dil) == fix.hdop
    assert rmc.status == "A" and rmc.datetime.replace(tzinfo=UTC) == fix.time
    assert (
        rmc.spd_over_grnd * KNOT_MPS == pytest.approx(fix.speed) == pytest.approx(point.speed_mps, abs=3e-4)
    )
    assert rmc.true_course == fix.course
    assert timedelta(0) <= point.time - fix.time < timedelta(milliseconds=10)
    assert fix.talker == talker and fix.mode == 3


def test_profiles_emit_the_talkers_and_sentences_of_their_receiver() -> None:
    def kinds(profile: str) -> list[str]:
        return [raw[1:6].decode() for raw in epoch_sentences(_point(), profile=profile)]

    assert kinds("gp-basic") == ["GPGGA", "GPRMC", "GPGSA"]
    multi = kinds("gn-multi")
    assert multi[:9] == [
        *("GNGGA", "GNRMC", "GNGNS", "GNVTG", "GNZDA"),
        *("GPGSA", "GLGSA", "GAGSA", "BDGSA"),
    ]
    assert {k for k in multi[9:]} == {"GPGSV", "GLGSV", "GAGSV", "BDGSV"}
    assert {k[:2] for k in kinds("bd")} == {"BD"}
    assert {k[:2] for k in kinds("bd-gb")} == {"GB"}
    with pytest.raises(ValueError, match="known profiles: gp-basic"):
        epoch_sentences(_point(), profile="sirf")


def test_gsv_groups_add_up_and_gsa_lists_only_sky_satellites() -> None:
    by_talker: dict[str, list[pynmea2.NMEASentence]] = {}
    msgs = [_parse(raw) for raw in epoch_sentences(_point(), profile="gn-multi")]
    for msg in msgs:
        if msg.sentence_type == "GSV":
            by_talker.setdefault(msg.talker, []).append(msg)
    for talker, group in by_talker.items():
        assert [int(m.msg_num) for m in group] == list(range(1, len(group) + 1))
        assert {int(m.num_messages) for m in group} == {len(group)}
        in_view = {int(m.data[i]) for m in group for i in range(3, len(m.data) - 1, 4)}
        assert len(in_view) == int(group[0].num_sv_in_view) >= 4, talker
        gsa = next(m for m in msgs if m.talker == talker and m.sentence_type == "GSA")
        used = {int(getattr(gsa, f"sv_id{n:02d}")) for n in range(1, 13) if getattr(gsa, f"sv_id{n:02d}")}
        assert len(used) >= 4 and used <= in_view


def test_a_no_fix_epoch_has_empty_fields_and_no_truth() -> None:
    sentences, fix = render_epoch(_point(), profile="gn-multi", fix=False)
    assert fix is None
    msgs = {m.talker + m.sentence_type: m for m in map(_parse, sentences)}
    gga, rmc, gns = msgs["GNGGA"], msgs["GNRMC"], msgs["GNGNS"]
    assert gga.gps_qual == 0 and gga.lat == gga.lon == gga.lat_dir == "" and gga.altitude is None
    assert rmc.status == "V" and rmc.lat == rmc.lon == "" and rmc.spd_over_grnd is None
    assert gns.mode_indicator == "NNNN" and gns.lat == ""
    assert msgs["GNVTG"].true_track is None
    assert all(msgs[t + "GSA"].mode_fix_type == "1" for t in ("GP", "GL", "GA", "BD"))
    assert gga.timestamp == rmc.timestamp == T0.timetz()  # the receiver clock keeps running


# --- faults -------------------------------------------------------------------------------------


def _one(plan: FaultPlan, seed: int = 0) -> tuple[bytes, bytes, tuple]:
    sentence = epoch_sentences(_point(), profile="gp-basic")[0]
    wire, faults = inject_faults([sentence], plan, random.Random(seed))
    return sentence, wire, faults


def test_each_fault_spoils_a_sentence_the_way_its_name_says() -> None:
    good, wire, faults = _one(FaultPlan(bad_checksum=1.0))
    assert [f.kind for f in faults] == [Fault.BAD_CHECKSUM] and len(wire) == len(good)
    with pytest.raises(pynmea2.ChecksumError):
        _parse(wire)
    good, wire, faults = _one(FaultPlan(truncate=1.0))
    assert wire.endswith(b"\r\n") and good.startswith(wire[:-2]) and len(wire) < len(good)
    good, wire, faults = _one(FaultPlan(lost_crlf=1.0))
    assert wire == good[:-2]
    good, wire, faults = _one(FaultPlan(noise=1.0, noise_max_bytes=8))
    assert wire.endswith(good) and 1 <= len(wire) - len(good) <= 8


def test_faults_land_at_the_planned_rates_and_replay_by_seed() -> None:
    plan = FaultPlan(noise=0.05, bad_checksum=0.02, truncate=0.03, lost_crlf=0.04)
    sim = make_simulator(None, seed=42, profile="gp-basic", faults=plan)
    rec = sim.record(3000)
    n = sum(len(e.sentences) for e in rec.epochs)
    assert n == 9000
    expected = {
        Fault.NOISE: plan.noise,
        Fault.TRUNCATED: plan.truncate,
        # A truncated sentence is not also given a bad checksum.
        Fault.BAD_CHECKSUM: plan.bad_checksum * (1 - plan.truncate),
        Fault.LOST_CRLF: plan.lost_crlf,
    }
    for kind, rate in expected.items():
        sd = (n * rate * (1 - rate)) ** 0.5
        assert abs(sim.fault_counts[kind] - n * rate) < 4 * sd, kind
    # Every sentence not spoilt is on the wire verbatim, in order.
    for epoch in rec.epochs:
        at = 0
        for sentence in epoch.intact():
            at = epoch.wire.index(sentence[:-2], at) + 1
    again = make_simulator(None, seed=42, profile="gp-basic", faults=plan).record(3000)
    assert again.data == rec.data and again.truth == rec.truth


def test_the_track_does_not_depend_on_the_faults() -> None:
    clean = make_simulator(None, seed=7).record(50)
    noisy = make_simulator(None, seed=7, faults=FaultPlan(noise=0.5, truncate=0.2)).record(50)
    assert clean.truth == noisy.truth and clean.data != noisy.data


def test_no_fix_and_unplugged_spells_follow_their_schedule() -> None:
    plan = FaultPlan(no_fix_every=10, no_fix_for=3, vanish_every=25, vanish_for=2)
    rec = make_simulator(None, seed=1, profile="gp-basic", rate_hz=2.0, faults=plan).record(120)
    no_fix = [e.elapsed for e in rec.epochs if e.fix is None]
    gone = [e.elapsed for e in rec.epochs if not e.delivered]
    assert no_fix == [t / 2 for t in range(120) if t / 2 >= 10 and (t / 2) % 10 < 3]
    assert gone == [t / 2 for t in range(120) if t / 2 >= 25 and (t / 2) % 25 < 2]
    for epoch in rec.epochs:
        if not epoch.delivered:
            assert epoch.wire == b"" and epoch.faults == ()
        elif epoch.fix is None:
            assert _parse(epoch.sentences[0]).gps_qual == 0
    assert rec.truth == [e.fix if e.delivered else None for e in rec.epochs]


def test_fault_plans_that_make_no_sense_are_refused() -> None:
    with pytest.raises(ValueError, match="probability"):
        FaultPlan(noise=1.5)
    with pytest.raises(ValueError, match="vanish_for < vanish_every"):
        FaultPlan(vanish_every=5, vanish_for=5)
    with pytest.raises(ValueError, match="rate_hz"):
        make_simulator(None, seed=0, rate_hz=0)


def test_benchmark_stream_is_three_sentence_epochs_with_their_fixes() -> None:
    data, fixes = benchmark_stream(500, seed=3)
    lines = data.split(b"\r\n")
    assert lines[-1] == b"" and len(lines) - 1 == 1500 and len(fixes) == 500
    assert [line[:6] for line in lines[:3]] == [b"$GPGGA", b"$GPRMC", b"$GPGSA"]
    ggas = [pynmea2.parse(line.decode(), check=True) for line in lines[0:-1:3]]
    assert [(g.latitude, g.longitude) for g in ggas] == [(f.lat, f.lon) for f in fixes]
    assert [f.time for f in fixes] == [
        datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=i) for i in range(500)
    ]
    assert benchmark_stream(500, seed=3)[0] == data


# --- on a real pseudo-terminal ------------------------------------------------------------------


def test_run_fast_bytes_arrive_through_pyserial_unchanged() -> None:
    # Noise makes the stream binary: the pty must pass every byte value through untouched.
    plan = FaultPlan(noise=0.1, bad_checksum=0.05, lost_crlf=0.05)
    expected = make_simulator(None, seed=9, profile="gp-basic", faults=plan).nmea_bytes(400)
    with PtyPort() as port:
        sim = make_simulator(port, seed=9, profile="gp-basic", faults=plan)
        # Open first: pyserial flushes the input queue on open, as a real port would lose old bytes.
        with serial.Serial(port.path, timeout=WAIT_S) as ser:
            recordings = []
            writer = threading.Thread(target=lambda: recordings.append(sim.run_fast(400, timeout=WAIT_S)))
            writer.start()
            got = ser.read(len(expected))
            writer.join(WAIT_S)
    assert got == expected
    (rec,) = recordings
    assert rec.data == expected
    assert len(rec.truth) == 400 and all(rec.truth)


def test_run_fast_without_a_reader_says_so_instead_of_hanging() -> None:
    with PtyPort() as port, pytest.raises(TimeoutError, match="nobody read"):
        make_simulator(port, seed=1).run_fast(1000, timeout=0.2)


def _read_until(ser: serial.Serial, marker: bytes) -> bytes:
    buf = b""
    deadline = time.monotonic() + WAIT_S
    while buf.count(marker) < 3 and time.monotonic() < deadline:
        buf += ser.read(ser.in_waiting or 1)
    return buf


def _wait_for(condition, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_real_time_device_vanishes_and_returns_on_the_same_link(tmp_path: Path) -> None:
    link = tmp_path / "gps0"
    with PtyPort(link=link) as port:
        track = Track(random.Random(4), start=(38.9, 106.0), start_time=T0)
        sim = GpsSimulator(
            port,
            track=track,
            rng=random.Random(4),
            profile="gp-basic",
            rate_hz=20.0,
            faults=FaultPlan(vanish_every=0.8, vanish_for=0.4),
        )
        sim.start()
        try:
            with serial.Serial(str(link), timeout=0.2) as ser:
                before = _read_until(ser, b"$GPGGA")
                _wait_for(lambda: not link.exists(), "the device to vanish")
                with pytest.raises(serial.SerialException):
                    for _ in range(int(WAIT_S / 0.2)):
                        ser.read(100)
            _wait_for(link.exists, "the device to come back")
            with serial.Serial(str(link), timeout=0.2) as ser:
                after = _read_until(ser, b"$GPGGA")
        finally:
            sim.stop()
    assert not os.path.lexists(link)  # closed: the link went with it
    sent = {f.time.strftime("%H%M%S.%f")[:9]: f for f in sim.truth if f is not None}
    for chunk in (before, after):
        ggas = [line for line in chunk.split(b"\r\n") if line.startswith(b"$GPGGA") and line[-3:-2] == b"*"]
        assert ggas
        for line in ggas:
            msg = pynmea2.parse(line.decode(), check=True)
            truth = sent[line[7:16].decode()]
            assert (msg.latitude, msg.longitude) == (truth.lat, truth.lon)
    assert any(not e.delivered for e in sim.epochs)


# --- the command line ---------------------------------------------------------------------------


def test_cli_prints_the_path_and_serves_nmea_until_the_duration_ends(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    link = tmp_path / "uncia-gps0"
    args = ["sim", "gps", "--link", str(link), "--rate", "10", "--seed", "5", "--duration", "1.5"]
    result: list[int] = []
    runner = threading.Thread(target=lambda: result.append(main(args)))
    runner.start()
    try:
        _wait_for(link.exists, "the simulator's link")
        with serial.Serial(str(link), timeout=0.2) as ser:
            data = _read_until(ser, b"$GNGGA")
    finally:
        runner.join(WAIT_S)
    assert result == [0]
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    assert out[0].startswith(f"GPS simulator on {link} -> /dev/pts/")
    assert out[0].endswith("(gn-multi, 10 Hz); Ctrl-C to stop")
    assert data.count(b"$GNGGA") >= 3
    assert not link.exists()  # cleaned up on the way out


def test_cli_refuses_nonsense_with_a_usable_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sim", "gps", "--vanish-every", "5", "--vanish-for", "9", "--duration", "1"]) == 2
    assert "vanish_for < vanish_every" in capsys.readouterr().err
    precious = tmp_path / "notes.txt"
    precious.write_text("keep me")
    assert main(["sim", "gps", "--link", str(precious), "--duration", "1"]) == 2
    assert precious.read_text() == "keep me"
    with pytest.raises(SystemExit):
        main(["sim", "gps", "--noise", "2"])
    assert "not a probability" in capsys.readouterr().err
    assert main(["sim"]) == 2
