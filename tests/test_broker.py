"""Throw-away brokers: start on a free port, stop, restart on the same port, kill, clear errors."""

from __future__ import annotations

import socket
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge.broker import BrokerError, find_mosquitto, free_port, start_broker

needs_mosquitto = pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto is not installed")


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def publish_one(port: int, topic: str, payload: bytes, retain: bool = False) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


@needs_mosquitto
def test_mosquitto_stop_start_kill_on_the_same_port(collect) -> None:
    with start_broker() as broker:
        assert broker.kind == "mosquitto" and broker.port != 1883 and accepts(broker.port)
        port = broker.port
        broker.stop()
        assert not broker.running and not accepts(port)
        broker.start()
        assert broker.port == port and accepts(port)
        inbox = collect(broker, "uncia/#")
        publish_one(port, "uncia/helan/gw-01/gps0/event/fix", b"hello")
        assert inbox.wait_for(1)[0].payload == b"hello"
        broker.kill()
        assert not accepts(port)
    data_dirs = list(Path(broker.data_dir).parent.glob(Path(broker.data_dir).name))
    assert data_dirs == [], "the generated data directory is removed"


@needs_mosquitto
def test_persistence_keeps_retained_messages_across_a_restart(tmp_path: Path, collect) -> None:
    with start_broker(persistence=True, data_dir=tmp_path) as broker:
        publish_one(broker.port, "uncia/helan/gw-01/unit/state/availability", b"online", retain=True)
        broker.stop()
        broker.start()
        assert collect(broker, "uncia/#").wait_for(1)[0].payload == b"online"
    assert (tmp_path / "mosquitto.conf").exists()


def test_embedded_amqtt_broker_round_trip(collect) -> None:
    with start_broker(kind="amqtt") as broker:
        assert broker.kind == "amqtt"
        inbox = collect(broker, "uncia/#")
        publish_one(broker.port, "uncia/helan/gw-01/gps0/event/fix", b"from amqtt")
        assert inbox.wait_for(1)[0].payload == b"from amqtt"
    assert not accepts(broker.port)


def test_amqtt_cannot_persist() -> None:
    with pytest.raises(BrokerError, match="install mosquitto"):
        start_broker(kind="amqtt", persistence=True)


@needs_mosquitto
def test_a_taken_port_is_a_clear_error() -> None:
    port = free_port()
    with socket.create_server(("127.0.0.1", port)), pytest.raises(BrokerError, match=f"port {port}") as info:
        start_broker(port)
    assert "in use" in str(info.value).lower()
