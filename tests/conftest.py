"""Shared fixtures: a real MQTT broker per test, and a subscriber that collects what arrives.

def test_something(broker, collect):
    inbox = collect(broker, "uncia/#")
    ...  # publish
    inbox.wait_for(10)
    assert [m.topic for m in inbox.messages] == [...]
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge.broker import Broker, start_broker


@pytest.fixture
def broker() -> Iterator[Broker]:
    """A fresh broker (Mosquitto, else amqtt) on a free 127.0.0.1 port, stopped after the test."""
    with start_broker() as running:
        yield running


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool
    qos: int

    def json(self) -> Any:
        return json.loads(self.payload)


class Collector:
    """A separate paho subscriber collecting every message on `topic_filter` in arrival order.

    `session` names a persistent session (clean_session=False): messages published while the
    collector or the broker was away are delivered when both are back.
    """

    def __init__(self, host: str, port: int, topic_filter: str, *, session: str | None = None, qos: int = 1):
        self.topic_filter = topic_filter
        self.messages: list[Received] = []
        self._unique: list[Received] = []
        self._seen: set[str] = set()
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=session or f"test-collector-{uuid.uuid4().hex[:8]}",
            clean_session=session is None,
        )
        self.client.on_connect = lambda c, *_: c.subscribe(topic_filter, qos)
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.on_socket_open = lambda c, u, sock: sock.setsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
        )
        self.client.reconnect_delay_set(0.05, 0.5)
        self.client.connect(host, port, keepalive=10)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise TimeoutError(f"collector could not subscribe to {topic_filter} on {host}:{port}")

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        received = Received(msg.topic, bytes(msg.payload), bool(msg.retain), msg.qos)
        try:
            key = received.json()["id"]
        except (ValueError, KeyError, TypeError):
            key = received.payload.hex()
        with self._cond:
            self.messages.append(received)
            if key not in self._seen:
                self._seen.add(key)
                self._unique.append(received)
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float = 10.0, *, unique: bool = False) -> list[Received]:
        """Wait until `count` messages (or `count` distinct envelope ids) arrived; return them."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                have = self._unique if unique else self.messages
                if len(have) >= count:
                    return list(have)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"got {len(have)} of {count} messages on {self.topic_filter}")
                self._cond.wait(left)

    def wait_until(self, predicate: Callable[[list[Received]], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(list(self.messages)):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"condition not met on {self.topic_filter}: {self.messages[-3:]}")
                self._cond.wait(left)

    def unique(self) -> list[Received]:
        """Messages de-duplicated by envelope ``id`` (first copy kept, arrival order)."""
        with self._cond:
            return list(self._unique)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def collect() -> Iterator[Callable[..., Collector]]:
    """``collect(broker, topic_filter, session=None)`` → a started `Collector`, closed after the test."""
    made: list[Collector] = []

    def make(target: Broker, topic_filter: str, **kw: Any) -> Collector:
        collector = Collector(target.host, target.port, topic_filter, **kw)
        made.append(collector)
        return collector

    yield make
    for collector in made:
        collector.close()
