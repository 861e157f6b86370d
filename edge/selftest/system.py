"""Self-test checks of what a unit needs besides its devices: disk space, the clock, the broker."""

from __future__ import annotations

import errno
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge.config import CameraSettings, ConfigError, MqttSettings, UnitSettings
from edge.fix import ClockSource
from edge.relay import apply_login
from edge.selftest import CheckResult, failed, passed, warned
from edge.storage import DiskUsage

# The outbox needs room to hold messages while the broker is away; a few hundred bytes each.
OUTBOX_FAIL_MB = 50.0
OUTBOX_WARN_MB = 500.0
EARLIEST_PLAUSIBLE_YEAR = 2025  # a clock before this never was set (a Pi without RTC starts in the past)


# --- disk -------------------------------------------------------------------------------------------


def _existing(folder: Path) -> Path:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def _writable(folder: Path) -> str | None:
    """None if a file can be created in `folder`, else why not (really tried: root passes access())."""
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".uncia-selftest-"):
            return None
    except OSError as exc:
        if exc.errno == errno.EROFS:
            return "the card is mounted read-only (file system errors?): run fsck or replace the card"
        if exc.errno in (errno.EACCES, errno.EPERM):
            return f"not writable by this user: the agent runs as uncia (chown -R uncia: {folder})"
        return f"cannot write there ({exc.strerror})"


def _check_space(
    name: str,
    folder: Path,
    disk_usage: Callable[[Path], DiskUsage],
    fail_mb: float,
    warn_mb: float,
    below_warn: str,
) -> CheckResult:
    where = _existing(folder)
    note = "" if where == folder else f" (does not exist yet: the agent makes it; checked {where})"
    problem = _writable(where)
    if problem:
        return failed(name, f"{folder}{note}: {problem}")
    try:
        usage = disk_usage(where)
    except OSError as exc:
        return failed(name, f"{folder}: cannot read the free space ({exc.strerror})")
    free_mb, total_mb = usage.free / 1e6, usage.total / 1e6
    seen = f"{folder}{note}: {_size(free_mb)} free of {_size(total_mb)}"
    if free_mb < fail_mb:
        return failed(name, f"{seen}, below {fail_mb:g} MB", "free space on the card, or fit a larger card")
    if free_mb < warn_mb:
        return warned(name, f"{seen}, below {warn_mb:g} MB: {below_warn}", "free space or fit a larger card")
    return passed(name, seen)


def _size(mb: float) -> str:
    return f"{mb / 1000:.1f} GB" if mb >= 1000 else f"{mb:.0f} MB"


def check_outbox_disk(folder: Path, disk_usage: Callable[[Path], DiskUsage]) -> CheckResult:
    return _check_space(
        "disk outbox",
        folder,
        disk_usage,
        OUTBOX_FAIL_MB,
        OUTBOX_WARN_MB,
        "a long broker outage could fill it",
    )


def check_image_disk(cam: CameraSettings, disk_usage: Callable[[Path], DiskUsage]) -> CheckResult:
    """Free space for images against the store's own floors (camera.hard_free_mb, low_free_mb)."""
    return _check_space(
        "disk images",
        Path(cam.image_dir),
        disk_usage,
        cam.hard_free_mb,
        cam.low_free_mb,
        "relayed images will be deleted to make room",
    )


# --- clock ------------------------------------------------------------------------------------------


def check_clock(clock_source: Callable[[], ClockSource], now: Callable[[], datetime]) -> CheckResult:
    """A plausible date, and whether the kernel says the clock is synchronised."""
    current = now()
    stamp = current.strftime("%Y-%m-%d %H:%M:%S UTC")
    if current.year < EARLIEST_PLAUSIBLE_YEAR:
        return failed(
            "clock",
            f"the system clock says {stamp}: it was never set",
            "connect the unit to the station network (NTP) or give the GPS sky view, then re-run",
        )
    source = clock_source()
    if source is ClockSource.UNSYNCED:
        return warned(
            "clock",
            f"{stamp}, not synchronised: records will say clock 'unsynced' until it is",
            "check `timedatectl` (chrony or systemd-timesyncd running, the station's NTP server reachable)",
        )
    return passed("clock", f"{stamp}, synchronised ({source.value})")


# --- broker -----------------------------------------------------------------------------------------


def broker_name(settings: MqttSettings) -> str:
    return f"broker {settings.host}:{settings.port}" + (" (TLS)" if settings.tls else "")


_REFUSED_CREDENTIALS = (134, 135, 4, 5)  # bad user name or password / not authorised (v5 and v3 codes)


def check_broker(settings: MqttSettings, unit: UnitSettings, timeout: float) -> CheckResult:
    """Connect with the unit's own credentials and TLS files, as the relay does, and disconnect.

    The client id gets a ``-selftest`` suffix: reusing the agent's id would make the broker drop a
    running agent's session.
    """
    name = broker_name(settings)
    client_id = (settings.client_id or f"uncia-{unit.site}-{unit.id}") + "-selftest"
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True, protocol=mqtt.MQTTv311
    )
    client.connect_timeout = timeout
    where = f"{settings.host}:{settings.port}"
    try:
        apply_login(client, settings)
    except ConfigError as exc:
        return failed(
            name, str(exc), f"re-provision the unit, or restore {settings.password_file} (mode 0600)"
        )
    except (OSError, ValueError, ssl.SSLError) as exc:
        return failed(
            name, f"cannot load the TLS files ({exc})", "re-provision the unit's certificate and key"
        )

    answer: dict[str, Any] = {}
    done = threading.Event()

    def on_connect(_c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        answer["reason"] = reason
        done.set()

    def on_disconnect(_c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        answer.setdefault("closed", reason)
        done.set()

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    started = time.monotonic()
    try:
        client.connect(settings.host, settings.port, keepalive=max(5, int(timeout) * 2))
    except ssl.SSLError as exc:
        return failed(
            name,
            f"TLS handshake failed ({exc.reason or exc})",
            "mqtt.ca_file must be the site CA that signed the broker's certificate, and the certificate "
            "must name mqtt.host; re-provision if the CA changed",
        )
    except ConnectionRefusedError:
        return failed(
            name,
            f"nothing listens on {where}",
            "is Mosquitto running at the station (systemctl status mosquitto), and is mqtt.port right?",
        )
    except socket.gaierror as exc:
        return failed(name, f"cannot resolve {settings.host!r} ({exc.strerror})", "check mqtt.host")
    except (TimeoutError, OSError) as exc:
        return failed(
            name,
            f"no connection to {where} within {timeout:g} s ({getattr(exc, 'strerror', None) or exc})",
            "check the network path to the station: Wi-Fi bridge or cable, the IP address, a firewall",
        )
    client.loop_start()
    try:
        done.wait(timeout)
    finally:
        client.disconnect()
        client.loop_stop()
    took_ms = (time.monotonic() - started) * 1000
    reason = answer.get("reason")
    if reason is None:
        return failed(
            name,
            f"TCP connection to {where} but no MQTT answer within {timeout:g} s",
            "is this the broker's port, and does it expect TLS (mqtt.tls)?",
        )
    if not reason.is_failure:
        who = f"user {settings.username!r}" if settings.username else "anonymous"
        return passed(name, f"connected and accepted ({who}) in {took_ms:.0f} ms")
    if reason.value in _REFUSED_CREDENTIALS:
        if not settings.username:
            return failed(
                name,
                f"the broker wants credentials and the config has none ({reason})",
                "set mqtt.username and mqtt.password_file: re-provision the unit",
            )
        return failed(
            name,
            f"broker refused the unit's user name/password ({reason})",
            f"re-provision the unit or check {settings.password_file or '/etc/uncia/mqtt-password'} "
            f"and mqtt.username = {settings.username!r}",
        )
    return failed(name, f"broker refused the connection ({reason})", "read the broker's log at the station")
