"""`uncia demo`: a whole simulated field site on this machine (what `make demo` runs).

A broker, the base station's gateway with its hub and staff web page, LoRa collars heard by an
emulated modem, a GPS collar on a serial line, and two paired camera units with animals passing
(`simulators.field_site`). Prints where to look, then one short line per notable thing the station
sees (from its live feed), until Ctrl-C or ``--duration``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import queue
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from simulators.field_site import FieldSite, FieldSiteError, PortInUseError
from simulators.site_layout import COLLAR_SCHEDULE_S
from uncia.argtypes import positive_float
from uncia.cli import EXIT_FAILURE, EXIT_OK

FIX_EVERY_S = 30.0  # one fix line per collar at most this often (the first fix of each at once)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "demo",
        help="run a whole simulated field site: broker, gateway and web page, collars, cameras",
        description=(
            "Start a simulated field site on this machine: a broker (unless --broker is given), the "
            "base station's gateway with its station record, alerts and staff web page, six GPS collars "
            "on an emulated LoRa modem, a GPS collar on a serial line, and two paired camera units with "
            "animals passing. Prints where to look, then what the station sees. Ctrl-C to stop."
        ),
    )
    parser.add_argument(
        "--duration", metavar="S", type=positive_float, help="stop after S seconds (default: Ctrl-C)"
    )
    parser.add_argument(
        "--broker", metavar="HOST:PORT", help="use this broker instead of starting one (e.g. 127.0.0.1:1883)"
    )
    parser.add_argument(
        "--workdir",
        metavar="DIR",
        type=Path,
        help="keep everything here (default: a temporary folder, removed)",
    )
    parser.add_argument(
        "--seed", type=int, default=7, help="the animals' tracks, the radio and the trail (7)"
    )
    parser.add_argument(
        "--web-port", metavar="PORT", type=_port, default=8080, help="staff web page port (8080)"
    )
    parser.add_argument(
        "--speedup",
        metavar="X",
        type=positive_float,
        default=180.0,
        help="time-lapse of the collars: 180 turns their 15-minute fixes into one every 5 s",
    )
    parser.set_defaults(func=run)


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (1-65535)")
    return int(text)


class Narrator:
    """Turns the station's live events into one short line each, or None for the ones not worth a line:
    the first fix of each collar and then one every `fix_every_s`, every capture when it ends, every
    alert raised or cleared, a unit when its state changes."""

    def __init__(
        self,
        web_url: str | None,
        *,
        fix_every_s: float = FIX_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.web_url = (web_url or "").rstrip("/")
        self.fix_every_s = fix_every_s
        self.clock = clock
        self.counts = dict.fromkeys(("fix", "capture", "alert", "unit"), 0)
        self._fix_shown: dict[str, float] = {}
        self._ended: set[str] = set()
        self._unit_state: dict[str, str] = {}

    def line(self, event: dict[str, Any]) -> str | None:
        kind = event.get("type")
        if kind in self.counts:
            self.counts[kind] += 1
        text = {"fix": self._fix, "capture": self._capture, "alert": self._alert, "unit": self._unit}.get(
            str(kind), lambda _e: None
        )(event)
        return None if text is None else f"{time.strftime('%H:%M:%S')}  {text}"

    def _fix(self, event: dict[str, Any]) -> str | None:
        track, fix = event["track"], event["fix"]
        now = self.clock()
        shown = self._fix_shown.get(track)
        if shown is not None and now - shown < self.fix_every_s:
            return None
        self._fix_shown[track] = now
        lat, lon = fix["lat"], fix["lon"]
        parts = [
            f"fix      {track:<11}",
            f"{abs(lat):.5f}°{'N' if lat >= 0 else 'S'} {abs(lon):.5f}°{'E' if lon >= 0 else 'W'}",
        ]
        if fix.get("alt") is not None:
            parts.append(f"{fix['alt']:5.0f} m")
        if fix.get("battery") is not None:
            parts.append(f"battery {fix['battery']:.0f} %")
        via = fix.get("via", "")
        if fix.get("rssi") is not None:
            parts.append(f"via {via} {fix['rssi']:.0f} dBm, SNR {fix.get('snr', 0):g} dB")
        else:
            parts.append(f"via {via} (serial, {fix.get('sats') or '?'} satellites)")
        return "  ".join(parts)

    def _capture(self, event: dict[str, Any]) -> str | None:
        cap = event["capture"]
        if cap.get("end") is None or cap["event_id"] in self._ended:
            return None
        self._ended.add(cap["event_id"])
        trigger = {"pair": "the partner camera's trigger", "pir": "its PIR"}.get(
            cap.get("trigger"), cap.get("trigger")
        )
        light = "night, IR lamp" if cap.get("night") else "day"
        where = f"{self.web_url}{cap['thumbnail']}" if self.web_url else cap["event_id"]
        return f"capture  {cap['unit']:<11}  {cap.get('stills') or 0} stills ({light}) on {trigger}  thumbnail {where}"

    def _alert(self, event: dict[str, Any]) -> str:
        alert = event["alert"]
        if event.get("raised"):
            return f"ALERT    {alert['kind']} ({alert['severity']}): {alert['message']}"
        return f"cleared  {alert['kind']} {alert['subject']}"

    def _unit(self, event: dict[str, Any]) -> str | None:
        unit = event["unit"]
        state = unit.get("state") or "?"
        if self._unit_state.get(unit["unit"]) == state:
            return None
        self._unit_state[unit["unit"]] = state
        reasons = "; ".join(unit.get("reasons") or [])
        role = f" ({unit['role']})" if unit.get("role") else ""
        return f"unit     {unit['unit']:<11}  {state}{role}" + (f": {reasons}" if reasons else "")


class Printer:
    """Prints the narrator's lines from its own thread: the hub's thread only queues events."""

    def __init__(self, narrator: Narrator, out: TextIO) -> None:
        self.narrator = narrator
        self.out = out
        self._queue: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="uncia-demo-printer", daemon=True)

    def offer(self, event: dict[str, Any]) -> None:
        self._queue.put(event)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(5.0)

    def _run(self) -> None:
        while (event := self._queue.get()) is not None:
            try:
                text = self.narrator.line(event)
            except (KeyError, TypeError, ValueError) as exc:  # a view changed shape: say so, go on
                text = f"(an event the demo cannot show: {type(exc).__name__} {exc})"
            if text is not None:
                print(text, file=self.out, flush=True)


def header(site: FieldSite, workdir: Path, kept: bool) -> str:
    web = site.web_url
    host, port = site.broker_host, site.broker_port
    every = COLLAR_SCHEDULE_S / site.speedup
    lines = [
        f"uncia demo: a simulated field site in the Helan Mountains, time-lapse x{site.speedup:g}",
        f"  web page   {web}" if web else "  web page   (not in this checkout yet: see uncia status below)",
        f"  status     uncia status --url {web} --watch"
        if web
        else f"  status     uncia status -c {site.config_paths['gateway']}",
        f"  broker     {host}:{port} ({site.broker_description})",
        f"  messages   mosquitto_sub -h {host} -p {port} -t 'uncia/#' -v",
        f"  workdir    {workdir} ({'kept' if kept else 'removed at the end'}; configs, station record, images, demo.log)",
        f"  collars    {_span(site.collar_names)} on LoRa, heard by an emulated REYAX modem on {site.lora_port.name}",
        f"             collar-f01 wired to the gateway: NMEA at 1 Hz on {site.gps_port.name} (ptys in the workdir)",
        f"  cameras    {', '.join(c.unit_id for c in site.cameras)}: paired on one trail, an animal every 20-40 s",
        f"  time       collars fix every 15 min of animal time = every {every:g} s here; alert limits alike"
        " (deploy/demo/gateway.toml)",
        "Ctrl-C to stop.",
        "",
    ]
    return "\n".join(lines)


def _span(names: list[str]) -> str:
    return ", ".join(names) if len(names) < 3 else f"{names[0]} ... {names[-1]} ({len(names)})"


def run(args: argparse.Namespace) -> int:
    out = sys.stdout
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with contextlib.ExitStack() as stack:
            kept = args.workdir is not None
            workdir = args.workdir or Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="uncia-demo-"))
            )
            workdir = workdir.resolve()
            workdir.mkdir(parents=True, exist_ok=True)
            _log_to_file(stack, workdir / "demo.log", verbose=args.verbose)
            try:
                site = FieldSite(
                    workdir, seed=args.seed, broker=args.broker, web_port=args.web_port, speedup=args.speedup
                )
            except FieldSiteError as exc:
                print(f"uncia demo: {exc}", file=sys.stderr)
                return EXIT_FAILURE
            printer = Printer(Narrator(None), out)
            site.listen(printer.offer)
            began = time.monotonic()
            try:
                site.start()
            except PortInUseError as exc:
                print(f"uncia demo: {exc}, e.g. uncia demo --web-port {exc.port + 1}", file=sys.stderr)
                return EXIT_FAILURE
            except FieldSiteError as exc:
                print(f"uncia demo: {exc}", file=sys.stderr)
                return EXIT_FAILURE
            try:
                printer.narrator.web_url = (site.web_url or "").rstrip("/")
                print(header(site, workdir, kept), file=out, flush=True)
                printer.start()
                stop.wait(args.duration)
            finally:
                print("stopping: cameras, collars, gateway, broker ...", file=out, flush=True)
                site.stop()
                printer.stop()
            elapsed = time.monotonic() - began
            t = site.tally()
            print(
                f"after {elapsed:.0f} s: {t.get('fixes', 0)} fixes from {t.get('tracks', 0)} collars"
                f" ({t.get('lora_fixes', 0)} by LoRa), {t.get('captures', 0)} captures with"
                f" {t.get('thumbnails', 0)} thumbnails, {t.get('alerts', 0)} alerts"
                f" ({t.get('active_alerts', 0)} still active) in the station record",
                file=out,
                flush=True,
            )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return EXIT_OK


def _log_to_file(stack: contextlib.ExitStack, path: Path, *, verbose: bool) -> None:
    """The units' logs go to `path`; the terminal keeps only errors (unless -v), so the demo's own
    lines stay readable."""
    root = logging.getLogger()
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.addHandler(handler)
    stack.callback(handler.close)
    stack.callback(root.removeHandler, handler)
    if verbose:
        return
    for other in root.handlers:
        if other is not handler:
            level = other.level
            other.setLevel(max(level, logging.ERROR))
            stack.callback(other.setLevel, level)
