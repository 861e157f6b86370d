"""The gateway end to end: simulated GPS on a real pty → gateway → real broker → separate subscriber."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge.config import parse_config
from edge.fix import Fix
from edge.topics import Topics
from gateway.agent import Gateway
from simulators.gps import FaultPlan, make_simulator
from simulators.pty_port import PtyPort
from uncia.cli import main

SITE, UNIT, SOURCE = "helan", "gw-test", "gps0"
TOPICS = Topics(SITE, UNIT)


def _config(broker, tmp_path: Path, port: str, **outbox):
    return {
        "unit": {"id": UNIT, "site": SITE},
        "mqtt": {"host": broker.host, "port": broker.port},
        "outbox": {"path": str(tmp_path / "outbox.sqlite3"), **outbox},
        "serial": [{"name": SOURCE, "port": port, "baudrate": 115200}],
        "health": {"interval": 3600},
    }


def _wait(predicate, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _fixes(messages) -> list[dict]:
    return [m.json() for m in messages]


def test_every_fix_arrives_exactly_once_in_order_through_noise(broker, collect, tmp_path):
    inbox = collect(broker, TOPICS.all_fixes())
    with PtyPort(tmp_path / "gps0") as pty:
        faults = FaultPlan(noise=0.05, bad_checksum=0.02, truncate=0.02, lost_crlf=0.05)
        sim = make_simulator(pty, seed=11, profile="gn-multi", faults=faults)
        gateway = Gateway(parse_config(_config(broker, tmp_path, pty.path)))
        gateway.start()
        try:
            _wait(lambda: gateway.workers[0].source.connected, what="the gateway to open the port")
            recording = sim.run_fast(400)
            # Epochs whose every fix-bearing sentence was spoilt cannot yield a fix; all others must.
            _wait(lambda: gateway.workers[0].fixes >= 300, what="fixes decoded")
            time.sleep(1.0)  # the idle flush of the last epoch
        finally:
            gateway.stop()
    decoded = gateway.workers[0].fixes
    messages = inbox.wait_for(decoded, unique=True)
    payloads = _fixes(messages)
    assert [p["seq"] for p in payloads] == list(range(1, decoded + 1))
    truth = {f.time: f for f in recording.truth if f is not None}
    for payload in payloads:
        assert payload["unit"] == UNIT and payload["source"] == SOURCE and payload["type"] == "fix"
        fix = Fix.from_dict(payload["data"])
        assert fix.time in truth, f"a fix the GPS never sent: {payload}"
        sent = truth[fix.time]
        assert abs(fix.lat - sent.lat) < 1e-6 and abs(fix.lon - sent.lon) < 1e-6
        assert (fix.lat, fix.lon) != (0.0, 0.0)
    times = [Fix.from_dict(p["data"]).time for p in payloads]
    assert times == sorted(times) and len(set(times)) == len(times)


def test_bad_config_names_key_and_exits_3(tmp_path, capsys):
    config = tmp_path / "gateway.toml"
    config.write_text(
        '[unit]\nid = "gw-01"\nsite = "helan"\n\n[[serial]]\nname = "gps0"\nport = "/dev/x"\nbaud = 9600\n'
    )
    assert main(["gateway", "--config", str(config)]) == 3
    err = capsys.readouterr().err
    assert "serial[0].baud" in err and "baudrate" in err


def test_missing_config_file_is_a_config_error(tmp_path, capsys):
    assert main(["gateway", "--config", str(tmp_path / "nope.toml")]) == 3
    assert "nope.toml" in capsys.readouterr().err


def test_check_prints_the_plan(tmp_path, capsys):
    config = tmp_path / "gateway.toml"
    config.write_text(
        '[unit]\nid = "gw-01"\nsite = "helan"\n\n[[serial]]\nname = "gps0"\nport = "/dev/uncia-gps0"\n'
    )
    assert main(["gateway", "--check", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "gps0: /dev/uncia-gps0" in out and "config OK" in out


def _write_toml(path: Path, data: dict) -> None:
    lines = []
    for section, body in data.items():
        items = body if isinstance(body, list) else [body]
        for item in items:
            lines.append(f"[[{section}]]" if isinstance(body, list) else f"[{section}]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in item.items()]
            lines.append("")
    path.write_text("\n".join(lines))


def _start_gateway(config_path: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "uncia", "gateway", "--config", str(config_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


@pytest.mark.slow
def test_sigkill_mid_stream_loses_nothing_accepted(broker, collect, tmp_path):
    """kill -9 the agent while fixes stream in, start it again: every accepted fix reaches the broker.

    Seq numbers are committed with their message, so a gap in the received seq numbers is exactly
    an accepted message lost; fixes read but not yet committed at the kill may be lost (they were
    never accepted) and their seq numbers are reused, leaving no gap.
    """
    inbox = collect(broker, TOPICS.all_fixes())
    config_path = tmp_path / "gateway.toml"
    with PtyPort(tmp_path / "gps0") as pty:
        _write_toml(config_path, _config(broker, tmp_path, pty.path))
        sim = make_simulator(pty, seed=5, profile="gp-basic", rate_hz=200.0)
        sim.start()
        try:
            for _round in range(3):
                agent = _start_gateway(config_path)
                try:
                    start = len(inbox.messages)
                    inbox.wait_until(lambda ms, start=start: len(ms) >= start + 150, timeout=30)
                finally:
                    agent.send_signal(signal.SIGKILL)
                    agent.wait(10)
            agent = _start_gateway(config_path)
            try:
                start = len(inbox.messages)
                inbox.wait_until(lambda ms, start=start: len(ms) >= start + 150, timeout=30)
                sim.stop()
                time.sleep(1.0)
            finally:
                agent.send_signal(signal.SIGTERM)
                _, err = agent.communicate(timeout=15)
            assert agent.returncode == 0, err.decode()
        finally:
            sim.stop()
    payloads = _fixes(inbox.unique())
    seqs = sorted(p["seq"] for p in payloads)
    assert seqs == list(range(1, len(seqs) + 1)), "a gap: an accepted fix was lost"
    assert len(seqs) >= 450  # 4 runs of at least 150 messages each, duplicates removed
    assert len({p["id"] for p in payloads}) == len(payloads)


@pytest.mark.slow
def test_broker_sigkill_mid_stream_loses_nothing_accepted(collect, tmp_path):
    """The station broker is killed (-9) while fixes stream in and comes back: no accepted fix is lost.

    What the gateway guarantees is that a fix leaves its outbox only once the broker acknowledged it.
    A broker killed with -9 may itself lose messages it had acknowledged but not yet passed on to
    subscribers; so every fix must reach the subscriber except, possibly, some the broker had
    acknowledged before it died.
    """
    from edge.broker import start_broker

    with start_broker(persistence=True, data_dir=tmp_path / "broker") as broker:
        inbox = collect(broker, TOPICS.all_fixes(), session="station-viewer")
        time.sleep(1.5)  # the broker's autosave has written the viewer's session
        with PtyPort(tmp_path / "gps0") as pty:
            gateway = Gateway(parse_config(_config(broker, tmp_path, pty.path)))
            sim = make_simulator(pty, seed=3, profile="gp-basic", rate_hz=100.0)
            gateway.start()
            try:
                _wait(lambda: gateway.workers[0].source.connected, what="the gateway to open the port")
                sim.start()
                inbox.wait_for(150)
                broker.kill()
                _wait(lambda: not gateway.relay.connected, what="the relay to notice")
                # PUBACKs the relay saw (none can come after the link died)
                acked_at_kill = gateway.relay.counters["acked"]
                time.sleep(1.0)  # fixes keep arriving and are kept in the outbox
                assert gateway.outbox.depth > 0
                broker.start()
                _wait(lambda: gateway.relay.connected, what="the relay to reconnect")
                time.sleep(1.0)
                sim.stop()
                time.sleep(0.5)
                accepted = gateway.workers[0].fixes
                inbox.wait_until(lambda ms: any(m.json()["seq"] == accepted for m in ms), timeout=30)
            finally:
                sim.stop()
                gateway.stop()
    seqs = {m.json()["seq"] for m in inbox.unique()}
    missing = set(range(1, accepted + 1)) - seqs
    assert not {s for s in missing if s > acked_at_kill}, "a fix the broker never acknowledged was lost"
    assert len(missing) <= 200, "at most the broker's in-flight share can die with it"
    assert seqs <= set(range(1, accepted + 1))
