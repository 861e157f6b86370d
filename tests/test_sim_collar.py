"""Simulated LoRa collars: fix schedule and jitter, batches, NMEA text, battery, and a fleet on the air."""

from __future__ import annotations

import math
import random
import re
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pynmea2
import pytest
import serial

from edge.lora.airtime import time_on_air
from edge.lora.modem import RadioSettings
from edge.lora.payload import decode, encode_batch, encode_fix
from simulators.collar import Battery, Collar, CollarFleet
from simulators.lora_air import Air, ChannelModel, Outcome, Position
from simulators.lora_reyax import RylrEmulator
from simulators.nmea_out import LATLON_PRECISION_DEG
from simulators.track import Track

T0 = datetime(2026, 11, 25, 0, 0, tzinfo=UTC)
HOME = (38.85, 106.0)
STATION: Position = (38.86, 106.01, 2600.0)  # ~1.4 km from home: every packet that does not collide arrives
RADIO = RadioSettings()
HOUR = 3600.0
WAIT_S = 10.0  # generous limit for anything that crosses a pty; never an assertion on speed


@dataclass
class Ear:
    """A stand-in receiving modem with the emulators' `deliver` signature that hears everything."""

    heard: list[tuple[bytes, int]] = field(default_factory=list)

    def deliver(
        self, payload: bytes, *, rssi: int, snr: float, sender: int = 0, radio: RadioSettings
    ) -> bool:
        self.heard.append((payload, sender))
        return True


def make_collar(collar_id: int = 1, **kw: object) -> Collar:
    track = Track(random.Random(collar_id), HOME, T0)
    options: dict[str, object] = {
        "radio": replace(RADIO, address=collar_id),
        "rng": random.Random(100 + collar_id),
    }
    options.update(kw)
    return Collar(collar_id, track, **options)  # type: ignore[arg-type]


def fly(*collars: Collar, until: float, seed: int = 1, model: ChannelModel | None = None) -> tuple[Air, Ear]:
    air = Air(random.Random(seed), model=model)
    ear = Ear()
    air.add_receiver("station", ear, STATION)
    CollarFleet(air, collars).run_until(until)
    return air, ear


def test_fixes_on_the_clock_and_transmissions_jittered() -> None:
    collar = make_collar(no_fix_prob=0.0, tx_jitter_s=10.0)
    _, ear = fly(collar, until=10 * HOUR + 60)
    assert [f.time for f in collar.fixes] == [T0 + timedelta(seconds=900 * k) for k in range(1, 41)]
    assert [p.fixes for p in collar.sent] == [(f,) for f in collar.fixes]
    offsets = [p.at - 900 * k for k, p in enumerate(collar.sent, start=1)]
    assert all(0.0 <= o < 10.0 for o in offsets)
    assert len({round(o, 3) for o in offsets}) == len(offsets)  # not in lock step
    for packet in collar.sent:
        assert packet.payload == encode_fix(packet.fixes[0])
        assert packet.transmission.start == packet.at
        assert packet.transmission.sender == "collar-1" and packet.transmission.sender_address == 1
    assert [p for p, _ in ear.heard] == [p.payload for p in collar.sent]
    assert {sender for _, sender in ear.heard} == {1}


def test_first_fix_can_be_placed_on_the_schedule() -> None:
    collar = make_collar(no_fix_prob=0.0, start=100.0, first_fix_at=120.0, fix_interval_s=600.0)
    fly(collar, until=2000.0)
    # The track stood at T0 at simulated second 100.
    assert [f.time for f in collar.fixes] == [T0 + timedelta(seconds=s) for s in (20, 620, 1220, 1820)]


def test_no_fix_means_nothing_to_send() -> None:
    never = make_collar(1, no_fix_prob=1.0)
    sometimes = make_collar(2, no_fix_prob=0.3)
    air, _ = fly(never, sometimes, until=200 * HOUR)
    assert never.fixes == [] and never.sent == [] and len(never.missed) == 800
    assert never.missed[:2] == [900.0, 1800.0]
    assert len(sometimes.missed) / 800 == pytest.approx(0.3, abs=0.06)
    assert len(sometimes.fixes) + len(sometimes.missed) == 800
    assert {tx.sender for tx in air.log} == {"collar-2"}


def test_batches_of_fixes_in_one_packet() -> None:
    collar = make_collar(batch=4, no_fix_prob=0.2)
    fly(collar, until=24 * HOUR)
    assert len(collar.sent) == len(collar.fixes) // 4
    sent = [f for p in collar.sent for f in p.fixes]
    assert sent + list(collar.unsent) == collar.fixes
    for packet in collar.sent:
        assert len(packet.fixes) == 4
        assert packet.payload == encode_batch(list(packet.fixes))
        back = decode(packet.payload)
        assert [f.time for f in back] == [f.time for f in packet.fixes]
        assert all(
            abs(b.lat - f.lat) < 1e-5 and abs(b.lon - f.lon) < 1e-5
            for b, f in zip(back, packet.fixes, strict=True)
        )
        # Sent within the jitter after the batch's last fix was taken.
        last = (packet.fixes[-1].time - T0).total_seconds()
        assert last <= packet.at < last + 10.0


def test_nmea_collars_send_one_gga_sentence() -> None:
    collar = make_collar(payload_format="nmea", no_fix_prob=0.0)
    _, ear = fly(collar, until=3 * HOUR + 60)
    assert len(collar.sent) == 12 and len(ear.heard) == 12
    for packet in collar.sent:
        assert b"\r" not in packet.payload and b"\n" not in packet.payload
        gga = pynmea2.parse(packet.payload.decode("ascii"), check=True)
        assert gga.sentence_type == "GGA" and gga.gps_qual == 1
        fix = packet.fixes[0]
        assert abs(gga.latitude - fix.lat) <= LATLON_PRECISION_DEG
        assert abs(gga.longitude - fix.lon) <= LATLON_PRECISION_DEG
    with pytest.raises(ValueError, match="batch=1"):
        make_collar(payload_format="nmea", batch=2)


def test_battery_drains_with_every_fix_and_transmission() -> None:
    battery = Battery(capacity_mah=10.0)
    collar = make_collar(battery=battery, no_fix_prob=0.0)
    fly(collar, until=6 * HOUR)
    used = (
        len(collar.fixes) * battery.gps_fix_mah
        + sum(Battery.tx_current_ma(14) * time_on_air(len(p.payload), RADIO) / HOUR for p in collar.sent)
        + battery.sleep_ua / 1000.0 * 6 * HOUR / HOUR  # asleep until the last fix
    )
    assert battery.charge_mah == pytest.approx(10.0 - used)
    percents = [f.battery_pct for f in collar.fixes]
    assert percents == sorted(percents, reverse=True) and percents[0] < 100 and percents[-1] < percents[0]


def test_a_flat_battery_silences_the_collar() -> None:
    collar = make_collar(battery=Battery(capacity_mah=1.0), no_fix_prob=0.0)
    fly(collar, until=24 * HOUR)
    assert collar.died_at is not None and collar.next_event() is None
    assert len(collar.fixes) == math.ceil(1.0 / 0.15)
    assert all(p.at < collar.died_at for p in collar.sent)


def test_transmit_current_follows_the_datasheet() -> None:
    assert Battery.tx_current_ma(14) == pytest.approx(43.5)
    assert Battery.tx_current_ma(20) == 120.0 and Battery.tx_current_ma(30) == 120.0
    assert Battery.tx_current_ma(0) == 20.0


def test_collars_on_one_schedule_collide_and_everything_is_accounted_for() -> None:
    # Eight collars fixing on the same quarter-hours with only 2 s of jitter at SF12 (~1 s airtime).
    radio = replace(RADIO, spreading_factor=12)
    collars = [make_collar(i, radio=replace(radio, address=i), tx_jitter_s=2.0) for i in range(1, 9)]
    air, ear = fly(*collars, until=12 * HOUR, model=ChannelModel(shadowing_sigma_db=0.0))
    outcomes = air.outcomes()
    assert outcomes[Outcome.COLLIDED] > 0 and outcomes[Outcome.DELIVERED] > 0
    assert set(outcomes) <= {Outcome.COLLIDED, Outcome.DELIVERED}

    sent = [p for c in collars for p in c.sent]
    assert sorted(p.transmission.seq for p in sent) == list(range(len(air.log)))
    assert all(p.transmission.resolved for p in sent)
    for collar in collars:
        assert [p.fixes[0] for p in collar.sent] + list(collar.unsent) == collar.fixes
    delivered = sorted(
        (p for p in sent if p.transmission.receptions["station"].outcome is Outcome.DELIVERED),
        key=lambda p: (p.transmission.end, p.transmission.seq),
    )
    assert ear.heard == [(p.payload, int(p.transmission.sender_address)) for p in delivered]


def test_same_seeds_same_run() -> None:
    def run() -> list[tuple[str, float, bytes]]:
        collars = [make_collar(i) for i in range(1, 4)]
        air, _ = fly(*collars, until=6 * HOUR)
        return [(tx.sender, tx.start, tx.payload) for tx in air.log]

    assert run() == run()


def test_fleet_in_real_time_with_a_fake_wall_clock() -> None:
    wall = [0.0]

    def sleep(seconds: float) -> None:
        wall[0] += seconds

    collar = make_collar(no_fix_prob=0.0)
    air = Air(random.Random(1))
    air.add_receiver("station", Ear(), STATION)
    fleet = CollarFleet(air, [collar])
    reached = fleet.run_realtime(HOUR, speedup=600.0, clock=lambda: wall[0], sleep=sleep)
    assert reached == HOUR and air.now == HOUR
    # Fixes at 15, 30, 45 and 60 minutes; the last one's packet leaves just after the hour.
    assert (len(collar.fixes), len(collar.sent), collar.unsent) == (4, 3, (collar.fixes[-1],))
    assert wall[0] == pytest.approx(HOUR / 600.0)


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"fix_interval_s": 0}, "fix_interval_s"),
        ({"batch": 0}, "batch"),
        ({"batch": 17}, "batch"),
        ({"tx_jitter_s": 900}, "tx_jitter_s"),
        ({"no_fix_prob": 1.5}, "probability"),
        ({"payload_format": "json"}, "payload_format"),
    ],
)
def test_impossible_settings_are_refused_in_words(options: dict[str, object], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        make_collar(**options)


def test_collar_names_are_unique_on_one_air() -> None:
    with pytest.raises(ValueError, match="unique"):
        CollarFleet(Air(random.Random(1)), [make_collar(1), make_collar(1)])


# --- with a real emulated modem on a pty ----------------------------------------------------------------


def _expect(host: serial.Serial, line: bytes) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if host.read_until(b"\r\n").rstrip(b"\r\n") == line:
            return
    raise AssertionError(f"the modem never said {line!r}")


_RCV = re.compile(rb"\+RCV=(\d+),(\d+),")
_RCV_TAIL = re.compile(rb",(-?\d+),(-?\d+)\r\n")


def _read_rcv(host: serial.Serial, count: int) -> list[tuple[int, bytes, int, int]]:
    """`count` ``+RCV=<addr>,<len>,<data>,<rssi>,<snr>`` lines, cut by length: the data is raw binary
    and may itself hold CR, LF or commas."""
    out: list[tuple[int, bytes, int, int]] = []
    buf = b""
    deadline = time.monotonic() + WAIT_S
    while len(out) < count and time.monotonic() < deadline:
        buf += host.read(max(1, host.in_waiting))
        while (head := _RCV.match(buf)) is not None:
            end = head.end() + int(head.group(2))
            tail = _RCV_TAIL.match(buf, end)
            if tail is None:
                break
            out.append((int(head.group(1)), buf[head.end() : end], int(tail.group(1)), int(tail.group(2))))
            buf = buf[tail.end() :]
    assert buf == b"", f"unexpected bytes from the modem: {buf!r}"
    return out


def test_collar_packets_reach_a_reyax_modem_on_its_pty() -> None:
    # Second-generation REYAX parts allow SF5-SF9 at 125 kHz.
    radio = RadioSettings(frequency_hz=470_300_000, spreading_factor=9, preamble=12)
    tuned = [make_collar(i, radio=replace(radio, address=i), no_fix_prob=0.0) for i in (1, 2, 3)]
    off_channel = make_collar(4, radio=replace(radio, spreading_factor=7, address=4), no_fix_prob=0.0)
    nmea = make_collar(5, radio=replace(radio, address=5), payload_format="nmea", no_fix_prob=0.0)
    with RylrEmulator(rng=random.Random(1)) as modem, serial.Serial(modem.path, 115200, timeout=0.2) as host:
        _expect(host, b"+READY")
        for command in (b"AT+BAND=470300000", b"AT+PARAMETER=9,7,1,12"):
            host.write(command + b"\r\n")
            _expect(host, b"+OK")
        air = Air(random.Random(2))
        air.add_receiver("station", modem, STATION)
        CollarFleet(air, [*tuned, off_channel, nmea]).run_until(2 * HOUR + 60)
        delivered = sorted(
            (tx for tx in air.log if tx.receptions["station"].outcome is Outcome.DELIVERED),
            key=lambda tx: (tx.end, tx.seq),
        )
        assert len(delivered) >= 25  # 1.4 km away: a collision or two at most
        lines = _read_rcv(host, len(delivered))

    assert lines == [
        (tx.sender_address, tx.payload, tx.receptions["station"].rssi, round(tx.receptions["station"].snr))
        for tx in delivered
    ]
    assert {r.outcome for p in off_channel.sent for r in p.transmission.receptions.values()} == {
        Outcome.NOT_LISTENING
    }
    truth = {(f.collar_id, f.time): f for c in tuned for f in c.fixes}
    for address, payload, _, _ in lines:
        if address == 5:
            assert pynmea2.parse(payload.decode("ascii"), check=True).sentence_type == "GGA"
            continue
        (fix,) = decode(payload)
        sent = truth[(fix.collar_id, fix.time)]
        assert fix.collar_id == address
        assert abs(fix.lat - sent.lat) < 1e-5 and abs(fix.lon - sent.lon) < 1e-5
