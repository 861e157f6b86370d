"""Unit commands (ping, config) round-trip through a real broker with correlation ids."""

from __future__ import annotations

import json
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge.config import config_hash, parse_config
from edge.topics import Topics
from gateway.agent import Gateway

SITE, UNIT = "helan", "gw-cmd"
TOPICS = Topics(SITE, UNIT)


def _gateway(broker, tmp_path: Path) -> Gateway:
    config = parse_config(
        {
            "unit": {"id": UNIT, "site": SITE},
            "mqtt": {"host": broker.host, "port": broker.port},
            "outbox": {"path": str(tmp_path / "outbox.sqlite3")},
            "health": {"interval": 3600},
        }
    )
    return Gateway(config)


def _publish(broker, topic: str, payload: bytes) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.connect(broker.host, broker.port)
    client.loop_start()
    client.publish(topic, payload, qos=1).wait_for_publish(10)
    client.disconnect()
    client.loop_stop()


def test_ping_and_config_answer_with_the_request_id(broker, collect, tmp_path):
    gateway = _gateway(broker, tmp_path)
    responses = collect(broker, f"{TOPICS.base}/unit/command/+/response")
    availability = collect(broker, TOPICS.availability())
    gateway.start()
    try:
        availability.wait_until(lambda ms: any(m.payload == b"online" for m in ms))
        _publish(broker, TOPICS.command("ping"), b'{"id":"req-1"}')
        _publish(broker, TOPICS.command("ping"), b'{"id":"req-1"}')  # QoS 1 duplicate: answered once
        _publish(broker, TOPICS.command("config"), b'{"id":"req-2"}')
        _publish(broker, TOPICS.command("config"), b"not json")
        _publish(broker, TOPICS.command("config"), b'{"no":"id"}')
        got = responses.wait_for(4, timeout=20)
    finally:
        gateway.stop()
    bodies = [json.loads(m.payload)["data"] for m in got]
    by_id = {b["id"]: b for b in bodies if b["id"]}
    ping = by_id["req-1"]
    assert ping["status"] == "ok" and ping["message"] == "pong"
    assert ping["config_hash"] == config_hash(gateway.config) and ping["role"] == "gateway"
    assert "ping" in ping["commands"] and ping["software"]
    config = by_id["req-2"]
    assert config["status"] == "ok" and config["config"]["unit"]["id"] == UNIT
    refused = [b for b in bodies if b["status"] == "bad_request"]
    assert len(refused) == 2 and all(b["message"] for b in refused)
    assert sum(1 for b in bodies if b["id"] == "req-1") == 1
