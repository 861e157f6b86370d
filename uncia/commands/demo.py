"""`uncia demo`: the whole collar data path on one machine, for newcomers and for show.

A GPS collar simulator on a pseudo-terminal → the gateway (serial, NMEA, fixes, durable outbox, relay)
→ an MQTT broker (the one given with --broker, else one started for the demo) → a subscriber that
prints every fix as it arrives.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import random
import signal
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

import paho.mqtt.client as mqtt

from edge.broker import BrokerError, start_broker
from edge.config import parse_config
from edge.messages import MessageError, decode
from edge.topics import Topics
from simulators.gps import FaultPlan, GpsSimulator
from simulators.pty_port import PtyPort
from simulators.track import Track, random_start
from uncia.cli import EXIT_FAILURE, EXIT_OK

SITE, UNIT, SOURCE = "helan", "gw-demo", "collar-f01"


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "demo",
        help="run a gateway on a simulated GPS collar and show fixes reaching the broker",
        description=(
            "Start a GPS collar simulator on a pseudo-terminal, a broker (unless --broker is given), "
            "and the gateway; print each fix as it arrives at the broker. Ctrl-C to stop."
        ),
    )
    parser.add_argument("--duration", metavar="S", type=float, help="stop after S seconds (default: Ctrl-C)")
    parser.add_argument("--rate", metavar="HZ", type=float, default=1.0, help="GPS epochs per second (1)")
    parser.add_argument(
        "--broker", metavar="HOST:PORT", help="use this broker instead of starting one (e.g. 127.0.0.1:1883)"
    )
    parser.add_argument("--workdir", metavar="DIR", type=Path, help="keep the outbox and pty link here")
    parser.add_argument("--seed", type=int, default=7, help="the animal's track and the line noise")
    parser.set_defaults(func=run)


class FixPrinter:
    """A separate MQTT subscriber: prints each fix once (de-duplicated by message id)."""

    def __init__(self, host: str, port: int, topics: Topics, out: TextIO) -> None:
        self.out = out
        self.seen: set[str] = set()
        self.count = 0
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="uncia-demo-viewer")
        self.client.on_connect = lambda c, *_: c.subscribe(
            [(topics.all_fixes(), 1), (topics.availability(), 1)]
        )
        self.client.on_message = self._on_message
        self.client.connect_async(host, port)
        self.client.loop_start()

    def _on_message(self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        if message.topic.endswith("/availability"):
            print(f"  gateway is {message.payload.decode(errors='replace')}", file=self.out, flush=True)
            return
        try:
            msg = decode(message.payload)
        except MessageError as exc:
            print(f"  (unreadable message on {message.topic}: {exc})", file=self.out, flush=True)
            return
        with self._lock:
            if msg.id in self.seen:
                return
            self.seen.add(msg.id)
            self.count += 1
        fix = msg.fix()
        received = datetime.fromisoformat(msg.received.replace("Z", "+00:00"))
        latency_ms = (datetime.now(UTC) - received).total_seconds() * 1000
        parts = [
            f"{fix.time:%H:%M:%S}Z {msg.source} #{msg.seq:<4}",
            f"{abs(fix.lat):.6f}°{'N' if fix.lat >= 0 else 'S'} {abs(fix.lon):.6f}°{'E' if fix.lon >= 0 else 'W'}",
        ]
        if fix.alt is not None:
            parts.append(f"{fix.alt:5.0f} m")
        if fix.speed is not None:
            parts.append(f"{fix.speed * 3.6:4.1f} km/h")
        quality = f"quality {fix.quality}"
        if fix.sats is not None:
            quality += f", {fix.sats} sats"
        if fix.hdop is not None:
            quality += f", HDOP {fix.hdop:.1f}"
        parts.append(quality)
        parts.append(f"{latency_ms:.0f} ms after receipt")
        print("  " + "  ".join(parts), file=self.out, flush=True)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def moving_collar(pty: PtyPort, seed: int, rate_hz: float) -> GpsSimulator:
    """A collar on an animal that is on the move right now, so the demo shows a track at once.

    Collared animals start with a rest (they are collared asleep), which would show a newcomer the
    same position for an hour; the track is advanced to its first travel bout, and its clock set
    back by as much, so fix times are the real time.
    """

    def walk_to_first_travel(start_time: datetime) -> tuple[Track, float]:
        rng = random.Random(f"uncia-demo-{seed}")
        track = Track(rng, start=random_start(rng), start_time=start_time)
        skipped = 0.0
        while track.resting:
            track.advance(60.0)
            skipped += 60.0
        return track, skipped

    now = datetime.now(UTC)
    _, skipped = walk_to_first_travel(now)
    track, _ = walk_to_first_travel(now - timedelta(seconds=skipped))  # same draws, clock set back
    return GpsSimulator(
        pty,
        track=track,
        rng=random.Random(seed),
        profile="gn-multi",
        rate_hz=rate_hz,
        faults=FaultPlan(noise=0.01, bad_checksum=0.01),
    )


def run(args: argparse.Namespace) -> int:
    from gateway.agent import Gateway

    out = sys.stdout
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    logging.getLogger().setLevel(logging.WARNING if not args.verbose else logging.DEBUG)

    with contextlib.ExitStack() as stack:
        workdir = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="uncia-demo-")))
        workdir.mkdir(parents=True, exist_ok=True)
        if args.broker:
            host, _, port_text = args.broker.rpartition(":")
            host, port, broker_note = host or "127.0.0.1", int(port_text), "given with --broker"
        else:
            try:
                broker = stack.enter_context(start_broker(data_dir=workdir / "broker"))
            except BrokerError as exc:
                print(f"uncia demo: could not start a broker: {exc}", file=sys.stderr)
                return EXIT_FAILURE
            host, port, broker_note = broker.host, broker.port, f"{broker.kind}, started for this demo"

        pty = stack.enter_context(PtyPort(workdir / "collar-dock"))
        sim = moving_collar(pty, args.seed, args.rate)
        config = parse_config(
            {
                "unit": {"id": UNIT, "site": SITE},
                "mqtt": {"host": host, "port": port},
                "outbox": {"path": str(workdir / "outbox.sqlite3")},
                "serial": [{"name": SOURCE, "port": pty.path, "baudrate": 9600}],
                "health": {"interval": 30},
            }
        )
        topics = Topics(SITE, UNIT)
        print("uncia demo: a gateway reading a simulated GPS collar over a pseudo-terminal", file=out)
        print(f"  broker    {host}:{port} ({broker_note})", file=out)
        print(
            f"  collar    {pty.path} -> {pty.slave_name} (multi-constellation NMEA, {args.rate:g} Hz,",
            file=out,
        )
        print(
            "            1 % line noise and 1 % bad checksums, a snow leopard in the Helan Mountains)",
            file=out,
        )
        print(f"  outbox    {workdir / 'outbox.sqlite3'}", file=out)
        print(f"  watch     mosquitto_sub -h {host} -p {port} -t 'uncia/#' -v", file=out)
        print("fixes arriving at the broker (Ctrl-C to stop):", file=out, flush=True)

        printer = FixPrinter(host, port, topics, out)
        stack.callback(printer.close)
        gateway = Gateway(config)
        gateway.start()
        sim.start()
        started = time.monotonic()
        try:
            stop.wait(args.duration)
        finally:
            sim.stop()
            time.sleep(0.5)  # let the last epoch through
            gateway.stop()
            time.sleep(0.2)
        elapsed = time.monotonic() - started
        stats = gateway.health()["sources"][SOURCE]
        dropped = ", ".join(f"{k} {v}" for k, v in sorted(stats["dropped"].items())) or "nothing"
        print(
            f"after {elapsed:.0f} s: {stats['fixes']} fixes accepted by the gateway, "
            f"{printer.count} seen at the broker; dropped on the serial line: {dropped}",
            file=out,
        )
    return EXIT_OK
