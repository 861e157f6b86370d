"""Each unit's own config file (the TOML `edge.config.load_config` reads), made from the inventory.

The file names the unit's devices by their udev links (/dev/uncia-gps0, /dev/uncia-lora0), its
broker and credentials by the paths first boot installs them at (/etc/uncia/...): it holds no
secret itself. Before anything is written, the document is checked with `edge.config.parse_config`,
so a value the unit would refuse at start is reported now, naming the inventory's unit and field.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from edge.config import ConfigError, UnitConfig, parse_config
from gateway.provision.inventory import Inventory, InventoryError, Unit

ETC = "/etc/uncia"
PASSWORD_FILE = f"{ETC}/mqtt-password"
CA_FILE = f"{ETC}/ca.crt"
CERT_FILE = f"{ETC}/client.crt"
KEY_FILE = f"{ETC}/client.key"
BOUNDARY_FILE = f"{ETC}/boundary.geojson"
WEB_PASSWORD_FILE = f"{ETC}/web-password"


def config_path(unit: Unit) -> str:
    """Where the unit's config lives on the unit; the systemd services read it from there."""
    return f"{ETC}/{'gateway' if unit.role == 'gateway' else 'camera'}.toml"


def unit_document(inventory: Inventory, unit: Unit) -> dict[str, Any]:
    """The unit config as a dict of TOML tables (not yet checked)."""
    site = inventory.site
    doc: dict[str, Any] = {"unit": {"id": unit.id, "site": site.name, "role": unit.role}}
    if unit.role == "gateway":
        # The gateway's own services use the loopback listener: no TLS needed on 127.0.0.1.
        mqtt: dict[str, Any] = {"host": "127.0.0.1", "port": site.local_port}
        mqtt |= {"username": unit.id, "password_file": PASSWORD_FILE}
    else:
        mqtt = {"host": site.broker_address, "port": site.broker_port, "tls": True, "ca_file": CA_FILE}
        if site.auth == "certificate":
            mqtt |= {"cert_file": CERT_FILE, "key_file": KEY_FILE}  # user name = the certificate's CN
        else:
            mqtt |= {"username": unit.id, "password_file": PASSWORD_FILE}
    doc["mqtt"] = mqtt
    if unit.gps:
        doc["serial"] = [{"name": g.name, "port": g.link, "baudrate": g.baudrate} for g in unit.gps]
    if unit.lora:
        doc["lora"] = [
            {
                "name": m.usb.name,
                "port": m.usb.link,
                "family": m.family,
                "baudrate": m.usb.baudrate,
                "reset_pin": m.reset_pin,
                **m.radio,
            }
            for m in unit.lora
        ]
    if unit.role == "camera":
        assert unit.position is not None  # checked by the inventory
        camera: dict[str, Any] = {"lat": unit.position.lat, "lon": unit.position.lon}
        if unit.position.alt is not None:
            camera["alt"] = unit.position.alt
        camera |= {
            "pir_pin": unit.pir_pin,
            "illuminator_pin": unit.illuminator_pin,
            "light_sensor_pin": unit.light_sensor_pin,
            "pair_with": unit.pair_with,
            **unit.camera,
        }
        doc["camera"] = camera
    else:
        # The staff page shows exact positions and can pause cameras: never open on the LAN.
        station: dict[str, Any] = {
            "coarse_precision_m": site.coarse_precision_m,
            "web_password_file": WEB_PASSWORD_FILE,
        }
        if site.boundary is not None:
            station["boundary"] = BOUNDARY_FILE
        doc["station"] = station | dict(unit.station)
    return doc


# Config keys that provisioning took from another inventory field: errors are reported under it.
_FIELD = {
    "camera.lat": "position.lat",
    "camera.lon": "position.lon",
    "camera.alt": "position.alt",
    "camera.pir_pin": "gpio.pir",
    "camera.illuminator_pin": "gpio.illuminator",
    "camera.light_sensor_pin": "gpio.light_sensor",
    "camera.pair_with": "pair_with",
}


def _inventory_field(key: str) -> str:
    if key in _FIELD:
        return _FIELD[key]
    if key.startswith("serial["):
        return "gps[" + key.removeprefix("serial[")
    return key


def check_unit_config(inventory: Inventory, unit: Unit) -> UnitConfig:
    """Parse the unit's document as the unit will; a `ConfigError` becomes an `InventoryError`."""
    doc = unit_document(inventory, unit)
    # The credential and boundary files exist only once first boot has installed them.
    probe = json.loads(json.dumps(doc))
    probe["mqtt"] = {k: v for k, v in probe["mqtt"].items() if not k.endswith("_file")}
    probe.get("station", {}).pop("boundary", None)
    probe.get("station", {}).pop("web_password_file", None)
    try:
        return parse_config(probe, source=f"unit {unit.id}")
    except ConfigError as exc:
        raise InventoryError(f"unit {unit.id}", _inventory_field(exc.key), exc.value, exc.expected) from exc


def render_unit_config(inventory: Inventory, unit: Unit) -> str:
    """The unit's config file text, checked."""
    check_unit_config(inventory, unit)
    header = (
        f"# uncia {unit.role} unit {unit.id} at site {inventory.site.name}: written by `uncia provision`\n"
        "# from the site inventory. Change the inventory and provision again rather than editing here.\n"
        "# Keys not listed take their defaults (deploy/gateway.example.toml, deploy/camera.example.toml).\n"
    )
    return header + dumps_toml(unit_document(inventory, unit))


# -- a small TOML writer --------------------------------------------------------------------------
# Written here because the standard library reads TOML but does not write it, and unit configs only
# need tables, arrays of tables and scalars. Strings are written as JSON strings, which are valid
# TOML basic strings, so no value can end a line or a string early.


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot write {value} to TOML")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=True)
    raise TypeError(f"cannot write {type(value).__name__} to a unit config")


def _table(values: Mapping[str, Any]) -> str:
    return "".join(f"{key} = {_value(value)}\n" for key, value in values.items())


def dumps_toml(doc: Mapping[str, Any]) -> str:
    parts: list[str] = []
    for name, body in doc.items():
        if isinstance(body, list):
            parts += [f"\n[[{name}]]\n{_table(item)}" for item in body]
        else:
            parts.append(f"\n[{name}]\n{_table(body)}")
    return "".join(parts)
