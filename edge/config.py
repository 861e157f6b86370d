"""A unit's configuration: one TOML file per unit, validated once at start.

Every mistake is reported as a `ConfigError` that names the key, the value found and what is expected,
so a technician can fix the file without reading code. Unknown keys are errors too: a misspelt key
silently ignored is a setting that silently does not apply.

Example (see deploy/gateway.example.toml for the full, commented file)::

    [unit]
    id = "gw-01"
    site = "helan"

    [mqtt]
    host = "127.0.0.1"

    [[serial]]
    name = "gps0"
    port = "/dev/uncia-gps0"
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

# Ids and names end up in MQTT topics, file names and generated configs: keep them to a safe alphabet.
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class ConfigError(ValueError):
    """The configuration is wrong; the message says which key, what was found and what is expected."""

    def __init__(self, key: str, value: object, expected: str, source: str | None = None) -> None:
        self.key, self.value, self.expected, self.source = key, value, expected, source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}config key '{key}' = {value!r}: expected {expected}")


@dataclass(frozen=True)
class UnitSettings:
    id: str
    site: str
    role: str = "gateway"


@dataclass(frozen=True)
class MqttSettings:
    """How the unit reaches its broker. Secrets come from files (0600), never from the config text."""

    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = ""  # empty: "uncia-<site>-<unit>"
    username: str = ""
    password_file: str = ""
    tls: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    keepalive: int = 30
    window: int = 200  # publishes awaiting PUBACK at once

    def password(self) -> str | None:
        """The password, read from `password_file` (first line), or None when unset."""
        return read_secret(self.password_file, "mqtt.password_file") if self.password_file else None


def read_secret(path: str, key: str) -> str:
    """The first line of a secret file (a password), or `ConfigError` naming the config key."""
    try:
        return Path(path).read_text().splitlines()[0]
    except (OSError, IndexError) as exc:
        raise ConfigError(key, path, f"a readable file with the password ({exc})") from exc


@dataclass(frozen=True)
class OutboxSettings:
    path: str = "/var/lib/uncia/outbox.sqlite3"
    max_messages: int = 2_000_000  # about days of a busy station; beyond it, shedding (logged)
    commit_interval: float = 0.05  # seconds between durable commits of accepted messages


@dataclass(frozen=True)
class SerialSettings:
    """One serial source: a device path (a udev link like /dev/uncia-gps0) or a pyserial URL."""

    name: str
    port: str
    baudrate: int = 9600
    kind: str = "nmea"


@dataclass(frozen=True)
class LoraSettings:
    """One LoRa modem: its serial port, its AT dialect (`family`) and the radio link it listens on."""

    name: str
    port: str
    family: str  # "rylr" (Reyax RYLR896/RYLR998) or "rak3172" (RAKwireless RAK3172, P2P mode)
    baudrate: int = 115200
    band: str = "CN470"
    frequency_hz: int = 470_300_000
    spreading_factor: int = 9  # the highest REYAX's 470 MHz RYLR498 takes at 125 kHz
    bandwidth_khz: int = 125
    coding_rate: int = 1
    preamble: int = 8
    tx_power_dbm: int = 17
    network_id: int = 18
    address: int = 1
    reset_pin: int = -1  # BCM GPIO wired to the module's reset input; -1: none (soft reset only)
    health_interval: float = 60.0  # seconds between "are you still there" checks
    duty_cycle_percent: float = 1.0  # regional limit for this unit's own transmissions
    # The collars' compact payload carries positions as offsets from a registered site centre, and the
    # site number in its CRC (docs/lora-payload.md): 1 = Helan Shan. Another reserve: a new number with
    # its centre here (the collars must be flashed with the same).
    site_number: int = 1
    site_lat: float | None = None
    site_lon: float | None = None

    def payload_site(self) -> Any:
        """The `edge.lora.payload.Site` the collars' positions are relative to."""
        from edge.lora.payload import SITES, Site

        if self.site_lat is None and self.site_lon is None:
            if self.site_number not in SITES:
                raise ValueError(f"site {self.site_number} is not registered: give site_lat and site_lon")
            return SITES[self.site_number]
        if self.site_lat is None or self.site_lon is None:
            raise ValueError("give both site_lat and site_lon, or neither")
        return Site(f"site-{self.site_number}", self.site_number, self.site_lat, self.site_lon)

    def radio(self) -> Any:
        """The `edge.lora.modem.RadioSettings` for the driver (validated when the config is read)."""
        from edge.lora.modem import RadioSettings

        return RadioSettings(
            band=self.band,
            frequency_hz=self.frequency_hz,
            spreading_factor=self.spreading_factor,
            bandwidth_khz=self.bandwidth_khz,
            coding_rate=self.coding_rate,
            preamble=self.preamble,
            tx_power_dbm=self.tx_power_dbm,
            network_id=self.network_id,
            address=self.address,
        )


LORA_FAMILIES = ("rylr", "rak3172")


@dataclass(frozen=True)
class FixGate:
    """Which fixes are worth relaying: minimum GGA quality (1 = GPS) and maximum HDOP."""

    min_quality: int = 1
    max_hdop: float | None = None


@dataclass(frozen=True)
class HealthSettings:
    interval: float = 60.0  # seconds between health messages


@dataclass(frozen=True)
class CameraSettings:
    """A camera unit's camera, pins, capture policy, image card and where it stands (``[camera]``).

    ``lat``/``lon`` (WGS 84 degrees) and ``alt`` (metres) are the unit's position: written into
    every image's EXIF and used for day/night from the sun when no light sensor is wired. Pins are
    BCM GPIO numbers; ``light_sensor_pin = -1`` means none. A burst takes one still every
    ``burst_interval_s`` while the PIR still sees motion, at most ``max_burst``; after it, triggers
    within ``retrigger_interval_s`` start nothing. ``pre_trigger_s`` seconds of low-resolution frames
    before each trigger are kept with the event. Below ``low_free_mb`` free on the image card, relayed
    images are deleted oldest first; unrelayed ones only below ``hard_free_mb``.
    """

    lat: float
    lon: float
    alt: float | None = None
    id: str = "cam0"  # the camera's name in topics and EXIF (BodySerialNumber)
    backend: str = "picamera2"  # "picamera2" on a Pi, "simulated" anywhere
    tuning_file: str = ""  # e.g. "imx708_noir.json" for a NoIR module; empty: libcamera's default
    main_width: int = 1920
    main_height: int = 1080
    lores_width: int = 320
    lores_height: int = 240
    fps: float = 10.0
    pir_pin: int = 17
    pir_bounce_s: float = 0.05
    illuminator_pin: int = 23
    light_sensor_pin: int = -1
    night_below_deg: float = -6.0  # sun elevation below which it is night (no light sensor)
    pre_trigger_s: float = 2.0
    burst_interval_s: float = 0.5
    max_burst: int = 10
    retrigger_interval_s: float = 5.0
    image_dir: str = "/var/lib/uncia/images"
    low_free_mb: float = 500.0
    hard_free_mb: float = 100.0
    thumbnail_bytes: int = 20_000
    # Paired cameras, collar proximity and the camera's own health (docs/camera.md):
    pair_with: str = ""  # the partner unit's id at the same site (other flank of the trail); "" = none
    collar_rssi_dbm: float = -80.0  # a collar heard louder than this (a [[lora]] modem) arms capture
    proximity_hold_s: float = 600.0  # ... for this long after the last time it was heard
    relay_collars: bool = True  # relay every collar fix its modem hears to the station (more coverage)
    health_interval_s: float = 600.0  # the camera's status (counters, disk, temperature, degraded)
    degraded_after_h: float = 48.0  # no light change for this long: buried in snow, lens iced


CAMERA_BACKENDS = ("picamera2", "simulated")


@dataclass(frozen=True)
class StationSettings:
    """The base station's hub (``[station]``, gateway role only): the station record, alert limits
    and the staff web page. Times are in the unit the key names; distances in metres.

    ``boundary`` is a GeoJSON file: Polygon/MultiPolygon features with ``properties.kind``
    ``"reserve"`` (the reserve boundary: a fix outside it raises a geofence alert) or ``"village"`` /
    ``"camp"`` (a fix within ``conflict_buffer_m`` of one raises a conflict alert). Empty: no geofence.
    """

    record: str = "/var/lib/uncia/station.sqlite3"
    image_dir: str = "/var/lib/uncia/station-images"  # full images fetched from camera units
    retention_days: float = 400.0  # fixes, captures and cleared alerts older than this are pruned
    boundary: str = ""
    web: bool = True
    web_host: str = "0.0.0.0"  # the station LAN; "127.0.0.1" keeps the page on this machine
    web_port: int = 8080
    web_password_file: str = (
        ""  # first line: the staff page's password (user "staff"); empty: open to the LAN
    )
    unit_offline_min: float = 30.0
    collar_silent_h: float = 6.0
    mortality_radius_m: float = 50.0  # fixes staying within this radius ...
    mortality_h: float = 12.0  # ... for this long: mortality or collar drop-off
    conflict_buffer_m: float = 1000.0
    low_battery_percent: float = 20.0  # collars (percent from the LoRa payload)
    low_battery_v: float = 3.4  # camera units (battery_v in their health)
    disk_full_percent: float = 90.0
    coarse_precision_m: float = 1000.0  # the shared position feed is rounded to this grid

    @property
    def web_open_to_network(self) -> bool:
        """The staff page listens beyond this machine without a password (warned at start and by selftest)."""
        return not self.web_password_file and self.web_host not in ("127.0.0.1", "localhost", "::1")

    def web_password(self) -> str | None:
        """The staff page's password (first line of `web_password_file`), or None: no password."""
        return (
            read_secret(self.web_password_file, "station.web_password_file")
            if self.web_password_file
            else None
        )


@dataclass(frozen=True)
class UnitConfig:
    unit: UnitSettings
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    outbox: OutboxSettings = field(default_factory=OutboxSettings)
    serial: tuple[SerialSettings, ...] = ()
    lora: tuple[LoraSettings, ...] = ()
    fixes: FixGate = field(default_factory=FixGate)
    health: HealthSettings = field(default_factory=HealthSettings)
    camera: CameraSettings | None = None
    station: StationSettings | None = None
    uplink: Any = None  # gateway.uplink.settings.UplinkSettings: EarthRanger, Iridium (docs/uplinks.md)


_BAUDRATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)


def _section(table: Any, key_path: str, cls: type, source: str | None) -> Any:
    """Build dataclass `cls` from `table`, checking keys and value types against its fields."""
    if not isinstance(table, Mapping):
        raise ConfigError(key_path, table, "a table ([" + key_path + "])", source)
    known = {f.name: f for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        if key not in known:
            raise ConfigError(f"{key_path}.{key}", value, f"one of {', '.join(sorted(known))}", source)
        kwargs[key] = _check_type(f"{key_path}.{key}", value, known[key].type, source)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        missing = [k for k, f in known.items() if k not in kwargs and _required(f)]
        raise ConfigError(
            f"{key_path}.{missing[0] if missing else '?'}", None, "a value (it is required)", source
        ) from exc


def _required(f: Any) -> bool:
    from dataclasses import MISSING

    return f.default is MISSING and f.default_factory is MISSING


def _check_type(key: str, value: Any, annotation: str, source: str | None) -> Any:
    if annotation == "str":
        if not isinstance(value, str):
            raise ConfigError(key, value, "a string in quotes", source)
    elif annotation == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, value, "a whole number", source)
    elif annotation in ("float", "float | None"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(key, value, "a number", source)
        value = float(value)
    elif annotation == "bool" and not isinstance(value, bool):
        raise ConfigError(key, value, "true or false", source)
    return value


def _positive(key: str, value: float, source: str | None, *, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(key, value, "a number greater than 0", source)


def parse_config(data: Mapping[str, Any], source: str | None = None) -> UnitConfig:
    """Validate an already-loaded TOML document; raise `ConfigError` on the first problem."""
    allowed = {"unit", "mqtt", "outbox", "serial", "lora", "fixes", "health", "camera", "station", "uplink"}
    for key in data:
        if key not in allowed:
            raise ConfigError(key, data[key], f"one of the sections {', '.join(sorted(allowed))}", source)
    if "unit" not in data:
        raise ConfigError("unit", None, "a [unit] table with id and site", source)
    unit = _section(data["unit"], "unit", UnitSettings, source)
    for key in ("id", "site"):
        value = getattr(unit, key)
        if not _NAME.fullmatch(value):
            raise ConfigError(
                f"unit.{key}", value, "lowercase letters, digits, '-' or '_' (at most 63)", source
            )
    if unit.role not in ("gateway", "camera"):
        raise ConfigError("unit.role", unit.role, "'gateway' or 'camera'", source)

    mqtt = _section(data.get("mqtt", {}), "mqtt", MqttSettings, source)
    if not 0 < mqtt.port < 65536:
        raise ConfigError("mqtt.port", mqtt.port, "a TCP port between 1 and 65535", source)
    if not 5 <= mqtt.keepalive <= 3600:
        raise ConfigError("mqtt.keepalive", mqtt.keepalive, "seconds between 5 and 3600", source)
    if not 1 <= mqtt.window <= 10_000:
        raise ConfigError("mqtt.window", mqtt.window, "between 1 and 10000", source)
    if mqtt.password_file and not mqtt.username:
        raise ConfigError("mqtt.username", "", "a user name when mqtt.password_file is set", source)
    for key in ("ca_file", "cert_file", "key_file", "password_file"):
        path = getattr(mqtt, key)
        if path and not Path(path).is_file():
            raise ConfigError(f"mqtt.{key}", path, "an existing file", source)
    if (mqtt.cert_file or mqtt.key_file or mqtt.ca_file) and not mqtt.tls:
        raise ConfigError("mqtt.tls", False, "true when certificate files are given", source)

    outbox = _section(data.get("outbox", {}), "outbox", OutboxSettings, source)
    if outbox.max_messages < 1000:
        raise ConfigError("outbox.max_messages", outbox.max_messages, "at least 1000", source)
    _positive("outbox.commit_interval", outbox.commit_interval, source)

    raw_serial = data.get("serial", [])
    if not isinstance(raw_serial, list):
        raise ConfigError("serial", raw_serial, "a list of [[serial]] tables", source)
    serial: list[SerialSettings] = []
    for index, entry in enumerate(raw_serial):
        item = _section(entry, f"serial[{index}]", SerialSettings, source)
        if not _NAME.fullmatch(item.name):
            raise ConfigError(
                f"serial[{index}].name", item.name, "lowercase letters, digits, '-' or '_'", source
            )
        if item.baudrate not in _BAUDRATES:
            raise ConfigError(
                f"serial[{index}].baudrate",
                item.baudrate,
                "a standard rate (" + ", ".join(map(str, _BAUDRATES)) + ")",
                source,
            )
        if item.kind != "nmea":
            raise ConfigError(f"serial[{index}].kind", item.kind, "'nmea'", source)
        if any(s.name == item.name for s in serial):
            raise ConfigError(f"serial[{index}].name", item.name, "a name used only once", source)
        serial.append(item)

    lora = _lora_sections(data.get("lora", []), {s.name for s in serial}, source)

    fixes = _section(data.get("fixes", {}), "fixes", FixGate, source)
    if not 0 <= fixes.min_quality <= 8:
        raise ConfigError("fixes.min_quality", fixes.min_quality, "a GGA quality 0-8", source)
    if fixes.max_hdop is not None:
        _positive("fixes.max_hdop", fixes.max_hdop, source)

    health = _section(data.get("health", {}), "health", HealthSettings, source)
    _positive("health.interval", health.interval, source)
    camera = None if "camera" not in data else _camera_section(data["camera"], lora, source)
    if camera is not None and camera.pair_with == unit.id:
        raise ConfigError(
            "camera.pair_with", camera.pair_with, "another unit's id (not this unit's own)", source
        )
    station = None if "station" not in data else _station_section(data["station"], source)
    if station is not None and unit.role != "gateway":
        raise ConfigError(
            "station", "[station]", "only in a gateway's config (unit.role = 'gateway')", source
        )
    uplink = None
    if "uplink" in data:
        if station is None:
            raise ConfigError(
                "uplink", "[uplink]", "a gateway with a [station] section (uplinks send its record)", source
            )
        from gateway.uplink.settings import parse_uplink  # the station's concern; imported only here

        uplink = parse_uplink(data["uplink"], source)
    return UnitConfig(unit, mqtt, outbox, tuple(serial), lora, fixes, health, camera, station, uplink)


def _station_section(raw: Any, source: str | None) -> StationSettings:
    st = _section(raw, "station", StationSettings, source)
    if not 0 <= st.web_port < 65536:
        raise ConfigError(
            "station.web_port", st.web_port, "a TCP port between 1 and 65535 (0: any free port)", source
        )
    for key in (
        "retention_days",
        "unit_offline_min",
        "collar_silent_h",
        "mortality_radius_m",
        "mortality_h",
        "coarse_precision_m",
        "low_battery_v",
    ):
        _positive(f"station.{key}", getattr(st, key), source)
    _positive("station.conflict_buffer_m", st.conflict_buffer_m, source, allow_zero=True)
    for key in ("low_battery_percent", "disk_full_percent"):
        if not 0 <= getattr(st, key) <= 100:
            raise ConfigError(f"station.{key}", getattr(st, key), "a percentage 0-100", source)
    if st.web_password_file and not Path(st.web_password_file).is_file():
        raise ConfigError(
            "station.web_password_file", st.web_password_file, "an existing file (mode 0600)", source
        )
    if st.boundary and not Path(st.boundary).is_file():
        raise ConfigError("station.boundary", st.boundary, "an existing GeoJSON file", source)
    return st


def _camera_section(raw: Any, lora: tuple[LoraSettings, ...], source: str | None) -> CameraSettings:
    cam = _section(raw, "camera", CameraSettings, source)

    def need(key: str, ok: bool, expected: str) -> None:
        if not ok:
            raise ConfigError(f"camera.{key}", getattr(cam, key), expected, source)

    for f in fields(cam):
        value = getattr(cam, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"camera.{f.name}", value, "a finite number", source)
    need("id", bool(_NAME.fullmatch(cam.id)), "lowercase letters, digits, '-' or '_' (at most 63)")
    need("backend", cam.backend in CAMERA_BACKENDS, " or ".join(map(repr, CAMERA_BACKENDS)))
    need("lat", -90.0 <= cam.lat <= 90.0, "degrees from -90 (south) to 90 (north)")
    need("lon", -180.0 <= cam.lon <= 180.0, "degrees from -180 (west) to 180 (east)")
    need("alt", cam.alt is None or -1000.0 <= cam.alt <= 10_000.0, "metres above sea level, -1000 to 10000")
    for key in ("main_width", "main_height", "lores_width", "lores_height"):
        need(key, 16 <= getattr(cam, key) <= 9152, "pixels, 16 to 9152")
    need("lores_width", cam.lores_width <= cam.main_width, "no wider than main_width")
    need("lores_height", cam.lores_height <= cam.main_height, "no taller than main_height")
    need("fps", 1.0 <= cam.fps <= 60.0, "frames per second, 1 to 60")
    need("pir_bounce_s", 0.0 <= cam.pir_bounce_s <= 1.0, "seconds, 0 to 1")
    need("night_below_deg", -18.0 <= cam.night_below_deg <= 10.0, "degrees of sun elevation, -18 to 10")
    # Two seconds is the least that still shows an animal entering the picture before the PIR fires;
    # 30 s of lores frames is already ~10 MB of memory.
    need("pre_trigger_s", 2.0 <= cam.pre_trigger_s <= 30.0, "seconds, 2 to 30")
    need("burst_interval_s", 0.1 <= cam.burst_interval_s <= 60.0, "seconds between stills, 0.1 to 60")
    need("max_burst", 1 <= cam.max_burst <= 100, "stills per burst, 1 to 100")
    need("retrigger_interval_s", 0.0 <= cam.retrigger_interval_s <= 3600.0, "seconds, 0 to 3600")
    need("image_dir", bool(cam.image_dir.strip()), "a folder for the images")
    need("hard_free_mb", cam.hard_free_mb >= 0.0, "megabytes, 0 or more")
    need("low_free_mb", cam.low_free_mb >= cam.hard_free_mb, "megabytes, at least hard_free_mb")
    need("thumbnail_bytes", 1024 <= cam.thumbnail_bytes <= 20_000, "bytes, 1024 to 20000")
    need(
        "pair_with",
        not cam.pair_with or bool(_NAME.fullmatch(cam.pair_with)),
        'the partner unit\'s id, or ""',
    )
    need("collar_rssi_dbm", -140.0 <= cam.collar_rssi_dbm <= 0.0, "dBm, -140 to 0")
    need("proximity_hold_s", 1.0 <= cam.proximity_hold_s <= 86_400.0, "seconds, 1 to 86400")
    need("health_interval_s", 10.0 <= cam.health_interval_s <= 86_400.0, "seconds, 10 to 86400")
    # In the field keep it above a day: a working camera sees a dawn or a dusk every day, and one long
    # dark night must not count. Shorter settings are for tests and simulations.
    need("degraded_after_h", 1.0 <= cam.degraded_after_h <= 720.0, "hours, 1 to 720")
    pins = {"pir_pin": cam.pir_pin, "illuminator_pin": cam.illuminator_pin}
    if cam.light_sensor_pin != -1:
        pins["light_sensor_pin"] = cam.light_sensor_pin
    need("light_sensor_pin", -1 <= cam.light_sensor_pin <= 27, "a BCM GPIO number 0-27, or -1 for none")
    taken = {item.reset_pin: f"lora {item.name} reset_pin" for item in lora if item.reset_pin >= 0}
    for key, pin in pins.items():
        need(key, 0 <= pin <= 27, "a BCM GPIO number 0-27")
        need(key, pin not in taken, f"a GPIO not already used (it is the {taken.get(pin)})")
        taken[pin] = f"camera {key}"
    return cam


def _lora_sections(raw: Any, taken: set[str], source: str | None) -> tuple[LoraSettings, ...]:
    if not isinstance(raw, list):
        raise ConfigError("lora", raw, "a list of [[lora]] tables", source)
    out: list[LoraSettings] = []
    for index, entry in enumerate(raw):
        key = f"lora[{index}]"
        item = _section(entry, key, LoraSettings, source)
        if not _NAME.fullmatch(item.name):
            raise ConfigError(f"{key}.name", item.name, "lowercase letters, digits, '-' or '_'", source)
        if item.name in taken or any(o.name == item.name for o in out):
            raise ConfigError(f"{key}.name", item.name, "a name no other source uses", source)
        if item.family not in LORA_FAMILIES:
            raise ConfigError(f"{key}.family", item.family, " or ".join(map(repr, LORA_FAMILIES)), source)
        if item.baudrate not in _BAUDRATES:
            raise ConfigError(f"{key}.baudrate", item.baudrate, "a standard rate such as 115200", source)
        _positive(f"{key}.health_interval", item.health_interval, source)
        if not -1 <= item.reset_pin <= 27:
            raise ConfigError(
                f"{key}.reset_pin", item.reset_pin, "a BCM GPIO number 0-27, or -1 for none", source
            )
        if not 0 < item.duty_cycle_percent <= 100:
            raise ConfigError(
                f"{key}.duty_cycle_percent", item.duty_cycle_percent, "a percentage above 0", source
            )
        try:
            item.payload_site()
        except ValueError as exc:
            raise ConfigError(f"{key}.site_number", item.site_number, str(exc), source) from exc
        try:
            item.radio()
        except ValueError as exc:  # RadioSettingError: names the radio field and what it must be
            name = getattr(exc, "field", "band")
            raise ConfigError(
                f"{key}.{name}", getattr(item, name), getattr(exc, "expected", str(exc)), source
            ) from exc
        out.append(item)
    return tuple(out)


def effective_config(config: UnitConfig) -> dict[str, Any]:
    """The configuration as the unit parsed it, defaults filled in, JSON-ready. Holds no secret: the
    config names files (password, key) but never carries their contents."""
    return asdict(config)


def config_hash(config: UnitConfig) -> str:
    """12 hex digits that change whenever the effective configuration does (shown in the unit registry,
    so staff see which units run an old config)."""
    text = json.dumps(effective_config(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def software_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("uncia")
    except PackageNotFoundError:
        return "unknown"


def unit_identity(config: UnitConfig) -> dict[str, Any]:
    """What a unit says about itself in every health report: role, software version, config hash."""
    return {"role": config.unit.role, "software": software_version(), "config_hash": config_hash(config)}


def load_config(path: str | Path) -> UnitConfig:
    """Read and validate a unit's TOML file."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError("(file)", str(path), f"a readable config file ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError("(file)", str(path), "UTF-8 text") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("(syntax)", str(path), f"valid TOML ({exc})", str(path)) from exc
    return parse_config(data, source=str(path))
