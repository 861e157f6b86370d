"""Bytes and credits a day of the Iridium digest, for a site of N collars.

    python -m bench.iridium_digest [--collars 20] [--interval-h 6] [--units 6]

Simulated snow leopards in the Helan Mountains (simulators.track) with a fix every 15 minutes; a
station with a gateway and camera units; three days of digests at UTC midnight + k × interval, built
by the real `build_digest` (340-byte cap) from what the station would hold at each slot. Three
cases: ``quiet`` (no alerts), ``typical`` (two warnings: a unit offline, a low collar battery),
``busy`` (a mortality, a geofence exit and three warnings). Credits: RockBLOCK's one per started 50
bytes. Arithmetic only; the last line printed is one JSON object of all figures.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.uplink.digest import build_digest, credits_for
from simulators.track import Track, random_start

T0 = datetime(2026, 11, 25, tzinfo=UTC)
FIX_INTERVAL_S = 900.0


@dataclass(frozen=True)
class _Fix:
    track: str
    time: float
    lat: float
    lon: float
    quality: int = 1
    hdop: float = 1.4
    battery: float = 70.0


def _alerts(case: str, now: float) -> list[dict[str, Any]]:
    warn = [
        {"kind": "unit_offline", "subject": "cam-03", "severity": "warning", "since": now - 7200},
        {"kind": "low_battery", "subject": "collar-11", "severity": "warning", "since": now - 86_400},
    ]
    crit = [
        {"kind": "mortality", "subject": "collar-5", "severity": "critical", "since": now - 13 * 3600},
        {"kind": "geofence_exit", "subject": "collar-8", "severity": "critical", "since": now - 1800},
        {"kind": "disk_full", "subject": "cam-02", "severity": "warning", "since": now - 3600},
    ]
    return {"quiet": [], "typical": warn, "busy": crit + warn}[case]


MO_MAX = 340  # bytes per SBD mobile-originated message


def _json_baseline(alerts: list[dict[str, Any]], fixes: list[Any], units: list[dict[str, Any]]) -> int:
    """Baseline: the same content as compact JSON (what a station without the digest would send):
    each alert's kind, subject and message; each collar's latest fix; each unit's state."""
    body = {
        "alerts": [
            {k: a.get(k) for k in ("kind", "subject", "severity", "message", "since")} for a in alerts
        ],
        "fixes": [
            {
                "collar": f.track,
                "time": round(f.time),
                "lat": round(f.lat, 5),
                "lon": round(f.lon, 5),
                "battery": f.battery,
            }
            for f in fixes
        ],
        "units": [{k: u.get(k) for k in ("unit", "online", "last_seen")} for u in units],
    }
    return len(json.dumps(body, separators=(",", ":")).encode())


def _json_credits(size: int) -> int:
    """Credits of a JSON body sent as as many full 340-byte messages as it needs."""
    full, rest = divmod(size, MO_MAX)
    return full * credits_for(MO_MAX) + (credits_for(rest) if rest else 0)


def site_day(
    collars: int = 20, interval_h: float = 6.0, units: int = 6, days: int = 3, seed: int = 2026
) -> dict[str, Any]:
    """Figures for one site: bytes per digest (the largest seen), credits per digest and per day."""
    rng = random.Random(seed)
    start = T0.timestamp()
    tracks = [Track(random.Random(seed + c), random_start(rng), T0) for c in range(collars)]
    names = ["gw-01"] + [f"cam-{u:02d}" for u in range(1, units)]
    per_day = round(24.0 / interval_h)
    out: dict[str, Any] = {
        "collars": collars,
        "units": units,
        "interval_h": interval_h,
        "digests_per_day": per_day,
    }
    for case in ("quiet", "typical", "busy"):
        sizes: list[int] = []
        baseline: list[int] = []
        for n in range(days * per_day):
            now = start + n * interval_h * 3600.0
            latest = []
            for c, track in enumerate(tracks):
                point = track.advance(FIX_INTERVAL_S if n else 0.0)
                latest.append(
                    _Fix(
                        f"collar-{c}",
                        now - rng.uniform(0, FIX_INTERVAL_S),
                        point.lat,
                        point.lon,
                        battery=90 - c,
                    )
                )
            unit_rows = [
                {
                    "unit": name,
                    "role": "gateway" if i == 0 else "camera",
                    "online": 1,
                    "last_seen": now - 60,
                    "camera_health": {"battery_v": 12.6, "disk": {"used_percent": 30 + i}},
                }
                for i, name in enumerate(names)
            ]
            alerts = _alerts(case, now)
            _, data = build_digest(now=now, seq=n, site=1, alerts=alerts, fixes=latest, units=unit_rows)
            sizes.append(len(data))
            baseline.append(_json_baseline(alerts, latest, unit_rows))
        worst = max(sizes)
        out[case] = {
            "bytes_per_digest": worst,
            "credits_per_digest": credits_for(worst),
            "bytes_per_day": worst * per_day,
            "credits_per_day": credits_for(worst) * per_day,
            "json_bytes_per_digest": max(baseline),
            "json_credits_per_day": _json_credits(max(baseline)) * per_day,
        }
    out["bytes_per_digest"] = out["typical"]["bytes_per_digest"]
    out["credits_per_day"] = out["typical"]["credits_per_day"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.iridium_digest", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--collars", type=int, default=20)
    parser.add_argument("--interval-h", type=float, default=6.0)
    parser.add_argument("--units", type=int, default=6, help="gateway + camera units")
    args = parser.parse_args(argv)
    figures = site_day(args.collars, args.interval_h, args.units)
    print(
        f"{args.collars} collars, {args.units} units, a digest every {args.interval_h:g} h "
        f"({figures['digests_per_day']} a day):"
    )
    for case in ("quiet", "typical", "busy"):
        f = figures[case]
        print(
            f"  {case:8s} {f['bytes_per_digest']:4d} bytes/digest = {f['credits_per_digest']} credits; "
            f"{f['bytes_per_day']:5d} bytes/day = {f['credits_per_day']:3d} credits/day"
            f"   (baseline, the same as JSON: {f['json_bytes_per_digest']:5d} bytes/digest,"
            f" {f['json_credits_per_day']:4d} credits/day)"
        )
    print(json.dumps(figures, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
