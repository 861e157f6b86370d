"""Rak3172Modem against the emulated RAK3172 (RUI3) on a real pty: P2P mode, receive, send, recovery."""

from __future__ import annotations

import logging

import pytest

from edge.lora.errors import RAK_ERRORS
from edge.lora.modem import ModemError, ModemMismatch, ModemTimeout, RadioSettings
from edge.lora.rak3172 import Rak3172Modem, check_settings, parse_p2p
from simulators.lora_rak3172 import Rak3172Emulator

CN470 = RadioSettings(spreading_factor=10)  # 470.3 MHz, SF10, 125 kHz, 4/5, preamble 8, 17 dBm
P2P = "AT+P2P=470300000:10:125:0:8:17"


def _open(emulator: Rak3172Emulator, **kwargs) -> Rak3172Modem:
    emulator.start()
    kwargs.setdefault("reset", emulator.hardware_reset)
    modem = Rak3172Modem(
        emulator.path, name="lora1", timeout=0.3, boot_timeout=2.0, send_timeout=2.0, **kwargs
    )
    assert modem.channel.wait_boot(0, 2.0), "emulator never printed its banner"
    return modem


@pytest.fixture
def fresh():
    """A module as shipped: in LoRaWAN mode."""
    emulator = Rak3172Emulator(airtime_scale=0.01)
    modem = _open(emulator)
    yield emulator, modem
    modem.close()
    emulator.stop()


@pytest.fixture
def configured(fresh):
    emulator, modem = fresh
    modem.configure(CN470)
    return emulator, modem


def test_probe_reads_the_firmware(fresh) -> None:
    _emulator, modem = fresh
    modem.probe()
    assert modem.firmware == "RUI_4.0.6_RAK3172-E"
    assert modem.label == f"lora1 ({modem.channel.port}, RAK3172)"


def test_configure_switches_to_p2p_once_the_module_restarts(fresh, caplog) -> None:
    emulator, modem = fresh
    caplog.set_level(logging.INFO)
    read = modem.configure(CN470)
    assert read == {
        "work_mode": 0,
        "frequency_hz": 470_300_000,
        "spreading_factor": 10,
        "bandwidth_khz": 125,
        "coding_rate": 1,
        "preamble": 8,
        "tx_power_dbm": 17,
    }
    assert emulator.counters["reboots"] == 1 and emulator.work_mode == 0
    assert any("switched from work mode 1 (LoRaWAN) to LoRa P2P" in r.message for r in caplog.records)
    assert emulator.radio is not None and emulator.radio.frequency_hz == 470_300_000
    assert emulator.rx_mode == 65534 and modem.receiving
    modem.configure(CN470)
    assert emulator.counters["reboots"] == 1  # already in P2P: no second restart


def test_read_settings_pauses_and_resumes_receiving(configured) -> None:
    emulator, modem = configured
    assert modem.read_settings()["spreading_factor"] == 10
    assert emulator.rx_mode == 65534


def test_bandwidth_read_back_in_khz_is_understood_too() -> None:
    emulator = Rak3172Emulator(bw_readback="khz", work_mode=0)
    modem = _open(emulator)
    try:
        assert modem.configure(RadioSettings(spreading_factor=10, bandwidth_khz=250))["bandwidth_khz"] == 250
    finally:
        modem.close()
        emulator.stop()
    assert parse_p2p("470300000:10:2:3:8:17")["bandwidth_khz"] == 500
    assert parse_p2p("470300000:10:2:3:8:17")["coding_rate"] == 4


@pytest.mark.parametrize(
    "setting", ["frequency_hz", "spreading_factor", "bandwidth_khz", "coding_rate", "preamble"]
)
def test_a_setting_the_module_ignores_is_refused_by_name(fresh, setting: str) -> None:
    emulator, modem = fresh
    emulator.ignore(setting)
    wanted = RadioSettings(
        frequency_hz=471_000_000, spreading_factor=9, bandwidth_khz=250, coding_rate=3, preamble=12
    )
    with pytest.raises(ModemMismatch) as caught:
        modem.configure(wanted)
    message = str(caught.value)
    assert f": {setting} reads back " in message and f"set it to {getattr(wanted, setting)!r}" in message
    assert "not receiving on a mismatched radio" in message and "AT+P2P=471000000:9:250:2:12:17" in message
    assert emulator.rx_mode == 0  # never started receiving


def test_settings_rui3_cannot_do_are_refused_first(fresh) -> None:
    _emulator, modem = fresh
    with pytest.raises(ModemError, match="preamble 4: RUI3 takes 5-65535 symbols; TX power 2 dBm: 5-22"):
        modem.configure(RadioSettings(spreading_factor=10, preamble=4, tx_power_dbm=2))
    assert check_settings(CN470) == []


PAYLOADS = [b"plain", b"a,b:c", b"\r\n", b"\x00\xff" * 40, "雪豹".encode(), bytes(range(250))]


@pytest.mark.parametrize("payload", PAYLOADS, ids=range(len(PAYLOADS)))
def test_received_packets(configured, payload: bytes) -> None:
    emulator, modem = configured
    assert emulator.deliver(payload, rssi=-112, snr=-7.0, radio=CN470)
    packet = modem.receive(2.0)
    assert packet is not None and (packet.payload, packet.rssi, packet.snr) == (payload, -112, -7.0)
    assert packet.sender is None
    assert modem.receive(0.05) is None


def test_a_packet_in_the_middle_of_a_read_back_is_kept(configured) -> None:
    emulator, modem = configured
    emulator.deliver_during("AT+P2P=?", b"mid-answer", rssi=-70, snr=3)
    assert modem.read_settings()["frequency_hz"] == 470_300_000
    packet = modem.receive(1.0)
    assert packet is not None and packet.payload == b"mid-answer"


def test_packets_on_another_radio_or_before_p2p_are_not_heard(fresh) -> None:
    emulator, modem = fresh
    assert not emulator.deliver(b"x", rssi=-90, snr=1, radio=CN470)  # LoRaWAN mode, not listening
    modem.configure(CN470)
    assert not emulator.deliver(b"x", rssi=-90, snr=1, radio=RadioSettings(spreading_factor=11))
    assert emulator.counters["filtered"] == 2 and modem.receive(0.1) is None


@pytest.mark.parametrize("status", sorted(RAK_ERRORS))
def test_every_status_is_explained(fresh, status: str, caplog) -> None:
    emulator, modem = fresh
    emulator.fail_next("AT+P2P=4", status)
    with pytest.raises(ModemError) as caught:
        modem.configure(CN470)
    meaning = RAK_ERRORS[status]
    assert str(caught.value) == (
        f'lora1 ({modem.channel.port}, RAK3172): {status} "{meaning.meaning}" after {P2P} — {meaning.hint}'
    )
    assert caught.value.code == status
    assert any(record.levelname == "WARNING" and status in record.message for record in caplog.records)


def test_p2p_commands_in_lorawan_mode_say_so(fresh) -> None:
    _emulator, modem = fresh
    with pytest.raises(
        ModemError, match=r"AT_MODE_NO_SUPPORT .* the module is in LoRaWAN mode: P2P commands need AT\+NWM=0"
    ):
        modem.channel.command("AT+P2P=?")


def test_the_wrong_variant_for_the_band_is_pointed_out() -> None:
    emulator = Rak3172Emulator(variant="high", work_mode=0)
    modem = _open(emulator)
    try:
        with pytest.raises(ModemError, match=r"AT_PARAM_ERROR .* frequency outside this module's variant"):
            modem.configure(CN470)
    finally:
        modem.close()
        emulator.stop()


def test_sending_while_receiving_is_busy_so_the_driver_pauses_receiving(configured) -> None:
    emulator, modem = configured
    with pytest.raises(ModemError, match=r"AT_BUSY_ERROR .* AT\+PRECV=0 must stop it first"):
        modem.channel.command("AT+PSEND=AA")
    modem.send(b"relay,\r\n\xff", to=9)
    assert emulator.sent == [b"relay,\r\n\xff"] and emulator.rx_mode == 65534
    assert emulator.deliver(b"still listening", rssi=-90, snr=2, radio=CN470)
    packet = modem.receive(1.0)
    assert packet is not None and packet.payload == b"still listening"


def test_send_refuses_what_does_not_fit(configured) -> None:
    _emulator, modem = configured
    with pytest.raises(ModemError, match="1-250 bytes, not 251"):
        modem.send(bytes(251))


def test_hung_module_is_reset_reconfigured_and_receives_again(configured) -> None:
    emulator, modem = configured
    emulator.hang()
    with pytest.raises(ModemTimeout, match=r"lora1 \(.*RAK3172\): no answer to AT within 0\.3 s"):
        modem.health_check()
    modem.recover()
    assert emulator.counters["reboots"] == 2 and emulator.rx_mode == 65534
    assert emulator.deliver(b"back", rssi=-90, snr=1, radio=CN470)
    packet = modem.receive(1.0)
    assert packet is not None and packet.payload == b"back"


def test_a_module_that_restarted_on_its_own_is_noticed_and_restarted_with_atz(configured) -> None:
    emulator, modem = configured
    modem._reset = None
    emulator.hardware_reset()  # a brown-out: settings kept in NVM, but no longer receiving
    assert modem.channel.wait_boot(2, 2.0)
    assert not emulator.deliver(b"deaf", rssi=-90, snr=1, radio=CN470)
    with pytest.raises(ModemError, match="restarted on its own"):
        modem.health_check()
    modem.recover()
    assert emulator.counters["reboots"] == 3  # brown-out, then ATZ
    assert emulator.deliver(b"hearing", rssi=-90, snr=1, radio=CN470)
    assert modem.receive(1.0) is not None


def test_a_hung_module_without_reset_line_asks_for_a_power_cycle() -> None:
    emulator = Rak3172Emulator(work_mode=0)
    modem = _open(emulator, reset=None)
    try:
        modem.configure(CN470)
        emulator.hang()
        with pytest.raises(
            ModemTimeout, match=r"no restart banner within 2\.0 s after ATZ — module hung: power-cycle"
        ):
            modem.recover()
    finally:
        modem.close()
        emulator.stop()


def test_receive_window_timeout_is_reported(configured) -> None:
    _emulator, modem = configured
    modem.channel.command("AT+PRECV=0")
    modem.channel.command("AT+PRECV=20")
    assert modem.receive(1.0) is None
    assert modem.receive_errors["+EVT:RXP2P RECEIVE TIMEOUT"] == 1


def test_uncia_sim_lora_serves_a_driver_on_a_stable_link(tmp_path, capsys) -> None:
    import threading
    import time

    from uncia.cli import main

    link = tmp_path / "uncia-lora0"
    args = ["sim", "lora", "--family", "rak3172", "--link", str(link), "--duration", "2.5"]
    result: list[int] = []
    runner = threading.Thread(target=lambda: result.append(main([*args, "--test-packet-every", "0.2"])))
    runner.start()
    try:
        deadline = time.monotonic() + 3.0
        while not link.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        modem = Rak3172Modem(str(link), name="lora0", timeout=0.5, boot_timeout=2.0)
        try:
            modem.channel.wait_boot(0, 2.0)
            modem.configure(CN470)
            packet = modem.receive(2.0)
        finally:
            modem.close()
    finally:
        runner.join(10.0)
    assert result == [0]
    assert packet is not None and packet.payload.startswith(b"uncia test packet ")
    (line,) = capsys.readouterr().out.strip().splitlines()
    assert line.startswith(f"LoRa modem RAK3172 (low band) on {link} -> /dev/pts/")
    assert line.endswith(", 115200 baud; Ctrl-C to stop")
    assert not link.exists()
