"""Paired cameras: two camera units on one real broker, mock PIR pins, simulated NoIR cameras.

A PIR edge on one unit makes both capture, the partner's event tagged with the first one's event id
and started within 100 ms of it (the recorded trigger times; simulated backends, software path);
the partner's burst never triggers the first one back; the pair subscription survives a broker
restart; a pair trigger is never queued while the broker is away.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from gpiozero.pins.mock import MockFactory

from edge.camera.agent import CameraUnit
from edge.camera.pairing import PAIR_TRIGGER_TYPE, PairedCamera, PairMessageError, PairTrigger, pair_filter
from edge.camera.simulated import SimulatedCamera
from edge.config import ConfigError, parse_config
from edge.fix import ClockSource
from edge.messages import Envelope
from edge.topics import Topics

SITE, CAM = "helan", "cam0"
NIGHT = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)
LAT, LON = 38.8143, 105.9387


def _wait(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.005)


def _config(tmp_path: Path, broker: Any, unit: str, partner: str) -> Any:
    return parse_config(
        {
            "unit": {"id": unit, "site": SITE, "role": "camera"},
            "mqtt": {"host": broker.host, "port": broker.port},
            "outbox": {"path": str(tmp_path / f"{unit}-outbox.sqlite3")},
            "health": {"interval": 3600},
            "camera": {
                "lat": LAT,
                "lon": LON,
                "id": CAM,
                "backend": "simulated",
                "main_width": 320,
                "main_height": 240,
                "fps": 30.0,
                "burst_interval_s": 0.2,
                "max_burst": 3,
                "retrigger_interval_s": 0.5,
                "image_dir": str(tmp_path / f"{unit}-images"),
                "pair_with": partner,
            },
        }
    )


class Pair:
    """Two units facing one trail, `a` and `b`, sharing one wall clock (as GPS-synced units do)."""

    def __init__(self, tmp_path: Path, broker: Any) -> None:
        began = time.monotonic()
        self.clock = lambda: NIGHT + timedelta(seconds=time.monotonic() - began)
        self.pins: dict[str, Any] = {}
        self.units: dict[str, CameraUnit] = {}
        for name, partner in (("cam-a", "cam-b"), ("cam-b", "cam-a")):
            config = _config(tmp_path, broker, name, partner)
            factory = MockFactory()
            camera = SimulatedCamera(
                self.clock, random.Random(name), main=(320, 240), fps=30.0, paced=True, lores=(160, 120)
            )
            self.units[name] = CameraUnit(
                config,
                camera,
                pin_factory=factory,
                clock=self.clock,
                clock_source=lambda: ClockSource.GPS,
                rng=random.Random(name),
            )
            self.pins[name] = factory.pin(config.camera.pir_pin)
        self.a, self.b = self.units["cam-a"], self.units["cam-b"]

    def start(self) -> None:
        for unit in self.units.values():
            unit.start()

    def stop(self) -> None:
        for unit in self.units.values():
            unit.stop(timeout=2.0)

    def animal_at(self, *names: str, events: dict[str, int]) -> None:
        """The PIRs of `names` see an animal until their own unit's event is over (never into the rest
        after it: a PIR still high then would start a `pir-continued` event), and wait until each unit
        in `events` has that many events."""
        for name in names:
            self.pins[name].drive_high()
        deadline = time.monotonic() + 15.0
        while any(len(self.units[n].completed) < count for n, count in events.items()):
            for name in names:
                if self.units[name].completed and self.pins[name].state:
                    self.pins[name].drive_low()
            assert time.monotonic() < deadline, f"timed out waiting for events {events}: " + "; ".join(
                f"{n}: {[(e.trigger, e.tags) for e in u.completed]} {u.addons.get(PairedCamera).report()}"
                f" {u.gate.counts} relay {u.relay.counters}"
                for n, u in self.units.items()
            )
            time.sleep(0.002)
        for name in names:
            self.pins[name].drive_low()


def _probe_subscriptions(broker: Any, pair: Pair) -> None:
    """Wait until each unit hears the other's pair topic: an `end` of an unknown event changes nothing
    but is counted when it arrives."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="pair-probe")
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        for sender, receiver in ((pair.a, pair.b), (pair.b, pair.a)):
            pairing = receiver.addons.get(PairedCamera)
            before = pairing.counts["partner_ends"]
            envelope = Envelope(sender.unit_id)
            payload = envelope.encode(
                "probe",
                1,
                PAIR_TRIGGER_TYPE,
                {"phase": "end", "camera": CAM, "event_id": "probe", "trigger": "pir"},
                time=pair.clock(),
                received=pair.clock(),
                clock=ClockSource.GPS,
            )
            topic = sender.topics.event(CAM, PAIR_TRIGGER_TYPE)

            def heard(
                pairing: Any = pairing, before: int = before, payload: bytes = payload, topic: str = topic
            ) -> bool:
                client.publish(topic, payload, qos=1)
                time.sleep(0.05)
                return pairing.counts["partner_ends"] > before

            _wait(heard, what=f"{receiver.unit_id} subscribed to {topic}")
    finally:
        client.disconnect()
        client.loop_stop()


# --- the message ------------------------------------------------------------------------------------


def test_pair_trigger_message_round_trip_and_refusals() -> None:
    envelope = Envelope("cam-a")
    payload = envelope.encode(
        "cam0-pair",
        4,
        PAIR_TRIGGER_TYPE,
        {"phase": "start", "camera": CAM, "event_id": "20261125T140000Z-abcdef", "trigger": "pir"},
        time=NIGHT,
        received=NIGHT + timedelta(milliseconds=3),
        clock=ClockSource.GPS,
    )
    message = PairTrigger.parse(payload)
    assert (message.phase, message.unit, message.camera, message.trigger) == ("start", "cam-a", CAM, "pir")
    assert message.trigger_time == NIGHT and message.clock is ClockSource.GPS
    topic = Topics(SITE, "cam-a").event(CAM, PAIR_TRIGGER_TYPE)
    assert topic == "uncia/helan/cam-a/cam0/event/pair_trigger"
    assert mqtt.topic_matches_sub(pair_filter(SITE, "cam-a"), topic)
    assert not mqtt.topic_matches_sub(pair_filter(SITE, "cam-b"), topic)
    for bad, says in [
        (b"\x00\x01", "not an uncia message"),
        (envelope.encode("x", 1, "capture", {}, time=NIGHT, received=NIGHT, clock="gps"), "message type"),
        (
            envelope.encode(
                "x",
                1,
                PAIR_TRIGGER_TYPE,
                {"phase": "go", "camera": CAM},
                time=NIGHT,
                received=NIGHT,
                clock="gps",
            ),
            "phase 'go'",
        ),
        (
            envelope.encode(
                "x",
                1,
                PAIR_TRIGGER_TYPE,
                {"phase": "end", "camera": CAM},
                time=NIGHT,
                received=NIGHT,
                clock="gps",
            ),
            "'event_id' = None",
        ),
    ]:
        with pytest.raises(PairMessageError, match=says):
            PairTrigger.parse(bad)


def test_a_unit_cannot_pair_with_itself() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(
            {
                "unit": {"id": "cam-a", "site": SITE},
                "camera": {"lat": LAT, "lon": LON, "pair_with": "cam-a"},
            }
        )
    assert info.value.key == "camera.pair_with" and "another unit" in str(info.value)
    with pytest.raises(ConfigError, match="partner unit"):
        parse_config(
            {"unit": {"id": "cam-a", "site": SITE}, "camera": {"lat": LAT, "lon": LON, "pair_with": "B/1"}}
        )


# --- two units on one broker ------------------------------------------------------------------------


def test_a_pir_edge_on_one_unit_makes_both_capture_within_100_ms(broker, collect, tmp_path) -> None:
    inbox = collect(broker, f"uncia/{SITE}/+/{CAM}/event/+")
    pair = Pair(tmp_path, broker)
    pair.start()
    try:
        _probe_subscriptions(broker, pair)
        pair.animal_at("cam-a", events={"cam-a": 1, "cam-b": 1})  # the animal passes A's PIR only
        time.sleep(1.0)  # longer than the rest after a burst: any ping-pong would have started by now
        inbox.wait_until(
            lambda ms: sum(m.json()["data"].get("phase") == "end" for m in ms if "capture" in m.topic) >= 2
        )
    finally:
        pair.stop()
    (a_event,) = pair.a.completed
    (b_event,) = pair.b.completed  # no ping-pong: B's pair burst did not trigger A again, nor A B
    assert (a_event.trigger, b_event.trigger) == ("pir", "pair")

    # Time-aligned: the partner's event starts within 100 ms of the first unit's trigger.
    lag_s = (b_event.trigger_time - a_event.trigger_time).total_seconds()
    assert 0 <= lag_s <= 0.100, lag_s
    first_still_gap = (b_event.stills[0].time - a_event.stills[0].time).total_seconds()
    print(f"pair trigger lag {lag_s * 1000:.1f} ms; first stills {first_still_gap * 1000:.1f} ms apart")

    # Joined for exports: B's event names A's; A knows its trigger went out.
    assert b_event.tags["pair"]["event_id"] == a_event.event_id
    assert b_event.tags["pair"]["started_by"] == "partner" and b_event.tags["pair"]["partner"] == "cam-a"
    # A's trigger time travels to the millisecond (cut, not rounded): the tag may be up to 1 ms more.
    assert lag_s * 1000 - 0.1 <= b_event.tags["pair"]["lag_ms"] <= lag_s * 1000 + 1.1
    assert a_event.tags["pair"] == {"partner": "cam-b", "started_by": "self", "sent": True}
    # B's PIR never fired, yet its burst followed A's: A took max_burst (3) stills; B keeps going while
    # A's burst runs, so it takes more than its first still. Its last one races A's end notice (due
    # a millisecond or two after A's, under load it can come after the notice), hence 2 or 3.
    assert len(a_event.stills) == 3 and 2 <= len(b_event.stills) <= 3
    assert pair.a.addons.get(PairedCamera).counts["received"] == 0
    assert pair.b.addons.get(PairedCamera).counts["received"] == 1

    ends = {
        m.json()["unit"]: m.json()["data"]
        for m in inbox.unique()
        if m.topic.endswith("/capture") and m.json()["data"]["phase"] == "end"
    }
    assert ends["cam-b"]["tags"]["pair"]["event_id"] == ends["cam-a"]["event_id"]
    assert ends["cam-b"]["trigger"] == "pair"
    # The sidecars carry the join too.
    b_sidecar = json.loads(
        (Path(pair.b.store.root) / b_event.stills[0].file).with_suffix(".json").read_text()
    )
    assert b_sidecar["extra"]["pair"]["event_id"] == a_event.event_id


def test_after_a_broker_restart_the_pair_still_works_and_nothing_is_queued_while_away(
    broker, tmp_path
) -> None:
    pair = Pair(tmp_path, broker)
    pair.start()
    try:
        _probe_subscriptions(broker, pair)
        broker.stop()
        _wait(lambda: not pair.a.relay.connected and not pair.b.relay.connected, what="both units offline")
        pair.a.trigger()  # the broker is away: the trigger is not kept for later
        _wait(lambda: pair.a.completed, what="A's event while offline")
        a_done = time.monotonic()
        broker.start()
        _wait(lambda: pair.a.relay.connected and pair.b.relay.connected, timeout=30, what="both back")
        _probe_subscriptions(broker, pair)  # the relay renewed the subscription on reconnect
        time.sleep(0.3)
        assert not pair.b.completed  # the trigger from the outage never arrived late
        # A rests retrigger_interval_s (0.5 s) after its own event and turns any trigger away then,
        # a partner's included; a fast reconnect must not land B's trigger inside that rest.
        time.sleep(max(0.0, a_done + 0.8 - time.monotonic()))
        pair.animal_at("cam-b", events={"cam-a": 2, "cam-b": 1})  # now the other way round
        time.sleep(0.3)
    finally:
        pair.stop()
    offline, paired = pair.a.completed
    assert offline.tags["pair"] == {"partner": "cam-b", "started_by": "self", "sent": False}
    assert pair.a.addons.get(PairedCamera).counts["not_sent_start"] == 1
    (b_event,) = pair.b.completed
    assert (b_event.trigger, paired.trigger) == ("pir", "pair")
    assert paired.tags["pair"]["event_id"] == b_event.event_id
    assert (paired.trigger_time - b_event.trigger_time).total_seconds() <= 0.100


def test_both_pirs_at_once_join_the_two_events_without_a_third(broker, tmp_path) -> None:
    pair = Pair(tmp_path, broker)
    pair.start()
    try:
        _probe_subscriptions(broker, pair)
        pair.animal_at("cam-a", "cam-b", events={"cam-a": 1, "cam-b": 1})
        time.sleep(1.0)
    finally:
        pair.stop()
    (a_event,) = pair.a.completed
    (b_event,) = pair.b.completed
    assert (a_event.trigger, b_event.trigger) == ("pir", "pir")
    assert a_event.tags["pair"]["event_id"] == b_event.event_id
    assert b_event.tags["pair"]["event_id"] == a_event.event_id
