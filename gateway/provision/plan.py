"""From inventory and site state to the files of each unit: what `uncia provision` makes.

`provision()` issues the credentials each identity lacks (or new ones, revoking the old, for
``reprovision``), then builds one `Tree` per unit asked for (config, credentials, udev rules,
systemd services, first-boot scripts; for the gateway also its broker's configuration) and one per
person (staff, dashboard) whose credentials were issued in this run or who was asked for.

When credentials changed, the gateway's broker files changed with them (its password file, ACL and
CRL), so its tree is always made then, even if it was not asked for: `Result.gateway_added` says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from gateway.provision.acl import render_acl
from gateway.provision.bundle import BundleFile, Tree
from gateway.provision.credentials import password_file
from gateway.provision.firstboot import Install, manifest, render_firstrun, render_install
from gateway.provision.inventory import Inventory, InventoryError, Unit
from gateway.provision.mosquitto_conf import BrokerPaths, render_mosquitto_conf
from gateway.provision.site_state import SiteState
from gateway.provision.udev import RULES_FILE, render_udev_rules
from gateway.provision.unit_config import (
    BOUNDARY_FILE,
    CA_FILE,
    CERT_FILE,
    KEY_FILE,
    PASSWORD_FILE,
    WEB_PASSWORD_FILE,
    config_path,
    render_unit_config,
)

REPO_DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
REPO_SYSTEMD = REPO_DEPLOY / "systemd"
SYSTEMD_DIR = "/etc/systemd/system"
JOURNALD_DIR = "/etc/systemd/journald.conf.d"  # deploy/journald/*.conf: the SD card's journal limits
STATE_DIR = "/var/lib/uncia"
# Which of deploy/systemd/*.service each role runs (a file belongs to a role by its name's start).
ROLE_SERVICES = {"camera": ("uncia-camera",), "gateway": ("uncia-gateway", "uncia-station", "uncia-hub")}
_SERVICE_NAME = re.compile(r"^[a-z0-9][a-z0-9@._-]*\.service$")
_GROUP = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_PINCTRL = re.compile(r"(pinctrl set )\d+( op dl)")


class ProvisionError(ValueError):
    """Provisioning cannot go on; the message says what to fix."""


@dataclass
class Result:
    trees: list[Tree]
    issued: list[str] = field(default_factory=list)  # identities with new credentials this run
    revoked: list[str] = field(default_factory=list)  # identities whose old credentials are revoked
    retired: list[str] = field(default_factory=list)  # identities no longer in the inventory
    gateway_added: bool = False
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Service:
    name: str
    text: str

    @property
    def groups(self) -> tuple[str, ...]:
        groups: list[str] = []
        for line in self.text.splitlines():
            if line.strip().startswith("SupplementaryGroups="):
                groups += line.split("=", 1)[1].split()
        return tuple(groups)


def load_services(role: str, directory: Path = REPO_SYSTEMD) -> list[Service]:
    """The role's systemd units as they are in deploy/systemd now."""
    services = []
    for path in sorted(directory.glob("*.service")):
        if not path.name.startswith(ROLE_SERVICES[role]):
            continue
        if not _SERVICE_NAME.fullmatch(path.name):
            raise ProvisionError(f"{path}: a service name of letters, digits, '-', '_', '.' is needed")
        service = Service(path.name, path.read_text())
        bad = [g for g in service.groups if not _GROUP.fullmatch(g)]
        if bad:
            raise ProvisionError(
                f"{path}: SupplementaryGroups has a group name install.sh cannot take: {bad}"
            )
        services.append(service)
    if not services:
        raise ProvisionError(
            f"no systemd service for a {role} unit in {directory} (expected {ROLE_SERVICES[role][0]}.service)"
        )
    return services


def _write_paths(unit: Unit) -> list[str]:
    """Folders the unit's config puts outside /var/lib/uncia (the service may write only there)."""
    paths = [unit.camera.get("image_dir", ""), unit.station.get("image_dir", "")]
    record = unit.station.get("record", "")
    if record:
        paths.append(str(PurePosixPath(record).parent))
    return sorted({p for p in paths if p and not (p + "/").startswith(STATE_DIR + "/")})


def render_service(service: Service, unit: Unit) -> Service:
    """The unit's copy of a service: its lamp pin, only the device groups it needs, its folders.

    The files in deploy/systemd say what provisioning changes in them: the ``pinctrl`` line names
    the default illuminator pin; ``dialout`` is dropped from a camera with no serial device, ``gpio``
    from a gateway with no modem reset line; folders outside /var/lib/uncia join ReadWritePaths.
    """
    text = service.text
    drop: set[str] = set()
    if unit.role == "camera":
        text = _PINCTRL.sub(lambda m: f"{m.group(1)}{unit.illuminator_pin}{m.group(2)}", text)
        if not unit.gps and not unit.lora:
            drop.add("dialout")
    elif not any(m.reset_pin >= 0 for m in unit.lora):
        drop.add("gpio")
    lines = []
    for line in text.splitlines():
        if line.startswith("SupplementaryGroups="):
            kept = [g for g in line.split("=", 1)[1].split() if g not in drop]
            line = "SupplementaryGroups=" + " ".join(kept)
        elif line.startswith("ReadWritePaths=") and _write_paths(unit):
            line = " ".join([line, *_write_paths(unit)])
        lines.append(line)
    return Service(service.name, "\n".join(lines) + "\n")


def _unit_installs(
    inventory: Inventory, state: SiteState, unit: Unit, services: list[Service]
) -> list[Install]:
    site = inventory.site
    installs = [Install(config_path(unit), render_unit_config(inventory, unit).encode())]
    installs.append(Install(CA_FILE, state.ca.cert_pem()))
    if unit.role == "gateway" or site.auth == "password":
        installs.append(
            Install(PASSWORD_FILE, (state.password(unit.id) + "\n").encode(), 0o600, "uncia", "uncia")
        )
    if unit.role == "camera" and site.auth == "certificate":
        installs.append(Install(CERT_FILE, state.client_cert(unit.id)))
        installs.append(Install(KEY_FILE, state.client_key(unit.id), 0o600, "uncia", "uncia"))
    installs.append(Install(RULES_FILE, render_udev_rules(unit).encode()))
    installs += [Install(f"{SYSTEMD_DIR}/{s.name}", s.text.encode()) for s in services]
    for conf in sorted((REPO_DEPLOY / "journald").glob("*.conf")):
        installs.append(Install(f"{JOURNALD_DIR}/{conf.name}", conf.read_bytes()))
    if unit.role == "gateway":
        installs += _broker_installs(inventory, state)
        if site.boundary is not None:
            installs.append(Install(BOUNDARY_FILE, site.boundary.read_bytes()))
        installs.append(
            Install(WEB_PASSWORD_FILE, (state.web_password() + "\n").encode(), 0o600, "uncia", "uncia")
        )
    return installs


def broker_names(inventory: Inventory) -> list[str]:
    """Names the broker's certificate is valid for: the site's address, and this machine's own."""
    return sorted({inventory.site.broker_address, "localhost", "127.0.0.1"})


def _broker_installs(inventory: Inventory, state: SiteState) -> list[Install]:
    paths = BrokerPaths()
    broker = state.broker_certificate(broker_names(inventory))
    secret = {"mode": 0o600, "owner": "mosquitto", "group": "mosquitto"}
    bridge = inventory.bridge
    # With a bridge password the config itself holds a secret.
    conf_mode: dict[str, Any] = secret if bridge and bridge.remote_password_file else {}
    installs = []
    if bridge is not None:
        installs.append(Install(paths.central_ca, bridge.ca_file.read_bytes()))
        if bridge.cert_file and bridge.key_file:
            installs.append(Install(paths.central_cert, bridge.cert_file.read_bytes()))
            installs.append(Install(paths.central_key, bridge.key_file.read_bytes(), **secret))
    return [
        *installs,
        Install(
            "/etc/mosquitto/mosquitto.conf", render_mosquitto_conf(inventory, paths).encode(), **conf_mode
        ),
        Install(paths.passwords, password_file(state.password_entries()).encode(), **secret),
        Install(paths.acl, render_acl(inventory).encode(), **secret),
        Install(paths.ca, state.ca.cert_pem()),
        Install(paths.cert, broker.cert_pem),
        Install(paths.key, broker.key_pem, **secret),
        Install(paths.crl, state.crl()),
    ]


def unit_tree(inventory: Inventory, state: SiteState, unit: Unit, systemd_dir: Path = REPO_SYSTEMD) -> Tree:
    services = [render_service(s, unit) for s in load_services(unit.role, systemd_dir)]
    installs = _unit_installs(inventory, state, unit, services)
    groups = sorted({g for s in services for g in s.groups})
    install_sh = render_install(inventory.site.name, unit.id, unit.role, [s.name for s in services], groups)
    files = [
        BundleFile("firstrun.sh", render_firstrun().encode(), 0o755),
        BundleFile("uncia/install.sh", install_sh.encode(), 0o755),
        BundleFile("uncia/manifest", manifest(installs).encode()),
        BundleFile("uncia/README.txt", _readme(inventory, unit).encode()),
    ]
    files += [BundleFile(f"uncia/files{i.dest}", i.data, i.mode, i.secret) for i in installs]
    return Tree(unit.id, tuple(files))


def _readme(inventory: Inventory, unit: Unit) -> str:
    return (
        f"uncia unit {unit.id} ({unit.role}) of site {inventory.site.name}\n\n"
        "This folder holds the unit's configuration and its credentials (files/). On first boot,\n"
        "firstrun.sh runs install.sh and then deletes this folder from the boot partition.\n"
        "Keep the card safe until then: the credentials let anyone pose as this unit.\n"
        "See docs/provisioning.md.\n"
    )


def person_tree(inventory: Inventory, state: SiteState, name: str, kind: str) -> Tree:
    """A person's or dashboard's credentials, with the connection details they need."""
    site = inventory.site
    files = [BundleFile("ca.crt", state.ca.cert_pem())]
    if site.auth == "certificate":
        files += [
            BundleFile("client.crt", state.client_cert(name)),
            BundleFile("client.key", state.client_key(name), 0o600, True),
        ]
        login = "client certificate client.crt / client.key (no password)"
    else:
        files.append(BundleFile("password", (state.password(name) + "\n").encode(), 0o600, True))
        login = f"user name {name}, password in the file 'password'"
    page = ""
    if kind == "staff":
        files.append(BundleFile("web-password", (state.web_password() + "\n").encode(), 0o600, True))
        page = (
            f"staff page: http://{site.broker_address}:8080/ (user name staff, password in the file"
            " 'web-password')\n"
        )
    reads = (
        f"uncia/{site.name}/# (exact positions: keep this device safe)"
        if kind == "staff"
        else f"uncia-shared/{site.name}/# (positions rounded to {site.coarse_precision_m:g} m)"
    )
    files.append(
        BundleFile(
            "README.txt",
            (
                f"MQTT access for {kind} '{name}' at site {site.name}\n\n"
                f"broker: {site.broker_address} port {site.broker_port}, TLS (verify with ca.crt)\n"
                f"login: {login}\nmay read: {reads}\n{page}"
            ).encode(),
        )
    )
    return Tree(f"{kind}-{name}", tuple(files), boot=False)


def provision(
    inventory: Inventory,
    state: SiteState,
    *,
    units: list[str] | None = None,
    reprovision: list[str] = (),  # type: ignore[assignment]
    systemd_dir: Path = REPO_SYSTEMD,
) -> Result:
    """Issue what is missing, revoke what `reprovision` names, and build the trees asked for."""
    known = {name: kind for name, kind in inventory.identities()}
    for name in [*(units or []), *reprovision]:
        if name not in known:
            raise InventoryError(
                "command line", "unit", name, f"an id from the inventory ({', '.join(known)})"
            )
    for name in units or []:
        if known[name] != "unit":
            raise InventoryError(
                "command line", "--unit", name, "a unit id (people get their files without --unit)"
            )
    result = Result([])
    with_cert = inventory.site.auth == "certificate"
    result.retired = state.retire_missing(set(known))
    for name, kind in inventory.identities():
        if name in reprovision:
            had = name in state.identities
            state.reissue(name, kind, with_cert=with_cert)
            result.issued.append(name)
            if had:
                result.revoked.append(name)
        else:
            before = state.identities.get(name)
            old = (before.generation, before.cert_serial) if before else None
            after = state.ensure(name, kind, with_cert=with_cert)
            if old != (after.generation, after.cert_serial):
                result.issued.append(name)

    if units is None and reprovision:  # re-provisioning a unit makes that unit's bundle (and the gateway's)
        units = [name for name in reprovision if known[name] == "unit"]
    wanted = list(units) if units is not None else [u.id for u in inventory.units]
    gateway = inventory.gateway.id
    if (result.issued or result.retired) and gateway not in wanted:
        wanted.append(gateway)
        result.gateway_added = True
        result.notes.append(
            f"credentials changed, so the gateway {gateway}'s broker files did too: its bundle is included. "
            f"Copy the {gateway} folder to the gateway and run: sudo bash {gateway}/uncia/install.sh"
        )
    result.trees = [unit_tree(inventory, state, inventory.unit(u), systemd_dir) for u in wanted]
    for name, kind in inventory.identities():
        if kind != "unit" and (units is None or name in result.issued):
            result.trees.append(person_tree(inventory, state, name, kind))
    return result
