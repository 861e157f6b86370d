"""The station's bridge to the centre: the renderer, the shipped example, and two real Mosquittos.

A "station" broker runs the rendered bridge (short reconnect intervals) towards a "central" broker,
both with persistence and a one-second autosave. Messages carry a number; receivers de-duplicate by
it. docs/bridge.md reports what these tests measure.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from edge.broker import Broker, BrokerError, find_mosquitto, free_port, start_broker
from gateway.bridge_config import (
    MOSQUITTO_BYTES_PER_MESSAGE,
    BridgeConfigError,
    BridgeTls,
    QueueLimits,
    SiteLoad,
    bridge_topics,
    notification_topic,
    password_from_file,
    queue_limits,
    remote_clientid,
    render_bridge,
    render_connection,
    render_queue_limits,
)

SITE, STATION = "helan", "gw-01"
FIXES = f"uncia/{SITE}/{STATION}/gps0/event/fix"
LINK = notification_topic(SITE, STATION)
SHIPPED = Path(__file__).resolve().parent.parent / "deploy" / "mosquitto" / "bridge-central.conf"
EXAMPLE_TLS = BridgeTls("/etc/uncia/central-ca.crt", "/etc/uncia/bridge.crt", "/etc/uncia/bridge.key")

needs_mosquitto = pytest.mark.skipif(
    find_mosquitto() is None, reason="no mosquitto binary (apt-get install mosquitto); CI installs it"
)


# --- the renderer ---------------------------------------------------------------------------------


def test_shipped_example_is_the_renderers_output() -> None:
    rendered = render_bridge(SITE, STATION, address="central.example.org:8883", tls=EXAMPLE_TLS)
    assert SHIPPED.read_text() == rendered, (
        "deploy/mosquitto/bridge-central.conf drifted from gateway/bridge_config.py: re-render it (docs/bridge.md)"
    )


def test_connection_block_lines() -> None:
    text = render_connection(SITE, STATION, address="central.example.org:8883", tls=EXAMPLE_TLS)
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert lines[0] == "connection uncia-bridge-helan-gw-01"
    for expected in (
        "address central.example.org:8883",
        "remote_clientid uncia-bridge-helan-gw-01",
        "local_clientid local.uncia-bridge-helan-gw-01",
        "cleansession false",
        "local_cleansession false",
        "bridge_attempt_unsubscribe false",
        "notifications true",
        "notification_topic $SYS/broker/connection/uncia-bridge-helan-gw-01/state",
        "restart_timeout 10 120",
        "keepalive_interval 60",
        "bridge_protocol_version mqttv311",
        "bridge_cafile /etc/uncia/central-ca.crt",
        "bridge_certfile /etc/uncia/bridge.crt",
        "bridge_keyfile /etc/uncia/bridge.key",
        "bridge_tls_version tlsv1.2",
        "topic uncia/helan/# out 1",
        "topic uncia-shared/helan/# out 1",
        "topic uncia/helan/+/station/command/+ in 1",
    ):
        assert expected in lines
    assert not any(line.startswith(("remote_username", "remote_password", "max_queued")) for line in lines)
    assert [t.direction for t in bridge_topics(SITE)] == ["out", "out", "in"]
    assert remote_clientid(SITE, STATION) == "uncia-bridge-helan-gw-01"


def test_password_only_with_a_username_and_never_echoed(tmp_path: Path) -> None:
    text = render_connection(
        SITE, STATION, address="10.0.0.5:1883", remote_username="gw-01", remote_password="pa55-word"
    )
    assert "remote_username gw-01\nremote_password pa55-word\n" in text
    with pytest.raises(BridgeConfigError, match="remote_username"):
        render_connection(SITE, STATION, address="10.0.0.5:1883", remote_password="pa55-word")
    with pytest.raises(BridgeConfigError, match="remote_password") as caught:
        render_connection(SITE, STATION, address="a:1", remote_username="u", remote_password="se cret")
    assert "se cret" not in str(caught.value)

    secret = tmp_path / "bridge-password"
    secret.write_text("pa55-word\nsecond line ignored\n")
    secret.chmod(0o644)
    with pytest.raises(BridgeConfigError, match="chmod 600"):
        password_from_file(secret)
    secret.chmod(0o600)
    assert password_from_file(secret) == "pa55-word"
    with pytest.raises(BridgeConfigError, match="cannot read"):
        password_from_file(tmp_path / "missing")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"site": "Helan"}, "site"),
        ({"site": "he lan"}, "site"),
        ({"station": "gw/01"}, "station"),
        ({"station": "gw-01\nconnection evil"}, "station"),
        ({"address": "central.example.org"}, "address"),
        ({"address": "central.example.org:0"}, "address"),
        ({"address": "central example.org:8883"}, "address"),
        ({"address": "central.example.org:8883 #"}, "address"),
        ({"remote_username": "gw 01"}, "remote_username"),
        ({"remote_username": "gw#01"}, "remote_username"),
        ({"tls": BridgeTls("relative/ca.crt")}, "tls.cafile"),
        ({"tls": BridgeTls("/etc/uncia/ca.crt\nbridge_insecure true")}, "tls.cafile"),
        ({"tls": BridgeTls("/etc/uncia/ca.crt", certfile="/etc/uncia/bridge.crt")}, "tls.certfile"),
        ({"tls": BridgeTls("/etc/uncia/ca.crt", version="tlsv1.0")}, "tls.version"),
        ({"keepalive": 2}, "keepalive"),
        ({"restart_timeout": (30, 10)}, "restart_timeout"),
        ({"protocol": "mqttv31"}, "protocol"),
        ({"queue_days": 30}, "queue_days"),
        ({"queue_days": 0}, "queue_days"),
        ({"limits": QueueLimits(0, 1000)}, "max_queued_messages"),
    ],
)
def test_bad_settings_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    args = {"site": SITE, "station": STATION, "address": "central.example.org:8883"} | kwargs
    site, station = args.pop("site"), args.pop("station")
    with pytest.raises(BridgeConfigError, match=f"^bridge setting {field}:") as caught:
        render_bridge(site, station, **args)
    assert caught.value.field == field


def test_a_notification_topic_inside_a_bridged_pattern_is_refused() -> None:
    # Measured: a notification under uncia/<site>/# is queued and forwarded too, and a stale "0"
    # ends up retained at the centre while the bridge is up (docs/bridge.md).
    with pytest.raises(BridgeConfigError, match="falls under the bridged pattern 'uncia/helan/#'"):
        render_connection(
            SITE, STATION, address="a:1883", notification="uncia/helan/gw-01/bridge/state/connection"
        )
    text = render_connection(SITE, STATION, address="a:1883", notification="uncia-link/helan/gw-01")
    assert "notification_topic uncia-link/helan/gw-01\n" in text


@given(st.text(min_size=1, max_size=20))
def test_every_written_value_is_one_token_on_one_line(username: str) -> None:
    try:
        text = render_connection(SITE, STATION, address="a:1883", remote_username=username)
    except BridgeConfigError as exc:
        assert exc.field == "remote_username"
        assert any(c.isspace() or c == "#" or not c.isprintable() for c in username)
        return
    assert f"\nremote_username {username}\n" in text
    assert len(text.splitlines()) == len(render_connection(SITE, STATION, address="a:1883").splitlines()) + 1


def test_queue_sizing() -> None:
    load = SiteLoad()
    assert load.messages_per_day() == pytest.approx(18_920)
    assert load.bytes_per_day() == pytest.approx(19_464_000)
    default = queue_limits()
    # 7 days x 10 would need ~1.8 GB of Mosquitto memory: scaled into the 512 MB budget.
    assert (default.max_queued_messages, default.max_queued_bytes) == (368_000, 379_000_000)
    memory = default.max_queued_bytes + default.max_queued_messages * MOSQUITTO_BYTES_PER_MESSAGE
    assert memory <= 512e6
    assert any("19.5 days at the typical load" in line for line in default.reasoning)
    # One day fits with the full margin.
    one_day = queue_limits(1)
    assert one_day.max_queued_messages >= 189_000 and one_day.max_queued_bytes >= 194_000_000
    assert not any("scaled" in line for line in one_day.reasoning)
    # A bigger budget, more messages; the typical load alone must always fit.
    assert queue_limits(memory_budget_mb=2000).max_queued_messages > default.max_queued_messages
    with pytest.raises(BridgeConfigError, match=r"at most 19\.5 days"):
        queue_limits(30)
    text = render_queue_limits(default)
    assert "max_queued_messages 368000\nmax_queued_bytes 379000000\n" in text
    assert all(line.startswith("#") or line.startswith("max_queued_") for line in text.splitlines())


# --- two real brokers --------------------------------------------------------------------------------


def payload(n: int) -> bytes:
    return json.dumps({"id": f"m{n}", "n": n}).encode()


def numbers(inbox: Any) -> list[int]:
    return [m.json()["n"] for m in inbox.unique()]


def in_order(got: list[int], expected: range) -> bool:
    """Every expected number once, in order but for a neighbour swap: Mosquitto 2.0.11's bridge now and
    then sends the first two waiting messages swapped right after a reconnect (docs/bridge.md)."""
    return sorted(got) == list(expected) and all(abs(n - expected[i]) <= 1 for i, n in enumerate(got))


def last_is(value: bytes) -> Callable[[list[Any]], bool]:
    return lambda messages: bool(messages) and messages[-1].payload == value


class Client:
    """A plain paho client on one broker (a unit or the hub at the station, an operator at the centre)."""

    def __init__(self, broker: Broker, **tls: Any) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2)
        self.client.max_inflight_messages_set(100)
        self.client.reconnect_delay_set(0.05, 0.5)  # and a quick loop_stop when its broker is gone
        if tls:
            self.client.tls_set(ca_certs=tls["ca"], certfile=tls["cert"], keyfile=tls["key"])
            self.client.username_pw_set(tls["user"], tls["password"])
        self.client.connect(broker.host, broker.port, keepalive=10)
        self.client.loop_start()

    def send(self, numbers: Iterable[int], topic: str = FIXES) -> list[mqtt.MQTTMessageInfo]:
        return [self.client.publish(topic, payload(n), qos=1) for n in numbers]

    def publish(self, topic: str, body: bytes) -> None:
        self.accepted([self.client.publish(topic, body, qos=1)])

    @staticmethod
    def accepted(infos: list[mqtt.MQTTMessageInfo], timeout: float = 20.0) -> None:
        """Wait for the broker's PUBACK of every message: from here on the broker owns them."""
        for info in infos:
            info.wait_for_publish(timeout)
        assert all(info.is_published() for info in infos)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def persistent_broker(directory: Path) -> Broker:
    """A Mosquitto (not started yet) with persistence and a one-second autosave (edge/broker.py)."""
    directory.mkdir(parents=True, exist_ok=True)
    return Broker(free_port(), directory, kind="mosquitto", persistence=True)


def station_broker(directory: Path, central_address: str, **render: Any) -> Broker:
    """The station's Mosquitto: edge.broker's test config with the rendered bridge appended,
    reconnecting every second."""
    station = persistent_broker(directory)
    base = [
        line for line in station.config_path.read_text().splitlines() if not line.startswith("max_queued")
    ]
    bridge = render_bridge(
        SITE, STATION, address=central_address, keepalive=5, restart_timeout=(1, 1), **render
    )
    station.config_path.write_text("\n".join(base) + "\n\n" + bridge)
    return station


def saved_since(broker: Broker, since_ns: int, timeout: float = 10.0) -> None:
    """Wait for an autosave of `broker` after `since_ns` (time.time_ns())."""
    db = broker.data_dir / "mosquitto.db"
    deadline = time.monotonic() + timeout
    while not (db.exists() and db.stat().st_mtime_ns > since_ns):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{broker} did not save {db} within {timeout} s")
        time.sleep(0.05)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Broker, Broker]]:
    """(central, station), neither started; stopped after the test."""
    central = persistent_broker(tmp_path / "central")
    station = station_broker(tmp_path / "station", central.address)
    yield central, station
    station.close()
    central.close()


@pytest.fixture
def clients() -> Iterator[Callable[..., Client]]:
    made: list[Client] = []

    def make(broker: Broker, **tls: Any) -> Client:
        made.append(Client(broker, **tls))
        return made[-1]

    yield make
    for client in made:
        client.close()


@needs_mosquitto
def test_centre_down_at_first_then_up_delivers_everything_in_order(pair, collect, clients) -> None:
    central, station = pair
    central.start()
    archive = collect(central, FIXES, session="centre-archive")  # a persistent session at the centre
    central.stop()
    station.start()
    link = collect(station, LINK)
    link.wait_until(last_is(b"0"))

    unit = clients(station)
    unit.accepted(unit.send(range(500)))  # the station owns all 500 now; the centre is still down
    central.start()

    archive.wait_for(500, timeout=30, unique=True)
    assert in_order(numbers(archive), range(500))
    link.wait_until(last_is(b"1"))


@needs_mosquitto
@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_centre_goes_away_mid_stream(pair, collect, clients, how: str) -> None:
    central, station = pair
    central.start()
    station.start()
    archive = collect(central, FIXES, session="centre-archive")
    subscribed = time.time_ns()  # after the SUBACK: any later save holds the subscription
    if how == "sigkill":
        saved_since(central, subscribed)  # the archive's session must survive the power cut
    link = collect(station, LINK)
    link.wait_until(last_is(b"1"))

    unit = clients(station)
    first = unit.send(range(1000))
    archive.wait_for(100, timeout=20)
    if how == "sigterm":
        central.stop()  # a clean restart: Mosquitto saves what it holds
    else:
        central.kill()  # a power cut at the centre
    unit.accepted(first)
    link.wait_until(last_is(b"0"))
    unit.accepted(unit.send(range(1000, 1500)))  # accepted while the centre is known to be down
    central.start()

    expected = set(range(1500) if how == "sigterm" else range(1000, 1500))
    archive.wait_until(lambda _: expected <= set(numbers(archive)), timeout=30)
    got = numbers(archive)
    link.wait_until(last_is(b"1"))
    if how == "sigterm":
        assert in_order(got, range(1500))  # de-duplicated: all, in order
        return
    # A killed centre loses what it had acknowledged to the bridge (PUBACK, so the station let go)
    # but had neither delivered nor saved: Mosquitto acknowledges from memory. Everything the station
    # accepted once the centre was gone arrives; only messages sent before the kill can be missing.
    assert set(range(1000, 1500)) <= set(got)
    missing = set(range(1500)) - set(got)
    assert all(n < 1000 for n in missing), sorted(missing)[:20]


@needs_mosquitto
@pytest.mark.parametrize("how", ["sigterm", "power_cut_after_autosave"])
def test_station_restart_while_centre_down_keeps_the_queue(pair, collect, clients, how: str) -> None:
    central, station = pair
    central.start()
    archive = collect(central, FIXES, session="centre-archive")
    central.stop()
    station.start()
    unit = clients(station)
    unit.accepted(unit.send(range(300)))
    unit.close()
    if how == "sigterm":
        station.stop()  # Mosquitto saves its database on a clean stop
    else:
        saved_since(station, time.time_ns())
        station.kill()
    station.start()
    central.start()

    archive.wait_for(300, timeout=30, unique=True)
    assert in_order(numbers(archive), range(300))


@needs_mosquitto
def test_what_crosses_in_which_direction(pair, collect, clients) -> None:
    central, station = pair
    central.start()
    station.start()
    at_centre = collect(central, "#")
    at_station = collect(station, "#")
    collect(station, LINK).wait_until(last_is(b"1"))
    hub, operator = clients(station), clients(central)

    # Down: only the station hub's command requests.
    operator.publish("other/x", b"no")
    operator.publish(f"uncia/{SITE}/{STATION}/gps0/event/fix", b"no: out only")
    operator.publish(f"uncia/{SITE}/{STATION}/unit/command/restart", b"no: not the hub's")
    operator.publish(f"uncia/{SITE}/{STATION}/station/command/ping", b'{"id":"c1"}')
    at_station.wait_until(lambda ms: any(m.topic.endswith("/station/command/ping") for m in ms))
    assert [(m.topic, m.payload) for m in at_station.messages] == [
        (f"uncia/{SITE}/{STATION}/station/command/ping", b'{"id":"c1"}')
    ]

    # Up: everything of the site, the shared feed, the responses; nothing else.
    hub.publish("other/x", b"no")
    hub.publish("uncia/other-site/gw-01/gps0/event/fix", b"no: another site")
    hub.publish(f"uncia-shared/{SITE}/positions", b"coarse")
    hub.publish(f"uncia/{SITE}/{STATION}/station/command/ping/response", b'{"id":"c1","ok":true}')
    hub.publish(FIXES, b"last")
    at_centre.wait_until(lambda ms: any(m.payload == b"last" for m in ms))
    crossed = [m.topic for m in at_centre.messages if m.payload != b"no"]
    assert "other/x" not in crossed and "uncia/other-site/gw-01/gps0/event/fix" not in crossed
    assert crossed[-3:] == [
        f"uncia-shared/{SITE}/positions",
        f"uncia/{SITE}/{STATION}/station/command/ping/response",
        FIXES,
    ]
    # The command that came down is not sent back up (no loop): the centre saw it once.
    assert crossed.count(f"uncia/{SITE}/{STATION}/station/command/ping") == 1


@needs_mosquitto
def test_link_state_on_both_sides(pair, collect, clients) -> None:
    central, station = pair
    station.start()
    at_station = collect(station, LINK)
    at_station.wait_until(last_is(b"0"))  # retained "0" while the centre is unreachable
    central.start()
    at_station.wait_until(last_is(b"1"))
    at_centre = collect(central, LINK)
    at_centre.wait_until(last_is(b"1"))
    assert at_centre.messages[0].retain  # a later subscriber at the centre sees the state at once

    station.kill()  # the station dies: the centre publishes the bridge's will
    at_centre.wait_until(last_is(b"0"))
    station.start()
    at_centre.wait_until(last_is(b"1"))
    # Anything queued at the station before the reconnect (a stale "0", had the state topic been
    # bridged) would reach the centre before this marker.
    marker = collect(central, FIXES)
    clients(station).publish(FIXES, payload(1))
    marker.wait_for(1)
    assert [m.payload for m in collect(central, LINK).wait_for(1)] == [b"1"]
    assert at_centre.messages[-1].payload == b"1"


@needs_mosquitto
def test_a_full_queue_keeps_the_oldest_and_drops_the_newest(tmp_path: Path, collect, clients) -> None:
    central = persistent_broker(tmp_path / "central")
    station = station_broker(tmp_path / "station", central.address, limits=QueueLimits(50, 10**9))
    try:
        central.start()
        archive = collect(central, FIXES, session="centre-archive")
        central.stop()
        station.start()
        unit = clients(station)
        unit.accepted(unit.send(range(80)))
        central.start()
        archive.wait_for(50, timeout=30, unique=True)
        log = (station.data_dir / "broker.log").read_text()
        assert "Outgoing messages are being dropped for client local.uncia-bridge-helan-gw-01" in log
        collect(station, LINK).wait_until(last_is(b"1"))
        clients(station).publish(FIXES, payload(1000))  # a marker after the queue drained
        archive.wait_until(lambda ms: ms[-1].json()["n"] == 1000, timeout=30)
        assert in_order(numbers(archive)[:-1], range(50)) and numbers(archive)[-1] == 1000
    finally:
        station.close()
        central.close()


@needs_mosquitto
def test_tls_client_certificate_and_password(tmp_path: Path, collect, clients) -> None:
    user, password = remote_clientid(SITE, STATION), "field-station-secret"
    secret = tmp_path / "bridge-password"
    secret.write_text(password + "\n")
    secret.chmod(0o600)
    with start_broker(tls=True, users={user: password}, data_dir=tmp_path / "central") as central:
        tls = BridgeTls(str(central.ca_file), str(central.client_cert), str(central.client_key))
        station = station_broker(
            tmp_path / "station",
            central.address,
            tls=tls,
            remote_username=user,
            remote_password=password_from_file(secret),
        )
        try:
            station.start()
            collect(station, LINK).wait_until(last_is(b"1"))
            inbox: list[bytes] = []
            subscribed, arrived = threading.Event(), threading.Event()
            operator = clients(
                central, ca=tls.cafile, cert=tls.certfile, key=tls.keyfile, user=user, password=password
            )
            operator.client.on_subscribe = lambda *_: subscribed.set()
            operator.client.on_message = lambda c, u, m: (inbox.append(m.payload), arrived.set())
            operator.client.subscribe(FIXES, 1)
            assert subscribed.wait(10)
            clients(station).publish(FIXES, payload(1))
            assert arrived.wait(20), station.log_path.read_text()[-2000:]
            assert json.loads(inbox[0])["n"] == 1
        finally:
            station.close()


@needs_mosquitto
def test_shipped_example_runs_in_a_real_mosquitto(tmp_path: Path) -> None:
    """The example as a conf.d drop-in; only its address is pointed at a closed local port."""
    closed = free_port()
    conf_d = tmp_path / "conf.d"
    conf_d.mkdir()
    text = SHIPPED.read_text().replace("address central.example.org:8883", f"address 127.0.0.1:{closed}")
    assert text != SHIPPED.read_text()
    (conf_d / SHIPPED.name).write_text(text)
    station = persistent_broker(tmp_path / "station")
    base = [
        line for line in station.config_path.read_text().splitlines() if not line.startswith("max_queued")
    ]
    station.config_path.write_text("\n".join([*base, f"include_dir {conf_d}"]) + "\n")
    try:
        station.start()
        deadline = time.monotonic() + 10
        while "Connecting bridge (step 1) uncia-bridge-helan-gw-01" not in station.log_path.read_text():
            assert time.monotonic() < deadline, station.log_path.read_text()
            time.sleep(0.05)
        assert station.running
        station.stop()

        # The same harness notices a broken file: Mosquitto refuses to start.
        (conf_d / SHIPPED.name).write_text(text.replace("bridge_tls_version", "bridge_tls_versoin"))
        with pytest.raises(BrokerError, match="exited at start"):
            station.start()
    finally:
        station.close()
        shutil.rmtree(conf_d, ignore_errors=True)


@needs_mosquitto
def test_the_station_hub_shows_the_bridge_going_down_and_up(pair, tmp_path: Path) -> None:
    from edge.config import parse_config
    from gateway.agent import Gateway

    central, station = pair
    station.start()
    config = parse_config(
        {
            "unit": {"id": STATION, "site": SITE},
            "mqtt": {"host": station.host, "port": station.port},
            "outbox": {"path": str(tmp_path / "outbox.sqlite3")},
            "health": {"interval": 3600},
            "station": {
                "record": str(tmp_path / "station.sqlite3"),
                "image_dir": str(tmp_path / "img"),
                "web": False,
            },
        }
    )
    gateway = Gateway(config)
    events: list[dict] = []
    gateway.hub.live.listen(events.append)
    gateway.start()
    name = f"uncia-bridge-{SITE}-{STATION}"

    def link() -> bool | None:
        state = gateway.hub.status()["station"]["bridges"].get(name)
        return None if state is None else state["up"]

    try:
        deadline = time.monotonic() + 15
        while link() is not False:
            assert time.monotonic() < deadline, "the hub never saw the bridge down"
            time.sleep(0.05)
        central.start()
        deadline = time.monotonic() + 15
        while link() is not True:
            assert time.monotonic() < deadline, "the hub never saw the bridge up"
            time.sleep(0.05)
    finally:
        gateway.stop()
    assert [e["up"] for e in events if e["type"] == "bridge"][-2:] == [False, True]
