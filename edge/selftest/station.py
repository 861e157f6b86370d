"""Self-test checks of a gateway's station hub: its record's folder, the reserve boundary, the web port.

Run with the gateway stopped (as every self-test): the web port must then be free, or something else
holds it.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from pathlib import Path

from edge.config import StationSettings
from edge.selftest import CheckResult, failed, passed, warned
from edge.selftest.system import _check_space
from edge.storage import DiskUsage

RECORD_FAIL_MB = 200.0  # a season of a real site's fixes and thumbnails is a few hundred MB
RECORD_WARN_MB = 2000.0


def check_record_disk(station: StationSettings, disk_usage: Callable[[Path], DiskUsage]) -> CheckResult:
    return _check_space(
        "station record",
        Path(station.record).parent,
        disk_usage,
        RECORD_FAIL_MB,
        RECORD_WARN_MB,
        "a season of fixes and thumbnails may not fit",
    )


def check_boundary(station: StationSettings) -> CheckResult:
    name = "reserve boundary"
    if not station.boundary:
        return passed(name, "none configured: no geofence or conflict-zone alerts (set [station] boundary)")
    from gateway.station.geofence import Geofence, GeofenceError  # the station's own loader, same errors

    try:
        fence = Geofence.from_settings(station)
    except (GeofenceError, OSError, ValueError) as exc:
        return failed(
            name, str(exc), "fix the GeoJSON file (polygons, kind reserve/village/camp, lon/lat order)"
        )
    zones = fence.geojson().get("features", []) if fence is not None else []
    return passed(
        name, f"{station.boundary}: {len(zones)} zone(s), conflict buffer {station.conflict_buffer_m:g} m"
    )


def check_web_port(station: StationSettings) -> CheckResult:
    name = f"staff page {station.web_host}:{station.web_port}"
    if not station.web:
        return passed(name, "the staff page is off ([station] web = false)")
    if station.web_port == 0:
        return passed(name, "a free port is picked at start")
    with socket.socket(socket.AF_INET6 if ":" in station.web_host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((station.web_host, station.web_port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return failed(
                    name,
                    "the port is in use (is the gateway still running, or another web server?)",
                    "stop what holds it (ss -ltnp), or change [station] web_port",
                )
            return failed(name, f"cannot listen there ({exc.strerror})", "check [station] web_host")
    if station.web_open_to_network:
        return warned(
            name,
            "free, but open to the network without a password: exact positions and camera controls",
            "set [station] web_password_file (uncia provision writes one)",
        )
    return passed(name, "free")
