"""RylrModem against the emulated REYAX modem on a real pty: what a unit's driver sees."""

from __future__ import annotations

import pytest

from edge.lora.errors import REYAX_ERRORS
from edge.lora.modem import ModemError, ModemMismatch, ModemTimeout, RadioSettings
from edge.lora.reyax import RylrModem, check_settings, model_from_version
from simulators.lora_reyax import RylrEmulator

# SF9: the RYLR998/RYLR498 guide allows SF7-9 at 125 kHz.
CN470 = RadioSettings(spreading_factor=9)
EU868 = RadioSettings(band="EU868", frequency_hz=868_100_000, spreading_factor=9, network_id=18, address=3)


def _open(emulator: RylrEmulator, **kwargs) -> RylrModem:
    emulator.start()
    kwargs.setdefault("reset", emulator.hardware_reset)
    modem = RylrModem(emulator.path, name="lora0", timeout=0.3, boot_timeout=2.0, **kwargs)
    assert modem.channel.wait_boot(0, 2.0), "emulator never said +READY"
    return modem


@pytest.fixture
def pair():
    emulator = RylrEmulator(model="RYLR498", airtime_scale=0.01)
    modem = _open(emulator)
    yield emulator, modem
    modem.close()
    emulator.stop()


@pytest.fixture
def configured(pair):
    emulator, modem = pair
    modem.configure(CN470)
    return emulator, modem


def test_probe_names_the_model_in_every_message(pair) -> None:
    _emulator, modem = pair
    modem.probe()
    assert modem.firmware == "RYLR498_V1.2.1"
    assert modem.label == f"lora0 ({modem.channel.port}, RYLR498)"


def test_configure_writes_and_reads_back_every_setting(pair) -> None:
    emulator, modem = pair
    read = modem.configure(CN470)
    assert read == {
        "mode": 0,
        "address": 1,
        "network_id": 18,
        "frequency_hz": 470_300_000,
        "spreading_factor": 9,
        "bandwidth_khz": 125,
        "coding_rate": 1,
        "preamble": 8,
        "tx_power_dbm": 17,
        "password": None,
    }
    assert modem.read_settings() == read
    assert emulator.radio == CN470


@pytest.mark.parametrize(
    ("setting", "written"),
    [
        ("frequency_hz", "AT+BAND=470300000"),
        ("spreading_factor", "AT+PARAMETER=8,7,1,8"),
        ("preamble", "AT+PARAMETER=8,7,1,8"),
        ("tx_power_dbm", "AT+CRFOP=17"),
        ("address", "AT+ADDRESS=7"),
    ],
)
def test_a_setting_the_modem_ignores_is_refused_by_name(pair, setting: str, written: str) -> None:
    emulator, modem = pair
    emulator.ignore(setting)
    with pytest.raises(ModemMismatch) as caught:  # every value differs from the factory one
        modem.configure(RadioSettings(spreading_factor=8, address=7))
    message = str(caught.value)
    assert f": {setting} reads back " in message and "not receiving on a mismatched radio" in message
    assert written.split("=")[0] in message
    assert caught.value.command.startswith(written.split("=")[0])


def test_the_mismatch_names_wanted_and_read_values(pair) -> None:
    emulator, modem = pair
    emulator.ignore("frequency_hz")
    with pytest.raises(
        ModemMismatch, match=r"frequency_hz reads back 490000000 after AT\+BAND=470300000 set it to 470300000"
    ):
        modem.configure(CN470)


def test_settings_the_model_cannot_do_are_refused_before_anything_is_written(pair) -> None:
    emulator, modem = pair
    with pytest.raises(
        ModemError, match=r"SF10 at 125 kHz: the RYLR998/RYLR498 guide allows SF7-9 at 125 kHz"
    ):
        modem.configure(RadioSettings(spreading_factor=10))
    with pytest.raises(ModemError, match=r"RYLR498 is a 433/470 MHz part; 868100000 Hz needs an RYLR998"):
        modem.configure(EU868)
    assert emulator.radio != CN470


def test_model_rules_from_both_guides() -> None:
    rylr998, rylr896 = model_from_version("+VER=RYLR998_V1.2.1"), model_from_version("RYLR89C_V1.2.7")
    assert (rylr998.generation, rylr998.high_band, rylr896.generation, rylr896.high_band) == (
        2,
        True,
        1,
        True,
    )
    assert model_from_version("RYLRxx8_V1.3.1").high_band is None
    assert check_settings(rylr998, EU868, None) == []
    assert any(
        "NETWORKID" in p
        for p in check_settings(rylr998, RadioSettings(spreading_factor=9, network_id=5), None)
    )
    assert any("4-7" in p for p in check_settings(rylr896, EU868, None))
    assert check_settings(model_from_version("UNKNOWN"), RadioSettings(spreading_factor=10), None) == []


PAYLOADS = [
    b"plain",
    b"a,b,c",
    b"ends with comma,",
    b",-50,7",  # looks like the line's own tail
    b"line\r\nbreak",
    b"\r\n",
    b"+OK\r\n+RCV=1,2,ab,-1,1\r\n",
    bytes(range(256))[:240],
    "Хэлан Уул 雪豹".encode(),
]


@pytest.mark.parametrize("payload", PAYLOADS, ids=range(len(PAYLOADS)))
def test_received_packets_are_cut_by_their_length(configured, payload: bytes) -> None:
    emulator, modem = configured
    assert emulator.deliver(payload, rssi=-97, snr=-3.0, sender=42, radio=CN470)
    packet = modem.receive(2.0)
    assert packet is not None
    assert (packet.payload, packet.rssi, packet.snr, packet.sender) == (payload, -97, -3.0, 42)
    assert modem.receive(0.05) is None


def test_a_packet_in_the_middle_of_a_read_back_is_kept(configured) -> None:
    emulator, modem = configured
    emulator.deliver_during("AT+BAND?", b"mid,\r\nanswer", rssi=-80, snr=4, sender=9)
    assert modem.read_settings()["frequency_hz"] == 470_300_000
    packet = modem.receive(1.0)
    assert packet is not None and packet.payload == b"mid,\r\nanswer" and packet.sender == 9


def test_packets_on_another_radio_are_not_heard(configured) -> None:
    emulator, modem = configured
    for other in (
        RadioSettings(spreading_factor=8),
        RadioSettings(spreading_factor=9, frequency_hz=470_500_000),
        RadioSettings(spreading_factor=9, network_id=5, preamble=12),
        RadioSettings(spreading_factor=9, coding_rate=2),
    ):
        assert not emulator.deliver(b"x", rssi=-90, snr=1, radio=other)
    assert emulator.counters["filtered"] == 4 and modem.receive(0.1) is None


@pytest.mark.parametrize("code", sorted(REYAX_ERRORS))
def test_every_error_code_is_explained(pair, code: int, caplog) -> None:
    emulator, modem = pair
    emulator.fail_next("AT+BAND=", f"+ERR={code}")
    with pytest.raises(ModemError) as caught:
        modem.configure(CN470)
    message = str(caught.value)
    assert (
        f'+ERR={code} "{REYAX_ERRORS[code].meaning}" after AT+BAND=470300000 — {REYAX_ERRORS[code].hint}'
        in message
    )
    assert message.startswith(f"lora0 ({modem.channel.port}, RYLR498): ")
    assert caught.value.code == code
    assert any(
        record.levelname == "WARNING" and f"+ERR={code}" in record.message for record in caplog.records
    )


def test_a_broken_packet_reported_by_the_radio_is_counted(configured) -> None:
    emulator, modem = configured
    emulator.inject(b"+ERR=12\r\n")
    assert modem.receive(0.3) is None
    assert modem.radio_errors[12] == 1


def test_hung_modem_is_reset_reconfigured_and_receives_again(configured) -> None:
    emulator, modem = configured
    emulator.hang()
    assert not emulator.deliver(b"lost", rssi=-90, snr=1, radio=CN470)
    with pytest.raises(ModemTimeout, match=r"no answer to AT within 0\.3 s — modem hung or without power"):
        modem.health_check()
    modem.recover()
    assert emulator.counters["reboots"] == 1
    assert emulator.radio == CN470  # the band and parameters were lost by the reset, then rewritten
    modem.health_check()
    assert emulator.deliver(b"back", rssi=-90, snr=1, sender=5, radio=CN470)
    packet = modem.receive(1.0)
    assert packet is not None and packet.payload == b"back"


def test_without_a_reset_line_a_hung_modem_asks_for_a_power_cycle() -> None:
    emulator = RylrEmulator(model="RYLR498")
    modem = _open(emulator, reset=None)
    try:
        modem.configure(CN470)
        emulator.hang()
        with pytest.raises(
            ModemTimeout, match="does not answer AT\\+RESET and no reset line is wired: power-cycle"
        ):
            modem.recover()
    finally:
        modem.close()
        emulator.stop()


def test_a_modem_that_restarted_on_its_own_is_noticed_and_soft_reset(configured) -> None:
    emulator, modem = configured
    modem._reset = None  # only the soft reset, AT+RESET
    emulator.hardware_reset()  # a brown-out: the band is back to the factory value
    assert modem.channel.wait_boot(1, 2.0)
    assert not emulator.deliver(b"deaf", rssi=-90, snr=1, radio=CN470)
    with pytest.raises(ModemError, match=r"restarted on its own .* settings are lost"):
        modem.health_check()
    modem.recover()
    assert emulator.deliver(b"hearing", rssi=-90, snr=1, radio=CN470)
    assert modem.receive(1.0) is not None


@pytest.mark.parametrize("payload", [b"hello", b"a,b\r\nc", bytes(range(240))])
def test_send(configured, payload: bytes) -> None:
    emulator, modem = configured
    modem.send(payload, to=7)
    assert emulator.sent == [payload] and emulator.last_send == (7, payload)


def test_send_refuses_what_does_not_fit(configured) -> None:
    _emulator, modem = configured
    with pytest.raises(ModemError, match="1-240 bytes, not 241"):
        modem.send(bytes(241))


def test_password_is_written_and_read_back(pair) -> None:
    emulator, modem = pair
    modem.password = "EEDCAA90"
    assert modem.configure(CN470)["password"] == "eedcaa90"
    emulator.ignore("password")
    emulator.password = None
    with pytest.raises(ModemMismatch, match="password reads back None"):
        modem.configure(CN470)


def test_a_password_left_in_the_modem_is_cleared(pair) -> None:
    _emulator, modem = pair
    modem.password = "0011AABB"
    modem.configure(CN470)
    modem.password = None
    assert modem.configure(CN470)["password"] is None  # by AT+RESET, which forgets it


def test_wrong_baud_rate_is_diagnosed() -> None:
    emulator = RylrEmulator(model="RYLR998")
    emulator.start()
    assert emulator.wait_ready(2.0)
    modem = RylrModem(emulator.path, name="lora0", baudrate=9600, timeout=0.3)
    try:
        with pytest.raises(
            ModemTimeout, match=r"noise came back instead .* wrong baud rate \(the port is set to 9600\)"
        ):
            modem.probe()
    finally:
        modem.close()
        emulator.stop()


def test_older_rylr896_with_its_own_ranges() -> None:
    emulator = RylrEmulator(model="RYLR896", address=3)
    modem = _open(emulator)
    settings = RadioSettings(
        band="EU868",
        frequency_hz=868_500_000,
        spreading_factor=12,
        preamble=7,
        network_id=6,
        tx_power_dbm=15,
        address=3,
    )
    try:
        read = modem.configure(settings)
        assert read["spreading_factor"] == 12 and read["preamble"] == 7 and read["password"] is None
        assert modem.label.endswith("RYLR89C)")
        assert emulator.deliver(b"old,\r\nfirmware", rssi=-110, snr=-9, sender=2, radio=settings)
        packet = modem.receive(1.0)
        assert packet is not None and packet.payload == b"old,\r\nfirmware"
    finally:
        modem.close()
        emulator.stop()
