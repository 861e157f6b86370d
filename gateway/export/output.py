"""How export files are written: fixed number formats, UTC times, whole files or nothing.

Determinism is the point: the same record gives the same bytes, so an export can be checked in,
diffed or checksummed. Numbers therefore go through `number` (fixed decimals, trailing zeros
dropped, no ``-0``), times through the formatters below, CSV through `write_csv` (``\\n`` line ends,
minimal quoting) and every file is written to a temporary name and renamed, so a crash or a full
disk never leaves a half file that looks complete.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.export.filters import ExportError

#: Called with the number of rows just handled (drives the CLI's progress bar).
Progress = Callable[[int], None]


def no_progress(_rows: int) -> None:
    return None


def number(value: float | int | None, places: int) -> str:
    """``value`` with at most `places` decimals, trailing zeros dropped; None → ``""``."""
    if value is None:
        return ""
    value = float(value)
    if not math.isfinite(value):
        return ""
    text = f"{value:.{places}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def movebank_time(seconds: float) -> str:
    """``yyyy-MM-dd HH:mm:ss.SSS`` in UTC, Movebank's own timestamp format."""
    stamp = datetime.fromtimestamp(round(seconds, 3), UTC)
    return stamp.strftime("%Y-%m-%d %H:%M:%S.") + f"{stamp.microsecond // 1000:03d}"


def iso_seconds(seconds: float, *, up: bool = False) -> str:
    """``2026-11-25T21:14:00Z``: whole seconds (down, or `up` for ends of intervals)."""
    whole = math.ceil(seconds) if up else math.floor(seconds)
    return datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_millis(seconds: float) -> str:
    """``2026-11-25T21:14:00.250Z`` (GeoJSON properties, like every uncia message)."""
    stamp = datetime.fromtimestamp(round(seconds, 3), UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def iso_date(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d")


def csv_text(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def json_text(document: Any) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def write_file(path: Path, text: str) -> Path:
    """Write `text` (UTF-8) to `path` whole: a temporary file in the same folder, then a rename."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        raise ExportError(f"cannot write {path} ({exc.strerror or exc}): is the folder writable?") from exc
    return path


def out_dir(path: Path) -> Path:
    """`path` as an export folder (created); an existing file there is an error."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ExportError(f"{path} is a file: give a folder for this export (--out DIR)")
    return path
