"""The simulated LoRa channel: path loss with distance, collisions and capture, and a complete log."""

from __future__ import annotations

import itertools
import math
import random
import threading
import time
from dataclasses import dataclass, field, replace
from statistics import NormalDist

import pytest
import serial
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.lora.airtime import time_on_air
from edge.lora.modem import RadioSettings
from simulators.lora_air import (
    DEMOD_FLOOR_DB,
    M_PER_DEG_LAT,
    Air,
    ChannelModel,
    Outcome,
    Position,
    distance_m,
    pace,
)
from simulators.lora_rak3172 import Rak3172Emulator

SITE: Position = (38.85, 106.0, 2500.0)
RADIO = RadioSettings(spreading_factor=10)  # CN470 470.3 MHz, SF10, 125 kHz (the model tables assume SF10)
CALM = ChannelModel(shadowing_sigma_db=0.0)  # no shadowing: outcomes follow from geometry alone


def east_of(origin: Position, metres: float, alt: float | None = None) -> Position:
    lat, lon, z = origin
    return (lat, lon + metres / (M_PER_DEG_LAT * math.cos(math.radians(lat))), z if alt is None else alt)


@dataclass
class Heard:
    payload: bytes
    rssi: int
    snr: float
    sender: int
    radio: RadioSettings


@dataclass
class Ear:
    """A stand-in receiving modem with the emulators' `deliver` signature; it listens only on the radio
    settings in `listens` (all of them if None) and records what it was handed."""

    listens: RadioSettings | None = None
    heard: list[Heard] = field(default_factory=list)

    def deliver(
        self, payload: bytes, *, rssi: int, snr: float, sender: int = 0, radio: RadioSettings
    ) -> bool:
        if self.listens is not None and (radio.frequency_hz, radio.spreading_factor, radio.bandwidth_khz) != (
            self.listens.frequency_hz,
            self.listens.spreading_factor,
            self.listens.bandwidth_khz,
        ):
            return False
        self.heard.append(Heard(payload, rssi, snr, sender, radio))
        return True


def calm_air(seed: int = 1) -> tuple[Air, Ear]:
    air = Air(random.Random(seed), model=CALM)
    ear = Ear()
    air.add_receiver("station", ear, SITE)
    return air, ear


def outcome(air: Air, seq: int, receiver: str = "station") -> Outcome:
    return air.log[seq].receptions[receiver].outcome


# --- the radio model ------------------------------------------------------------------------------


def test_noise_floor_and_demodulation_floors_follow_the_datasheet() -> None:
    model = ChannelModel()
    assert model.noise_floor_dbm(125) == pytest.approx(-117.03, abs=0.01)
    assert model.noise_floor_dbm(500) == pytest.approx(model.noise_floor_dbm(125) + 6.02, abs=0.01)
    assert DEMOD_FLOOR_DB[7] == -7.5 and DEMOD_FLOOR_DB[12] == -20.0
    assert [DEMOD_FLOOR_DB[sf] for sf in range(7, 13)] == sorted(DEMOD_FLOOR_DB.values(), reverse=True)


@given(st.floats(1.0, 80_000.0), st.floats(1.0, 80_000.0))
@settings(max_examples=50, deadline=None)
def test_path_loss_never_falls_with_distance(a: float, b: float) -> None:
    model = ChannelModel()
    near, far = sorted((a, b))
    assert model.path_loss_db(near) <= model.path_loss_db(far)
    assert model.path_loss_db(1000.0) == model.ref_loss_db


def test_distance_includes_the_climb() -> None:
    assert distance_m(SITE, east_of(SITE, 3000.0)) == pytest.approx(3000.0, rel=1e-6)
    assert distance_m(SITE, east_of(SITE, 3000.0, alt=SITE[2] + 4000.0)) == pytest.approx(5000.0, rel=1e-6)


def test_delivery_ratio_falls_with_distance_as_the_model_predicts() -> None:
    """Receivers at 2-30 km hear 400 well-spaced packets; each ratio matches the log-normal model."""
    model = ChannelModel()
    air = Air(random.Random(7), model=model)
    distances = [2_000, 8_000, 14_000, 20_000, 30_000]
    for d in distances:
        air.add_receiver(f"{d} m", Ear(), east_of(SITE, d))
    for i in range(400):
        air.transmit("collar", SITE, b"fix", RADIO, at=i * 10.0)
    air.flush()

    ratios = []
    for d in distances:
        got = sum(tx.receptions[f"{d} m"].outcome is Outcome.DELIVERED for tx in air.log) / len(air.log)
        # Received iff shadowing <= 14 dBm - median loss - sensitivity, with shadowing ~ N(0, sigma).
        margin = 14 - model.path_loss_db(d) - (model.noise_floor_dbm(125) + DEMOD_FLOOR_DB[10])
        assert got == pytest.approx(NormalDist(0, model.shadowing_sigma_db).cdf(margin), abs=0.08), d
        ratios.append(got)
    assert ratios == sorted(ratios, reverse=True)
    assert ratios[0] > 0.95 and ratios[-1] < 0.1
    lost = {r.outcome for tx in air.log for r in tx.receptions.values()} - {Outcome.DELIVERED}
    assert lost == {Outcome.TOO_WEAK}  # spaced out: nothing collides


def test_higher_spreading_factor_reaches_further() -> None:
    air, _ = calm_air()
    far = east_of(SITE, 16_000)  # beyond SF10's reach without shadowing, within SF12's
    air.transmit("a", far, b"x", RADIO, at=0.0)
    air.transmit("b", far, b"x", replace(RADIO, spreading_factor=12), at=10.0)
    air.flush()
    assert [outcome(air, 0), outcome(air, 1)] == [Outcome.TOO_WEAK, Outcome.DELIVERED]
    assert air.log[1].receptions["station"].snr < 0  # LoRa decodes below the noise floor


def test_blocked_line_of_sight_costs_the_penalty() -> None:
    ridge_lon = east_of(SITE, 500)[1]

    def wall(lat: float, lon: float) -> float:  # a 4,000 m ridge 500 m east, running north-south
        return 4000.0 if abs(lon - ridge_lon) < 0.001 else 0.0

    model = ChannelModel(shadowing_sigma_db=0.0, terrain=wall)
    air = Air(random.Random(1), model=model)
    air.add_receiver("behind the ridge", Ear(), east_of(SITE, 1000))
    air.add_receiver("same side", Ear(), east_of(SITE, -1000))
    air.transmit("collar", SITE, b"x", RADIO, at=0.0)
    air.flush()
    behind, same = air.log[0].receptions["behind the ridge"], air.log[0].receptions["same side"]
    assert behind.blocked and not same.blocked
    assert behind.path_loss_db == pytest.approx(model.path_loss_db(behind.distance_m) + 10.0)


# --- collisions -------------------------------------------------------------------------------------


def test_overlapping_packets_of_equal_strength_are_both_lost() -> None:
    air, ear = calm_air()
    air.transmit("a", east_of(SITE, 1000), b"first", RADIO, at=0.0)
    air.transmit("b", east_of(SITE, -1000), b"second", RADIO, at=0.1)
    air.flush()
    assert [outcome(air, 0), outcome(air, 1)] == [Outcome.COLLIDED, Outcome.COLLIDED]
    assert air.log[0].receptions["station"].interferers == (1,)
    assert ear.heard == []


@pytest.mark.parametrize(("weaker_dbm", "captured"), [(8, True), (8.5, False), (14, False)])
def test_capture_effect_needs_six_db(weaker_dbm: float, captured: bool) -> None:
    air, ear = calm_air()
    air.transmit("strong", east_of(SITE, 2000), b"strong", RADIO, at=0.0, tx_power_dbm=14)
    air.transmit("weak", east_of(SITE, 2000), b"weak", RADIO, at=0.2, tx_power_dbm=weaker_dbm)
    air.flush()
    assert outcome(air, 1) is Outcome.COLLIDED
    assert outcome(air, 0) is (Outcome.DELIVERED if captured else Outcome.COLLIDED)
    assert [h.payload for h in ear.heard] == ([b"strong"] if captured else [])


def test_interference_adds_up() -> None:
    """Two rivals each exactly 6 dB down are together only 3 dB down: no capture."""
    air, _ = calm_air()
    spot = east_of(SITE, 2000)
    air.transmit("strong", spot, b"s", RADIO, at=0.0, tx_power_dbm=14)
    air.transmit("weak-1", spot, b"w1", RADIO, at=0.05, tx_power_dbm=8)
    air.transmit("weak-2", spot, b"w2", RADIO, at=0.1, tx_power_dbm=8)
    air.flush()
    assert {outcome(air, i) for i in range(3)} == {Outcome.COLLIDED}


def test_back_to_back_packets_do_not_collide() -> None:
    air, ear = calm_air()
    end = time_on_air(5, RADIO)
    air.transmit("a", east_of(SITE, 1000), b"first", RADIO, at=0.0)
    air.transmit("b", east_of(SITE, 1000), b"after", RADIO, at=end)
    air.flush()
    assert [outcome(air, 0), outcome(air, 1)] == [Outcome.DELIVERED, Outcome.DELIVERED]
    assert [h.payload for h in ear.heard] == [b"first", b"after"]


@pytest.mark.parametrize(
    "other",
    [replace(RADIO, spreading_factor=9), replace(RADIO, frequency_hz=471_500_000)],
    ids=["sf", "frequency"],
)
def test_other_channels_do_not_collide(other: RadioSettings) -> None:
    air = Air(random.Random(1), model=CALM)
    air.add_receiver("sf10", Ear(listens=RADIO), SITE)
    air.add_receiver("other", Ear(listens=other), SITE)
    air.transmit("a", east_of(SITE, 1000), b"a", RADIO, at=0.0)
    air.transmit("b", east_of(SITE, 1000), b"b", other, at=0.0)
    air.flush()
    assert [outcome(air, 0, "sf10"), outcome(air, 1, "other")] == [Outcome.DELIVERED] * 2
    assert [outcome(air, 0, "other"), outcome(air, 1, "sf10")] == [Outcome.NOT_LISTENING] * 2


def test_a_transmitting_modem_hears_nothing_and_not_itself() -> None:
    air = Air(random.Random(1), model=CALM)
    air.add_receiver("camera-3", Ear(), east_of(SITE, 500))
    air.add_receiver("station", Ear(), SITE)
    air.transmit("collar-1", east_of(SITE, 1000), b"fix", RADIO, at=0.0)
    air.transmit("camera-3", east_of(SITE, 500), b"event", replace(RADIO, spreading_factor=7), at=0.05)
    air.flush()
    assert outcome(air, 0, "camera-3") is Outcome.BUSY
    assert set(air.log[1].receptions) == {"station"}


@given(
    st.lists(
        st.tuples(
            st.floats(0.0, 5.0), st.sampled_from([7, 9, 10]), st.floats(-2.0, 20.0), st.integers(1, 30)
        ),
        min_size=1,
        max_size=12,
    )
)
@settings(max_examples=60, deadline=None)
def test_overlapping_same_channel_packets_never_both_arrive(
    plan: list[tuple[float, int, float, int]],
) -> None:
    air, ear = calm_air()
    for i, (at, sf, power, size) in enumerate(sorted(plan)):
        radio = replace(RADIO, spreading_factor=sf)
        air.transmit(f"c{i}", east_of(SITE, 3000), bytes(size), radio, at=at, tx_power_dbm=power)
    air.flush()
    delivered = [tx for tx in air.log if tx.receptions["station"].outcome is Outcome.DELIVERED]
    for a, b in itertools.combinations(delivered, 2):
        assert not (a.overlaps(b) and a.same_channel(b))
    for tx in air.log:
        alone = not any(o is not tx and o.overlaps(tx) and o.same_channel(tx) for o in air.log)
        if alone and tx.receptions["station"].outcome is not Outcome.TOO_WEAK:
            assert tx.receptions["station"].outcome is Outcome.DELIVERED
    assert len(ear.heard) == len(delivered)


# --- time and the log -------------------------------------------------------------------------------


def test_a_packet_arrives_when_its_airtime_ends() -> None:
    air, ear = calm_air()
    tx = air.transmit("a", east_of(SITE, 1000), b"twelve bytes", RADIO, at=100.0)
    assert tx.end == pytest.approx(100.0 + time_on_air(12, RADIO))
    assert air.next_resolution() == tx.end
    assert air.advance_to(tx.end - 1e-6) == [] and ear.heard == [] and not tx.resolved
    assert air.advance_to(tx.end) == [tx] and tx.resolved
    assert ear.heard[0].payload == b"twelve bytes"
    assert air.next_resolution() is None


def test_time_only_moves_forward() -> None:
    air, _ = calm_air()
    air.advance_to(50.0)
    with pytest.raises(ValueError, match="in the past"):
        air.transmit("a", SITE, b"x", RADIO, at=49.0)
    with pytest.raises(ValueError, match="forward"):
        air.advance_to(10.0)
    with pytest.raises(ValueError, match="unique"):
        air.add_receiver("station", Ear(), SITE)
    with pytest.raises(ValueError, match="one byte"):
        air.transmit("a", SITE, b"", RADIO, at=60.0)


def test_the_log_accounts_for_every_transmission_at_every_receiver() -> None:
    rng = random.Random(3)
    air = Air(random.Random(4))
    ears = {
        "station": Ear(listens=RADIO),
        "camera-1": Ear(listens=RADIO),
        "camera-2": Ear(listens=replace(RADIO, spreading_factor=7)),
    }
    for i, (name, ear) in enumerate(ears.items()):
        air.add_receiver(name, ear, east_of(SITE, 4000 * i))
    senders = ["collar-1", "collar-2", "collar-3", "camera-1"]
    t = 0.0
    for _ in range(300):
        t += rng.expovariate(2.0)  # busy air: collisions happen
        sender = rng.choice(senders)
        radio = replace(RADIO, spreading_factor=rng.choice([7, 10]), address=senders.index(sender))
        air.transmit(
            sender, east_of(SITE, rng.uniform(0, 25_000)), rng.randbytes(rng.randint(1, 40)), radio, t
        )
        air.advance_to(t)
    air.flush()

    for tx in air.log:
        assert tx.resolved
        assert set(tx.receptions) == set(ears) - {tx.sender}
    counts = air.outcomes()
    assert sum(counts.values()) == sum(len(set(ears) - {tx.sender}) for tx in air.log)
    assert {Outcome.DELIVERED, Outcome.TOO_WEAK, Outcome.COLLIDED, Outcome.NOT_LISTENING} <= set(counts)
    for name, ear in ears.items():
        delivered = sorted(
            (
                tx
                for tx in air.log
                if name in tx.receptions and tx.receptions[name].outcome is Outcome.DELIVERED
            ),
            key=lambda tx: (tx.end, tx.seq),
        )
        # Each modem got exactly the delivered packets, in the order their airtime ended, with the
        # RSSI, SNR and sender address the log shows.
        assert [(h.payload, h.rssi, h.snr, h.sender) for h in ear.heard] == [
            (tx.payload, tx.receptions[name].rssi, tx.receptions[name].snr, tx.radio.address)
            for tx in delivered
        ]


def test_same_seed_same_air() -> None:
    def run(seed: int) -> list[tuple[str, ...]]:
        air = Air(random.Random(seed))
        air.add_receiver("station", Ear(), SITE)
        for i in range(50):
            air.transmit("c", east_of(SITE, 13_000), b"x", RADIO, at=i * 0.2)
        air.flush()
        return [tuple(r.outcome for r in tx.receptions.values()) for tx in air.log]

    assert run(5) == run(5)
    assert run(5) != run(6)


class FakeWall:
    """A wall clock that only moves when somebody sleeps on it."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds


def test_run_realtime_delivers_each_packet_when_the_paced_clock_reaches_it() -> None:
    air, ear = calm_air()
    wall = FakeWall()
    delivered_at: list[float] = []
    original = ear.deliver

    def deliver(payload: bytes, **kw: object) -> bool:
        delivered_at.append(wall.now)
        return original(payload, **kw)  # type: ignore[arg-type]

    ear.deliver = deliver  # type: ignore[method-assign]
    first = air.transmit("a", east_of(SITE, 1000), b"a", RADIO, at=2.0)
    second = air.transmit("b", east_of(SITE, 1000), b"b", RADIO, at=30.0)
    reached = air.run_realtime(60.0, speedup=10.0, clock=wall.clock, sleep=wall.sleep)
    assert reached == 60.0 and air.now == 60.0
    assert delivered_at == pytest.approx([1000.0 + first.end / 10.0, 1000.0 + second.end / 10.0])
    assert wall.slept == pytest.approx(6.0)


def test_pace_stops_when_asked() -> None:
    stop = threading.Event()
    wall = FakeWall()
    steps: list[float] = []

    def advance(t: float) -> None:
        steps.append(t)
        if t >= 20.0:
            stop.set()

    def next_event() -> float | None:
        return next((e for e in (10.0, 20.0, 30.0) if not steps or e > steps[-1]), None)

    reached = pace(advance, next_event, start=0.0, until=100.0, clock=wall.clock, sleep=wall.sleep, stop=stop)
    assert (reached, steps) == (20.0, [10.0, 20.0])
    with pytest.raises(ValueError, match="speedup"):
        pace(advance, lambda: None, start=0.0, until=1.0, speedup=0)


# --- with a real emulated modem on a pty ----------------------------------------------------------------

WAIT_S = 10.0  # generous limit for anything that crosses a pty; never an assertion on speed


def _lines_until(host: serial.Serial, last: bytes) -> list[bytes]:
    lines: list[bytes] = []
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        line = host.read_until(b"\r\n")
        if line:
            lines.append(line.rstrip(b"\r\n"))
            if lines[-1] == last:
                return lines
    raise AssertionError(f"the modem never said {last!r}; it said {lines!r}")


def test_a_rak3172_hears_the_air_only_once_receiving() -> None:
    radio = RadioSettings(frequency_hz=470_300_000, spreading_factor=10)
    with (
        Rak3172Emulator(rng=random.Random(1), work_mode=0) as modem,
        serial.Serial(modem.path, 115200, timeout=0.2) as host,
    ):
        _lines_until(host, b"Current Work Mode: LoRa P2P.")
        host.write(b"AT+P2P=470300000:10:125:0:8:14\r\n")
        _lines_until(host, b"OK")
        air = Air(random.Random(2), model=CALM)
        air.add_receiver("camera-1", modem, SITE)
        air.transmit("collar-1", east_of(SITE, 2000), b"\x91deaf", radio, at=0.0)
        air.advance_to(1.0)
        host.write(b"AT+PRECV=65534\r\n")
        _lines_until(host, b"OK")
        payloads = [b"\x92fix\r\n", b"\x93\x00\xff"]
        for i, payload in enumerate(payloads):
            air.transmit("collar-1", east_of(SITE, 2000), payload, radio, at=2.0 + i)
        air.transmit("collar-2", east_of(SITE, 2000), b"\x94", replace(radio, spreading_factor=9), at=5.0)
        air.flush()
        events = [_lines_until(host, f"+EVT:RXP2P:{r}".encode())[-1] for r in _expected(air, payloads)]

    assert [outcome(air, i, "camera-1") for i in range(4)] == [
        Outcome.NOT_LISTENING,
        Outcome.DELIVERED,
        Outcome.DELIVERED,
        Outcome.NOT_LISTENING,
    ]
    assert [bytes.fromhex(e.rsplit(b":", 1)[1].decode()) for e in events] == payloads


def _expected(air: Air, payloads: list[bytes]) -> list[str]:
    """The ``<rssi>:<snr>:<HEX>`` the modem should print for each payload, from the air's log."""
    out = []
    for payload in payloads:
        tx = next(tx for tx in air.log if tx.payload == payload)
        reception = tx.receptions["camera-1"]
        out.append(f"{reception.rssi}:{round(reception.snr)}:{payload.hex().upper()}")
    return out
