"""`uncia gateway`: run the base-station gateway from a unit config file."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from edge.config import ConfigError, UnitConfig, load_config
from edge.watchdog import SystemdNotifier, supervised
from uncia.cli import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK

log = logging.getLogger("uncia.gateway")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "gateway",
        help="run the base-station gateway (collars by serial and LoRa -> broker; the station hub and page)",
        description=(
            "Read every [[serial]] source and [[lora]] modem in the config, turn what they send into fixes, "
            "commit each to the durable outbox and relay it to the station's MQTT broker. With a [station] "
            "section also run the station hub (record, alerts, commands, staff web page) and any [uplink]. "
            "Runs until SIGTERM or Ctrl-C."
        ),
    )
    parser.add_argument(
        "-c",
        "--config",
        required=True,
        type=Path,
        help="the unit's TOML file (see deploy/gateway.example.toml)",
    )
    parser.add_argument("--check", action="store_true", help="only check the config file and exit")
    parser.set_defaults(func=run)


def describe(config: UnitConfig) -> str:
    lines = [
        f"unit {config.unit.id} at site {config.unit.site} ({config.unit.role})",
        f"broker {config.mqtt.host}:{config.mqtt.port}" + (" with TLS" if config.mqtt.tls else ""),
        f"outbox {config.outbox.path} (at most {config.outbox.max_messages:,} messages)",
    ]
    lines += [f"serial {s.name}: {s.port} at {s.baudrate} baud" for s in config.serial]
    if not config.serial:
        lines.append("no [[serial]] sources configured: the gateway will only relay")
    return "\n".join(lines)


def prepare_outbox_dir(config: UnitConfig) -> None:
    folder = Path(config.outbox.path).parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            "outbox.path", config.outbox.path, f"a path in a writable folder ({exc.strerror}: {folder})"
        ) from exc


def status_line(gateway: Any) -> str:
    """The short state `systemctl status uncia-gateway` shows (refreshed at each watchdog ping)."""
    broker = "broker connected" if gateway.relay.connected else "broker unreachable"
    return (
        f"relaying: {broker}, {gateway.outbox.depth:,} waiting in the outbox; "
        f"{len(gateway.workers)} serial, {len(gateway.lora_workers)} LoRa"
    )


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
        if args.check:
            print(describe(config))
            print("config OK")
            return EXIT_OK
        prepare_outbox_dir(config)
    except ConfigError as exc:
        print(f"uncia gateway: {exc}", file=sys.stderr)
        return EXIT_CONFIG

    from gateway.agent import Gateway  # imported late: `--check` must work without the full stack

    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    notifier = SystemdNotifier()  # does nothing unless run by systemd as a Type=notify unit
    notifier.status("starting")
    try:
        gateway = Gateway(config)
        gateway.start()
    except ConfigError as exc:
        print(f"uncia gateway: {exc}", file=sys.stderr)
        notifier.status(f"cannot start: {exc}")
        return EXIT_CONFIG
    except OSError as exc:
        print(f"uncia gateway: cannot start: {exc}", file=sys.stderr)
        notifier.status(f"cannot start: {exc}")
        return EXIT_FAILURE
    return serve(gateway, stop, notifier)


def serve(gateway: Any, stop: threading.Event, notifier: SystemdNotifier) -> int:
    """Run a started `gateway` until `stop` is set: READY=1 to systemd, watchdog pings while every
    worker is alive, STOPPING=1 before the gateway stops."""
    try:
        with supervised(
            notifier,
            gateway.alive,
            status=lambda: status_line(gateway),
            stopping="stopping: draining the outbox to the broker",
            log=log,
        ):
            gateway.wait(stop)
    finally:
        gateway.stop()
        notifier.close()
    return EXIT_OK
