"""`uncia gateway`: run the base-station gateway from a unit config file."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from edge.config import ConfigError, UnitConfig, load_config
from uncia.cli import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK

log = logging.getLogger("uncia.gateway")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "gateway",
        help="run the base-station gateway (serial collars/GPS -> station MQTT broker)",
        description=(
            "Read every [[serial]] source in the config, turn NMEA into fixes, commit each to the "
            "durable outbox and relay it to the station's MQTT broker. Runs until SIGTERM or Ctrl-C."
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
    try:
        gateway = Gateway(config)
        gateway.start()
    except ConfigError as exc:
        print(f"uncia gateway: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as exc:
        print(f"uncia gateway: cannot start: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    try:
        gateway.wait(stop)
    finally:
        gateway.stop()
    return EXIT_OK
