"""`uncia status`: the station at a glance in a terminal -- alerts, units, collars, latest captures.

Reads the status the station's web page serves (``GET <url>/api/status``), or, on the gateway itself
with ``-c``, straight from the station record. Prints tables (plain text when piped), refreshes in
place with ``--watch``, or prints the JSON for scripts with ``--json``.

    uncia status                                   # the gateway on this machine (port 8080)
    uncia status --url http://10.0.0.2:8080 --watch
    uncia status -c /etc/uncia/gateway.toml --json | jq '.alerts[].message'
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sqlite3
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from edge.config import ConfigError, load_config
from uncia import __version__
from uncia.argtypes import positive_float
from uncia.cli import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK
from uncia.status_view import critical_alerts, render_status, status_text

DEFAULT_URL = "http://127.0.0.1:8080/"
DEFAULT_WATCH_S = 5.0
EXIT_CRITICAL = 4  # the status was read and at least one critical alert is active

EPILOG = f"""\
exit status:
  0  the station answered; no critical alert is active
  1  the station could not be reached or read
  2  usage error
  3  the config file given with -c is not valid
  {EXIT_CRITICAL}  the station answered and at least one critical alert is active
     (mortality, geofence, ...), so scripts and monitoring can act on it like a check;
     --watch ends with 0 on Ctrl-C
"""

Fetch = Callable[[], dict[str, Any]]


class StationUnreachable(Exception):
    """The status could not be read; the message says where from and what to check."""


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "status",
        help="show the station's alerts, units, collars and latest captures",
        description=(
            "Show the station at a glance: active alerts first, then every unit (online, last seen, "
            "battery, disk, version, clock), every collar (last fix, position, battery, radio) and the "
            "latest camera captures. Reads the station web page's /api/status (default "
            f"{DEFAULT_URL}) or, with -c on the gateway itself, the station record."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "-c",
        "--config",
        type=Path,
        help="the gateway's TOML file: read its station record directly (on the gateway machine)",
    )
    source.add_argument(
        "--url", help=f"the station's web page, e.g. http://10.0.0.2:8080 (default {DEFAULT_URL})"
    )
    parser.add_argument(
        "--watch",
        metavar="SECONDS",
        nargs="?",
        const=DEFAULT_WATCH_S,
        type=positive_float,
        help=f"refresh every SECONDS (default {DEFAULT_WATCH_S:g}) until Ctrl-C",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the status as JSON (indented on a terminal, one line per refresh otherwise)",
    )
    parser.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=positive_float,
        default=5.0,
        help="give up on an unanswered request after SECONDS (default 5)",
    )
    parser.set_defaults(func=run)


# ---- where the status comes from -----------------------------------------------------------------


def status_url(url: str) -> str:
    """``10.0.0.2:8080`` or ``http://10.0.0.2:8080/`` -> ``http://10.0.0.2:8080/api/status``."""
    url = url.strip()
    if "://" not in url:
        url = "http://" + url
    url = url.rstrip("/")
    return url if url.endswith("/api/status") else url + "/api/status"


def fetch_status(url: str, *, timeout: float = 5.0) -> dict[str, Any]:
    """The status dict from the station web page at `url`; `StationUnreachable` says why not."""
    target = status_url(url)
    where = target.removesuffix("api/status")
    request = urllib.request.Request(
        target, headers={"Accept": "application/json", "User-Agent": f"uncia-status/{__version__}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        hint = (
            "is this an uncia gateway with its web page on ([station] web = true)?"
            if exc.code == 404
            else "see the gateway's log (journalctl -u uncia-gateway)"
        )
        raise StationUnreachable(
            f"the station at {where} answered {exc.code} {exc.reason} for /api/status: {hint}"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        raise StationUnreachable(
            f"cannot reach the station at {where}: is `uncia gateway` running? ({_why(exc, timeout)})"
        ) from None
    try:
        status = json.loads(body)
    except ValueError as exc:
        raise StationUnreachable(
            f"the station at {where} answered, but not with status JSON ({exc})"
        ) from None
    if not isinstance(status, dict):
        raise StationUnreachable(f"the station at {where} answered, but not with a status object")
    return status


def _why(exc: BaseException, timeout: float) -> str:
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, TimeoutError | socket.timeout):
        return f"no answer within {timeout:g} s"
    if isinstance(reason, socket.gaierror):
        return "host name not found"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror.lower()
    return str(reason)


def record_status(config_path: Path) -> dict[str, Any]:
    """The status dict read from the station record named in the gateway config at `config_path`.

    Raises `ConfigError` for a bad config and `StationUnreachable` when the record cannot be read.
    """
    config = load_config(config_path)
    # Imported here: the record reader pulls in the gateway's station package, which a staff
    # laptop using --url does not need.
    try:
        from gateway.station.view import status_from_record
    except ImportError as exc:
        raise StationUnreachable(
            f"this installation cannot read the station record directly ({exc}); use --url instead"
        ) from None
    record = getattr(config.station, "record", "the station record")
    try:
        return status_from_record(config)
    except (OSError, sqlite3.Error) as exc:
        raise StationUnreachable(
            f"cannot read the station record {record}: {exc} (is this the gateway's config, on the gateway?)"
        ) from None


# ---- showing it ------------------------------------------------------------------------------------


def _file_width() -> int:
    """Columns for a file or pipe: $COLUMNS if set, else 140 so the wide tables stay unwrapped."""
    try:
        return max(40, int(os.environ.get("COLUMNS", "")))
    except ValueError:
        return 140


def print_once(status: dict[str, Any], out: TextIO, *, as_json: bool) -> None:
    if as_json:
        indent = 2 if out.isatty() else None
        out.write(json.dumps(status, indent=indent, ensure_ascii=False) + "\n")
    elif out.isatty():
        console = Console(file=out)
        console.print(render_status(status, width=console.width))
    else:
        out.write(status_text(status, width=_file_width()))
    out.flush()


def watch(
    fetch: Fetch,
    out: TextIO,
    *,
    interval: float,
    as_json: bool = False,
    stop: threading.Event | None = None,
    rounds: int | None = None,
    console: Console | None = None,
) -> int:
    """Show the status every `interval` seconds until Ctrl-C, `stop` is set or `rounds` are done.

    On a terminal the view is redrawn in place; to a file or pipe each refresh is appended (JSON:
    one line each). A failed read is reported and the watch goes on: the gateway may be restarting.
    """
    stop = stop or threading.Event()
    done = 0

    def next_round() -> bool:
        nonlocal done
        done += 1
        return not (rounds is not None and done >= rounds) and not stop.wait(interval)

    console = console or Console(file=out)
    try:
        if as_json or not console.is_terminal:
            while True:
                try:
                    status = fetch()
                    if as_json:
                        out.write(json.dumps(status, ensure_ascii=False) + "\n")
                        out.flush()
                    else:
                        print_once(status, out, as_json=False)
                        out.write("\n")
                except (StationUnreachable, ConfigError) as exc:
                    print(f"uncia status: {exc}", file=sys.stderr, flush=True)
                if not next_round():
                    return EXIT_OK
        return _watch_live(fetch, console, interval, next_round)
    except KeyboardInterrupt:
        return EXIT_OK


def _watch_live(fetch: Fetch, console: Console, interval: float, next_round: Callable[[], bool]) -> int:
    """Redraw the view full-screen, as watch(1) and top do (a long view is cut at the bottom, which
    is why alerts come first); on leaving, print the last view once so it stays in the scrollback."""
    view: Group | None = None
    last: dict[str, Any] | None = None
    try:
        with Live(console=console, auto_refresh=False, screen=True) as live:
            while True:
                problem = None
                try:
                    last = fetch()
                except (StationUnreachable, ConfigError) as exc:
                    problem = Text(f"{exc} -- still trying", style="bold red")
                view = _watch_view(last, problem, interval, console.width)
                live.update(view, refresh=True)
                if not next_round():
                    return EXIT_OK
    finally:
        if view is not None:
            console.print(view)


def _watch_view(status: dict[str, Any] | None, problem: Text | None, interval: float, width: int) -> Group:
    heading = Text(
        f"updated {datetime.now(UTC):%H:%M:%S} UTC · every {interval:g} s · Ctrl-C to stop", style="dim"
    )
    parts: list[Any] = [heading] + ([problem] if problem else [])
    if status is not None:
        parts.append(render_status(status, width=width))
    return Group(*parts)


def run(args: argparse.Namespace) -> int:
    if args.config is not None:
        config_path: Path = args.config

        def fetch() -> dict[str, Any]:
            return record_status(config_path)

    else:
        url = args.url or DEFAULT_URL

        def fetch() -> dict[str, Any]:
            return fetch_status(url, timeout=args.timeout)

    try:
        status = fetch()  # a wrong URL or config fails here, once, even with --watch
    except ConfigError as exc:
        print(f"uncia status: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except StationUnreachable as exc:
        print(f"uncia status: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    if args.watch is not None:
        pending = [status]

        def fetch_again() -> dict[str, Any]:
            return pending.pop() if pending else fetch()

        return watch(fetch_again, sys.stdout, interval=args.watch, as_json=args.json)
    print_once(status, sys.stdout, as_json=args.json)
    return EXIT_CRITICAL if critical_alerts(status) else EXIT_OK
