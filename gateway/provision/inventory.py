"""The site inventory: one TOML file listing a site's units, people and dashboards.

Everything `uncia provision` writes (unit configs, udev rules, the broker's ACL and password file,
first-boot scripts) comes from this file, so it is checked strictly before anything is generated:
unknown keys, wrong types, and any value that could break out of a generated file (a newline or
``#`` in an id, ``..`` in a path, a quote in a USB serial number) are errors. Each error names the
unit and the field, e.g. ``unit cam-03: gpio.pir = 'x': expected a BCM pin number 0-27``.

See deploy/site-inventory.example.toml for a commented example.
"""

from __future__ import annotations

import ipaddress
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from edge.config import LORA_FAMILIES

# The same alphabet as edge.config and edge.topics: names end up in MQTT topics, user names, file
# names, udev symlinks and shell scripts, so no wildcard, separator, quote, space or newline.
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
NAME_RULE = "lowercase letters, digits, '-' or '_', starting with a letter or digit (at most 63)"
_HEX4 = re.compile(r"^[0-9a-f]{4}$")
# USB serial numbers go into a double-quoted udev match: no quotes, backslashes, '*', '?' or '['.
_USB_SERIAL = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_UNIT_PATH = re.compile(r"/[A-Za-z0-9._/-]+")
_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
ROLES = ("gateway", "camera")
AUTH_MODES = ("password", "certificate")

# Keys of the unit config that provisioning sets itself; the pass-through tables may not set them.
_CAMERA_OWN = {"lat", "lon", "alt", "pir_pin", "illuminator_pin", "light_sensor_pin", "pair_with"}
_LORA_OWN = {"name", "port", "baudrate", "family", "reset_pin"}
_STATION_OWN = {"boundary", "coarse_precision_m"}


class InventoryError(ValueError):
    """A mistake in the inventory; the message names where (unit, staff, site), the field and the fix."""

    def __init__(self, where: str, key: str, value: object, expected: str) -> None:
        self.where, self.key, self.value, self.expected = where, key, value, expected
        super().__init__(f"{where}: {key} = {value!r}: expected {expected}")


@dataclass(frozen=True)
class UsbSerial:
    """A USB serial adapter (GPS receiver or LoRa modem), matched by udev to get a stable name."""

    kind: str  # "gps" or "lora": the /dev/uncia-<kind><index> link
    index: int
    vendor: str  # 4 hex digits, as `lsusb` shows them (idVendor)
    product: str  # 4 hex digits (idProduct)
    serial_number: str = ""  # the adapter's iSerial; needed when two identical adapters are on one unit
    baudrate: int = 9600

    @property
    def name(self) -> str:
        return f"{self.kind}{self.index}"

    @property
    def link(self) -> str:
        return f"/dev/uncia-{self.name}"


@dataclass(frozen=True)
class LoraModem:
    usb: UsbSerial
    family: str
    reset_pin: int = -1
    radio: Mapping[str, Any] = field(default_factory=dict)  # [[lora]] radio keys, checked by edge.config


@dataclass(frozen=True)
class Position:
    lat: float
    lon: float
    alt: float | None = None


@dataclass(frozen=True)
class Unit:
    """One field unit: the base-station gateway or a camera unit."""

    id: str
    role: str
    gps: tuple[UsbSerial, ...] = ()
    lora: tuple[LoraModem, ...] = ()
    position: Position | None = None
    pir_pin: int = 17
    illuminator_pin: int = 23
    light_sensor_pin: int = -1
    pair_with: str = ""
    camera: Mapping[str, Any] = field(default_factory=dict)  # extra [camera] keys for the unit config
    station: Mapping[str, Any] = field(default_factory=dict)  # extra [station] keys (gateway only)


@dataclass(frozen=True)
class Bridge:
    """The connection from the station's broker to the central broker (optional), always over TLS:
    it carries exact positions beyond the station. Files are on the technician's machine (relative
    to the inventory) and are copied to the gateway; the password file must be mode 0600."""

    address: str
    ca_file: Path
    port: int = 8883
    remote_username: str = ""
    remote_password_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    queue_days: float = 7.0
    protocol: str = "mqttv311"


@dataclass(frozen=True)
class Site:
    name: str
    broker_address: str  # how camera units, staff and dashboards reach the gateway's broker
    auth: str = "password"
    broker_port: int = 8883  # the TLS listener
    local_port: int = 1883  # the loopback listener for the gateway's own services
    boundary: Path | None = None  # GeoJSON file on the technician's machine, copied to the gateway
    coarse_precision_m: float = 1000.0


@dataclass(frozen=True)
class Inventory:
    site: Site
    units: tuple[Unit, ...]
    staff: tuple[str, ...] = ()
    dashboards: tuple[str, ...] = ()
    bridge: Bridge | None = None
    source: str = ""

    @property
    def gateway(self) -> Unit:
        return next(u for u in self.units if u.role == "gateway")

    def unit(self, unit_id: str) -> Unit:
        for unit in self.units:
            if unit.id == unit_id:
                return unit
        known = ", ".join(u.id for u in self.units)
        raise InventoryError("inventory", "unit", unit_id, f"one of the units listed ({known})")

    def identities(self) -> list[tuple[str, str]]:
        """Every MQTT identity as (name, kind): units, then staff, then dashboards."""
        return (
            [(u.id, "unit") for u in self.units]
            + [(s, "staff") for s in self.staff]
            + [(d, "dashboard") for d in self.dashboards]
        )


# -- checking helpers ---------------------------------------------------------------------------


class _Table:
    """One TOML table being read: every key must be taken, so leftovers are reported as unknown."""

    def __init__(self, where: str, prefix: str, raw: Any) -> None:
        self.where, self.prefix = where, prefix
        if not isinstance(raw, Mapping):
            raise InventoryError(where, prefix.rstrip(".") or "(table)", raw, "a table")
        self.raw = dict(raw)

    def error(self, key: str, value: object, expected: str) -> InventoryError:
        return InventoryError(self.where, self.prefix + key, value, expected)

    def take(self, key: str, kind: type | tuple[type, ...], default: Any = ..., expected: str = "") -> Any:
        if key not in self.raw:
            if default is ...:
                raise self.error(key, None, f"a value ({expected or kind} is required)")
            return default
        value = self.raw.pop(key)
        kinds = kind if isinstance(kind, tuple) else (kind,)
        wrong_bool = isinstance(value, bool) and bool not in kinds
        if wrong_bool or not isinstance(value, kinds):
            raise self.error(key, value, expected or _describe(kinds))
        if isinstance(value, float) and not math.isfinite(value):
            raise self.error(key, value, "a finite number")
        return float(value) if float in kinds and isinstance(value, int) and int not in kinds else value

    def name(self, key: str, default: Any = ...) -> str:
        value = self.take(key, str, default, NAME_RULE)
        if value and not NAME.fullmatch(value):
            raise self.error(key, value, NAME_RULE)
        return value

    def pin(self, key: str, default: int, *, allow_none: bool = False) -> int:
        rule = "a BCM pin number 0-27" + (", or -1 for none" if allow_none else "")
        value = self.take(key, int, default, rule)
        if not (0 <= value <= 27 or (allow_none and value == -1)):
            raise self.error(key, value, rule)
        return value

    def done(self) -> None:
        for key, value in self.raw.items():
            raise self.error(key, value, "no such key (check the spelling; see site-inventory.example.toml)")


def _describe(kinds: tuple[type, ...]) -> str:
    words = {str: "a string in quotes", int: "a whole number", float: "a number", bool: "true or false"}
    return " or ".join(words.get(k, k.__name__) for k in kinds)


def check_safe_text(where: str, key: str, value: str) -> None:
    """No control characters (newline, tab, NUL, ...) in any text that reaches a generated file."""
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise InventoryError(where, key, value, "text without newlines or other control characters")


def check_relative_path(where: str, key: str, value: str) -> None:
    """A path must not climb out of its folder with '..' (it could reach any file on the machine)."""
    check_safe_text(where, key, value)
    if not value.strip() or ".." in PurePosixPath(value.replace("\\", "/")).parts:
        raise InventoryError(where, key, value, "a path without '..' components")


def _host(table: _Table, key: str, default: Any = ...) -> str:
    value = table.take(key, str, default, "a host name or IP address")
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    labels = value.lower().rstrip(".").split(".")
    if not value or len(value) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in labels):
        raise table.error(key, value, "a host name (letters, digits, '-', '.') or an IP address")
    return value.lower().rstrip(".")


def _port(table: _Table, key: str, default: int) -> int:
    value = table.take(key, int, default, "a TCP port 1-65535")
    if not 0 < value < 65536:
        raise table.error(key, value, "a TCP port 1-65535")
    return value


def _pass_through(where: str, prefix: str, raw: Any, own: set[str], hint: str) -> dict[str, Any]:
    """Extra unit-config keys, handed on to edge.config (which checks their meaning)."""
    table = _Table(where, prefix, raw)
    out: dict[str, Any] = {}
    for key, value in table.raw.items():
        if not NAME.fullmatch(key):
            raise table.error(key, value, "a key of lowercase letters, digits and '_'")
        if key in own:
            raise table.error(key, value, f"no value here: provisioning sets it from {hint}")
        if isinstance(value, str):
            check_safe_text(where, prefix + key, value)
            if key.endswith(("_dir", "_file", "record", "path")):
                check_relative_path(where, prefix + key, value)
            # Folders also go into the service's ReadWritePaths=, where a space would split them.
            if (key.endswith("_dir") or key == "record") and not _UNIT_PATH.fullmatch(value):
                raise table.error(key, value, "an absolute path of letters, digits, '.', '_', '-' and '/'")
        elif not isinstance(value, bool | int | float):
            raise table.error(key, value, "a string, number or true/false")
        out[key] = value
    return out


# -- the sections ------------------------------------------------------------------------------


def _usb(where: str, prefix: str, raw: Any, kind: str, index: int, baud: int) -> tuple[UsbSerial, _Table]:
    t = _Table(where, prefix, raw)
    usb = t.take("usb", str, ..., "the adapter's USB id as vendor:product, e.g. '1546:01a7' (see lsusb)")
    parts = usb.lower().split(":")
    if len(parts) != 2 or not all(_HEX4.fullmatch(p) for p in parts):
        raise t.error("usb", usb, "the adapter's USB id as vendor:product, e.g. '1546:01a7' (see lsusb)")
    serial = t.take("serial_number", str, "", "the adapter's USB serial number")
    if serial and not _USB_SERIAL.fullmatch(serial):
        raise t.error("serial_number", serial, "letters, digits, '.', '_' or '-' (as udevadm info shows it)")
    baudrate = t.take("baudrate", int, baud)
    return UsbSerial(kind, index, parts[0], parts[1], serial, baudrate), t


def _unit(index: int, raw: Any) -> Unit:
    where = f"unit[{index}]"
    table = _Table(where, "", raw)
    unit_id = table.name("id")
    where = table.where = f"unit {unit_id}"
    role = table.take("role", str, ..., " or ".join(map(repr, ROLES)))
    if role not in ROLES:
        raise table.error("role", role, " or ".join(map(repr, ROLES)))

    gps: list[UsbSerial] = []
    for i, entry in enumerate(table.take("gps", list, [], "a list of [[unit.gps]] tables")):
        usb, t = _usb(where, f"gps[{i}].", entry, "gps", i, 9600)
        t.done()
        gps.append(usb)
    lora: list[LoraModem] = []
    for i, entry in enumerate(table.take("lora", list, [], "a list of [[unit.lora]] tables")):
        usb, t = _usb(where, f"lora[{i}].", entry, "lora", i, 115200)
        family = t.take("family", str, ..., " or ".join(map(repr, LORA_FAMILIES)))
        if family not in LORA_FAMILIES:
            raise t.error("family", family, " or ".join(map(repr, LORA_FAMILIES)))
        reset_pin = t.pin("reset_pin", -1, allow_none=True)
        radio = _pass_through(where, f"lora[{i}].", t.raw, _LORA_OWN, "the [[unit.lora]] table")
        lora.append(LoraModem(usb, family, reset_pin, radio))
    usb_ids = [(u.vendor, u.product, u.serial_number) for u in [*gps, *(m.usb for m in lora)]]
    if len(set(usb_ids)) != len(usb_ids):
        raise table.error(
            "gps/lora", "two adapters", "a serial_number on each of two adapters with the same USB id"
        )

    position = None
    if "position" in table.raw:
        p = _Table(where, "position.", table.take("position", dict))
        lat = p.take("lat", (int, float), ..., "degrees from -90 to 90")
        lon = p.take("lon", (int, float), ..., "degrees from -180 to 180")
        alt = p.take("alt", (int, float), None, "metres above sea level")
        if not -90 <= lat <= 90:
            raise p.error("lat", lat, "degrees from -90 (south) to 90 (north)")
        if not -180 <= lon <= 180:
            raise p.error("lon", lon, "degrees from -180 (west) to 180 (east)")
        p.done()
        position = Position(float(lat), float(lon), None if alt is None else float(alt))

    has_gpio = "gpio" in table.raw
    gpio = _Table(where, "gpio.", table.take("gpio", dict, {}))
    pins = {
        "pir": gpio.pin("pir", 17),
        "illuminator": gpio.pin("illuminator", 23),
        "light_sensor": gpio.pin("light_sensor", -1, allow_none=True),
    }
    gpio.done()
    used: dict[int, str] = {
        m.reset_pin: f"lora[{i}].reset_pin" for i, m in enumerate(lora) if m.reset_pin >= 0
    }
    if role == "camera":
        for key, pin in pins.items():
            if pin >= 0 and pin in used:
                raise gpio.error(key, pin, f"a pin not already used (it is {used[pin]})")
            used[pin] = f"gpio.{key}"
    elif has_gpio:
        raise table.error("gpio", "[unit.gpio]", "no [unit.gpio] on a gateway (camera units only)")

    pair_with = table.name("pair_with", "")
    if pair_with and role != "camera":
        raise table.error("pair_with", pair_with, '"" (only camera units are paired)')
    if pair_with == unit_id:
        raise table.error("pair_with", pair_with, "another camera unit's id, not this unit's own")
    if role == "camera" and position is None:
        raise table.error("position", None, "a [unit.position] table with lat and lon (where it stands)")
    camera = _pass_through(
        where, "camera.", table.take("camera", dict, {}), _CAMERA_OWN, "[unit.gpio]/position"
    )
    station = _pass_through(where, "station.", table.take("station", dict, {}), _STATION_OWN, "[site]")
    if camera and role != "camera":
        raise table.error("camera", "[unit.camera]", "no [unit.camera] on a gateway")
    if station and role != "gateway":
        raise table.error("station", "[unit.station]", "no [unit.station] on a camera unit")
    table.done()
    return Unit(
        unit_id,
        role,
        tuple(gps),
        tuple(lora),
        position,
        pins["pir"],
        pins["illuminator"],
        pins["light_sensor"],
        pair_with,
        camera,
        station,
    )


def _people(raw: Any, section: str) -> tuple[str, ...]:
    if not isinstance(raw, list):
        raise InventoryError("inventory", section, raw, f"a list of [[{section}]] tables")
    names = []
    for i, entry in enumerate(raw):
        t = _Table(f"{section}[{i}]", "", entry)
        names.append(t.name("name"))
        t.take("description", str, "")  # free text for the technician; never written anywhere
        t.done()
    return tuple(names)


def _bridge(raw: Any, base_dir: Path) -> Bridge:
    b = _Table("bridge", "", raw)
    address = _host(b, "address")
    port = _port(b, "port", 8883)
    user = b.take("remote_username", str, "", "the station's user name at the central broker")
    if user and not _USB_SERIAL.fullmatch(user):
        b.raw["remote_username"] = user
        raise b.error("remote_username", user, "letters, digits, '.', '_' or '-'")

    def file(key: str, required: bool = False) -> Path | None:
        text = b.take(key, str, ... if required else "", "a file, relative to the inventory")
        if not text:
            return None
        check_relative_path("bridge", key, text)
        path = base_dir / text
        if not path.is_file():
            raise b.error(key, text, f"an existing file (looked for {path})")
        return path

    ca_file = file("ca_file", required=True)
    password = file("remote_password_file")
    cert, key = file("cert_file"), file("key_file")
    if bool(cert) != bool(key):
        raise b.error("key_file" if cert else "cert_file", "", "cert_file and key_file together, or neither")
    days = b.take("queue_days", (int, float), 7.0, "days of traffic to hold while the centre is away")
    if not 0 < days <= 60:
        raise b.error("queue_days", days, "days, more than 0 and at most 60")
    protocol = b.take("protocol", str, "mqttv311", "'mqttv311' or 'mqttv50'")
    if protocol not in ("mqttv311", "mqttv50"):
        raise b.error("protocol", protocol, "'mqttv311' or 'mqttv50'")
    b.done()
    assert ca_file is not None
    return Bridge(address, ca_file, port, user, password, cert, key, float(days), protocol)


def parse_inventory(data: Mapping[str, Any], base_dir: Path | None = None, source: str = "") -> Inventory:
    """Check an already-loaded inventory; raise `InventoryError` on the first problem."""
    top = _Table("inventory", "", data)
    s = _Table("site", "", top.take("site", dict, ..., "a [site] table"))
    name = s.name("name")
    auth = s.take("auth", str, "password", " or ".join(map(repr, AUTH_MODES)))
    if auth not in AUTH_MODES:
        raise s.error("auth", auth, " or ".join(map(repr, AUTH_MODES)))
    broker_address = _host(s, "broker_address")
    broker_port = _port(s, "broker_port", 8883)
    local_port = _port(s, "local_port", 1883)
    if broker_port == local_port:
        raise s.error("local_port", local_port, "a port other than broker_port")
    boundary = None
    boundary_text = s.take("boundary", str, "", "a GeoJSON file, relative to the inventory")
    if boundary_text:
        check_relative_path("site", "boundary", boundary_text)
        boundary = (base_dir or Path.cwd()) / boundary_text
        if not boundary.is_file():
            raise s.error("boundary", boundary_text, f"an existing GeoJSON file (looked for {boundary})")
    coarse = s.take("coarse_precision_m", (int, float), 1000.0, "metres (the shared feed's grid)")
    if not 1 <= coarse <= 100_000:
        raise s.error("coarse_precision_m", coarse, "metres, 1 to 100000")
    s.done()
    site = Site(name, broker_address, auth, broker_port, local_port, boundary, float(coarse))

    units = tuple(_unit(i, raw) for i, raw in enumerate(top.take("unit", list, ..., "[[unit]] tables")))
    staff = _people(top.take("staff", list, []), "staff")
    dashboards = _people(top.take("dashboard", list, []), "dashboard")
    bridge = _bridge(top.take("bridge", dict), base_dir or Path.cwd()) if "bridge" in top.raw else None
    top.done()

    gateways = [u.id for u in units if u.role == "gateway"]
    if len(gateways) != 1:
        raise InventoryError("inventory", "unit.role", gateways, "exactly one unit with role = 'gateway'")
    seen: dict[str, str] = {}
    for ident, kind in (
        [(u.id, "unit") for u in units]
        + [(p, "staff") for p in staff]
        + [(d, "dashboard") for d in dashboards]
    ):
        if ident in seen:
            raise InventoryError(
                f"{kind} {ident}",
                "name" if kind != "unit" else "id",
                ident,
                f"a name used only once (a {seen[ident]} already has it: it is also the MQTT user name)",
            )
        seen[ident] = kind
    cameras = {u.id for u in units if u.role == "camera"}
    for unit in units:
        if unit.pair_with and unit.pair_with not in cameras:
            raise InventoryError(
                f"unit {unit.id}",
                "pair_with",
                unit.pair_with,
                f"a camera unit of this site ({', '.join(sorted(cameras))})",
            )
    inventory = Inventory(site, units, staff, dashboards, bridge, source)
    # Each unit's config as the unit will read it: pins, radio and camera values edge.config checks.
    from gateway.provision.unit_config import check_unit_config  # imports this module

    for unit in units:
        check_unit_config(inventory, unit)
    return inventory


def load_inventory(path: str | Path) -> Inventory:
    """Read and check an inventory file; relative paths in it are relative to its folder."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise InventoryError(
            str(path), "(file)", str(path), f"a readable inventory file ({exc.strerror})"
        ) from exc
    except UnicodeDecodeError as exc:
        raise InventoryError(str(path), "(file)", str(path), "UTF-8 text") from exc
    except tomllib.TOMLDecodeError as exc:
        raise InventoryError(str(path), "(syntax)", str(path), f"valid TOML ({exc})") from exc
    return parse_inventory(data, path.parent, str(path))
