"""`uncia uplink`: what the gateway's uplinks (EarthRanger, Iridium) have sent, what waits, what was refused.

Runs beside a running gateway (it reads and writes only the uplinks' state file, SQLite WAL):

    uncia uplink -c /etc/uncia/gateway.toml              status of each uplink
    uncia uplink -c /etc/uncia/gateway.toml parked       items EarthRanger refused, with its words
    uncia uplink -c /etc/uncia/gateway.toml requeue      send the parked items again (after fixing
                                                         what the server complained about)
    uncia uplink -c /etc/uncia/gateway.toml credits      Iridium credits and bytes per day
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from edge.config import ConfigError, load_config
from uncia.cli import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK

ACTIONS = ("status", "parked", "requeue", "credits")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "uplink",
        help="the gateway's uplinks: status, parked items, requeue, Iridium credits",
        description=__doc__.split("\n\n", 1)[0],
    )
    parser.add_argument("-c", "--config", required=True, type=Path, help="the gateway's TOML file")
    parser.add_argument("action", nargs="?", choices=ACTIONS, default="status")
    parser.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    parser.add_argument("--days", type=int, default=14, help="days of Iridium credits to show (14)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
        if config.uplink is None or config.station is None:
            print(
                f"uncia uplink: {args.config} has no [uplink] section: nothing is sent beyond the station",
                file=sys.stderr,
            )
            return EXIT_CONFIG
        from gateway.uplink.service import Uplinks  # late: `--help` needs none of it

        uplinks = Uplinks(config.uplink, config.station.record)
    except ConfigError as exc:
        print(f"uncia uplink: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        result = _act(uplinks, args.action, args.days)
    except Exception as exc:  # a locked or damaged state file: say which, do not trace back
        print(f"uncia uplink: cannot {args.action}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        for uplink in uplinks.running:
            uplink.state.close()
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
    else:
        print(_text(args.action, result))
    return EXIT_OK


def _act(uplinks: Any, action: str, days: int) -> dict[str, Any]:
    er, ir = uplinks.earthranger, uplinks.iridium
    if action == "status":
        return uplinks.status()
    if action == "parked":
        if er is None:
            return {"earthranger": None}
        return {
            "earthranger": [
                {"item": item, "kind": kind, "reason": reason}
                for item, kind, reason in er.state.parked("earthranger")
            ]
        }
    if action == "requeue":
        return {"earthranger_requeued": 0 if er is None else er.requeue_parked()}
    return {"iridium": None if ir is None else ir.credit_report(days)}


def _text(action: str, result: dict[str, Any]) -> str:
    if action == "status":
        lines = []
        for name, status in result.items():
            lines.append(f"{name}:")
            lines += [f"  {key}: {value}" for key, value in status.items() if key != "counters"]
        return "\n".join(lines) or "no uplink configured"
    if action == "parked":
        items = result.get("earthranger")
        if items is None:
            return "no EarthRanger uplink configured"
        if not items:
            return "nothing parked: EarthRanger took everything it was sent"
        return "\n".join(f"{i['kind']:<12} {i['item']}: {i['reason'] or '(no reason given)'}" for i in items)
    if action == "requeue":
        n = result["earthranger_requeued"]
        return f"{n} parked item(s) queued again; the running gateway sends them at its next pass"
    report = result.get("iridium")
    if report is None:
        return "no Iridium uplink configured"
    lines = ["day          credits  messages  bytes  from HQ"]
    lines += [
        f"{d['day']}  {d['credits']:>7}  {d['messages']:>8}  {d['bytes']:>5}  {d['mt_messages']:>7}"
        for d in report
    ]
    return "\n".join(lines)
