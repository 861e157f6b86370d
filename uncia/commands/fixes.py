"""`uncia fixes SOURCE`: see what a GPS receiver or collar is saying, fix by fix.

The technician's tool at the unit: point it at the receiver's serial port (or a recording) and it
prints every fix the gateway would relay, one JSON object per line on stdout, then a summary on
stderr of what was accepted, dropped (and why) and ignored. It decodes with the same `FixDecoder`
as the gateway, so what it shows is what the field unit does.

    uncia fixes /dev/uncia-gps0 --baud 38400 --count 10
    uncia fixes socket://192.168.4.1:2000 --duration 60
    uncia fixes recording.nmea --min-quality 2 > fixes.jsonl
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import stat
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, TextIO

from edge.decoder import DROP_REASONS, FixDecoder
from uncia.argtypes import positive_float, positive_int
from uncia.cli import EXIT_FAILURE, EXIT_OK

log = logging.getLogger("uncia.fixes")

_FILE_CHUNK = 64 * 1024


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "fixes",
        help="print the fixes a GPS receiver (port, URL or recording) is giving",
        description="Decode NMEA from SOURCE and print each fix as a JSON line on stdout; at the end "
        "(end of file, --count, --duration or Ctrl-C) print on stderr what was accepted, dropped and "
        "why, and ignored.",
    )
    parser.add_argument(
        "source",
        metavar="SOURCE",
        help="a recording (file), a serial device (/dev/ttyUSB0) or a pyserial URL (socket://host:port)",
    )
    parser.add_argument("--baud", type=positive_int, default=9600, help="serial baud rate (9600)")
    parser.add_argument(
        "--min-quality",
        metavar="Q",
        type=int,
        default=1,
        help="drop fixes whose GGA quality code is below Q (1 GPS, 2 DGPS, 4 RTK; default 1)",
    )
    parser.add_argument("--max-hdop", metavar="H", type=positive_float, help="drop fixes with HDOP above H")
    parser.add_argument("--count", metavar="N", type=positive_int, help="stop after N fixes")
    parser.add_argument("--duration", metavar="S", type=positive_float, help="stop after S seconds")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    source: str = args.source
    is_url = "://" in source
    mode = 0
    if not is_url:
        try:
            mode = os.stat(source).st_mode
        except OSError as exc:
            return _fail(f"{source}: {exc.strerror} (no such recording or serial device?)")
        if stat.S_ISDIR(mode):
            return _fail(f"{source}: is a directory, not a recording or serial device")
        if not os.access(source, os.R_OK):
            return _fail(f"{source}: permission denied (serial ports need the dialout group)")
    live = is_url or stat.S_ISCHR(mode)
    decoder = FixDecoder(
        min_quality=args.min_quality,
        max_hdop=args.max_hdop,
        # A live receiver is talking now, so the host's date is a fair guess for a GGA-only one;
        # a recording may be years old: without RMC/ZDA its fixes are better dropped than misdated.
        date_hint=(lambda: datetime.now(UTC).date()) if live else None,
    )
    printer = _Printer(sys.stdout, limit=args.count, flush_each=live)
    try:
        chunks = _serial_chunks(args) if live else _file_chunks(source)
        for chunk in chunks:
            # An empty chunk is a quiet spell on the port: the receiver's burst is over.
            fixes = decoder.feed(chunk) if chunk else decoder.idle()
            if not printer.show(fixes):
                break
        else:
            printer.show(decoder.flush())
    except _SourceFailed as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        printer.show(decoder.flush())
    except BrokenPipeError:  # `uncia fixes ... | head`: the reader has seen enough
        _silence_stdout()
    _summary(source, decoder, printer.shown, sys.stderr)
    return EXIT_OK


class _SourceFailed(Exception):
    pass


class _Printer:
    """Writes fixes as JSON lines until ``limit``; says when to stop."""

    def __init__(self, out: TextIO, *, limit: int | None, flush_each: bool) -> None:
        self.out = out
        self.limit = limit
        self.flush_each = flush_each
        self.shown = 0

    def show(self, fixes: list) -> bool:
        for fix in fixes:
            if self.limit is not None and self.shown >= self.limit:
                return False
            self.out.write(json.dumps(fix.to_dict()) + "\n")
            self.shown += 1
        if fixes and self.flush_each:
            self.out.flush()
        return self.limit is None or self.shown < self.limit


def _file_chunks(path: str) -> Iterator[bytes]:
    # A recording is read as fast as it goes; --duration only matters for live sources.
    try:
        with open(path, "rb") as recording:
            while chunk := recording.read(_FILE_CHUNK):
                yield chunk
    except OSError as exc:
        raise _SourceFailed(f"{path}: {exc.strerror or exc}") from exc


def _serial_chunks(args: argparse.Namespace) -> Iterator[bytes]:
    # Imported here: reading a recording needs no serial stack.
    from edge.serial_source import SerialSource, SourceError

    try:
        source = SerialSource(args.source, baudrate=args.baud, name="gps")
    except SourceError as exc:
        raise _SourceFailed(str(exc)) from exc
    stop = threading.Event()
    timer = None
    if args.duration is not None:

        def time_up() -> None:
            stop.set()
            source.close()  # wakes a blocked read at once

        timer = threading.Timer(args.duration, time_up)
        timer.daemon = True
        timer.start()
    try:
        yield from source.read_chunks(stop)
    except SourceError as exc:
        raise _SourceFailed(str(exc)) from exc
    finally:
        if timer is not None:
            timer.cancel()
        stop.set()
        source.close()


def _summary(source: str, decoder: FixDecoder, shown: int, out: TextIO) -> None:
    dropped = decoder.dropped
    lines = [f"uncia fixes {source}: {shown} fixes printed, {decoder.sentences_ok} sentences accepted"]
    if dropped:
        lines.append("dropped:")
        width = max(len(reason) for reason in dropped)
        for reason, n in sorted(dropped.items(), key=lambda item: (-item[1], item[0])):
            lines.append(f"  {reason:<{width}} {n:>7}  {DROP_REASONS.get(reason, '')}".rstrip())
    else:
        lines.append("dropped: nothing")
    if decoder.ignored:
        kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(decoder.ignored.items()))
        lines.append(f"ignored (no fix in them, not errors): {kinds}")
    out.write("\n".join(lines) + "\n")
    out.flush()


def _fail(message: str) -> int:
    print(f"uncia fixes: {message}", file=sys.stderr)
    return EXIT_FAILURE


def _silence_stdout() -> None:
    # Python would complain again when flushing stdout at exit; point it at /dev/null instead.
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    finally:
        os.close(devnull)
