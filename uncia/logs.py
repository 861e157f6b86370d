"""Logging set-up for every `uncia` command: readable where a person reads it, parseable by journald.

Three output modes, chosen from where stderr goes:

journal
    The unit runs under systemd and stderr is connected to the journal (``JOURNAL_STREAM`` holds the
    ``device:inode`` of our stderr, see systemd.exec(5)). Each line starts with the syslog priority
    prefix of sd-daemon(3) (``<2>`` critical, ``<3>`` error, ``<4>`` warning, ``<6>`` info,
    ``<7>`` debug), so ``journalctl -p warning`` works; no timestamp (journald adds one)::

        <4>uncia.gateway.lora0: modem did not answer AT, resetting unit=gw-01 attempt=2

terminal
    Local time with milliseconds, the level in colour, the logger name without its ``uncia.``
    prefix. Colour is off when ``NO_COLOR`` is set (https://no-color.org) or ``TERM=dumb``::

        14:02:11.347 WARN  gateway.lora0: modem did not answer AT, resetting unit=gw-01 attempt=2

file or pipe
    ISO 8601 local time with the UTC offset, no colour::

        2026-11-25T14:02:11.347+08:00 WARNING uncia.gateway.lora0: modem did not answer ...

Structured detail: log with ``extra={"unit": "cam-01", "collar": "collar-7"}`` and every extra key is
appended as `` key=value`` (values with spaces or quotes are double-quoted, JSON style), so the same
line reads well and greps well in all three modes. Tracebacks follow their record, indented.

Following one unit (``units=("cam-01",)``): a record is shown when it *names* one of the units -- its
``unit`` extra (or any other extra) equals the unit id, its logger name has the id as a dotted part
(``uncia.lora.cam-01``), or its message contains the id as a whole word (``cam-01`` but not
``cam-010``) -- whatever its level. Records about other units are hidden, warnings included: a person
watching one camera wants that camera's lines. Station-wide ERROR and CRITICAL records are never hidden
(a lost broker or a full disk stops the watched unit's data too, and must not go unseen).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, TextIO

# Every attribute a plain LogRecord carries; anything else on a record came in through `extra=`.
_RECORD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}

# sd-daemon(3) SD_CRIT .. SD_DEBUG; journald reads them as the entry's PRIORITY.
_SYSLOG_PREFIX = (
    (logging.CRITICAL, "<2>"),
    (logging.ERROR, "<3>"),
    (logging.WARNING, "<4>"),
    (logging.INFO, "<6>"),
)

_SHORT_LEVEL = {"DEBUG": "DEBUG", "INFO": "INFO", "WARNING": "WARN", "ERROR": "ERROR", "CRITICAL": "CRIT"}
_LEVEL_COLOUR = {  # SGR parameters
    "DEBUG": "2",  # dim
    "INFO": "32",  # green
    "WARNING": "1;33",  # bold yellow
    "ERROR": "1;31",  # bold red
    "CRITICAL": "1;37;41",  # bold white on red
}
_DIM = "2"

# Marks the handler this module installed, so a second call replaces it instead of adding another.
_OURS = "_uncia_logs_handler"


def setup_logging(
    *,
    verbose: bool = False,
    units: Sequence[str] = (),
    stream: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Send log records to `stream` (stderr) in the mode that suits where it goes (see module doc).

    `verbose` shows DEBUG records; `units` keeps only records naming one of those unit ids (plus
    every ERROR/CRITICAL). Calling again replaces the handler installed before; handlers others put
    on the root logger (pytest's capture, for one) are left alone.
    """
    stream = sys.stderr if stream is None else stream
    environ = os.environ if environ is None else environ
    mode = output_mode(stream, environ)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        {
            "journal": JournalFormatter(),
            "terminal": TerminalFormatter(colour=wants_colour(environ)),
            "plain": PlainFormatter(),
        }[mode]
    )
    if units:
        handler.addFilter(UnitFilter(units))
    setattr(handler, _OURS, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _OURS, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)


def output_mode(stream: TextIO, environ: Mapping[str, str]) -> str:
    """``"journal"``, ``"terminal"`` or ``"plain"`` for records written to `stream`."""
    if connected_to_journal(stream, environ):
        return "journal"
    try:
        if stream.isatty():
            return "terminal"
    except (AttributeError, ValueError):  # closed or not a real stream
        pass
    return "plain"


def connected_to_journal(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """True when `stream` is the journal stream systemd announced in ``JOURNAL_STREAM``.

    systemd.exec(5): the variable holds ``device:inode`` (decimal) of the stdout/stderr it connected
    to the journal; a child whose stderr was redirected elsewhere inherits the variable, so the
    numbers must be compared with the stream's own.
    """
    value = environ.get("JOURNAL_STREAM", "")
    try:
        device, inode = (int(part) for part in value.split(":"))
        info = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (info.st_dev, info.st_ino) == (device, inode)


def wants_colour(environ: Mapping[str, str]) -> bool:
    return not environ.get("NO_COLOR") and environ.get("TERM") != "dumb"


def extras(record: logging.LogRecord) -> dict[str, Any]:
    """The structured detail passed to the log call with ``extra=``."""
    return {k: v for k, v in record.__dict__.items() if k not in _RECORD_ATTRS and not k.startswith("_")}


def format_extras(record: logging.LogRecord) -> str:
    """`` key=value`` for every extra, values quoted when they would split or confuse a grep."""
    return "".join(f" {key}={_value(value)}" for key, value in extras(record).items())


def _value(value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    if text == "" or any(c.isspace() or c in "\"'=" for c in text):
        return json.dumps(text, ensure_ascii=False)
    return text


def short_name(name: str) -> str:
    """``uncia.gateway.lora0`` -> ``gateway.lora0``: every logger of ours starts with ``uncia.``."""
    return name.removeprefix("uncia.") if name != "uncia" else name


class _Formatter(logging.Formatter):
    """The message, its extras, then any traceback/stack on following lines."""

    def body(self, record: logging.LogRecord) -> str:
        return record.getMessage() + format_extras(record)

    def trailer(self, record: logging.LogRecord) -> list[str]:
        lines: list[str] = []
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            lines += record.exc_text.splitlines()
        if record.stack_info:
            lines += self.formatStack(record.stack_info).splitlines()
        return ["    " + line for line in lines]


class JournalFormatter(_Formatter):
    """``<N>logger: message key=value``; every continuation line carries the prefix too, otherwise
    journald files a traceback's lines as separate entries at the default (info) priority."""

    def format(self, record: logging.LogRecord) -> str:
        prefix = next((p for level, p in _SYSLOG_PREFIX if record.levelno >= level), "<7>")
        lines = f"{record.name}: {self.body(record)}".splitlines() or [""]
        lines += self.trailer(record)
        return "\n".join(prefix + line for line in lines)


class TerminalFormatter(_Formatter):
    """``HH:MM:SS.mmm LEVEL name: message key=value``, in colour unless `colour` is False.

    Hand-written rather than rich's RichHandler: that handler wraps and pads each record to the
    window width and puts the time in a column of its own, which breaks copy-paste and grep of a
    line; a staff member tailing a gateway wants one record per line.
    """

    def __init__(self, *, colour: bool = True) -> None:
        super().__init__()
        self.colour = colour

    def _paint(self, sgr: str, text: str) -> str:
        return f"\x1b[{sgr}m{text}\x1b[0m" if self.colour else text

    def format(self, record: logging.LogRecord) -> str:
        clock = datetime.fromtimestamp(record.created).strftime("%H:%M:%S.") + f"{int(record.msecs):03d}"
        level = _SHORT_LEVEL.get(record.levelname, record.levelname).ljust(5)
        level = self._paint(_LEVEL_COLOUR.get(record.levelname, "0"), level)
        text = record.getMessage()
        if record.levelno >= logging.WARNING:
            text = self._paint(_LEVEL_COLOUR["WARNING" if record.levelno < logging.ERROR else "ERROR"], text)
        tail = format_extras(record)
        line = f"{self._paint(_DIM, clock)} {level} {self._paint('36', short_name(record.name))}: {text}" + (
            self._paint(_DIM, tail) if tail else ""
        )
        return "\n".join([line, *self.trailer(record)])


class PlainFormatter(_Formatter):
    """``2026-11-25T14:02:11.347+08:00 WARNING logger: message key=value`` for files and pipes."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created).astimezone().isoformat(timespec="milliseconds")
        line = f"{when} {record.levelname:<7} {record.name}: {self.body(record)}"
        return "\n".join([line, *self.trailer(record)])


class UnitFilter(logging.Filter):
    """Keep records that name one of `units` (any level) and every ERROR/CRITICAL (see module doc)."""

    def __init__(self, units: Sequence[str]) -> None:
        super().__init__()
        self.units = frozenset(units)
        # Unit ids contain '-' and '_', so "word" here means: not touching a letter, digit, '-' or
        # '_' -- cam-01 matches "cam-01." and "uncia/helan/cam-01/...", never "cam-010".
        alternatives = "|".join(re.escape(u) for u in sorted(self.units, key=len, reverse=True))
        self._word = re.compile(rf"(?<![\w-])(?:{alternatives})(?![\w-])")

    def names_unit(self, record: logging.LogRecord) -> bool:
        for value in extras(record).values():
            if isinstance(value, str) and value in self.units:
                return True
            if isinstance(value, list | tuple | set | frozenset) and self.units.intersection(map(str, value)):
                return True
        if self.units.intersection(record.name.split(".")):
            return True
        return bool(self._word.search(record.getMessage()))

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or self.names_unit(record)
