"""The station broker's ``mosquitto.conf`` (Mosquitto 2.0, as on Raspberry Pi OS Bookworm).

Two listeners:

- ``127.0.0.1:<local_port>``: the gateway's own services (the gateway agent and the station hub),
  with a password; loopback only, so no TLS.
- ``<broker_port>`` on every interface, TLS 1.2 or later only, with the site CA's server
  certificate: camera units, staff and dashboards. With ``auth = "password"`` they log in with a
  user name and password (sent inside TLS); with ``auth = "certificate"`` every client must show a
  certificate from the site CA, its CN is the user name (``use_identity_as_username``), and
  certificates of re-provisioned units are refused through the CRL (``crlfile``).

Anonymous clients are refused everywhere, and the ACL (gateway/provision/acl.py) decides what each
identity may read and write. The file is complete: it replaces Debian's /etc/mosquitto/mosquitto.conf
(first boot keeps the original as mosquitto.conf.dist).
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.provision.inventory import Inventory, InventoryError

MARKER = "# -- bridge to the central broker --"


@dataclass(frozen=True)
class BrokerPaths:
    """Where the broker's files live on the gateway (tests point them at a temporary folder)."""

    dir: str = "/etc/mosquitto/uncia"
    persistence: str = "/var/lib/mosquitto/"

    @property
    def passwords(self) -> str:
        return f"{self.dir}/passwords"

    @property
    def acl(self) -> str:
        return f"{self.dir}/acl"

    @property
    def ca(self) -> str:
        return f"{self.dir}/ca.crt"

    @property
    def cert(self) -> str:
        return f"{self.dir}/broker.crt"

    @property
    def key(self) -> str:
        return f"{self.dir}/broker.key"

    @property
    def crl(self) -> str:
        return f"{self.dir}/crl.pem"

    # The central broker's CA and this station's client certificate for the bridge.
    @property
    def central_ca(self) -> str:
        return f"{self.dir}/central-ca.crt"

    @property
    def central_cert(self) -> str:
        return f"{self.dir}/central.crt"

    @property
    def central_key(self) -> str:
        return f"{self.dir}/central.key"


def bridge_section(inventory: Inventory, paths: BrokerPaths) -> str:
    """The bridge's ``connection`` block, from gateway/bridge_config.py (the bridge's own module)."""
    bridge = inventory.bridge
    if bridge is None:
        return f"{MARKER}\n# none: the inventory has no [bridge] table\n"
    try:
        from gateway.bridge_config import BridgeTls, password_from_file, render_bridge
    except ImportError:
        # SEAM: gateway/bridge_config.py (render_bridge) is written in parallel; without it the bridge
        # is left out, loudly, rather than guessed at here.
        return (
            f"{MARKER}\n"
            "# NOT CONFIGURED: gateway/bridge_config.py (render_bridge) is not installed with this uncia.\n"
            f"# The inventory asks for a bridge to {bridge.address}:{bridge.port}; provision again with\n"
            "# an uncia that has gateway/bridge_config.py to add it.\n"
        )
    tls = BridgeTls(
        cafile=paths.central_ca,
        certfile=paths.central_cert if bridge.cert_file else "",
        keyfile=paths.central_key if bridge.key_file else "",
    )
    try:
        password = password_from_file(bridge.remote_password_file) if bridge.remote_password_file else ""
        text = render_bridge(
            inventory.site.name,
            inventory.gateway.id,
            address=f"{bridge.address}:{bridge.port}",
            tls=tls,
            remote_username=bridge.remote_username,
            remote_password=password,
            queue_days=bridge.queue_days,
            protocol=bridge.protocol,
        )
    except ValueError as exc:  # BridgeConfigError: names the field; never echoes the password
        field = getattr(exc, "field", "(bridge)")
        raise InventoryError("bridge", field, "(as given)", f"a value the bridge accepts: {exc}") from exc
    return f"{MARKER}\n{text.rstrip()}\n"


def render_mosquitto_conf(inventory: Inventory, paths: BrokerPaths | None = None) -> str:
    paths = paths or BrokerPaths()
    site = inventory.site
    certificate = site.auth == "certificate"
    head = [
        f"# Mosquitto of the uncia station, site {site.name} (gateway {inventory.gateway.id}).",
        "# Written by `uncia provision` from the site inventory: provision again rather than edit.",
        "",
        # Password logins on loopback and certificates on the network need settings per listener.
        f"per_listener_settings {'true' if certificate else 'false'}",
        "",
        "persistence true",
        f"persistence_location {paths.persistence}",
        # Save the in-memory state every 10 minutes (default 30): less SD-card wear than every
        # change, and a power cut loses at most this much of the queued QoS 1 messages.
        "autosave_interval 600",
        "log_dest stderr",  # systemd's journal keeps it, with the journald limits of the unit
        "log_type error",
        "log_type warning",
        "log_type notice",
        "connection_messages true",
        "",
    ]
    auth_lines = ["allow_anonymous false", f"password_file {paths.passwords}", f"acl_file {paths.acl}"]
    if not certificate:
        head += [*auth_lines, ""]
    local = [
        "# Local services on this gateway: the gateway agent and the station hub.",
        f"listener {site.local_port} 127.0.0.1",
        *(auth_lines if certificate else []),
        "",
    ]
    tls = [
        "# Camera units, staff and dashboards: TLS 1.2 or later only.",
        f"listener {site.broker_port}",
        f"cafile {paths.ca}",
        f"certfile {paths.cert}",
        f"keyfile {paths.key}",
        "tls_version tlsv1.2",
    ]
    if certificate:
        tls += [
            "require_certificate true",
            "use_identity_as_username true",
            f"crlfile {paths.crl}",
            "allow_anonymous false",
            f"acl_file {paths.acl}",
        ]
    else:
        tls.append("require_certificate false")
    return "\n".join(head + local + tls) + "\n\n" + bridge_section(inventory, paths)
