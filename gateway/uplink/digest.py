"""The station digest: what staff far away most need to know, in one Iridium SBD message.

A pure core: `build_digest` takes the station's alerts, the latest fix of each collar and the unit
registry (plain values, as `RecordReader` returns them) and packs them by priority into at most
``max_bytes`` (340, one SBD message): **alerts first** (mortality, geofence exit, conflict zone, then
the others), then **the latest fix of each collar** (alerted collars first), then **unit health**
(units with problems first). What does not fit is left out, lowest priority first, and counted in
the digest, so the reader knows something is missing. `encode_digest` / `decode_digest` are the
byte format (docs/iridium-digest.md), exact inverses of each other.

Positions use the idea of the LoRa collar payload (`edge.lora.payload`): 17-bit offsets of
0.00001° from the site's centre (±0.655°, about 1 m resolution); a fix outside that window is sent
with absolute coordinates instead (2 bytes more). Times are minutes before the digest's own time.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from edge.lora.payload import EPOCH, OFFSET_BITS, SITES, STEP_DEG, Site, hdop_class
from gateway.station.record import epoch

MAGIC = 0xD1  # high nibble D: a digest; low nibble: format version 1
HEADER_LEN = 8
SEC_NAMES, SEC_ALERTS, SEC_FIXES, SEC_UNITS, SEC_OMITTED = 1, 2, 3, 4, 5
ALERT_LEN, FIX_LEN, FAR_FIX_LEN, UNIT_LEN, OMITTED_LEN = 5, 10, 12, 5, 5
# Codes travel in 4 bits; the list order is also the priority order (first = most urgent).
ALERT_KINDS = (
    "mortality",
    "geofence_exit",
    "conflict_zone",
    "collar_silent",
    "unit_offline",
    "low_battery",
    "disk_full",
    "modem_unhealthy",
)
OTHER_KIND = 15
ROLES = ("gateway", "camera", "other")
MINUTES_MAX = 0xFFFF  # 45.5 days: "that long or longer"
SEEN_MAX_H = 254
UNKNOWN = 0xFF
BATTERY_UNKNOWN = 31
_OFF = 1 << (OFFSET_BITS - 1)
_COLLAR = re.compile(r"^collar-(0|[1-9][0-9]{0,3})$")


class DigestError(ValueError):
    """Bytes that are not a digest this code can read; ``reason`` is a short stable word."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


@dataclass(frozen=True)
class DigestAlert:
    """An alert: ``active`` False means raised and cleared since the last digest. ``since_min`` is
    how many minutes before the digest the condition began (65535: that long or longer)."""

    kind: str
    subject: str
    critical: bool
    active: bool
    since_min: int


@dataclass(frozen=True)
class DigestFix:
    """The latest fix of one collar, ``age_min`` minutes before the digest. ``quality`` is the GGA
    code (None: unknown), ``hdop_class`` 0-6 as in the LoRa payload, ``battery_pct`` in 5 % steps."""

    subject: str
    age_min: int
    lat: float
    lon: float
    quality: int | None = None
    hdop_class: int = 0
    battery_pct: int | None = None


@dataclass(frozen=True)
class DigestUnit:
    """One unit's health: availability, degraded camera, battery (0.1 V), disk use (%), hours since
    it was last heard (254: that long or longer)."""

    name: str
    online: bool | None = None
    degraded: bool = False
    role: str | None = None
    battery_v: float | None = None
    disk_percent: int | None = None
    seen_h: int | None = None


@dataclass(frozen=True)
class Digest:
    """One digest. ``time`` is whole UNIX seconds; ``omitted`` counts (alerts, fixes, units) left
    out for lack of bytes (None: nothing was)."""

    site: int
    time: int
    seq: int
    alerts: tuple[DigestAlert, ...] = ()
    fixes: tuple[DigestFix, ...] = ()
    units: tuple[DigestUnit, ...] = ()
    omitted: tuple[int, int, int] | None = None

    @property
    def moment(self) -> datetime:
        return datetime.fromtimestamp(self.time, UTC)


# --- encoding ----------------------------------------------------------------------------------------


def _subject_ref(subject: str, names: dict[str, int]) -> int:
    match = _COLLAR.match(subject)
    if match and int(match.group(1)) < 1024:
        return int(match.group(1))
    return 0x8000 | names[subject]


def _needs_name(subject: str) -> bool:
    match = _COLLAR.match(subject)
    return not (match and int(match.group(1)) < 1024)


def _name_bytes(name: str) -> bytes:
    raw = name.encode("ascii", "replace")
    if not 1 <= len(raw) <= 255:
        raise ValueError(f"name {name!r}: 1 to 255 ASCII characters")
    return raw


def _signed(value: int, bits: int) -> int:
    if not -(1 << (bits - 1)) <= value < 1 << (bits - 1):
        raise ValueError(f"{value} does not fit {bits} signed bits")
    return value & ((1 << bits) - 1)


def _unsigned(value: int, bits: int, what: str) -> int:
    if not 0 <= value < 1 << bits:
        raise ValueError(f"{what} {value} out of range 0..{(1 << bits) - 1}")
    return value


def _offsets(fix: DigestFix, site: Site) -> tuple[int, int] | None:
    dlat = round((fix.lat - site.lat) / STEP_DEG)
    dlon = round(((fix.lon - site.lon + 180.0) % 360.0 - 180.0) / STEP_DEG)
    if -_OFF <= dlat < _OFF and -_OFF <= dlon < _OFF:
        return dlat, dlon
    return None


def _on_grid(fix: DigestFix, site: Site) -> DigestFix:
    """The fix with the position it will have after decoding (what was sent is what is shown)."""
    offsets = _offsets(fix, site)
    if offsets is not None:
        lat = round(site.lat + offsets[0] * STEP_DEG, 7)
        lon = round((site.lon + offsets[1] * STEP_DEG + 180.0) % 360.0 - 180.0, 7)
    else:
        lat, lon = (
            round(round(fix.lat / STEP_DEG) * STEP_DEG, 7),
            round(round(fix.lon / STEP_DEG) * STEP_DEG, 7),
        )
    return replace(fix, lat=lat, lon=lon)


def fix_size(fix: DigestFix, site: Site) -> int:
    return FIX_LEN if _offsets(fix, site) is not None else FAR_FIX_LEN


def _encode_fix(fix: DigestFix, site: Site, names: dict[str, int]) -> bytes:
    quality = 0 if fix.quality is None else _unsigned(fix.quality, 4, "fix quality")
    if fix.quality is not None and not 1 <= fix.quality <= 8:
        raise ValueError(f"fix quality {fix.quality}: a GGA code 1-8 or None")
    battery = BATTERY_UNKNOWN if fix.battery_pct is None else round(fix.battery_pct / 5)
    if fix.battery_pct is not None and not 0 <= battery <= 20:
        raise ValueError(f"battery {fix.battery_pct} %: 0 to 100")
    head = bytes(
        [*divmod(_subject_ref(fix.subject, names), 256), *divmod(min(fix.age_min, MINUTES_MAX), 256)]
    )
    flags = (quality << 8) | (_unsigned(fix.hdop_class, 3, "HDOP class") << 5) | battery
    offsets = _offsets(fix, site)
    if offsets is not None:
        block = (
            (flags << 35)
            | (_signed(offsets[0], OFFSET_BITS) << OFFSET_BITS)
            | _signed(offsets[1], OFFSET_BITS)
        )
        return head + block.to_bytes(6, "big")
    lat, lon = round(fix.lat / STEP_DEG), round(fix.lon / STEP_DEG)
    block = (1 << 63) | (flags << 51) | (_signed(lat, 25) << 26) | _signed(lon, 26)
    return head + block.to_bytes(8, "big")


def _encode_alert(alert: DigestAlert, names: dict[str, int]) -> bytes:
    code = ALERT_KINDS.index(alert.kind) if alert.kind in ALERT_KINDS else OTHER_KIND
    first = (code << 4) | (int(alert.critical) << 3) | (int(alert.active) << 2)
    ref = _subject_ref(alert.subject, names)
    return bytes(
        [first, *divmod(ref, 256), *divmod(min(_unsigned(alert.since_min, 31, "since"), MINUTES_MAX), 256)]
    )


def _encode_unit(unit: DigestUnit, names: dict[str, int]) -> bytes:
    online = 3 if unit.online is None else int(unit.online)
    role = 3 if unit.role is None else ROLES.index(unit.role) if unit.role in ROLES else 2
    battery = UNKNOWN if unit.battery_v is None else min(254, max(0, round(unit.battery_v * 10)))
    disk = UNKNOWN if unit.disk_percent is None else min(100, max(0, unit.disk_percent))
    seen = UNKNOWN if unit.seen_h is None else min(SEEN_MAX_H, max(0, unit.seen_h))
    return bytes(
        [names[unit.name], (online << 6) | (int(unit.degraded) << 5) | (role << 3), battery, disk, seen]
    )


def _name_table(digest: Digest) -> dict[str, int]:
    names: dict[str, int] = {}
    subjects = [a.subject for a in digest.alerts] + [f.subject for f in digest.fixes]
    for subject in [s for s in subjects if _needs_name(s)] + [u.name for u in digest.units]:
        if subject not in names:
            names[subject] = len(names)
    if len(names) > 255:
        raise ValueError(f"{len(names)} names: a digest holds at most 255")
    return names


def encode_digest(digest: Digest) -> bytes:
    """The digest's bytes (docs/iridium-digest.md). Raises ValueError for values the format cannot
    carry (a site number not in `SITES`, an unknown role, more than 255 items of a kind, ...)."""
    site = SITES.get(digest.site)
    if site is None:
        raise ValueError(f"site {digest.site} is not in edge.lora.payload.SITES")
    seconds = digest.time - int(EPOCH.timestamp())
    out = bytearray([MAGIC, digest.site])
    out += _unsigned(seconds, 32, "digest time (seconds since 2024)").to_bytes(4, "big")
    out += _unsigned(digest.seq, 16, "sequence number").to_bytes(2, "big")
    names = _name_table(digest)
    sections: list[tuple[int, list[bytes]]] = [
        (SEC_NAMES, [bytes([len(_name_bytes(n))]) + _name_bytes(n) for n in names]),
        (SEC_ALERTS, [_encode_alert(a, names) for a in digest.alerts]),
        (SEC_FIXES, [_encode_fix(f, site, names) for f in digest.fixes]),
        (SEC_UNITS, [_encode_unit(u, names) for u in digest.units]),
    ]
    for kind, items in sections:
        if items:
            if len(items) > 255:
                raise ValueError(f"section {kind}: {len(items)} items, at most 255")
            out += bytes([kind, len(items)]) + b"".join(items)
    if digest.omitted is not None:
        out += bytes([SEC_OMITTED, 3, *(min(255, max(0, n)) for n in digest.omitted)])
    return bytes(out)


# --- building: priorities and the byte budget ----------------------------------------------------------


def credits_for(size: int, credit_bytes: int = 50) -> int:
    """What a message of `size` bytes costs on RockBLOCK: one credit per started 50 bytes."""
    return max(1, math.ceil(size / credit_bytes))


def _minutes(now: float, then: float | None) -> int:
    if then is None:
        return MINUTES_MAX
    return min(MINUTES_MAX, max(0, int((now - then) // 60)))


def _alert(alert: Mapping[str, Any], now: float) -> DigestAlert:
    active = alert.get("active")
    if active is None:
        active = alert.get("cleared") is None
    kind = str(alert.get("kind"))
    return DigestAlert(
        kind=kind if kind in ALERT_KINDS else "other",
        subject=str(alert.get("subject")),
        critical=alert.get("severity") == "critical",
        active=bool(active),
        since_min=_minutes(now, epoch(alert.get("since"))),
    )


def _rank(kind: str) -> int:
    return ALERT_KINDS.index(kind) if kind in ALERT_KINDS else len(ALERT_KINDS)


def _fix(row: Any, now: float) -> DigestFix:
    quality = getattr(row, "quality", None)
    hdop = getattr(row, "hdop", None)
    try:
        h = hdop_class(hdop)
    except ValueError:
        h = 0
    battery = getattr(row, "battery", None)
    if isinstance(battery, int | float) and math.isfinite(battery):
        battery = 5 * round(min(100.0, max(0.0, float(battery))) / 5)
    else:
        battery = None
    return DigestFix(
        subject=row.track,
        age_min=_minutes(now, row.time),
        lat=float(row.lat),
        lon=float(row.lon),
        quality=quality if isinstance(quality, int) and 1 <= quality <= 8 else None,
        hdop_class=h,
        battery_pct=battery,
    )


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _disk_percent(disk: Any) -> int | None:
    if not isinstance(disk, Mapping):
        return None
    used = _number(disk.get("used_percent"))
    if used is None:
        total, free = _number(disk.get("total_bytes")), _number(disk.get("free_bytes"))
        if total and total > 0 and free is not None:
            used = 100.0 * (total - free) / total
    return None if used is None else min(100, max(0, round(used)))


def unit_health(row: Mapping[str, Any], now: float) -> DigestUnit:
    """A unit registry row (`RecordReader.units`) as a digest item: availability, a degraded
    camera, battery volts and disk use from whichever health body carries them."""
    bodies = [b for b in (row.get("camera_health"), row.get("health")) if isinstance(b, Mapping)]
    bodies += [b["agent"] for b in list(bodies) if isinstance(b.get("agent"), Mapping)]
    volts = next((v for b in bodies if (v := _number(b.get("battery_v"))) is not None), None)
    disk = next((d for b in bodies if (d := _disk_percent(b.get("disk"))) is not None), None)
    degraded = any(b.get("degraded") is True or b.get("state") == "degraded" for b in bodies)
    online = row.get("online")
    last_seen = _number(row.get("last_seen"))
    role = row.get("role")
    return DigestUnit(
        name=str(row["unit"]),
        online=None if online is None else bool(online),
        degraded=degraded,
        role=None if role is None else role if role in ROLES else "other",
        battery_v=None if volts is None else min(25.4, max(0.0, round(volts, 1))),
        disk_percent=disk,
        seen_h=None if last_seen is None else min(SEEN_MAX_H, max(0, int((now - last_seen) // 3600))),
    )


def _collar_number(subject: str) -> int:
    match = _COLLAR.match(subject)
    return int(match.group(1)) if match else 1 << 20


@dataclass
class _Packer:
    site: Site
    size: int = HEADER_LEN
    names: set[str] = field(default_factory=set)
    sections: set[str] = field(default_factory=set)

    def cost(self, what: str, length: int, subjects: list[str]) -> int:
        new = {s for s in subjects if s not in self.names}
        cost = length + (2 if what not in self.sections else 0)
        if new:
            cost += sum(1 + len(_name_bytes(n)) for n in new) + (2 if not self.names else 0)
        return cost

    def add(self, what: str, cost: int, subjects: list[str]) -> None:
        self.size += cost
        self.sections.add(what)
        self.names.update(subjects)


def build_digest(
    *,
    now: float,
    seq: int,
    site: int,
    alerts: Iterable[Mapping[str, Any]] = (),
    fixes: Iterable[Any] = (),
    units: Iterable[Mapping[str, Any]] = (),
    max_bytes: int = 340,
    rotate: int = 0,
) -> tuple[Digest, bytes]:
    """Pack what fits in `max_bytes`, by priority; returns the digest and its bytes.

    `alerts` are alert dicts as the record keeps them (kind, subject, severity, since, cleared or
    active); `fixes` the latest fix of each track (`FixRow`-like: only ``collar-`` tracks are used);
    `units` unit registry rows. Priority: alerts (mortality, geofence exit, conflict zone, then the
    other kinds; active before cleared, newest first), then fixes (the alerted collars first, then
    the others from `rotate` on, so a tight budget leaves out different collars each time), then units
    (offline, unknown and degraded first). The first item that does not fit ends the packing (all
    after it are left out and counted), so a lower-priority item never takes a higher one's place.
    """
    where = SITES.get(site)
    if where is None:
        raise ValueError(f"site {site} is not in edge.lora.payload.SITES")
    if max_bytes < HEADER_LEN + OMITTED_LEN:
        raise ValueError(f"max_bytes {max_bytes}: at least {HEADER_LEN + OMITTED_LEN}")
    moment = int(now)
    alert_items = sorted(
        ((_alert(a, now), epoch(a.get("since")) or 0.0) for a in alerts),
        key=lambda pair: (_rank(pair[0].kind), not pair[0].active, -pair[1], pair[0].subject),
    )
    ordered_alerts = [a for a, _ in alert_items]
    latest = {}
    for row in fixes:
        if _COLLAR.match(getattr(row, "track", "")) and math.isfinite(row.lat) and math.isfinite(row.lon):
            latest[row.track] = _on_grid(_fix(row, now), where)
    first = list(dict.fromkeys(a.subject for a in ordered_alerts if a.subject in latest))
    rest = sorted((s for s in latest if s not in first), key=_collar_number)
    if rest:
        shift = rotate % len(rest)
        rest = rest[shift:] + rest[:shift]
    ordered_fixes = [latest[s] for s in first + rest]
    unit_items = [unit_health(u, now) for u in units]
    ordered_units = sorted(
        unit_items, key=lambda u: (u.online is not False, u.online is not None, not u.degraded, u.name)
    )
    candidates: list[tuple[str, Any, int, list[str]]] = []
    candidates += [
        ("alert", a, ALERT_LEN, [a.subject] if _needs_name(a.subject) else []) for a in ordered_alerts
    ]
    candidates += [
        ("fix", f, fix_size(f, where), [f.subject] if _needs_name(f.subject) else []) for f in ordered_fixes
    ]
    candidates += [("unit", u, UNIT_LEN, [u.name]) for u in ordered_units]

    def pack(budget: int) -> int:
        packer = _Packer(where)
        for count, (what, _, length, subjects) in enumerate(candidates):
            cost = packer.cost(what, length, subjects)
            if packer.size + cost > budget:
                return count
            packer.add(what, cost, subjects)
        return len(candidates)

    taken = pack(max_bytes)
    omitted = None
    if taken < len(candidates):
        taken = pack(max_bytes - OMITTED_LEN)
        left = Counter(what for what, *_ in candidates[taken:])
        omitted = (left["alert"], left["fix"], left["unit"])
    chosen = candidates[:taken]
    digest = Digest(
        site=site,
        time=moment,
        seq=seq % 65536,
        alerts=tuple(item for what, item, *_ in chosen if what == "alert"),
        fixes=tuple(item for what, item, *_ in chosen if what == "fix"),
        units=tuple(item for what, item, *_ in chosen if what == "unit"),
        omitted=omitted,
    )
    data = encode_digest(digest)
    assert len(data) <= max_bytes, (len(data), max_bytes)
    return digest, data


def format_digest(digest: Digest) -> str:
    """The digest as lines a person reads (what the receiving end prints)."""
    head = f"digest #{digest.seq} of site {digest.site} at {digest.moment:%Y-%m-%d %H:%M} UTC"
    lines = [head]
    for a in digest.alerts:
        state = "ACTIVE" if a.active else "cleared"
        lines.append(
            f"  {'!!' if a.critical else ' !'} {a.kind} {a.subject} {state}, since {_ago(a.since_min)}"
        )
    for f in digest.fixes:
        extra = [
            f"hdop class {f.hdop_class}" if f.hdop_class else "",
            f"battery {f.battery_pct} %" if f.battery_pct is not None else "",
        ]
        detail = ", ".join(x for x in extra if x)
        lines.append(
            f"  fix {f.subject} {f.lat:.5f},{f.lon:.5f} {_ago(f.age_min)}"
            + (f" ({detail})" if detail else "")
        )
    for u in digest.units:
        state = {True: "online", False: "OFFLINE", None: "availability unknown"}[u.online]
        parts = [state + (" DEGRADED" if u.degraded else "")]
        if u.battery_v is not None:
            parts.append(f"{u.battery_v:.1f} V")
        if u.disk_percent is not None:
            parts.append(f"disk {u.disk_percent} %")
        if u.seen_h is not None:
            parts.append(f"heard {u.seen_h} h ago" if u.seen_h < SEEN_MAX_H else "not heard for 254+ h")
        lines.append(f"  unit {u.name} ({u.role or '?'}): " + ", ".join(parts))
    if digest.omitted:
        a, f, u = digest.omitted
        lines.append(f"  (left out for lack of bytes: {a} alerts, {f} fixes, {u} units)")
    return "\n".join(lines)


def _ago(minutes: int) -> str:
    if minutes >= MINUTES_MAX:
        return "45+ days ago"
    if minutes < 120:
        return f"{minutes} min ago"
    if minutes < 48 * 60:
        return f"{minutes / 60:.1f} h ago"
    return f"{minutes / 1440:.1f} days ago"


# --- decoding ----------------------------------------------------------------------------------------


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise DigestError(
                "too_short", f"the digest ends after {len(self.data)} bytes, in the middle of an item"
            )
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    @property
    def left(self) -> int:
        return len(self.data) - self.pos


def _from_signed(field_: int, bits: int) -> int:
    return field_ - (1 << bits) if field_ >> (bits - 1) else field_


def decode_digest(data: bytes) -> Digest:
    """The digest in `data` (the message body the RockBLOCK delivers). Raises `DigestError`, never
    anything else."""
    r = _Reader(bytes(data))
    if r.left < HEADER_LEN:
        raise DigestError("too_short", f"{r.left} bytes: a digest has at least {HEADER_LEN}")
    magic, site_number = r.take(2)
    if magic >> 4 != MAGIC >> 4:
        raise DigestError("not_digest", f"first byte 0x{magic:02X}: not an uncia digest (those start 0xD_)")
    if magic != MAGIC:
        raise DigestError(
            "version", f"digest format version {magic & 15}: this decoder reads version {MAGIC & 15}"
        )
    site = SITES.get(site_number)
    if site is None:
        raise DigestError("site", f"site number {site_number} unknown: add it to edge.lora.payload.SITES")
    time_ = int(EPOCH.timestamp()) + int.from_bytes(r.take(4), "big")
    seq = int.from_bytes(r.take(2), "big")
    names: list[str] = []
    alerts: list[DigestAlert] = []
    fixes: list[DigestFix] = []
    units: list[DigestUnit] = []
    omitted: tuple[int, int, int] | None = None
    last = 0
    while r.left:
        kind, count = r.take(2)
        if not last < kind <= SEC_OMITTED:
            raise DigestError("bad_section", f"section type {kind} where a type above {last} was expected")
        last = kind
        if kind == SEC_OMITTED:
            if count != 3:
                raise DigestError("bad_section", f"omitted counts: 3 expected, {count} found")
            a, f, u = r.take(3)
            omitted = (a, f, u)
            continue
        for _ in range(count):
            if kind == SEC_NAMES:
                (length,) = r.take(1)
                names.append(r.take(length).decode("ascii", "replace"))
            elif kind == SEC_ALERTS:
                alerts.append(_decode_alert(r, names))
            elif kind == SEC_FIXES:
                fixes.append(_decode_fix(r, site, names))
            else:
                units.append(_decode_unit(r, names))
    return Digest(site_number, time_, seq, tuple(alerts), tuple(fixes), tuple(units), omitted)


def _subject(ref: int, names: list[str]) -> str:
    if not ref & 0x8000:
        if ref >= 1024:
            raise DigestError("bad_field", f"subject reference 0x{ref:04X} is neither a collar nor a name")
        return f"collar-{ref}"
    return _name(ref & 0x7FFF, names)


def _name(index: int, names: list[str]) -> str:
    if index >= len(names):
        raise DigestError("bad_field", f"name {index} referenced, the table has {len(names)}")
    return names[index]


def _decode_alert(r: _Reader, names: list[str]) -> DigestAlert:
    first, a, b, c, d = r.take(ALERT_LEN)
    code = first >> 4
    if (code >= len(ALERT_KINDS) and code != OTHER_KIND) or first & 3:
        raise DigestError("bad_field", f"alert byte 0x{first:02X}: undefined kind code or reserved bits set")
    return DigestAlert(
        kind=ALERT_KINDS[code] if code < len(ALERT_KINDS) else "other",
        subject=_subject((a << 8) | b, names),
        critical=bool(first & 8),
        active=bool(first & 4),
        since_min=(c << 8) | d,
    )


def _decode_unit(r: _Reader, names: list[str]) -> DigestUnit:
    index, flags, battery, disk, seen = r.take(UNIT_LEN)
    online, role = (flags >> 6) & 3, (flags >> 3) & 3
    if online == 2 or flags & 7 or (disk > 100 and disk != UNKNOWN):
        raise DigestError("bad_field", f"unit flags 0x{flags:02X} or disk {disk} out of range")
    return DigestUnit(
        name=_name(index, names),
        online=None if online == 3 else bool(online),
        degraded=bool(flags & 0x20),
        role=None if role == 3 else ROLES[role],
        battery_v=None if battery == UNKNOWN else battery / 10,
        disk_percent=None if disk == UNKNOWN else disk,
        seen_h=None if seen == UNKNOWN else seen,
    )


def _decode_fix(r: _Reader, site: Site, names: list[str]) -> DigestFix:
    a, b, c, d = r.take(4)
    first = r.take(1)[0]
    far = bool(first & 0x80)
    bits = 64 if far else 48
    block = int.from_bytes(bytes([first]) + r.take(bits // 8 - 1), "big")
    flags = (block >> (bits - 13)) & 0xFFF
    quality, hdop, battery = flags >> 8, (flags >> 5) & 7, flags & 31
    if (
        quality > 8
        or hdop > 6
        or (battery > 20 and battery != BATTERY_UNKNOWN)
        or (not far and block >> 34 & 1)
    ):
        raise DigestError("bad_field", "a fix's quality, HDOP class, battery or reserved bit is out of range")
    if far:
        lat = round(_from_signed((block >> 26) & ((1 << 25) - 1), 25) * STEP_DEG, 7)
        lon = round(_from_signed(block & ((1 << 26) - 1), 26) * STEP_DEG, 7)
        if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
            raise DigestError("bad_field", f"absolute position {lat:.5f}, {lon:.5f} is not on Earth")
    else:
        dlat = _from_signed((block >> OFFSET_BITS) & ((1 << OFFSET_BITS) - 1), OFFSET_BITS)
        dlon = _from_signed(block & ((1 << OFFSET_BITS) - 1), OFFSET_BITS)
        lat = round(site.lat + dlat * STEP_DEG, 7)
        lon = round((site.lon + dlon * STEP_DEG + 180.0) % 360.0 - 180.0, 7)
    return DigestFix(
        subject=_subject((a << 8) | b, names),
        age_min=(c << 8) | d,
        lat=lat,
        lon=lon,
        quality=quality or None,
        hdop_class=hdop,
        battery_pct=None if battery == BATTERY_UNKNOWN else battery * 5,
    )
