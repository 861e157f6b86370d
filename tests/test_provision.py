"""`uncia provision` without a broker: inventory checks, generated files, bundles, first boot, the CLI.

The broker-facing half (logins, ACL, TLS, revocation against a real Mosquitto) is in
tests/test_provision_security.py.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import stat
import subprocess
import tarfile
import tomllib
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from hypothesis import given, settings
from hypothesis import strategies as st
from provision_helpers import INVENTORY, provision_folder, write_inventory

from edge.config import load_config
from gateway.provision.acl import render_acl
from gateway.provision.bundle import write_tar
from gateway.provision.credentials import (
    SiteCA,
    generate_password,
    mosquitto_hash,
    verify_mosquitto_hash,
)
from gateway.provision.firstboot import CMDLINE_HOOK, add_hook
from gateway.provision.inventory import InventoryError, load_inventory, parse_inventory
from gateway.provision.mosquitto_conf import render_mosquitto_conf
from gateway.provision.plan import provision
from gateway.provision.site_state import SiteState
from uncia.commands import provision as provision_command

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "deploy" / "site-inventory.example.toml"


def inventory_data(auth: str = "password") -> dict[str, Any]:
    return tomllib.loads(INVENTORY.format(auth=auth))


def error_of(data: dict[str, Any]) -> InventoryError:
    with pytest.raises(InventoryError) as caught:
        parse_inventory(data)
    return caught.value


# -- the inventory ------------------------------------------------------------------------------


def test_example_inventory_loads() -> None:
    inventory = load_inventory(EXAMPLE)
    assert inventory.site.name == "helan" and inventory.gateway.id == "gw-01"
    assert [u.id for u in inventory.units] == ["gw-01", "cam-01", "cam-02"]
    assert inventory.gateway.gps[0].link == "/dev/uncia-gps0"
    assert inventory.gateway.lora[0].usb.link == "/dev/uncia-lora0"
    assert inventory.unit("cam-01").pair_with == "cam-02"
    assert inventory.staff == ("dolma",) and inventory.dashboards == ("public-map",)


def test_example_inventory_provisions_every_unit_and_person(tmp_path: Path) -> None:
    inventory = load_inventory(EXAMPLE)
    state = SiteState.open(tmp_path / "state", "helan")
    result = provision(inventory, state)
    state.save()
    assert [t.name for t in result.trees] == [
        "gw-01",
        "cam-01",
        "cam-02",
        "staff-dolma",
        "dashboard-public-map",
    ]
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700


def test_error_names_unit_and_field() -> None:
    data = inventory_data()
    data["unit"][1]["gpio"]["pir"] = "x"
    assert str(error_of(data)) == "unit cam-01: gpio.pir = 'x': expected a BCM pin number 0-27"


@pytest.mark.parametrize(
    ("change", "where", "key"),
    [
        (lambda d: d["unit"][1]["gpio"].update(pir=28), "unit cam-01", "gpio.pir"),
        (lambda d: d["unit"][1].update(colour="red"), "unit cam-01", "colour"),
        (lambda d: d["unit"][1].update(pair_with="cam-09"), "unit cam-01", "pair_with"),
        (lambda d: d["unit"][1].update(pair_with="cam-01"), "unit cam-01", "pair_with"),
        (lambda d: d["unit"][2].pop("position"), "unit cam-02", "position"),
        (lambda d: d["unit"][0]["gps"][0].update(usb="1546-01a7"), "unit gw-01", "gps[0].usb"),
        (
            lambda d: d["unit"][0]["lora"][0].update(serial_number='00"1'),
            "unit gw-01",
            "lora[0].serial_number",
        ),
        (lambda d: d["unit"][0]["lora"][0].update(family="sx1276"), "unit gw-01", "lora[0].family"),
        (
            lambda d: d["unit"][0]["lora"][0].update(spreading_factor=13),
            "unit gw-01",
            "lora[0].spreading_factor",
        ),
        (lambda d: d["unit"][1].update(camera={"fps": 500.0}), "unit cam-01", "camera.fps"),
        (lambda d: d["unit"][1].update(camera={"pir_pin": 4}), "unit cam-01", "camera.pir_pin"),
        (
            lambda d: d["unit"][1].update(camera={"image_dir": "/var/lib/uncia/../../etc"}),
            "unit cam-01",
            "camera.image_dir",
        ),
        (lambda d: d["unit"][1].update(camera={"tuning_file": "a\nb"}), "unit cam-01", "camera.tuning_file"),
        (lambda d: d["unit"][1].update(position={"lat": 91, "lon": 0}), "unit cam-01", "position.lat"),
        (lambda d: d["unit"][1]["gpio"].update(illuminator=17), "unit cam-01", "gpio.illuminator"),
        (lambda d: d["unit"][2].update(role="gateway", pair_with=""), "inventory", "unit.role"),
        (lambda d: d["staff"].append({"name": "cam-01"}), "staff cam-01", "name"),
        (lambda d: d["site"].update(broker_address="10.0.0.2 evil"), "site", "broker_address"),
        (lambda d: d["site"].update(boundary="../../etc/passwd"), "site", "boundary"),
        (lambda d: d["site"].update(auth="none"), "site", "auth"),
        (lambda d: d["site"].update(local_port=8883), "site", "local_port"),
        (lambda d: d.update(bridge={"address": "central example.org"}), "bridge", "address"),
    ],
)
def test_bad_values_name_where_and_what(change: Any, where: str, key: str) -> None:
    data = inventory_data()
    change(data)
    error = error_of(data)
    assert (error.where, error.key) == (where, key), str(error)
    assert f"{where}: {key} = " in str(error)


def test_gpio_on_a_gateway_and_unknown_sections_are_refused() -> None:
    data = inventory_data()
    data["unit"][0]["gpio"] = {"pir": 4}
    assert error_of(data).key == "gpio"
    data = inventory_data()
    data["units"] = []
    assert error_of(data).key == "units"


# Characters that could end a line, a string or a topic level in a generated file.
INJECTION = st.sampled_from(["\n", "\r", "#", " ", "/", "+", '"', "'", ":", "\\", "\t", "\x00", "$", ";"])
BASE = st.from_regex(r"\A[a-z0-9][a-z0-9_-]{0,20}\Z")


@st.composite
def injected(draw: st.DrawFn) -> str:
    base = draw(BASE)
    position = draw(st.integers(0, len(base)))
    return base[:position] + draw(INJECTION) + base[position:]


@settings(max_examples=60, deadline=None)
@given(value=injected(), target=st.sampled_from(["unit", "staff", "dashboard", "pair", "serial", "site"]))
def test_values_that_would_inject_into_a_generated_file_are_refused(value: str, target: str) -> None:
    data = inventory_data()
    if target == "unit":
        data["unit"][1]["id"] = value
        expected = ("unit[1]", "id")
    elif target == "staff":
        data["staff"][0]["name"] = value
        expected = ("staff[0]", "name")
    elif target == "dashboard":
        data["dashboard"][0]["name"] = value
        expected = ("dashboard[0]", "name")
    elif target == "pair":
        data["unit"][1]["pair_with"] = value
        expected = ("unit cam-01", "pair_with")
    elif target == "serial":
        data["unit"][0]["lora"][0]["serial_number"] = value
        expected = ("unit gw-01", "lora[0].serial_number")
    else:
        data["site"]["name"] = value
        expected = ("site", "name")
    error = error_of(data)
    assert (error.where, error.key, error.value) == (*expected, value)


@settings(max_examples=40, deadline=None)
@given(name=BASE)
def test_any_accepted_name_is_one_acl_user_line(name: str) -> None:
    data = inventory_data()
    data["staff"][0]["name"] = name
    try:
        inventory = parse_inventory(data)
    except InventoryError as exc:  # the name is taken by a unit or the dashboard: refused, as it must be
        assert exc.key == "name"
        return
    acl = render_acl(inventory)
    assert f"\nuser {name}\n" in acl
    assert len(acl.splitlines()) == len(render_acl(parse_inventory(inventory_data())).splitlines())


# -- credentials --------------------------------------------------------------------------------


def test_password_hash_has_mosquittos_format_and_verifies() -> None:
    password = generate_password()
    assert len(password) >= 43 and ":" not in password and not any(c.isspace() for c in password)
    encoded = mosquitto_hash(password)
    assert re.fullmatch(r"\$7\$1000\$[A-Za-z0-9+/]{16}\$[A-Za-z0-9+/]{86}==", encoded)
    assert verify_mosquitto_hash(password, encoded)
    assert not verify_mosquitto_hash(password + "x", encoded)
    assert generate_password() != password


@pytest.mark.skipif(not Path("/usr/bin/mosquitto_passwd").exists(), reason="needs mosquitto_passwd")
def test_our_hash_reads_mosquitto_passwds_own_lines(tmp_path: Path) -> None:
    # The same format both ways: a line mosquitto_passwd wrote verifies with our reader.
    path = tmp_path / "passwords"
    path.write_text("unit:correct horse\n")
    subprocess.run(["mosquitto_passwd", "-U", str(path)], check=True, capture_output=True)
    user, encoded = path.read_text().strip().split(":", 1)
    assert user == "unit" and verify_mosquitto_hash("correct horse", encoded)


def test_certificates_outlive_a_wrong_clock_and_the_crl_lists_revocations() -> None:
    ca = SiteCA.create("helan")
    issued = ca.issue_client("cam-01")
    cert = x509.load_pem_x509_certificate(issued.cert_pem)
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "cam-01"
    assert cert.not_valid_before_utc.year == 2020 and cert.not_valid_after_utc.year >= 2049
    crl = x509.load_pem_x509_crl(ca.crl([issued.serial]))
    assert crl.get_revoked_certificate_by_serial_number(issued.serial) is not None
    assert crl.next_update_utc is not None and crl.next_update_utc.year >= 2049


# -- generated files ----------------------------------------------------------------------------


@pytest.fixture
def site(tmp_path: Path) -> dict[str, Any]:
    inventory = write_inventory(tmp_path)
    out = tmp_path / "out"
    result = provision_folder(inventory, out)
    return {"inventory": inventory, "out": out, "result": result, "state": tmp_path / "helan.state"}


def _load_unit_config(tree: Path, name: str) -> Any:
    etc = tree / "uncia/files/etc/uncia"
    text = (etc / name).read_text().replace('"/etc/uncia/', f'"{etc}/')
    (etc / f"test-{name}").write_text(text)
    return load_config(etc / f"test-{name}")


@pytest.mark.parametrize("auth", ["password", "certificate"])
def test_unit_configs_load_with_edge_config(tmp_path: Path, auth: str) -> None:
    out = tmp_path / "out"
    provision_folder(write_inventory(tmp_path, auth=auth), out)
    gateway = _load_unit_config(out / "gw-01", "gateway.toml")
    assert (gateway.unit.role, gateway.mqtt.host, gateway.mqtt.port) == ("gateway", "127.0.0.1", 1883)
    assert gateway.mqtt.username == "gw-01" and len(gateway.mqtt.password() or "") >= 43
    assert [(s.name, s.port) for s in gateway.serial] == [("gps0", "/dev/uncia-gps0")]
    assert [(m.name, m.port, m.family) for m in gateway.lora] == [("lora0", "/dev/uncia-lora0", "rylr")]
    assert gateway.station is not None and gateway.station.coarse_precision_m == 1000.0
    camera = _load_unit_config(out / "cam-01", "camera.toml")
    assert (camera.mqtt.host, camera.mqtt.port, camera.mqtt.tls) == ("10.0.0.2", 8883, True)
    assert camera.camera is not None
    assert (camera.camera.pir_pin, camera.camera.illuminator_pin, camera.camera.pair_with) == (
        17,
        24,
        "cam-02",
    )
    if auth == "certificate":
        assert camera.mqtt.cert_file.endswith("client.crt") and not camera.mqtt.username
    else:
        assert camera.mqtt.username == "cam-01" and camera.mqtt.password()


def test_udev_rules_name_devices_and_keep_modemmanager_away(site: dict[str, Any]) -> None:
    rules = (site["out"] / "gw-01/uncia/files/etc/udev/rules.d/70-uncia.rules").read_text().splitlines()
    rules = [line for line in rules if not line.startswith("#")]
    assert rules == [
        'SUBSYSTEM=="tty", ATTRS{idVendor}=="1546", ATTRS{idProduct}=="01a7", SYMLINK+="uncia-gps0", '
        'GROUP="dialout", MODE="0660", ENV{ID_MM_DEVICE_IGNORE}="1"',
        'SUBSYSTEM=="tty", ATTRS{idVendor}=="10c4", ATTRS{idProduct}=="ea60", ATTRS{serial}=="0001", '
        'SYMLINK+="uncia-lora0", GROUP="dialout", MODE="0660", ENV{ID_MM_DEVICE_IGNORE}="1"',
    ]


def _changed_lines(written: Path, original: Path) -> list[tuple[str, str]]:
    pairs = zip(original.read_text().splitlines(), written.read_text().splitlines(), strict=True)
    return [(a, b) for a, b in pairs if a != b]


def test_systemd_units_come_from_deploy_with_the_units_pin_groups_and_folders(site: dict[str, Any]) -> None:
    deploy, out = REPO / "deploy", site["out"]
    camera = _changed_lines(
        out / "cam-01/uncia/files/etc/systemd/system/uncia-camera.service",
        deploy / "systemd/uncia-camera.service",
    )
    # cam-01's lamp is on BCM 24, and it has no GPS or LoRa modem: no dialout.
    assert [b for _, b in camera] == [
        "ExecStopPost=-/usr/bin/pinctrl set 24 op dl",
        "SupplementaryGroups=gpio video",
    ]
    # gw-01's modem has no reset line wired: no gpio.
    gateway = _changed_lines(
        out / "gw-01/uncia/files/etc/systemd/system/uncia-gateway.service",
        deploy / "systemd/uncia-gateway.service",
    )
    assert [b for _, b in gateway] == ["SupplementaryGroups=dialout"]
    journald = out / "gw-01/uncia/files/etc/systemd/journald.conf.d/uncia.conf"
    assert journald.read_bytes() == (deploy / "journald/uncia.conf").read_bytes()
    install = (out / "cam-01/uncia/install.sh").read_text()
    assert 'GROUPS_NEEDED="gpio video"' in install and 'SERVICES="uncia-camera.service"' in install


def test_folders_outside_var_lib_uncia_become_writable_for_the_service(tmp_path: Path) -> None:
    text = INVENTORY.format(auth="password").replace(
        "[unit.gpio]\npir = 17", '[unit.camera]\nimage_dir = "/mnt/card/images"\n[unit.gpio]\npir = 17'
    )
    provision_folder(write_inventory(tmp_path, text=text), tmp_path / "out")
    service = (tmp_path / "out/cam-01/uncia/files/etc/systemd/system/uncia-camera.service").read_text()
    assert "ReadWritePaths=/var/lib/uncia /mnt/card/images\n" in service
    data = inventory_data()
    data["unit"][1]["camera"] = {"image_dir": "/mnt/my card"}
    assert error_of(data).key == "camera.image_dir"


def test_broker_config_for_both_auth_modes() -> None:
    password = render_mosquitto_conf(parse_inventory(inventory_data("password")))
    assert "allow_anonymous false" in password and "allow_anonymous true" not in password
    assert "listener 1883 127.0.0.1\n" in password and "listener 8883\n" in password
    assert "tls_version tlsv1.2" in password and "password_file /etc/mosquitto/uncia/passwords" in password
    cert = render_mosquitto_conf(parse_inventory(inventory_data("certificate")))
    for line in ("per_listener_settings true", "require_certificate true", "use_identity_as_username true"):
        assert line in cert
    assert "crlfile /etc/mosquitto/uncia/crl.pem" in cert
    assert cert.count("allow_anonymous false") == 2 and cert.count("acl_file") == 2


def _bridge_inventory(tmp_path: Path) -> Path:
    (tmp_path / "central-ca.crt").write_bytes(SiteCA.create("central").cert_pem())
    password = tmp_path / "central-password"
    password.write_text("bridge-secret-3f9a7c\n")
    password.chmod(0o600)
    text = INVENTORY.format(auth="password") + (
        '\n[bridge]\naddress = "central.example.org"\nca_file = "central-ca.crt"\n'
        'remote_username = "station-helan"\nremote_password_file = "central-password"\n'
    )
    return write_inventory(tmp_path, text=text)


def test_bridge_to_the_central_broker(tmp_path: Path) -> None:
    inventory = _bridge_inventory(tmp_path)
    provision_folder(inventory, tmp_path / "out")
    broker = tmp_path / "out/gw-01/uncia/files/etc/mosquitto"
    conf = (broker / "mosquitto.conf").read_text()
    try:
        import gateway.bridge_config  # noqa: F401
    except ImportError:  # the bridge's own module is not there: a marked seam, no bridge
        assert "NOT CONFIGURED" in conf and "central.example.org:8883" in conf
        return
    assert "address central.example.org:8883" in conf and "remote_username station-helan" in conf
    assert "bridge_cafile /etc/mosquitto/uncia/central-ca.crt" in conf
    assert (broker / "uncia/central-ca.crt").read_bytes() == (tmp_path / "central-ca.crt").read_bytes()
    # The password is in the config now: the config is a secret like the password file.
    assert stat.S_IMODE((broker / "mosquitto.conf").stat().st_mode) == 0o600
    manifest = (tmp_path / "out/gw-01/uncia/manifest").read_text()
    assert "0600 mosquitto mosquitto /etc/mosquitto/mosquitto.conf" in manifest


def test_bridge_password_file_open_to_others_is_refused(tmp_path: Path) -> None:
    pytest.importorskip("gateway.bridge_config")
    inventory = _bridge_inventory(tmp_path)
    (tmp_path / "central-password").chmod(0o644)
    with pytest.raises(InventoryError) as caught:
        provision_folder(inventory, tmp_path / "out")
    assert caught.value.where == "bridge" and "chmod 600" in str(caught.value)
    assert "bridge-secret" not in str(caught.value)


# -- bundles: modes, secrets, tar -----------------------------------------------------------------


def _secret_paths(out: Path) -> list[Path]:
    names = {"mqtt-password", "password", "client.key", "broker.key", "passwords", "acl"}
    return [p for p in out.rglob("*") if p.is_file() and p.name in names]


def test_secret_files_are_0600_and_unit_folders_0700(site: dict[str, Any]) -> None:
    secrets = _secret_paths(site["out"])
    assert len(secrets) == 8  # 3 unit passwords, 2 people's, broker key, password file, ACL
    for path in secrets:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for tree in site["out"].iterdir():
        assert stat.S_IMODE(tree.stat().st_mode) == 0o700, tree
    private = site["state"] / "private"
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in private.iterdir())


def test_tar_bundle_members_and_archive_are_0600_for_secrets(tmp_path: Path) -> None:
    inventory = load_inventory(write_inventory(tmp_path))
    result = provision(inventory, SiteState.open(tmp_path / "state", "helan"))
    target = write_tar(tmp_path / "helan.tar.gz", result.trees)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    with tarfile.open(target) as tar:
        members = {m.name: m for m in tar.getmembers()}
    secrets = {f"{t.name}/{f.path}" for t in result.trees for f in t.files if f.secret}
    # 8 MQTT/TLS secrets + the staff page's password, for the gateway and in the staff bundle
    assert len(secrets) == 10
    assert "gw-01/uncia/files/etc/uncia/web-password" in secrets
    assert any(name.endswith("/web-password") and not name.startswith("gw-01/") for name in secrets)
    for name, member in members.items():
        if name in secrets:
            assert member.mode == 0o600, name
        assert member.uid == 0 and not name.startswith("/") and ".." not in name.split("/")
    assert members["cam-01/firstrun.sh"].mode == 0o755


def test_no_secret_in_the_output_or_logs_of_uncia_provision(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    inventory = write_inventory(tmp_path)
    caplog.set_level(logging.DEBUG)
    code = _cli(inventory, "--bundle", str(tmp_path / "b.tar.gz"))
    code2 = _cli(inventory, "--out", str(tmp_path / "out"), "--reprovision", "cam-02")
    captured = capsys.readouterr()
    assert (code, code2) == (0, 0)
    assert "issued: gw-01, cam-01, cam-02, dolma, public-map" in captured.out
    assert "revoked: cam-02" in captured.out
    everything = captured.out + captured.err + caplog.text
    secrets = [p.read_bytes() for p in (tmp_path / "helan.state/private").iterdir()]
    secrets += [p.read_bytes() for p in _secret_paths(tmp_path / "out")]
    assert len(secrets) > 10
    for secret in secrets:
        for line in secret.decode().splitlines():
            if len(line) >= 16 and not line.startswith("-----"):  # PEM armour lines are no secret
                assert line not in everything


def _cli(*args: object) -> int:
    parser = argparse.ArgumentParser()
    provision_command.register(parser.add_subparsers())
    parsed = parser.parse_args(["provision", *map(str, args)])
    return parsed.func(parsed)


def test_cli_reports_inventory_errors_with_exit_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = INVENTORY.format(auth="password").replace('id = "cam-01"', 'id = "cam 01"')
    inventory = write_inventory(tmp_path, text=bad)
    assert _cli(inventory, "--out", tmp_path / "out") == 3
    assert "unit[1]: id = 'cam 01': expected lowercase letters" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not (tmp_path / "helan.state").exists()


# -- re-provisioning and the site state -----------------------------------------------------------


def test_provisioning_again_changes_nothing_and_reprovisioning_revokes(tmp_path: Path) -> None:
    inventory_path = write_inventory(tmp_path, auth="certificate")
    first = provision_folder(inventory_path, tmp_path / "a")
    again = provision_folder(inventory_path, tmp_path / "b")
    assert again.issued == [] and not again.gateway_added
    for path in (tmp_path / "a").rglob("*"):
        if path.is_file():
            assert path.read_bytes() == (tmp_path / "b" / path.relative_to(tmp_path / "a")).read_bytes()
    assert len(first.issued) == 5

    old_cert = x509.load_pem_x509_certificate(
        (tmp_path / "a/cam-02/uncia/files/etc/uncia/client.crt").read_bytes()
    )
    third = provision_folder(inventory_path, tmp_path / "c", reprovision=["cam-02"])
    assert third.revoked == ["cam-02"] and [t.name for t in third.trees] == ["cam-02", "gw-01"]
    broker = tmp_path / "c/gw-01/uncia/files/etc/mosquitto/uncia"
    crl = x509.load_pem_x509_crl((broker / "crl.pem").read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(old_cert.serial_number) is not None
    old_line = (tmp_path / "a/gw-01/uncia/files/etc/mosquitto/uncia/passwords").read_text().splitlines()[1]
    assert old_line.startswith("cam-02:") and old_line not in (broker / "passwords").read_text()


def test_a_unit_dropped_from_the_inventory_is_revoked(tmp_path: Path) -> None:
    inventory_path = write_inventory(tmp_path)
    provision_folder(inventory_path, tmp_path / "a")
    text = inventory_path.read_text().replace('[[dashboard]]\nname = "public-map"\n', "")
    inventory_path.write_text(text)
    result = provision_folder(inventory_path, tmp_path / "b", units=["cam-01"])
    assert result.retired == ["public-map"] and result.gateway_added
    passwords = (tmp_path / "b/gw-01/uncia/files/etc/mosquitto/uncia/passwords").read_text()
    assert "public-map:" not in passwords and "user public-map" not in render_acl(
        load_inventory(inventory_path)
    )


# -- first boot ------------------------------------------------------------------------------------

CMDLINE = (
    "console=serial0,115200 console=tty1 root=PARTUUID=4e639091-02 rootfstype=ext4 fsck.repair=yes rootwait\n"
)


def test_cmdline_hook_is_appended_once_on_the_same_line() -> None:
    once = add_hook(CMDLINE)
    assert once == CMDLINE.strip() + " " + CMDLINE_HOOK + "\n"
    assert add_hook(once) == once


def test_flash_a_boot_partition_then_first_boot_installs_and_cleans_up(tmp_path: Path) -> None:
    inventory = write_inventory(tmp_path)
    assert _cli(inventory, "--bundle", tmp_path / "site.tar.gz") == 0  # all credentials issued first
    boot = tmp_path / "bootfs"
    boot.mkdir()
    (boot / "cmdline.txt").write_text(CMDLINE)
    (boot / "firstrun.sh").write_text('#!/bin/bash\n# Raspberry Pi Imager\'s\ntouch "$IMAGER_RAN"\nexit 0\n')
    assert _cli(inventory, "--unit", "cam-01", "--out", boot) == 0
    assert (boot / "cmdline.txt").read_text() == CMDLINE.strip() + " " + CMDLINE_HOOK + "\n"
    assert (boot / "cmdline.txt.uncia-orig").read_text() == CMDLINE
    assert (boot / "firstrun-imager.sh").exists() and (boot / "uncia/install.sh").exists()

    # Run the first boot in a sandbox: the boot partition and / are folders here, no users or systemd.
    root = tmp_path / "root"
    script = (boot / "firstrun.sh").read_text()
    assert "BOOT=/boot/firmware\n" in script
    script = script.replace("BOOT=/boot/firmware\n", f"BOOT={boot}\n").replace("/var/log/", f"{tmp_path}/")
    script = script.replace("/run/firstrun-imager.sh", f"{tmp_path}/firstrun-imager.sh")
    (boot / "firstrun.sh").write_text(script)
    env = {**os.environ, "UNCIA_ROOT": str(root), "IMAGER_RAN": str(tmp_path / "imager-ran")}
    done = subprocess.run(
        ["bash", str(boot / "firstrun.sh")], env=env, capture_output=True, text=True, timeout=60
    )
    log = (tmp_path / "uncia-firstboot.log").read_text()
    assert done.returncode == 0 and "uncia first boot: OK" in log, log
    assert (tmp_path / "imager-ran").exists()
    assert (boot / "cmdline.txt").read_text() == CMDLINE
    assert not (boot / "firstrun.sh").exists() and not (boot / "uncia").exists()
    assert (boot / "uncia-firstboot.log").read_text() == log
    assert stat.S_IMODE((root / "etc/uncia/mqtt-password").stat().st_mode) == 0o600
    assert stat.S_IMODE((root / "etc/uncia/camera.toml").stat().st_mode) == 0o644
    assert (root / "etc/udev/rules.d/70-uncia.rules").exists()
    assert (root / "etc/systemd/system/uncia-camera.service").exists()
    password = (root / "etc/uncia/mqtt-password").read_text().strip()
    assert password not in log


def test_a_boot_partition_takes_one_unit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inventory = write_inventory(tmp_path)
    boot = tmp_path / "bootfs"
    boot.mkdir()
    (boot / "cmdline.txt").write_text(CMDLINE)
    # A new site: every credential is new, so the gateway's files change too and need a folder.
    assert _cli(inventory, "--unit", "cam-01", "--out", boot) == 3
    assert "takes one unit" in capsys.readouterr().err
    assert (boot / "cmdline.txt").read_text() == CMDLINE


def test_scripts_are_valid_bash(site: dict[str, Any]) -> None:
    for script in ("firstrun.sh", "uncia/install.sh"):
        subprocess.run(["bash", "-n", str(site["out"] / "gw-01" / script)], check=True)
