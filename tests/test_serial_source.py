"""SerialSource against real pseudo-terminals (PtyPort) and real pyserial: data, idle, unplug, leaks."""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import os
import random
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge import serial_source
from edge.serial_source import SerialSource, SourceError, backoff_delay, explain
from simulators.pty_port import PtyPort

LOGGER = "uncia.test.serial"
FAST = {"backoff_min": 0.01, "backoff_max": 0.05}


class RecordingRandom(random.Random):
    """The injected random source; remembers every backoff draw so the schedule can be checked."""

    def __init__(self, seed: int) -> None:
        super().__init__(seed)
        self.draws: list[float] = []

    def uniform(self, a: float, b: float) -> float:
        value = super().uniform(a, b)
        self.draws.append(value)
        return value


class Consumer:
    """Runs `read_chunks` in its own thread, as the agent does, and records what it yields."""

    def __init__(self, source: SerialSource) -> None:
        self.source = source
        self.stop = threading.Event()
        self.events: list[bytes] = []
        self.error: BaseException | None = None
        self._cond = threading.Condition()
        self.thread = threading.Thread(target=self._run, name=f"read {source.name}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for chunk in self.source.read_chunks(self.stop):
                with self._cond:
                    self.events.append(chunk)
                    self._cond.notify_all()
        except BaseException as exc:
            self.error = exc

    @property
    def data(self) -> bytes:
        with self._cond:
            return b"".join(self.events)

    @property
    def idles(self) -> int:
        with self._cond:
            return self.events.count(b"")

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        with self._cond:
            assert self._cond.wait_for(predicate, timeout), "consumer never saw what we waited for"

    def wait_data(self, tail: bytes, timeout: float = 10.0) -> None:
        self.wait_for(lambda: b"".join(self.events).endswith(tail), timeout)

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        assert not self.thread.is_alive(), "read_chunks did not return after stop"
        assert self.error is None, self.error


def eventually(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.005)


def write_all(pty: PtyPort, data: bytes) -> None:
    """Feed the pty like a device, but resend what did not fit so the test knows exactly what went in."""
    view = memoryview(data)
    while view:
        sent = pty.write(bytes(view[:4096]))
        view = view[sent:]
        if not sent:
            select.select([], [pty.fileno()], [], 0.05)


def open_fds() -> int:
    """Descriptors of the kinds a serial source holds: ttys and pyserial's wake-up pipes.

    Counted from /proc/self/fd, but only these kinds, so sockets or files opened meanwhile by other
    tests' background threads in the same process cannot make the count wobble.
    """
    count = 0
    for entry in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own descriptor is gone by now
            target = os.readlink(f"/proc/self/fd/{entry}")
            count += target.startswith(("/dev/pts/", "/dev/ptmx", "pipe:"))
    return count


def other_threads() -> set[threading.Thread]:
    return set(threading.enumerate())


def warnings_from(caplog: pytest.LogCaptureFixture, text: str = "") -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == LOGGER and r.levelno == logging.WARNING and text in r.getMessage()
    ]


def infos_from(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == LOGGER and r.levelno == logging.INFO and text in r.getMessage()
    ]


@pytest.fixture
def pty(tmp_path: Path) -> Iterator[PtyPort]:
    port = PtyPort(tmp_path / "uncia-gps0")
    yield port
    port.close()


@pytest.fixture
def log(caplog: pytest.LogCaptureFixture) -> logging.Logger:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    return logging.getLogger(LOGGER)


def test_chunks_concatenate_to_exactly_what_was_written(pty: PtyPort, log: logging.Logger) -> None:
    source = SerialSource(pty.path, baudrate=115200, name="gps0", log=log)
    reader = Consumer(source)
    eventually(lambda: source.connected)
    payload = random.Random(1).randbytes(2 * 1024 * 1024)  # every byte value, binary-clean
    started = time.perf_counter()
    write_all(pty, payload)
    reader.wait_for(lambda: sum(map(len, reader.events)) >= len(payload), timeout=30)
    elapsed = time.perf_counter() - started
    reader.finish()
    assert reader.data == payload
    assert source.bytes_read == len(payload)
    chunks = [c for c in reader.events if c]
    print(f"{len(payload) / elapsed / 1e6:.1f} MB/s in {len(chunks)} chunks through a pty")


def test_idle_yields_one_empty_chunk_per_quiet_spell(pty: PtyPort, log: logging.Logger) -> None:
    source = SerialSource(pty.path, idle=0.1, log=log)
    reader = Consumer(source)
    eventually(lambda: source.connected)
    pty.write(b"$GPGGA,partial")
    # The partial sentence arrives, then the quiet spell after it is reported (so it can be flushed).
    reader.wait_for(lambda: reader.data == b"$GPGGA,partial" and reader.events[-1] == b"")
    spells = reader.idles
    time.sleep(0.5)  # five more idle periods of silence: still the same spell, nothing more yielded
    assert reader.idles == spells
    pty.write(b",rest*00\r\n")
    reader.wait_for(lambda: reader.data.endswith(b"rest*00\r\n") and reader.events[-1] == b"")
    reader.finish()
    assert reader.idles == spells + 1
    assert reader.data == b"$GPGGA,partial,rest*00\r\n"
    assert all(a or b for a, b in itertools.pairwise(reader.events)), "two b'' in one quiet spell"


def test_unplug_logs_one_warning_and_replug_resumes_on_same_link(
    pty: PtyPort, log: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    rng = RecordingRandom(7)
    source = SerialSource(pty.path, name="gps0", rng=rng, log=log, backoff_min=0.01, backoff_max=0.08)
    reader = Consumer(source)
    eventually(lambda: source.connected)
    pty.write(b"before\r\n")
    reader.wait_data(b"before\r\n")

    pty.vanish()
    eventually(lambda: len(rng.draws) >= 8)  # several failed retries while unplugged...
    lost = warnings_from(caplog)
    assert len(lost) == 1, lost  # ...but one warning, naming source and port, in plain words
    assert "gps0" in lost[0] and pty.path in lost[0] and "USB unplugged" in lost[0]
    assert not source.connected and source.last_error is not None

    pty.reappear()
    eventually(lambda: source.connected)
    pty.write(b"after\r\n")
    reader.wait_data(b"after\r\n")
    reader.finish()

    assert reader.data.endswith(b"before\r\nafter\r\n")
    assert len(warnings_from(caplog)) == 1
    back = infos_from(caplog, "back after")
    assert len(back) == 1 and "gps0" in back[0]
    assert source.reconnects == 1
    # The backoff schedule: exactly backoff_delay's, within [min, max], growing then capped.
    replay = random.Random(7)
    expected = [backoff_delay(i, 0.01, 0.08, replay) for i in range(len(rng.draws))]
    assert rng.draws == expected
    assert all(0.01 <= d <= 0.08 for d in rng.draws)
    assert max(rng.draws[5:]) > 0.04  # reached the cap's upper half, never beyond it


def test_twenty_unplug_cycles_leak_no_fds_or_threads(pty: PtyPort, log: logging.Logger) -> None:
    fds_before, threads_before = open_fds(), other_threads()
    source = SerialSource(pty.path, name="gps0", log=log, **FAST)
    reader = Consumer(source)
    eventually(lambda: source.connected)
    pty.write(b"<start>")
    reader.wait_data(b"<start>")
    fds_running = open_fds()
    assert fds_running > fds_before  # the count does see the open port

    for cycle in range(20):
        pty.vanish()
        eventually(lambda: not source.connected)
        pty.reappear()
        eventually(lambda: source.connected)
        marker = f"<{cycle}>".encode()
        pty.write(marker)
        reader.wait_data(marker)

    assert open_fds() == fds_running
    assert other_threads() - threads_before == {reader.thread}  # the source started none of its own
    assert source.reconnects == 20
    reader.finish()
    source.close()
    assert open_fds() == fds_before
    assert not other_threads() - threads_before


def test_a_flapping_connector_is_summarised_not_logged_each_time(
    pty: PtyPort, log: logging.Logger, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(serial_source, "_WARN_WINDOW", 1e6)  # all drop-outs fall in one window
    source = SerialSource(pty.path, name="gps0", log=log, **FAST)
    reader = Consumer(source)
    for cycle in range(6):
        eventually(lambda: source.connected)
        marker = f"<{cycle}>".encode()
        pty.write(marker)
        reader.wait_data(marker)
        pty.vanish()
        eventually(lambda: not source.connected)
        pty.reappear()
    eventually(lambda: source.connected)
    assert len(warnings_from(caplog, "device lost")) == serial_source._WARN_BUDGET == 3
    assert len(infos_from(caplog, "back after")) == 3

    monkeypatch.setattr(serial_source, "_WARN_WINDOW", 0.0)  # the window is over
    eventually(lambda: bool(warnings_from(caplog, "dropped out")))
    reader.finish()
    summary = warnings_from(caplog, "dropped out")
    assert len(summary) == 1 and "3 more times" in summary[0] and "check cable" in summary[0]


def test_a_long_outage_gets_a_reminder_not_a_line_per_retry(
    pty: PtyPort, log: logging.Logger, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(serial_source, "_REMIND_EVERY", 0.3)  # minutes in the field
    pty.vanish()
    rng = RecordingRandom(11)
    source = SerialSource(pty.path, name="gps0", rng=rng, log=log, **FAST)
    reader = Consumer(source)
    eventually(lambda: bool(warnings_from(caplog, "still unavailable")))
    reader.finish()
    reminders = warnings_from(caplog, "still unavailable")
    assert "no such device" in reminders[0]
    assert len(warnings_from(caplog)) == 1 + len(reminders) < len(rng.draws)


def test_device_missing_at_start_is_waited_for(
    pty: PtyPort, log: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    pty.vanish()
    rng = RecordingRandom(3)
    source = SerialSource(pty.path, name="gps0", rng=rng, log=log, **FAST)
    reader = Consumer(source)
    eventually(lambda: len(rng.draws) >= 5)
    missing = warnings_from(caplog)
    assert len(missing) == 1, missing
    assert "is the GPS plugged in and the udev rule installed?" in missing[0]
    assert pty.path in missing[0]

    pty.reappear()
    eventually(lambda: source.connected)
    pty.write(b"$GPRMC\r\n")
    reader.wait_data(b"$GPRMC\r\n")
    reader.finish()
    assert len(infos_from(caplog, "device found after")) == 1
    assert source.reconnects == 0  # it was never lost, only late


def test_second_source_on_same_port_is_told_it_is_busy(
    pty: PtyPort, log: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    first = SerialSource(pty.path, name="gps0", log=log, **FAST)
    first_reader = Consumer(first)
    eventually(lambda: first.connected)

    second = SerialSource(pty.path, name="gps0-dup", log=log, **FAST)
    second_reader = Consumer(second)
    eventually(lambda: bool(warnings_from(caplog, "gps0-dup")))
    busy = warnings_from(caplog, "gps0-dup")
    assert len(busy) == 1 and "in use by another program" in busy[0]
    assert not second.connected and second_reader.error is None

    pty.write(b"mine\r\n")
    first_reader.wait_data(b"mine\r\n")
    assert second_reader.data == b""

    first_reader.finish()  # the first agent lets go: the second one takes over the port
    eventually(lambda: second.connected)
    pty.write(b"yours\r\n")
    second_reader.wait_data(b"yours\r\n")
    second_reader.finish()
    assert len(warnings_from(caplog, "gps0-dup")) == 1


def test_a_path_that_is_not_a_serial_port_is_reported_and_retried(
    tmp_path: Path, log: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    not_a_tty = tmp_path / "uncia-gps0"
    not_a_tty.write_text("a udev rule pointing at the wrong thing\n")
    rng = RecordingRandom(2)
    source = SerialSource(str(not_a_tty), name="gps0", rng=rng, log=log, **FAST)
    reader = Consumer(source)
    eventually(lambda: len(rng.draws) >= 3)
    reader.finish()
    wrong = warnings_from(caplog)
    assert len(wrong) == 1 and "not a serial port" in wrong[0]


def test_stop_returns_from_a_blocked_read(pty: PtyPort, log: logging.Logger) -> None:
    source = SerialSource(pty.path, idle=60, log=log)  # no idle wake-ups to hide behind
    reader = Consumer(source)
    eventually(lambda: source.connected)
    time.sleep(0.3)  # let it settle into the blocking read
    reader.finish()  # joins with a 5 s limit: a read without a bounded wait would hang here
    assert not source.connected


def test_close_from_another_thread_wakes_the_reader(pty: PtyPort, log: logging.Logger) -> None:
    fds_before = open_fds()
    source = SerialSource(pty.path, idle=60, log=log)
    reader = Consumer(source)
    eventually(lambda: source.connected)
    time.sleep(0.1)
    source.close()
    reader.thread.join(timeout=5)
    assert not reader.thread.is_alive() and reader.error is None
    assert not source.connected and open_fds() == fds_before


def test_stop_interrupts_a_backoff_wait(pty: PtyPort, log: logging.Logger) -> None:
    pty.vanish()
    rng = RecordingRandom(5)
    source = SerialSource(pty.path, log=log, rng=rng, backoff_min=60, backoff_max=60)
    reader = Consumer(source)
    eventually(lambda: len(rng.draws) == 1)  # now inside a 60 s wait
    reader.finish()


def test_idle_source_costs_almost_no_cpu(pty: PtyPort, log: logging.Logger) -> None:
    source = SerialSource(pty.path, log=log)  # default idle: 0.5 s
    reader = Consumer(source)
    eventually(lambda: source.connected)
    assert reader.thread.ident is not None
    clock = time.pthread_getcpuclockid(reader.thread.ident)
    cpu_before = time.clock_gettime(clock)
    time.sleep(2.0)
    cpu_used = time.clock_gettime(clock) - cpu_before
    reader.finish()
    print(f"reading thread used {cpu_used * 1e3:.2f} ms of CPU over 2 s of silence")
    assert cpu_used < 0.02  # 1 % of a core over the 2 s; measured values are well under 1 ms


def test_loop_url_opens_and_idles(log: logging.Logger) -> None:
    source = SerialSource("loop://", idle=0.1, log=log)
    reader = Consumer(source)
    reader.wait_for(lambda: reader.idles == 1)
    assert source.connected
    reader.finish()
    assert not source.connected


def test_socket_url_reads_a_network_bridged_gps(log: logging.Logger) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    host, port = server.getsockname()

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            eventually(lambda: source.connected)  # pyserial discards what arrives while opening
            conn.sendall(b"$GPGGA,bridged*00\r\n")
            conn.recv(1)  # hold the connection until the client goes away

    source = SerialSource(f"socket://{host}:{port}", name="bridge", log=log)
    bridge = threading.Thread(target=serve, daemon=True)
    bridge.start()
    reader = Consumer(source)
    reader.wait_data(b"$GPGGA,bridged*00\r\n")
    reader.finish()
    bridge.join(timeout=5)
    server.close()


@pytest.mark.parametrize(
    "url", ["nonsense://x", "socket://no-port-given", "socket://bridge:99999", "loop://?speed=fast"]
)
def test_malformed_url_is_a_source_error(url: str, log: logging.Logger) -> None:
    with pytest.raises(SourceError, match="port"):
        source = SerialSource(url, log=log)
        next(source.read_chunks(threading.Event()))


def test_impossible_baud_rate_is_a_source_error(log: logging.Logger) -> None:
    with pytest.raises(SourceError, match="baud"):
        SerialSource("/dev/uncia-gps0", baudrate=-9600, log=log)


@settings(max_examples=200, deadline=None)
@given(
    attempt=st.integers(min_value=0, max_value=10_000),
    low=st.floats(min_value=1e-3, max_value=10),
    spread=st.floats(min_value=1, max_value=100),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_backoff_stays_within_its_bounds(attempt: int, low: float, spread: float, seed: int) -> None:
    high = low * spread
    delay = backoff_delay(attempt, low, high, random.Random(seed))
    assert low <= delay <= high
    # Jitter stays in the upper half of the doubling ceiling, so retries really do back off.
    assert delay >= min(high, low * 2.0 ** min(attempt, 64)) / 2


def test_explanations_tell_the_technician_what_to_do() -> None:
    missing = OSError(errno.ENOENT, "could not open port /dev/uncia-gps0")
    assert "is the GPS plugged in and the udev rule installed?" in explain(missing, reading=False)
    denied = OSError(errno.EACCES, "could not open port /dev/ttyUSB0")
    assert "dialout group" in explain(denied, reading=False)
    busy = OSError(errno.EAGAIN, "Could not exclusively lock port")
    assert "in use by another program" in explain(busy, reading=False)
    gone = OSError("read failed: [Errno 5] Input/output error")
    assert "USB unplugged" in explain(gone, reading=True)
