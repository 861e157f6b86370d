"""`uncia selftest`: check every device and service a unit's config names, one line per check."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge.config import ConfigError, load_config
from uncia.cli import EXIT_CONFIG


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "selftest",
        help="check that every configured device answers and the broker accepts the unit",
        description=(
            "Run with the agent stopped (systemctl stop uncia-gateway / uncia-camera). Checks each "
            "[[serial]] GPS (checksummed NMEA, a fix), each [[lora]] modem (AT -> OK, settings read back), "
            "a camera unit's PIR and IR-lamp pins and a test picture, free space for the outbox and "
            "images, the clock's source, and the broker with the unit's own credentials. One "
            "PASS/WARN/FAIL line per check with what to fix. Exit code: 0 nothing failed, 1 a check "
            "failed, 3 the config file is wrong."
        ),
    )
    parser.add_argument(
        "-c", "--config", required=True, type=Path, help="the unit's TOML file (as used by the agent)"
    )
    parser.add_argument(
        "--gps-wait", type=float, default=5.0, metavar="S", help="seconds to listen to each GPS (default 5)"
    )
    parser.add_argument(
        "--broker-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds to wait for the broker (default 10)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edge.selftest import SelfTest, exit_code, summary

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"FAIL  config: {exc}", flush=True)
        return EXIT_CONFIG
    test = SelfTest(config, gps_wait_s=args.gps_wait, broker_timeout_s=args.broker_timeout)
    results = []
    for result in test.checks():
        results.append(result)
        print(result.line(), flush=True)  # as they come: a GPS check takes seconds
    print(summary(config.unit.id, config.unit.site, results), flush=True)
    sys.stdout.flush()
    return exit_code(results)
