"""What staff see: the station status as one JSON document, built from the station record.

The same document feeds the web page (``GET /api/status``), ``uncia status`` (tables, ``--json``)
and scripts. Shapes (every field may be null when the unit never said):

- ``station``: site, unit (the gateway), now, record path, web address, the bridges to the central
  broker (``{name: {"up": bool, "since": time}}``, as the station broker reports them), the uplinks
  (EarthRanger, Iridium: what waits, what failed, credits today) from the gateway's last health.
- ``units``: one row per unit heard: online, last seen, state (``ok``/``degraded``/``offline``) with
  reasons, battery, disk, software version, config hash, clock source, outbox backlog, position.
- ``collars``: one row per track: last fix, when last heard and via which modem, battery, RSSI/SNR,
  fixes in the last 24 h.
- ``alerts``: the active alerts, critical first.
- ``captures``: the latest camera events, newest first, with the thumbnail's URL.
"""

from __future__ import annotations

import time
from typing import Any

from gateway.station.record import FixRow, RecordReader, iso

SEVERITY_ORDER = {"critical": 0, "warning": 1}


def fix_view(row: FixRow) -> dict[str, Any]:
    out = row.to_dict()
    if row.modem:
        out["via"] = f"{row.unit}/{row.modem}"
    else:  # a serial receiver names itself; a collar heard some other way, only the unit
        out["via"] = row.unit if row.track == row.source else f"{row.unit}/{row.source}"
    return out


def unit_view(row: dict[str, Any], *, now: float, offline_after_s: float) -> dict[str, Any]:
    """A registry row (``RecordReader.units()``) as staff see it."""
    health = row.get("health") or {}
    camera = row.get("camera_health") or {}
    disk = camera.get("disk") or {}
    last_seen = row.get("last_seen")
    online = row.get("online")
    silent = last_seen is None or now - last_seen > offline_after_s
    reasons = list(camera.get("reasons") or [])
    if online == 0:
        state = "offline"
        reasons.insert(0, "said offline (or the broker saw it drop)")
    elif online is None and silent:
        state = "offline"
        reasons.insert(0, "not heard recently")
    elif camera.get("state") == "degraded":
        state = "degraded"
    else:
        state = "ok"
    outbox = health.get("outbox") or {}
    free = disk.get("free_bytes")
    return {
        "unit": row["unit"],
        "role": row.get("role") or health.get("role"),
        "online": None if online is None else bool(online),
        "last_seen": iso(last_seen),
        "state": state,
        "reasons": reasons,
        "battery_v": camera.get("battery_v"),
        "battery_percent": None,
        "disk_used_percent": disk.get("used_percent"),
        "disk_free_mb": None if free is None else round(free / 1e6, 1),
        "version": health.get("software"),
        "config_hash": health.get("config_hash"),
        "clock": _clock_of(health, camera),
        "outbox_waiting": outbox.get("waiting"),
        "connected": health.get("connected"),
        "position": camera.get("position"),
        "lora": {
            name: stats.get("state")
            for name, stats in ((health.get("agent") or {}).get("lora") or {}).items()
        },
    }


def _clock_of(health: dict[str, Any], camera: dict[str, Any]) -> str | None:
    agent = health.get("agent") or {}
    return agent.get("clock") or camera.get("clock") or health.get("clock")


def capture_view(row: dict[str, Any]) -> dict[str, Any]:
    """A capture (``RecordReader.iter_captures()`` row) as staff see it; URLs are the web page's."""
    event_id = row["event_id"]
    return {
        "event_id": event_id,
        "unit": row["unit"],
        "camera": row["camera"],
        "start": iso(row["start"]),
        "end": iso(row.get("end")),
        "stills": row.get("stills"),
        "night": row.get("night"),
        "trigger": row.get("trigger"),
        "best_image_id": row.get("best_image_id"),
        "pair": (row.get("tags") or {}).get("pair"),
        "thumbnail": f"/api/thumbnail/{event_id}",
        "image": f"/api/image/{row['unit']}/{row['best_image_id']}" if row.get("best_image_id") else None,
    }


def alert_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "key": row["key"],
        "kind": row["kind"],
        "subject": row["subject"],
        "severity": row["severity"],
        "message": row["message"],
        "since": iso(row["since"]),
        "raised": iso(row.get("raised")),
        "cleared": iso(row.get("cleared")),
        "details": row.get("details") or {},
    }


def status(
    reader: RecordReader,
    *,
    site: str,
    station: str,
    web: str | None = None,
    now: float | None = None,
    offline_after_s: float = 1800.0,
    captures: int = 12,
    bridges: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The whole status document (see the module notes)."""
    now = time.time() if now is None else now
    day_ago = now - 86400.0
    collars = []
    for track, row in reader.latest_fixes().items():
        fix = fix_view(row)
        collars.append(
            {
                "collar": track,
                "last_heard": iso(row.received or row.time),
                "via": fix["via"],
                "last_fix": {k: fix.get(k) for k in ("time", "lat", "lon", "alt", "quality", "hdop", "sats")},
                "battery_percent": row.battery,
                "rssi": row.rssi,
                "snr": row.snr,
                "fixes_24h": reader.count_fixes(track, day_ago),
            }
        )
    registry = reader.units()
    own = next((u for u in registry if u["unit"] == station), None)
    uplinks = ((own or {}).get("health") or {}).get("agent", {}).get("uplinks") or {}
    alerts = sorted(
        (alert_view(a) for a in reader.active_alerts()),
        key=lambda a: (SEVERITY_ORDER.get(a["severity"], 9), a["since"] or ""),
    )
    return {
        "station": {
            "site": site,
            "unit": station,
            "now": iso(now),
            "record": str(reader.path),
            "web": web,
            # the station broker's bridges to the central broker (empty: none, or not known here)
            "bridges": bridges or {},
            # EarthRanger / Iridium as the gateway last reported them (its health, every minute)
            "uplinks": uplinks,
        },
        "units": [unit_view(u, now=now, offline_after_s=offline_after_s) for u in registry],
        "collars": collars,
        "alerts": alerts,
        "captures": [capture_view(c) for c in reader.latest_captures(captures)],
    }


def tracks(reader: RecordReader, *, since: float, limit: int = 2000) -> dict[str, list[list[float]]]:
    """Recent track of every collar: ``{track: [[unix_time, lat, lon], ...]}`` oldest first."""
    return {
        track: [[round(t, 3), lat, lon] for t, lat, lon in reader.track_points(track, since, limit)]
        for track in reader.tracks()
    }


def status_from_record(config: Any, *, now: float | None = None) -> dict[str, Any]:
    """The status straight from a gateway's record file (``uncia status -c gateway.toml``): works
    while the gateway is stopped too."""
    station = config.station
    if station is None:
        raise ValueError(f"{config.unit.id} has no [station] section: it keeps no station record")
    with RecordReader(station.record) as reader:
        return status(
            reader,
            site=config.unit.site,
            station=config.unit.id,
            web=f"http://{station.web_host}:{station.web_port}/" if station.web else None,
            now=now,
            offline_after_s=station.unit_offline_min * 60.0,
        )
