"""sd_notify and the watchdog against a real AF_UNIX datagram socket, with a real gateway and broker.

The socket stands in for systemd: whatever the agent sends arrives here as systemd would read it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.config import parse_config
from edge.watchdog import SystemdNotifier, Watchdog
from gateway.agent import Gateway
from uncia.commands import gateway as gateway_command

PING_USEC = 100_000  # a 0.1 s watchdog: pings every 50 ms


class FakeSystemd:
    """The notify socket systemd would hold: a bound AF_UNIX datagram socket, messages in order."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(0.2)
        self.messages: list[str] = []

    def receive(self, timeout: float = 10.0) -> str | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.messages.append(data.decode())
            return self.messages[-1]
        return None

    def wait_for(self, predicate, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self.receive(max(0.0, deadline - time.monotonic()))
            if message is not None and predicate(message):
                return message
        raise TimeoutError(f"systemd never got the awaited message; got {self.messages[-5:]}")

    def seen(self, predicate, timeout: float = 10.0) -> str:
        """Like `wait_for`, but a message already received counts too."""
        for message in self.messages:
            if predicate(message):
                return message
        return self.wait_for(predicate, timeout)

    def drain(self) -> list[str]:
        out = []
        self.sock.setblocking(False)
        try:
            while True:
                out.append(self.sock.recv(4096).decode())
        except BlockingIOError:
            pass
        finally:
            self.sock.settimeout(0.2)
        self.messages += out
        return out

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[tuple[FakeSystemd, dict[str, str]]]:
    path = str(tmp_path / "notify.sock")
    fake = FakeSystemd(path)
    yield fake, {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": str(PING_USEC), "WATCHDOG_PID": str(os.getpid())}
    fake.close()


def _wait(predicate, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_without_notify_socket_everything_is_a_no_op() -> None:
    notifier = SystemdNotifier(environ={})
    assert not notifier.enabled and notifier.watchdog_interval is None
    assert notifier.ready("x") is False and notifier.ping() is False
    dog = Watchdog(notifier, lambda: True)
    dog.start()
    assert not dog.running


def test_watchdog_env_is_only_for_the_named_process(tmp_path: Path) -> None:
    base = {"NOTIFY_SOCKET": str(tmp_path / "s"), "WATCHDOG_USEC": "30000000"}
    assert SystemdNotifier(environ=base).watchdog_interval == 15.0
    assert SystemdNotifier(environ={**base, "WATCHDOG_PID": str(os.getpid())}).watchdog_interval == 15.0
    assert SystemdNotifier(environ={**base, "WATCHDOG_PID": "1"}).watchdog_interval is None
    assert SystemdNotifier(environ={**base, "WATCHDOG_USEC": "0"}).watchdog_interval is None
    assert SystemdNotifier(environ={**base, "WATCHDOG_USEC": "soon"}).watchdog_interval is None


def test_abstract_socket_and_status_on_one_line() -> None:
    name = f"uncia-test-{uuid.uuid4().hex}"
    fake = FakeSystemd("\0" + name)
    try:
        notifier = SystemdNotifier(environ={"NOTIFY_SOCKET": "@" + name})
        assert notifier.ready("relaying:\n broker connected")
        assert fake.receive() == "READY=1\nSTATUS=relaying: broker connected"
        assert notifier.stopping()
        assert fake.receive() == "STOPPING=1"
    finally:
        fake.close()


def test_a_vanished_socket_is_logged_once_and_never_raises(tmp_path: Path, caplog) -> None:
    notifier = SystemdNotifier(environ={"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    with caplog.at_level(logging.WARNING, logger="uncia.watchdog"):
        assert notifier.ping() is False
        assert notifier.status("still here") is False
    assert len([r for r in caplog.records if "cannot notify systemd" in r.getMessage()]) == 1


def test_a_failing_liveness_check_stops_the_pings(systemd) -> None:
    fake, env = systemd
    notifier = SystemdNotifier(environ=env)

    def broken() -> bool:
        raise RuntimeError("health check bug")

    dog = Watchdog(notifier, broken)
    dog.start()
    status = fake.wait_for(lambda m: m.startswith("STATUS=failed"))
    assert "health check bug" in status and dog.dead is not None
    _wait(lambda: not dog.running, what="the watchdog thread to end")
    assert "WATCHDOG=1" not in fake.messages


def test_gateway_ready_pings_then_silence_when_its_relay_dies(broker, systemd, tmp_path, caplog) -> None:
    fake, env = systemd
    config = parse_config(
        {
            "unit": {"id": "gw-dog", "site": "helan"},
            "mqtt": {"host": broker.host, "port": broker.port},
            "outbox": {"path": str(tmp_path / "outbox.sqlite3")},
            "health": {"interval": 3600},
        }
    )
    gateway = Gateway(config)
    gateway.start()
    stop = threading.Event()
    notifier = SystemdNotifier(environ=env)
    runner = threading.Thread(target=gateway_command.serve, args=(gateway, stop, notifier), daemon=True)
    with caplog.at_level(logging.ERROR, logger="uncia.gateway"):
        runner.start()
        try:
            ready = fake.wait_for(lambda m: "READY=1" in m)
            assert "STATUS=relaying:" in ready and "0 serial, 0 LoRa" in ready
            for _ in range(3):  # periodic: each ping is a new datagram
                fake.wait_for(lambda m: m == "WATCHDOG=1")
            fake.seen(lambda m: "broker connected" in m)  # the status follows the relay

            gateway.relay.stop(1.0)  # the relay thread ends: the gateway is no longer alive
            failed = fake.wait_for(lambda m: m.startswith("STATUS=failed"))
            assert "uncia-relay" in failed
            _wait(
                lambda: "uncia-watchdog" not in {t.name for t in threading.enumerate()}, what="pings to end"
            )
            fake.drain()
            assert "WATCHDOG=1" not in fake.messages[fake.messages.index(failed) :]
        finally:
            stop.set()
            runner.join(20)
    assert not runner.is_alive()
    assert any(
        "uncia-relay" in r.getMessage() and "no more watchdog pings" in r.getMessage() for r in caplog.records
    )
    assert any(m.startswith("STOPPING=1") for m in fake.drain() + fake.messages)


def test_camera_unit_ready_pings_and_stopping(systemd, tmp_path) -> None:
    from uncia.commands.camera import build_unit, serve

    fake, env = systemd
    config = parse_config(
        {
            "unit": {"id": "cam-dog", "site": "helan", "role": "camera"},
            "mqtt": {"port": 9},  # nobody there: the unit runs without a broker
            "outbox": {"path": str(tmp_path / "outbox.sqlite3")},
            "camera": {
                "lat": 38.8,
                "lon": 105.9,
                "backend": "simulated",
                "main_width": 160,
                "main_height": 120,
                "lores_width": 80,
                "lores_height": 60,
                "image_dir": str(tmp_path / "images"),
            },
        }
    )
    unit, _ = build_unit(config, seed=1)
    finished = threading.Event()

    def listen() -> None:  # systemd keeps reading its socket
        while not finished.is_set():
            fake.receive(0.2)

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    # serve() sets signal handlers, so it runs on the main thread; it returns after `duration`.
    try:
        code = serve(unit, duration=1.5, notifier=SystemdNotifier(environ=env))
    finally:
        finished.set()
        listener.join(5)
    fake.drain()
    assert code == 0
    assert "WATCHDOG=1" in fake.messages
    text = "\n".join(fake.messages)
    assert "READY=1\nSTATUS=watching: 0 events" in text
    assert "STOPPING=1" in text
    assert text.index("READY=1") < text.index("STOPPING=1")


def test_a_full_socket_never_blocks_the_agent(tmp_path: Path, caplog) -> None:
    """Nobody reads the socket (systemd hung): sends give up after a second, logged once."""
    path = str(tmp_path / "deaf.sock")
    deaf = FakeSystemd(path)
    try:
        notifier = SystemdNotifier(environ={"NOTIFY_SOCKET": path})
        with caplog.at_level(logging.WARNING, logger="uncia.watchdog"):
            sent = 0
            while sent < 100_000 and notifier.status(f"line {sent}"):  # until the queue is full
                sent += 1
            assert 0 < sent < 100_000
            assert notifier.ping() is False  # still full: gives up again, quietly
        assert len([r for r in caplog.records if "cannot notify systemd" in r.getMessage()]) == 1
    finally:
        deaf.close()
