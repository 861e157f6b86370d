"""Cost of the durable path alone: envelope → outbox (SQLite WAL, synchronous=FULL) → relay → PUBACK.

    python -m bench.outbox_relay [--quick] [--messages N] [--rate R] [--window W]

A producer thread enqueues N ready-made fixes (as the NMEA pipeline would hand them over) as fast as
it can, or at R per second; the relay publishes them at QoS 1 to a throw-away Mosquitto on loopback.
The run ends when the broker has acknowledged every message and its outbox row is deleted. CPU is
this process's user+system time over the run (all threads: producer, committer, relay); the broker
is a separate process and not counted. The baseline, in the same run against the same broker, is
paho alone without any outbox: `publish` + `wait_for_publish()` per message (nothing durable).
Prints its figures, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt

from edge.broker import start_broker
from edge.config import MqttSettings
from edge.fix import ClockSource, Fix
from edge.messages import Envelope
from edge.outbox import Outbox, Priority
from edge.relay import Relay
from edge.topics import Topics


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def envelope_cost(envelope: Envelope, fix: Fix, n: int = 50_000) -> float:
    start = time.process_time()
    for seq in range(n):
        envelope.fix("gps0", seq, fix, received="2026-11-25T12:00:01.300Z", clock=ClockSource.GPS)
    return (time.process_time() - start) / n * 1e6


def paho_alone(host: str, port: int, topic: str, payloads: list[bytes]) -> tuple[float, float]:
    """Baseline: publish each payload at QoS 1 and wait for its PUBACK; returns (wall s, CPU s)."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-paho-alone")
    client.connect(host, port)
    client.loop_start()
    cpu0, wall0 = cpu(), time.perf_counter()
    for payload in payloads:
        client.publish(topic, payload, qos=1).wait_for_publish()
    wall, used = time.perf_counter() - wall0, cpu() - cpu0
    client.loop_stop()
    client.disconnect()
    return wall, used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run")
    parser.add_argument("--messages", type=int, default=None, help="messages (default 100000, quick 10000)")
    parser.add_argument(
        "--rate", type=float, default=0.0, help="messages per second (0: as fast as possible)"
    )
    parser.add_argument("--window", type=int, default=200)
    args = parser.parse_args()

    topics = Topics("helan", "gw-01")
    envelope = Envelope("gw-01")
    fix = Fix(
        time=datetime(2026, 11, 25, 12, 0, 1, 250000, tzinfo=UTC),
        lat=38.811234,
        lon=105.954321,
        quality=1,
        alt=2310.4,
        speed=0.31,
        course=212.5,
        sats=9,
        hdop=0.9,
        mode=3,
        talker="GP",
    )
    topic = topics.fix("gps0")
    n = args.messages or (10_000 if args.quick else 100_000)
    with tempfile.TemporaryDirectory() as tmp, start_broker() as broker:
        outbox = Outbox(Path(tmp) / "outbox.sqlite3")
        relay = Relay(
            outbox,
            MqttSettings(host=broker.host, port=broker.port, window=args.window),
            topics,
            health_interval=3600,
        )
        relay.start()
        while not relay.connected:
            time.sleep(0.01)

        def payload(seq: int) -> bytes:
            return envelope.fix("gps0", seq, fix, received="2026-11-25T12:00:01.300Z", clock=ClockSource.GPS)

        def produce() -> None:
            start = time.perf_counter()
            for i in range(n):
                outbox.enqueue("gps0", topic, payload, priority=Priority.FIX)
                if args.rate and i % 100 == 0:
                    ahead = start + i / args.rate - time.perf_counter()
                    if ahead > 0:
                        time.sleep(ahead)

        cpu0, wall0 = cpu(), time.perf_counter()
        producer = threading.Thread(target=produce)
        producer.start()
        while outbox.stats()["acked"] < n:
            time.sleep(0.005)
        wall, used = time.perf_counter() - wall0, cpu() - cpu0
        producer.join()
        relay.stop(2)
        outbox.close()
        env_us = envelope_cost(envelope, fix)
        n_base = max(1_000, n // 5)
        base_payloads = [payload(seq) for seq in range(1, n_base + 1)]
        base_wall, base_cpu = paho_alone(broker.host, broker.port, topic, base_payloads)
        print(
            f"outbox+relay: {n:,} messages, {n / wall:,.0f} msg/s, {used / n * 1e6:.1f} CPU-µs/msg (durable)"
        )
        print(
            f"paho alone  : {n_base:,} messages, {n_base / base_wall:,.0f} msg/s, "
            f"{base_cpu / n_base * 1e6:.1f} CPU-µs/msg (publish + wait_for_publish, nothing on disk)"
        )
        print(f"envelope    : {env_us:.1f} CPU-µs/msg of the above")
        print(
            json.dumps(
                {
                    "broker": broker.kind,
                    "messages": n,
                    "rate_asked": args.rate or None,
                    "msg_per_s": round(n / wall),
                    "cpu_us_per_msg": round(used / n * 1e6, 1),
                    "envelope_us_per_msg": round(env_us, 1),
                    "outbox_relay_us_per_msg": round(used / n * 1e6 - env_us, 1),
                    "cpu_share": round(used / wall, 2),
                    "baseline_messages": n_base,
                    "baseline_msg_per_s": round(n_base / base_wall),
                    "baseline_cpu_us_per_msg": round(base_cpu / n_base * 1e6, 1),
                }
            )
        )


if __name__ == "__main__":
    main()
