"""The station's Mosquitto bridge to the reserve's central broker, rendered as mosquitto.conf text.

A station runs its own Mosquitto; the units and the station hub talk only to it. One ``connection``
block bridges that broker to the centre: everything the site publishes goes up, the station hub's
command requests come down. While the centre is unreachable (hours, days) the station's Mosquitto
queues what waits to go up; the queue limits decide how much it can hold (see `queue_limits`).

Pure functions of their input (no files, no sockets), so provisioning (issue 6) can build a
station's config and tests can compare the shipped example with a fresh rendering::

    text = render_bridge(
        "helan", "gw-01", address="central.example.org:8883",
        tls=BridgeTls(cafile="/etc/uncia/central-ca.crt",
                      certfile="/etc/uncia/bridge.crt", keyfile="/etc/uncia/bridge.key"),
    )

The text is a drop-in for ``include_dir`` (Debian: ``/etc/mosquitto/conf.d/``). It needs
``persistence true`` in the main config, or a restarted broker forgets the queued messages.
Every value is checked before it is written: a space, ``#`` or newline in a value would change
what Mosquitto reads, so it raises `BridgeConfigError` naming the field. docs/bridge.md explains the
behaviour measured with two real brokers (tests/test_bridge.py).
"""

from __future__ import annotations

import math
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from paho.mqtt.client import topic_matches_sub

# Same alphabet as unit ids and topic segments (edge/topics.py): never a wildcard or a separator.
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_HOST = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
_TOPIC = re.compile(r"^[A-Za-z0-9$_/.-]+$")

PROTOCOLS = ("mqttv311", "mqttv50")
TLS_VERSIONS = ("tlsv1.2", "tlsv1.3")

# Measured with Mosquitto 2.0.11 (64-bit): a message queued for an offline client costs its payload
# plus ~350-365 bytes (topic ~35 B, stored message, queue entry). max_queued_bytes counts payload only.
MOSQUITTO_BYTES_PER_MESSAGE = 360


class BridgeConfigError(ValueError):
    """A bridge setting cannot be written to mosquitto.conf; the message names the field and the fix."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        super().__init__(f"bridge setting {field}: {problem}")


class BridgeTopic(NamedTuple):
    """One ``topic <pattern> <direction> <qos>`` line: ``out`` goes to the centre, ``in`` comes down."""

    pattern: str
    direction: str
    qos: int


@dataclass(frozen=True)
class BridgeTls:
    """TLS towards the centre. ``cafile``: PEM CA that signed the centre's certificate (its host name
    must match `address`). ``certfile``/``keyfile``: this station's client certificate and key, when
    the centre requires one (both or neither). Mosquitto opens them after dropping to the
    ``mosquitto`` user: make them readable by it (``root:mosquitto``, mode 0640)."""

    cafile: str
    certfile: str = ""
    keyfile: str = ""
    version: str = "tlsv1.2"


@dataclass(frozen=True)
class SiteLoad:
    """What a site publishes on a typical day, for sizing the queue. The defaults describe a real
    site: 20 collars with a fix every 15 min, 10 units reporting health every 60 s, camera events
    (capture start/updates/end plus one 20 kB JPEG thumbnail, base64 in JSON: ~36 kB an event) and
    the station's own messages (coarsened public feed, alerts, hub state). Bytes are payload bytes."""

    collars: int = 20
    collar_fix_interval_s: float = 900.0
    fix_bytes: int = 450
    units: int = 10
    health_interval_s: float = 60.0
    health_bytes: int = 1000
    camera_events_per_day: float = 100.0
    camera_messages_per_event: int = 6
    camera_bytes_per_event: int = 36_000
    station_messages_per_day: float = 2000.0
    station_message_bytes: int = 300

    def messages_per_day(self) -> float:
        return (
            self.collars * 86400 / self.collar_fix_interval_s
            + self.units * 86400 / self.health_interval_s
            + self.camera_events_per_day * self.camera_messages_per_event
            + self.station_messages_per_day
        )

    def bytes_per_day(self) -> float:
        return (
            self.collars * 86400 / self.collar_fix_interval_s * self.fix_bytes
            + self.units * 86400 / self.health_interval_s * self.health_bytes
            + self.camera_events_per_day * self.camera_bytes_per_event
            + self.station_messages_per_day * self.station_message_bytes
        )

    def memory_per_day(self) -> float:
        """Bytes of Mosquitto memory one day of queued traffic takes."""
        return self.bytes_per_day() + self.messages_per_day() * MOSQUITTO_BYTES_PER_MESSAGE


@dataclass(frozen=True)
class QueueLimits:
    """Mosquitto's ``max_queued_messages`` / ``max_queued_bytes`` (payload bytes), with the reasoning
    that produced them (``reasoning``: comment lines written above them)."""

    max_queued_messages: int
    max_queued_bytes: int
    reasoning: tuple[str, ...] = ()


def queue_limits(
    days: float = 7.0, *, load: SiteLoad | None = None, margin: float = 10.0, memory_budget_mb: float = 512.0
) -> QueueLimits:
    """Limits for riding out `days` of central outage with `margin` times the typical `load`, within
    `memory_budget_mb` (10^6 bytes) of the station's RAM for the queue.

    Mosquitto holds the whole queue in memory. If `days` x `margin` does not fit the budget, both
    limits are scaled down to it (the reasoning says how many days they then cover at the typical and
    at the margin load). If even the typical load for `days` does not fit, that is a mistake:
    `BridgeConfigError` says what to change. Defaults (a Pi 4 with 2 GB, a typical site): 368,000
    messages / 379 MB: ~19.5 days at the typical load, ~1.9 days at 10x.
    """
    load = load or SiteLoad()
    if not (isinstance(days, int | float) and 0 < days <= 365):
        raise BridgeConfigError("queue_days", f"{days!r} is not a number of days between 0 and 365")
    if not (isinstance(margin, int | float) and margin >= 1):
        raise BridgeConfigError("margin", f"{margin!r} must be a factor of at least 1")
    if not (isinstance(memory_budget_mb, int | float) and memory_budget_mb > 0):
        raise BridgeConfigError("memory_budget_mb", f"{memory_budget_mb!r} must be a positive number of MB")
    per_day_msgs, per_day_bytes, per_day_mem = (
        load.messages_per_day(),
        load.bytes_per_day(),
        load.memory_per_day(),
    )
    if per_day_msgs <= 0 or per_day_bytes <= 0:
        raise BridgeConfigError("load", "the site load must publish something (messages and bytes > 0)")
    budget = memory_budget_mb * 1e6
    if days * per_day_mem > budget:
        raise BridgeConfigError(
            "queue_days",
            f"{days:g} days of a typical site need ~{days * per_day_mem / 1e6:,.0f} MB of Mosquitto memory, "
            f"more than memory_budget_mb={memory_budget_mb:g}: raise the budget (a station with more RAM) "
            f"or plan for at most {budget / per_day_mem:.1f} days",
        )
    want_msgs, want_bytes = days * per_day_msgs * margin, days * per_day_bytes * margin
    want_mem = want_bytes + want_msgs * MOSQUITTO_BYTES_PER_MESSAGE
    scale = min(1.0, budget / want_mem)
    # Readable figures (thousands of messages, whole MB): rounded up while the budget has room,
    # down when the budget decides.
    rounding = math.ceil if scale == 1 else math.floor
    messages = max(1000, rounding(want_msgs * scale / 1000) * 1000)
    nbytes = max(1_000_000, rounding(want_bytes * scale / 1e6) * 1_000_000)
    covers = min(messages / per_day_msgs, nbytes / per_day_bytes)
    reasoning = [
        "A typical site a day: "
        f"{load.collars} collars x {86400 / load.collar_fix_interval_s:g} fixes, "
        f"{load.units} units x {86400 / load.health_interval_s:g} health reports,",
        f"{load.camera_events_per_day:g} camera events (capture messages + a thumbnail), "
        f"{load.station_messages_per_day:g} station messages",
        f"= {per_day_msgs:,.0f} messages, {per_day_bytes / 1e6:,.1f} MB of payload; with Mosquitto's "
        f"~{MOSQUITTO_BYTES_PER_MESSAGE} B per queued message",
        f"that is {per_day_mem / 1e6:,.1f} MB of memory a day.",
        f"Wanted: {days:g} day{'' if days == 1 else 's'} x {margin:g} (margin) = {want_msgs:,.0f} messages, {want_bytes / 1e6:,.0f} MB "
        f"({want_mem / 1e6:,.0f} MB of memory).",
    ]
    if scale < 1:
        reasoning.append(
            f"That exceeds the {memory_budget_mb:g} MB memory budget, so both limits are scaled to fit it."
        )
    reasoning.append(
        f"These limits hold ~{covers:.1f} days at the typical load, ~{covers / margin:.1f} days at "
        f"{margin:g}x the typical load."
    )
    return QueueLimits(messages, nbytes, tuple(reasoning))


def remote_clientid(site: str, station: str) -> str:
    """The bridge's stable client id at the centre: ``uncia-bridge-<site>-<station>``. The centre
    keeps the bridge's session (its command subscription) under this id; never reuse it elsewhere."""
    return f"uncia-bridge-{_name('site', site)}-{_name('station', station)}"


def notification_topic(site: str, station: str) -> str:
    """Where the bridge state is published, retained, on both brokers: ``"1"`` connected, ``"0"`` not.

    Mosquitto's own ``$SYS/broker/connection/<remote clientid>/state``, deliberately outside the
    bridged ``uncia/<site>/#``: a notification inside a bridged pattern is also queued and forwarded
    up, and a stale ``"0"`` then lands retained at the centre after the live ``"1"`` (measured, see
    docs/bridge.md). ``#`` subscriptions do not match ``$SYS`` topics: subscribe to it by name.
    """
    return f"$SYS/broker/connection/{remote_clientid(site, station)}/state"


def bridge_topics(site: str) -> tuple[BridgeTopic, ...]:
    """What crosses: up, everything of the site and its coarsened public feed; down, only the station
    hub's command requests (their responses go up with the rest)."""
    site = _name("site", site)
    return (
        BridgeTopic(f"uncia/{site}/#", "out", 1),
        BridgeTopic(f"uncia-shared/{site}/#", "out", 1),
        BridgeTopic(f"uncia/{site}/+/station/command/+", "in", 1),
    )


def render_queue_limits(limits: QueueLimits) -> str:
    """The global lines (they apply to every client of the broker, the bridge's queue among them)."""
    for field, value in (
        ("max_queued_messages", limits.max_queued_messages),
        ("max_queued_bytes", limits.max_queued_bytes),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise BridgeConfigError(field, f"{value!r} must be a whole number >= 1 (0 would mean no limit)")
    lines = [
        "# --- global: queue limits for clients that are away, the bridge to the centre among them ---",
        "# Mosquitto holds a waiting client's queue in memory (and in mosquitto.db with persistence true).",
        "# While the centre is unreachable everything the site publishes waits here. When a limit is",
        "# reached Mosquitto drops the NEWEST messages and logs 'Outgoing messages are being dropped'.",
        *(f"# {line}" for line in limits.reasoning),
        f"max_queued_messages {limits.max_queued_messages}",
        f"max_queued_bytes {limits.max_queued_bytes}",
    ]
    return "\n".join(lines) + "\n"


def render_connection(
    site: str,
    station: str,
    *,
    address: str,
    tls: BridgeTls | None = None,
    remote_username: str = "",
    remote_password: str = "",
    keepalive: int = 60,
    restart_timeout: tuple[int, int] = (10, 120),
    protocol: str = "mqttv311",
    notification: str | None = None,
) -> str:
    """The ``connection`` block only. `address` is ``host:port`` of the central broker. With
    `remote_password` the text holds a secret: write the file root:mosquitto, mode 0640 (read it from
    a protected file with `password_from_file`). `restart_timeout` is (base, cap) seconds of
    Mosquitto's jittered backoff between reconnection attempts. `notification` overrides
    `notification_topic()`; it must stay outside every ``out`` pattern."""
    client_id = remote_clientid(site, station)
    topics = bridge_topics(site)
    host, port = _address(address)
    if not (isinstance(keepalive, int) and 5 <= keepalive <= 65535):
        raise BridgeConfigError(
            "keepalive", f"{keepalive!r} must be whole seconds, 5 to 65535 (Mosquitto's range)"
        )
    try:
        base, cap = restart_timeout
    except (TypeError, ValueError):
        raise BridgeConfigError(
            "restart_timeout", f"{restart_timeout!r} must be (base, cap) in seconds"
        ) from None
    if not (isinstance(base, int) and isinstance(cap, int) and 1 <= base <= cap <= 86400):
        raise BridgeConfigError(
            "restart_timeout", f"{restart_timeout!r} must be whole seconds, 1 <= base <= cap"
        )
    if protocol not in PROTOCOLS:
        raise BridgeConfigError("protocol", f"{protocol!r} must be one of {', '.join(PROTOCOLS)}")
    state_topic = notification_topic(site, station) if notification is None else notification
    if not _TOPIC.match(state_topic) or "+" in state_topic or "#" in state_topic:
        raise BridgeConfigError(
            "notification", f"{state_topic!r} must be a plain topic (no spaces or wildcards)"
        )
    for t in topics:
        if t.direction == "out" and topic_matches_sub(t.pattern, state_topic):
            raise BridgeConfigError(
                "notification",
                f"{state_topic!r} falls under the bridged pattern {t.pattern!r}: the state would also be "
                "queued and forwarded, and the centre would keep a stale '0'; choose a topic outside it",
            )
    _value("remote_username", remote_username)
    _value("remote_password", remote_password, secret=True)
    if remote_password and not remote_username:
        raise BridgeConfigError("remote_password", "needs remote_username too (Mosquitto ignores it alone)")

    lines = [
        f"# --- bridge to the centre: {client_id} ---",
        "# Up (out): everything the site publishes and its coarsened public feed. Down (in): only the",
        "# station hub's command requests; their responses go up with the rest. QoS 1 both ways.",
        f"connection {client_id}",
        f"address {host}:{port}",
        f"remote_clientid {client_id}",
        f"local_clientid local.{client_id}",
        "# Persistent sessions on both sides: the centre keeps the command subscription while the",
        "# station is away, and this broker keeps what waits to go up (see the queue limits).",
        "cleansession false",
        "local_cleansession false",
        "start_type automatic",
        f"restart_timeout {base} {cap}",
        f"keepalive_interval {keepalive}",
        f"bridge_protocol_version {protocol}",
        "try_private true",
        "bridge_attempt_unsubscribe false",
        "# Retained '1' (connected) / '0' (not) here and at the centre; at the centre '0' is the",
        "# bridge's will, so a station that dies shows '0' there. Outside the bridged topics on purpose.",
        "notifications true",
        f"notification_topic {state_topic}",
    ]
    if remote_username:
        lines.append(f"remote_username {remote_username}")
    if remote_password:
        lines.append(f"remote_password {remote_password}")
    if tls is not None:
        lines += _tls_lines(tls)
    lines += [f"topic {t.pattern} {t.direction} {t.qos}" for t in topics]
    return "\n".join(lines) + "\n"


def render_bridge(
    site: str,
    station: str,
    *,
    address: str,
    tls: BridgeTls | None = None,
    remote_username: str = "",
    remote_password: str = "",
    queue_days: float = 7.0,
    limits: QueueLimits | None = None,
    keepalive: int = 60,
    restart_timeout: tuple[int, int] = (10, 120),
    protocol: str = "mqttv311",
) -> str:
    """A complete conf.d file: a header, the global queue limits (`limits`, else
    ``queue_limits(queue_days)``), then the ``connection`` block (`render_connection`).

    Put it last (a ``connection`` line opens a block that later bridge options would join) and keep
    ``persistence true`` in the main config. Raises `BridgeConfigError` naming the field at fault.
    """
    connection = render_connection(
        site,
        station,
        address=address,
        tls=tls,
        remote_username=remote_username,
        remote_password=remote_password,
        keepalive=keepalive,
        restart_timeout=restart_timeout,
        protocol=protocol,
    )
    header = [
        f"# uncia station bridge: {site}/{station} -> {address}",
        "# Rendered by gateway/bridge_config.py (render_bridge); change its inputs, not this text.",
        "# Needs 'persistence true' in the main mosquitto.conf, or a restarted broker forgets the",
        "# messages waiting for the centre. Check the link: docs/bridge.md.",
    ]
    queue = render_queue_limits(limits if limits is not None else queue_limits(queue_days))
    return "\n".join(header) + "\n\n" + queue + "\n" + connection


def password_from_file(path: str | os.PathLike[str]) -> str:
    """The bridge password from the first line of `path`, refusing a file that group or others may
    read or write (``chmod 600``), as the units' [mqtt] password_file. Not echoed in any error."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BridgeConfigError("remote_password_file", f"cannot read {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise BridgeConfigError(
            "remote_password_file",
            f"{path} is open to group/others (mode {stat.filemode(mode)}): chmod 600 {path}",
        )
    lines = text.splitlines()
    password = lines[0] if lines else ""
    if not password:
        raise BridgeConfigError(
            "remote_password_file", f"{path} is empty: put the password on its first line"
        )
    _value("remote_password_file", password, secret=True)
    return password


def _tls_lines(tls: BridgeTls) -> list[str]:
    if tls.version not in TLS_VERSIONS:
        raise BridgeConfigError("tls.version", f"{tls.version!r} must be one of {', '.join(TLS_VERSIONS)}")
    if bool(tls.certfile) != bool(tls.keyfile):
        raise BridgeConfigError(
            "tls.certfile", "give the client certificate and its key together, or neither"
        )
    lines = [f"bridge_cafile {_path('tls.cafile', tls.cafile)}"]
    if tls.certfile:
        lines.append(f"bridge_certfile {_path('tls.certfile', tls.certfile)}")
        lines.append(f"bridge_keyfile {_path('tls.keyfile', tls.keyfile)}")
    lines.append(f"bridge_tls_version {tls.version}")
    return lines


def _name(field: str, value: object) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise BridgeConfigError(
            field,
            f"{value!r} must be 1-63 lowercase letters, digits, '-' or '_', starting with a letter or digit",
        )
    return value


def _value(field: str, value: object, *, secret: bool = False) -> str:
    """Anything written after an option name: one token, no comment sign, printable."""
    if not isinstance(value, str):
        raise BridgeConfigError(field, f"must be text, not {type(value).__name__}")
    if value and (not value.isprintable() or any(c.isspace() or c == "#" for c in value)):
        shown = "the value" if secret else repr(value)
        raise BridgeConfigError(
            field, f"{shown} contains a space, newline, control character or '#': Mosquitto would misread it"
        )
    return value


def _path(field: str, value: str) -> str:
    _value(field, value)
    if not value.startswith("/"):
        raise BridgeConfigError(
            field, f"{value!r} must be an absolute path (Mosquitto may run from any directory)"
        )
    return value


def _address(address: object) -> tuple[str, int]:
    if not isinstance(address, str) or address.count(":") != 1:
        raise BridgeConfigError("address", f"{address!r} must be host:port, e.g. central.example.org:8883")
    host, _, port_text = address.partition(":")
    if not _HOST.match(host):
        raise BridgeConfigError("address", f"host {host!r} must be a DNS name or an IPv4 address")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise BridgeConfigError("address", f"port {port_text!r} must be a number from 1 to 65535")
    return host, int(port_text)
