"""The relay against real brokers: delivery, order, outages, availability, subscriptions, health.

What is guaranteed: at least once, in order, to the broker. A message is deleted from the outbox
only after the broker's PUBACK; after an outage the un-acknowledged window is sent again (same
envelope id), so a receiver that drops duplicates by id sees every message once, in order.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from edge.broker import Broker, free_port, start_broker
from edge.config import MqttSettings
from edge.fix import ClockSource
from edge.messages import Envelope, decode
from edge.outbox import Outbox
from edge.relay import Relay
from edge.topics import Topics

TOPICS = Topics("helan", "gw-01")
ENVELOPE = Envelope("gw-01")
REPO = Path(__file__).resolve().parents[1]


def wait(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.01)


def enqueue(outbox: Outbox, n: int, source: str = "gps0") -> None:
    def payload(seq: int) -> bytes:
        return ENVELOPE.encode(
            source,
            seq,
            "fix",
            {"n": seq},
            time="2026-11-25T12:00:00.000Z",
            received="2026-11-25T12:00:00.010Z",
            clock=ClockSource.GPS,
        )

    for _ in range(n):
        outbox.enqueue(source, TOPICS.fix(source), payload)


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "outbox.sqlite3", commit_interval=0.01)
    yield box
    box.close()


@pytest.fixture
def relays() -> Iterator[Callable[..., Relay]]:
    """``relays(outbox, port, **kw)`` → a started Relay with fast reconnects; stopped after the test."""
    made: list[Relay] = []

    def make(
        box: Outbox,
        port: int,
        *,
        window: int = 50,
        start: bool = True,
        mqtt: dict | None = None,
        **kw: object,
    ) -> Relay:
        kw.setdefault("reconnect_min", 0.05)
        kw.setdefault("reconnect_max", 0.3)
        settings = MqttSettings(host="127.0.0.1", port=port, keepalive=5, window=window, **(mqtt or {}))
        relay = Relay(box, settings, TOPICS, **kw)
        made.append(relay)
        if start:
            relay.start()
        return relay

    yield make
    for relay in made:
        relay.stop(1.0)


def fix_ids(messages: list) -> list[tuple[str, int]]:
    return [(m.json()["source"], m.json()["seq"]) for m in messages]


def test_every_message_arrives_once_in_order(broker: Broker, collect, outbox: Outbox, relays) -> None:
    inbox = collect(broker, TOPICS.all_fixes())
    relay = relays(outbox, broker.port)
    enqueue(outbox, 700, "gps0")
    enqueue(outbox, 300, "gps1")
    got = inbox.wait_for(1000, unique=True)
    assert [s for s in fix_ids(got) if s[0] == "gps0"] == [("gps0", i) for i in range(1, 701)]
    assert fix_ids(got) == [("gps0", i) for i in range(1, 701)] + [("gps1", i) for i in range(1, 301)]
    assert all(m.qos == 1 and not m.retain for m in got)
    wait(lambda: outbox.depth == 0, what="outbox to drain")
    assert relay.stop(2.0) is True
    assert relay.counters["acked"] >= 1000 and relay.counters["resent"] == 0


def test_availability_online_then_offline_on_clean_stop(
    broker: Broker, collect, outbox: Outbox, relays
) -> None:
    relay = relays(outbox, broker.port)
    wait(lambda: relay.connected, what="connection")
    late = collect(broker, TOPICS.availability())  # joins after the fact: sees the retained state
    assert late.wait_for(1)[0] == late.messages[0] and late.messages[0].payload == b"online"
    assert late.messages[0].retain
    relay.stop(2.0)
    late.wait_until(lambda ms: ms[-1].payload == b"offline")
    after = collect(broker, TOPICS.availability())
    assert after.wait_for(1)[0].payload == b"offline" and after.messages[0].retain


CHILD = r"""
import sys, time
from edge.config import MqttSettings
from edge.outbox import Outbox
from edge.relay import Relay
from edge.topics import Topics
box = Outbox(sys.argv[1])
relay = Relay(box, MqttSettings(host="127.0.0.1", port=int(sys.argv[2]), keepalive=5), Topics("helan", "gw-01"))
relay.start()
while not relay.connected:
    time.sleep(0.01)
print("up", flush=True)
time.sleep(60)
"""


def test_last_will_offline_when_the_relay_process_is_killed(broker: Broker, collect, tmp_path: Path) -> None:
    inbox = collect(broker, TOPICS.availability())
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path / "o.sqlite3"), str(broker.port)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert child.stdout is not None
    try:
        assert child.stdout.readline().strip() == "up"
        inbox.wait_until(lambda ms: [m.payload for m in ms] == [b"online"])
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    inbox.wait_until(lambda ms: ms[-1].payload == b"offline")
    assert collect(broker, TOPICS.availability()).wait_for(1)[0].payload == b"offline"


def test_broker_restart_mid_stream_loses_nothing(tmp_path: Path, collect, outbox: Outbox, relays) -> None:
    with start_broker(persistence=True, data_dir=tmp_path / "broker") as broker:
        inbox = collect(broker, TOPICS.all_fixes(), session="test-restart-collector")
        relay = relays(outbox, broker.port, window=100)
        total = 3000
        done = threading.Event()

        def produce() -> None:
            for _ in range(total // 50):
                enqueue(outbox, 50)
                time.sleep(0.005)
            done.set()

        producer = threading.Thread(target=produce)
        producer.start()
        inbox.wait_for(800, unique=True)
        broker.stop()  # SIGTERM: Mosquitto saves the collector's queue
        wait(lambda: not relay.connected, what="relay to notice the broker is gone")
        published = relay.counters["published"]
        time.sleep(0.3)
        assert relay.counters["published"] == published, "nothing is published while disconnected"
        broker.start()
        producer.join()
        got = inbox.wait_for(total, timeout=30, unique=True)
        assert fix_ids(got) == [("gps0", i) for i in range(1, total + 1)]
        copies = Counter(m.json()["id"] for m in inbox.messages)
        assert max(copies.values()) <= 2
        assert sum(copies.values()) - total <= 100, "duplicates stay within the in-flight window"
        wait(lambda: outbox.depth == 0, what="outbox to drain")
        assert relay.counters["disconnects"] == 1 and relay.counters["connects"] == 2


def test_broker_unreachable_at_start_then_appears(
    tmp_path: Path, collect, outbox: Outbox, relays, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    enqueue(outbox, 1234)
    outbox.commit()
    with caplog.at_level(logging.INFO, logger="uncia.relay"):
        relay = relays(outbox, port)
        wait(lambda: relay.counters["connect_failures"] >= 2, what="retries")
        assert not relay.connected
        with start_broker(port) as broker:
            inbox = collect(broker, TOPICS.all_fixes())
            inbox.wait_for(1234, unique=True, timeout=20)
    lines = [r.getMessage() for r in caplog.records]
    assert any(
        f"broker unreachable at 127.0.0.1:{port} (Connection refused); 1,234 messages waiting in the outbox; retrying"
        in line
        for line in lines
    ), lines
    assert any(line.startswith(f"connected to broker 127.0.0.1:{port}") for line in lines), lines


def test_resubscribes_after_reconnect_and_survives_a_failing_handler(
    broker: Broker, collect, outbox: Outbox, relays
) -> None:
    calls: list[bytes] = []

    def handler(topic: str, payload: bytes) -> None:
        calls.append(payload)
        if len(calls) == 1:
            raise RuntimeError("a handler bug must not stop the relay")

    relay = relays(outbox, broker.port)
    relay.subscribe(TOPICS.command("ping"), handler)
    sender = mqtt.Client(CallbackAPIVersion.VERSION2)
    sender.reconnect_delay_set(0.05, 0.3)
    sender.connect(broker.host, broker.port)
    sender.loop_start()
    try:

        def send_until(count: int) -> None:
            deadline = time.monotonic() + 10
            while len(calls) < count:
                assert time.monotonic() < deadline, f"handler called {len(calls)} times, expected {count}"
                sender.publish(TOPICS.command("ping"), f"ping{count}", qos=1)
                time.sleep(0.1)

        send_until(1)
        send_until(2)
        assert relay.counters["callback_errors"] == 1
        broker.stop()
        broker.start()
        wait(lambda: relay.counters["connects"] == 2, what="reconnect")
        send_until(3)
    finally:
        sender.loop_stop()
        sender.disconnect()
    inbox = collect(broker, TOPICS.all_fixes())
    enqueue(outbox, 5)
    inbox.wait_for(5)


def test_health_is_published_retained_with_counts(broker: Broker, collect, outbox: Outbox, relays) -> None:
    extra_calls = Counter()

    def extra() -> dict:
        extra_calls["n"] += 1
        if extra_calls["n"] == 1:
            raise ValueError("agent counters broken")
        return {"sources": {"gps0": {"fixes": 7}}}

    relays(outbox, broker.port, health_interval=0.2, health_extra=extra)
    enqueue(outbox, 10)
    inbox = collect(broker, TOPICS.health())
    inbox.wait_for(2)
    first, second = (decode(m.payload) for m in inbox.messages[:2])
    assert first.type == "health" and first.source == "unit" and second.seq == first.seq + 1
    assert "agent counters broken" in json.dumps(first.data)
    body = second.data
    assert body["agent"] == {"sources": {"gps0": {"fixes": 7}}}
    assert body["rss_bytes"] > 1_000_000 and body["uptime_s"] > 0 and body["connected"] is True
    assert {"enqueued", "committed", "published", "acked", "shed", "waiting"} <= set(body["outbox"])
    assert {"connects", "published", "acked"} <= set(body["relay"])
    assert collect(broker, TOPICS.health()).wait_for(1)[0].retain


def test_password_refused_then_accepted(
    tmp_path: Path, outbox: Outbox, relays, caplog: pytest.LogCaptureFixture
) -> None:
    wrong, right = tmp_path / "wrong", tmp_path / "right"
    wrong.write_text("not-it\n")
    right.write_text("s3cret\n")
    enqueue(outbox, 10)
    with (
        start_broker(users={"gw-01": "s3cret"}) as broker,
        caplog.at_level(logging.ERROR, logger="uncia.relay"),
    ):
        refused = relays(outbox, broker.port, mqtt={"username": "gw-01", "password_file": str(wrong)})
        wait(lambda: refused.counters["connect_failures"] >= 2, what="refusals")
        assert not refused.connected and outbox.depth == 10
        refused.stop(1.0)
        accepted = relays(outbox, broker.port, mqtt={"username": "gw-01", "password_file": str(right)})
        wait(lambda: outbox.depth == 0, what="delivery with the right password")
        assert accepted.connected
    lines = [r.getMessage() for r in caplog.records]
    assert any(
        "refused the connection: Not authorized — check mqtt.username and mqtt.password_file" in line
        for line in lines
    ), lines


def test_tls_with_ca_and_client_certificate(outbox: Outbox, relays) -> None:
    enqueue(outbox, 10)
    with start_broker(tls=True) as broker:
        settings = {
            "tls": True,
            "ca_file": str(broker.ca_file),
            "cert_file": str(broker.client_cert),
            "key_file": str(broker.client_key),
        }
        relay = relays(outbox, broker.port, mqtt=settings)
        wait(lambda: outbox.depth == 0, what="delivery over TLS")
        assert relay.connected and relay.counters["acked"] >= 10


# -- the paho traps, against a scripted broker on a real socket (as paho's own tests do) -------------
class ScriptedBroker:
    """A minimal MQTT 3.1.1 server that records every PUBLISH and can withhold PUBACKs."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.ack = True
        self.connections: list[list[tuple[str, bytes, bool]]] = []
        self._current: socket.socket | None = None
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self._current = conn
            record: list[tuple[str, bytes, bool]] = []
            self.connections.append(record)
            threading.Thread(target=self._serve, args=(conn, record), daemon=True).start()

    @staticmethod
    def _read(conn: socket.socket, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                raise ConnectionError
            data += chunk
        return data

    def _serve(self, conn: socket.socket, record: list) -> None:
        try:
            while True:
                head = self._read(conn, 1)[0]
                length, mult = 0, 1
                while True:
                    byte = self._read(conn, 1)[0]
                    length += (byte & 127) * mult
                    mult *= 128
                    if not byte & 128:
                        break
                body = self._read(conn, length)
                kind = head & 0xF0
                if kind == 0x10:
                    conn.sendall(b"\x20\x02\x00\x00")
                elif kind == 0x30:
                    size = int.from_bytes(body[:2], "big")
                    topic, rest = body[2 : 2 + size].decode(), body[2 + size :]
                    pid, payload = rest[:2], rest[2:]
                    record.append((topic, payload, bool(head & 0x08)))
                    if self.ack:
                        conn.sendall(b"\x40\x02" + pid)
                elif kind == 0x80:
                    conn.sendall(b"\x90\x03" + body[:2] + b"\x01")
                elif kind == 0xC0:
                    conn.sendall(b"\xd0\x00")
                elif kind == 0xE0:
                    return
        except (ConnectionError, OSError):
            return
        finally:
            conn.close()

    def drop(self) -> None:
        """Cut the current connection, as a dying link would."""
        if self._current is not None:
            self._current.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def scripted() -> Iterator[ScriptedBroker]:
    server = ScriptedBroker()
    yield server
    server.close()


def test_reconnect_resends_the_unacked_window_once_not_twice(
    scripted: ScriptedBroker, outbox: Outbox, relays
) -> None:
    """paho re-sends its own in-flight messages after a reconnect; the relay re-sends from the outbox.

    Both together would deliver every un-acknowledged message twice. The relay empties paho's queue
    before reconnecting, so the second connection carries each message exactly once, oldest first.
    """
    scripted.ack = False
    relay = relays(outbox, scripted.port, window=30)
    enqueue(outbox, 20)
    wait(lambda: len(scripted.connections) == 1 and len(scripted.connections[0]) == 21, what="first sends")
    assert outbox.depth == 20, "nothing is deleted without a PUBACK"
    scripted.ack = True
    scripted.drop()
    wait(lambda: relay.counters["connects"] == 2 and outbox.depth == 0, what="re-send after reconnect")
    second = scripted.connections[1]
    assert second[0][:2] == (TOPICS.availability(), b"online")
    seqs = [json.loads(p)["seq"] for t, p, _ in second if t == TOPICS.fix("gps0")]
    assert seqs == list(range(1, 21))
    assert relay.counters["resent"] == 20


def test_paho_queues_a_publish_made_while_disconnected(scripted: ScriptedBroker) -> None:
    """The trap itself: MQTT_ERR_NO_CONN does not mean 'not sent', it means 'sent later'."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="trap")
    client.connect("127.0.0.1", scripted.port)
    client.loop_start()
    wait(client.is_connected, what="paho to connect")
    client.disconnect()
    client.loop_stop()
    info = client.publish("uncia/helan/gw-01/gps0/event/fix", b"x", qos=1)
    assert info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN
    client.reconnect()
    client.loop_start()
    try:
        wait(lambda: any(p == b"x" for t, p, _ in scripted.connections[-1]), what="paho to send it anyway")
    finally:
        client.disconnect()
        client.loop_stop()


def test_a_new_relay_resends_what_an_old_one_left_unacknowledged(
    scripted: ScriptedBroker, outbox: Outbox, relays
) -> None:
    scripted.ack = False
    first = relays(outbox, scripted.port)
    enqueue(outbox, 5)
    wait(lambda: first.counters["published"] == 5, what="first relay to publish")
    first.stop(0.2)
    scripted.ack = True
    relays(outbox, scripted.port)
    wait(lambda: outbox.depth == 0, what="second relay to deliver")
    seqs = [json.loads(p)["seq"] for t, p, _ in scripted.connections[-1] if t == TOPICS.fix("gps0")]
    assert seqs == [1, 2, 3, 4, 5]
