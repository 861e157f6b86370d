"""The station at a glance, for `uncia status`: header, alerts, units, collars, latest captures.

Pure rendering of the status dict the station serves at ``/api/status`` (see
``gateway.station.view.status_from_record``) into rich renderables. Every field may be missing or
null -- a unit that never sent health, a collar without a fix -- and shows as ``-``.

Relative times ("12 s ago") count from the station's own ``station.now`` when the dict carries it,
so a laptop with a wrong clock still shows how stale each unit is as the station sees it. Absolute
times are shown in UTC, like the alert messages.

Colour is the terminal's business: rich writes plain text without escape codes when the console is
not a terminal (a pipe, a file), and the words carry the meaning anyway (``OFFLINE``, ``critical``).
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from edge.fix import QUALITY_NAMES

MAX_CAPTURES = 8

SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}
SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}
STATE_STYLE = {"ok": "green", "online": "green", "degraded": "yellow", "warning": "yellow"}


# ---- reading a JSON-like dict that may hold anything -------------------------------------------


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _rows(value: Any) -> list[dict[str, Any]]:
    return [row for row in value if isinstance(row, dict)] if isinstance(value, list) else []


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if value == value else None  # NaN is as good as missing


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 time (``Z`` or an offset; none means UTC) or epoch seconds, as aware UTC."""
    if isinstance(value, str) and value:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            return None
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    number = _num(value)
    if number is not None:
        try:
            return datetime.fromtimestamp(number, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    return None


def ago(then: datetime | None, now: datetime) -> str:
    """``12 s ago``, ``7 min ago``, ``3 h ago``, ``2 d ago``; ``in 5 s`` for a clock ahead; ``-``."""
    if then is None:
        return "-"
    seconds = (now - then).total_seconds()
    size = abs(seconds)
    if size < 90:
        amount = f"{size:.0f} s"
    elif size < 90 * 60:
        amount = f"{size / 60:.0f} min"
    elif size < 48 * 3600:
        amount = f"{size / 3600:.0f} h" if size >= 10 * 3600 else f"{size / 3600:.1f} h"
    else:
        amount = f"{size / 86400:.0f} d"
    return f"{amount} ago" if seconds >= 0 else f"in {amount}"


def utc_clock(moment: datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def reference_time(status: dict[str, Any], now: datetime | None = None) -> datetime:
    """`now` if given, else the station's ``station.now``, else this machine's clock."""
    if now is not None:
        return now if now.tzinfo else now.replace(tzinfo=UTC)
    return parse_time(_dict(status.get("station")).get("now")) or datetime.now(UTC)


# ---- summaries ----------------------------------------------------------------------------------


def alert_counts(status: dict[str, Any]) -> Counter[str]:
    """Active alerts by severity (``critical``, ``warning``, ...)."""
    return Counter(_text(a.get("severity")).lower() or "unknown" for a in _rows(status.get("alerts")))


def critical_alerts(status: dict[str, Any]) -> int:
    return alert_counts(status)["critical"]


def _unit_online(unit: dict[str, Any]) -> bool | None:
    online = unit.get("online")
    return online if isinstance(online, bool) else None


def _alerted(status: dict[str, Any]) -> dict[str, str]:
    """subject -> the most severe active alert's severity, to colour that unit or collar's name."""
    worst: dict[str, str] = {}
    for alert in _rows(status.get("alerts")):
        subject, severity = _text(alert.get("subject")), _text(alert.get("severity")).lower()
        if subject and SEVERITY_ORDER.get(severity, 9) < SEVERITY_ORDER.get(worst.get(subject, ""), 9):
            worst[subject] = severity
    return worst


# ---- the parts ----------------------------------------------------------------------------------


def header(status: dict[str, Any], now: datetime) -> Text:
    station = _dict(status.get("station"))
    units = _rows(status.get("units"))
    collars = _rows(status.get("collars"))
    online = sum(1 for u in units if _unit_online(u))
    heard = sum(
        1
        for c in collars
        if (t := parse_time(c.get("last_heard"))) is not None and now - t <= timedelta(hours=24)
    )
    counts = alert_counts(status)

    line = Text()
    line.append(_text(station.get("site")) or "?", style="bold")
    line.append(" · station ")
    line.append(_text(station.get("unit")) or "?", style="bold")
    line.append(f" · {utc_clock(now)}")
    line.append("\nunits ")
    line.append(f"{online}/{len(units)} online", style="green" if online == len(units) else "bold red")
    line.append(f" · collars {heard}/{len(collars)} heard in 24 h · alerts ")
    if not counts:
        line.append("none", style="green")
    for i, (severity, n) in enumerate(sorted(counts.items(), key=lambda kv: SEVERITY_ORDER.get(kv[0], 9))):
        line.append(", " if i else "")
        line.append(f"{n} {severity}", style=SEVERITY_STYLE.get(severity, ""))
    for name, bridge in sorted(_dict(station.get("bridges")).items()):
        bridge = _dict(bridge)
        line.append("\ncentral link ")
        if bridge.get("up"):
            line.append("up", style="green")
        else:
            line.append(f"DOWN since {_text(bridge.get('since'))}", style="bold red")
        line.append(f" ({name})", style="dim")
    for name, uplink in sorted(_dict(station.get("uplinks")).items()):
        line.append("\n")
        line.append_text(_uplink_line(name, _dict(uplink)))
    where = [f"web {station['web']}" if station.get("web") else "", _text(station.get("record"))]
    if any(where):
        line.append("\n" + " · ".join(w for w in where if w), style="dim")
    return line


def _uplink_line(name: str, uplink: dict[str, Any]) -> Text:
    """One line per uplink: EarthRanger's queue and failures, Iridium's credits today."""
    line = Text(f"uplink {name}: ")
    failing = uplink.get("consecutive_failures") or 0
    if name == "iridium":
        used, limit = uplink.get("credits_used_today"), uplink.get("credits_per_day")
        line.append(f"{_text(used) or '-'}/{_text(limit) or '-'} credits today")
        line.append(f" · last sent {_text(uplink.get('last_sent')) or 'never'}", style="dim")
    else:
        line.append(
            f"{_text(uplink.get('items_queued')) or 0} waiting, {_text(uplink.get('items_parked')) or 0} parked"
        )
        line.append(f" · last success {_text(uplink.get('last_success')) or 'never'}", style="dim")
    if failing:
        line.append(f" · FAILING x{failing}: {_text(uplink.get('last_error'))}", style="bold red")
    return line


@dataclass(frozen=True)
class Column:
    """One table column: its heading, how to fill it from a row, and whether narrow consoles drop it."""

    heading: str
    cell: Callable[[dict[str, Any]], RenderableType]
    justify: str = "left"
    wide_only: bool = False
    wrap: bool = False  # otherwise one line per row, cut with "…" if the console is too narrow


def _table(
    title: str,
    columns: list[Column],
    rows: list[dict[str, Any]],
    width: int | None,
    style_of: Callable[[dict[str, Any]], str | None] = lambda _row: None,
) -> Table:
    """All columns if they fit `width` (None: any width), else without the ``wide_only`` ones."""
    table = _build(title, columns, rows, style_of)
    if width is not None:
        console = Console(width=width, file=io.StringIO())
        if Measurement.get(console, console.options.update_width(10_000), table).maximum > width:
            table = _build(title, [c for c in columns if not c.wide_only], rows, style_of)
    return table


def _build(
    title: str,
    shown: list[Column],
    rows: list[dict[str, Any]],
    style_of: Callable[[dict[str, Any]], str | None],
) -> Table:
    table = Table(
        title=title,
        title_justify="left",
        title_style="bold",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        header_style="bold",
    )
    for column in shown:
        table.add_column(
            column.heading,
            justify=column.justify,  # type: ignore[arg-type]
            no_wrap=not column.wrap,
            overflow="fold" if column.wrap else "ellipsis",
        )
    for row in rows:
        table.add_row(*(c.cell(row) for c in shown), style=style_of(row))
    return table


def alerts_part(status: dict[str, Any], now: datetime) -> RenderableType:
    alerts = _rows(status.get("alerts"))
    if not alerts:
        return Text("ALERTS: no active alerts", style="green")

    def severity(alert: dict[str, Any]) -> str:
        return _text(alert.get("severity")).lower() or "-"

    alerts.sort(key=lambda a: (SEVERITY_ORDER.get(severity(a), 9), parse_time(a.get("since")) or now))
    columns = [
        Column("severity", severity),
        Column("alert", lambda a: _text(a.get("kind")) or "-"),
        Column("subject", lambda a: _text(a.get("subject")) or "-"),
        Column("since", lambda a: ago(parse_time(a.get("since")), now), "right"),
        Column("message", lambda a: _text(a.get("message")), wrap=True),
    ]
    return _table(f"ALERTS ({len(alerts)})", columns, alerts, None, lambda a: SEVERITY_STYLE.get(severity(a)))


def _state(unit: dict[str, Any]) -> Text:
    online = _unit_online(unit)
    if online is False:
        return Text("OFFLINE", "bold red")
    state = _text(unit.get("state")) or ("unknown" if online is None else "online")
    style = STATE_STYLE.get(state, "dim" if state == "unknown" else "red")
    reasons = unit.get("reasons") if isinstance(unit.get("reasons"), list) else []
    text = Text(state, style)
    if reasons:
        text.append(f" ({', '.join(str(r) for r in reasons)})")
    return text


def _battery(volts: Any, percent: Any) -> Text:
    v, p = _num(volts), _num(percent)
    parts = ([f"{p:.0f} %"] if p is not None else []) + ([f"{v:.2f} V"] if v is not None else [])
    style = "" if p is None else "bold red" if p <= 15 else "yellow" if p <= 30 else ""
    return Text(" ".join(parts) or "-", style)


def _disk_used(unit: dict[str, Any]) -> Text:
    used = _num(unit.get("disk_used_percent"))
    if used is None:
        return Text("-")
    return Text(f"{used:.0f} %", "bold red" if used >= 90 else "yellow" if used >= 80 else "")


def _megabytes(value: Any) -> str:
    mb = _num(value)
    return "-" if mb is None else f"{mb / 1024:.1f} GB" if mb >= 1024 else f"{mb:.0f} MB"


def _count(value: Any) -> str:
    number = _num(value)
    return "-" if number is None else f"{number:,.0f}"


def _name(name: str, alerted: dict[str, str]) -> Text:
    return Text(name or "-", SEVERITY_STYLE.get(alerted.get(name, ""), "bold"))


def units_part(status: dict[str, Any], now: datetime, width: int | None) -> RenderableType:
    units = sorted(_rows(status.get("units")), key=lambda u: _text(u.get("unit")))
    if not units:
        return Text("UNITS: none has reported yet", style="dim")
    alerted = _alerted(status)

    def clock(unit: dict[str, Any]) -> Text:
        source = _text(unit.get("clock")) or "-"
        return Text(source, "yellow" if source == "unsynced" else "")

    columns = [
        Column("unit", lambda u: _name(_text(u.get("unit")), alerted)),
        Column("state", _state, wrap=True),
        Column("last seen", lambda u: ago(parse_time(u.get("last_seen")), now), "right"),
        Column("battery", lambda u: _battery(u.get("battery_v"), u.get("battery_percent")), "right"),
        Column("disk", _disk_used, "right"),
        Column("free", lambda u: _megabytes(u.get("disk_free_mb")), "right", wide_only=True),
        Column("clock", clock),
        Column("version", lambda u: _text(u.get("version")) or "-"),
        Column("role", lambda u: _text(u.get("role")) or "-", wide_only=True),
        Column("config", lambda u: _text(u.get("config_hash"))[:12] or "-", wide_only=True),
        Column("outbox", lambda u: _count(u.get("outbox_waiting")), "right", wide_only=True),
    ]
    online = sum(1 for u in units if _unit_online(u))
    return _table(
        f"UNITS ({online}/{len(units)} online)",
        columns,
        units,
        width,
        lambda u: "red" if _unit_online(u) is False else None,
    )


def _fix_quality(fix: dict[str, Any]) -> str:
    quality, hdop, sats = _num(fix.get("quality")), _num(fix.get("hdop")), _num(fix.get("sats"))
    parts = [QUALITY_NAMES.get(int(quality), str(int(quality)))] if quality is not None else []
    parts += [f"{sats:.0f} sats"] if sats is not None else []
    parts += [f"hdop {hdop:.1f}"] if hdop is not None else []
    return " ".join(parts) or "-"


def _position(fix: dict[str, Any]) -> str:
    lat, lon = _num(fix.get("lat")), _num(fix.get("lon"))
    return f"{lat:.5f}, {lon:.5f}" if lat is not None and lon is not None else "-"


def collars_part(status: dict[str, Any], now: datetime, width: int | None) -> RenderableType:
    collars = sorted(_rows(status.get("collars")), key=lambda c: _text(c.get("collar")))
    if not collars:
        return Text("COLLARS: none heard yet", style="dim")
    alerted = _alerted(status)

    def heard(collar: dict[str, Any]) -> Text:
        moment = parse_time(collar.get("last_heard"))
        stale = moment is None or now - moment > timedelta(hours=24)
        return Text(ago(moment, now), "yellow" if stale else "")

    def unit_of(value: Any, unit: str, digits: int = 0) -> str:
        number = _num(value)
        return "-" if number is None else f"{number:.{digits}f} {unit}"

    columns = [
        Column("collar", lambda c: _name(_text(c.get("collar")), alerted)),
        Column("last heard", heard, "right"),
        Column("last fix", lambda c: ago(parse_time(_dict(c.get("last_fix")).get("time")), now), "right"),
        Column("position", lambda c: _position(_dict(c.get("last_fix")))),
        Column("battery", lambda c: _battery(None, c.get("battery_percent")), "right"),
        Column("fixes 24 h", lambda c: _count(c.get("fixes_24h")), "right"),
        Column("RSSI", lambda c: unit_of(c.get("rssi"), "dBm"), "right", wide_only=True),
        Column("SNR", lambda c: unit_of(c.get("snr"), "dB", 1), "right", wide_only=True),
        Column("fix", lambda c: _fix_quality(_dict(c.get("last_fix"))), wide_only=True),
        Column("via", lambda c: _text(c.get("via")) or "-", wide_only=True),
    ]
    return _table(f"COLLARS ({len(collars)})", columns, collars, width)


def captures_part(status: dict[str, Any], now: datetime, width: int | None, limit: int) -> RenderableType:
    captures = _rows(status.get("captures"))
    if not captures:
        return Text("CAPTURES: none yet", style="dim")
    epoch = datetime.min.replace(tzinfo=UTC)
    captures.sort(key=lambda c: parse_time(c.get("start")) or epoch, reverse=True)
    shown = captures[:limit]

    def when(capture: dict[str, Any]) -> str:
        start = parse_time(capture.get("start"))
        if start is None:
            return "-"
        clock = start.strftime("%H:%M:%S" if start.date() == now.date() else "%m-%d %H:%M")
        return f"{ago(start, now)} ({clock} UTC)"

    def light(capture: dict[str, Any]) -> str:
        night = capture.get("night")
        return "night" if night is True else "day" if night is False else "-"

    def image(capture: dict[str, Any]) -> str:
        return "full" if capture.get("image") else "thumbnail" if capture.get("thumbnail") else "-"

    columns = [
        Column("when", when),
        Column("unit", lambda c: _text(c.get("unit")) or "-"),
        Column("camera", lambda c: _text(c.get("camera")) or "-"),
        Column("stills", lambda c: _count(c.get("stills")), "right"),
        Column("light", light),
        Column("trigger", lambda c: _text(c.get("trigger")) or "-"),
        Column("image", image, wide_only=True),
        Column("event", lambda c: _text(c.get("event_id")) or "-", wide_only=True),
    ]
    title = (
        f"LATEST CAPTURES ({len(shown)} of {len(captures)})" if len(captures) > limit else "LATEST CAPTURES"
    )
    return _table(title, columns, shown, width)


# ---- the whole view -----------------------------------------------------------------------------


def render_status(
    status: dict[str, Any],
    *,
    now: datetime | None = None,
    width: int | None = None,
    max_captures: int = MAX_CAPTURES,
) -> Group:
    """Header, ALERTS, UNITS, COLLARS and LATEST CAPTURES as one rich renderable.

    `width` is the console width the view will be printed at: a table too wide for it leaves out its
    detail columns (free disk, role, config hash, outbox; RSSI, SNR, fix quality, radio path; image,
    event id), so the rest fits an 80-column terminal. None: every column, whatever the width.
    """
    status = _dict(status)
    moment = reference_time(status, now)
    return Group(
        header(status, moment),
        Text(""),
        alerts_part(status, moment),
        Text(""),
        units_part(status, moment, width),
        Text(""),
        collars_part(status, moment, width),
        Text(""),
        captures_part(status, moment, width, max_captures),
    )


def print_status(status: dict[str, Any], console: Console, *, now: datetime | None = None) -> None:
    console.print(render_status(status, now=now, width=console.width))


def status_text(status: dict[str, Any], *, now: datetime | None = None, width: int = 140) -> str:
    """The view as plain text (no escape codes), as `uncia status > file` writes it."""
    console = Console(file=io.StringIO(), width=width, force_terminal=False, color_system=None)
    print_status(status, console, now=now)
    # rich pads every table line to the table's width; a file wants no trailing blanks.
    lines = console.file.getvalue().splitlines()  # type: ignore[attr-defined]
    return "".join(line.rstrip() + "\n" for line in lines)
