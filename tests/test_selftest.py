"""`uncia selftest` against simulated devices on real ptys, gpiozero's mock pins and real brokers."""

from __future__ import annotations

import argparse
import functools
import operator
import os
import random
import threading
from collections import namedtuple
from datetime import UTC, datetime
from pathlib import Path

import pytest
from gpiozero import DigitalInputDevice
from gpiozero.pins.mock import MockFactory

from edge.broker import free_port, start_broker
from edge.camera.backend import CameraUnavailable
from edge.config import parse_config
from edge.fix import ClockSource
from edge.selftest import CheckResult, SelfTest, Status, exit_code, summary
from edge.selftest.devices import check_camera, check_gps, check_lora, check_pins
from edge.selftest.system import check_broker, check_clock, check_image_disk, check_outbox_disk
from simulators.gps import make_simulator
from simulators.lora_reyax import RylrEmulator
from simulators.pty_port import PtyPort
from uncia.commands import selftest as selftest_command

SITE, UNIT = "helan", "cam-07"
Usage = namedtuple("Usage", "total used free")
NOW = datetime(2026, 11, 25, 9, 20, tzinfo=UTC)


def config(tmp_path: Path, **sections) -> dict:
    base = {
        "unit": {"id": UNIT, "site": SITE, "role": "camera"},
        "mqtt": {"host": "127.0.0.1", "port": free_port()},
        "outbox": {"path": str(tmp_path / "outbox.sqlite3")},
        "camera": {
            "lat": 38.8,
            "lon": 105.9,
            "backend": "simulated",
            "main_width": 320,
            "main_height": 240,
            "lores_width": 80,
            "lores_height": 60,
            "image_dir": str(tmp_path / "images"),
        },
    }
    base.update(sections)
    return base


class Talker:
    """A device that keeps sending `data` (pyserial drops what arrived before the port was opened)."""

    def __init__(self, pty: PtyPort, data: bytes) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(pty, data), daemon=True)

    def _run(self, pty: PtyPort, data: bytes) -> None:
        while not self._stop.wait(0.05):
            pty.write(data)

    def __enter__(self) -> Talker:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)


def _line_ok(result: CheckResult) -> None:
    """Every line names the check and says something; FAIL lines say what to fix."""
    assert result.name and result.detail
    assert "\n" not in result.detail
    if result.status is Status.FAIL:
        assert result.line().startswith("FAIL")


# --- GPS ------------------------------------------------------------------------------------------


def test_gps_sentences_with_a_fix_pass(tmp_path: Path) -> None:
    with PtyPort(tmp_path / "gps0") as pty:
        sim = make_simulator(pty, seed=3, rate_hz=10.0, start_time=NOW)
        sim.start()
        try:
            settings = parse_config(config(tmp_path, serial=[{"name": "gps0", "port": pty.path}])).serial[0]
            result = check_gps(settings, wait_s=10.0)
        finally:
            sim.stop()
    assert result.status is Status.PASS, result.line()
    assert "NMEA sentences" in result.detail and "fix quality 1" in result.detail


def test_silent_gps_fails_with_power_and_cable_hint(tmp_path: Path) -> None:
    with PtyPort(tmp_path / "gps0") as pty:
        settings = parse_config(config(tmp_path, serial=[{"name": "gps0", "port": pty.path}])).serial[0]
        result = check_gps(settings, wait_s=0.6)
    assert result.status is Status.FAIL and "no data" in result.detail and "power" in result.fix
    _line_ok(result)


def test_gps_at_the_wrong_baud_rate_is_named(tmp_path: Path) -> None:
    with PtyPort(tmp_path / "gps0") as pty:
        settings = parse_config(config(tmp_path, serial=[{"name": "gps0", "port": pty.path}])).serial[0]
        noise = random.Random(1).randbytes(200).replace(b"$", b"#")  # what a wrong baud rate reads like
        with Talker(pty, noise):
            result = check_gps(settings, wait_s=0.6)
    assert result.status is Status.FAIL and "no NMEA" in result.detail and "baud" in result.fix


def test_missing_gps_device_says_so(tmp_path: Path) -> None:
    settings = parse_config(
        config(tmp_path, serial=[{"name": "gps0", "port": str(tmp_path / "nope")}])
    ).serial[0]
    result = check_gps(settings, wait_s=0.5)
    assert result.status is Status.FAIL and "no such device" in result.detail


def test_gps_without_a_fix_only_warns(tmp_path: Path) -> None:
    with PtyPort(tmp_path / "gps0") as pty:
        settings = parse_config(config(tmp_path, serial=[{"name": "gps0", "port": pty.path}])).serial[0]
        body = b"GPGGA,092000.00,,,,,0,00,99.99,,,,,,"  # a receiver still searching the sky
        no_fix = b"$%s*%02X\r\n" % (body, functools.reduce(operator.xor, body))
        with Talker(pty, no_fix):
            result = check_gps(settings, wait_s=0.6)
    assert result.status is Status.WARN and "no fix yet" in result.detail, result.line()


# --- LoRa -----------------------------------------------------------------------------------------


@pytest.fixture
def modem():
    emulator = RylrEmulator(model="RYLR498", airtime_scale=0.01)
    emulator.start()
    assert emulator.wait_ready(2.0)
    yield emulator
    emulator.stop()


def _lora(tmp_path: Path, port: str):
    return parse_config(config(tmp_path, lora=[{"name": "lora0", "port": port, "family": "rylr"}])).lora[0]


def test_modem_answering_with_matching_settings_passes(modem, tmp_path: Path) -> None:
    result = check_lora(_lora(tmp_path, modem.path))
    assert result.status is Status.PASS, result.line()
    assert "RYLR498" in result.detail and "470.3 MHz SF9" in result.detail


def test_modem_that_does_not_keep_a_setting_fails(modem, tmp_path: Path) -> None:
    modem.ignore("frequency_hz")  # the factory band (490 MHz) stays
    result = check_lora(_lora(tmp_path, modem.path))
    assert result.status is Status.FAIL and "frequency_hz reads back 490000000" in result.detail
    assert "band" in result.fix


def test_dead_modem_fails_with_wiring_hint(modem, tmp_path: Path) -> None:
    modem.hang()
    result = check_lora(_lora(tmp_path, modem.path))
    assert result.status is Status.FAIL and "TX/RX" in result.fix, result.line()


# --- camera unit ----------------------------------------------------------------------------------


def test_pins_claimed_and_released_lamp_left_off(tmp_path: Path) -> None:
    cam = parse_config(config(tmp_path)).camera
    factory = MockFactory()
    result = check_pins(cam, factory)
    assert result.status is Status.PASS and "PIR GPIO17" in result.detail and "PIR at rest" in result.detail
    assert factory.pin(23).state == 0
    DigitalInputDevice(17, pin_factory=factory).close()  # released: can be claimed again
    assert check_pins(cam, None).status is Status.PASS  # simulated backend: mock pins, as the agent


def test_pin_held_by_the_agent_fails(tmp_path: Path) -> None:
    cam = parse_config(config(tmp_path)).camera
    factory = MockFactory()
    held = DigitalInputDevice(cam.illuminator_pin, pin_factory=factory)
    try:
        result = check_pins(cam, factory)
    finally:
        held.close()
    assert result.status is Status.FAIL and "GPIO23 (IR lamp) is in use" in result.detail
    assert "systemctl stop uncia-camera" in result.fix


def test_camera_takes_a_jpeg_of_the_configured_size(tmp_path: Path) -> None:
    cam = parse_config(config(tmp_path)).camera
    result = check_camera(cam, None, wait_s=20.0)
    assert result.status is Status.PASS and "320x240 JPEG" in result.detail, result.line()


def test_camera_missing_fails_with_the_reason(tmp_path: Path) -> None:
    cam = parse_config(config(tmp_path)).camera

    def no_camera(_settings):
        raise CameraUnavailable("no camera 0 could be opened: reseat the ribbon cable")

    result = check_camera(cam, no_camera, wait_s=5.0)
    assert result.status is Status.FAIL and "ribbon cable" in result.detail


# --- disk and clock -------------------------------------------------------------------------------


def test_disk_space_against_the_image_stores_floors(tmp_path: Path) -> None:
    cam = parse_config(config(tmp_path)).camera  # low 500 MB, hard 100 MB

    def usage(mb: float):
        return lambda _path: Usage(32e9, 32e9 - mb * 1e6, mb * 1e6)

    assert check_image_disk(cam, usage(20_000)).status is Status.PASS
    low = check_image_disk(cam, usage(300))
    assert low.status is Status.WARN and "relayed images will be deleted" in low.detail
    full = check_image_disk(cam, usage(50))
    assert full.status is Status.FAIL and "below 100 MB" in full.detail
    assert "does not exist yet" in full.detail  # images/ is made by the agent at start
    assert check_outbox_disk(tmp_path, usage(20)).status is Status.FAIL


def test_clock_unsynced_warns_and_unset_fails() -> None:
    assert check_clock(lambda: ClockSource.NETWORK, lambda: NOW).status is Status.PASS
    unsynced = check_clock(lambda: ClockSource.UNSYNCED, lambda: NOW)
    assert unsynced.status is Status.WARN and "timedatectl" in unsynced.fix
    unset = check_clock(lambda: ClockSource.UNSYNCED, lambda: datetime(1970, 1, 1, tzinfo=UTC))
    assert unset.status is Status.FAIL and "never set" in unset.detail and "1970" in unset.detail


# --- broker ---------------------------------------------------------------------------------------


def _mqtt(tmp_path: Path, port: int, **mqtt):
    cfg = parse_config(config(tmp_path, mqtt={"host": "127.0.0.1", "port": port, **mqtt}))
    return cfg.mqtt, cfg.unit


def test_broker_reachable_anonymous_passes(broker, tmp_path: Path) -> None:
    result = check_broker(*_mqtt(tmp_path, broker.port), timeout=10.0)
    assert result.status is Status.PASS and "anonymous" in result.detail


def test_no_broker_listening(tmp_path: Path) -> None:
    result = check_broker(*_mqtt(tmp_path, free_port()), timeout=5.0)
    assert result.status is Status.FAIL and "nothing listens" in result.detail and "mosquitto" in result.fix


def test_wrong_password_is_told_apart_from_a_dead_broker(tmp_path: Path) -> None:
    secret = tmp_path / "mqtt-password"
    with start_broker(users={UNIT: "snow-leopard-7"}) as secured:
        secret.write_text("not-the-password\n")
        os.chmod(secret, 0o600)
        wrong = check_broker(*_mqtt(tmp_path, secured.port, username=UNIT, password_file=str(secret)), 10.0)
        secret.write_text("snow-leopard-7\n")
        right = check_broker(*_mqtt(tmp_path, secured.port, username=UNIT, password_file=str(secret)), 10.0)
        anonymous = check_broker(*_mqtt(tmp_path, secured.port), 10.0)
    assert wrong.status is Status.FAIL
    assert "broker refused the unit's user name/password" in wrong.detail
    assert "re-provision" in wrong.fix and str(secret) in wrong.fix
    assert "snow-leopard" not in wrong.line() and "not-the-password" not in wrong.line()  # never printed
    assert right.status is Status.PASS and f"user '{UNIT}'" in right.detail
    assert anonymous.status is Status.FAIL and "wants credentials" in anonymous.detail


# --- the whole run and the command ----------------------------------------------------------------


def test_a_whole_camera_unit(broker, tmp_path: Path) -> None:
    with PtyPort(tmp_path / "gps0") as pty:
        sim = make_simulator(pty, seed=5, rate_hz=10.0, start_time=NOW)
        sim.start()
        try:
            cfg = parse_config(
                config(
                    tmp_path,
                    mqtt={"host": broker.host, "port": broker.port},
                    serial=[{"name": "gps0", "port": pty.path}],
                )
            )
            test = SelfTest(
                cfg,
                pin_factory=MockFactory(),
                clock_source=lambda: ClockSource.UNSYNCED,
                now=lambda: NOW,
                gps_wait_s=10.0,
            )
            results = list(test.checks())
        finally:
            sim.stop()
    names = [r.name for r in results]
    assert names[0].startswith("gps gps0") and names[-1].startswith("broker")
    assert {"camera pins", "camera cam0 (simulated)", "disk outbox", "disk images", "clock"} <= set(names)
    assert [r.status for r in results if r.name == "clock"] == [Status.WARN]
    assert all(r.status is Status.PASS for r in results if r.name != "clock"), [r.line() for r in results]
    for r in results:
        _line_ok(r)
    assert exit_code(results) == 0
    assert summary(UNIT, SITE, results).startswith(f"selftest {UNIT} ({SITE}): 6 PASS, 1 WARN, 0 FAIL")


def _command(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    selftest_command.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_command_exit_codes_and_one_line_per_check(tmp_path: Path, capsys) -> None:
    unit_file = tmp_path / "gw.toml"
    port = free_port()
    unit_file.write_text(
        f'[unit]\nid = "gw-01"\nsite = "{SITE}"\n[mqtt]\nport = {port}\n'
        f'[outbox]\npath = "{tmp_path / "outbox.sqlite3"}"\n'
    )
    code = selftest_command.run(_command(["selftest", "-c", str(unit_file), "--broker-timeout", "3"]))
    out = capsys.readouterr().out.splitlines()
    assert code == 1
    statuses = [line.split()[0] for line in out if line[:4] in ("PASS", "WARN", "FAIL")]
    assert len(statuses) == 3  # outbox disk, clock, broker: a gateway without devices
    assert any(line.startswith(f"FAIL  broker 127.0.0.1:{port}: nothing listens") for line in out)
    assert out[-1].startswith("selftest gw-01 (helan):") and "1 FAIL" in out[-1]

    unit_file.write_text('[unit]\nid = "GW 01"\nsite = "helan"\n')
    assert selftest_command.run(_command(["selftest", "-c", str(unit_file)])) == 3
    assert "unit.id" in capsys.readouterr().out


# --- the station hub (gateway with [station]) ---------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]


def _station(tmp_path: Path, **keys) -> object:
    from edge.config import StationSettings

    return StationSettings(record=str(tmp_path / "station.sqlite3"), **keys)


def test_station_checks_record_boundary_and_web_port(tmp_path):
    import socket

    from edge.selftest.station import check_boundary, check_record_disk, check_web_port

    usage = namedtuple("usage", "total used free")
    roomy = lambda _p: usage(64e9, 10e9, 54e9)  # noqa: E731
    assert check_record_disk(_station(tmp_path), roomy).status is Status.PASS
    assert check_boundary(_station(tmp_path)).status is Status.PASS  # none: said so
    good = check_boundary(_station(tmp_path, boundary=str(REPO / "deploy" / "reserve.example.geojson")))
    assert good.status is Status.PASS and "4 zone(s)" in good.detail
    bad_file = tmp_path / "bad.geojson"
    bad_file.write_text(
        '{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"kind": "lake"},'
        ' "geometry": {"type": "Point", "coordinates": [106, 38]}}]}'
    )
    bad = check_boundary(_station(tmp_path, boundary=str(bad_file)))
    assert bad.status is Status.FAIL and bad.fix
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = check_web_port(_station(tmp_path, web_host="127.0.0.1", web_port=port))
    assert busy.status is Status.FAIL and "in use" in busy.detail and "web_port" in busy.fix
    free = check_web_port(_station(tmp_path, web_host="127.0.0.1", web_port=free_port()))
    assert free.status is Status.PASS
    open_lan = check_web_port(_station(tmp_path, web_host="0.0.0.0", web_port=free_port()))
    assert open_lan.status is Status.WARN and "web_password_file" in open_lan.fix


def test_a_gateways_selftest_includes_the_station(tmp_path):
    config = parse_config(
        {
            "unit": {"id": "gw-01", "site": "helan"},
            "outbox": {"path": str(tmp_path / "outbox.sqlite3")},
            "station": {
                "record": str(tmp_path / "station.sqlite3"),
                "web_host": "127.0.0.1",
                "web_port": free_port(),
            },
        }
    )
    names = [name for name, _check in SelfTest(config).plan()]
    assert "station record" in names and "reserve boundary" in names
    assert any(n.startswith("staff page 127.0.0.1:") for n in names)
