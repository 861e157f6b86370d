"""Shared by the provisioning tests: a site inventory, provisioning into a folder, and a real Mosquitto
started from the gateway's *generated* mosquitto.conf.

The broker keeps every generated line; only what must differ on a test machine is rewritten: the
listener ports (free ones, all on 127.0.0.1), the folder of the broker's files and its persistence
folder, the bridge (there is no central broker here) and, when the tests run as root, ``user root``
(Mosquitto would otherwise switch to the 'mosquitto' user, who cannot read the test's 0600 files).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from edge.broker import find_mosquitto, free_port
from gateway.provision.inventory import load_inventory
from gateway.provision.mosquitto_conf import MARKER
from gateway.provision.plan import Result, provision
from gateway.provision.site_state import SiteState

INVENTORY = """
[site]
name = "helan"
broker_address = "10.0.0.2"
auth = "{auth}"

[[unit]]
id = "gw-01"
role = "gateway"
[[unit.gps]]
usb = "1546:01a7"
[[unit.lora]]
usb = "10c4:ea60"
serial_number = "0001"
family = "rylr"

[[unit]]
id = "cam-01"
role = "camera"
pair_with = "cam-02"
[unit.position]
lat = 38.8143
lon = 105.9387
[unit.gpio]
pir = 17
illuminator = 24

[[unit]]
id = "cam-02"
role = "camera"
pair_with = "cam-01"
[unit.position]
lat = 38.8147
lon = 105.9391

[[staff]]
name = "dolma"

[[dashboard]]
name = "public-map"
"""


def write_inventory(folder: Path, *, auth: str = "password", text: str | None = None) -> Path:
    path = folder / "helan.toml"
    path.write_text(text if text is not None else INVENTORY.format(auth=auth))
    return path


def provision_folder(inventory_path: Path, out: Path, **kw: object) -> Result:
    """Provision like the CLI does (state saved, then the trees written into `out`)."""
    from gateway.provision.bundle import write_folder

    inventory = load_inventory(inventory_path)
    state = SiteState.open(inventory_path.with_name("helan.state"), inventory.site.name)
    result = provision(inventory, state, **kw)  # type: ignore[arg-type]
    state.save()
    write_folder(out, result.trees)
    return result


@dataclass
class GeneratedBroker:
    process: subprocess.Popen[bytes]
    local_port: int
    tls_port: int
    files: Path
    config: str
    log: Path

    host = "127.0.0.1"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def rewrite_for_test(
    generated: str, files: Path, data: Path, local_port: int, tls_port: int, *, bridge_to: int | None = None
) -> str:
    """The generated mosquitto.conf with only ports, folders and the bridge changed for this machine.

    The bridge section is dropped, or with `bridge_to` kept and pointed at that local port."""
    if bridge_to is None:
        text = generated.split(MARKER)[0]
    else:
        text = re.sub(r"(?m)^address \S+$", f"address 127.0.0.1:{bridge_to}", generated)
    text = text.replace("/etc/mosquitto/uncia/", f"{files}/")
    text = text.replace("persistence_location /var/lib/mosquitto/", f"persistence_location {data}/")
    lines = []
    for line in text.splitlines():
        if line.startswith("listener ") and line.endswith(" 127.0.0.1"):
            line = f"listener {local_port} 127.0.0.1"
        elif line.startswith("listener "):
            line = f"listener {tls_port} 127.0.0.1"
        lines.append(line)
    if os.geteuid() == 0:
        lines.append("user root")
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def generated_broker(
    gateway_tree: Path, workdir: Path, *, bridge_to: int | None = None
) -> Iterator[GeneratedBroker]:
    """Start Mosquitto with the gateway tree's mosquitto.conf and broker files; stop it afterwards."""
    binary = find_mosquitto()
    if binary is None:
        raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
    files, data = workdir / "broker-files", workdir / "broker-data"
    shutil.rmtree(files, ignore_errors=True)
    shutil.copytree(gateway_tree / "uncia/files/etc/mosquitto/uncia", files)
    data.mkdir(exist_ok=True)
    generated = (gateway_tree / "uncia/files/etc/mosquitto/mosquitto.conf").read_text()
    local_port, tls_port = free_port(), free_port()
    while tls_port == local_port:
        tls_port = free_port()
    config = rewrite_for_test(generated, files, data, local_port, tls_port, bridge_to=bridge_to)
    conf_path = workdir / "mosquitto.conf"
    conf_path.write_text(config)
    log = workdir / "broker.log"
    with open(log, "ab") as out:
        process = subprocess.Popen([binary, "-c", str(conf_path)], stdout=out, stderr=subprocess.STDOUT)
    broker = GeneratedBroker(process, local_port, tls_port, files, config, log)
    try:
        deadline = time.monotonic() + 15
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"mosquitto exited at start: {broker.log_text()[-2000:]}")
            if all(_listening(port) for port in (local_port, tls_port)):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"mosquitto did not listen: {broker.log_text()[-2000:]}")
            time.sleep(0.02)
        yield broker
    finally:
        broker.stop()


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False
