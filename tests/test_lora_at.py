"""The AT channel: line framing (pure, property-tested) and command/event separation on a real pty."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.lora.at import AtChannel, LineFramer
from edge.lora.modem import ModemError, ModemTimeout
from edge.lora.rak3172 import RUI3
from edge.lora.reyax import REYAX, measure_rcv, parse_rcv
from simulators.pty_port import PtyPort

# -- LineFramer, pure --------------------------------------------------------------------------

plain_lines = st.lists(
    st.binary(min_size=1, max_size=40).filter(
        lambda b: b"\r" not in b and b"\n" not in b and b"+RCV=" not in b
    ),
    max_size=12,
)


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    out, start = [], 0
    for point in [*points, len(data)]:
        out.append(data[start:point])
        start = point
    return out


@settings(max_examples=150, deadline=None)
@given(plain_lines, st.lists(st.integers(0, 600), max_size=8))
def test_framer_returns_lines_whatever_the_chunking(lines: list[bytes], cuts: list[int]) -> None:
    framer = LineFramer()
    wire = b"".join(line + b"\r\n" for line in lines)
    got = [line for chunk in _chunks(wire, cuts) for line in framer.feed(chunk)]
    assert got == lines


def _rcv(sender: int, data: bytes, rssi: int, snr: int) -> bytes:
    return b"+RCV=%d,%d," % (sender, len(data)) + data + b",%d,%d" % (rssi, snr)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 65535), st.binary(max_size=240), st.integers(-140, 0), st.integers(-20, 20)),
        min_size=1,
        max_size=5,
    ),
    st.lists(st.integers(0, 2000), max_size=10),
)
def test_reyax_packets_are_cut_by_length_not_by_line_ends(packets: list, cuts: list[int]) -> None:
    framer = LineFramer(frame_start=REYAX.frame_start, measure=REYAX.measure)
    frames = [_rcv(*packet) for packet in packets]
    wire = b"".join(frame + b"\r\n+OK\r\n" for frame in frames)
    got = [line for chunk in _chunks(wire, cuts) for line in framer.feed(chunk, now=0.0)]
    assert got == [line for frame in frames for line in (frame, b"+OK")]
    assert [parse_rcv(frame) for frame in got[::2]] == [
        (sender, data, rssi, snr) for sender, data, rssi, snr in packets
    ]


def test_a_packet_that_lost_bytes_on_the_uart_does_not_swallow_what_follows() -> None:
    framer = LineFramer(frame_start=REYAX.frame_start, measure=REYAX.measure, stale_after=0.3)
    # Announces 50 bytes, only 3 arrived; the answer to the next command follows.
    assert framer.feed(b"+RCV=7,50,abc,-60,5\r\n+OK\r\n", now=10.0) == []
    assert framer.expire(10.5) == [b"+RCV=7,50,abc,-60,5", b"+OK"]
    with pytest.raises(ValueError):
        parse_rcv(b"+RCV=7,50,abc,-60,5")


def test_noise_in_front_of_a_packet_is_split_off() -> None:
    framer = LineFramer(frame_start=REYAX.frame_start, measure=REYAX.measure)
    assert framer.feed(b"\x00\xfe\x80" + _rcv(3, b"a\r\nb", -70, 9) + b"\r\n") == [
        b"\x00\xfe\x80",
        _rcv(3, b"a\r\nb", -70, 9),
    ]


def test_measure_needs_more_bytes_or_rejects() -> None:
    assert measure_rcv(b"+RCV=1") is None
    assert measure_rcv(b"+RCV=1,5,ab") is None
    assert measure_rcv(b"+RCV=1,2,ab,-5") is None
    assert measure_rcv(b"+RCV=1,2,ab,-5,3\r\n") == len(b"+RCV=1,2,ab,-5,3\r\n")
    assert measure_rcv(b"+RCV=x") == -1
    assert measure_rcv(b"+RCV=1,2,abXXXX\r\n") == -1


def test_a_partial_line_left_waiting_is_noise() -> None:
    framer = LineFramer(stale_after=0.3)
    assert framer.feed(b"\x80\xf8", now=1.0) == []
    assert framer.expire(1.1) == []
    assert framer.expire(1.4) == [b"\x80\xf8"] and framer.pending == 0


def test_an_endless_line_of_noise_is_bounded() -> None:
    framer = LineFramer(max_line=64)
    out = framer.feed(b"\xff" * 200)
    assert out == [b"\xff" * 200] and framer.pending == 0


@pytest.mark.parametrize(
    ("dialect", "line", "kind", "tail"),
    [
        (REYAX, b"\x00\xf8+OK", "ok", b"+OK"),
        (REYAX, b"\x80+ERR=2", "error", b"+ERR=2"),
        (REYAX, b"+BAND=470300000", "value", b"+BAND=470300000"),
        (REYAX, b"\xff\xfe", "garbage", b""),
        (RUI3, b"\x1cAT_BUSY_ERROR", "error", b"AT_BUSY_ERROR"),
        (RUI3, b"Current Work Mode: LoRa P2P.", "boot", b"Current Work Mode: LoRa P2P."),
        (RUI3, b"AT+P2P=470300000:9:0:0:8:17", "value", b"AT+P2P=470300000:9:0:0:8:17"),
    ],
)
def test_resync_recognises_lines_behind_noise(dialect, line: bytes, kind: str, tail: bytes) -> None:
    got_kind, got_tail, _noise = dialect.resync(line)
    assert (got_kind, got_tail) == (kind, tail)


# -- AtChannel on a pty, with a scripted device ------------------------------------------------


class ScriptedDevice:
    """Answers each command line from `script` (command -> raw bytes) on the device side of a pty."""

    def __init__(self, script: dict[bytes, bytes]) -> None:
        self.port = PtyPort()
        self.script = script
        self.heard: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        buffer = b""
        while not self._stop.is_set():
            buffer += self.port.read(0.05)
            while b"\r\n" in buffer:
                line, buffer = buffer.split(b"\r\n", 1)
                self.heard.append(line)
                if line in self.script:
                    self.port.write(self.script[line])

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.port.close()


@pytest.fixture
def rui3_device():
    device = ScriptedDevice(
        {
            b"AT+P2P=?": b"AT+P2P=470300000:9:0:0:8:17\r\n+EVT:RXP2P:-50:5:AABB\r\nOK\r\n",
            b"AT+PRECV=5": b"AT_BUSY_ERROR\r\n",
            b"AT+SLOW": b"",
            b"AT+NOISE": b"\x80\xf8\xff\r\n\x00\x1c\r\n",
        }
    )
    channel = AtChannel(
        device.port.path, baudrate=115200, dialect=RUI3, name="lora1", model="RAK3172", timeout=0.3
    )
    yield device, channel
    channel.close()
    device.close()


def test_an_event_inside_an_answer_is_queued_not_taken_as_the_answer(rui3_device) -> None:
    _device, channel = rui3_device
    reply = channel.command("AT+P2P=?")
    assert reply.lines == (b"AT+P2P=470300000:9:0:0:8:17",) and reply.final == b"OK"
    event = channel.next_event(1.0)
    assert event is not None and event.line == b"+EVT:RXP2P:-50:5:AABB"


def test_an_error_answer_carries_the_datasheet_meaning_and_a_hint(rui3_device, caplog) -> None:
    _device, channel = rui3_device
    with pytest.raises(ModemError) as caught:
        channel.command("AT+PRECV=5")
    message = str(caught.value)
    assert message.startswith(f"lora1 ({channel.port}, RAK3172): AT_BUSY_ERROR")
    assert "The network is busy" in message and "AT+PRECV=0" in message and "after AT+PRECV=5" in message
    assert caught.value.code == "AT_BUSY_ERROR" and caught.value.command == "AT+PRECV=5"
    assert any(
        record.levelname == "WARNING" and "AT_BUSY_ERROR" in record.message for record in caplog.records
    )


def test_silence_and_noise_give_different_timeout_diagnoses(rui3_device) -> None:
    _device, channel = rui3_device
    with pytest.raises(
        ModemTimeout, match=r"no answer to AT\+SLOW within 0\.3 s — modem hung or without power"
    ):
        channel.command("AT+SLOW")
    with pytest.raises(
        ModemTimeout,
        match=r"bytes of noise came back instead .* wrong baud rate \(the port is set to 115200\)",
    ):
        channel.command("AT+NOISE")
    assert channel.noise_bytes >= 5


def test_next_event_leaves_other_events_queued(rui3_device) -> None:
    device, channel = rui3_device
    device.port.write(b"+EVT:TXP2P DONE\r\n+EVT:RXP2P:-1:2:00\r\n")
    first = channel.next_event(1.0, match=lambda line: line.startswith(b"+EVT:RXP2P"))
    assert first is not None and first.line == b"+EVT:RXP2P:-1:2:00"
    rest = channel.next_event(1.0)
    assert rest is not None and rest.line == b"+EVT:TXP2P DONE"
    assert channel.next_event(0.05) is None


def test_a_radio_error_printed_during_a_command_is_not_its_answer() -> None:
    device = ScriptedDevice({b"AT+BAND?": b"+ERR=12\r\n+BAND=470300000\r\n", b"AT+X": b"+ERR=12\r\n"})
    channel = AtChannel(device.port.path, baudrate=115200, dialect=REYAX, name="lora0", timeout=0.5)
    try:
        reply = channel.command("AT+BAND?", value_is_final=True)
        assert reply.final == b"+BAND=470300000"
        event = channel.next_event(0.5)
        assert event is not None and event.line == b"+ERR=12"
        with pytest.raises(ModemError, match="CRC error"):  # nothing else came: it was the answer
            channel.command("AT+X")
    finally:
        channel.close()
        device.close()


def test_an_unplugged_port_fails_commands_and_event_waits() -> None:
    device = ScriptedDevice({})
    channel = AtChannel(device.port.path, baudrate=115200, dialect=REYAX, name="lora0", timeout=0.5)
    try:
        device.port.vanish()
        with pytest.raises(ModemError, match="serial port lost"):
            channel.next_event(2.0)
        with pytest.raises(ModemError, match="serial port lost"):
            channel.command("AT")
    finally:
        channel.close()
        device.close()


def test_a_missing_device_is_named(tmp_path) -> None:
    with pytest.raises(ModemError, match=r"lora9 \(.*nothing, RYLR\): no such device"):
        AtChannel(str(tmp_path / "nothing"), baudrate=115200, dialect=REYAX, name="lora9", model="RYLR")


def test_a_late_answer_is_not_taken_for_the_next_command() -> None:
    device = ScriptedDevice({b"AT+SLOW": b"", b"AT+BAND?": b"+BAND=470300000\r\n"})
    channel = AtChannel(device.port.path, baudrate=115200, dialect=REYAX, name="lora0", timeout=0.2)
    try:
        with pytest.raises(ModemTimeout):
            channel.command("AT+SLOW")
        device.port.write(b"+OK\r\n")  # the slow command's answer, too late
        assert channel.command("AT+BAND?", value_is_final=True).final == b"+BAND=470300000"
    finally:
        channel.close()
        device.close()
