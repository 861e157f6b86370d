"""Cost of the durable path alone: envelope → outbox (SQLite WAL, synchronous=FULL) → relay → PUBACK.

    python -m bench.outbox_relay [--messages N] [--rate R] [--window W]

A producer thread enqueues N ready-made fixes (as the NMEA pipeline would hand them over) as fast as
it can, or at R per second; the relay publishes them at QoS 1 to a throw-away Mosquitto on loopback.
The run ends when the broker has acknowledged every message and its outbox row is deleted. CPU is
this process's user+system time over the run (all threads: producer, committer, relay); the broker
is a separate process and not counted. Prints one JSON line.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
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
    n = args.messages
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
                }
            )
        )


if __name__ == "__main__":
    main()
