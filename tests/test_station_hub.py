"""The station hub against a real Mosquitto with per-identity passwords and an ACL.

Scenarios publish what real units publish (envelopes on their own topics, as their own MQTT identity)
and check the station record, the alerts on the alerts topic (raised, then cleared), and commands
round-tripping staff -> station -> unit -> station -> staff with correlation ids.
"""

from __future__ import annotations

import base64
import io
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from PIL import Image

from edge.broker import find_mosquitto, start_broker
from edge.config import parse_config
from edge.fix import ClockSource, Fix
from edge.messages import Envelope
from edge.topics import Topics
from gateway.agent import Gateway
from gateway.station.hub import coarse
from gateway.station.record import RecordReader
from uncia.cli import main

pytestmark = pytest.mark.skipif(find_mosquitto() is None, reason="needs mosquitto (passwords and ACL)")

SITE, STATION = "helan", "gw-01"
REPO = Path(__file__).resolve().parents[1]
PASSWORDS = {
    "gw-01": "station-pw",
    "relay-02": "relay-pw",
    "cam-01": "cam-pw",
    "staff": "staff-pw",
    "dash": "dash-pw",
}
# The shape of the ACL provisioning generates: a unit writes only under its own topics.
ACL = """
user gw-01
topic read uncia/helan/#
topic write uncia/helan/gw-01/#
topic write uncia/helan/+/unit/command/+
topic write uncia-shared/helan/#

user staff
topic read uncia/helan/#
topic write uncia/helan/gw-01/station/command/+

user dash
topic read uncia-shared/helan/#

pattern write uncia/helan/%u/#
pattern read uncia/helan/%u/unit/command/+
"""


@pytest.fixture
def secure_broker():
    with start_broker(users=PASSWORDS, acl=ACL, persistence=True) as running:
        yield running


class Client:
    """A paho client logged in as one identity, collecting what it subscribes to."""

    def __init__(self, broker, user: str, *subscriptions: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{user}-{time.monotonic_ns()}")
        self.client.username_pw_set(user, PASSWORDS[user])
        subscribed = []
        self.client.on_connect = lambda c, *_: [c.subscribe(s, 1) for s in subscriptions]
        self.client.on_subscribe = lambda *_: subscribed.append(1)
        self.client.on_message = lambda _c, _u, m: self.messages.append((m.topic, bytes(m.payload)))
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        _wait(lambda: len(subscribed) >= len(subscriptions), f"{user} to subscribe")

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)

    def bodies(self, suffix: str) -> list[dict]:
        return [json.loads(p)["data"] for t, p in list(self.messages) if t.endswith(suffix)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _wait(predicate, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _gateway(broker, tmp_path: Path, unit: str = STATION, station: dict | None = None) -> Gateway:
    raw = {
        "unit": {"id": unit, "site": SITE},
        "mqtt": {
            "host": broker.host,
            "port": broker.port,
            "username": unit,
            "password_file": str(_secret(tmp_path, unit)),
        },
        "outbox": {"path": str(tmp_path / f"{unit}-outbox.sqlite3")},
        "health": {"interval": 3600},
    }
    if station is not None:
        raw["station"] = station
    return Gateway(parse_config(raw), clock_source=lambda: ClockSource.NETWORK)


def _secret(tmp_path: Path, user: str) -> Path:
    path = tmp_path / f"{user}.password"
    path.write_text(PASSWORDS[user] + "\n")
    path.chmod(0o600)
    return path


def _station(tmp_path: Path, **limits) -> dict:
    return {
        "record": str(tmp_path / "station.sqlite3"),
        "image_dir": str(tmp_path / "images"),
        "boundary": str(REPO / "deploy" / "reserve.example.geojson"),
        "web": False,
        **limits,
    }


class Collar:
    """Publishes fix envelopes as a gateway that heard a LoRa collar would."""

    def __init__(self, client: Client, unit: str, name: str) -> None:
        self.client, self.unit, self.name = client, unit, name
        self.envelope = Envelope(unit)
        self.topic = Topics(SITE, unit).fix(name)
        self.seq = 0

    def fix(self, when: datetime, lat: float, lon: float, battery: float = 80.0) -> None:
        self.seq += 1
        fix = Fix(time=when, lat=lat, lon=lon, quality=1, sats=8, hdop=1.1)
        data = {**fix.to_dict(), "battery": battery, "rssi": -95.0, "snr": 7.0, "modem": "lora0"}
        payload = self.envelope.encode(
            self.name, self.seq, "fix", data, time=data["time"], received=when, clock=ClockSource.NETWORK
        )
        self.client.publish(self.topic, payload)


def _alerts(client: Client, state: str) -> dict[str, dict]:
    return {b["key"]: b for b in client.bodies("/station/event/alert") if b["state"] == state}


def test_every_alert_is_raised_and_cleared_by_a_scenario(secure_broker, tmp_path):
    station = _gateway(secure_broker, tmp_path, station=_station(tmp_path, unit_offline_min=0.02))
    station.start()
    watcher = Client(secure_broker, "staff", f"uncia/{SITE}/{STATION}/station/#")
    relay = Client(secure_broker, "relay-02")
    camera = Client(secure_broker, "cam-01")
    hub = station.hub
    assert hub is not None
    try:
        _wait(lambda: hub.connected, "the hub to connect")
        now = datetime.now(UTC).replace(microsecond=0)
        inside = (38.85, 105.98)
        collar = Collar(relay, "relay-02", "collar-7")
        # mortality: 13 h of fixes within a few metres
        for i in range(14):
            collar.fix(now - timedelta(hours=13 - i), inside[0] + (i % 3) * 1e-5, inside[1] + (i % 2) * 1e-5)
        # geofence exit (east of the reserve, away from villages), then back in
        walker = Collar(relay, "relay-02", "collar-8")
        walker.fix(now - timedelta(minutes=30), 38.9, 106.5)
        # conflict zone: beside Suyukou village (106.18-106.19 E, 38.716-38.722 N)
        raider = Collar(relay, "relay-02", "collar-9")
        raider.fix(now - timedelta(minutes=20), 38.719, 106.175, battery=12.0)
        # silent collar: last heard 7 h ago (collar_silent_h = 6)
        Collar(relay, "relay-02", "collar-5").fix(now - timedelta(hours=7), 38.95, 105.95)
        # camera: disk nearly full, battery low; then it says offline
        cam_topics = Topics(SITE, "cam-01")
        health = {
            "camera": "cam0",
            "state": "ok",
            "reasons": [],
            "battery_v": 3.2,
            "disk": {"free_bytes": 1_000_000_000, "total_bytes": 32_000_000_000, "used_percent": 96.9},
            "position": {"lat": 38.86, "lon": 105.97, "alt": 2400.0},
        }
        camera.publish(
            cam_topics.state("cam0", "health"),
            Envelope("cam-01").encode(
                "cam0-health", 1, "camera_health", health, time=now, received=now, clock=ClockSource.GPS
            ),
            retain=True,
        )
        relay_health = {
            "role": "gateway",
            "software": "0.1.0",
            "config_hash": "abc",
            "connected": True,
            "agent": {
                "clock": "ntp",
                "lora": {
                    "lora0": {"state": "failed", "last_error": "no answer to AT", "port": "/dev/uncia-lora0"}
                },
            },
        }
        relay.publish(
            Topics(SITE, "relay-02").health(),
            Envelope("relay-02").encode(
                "unit", 1, "health", relay_health, time=now, received=now, clock=ClockSource.NETWORK
            ),
            retain=True,
        )
        camera.publish(cam_topics.availability(), b"offline", retain=True)

        expected = {
            "mortality:collar-7",
            "geofence_exit:collar-8",
            "conflict_zone:collar-9",
            "low_battery:collar-9",
            "collar_silent:collar-5",
            "disk_full:cam-01",
            "low_battery:cam-01",
            "unit_offline:cam-01",
            "modem_unhealthy:relay-02/lora0",
        }

        def raised() -> set[str]:
            hub.tick_now()
            return set(_alerts(watcher, "raised"))

        _wait(lambda: expected <= raised(), f"alerts {expected}")
        mortality = _alerts(watcher, "raised")["mortality:collar-7"]
        assert mortality["severity"] == "critical" and "collar-7" in mortality["message"]
        conflict = _alerts(watcher, "raised")["conflict_zone:collar-9"]
        assert "Suyukou" in conflict["message"] or "Suyukou" in json.dumps(conflict["details"])

        # Everything ends: the animal moves on, the walker comes home, the raider leaves, batteries
        # are changed, the card is emptied, the modem recovers, the camera comes back.
        later = datetime.now(UTC)
        collar.fix(later, inside[0] + 0.02, inside[1])
        walker.fix(later, 38.9, 106.0)
        raider.fix(later, 38.8, 105.95, battery=90.0)
        Collar(relay, "relay-02", "collar-5").fix(later, 38.95, 105.95)
        health.update(battery_v=4.1, disk={"free_bytes": 30e9, "total_bytes": 32e9, "used_percent": 6.3})
        camera.publish(
            cam_topics.state("cam0", "health"),
            Envelope("cam-01").encode(
                "cam0-health", 2, "camera_health", health, time=later, received=later, clock=ClockSource.GPS
            ),
            retain=True,
        )
        relay_health["agent"]["lora"]["lora0"]["state"] = "receiving"
        relay.publish(
            Topics(SITE, "relay-02").health(),
            Envelope("relay-02").encode(
                "unit", 2, "health", relay_health, time=later, received=later, clock=ClockSource.NETWORK
            ),
            retain=True,
        )
        camera.publish(cam_topics.availability(), b"online", retain=True)

        def cleared() -> set[str]:
            hub.tick_now()
            return set(_alerts(watcher, "cleared"))

        _wait(lambda: expected <= cleared(), f"all alerts cleared, have {cleared()}")
        states = [json.loads(p)["data"] for t, p in watcher.messages if t.endswith("/station/state/alerts")]
        # (units that merely went quiet for the test's 1.2 s offline limit may still be listed)
        assert not {a["key"] for a in states[-1]["active"]} & expected
    finally:
        for client in (watcher, relay, camera):
            client.close()
        station.stop()

    with RecordReader(tmp_path / "station.sqlite3") as reader:
        history = reader.alerts()
        assert {a["key"] for a in history} >= expected
        assert all(a["cleared"] is not None for a in history if a["key"] in expected)
        assert reader.count_fixes("collar-7", 0) == 15
        units = {u["unit"]: u for u in reader.units()}
        assert units["cam-01"]["online"] == 1 and units["cam-01"]["camera_health"]["position"]["lat"] == 38.86


def test_record_keeps_fixes_once_and_captures_with_thumbnails_across_a_hub_restart(
    secure_broker, tmp_path, capsys
):
    station = _gateway(secure_broker, tmp_path, station=_station(tmp_path))
    relay = Client(secure_broker, "relay-02")
    camera = Client(secure_broker, "cam-01")
    collar = Collar(relay, "relay-02", "collar-3")
    now = datetime.now(UTC).replace(microsecond=0)
    station.start()
    try:
        _wait(lambda: station.hub.connected, "the hub to connect")
        for i in range(5):
            collar.fix(now - timedelta(minutes=50 - i), 38.85 + i * 1e-3, 105.98)
    finally:
        station.stop()
    # While the station is down: more fixes (kept by the broker for the hub's persistent session),
    # a duplicate delivery, and a whole capture event with its thumbnail.
    for i in range(5, 10):
        collar.fix(now - timedelta(minutes=50 - i), 38.85 + i * 1e-3, 105.98)
    collar.seq -= 1
    collar.fix(now - timedelta(minutes=41), 38.859, 105.98)  # same seq, new id: stored (a new message)
    envelope, topics = Envelope("cam-01"), Topics(SITE, "cam-01")
    start = {
        "event_id": "ev-1",
        "phase": "start",
        "camera": "cam0",
        "trigger": "pir",
        "start": "2026-11-25T03:12:09.000Z",
        "night": True,
        "stills": 0,
        "pre_trigger": {"frames": 20, "seconds": 2.0},
    }
    end = {
        **start,
        "phase": "end",
        "stills": 2,
        "end": "2026-11-25T03:12:15.000Z",
        "end_reason": "motion_ended",
        "best_image_id": "img-2",
        "images_lost": 0,
        "images": [
            {
                "id": "img-1",
                "file": "a.jpg",
                "index": 1,
                "stream": "main",
                "time": "2026-11-25T03:12:09.100Z",
                "width": 1920,
                "height": 1080,
                "bytes": 100,
            },
            {
                "id": "img-2",
                "file": "b.jpg",
                "index": 2,
                "stream": "main",
                "time": "2026-11-25T03:12:09.600Z",
                "width": 1920,
                "height": 1080,
                "bytes": 100,
            },
        ],
    }
    buf = io.BytesIO()
    Image.new("RGB", (160, 90), (40, 40, 40)).save(buf, "JPEG")
    thumb = {
        "event_id": "ev-1",
        "camera": "cam0",
        "image_id": "img-2",
        "file": "b.jpg",
        "time": "2026-11-25T03:12:09.600Z",
        "bytes": len(buf.getvalue()),
        "width": 160,
        "height": 90,
        "jpeg_b64": base64.b64encode(buf.getvalue()).decode(),
    }
    for seq, (type_, body) in enumerate((("capture", start), ("capture", end), ("thumbnail", thumb)), 1):
        payload = envelope.encode(
            "cam0", seq, type_, body, time=now, received=now, clock=ClockSource.UNSYNCED
        )
        camera.publish(topics.event("cam0", type_), payload)
        if seq == 1:
            camera.publish(topics.event("cam0", type_), payload)  # delivered twice
    station = _gateway(secure_broker, tmp_path, station=_station(tmp_path))
    station.start()
    try:

        def stored() -> int:
            with RecordReader(tmp_path / "station.sqlite3") as reader:
                return reader.count_fixes("collar-3", 0) + len(reader.latest_captures())

        _wait(lambda: stored() >= 12, "the backlog in the record")
        time.sleep(0.5)
        status = station.hub.status()
    finally:
        relay.close()
        camera.close()
        station.stop()
    with RecordReader(tmp_path / "station.sqlite3") as reader:
        assert reader.count_fixes("collar-3", 0) == 11
        capture = reader.capture("ev-1")
        assert capture is not None and capture["stills"] == 2 and capture["best_image_id"] == "img-2"
        assert [i["id"] for i in capture["images"]] == ["img-1", "img-2"] and capture["clock"] == "unsynced"
        assert reader.thumbnail("ev-1") == buf.getvalue()
    # `uncia status -c gateway.toml --json` reads the same from the record while the gateway is stopped
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'[unit]\nid = "{STATION}"\nsite = "{SITE}"\n[station]\nrecord = "{tmp_path / "station.sqlite3"}"\nweb = false\n'
    )
    assert main(["status", "-c", str(config), "--json"]) == 0
    offline = json.loads(capsys.readouterr().out)
    assert {c["collar"] for c in offline["collars"]} == {"collar-3"}
    assert {u["unit"]: u["state"] for u in offline["units"]}[STATION] == "offline"  # the station is stopped
    assert offline["captures"][0]["event_id"] == "ev-1"
    collars = {c["collar"]: c for c in status["collars"]}
    assert collars["collar-3"]["battery_percent"] == 80.0 and collars["collar-3"]["via"] == "relay-02/lora0"
    assert (
        status["captures"][0]["event_id"] == "ev-1"
        and status["captures"][0]["thumbnail"] == "/api/thumbnail/ev-1"
    )


def test_commands_round_trip_with_acl_permitted_identities(secure_broker, tmp_path):
    station = _gateway(secure_broker, tmp_path, station=_station(tmp_path))
    unit = _gateway(secure_broker, tmp_path, unit="relay-02")
    staff = Client(secure_broker, "staff", f"uncia/{SITE}/{STATION}/station/command/+/response")
    station.start()
    unit.start()
    try:
        _wait(lambda: station.hub.connected and unit.relay.online, "station and unit online")
        base = f"uncia/{SITE}/{STATION}/station/command"
        staff.publish(f"{base}/ping", json.dumps({"id": "staff-1", "unit": "relay-02"}).encode())
        staff.publish(f"{base}/config", json.dumps({"id": "staff-2", "unit": "relay-02"}).encode())
        staff.publish(
            f"{base}/ping", json.dumps({"id": "staff-3", "unit": "nobody-here", "timeout": 1}).encode()
        )
        staff.publish(f"{base}/reboot", json.dumps({"id": "staff-4", "unit": "relay-02"}).encode())
        staff.publish(f"{base}/status", json.dumps({"id": "staff-5"}).encode())

        def answers() -> dict[str, dict]:
            station.hub.commands.tick()
            return {b["id"]: b for t, p in list(staff.messages) for b in [json.loads(p)["data"]]}

        _wait(
            lambda: {"staff-1", "staff-2", "staff-3", "staff-4", "staff-5"} <= set(answers()), "five answers"
        )
        got = answers()
        # Staff may not talk to a unit directly: the broker refuses it (Mosquitto 2 even drops the
        # connection), and the unit never hears it.
        staff.client.publish(f"uncia/{SITE}/relay-02/unit/command/ping", b'{"id":"direct"}', qos=1)
        time.sleep(1.0)
    finally:
        staff.close()
        unit.stop()
        station.stop()
    assert got["staff-1"]["status"] == "ok" and got["staff-1"]["response"]["message"] == "pong"
    assert got["staff-1"]["unit"] == "relay-02" and got["staff-1"]["response"]["role"] == "gateway"
    assert got["staff-2"]["response"]["config"]["unit"]["id"] == "relay-02"
    assert got["staff-3"]["status"] == "timeout" and "nobody-here" in got["staff-3"]["message"]
    assert got["staff-4"]["status"] == "bad_request" and "reboot" in got["staff-4"]["message"]
    assert got["staff-5"]["status"] == "ok" and got["staff-5"]["station"]["unit"] == STATION
    assert "direct" not in got
    assert unit.commands.counters["requests"] == 2  # only the two the station forwarded


def test_coarse_feed_hides_exact_positions_from_dashboards(secure_broker, tmp_path):
    station = _gateway(secure_broker, tmp_path, station=_station(tmp_path, coarse_precision_m=1000.0))
    dash = Client(secure_broker, "dash", "uncia-shared/#", "uncia/#")
    relay = Client(secure_broker, "relay-02")
    station.start()
    try:
        _wait(lambda: station.hub.connected, "the hub")
        Collar(relay, "relay-02", "collar-7").fix(datetime.now(UTC), 38.812345, 105.987654)
        _wait(lambda: any(t.startswith("uncia-shared/") for t, _ in dash.messages), "the coarse fix")
        time.sleep(0.5)
    finally:
        dash.close()
        relay.close()
        station.stop()
    assert all(t.startswith("uncia-shared/") for t, _ in dash.messages), "a dashboard read an exact position"
    topic, payload = dash.messages[0]
    body = json.loads(payload)
    assert topic == f"uncia-shared/{SITE}/collar-7/fix"
    assert (body["lat"], body["lon"]) == coarse(38.812345, 105.987654, 1000.0)
    assert abs(body["lat"] - 38.812345) < 0.01 and body["time"].endswith(":00:00.000Z")


def test_coarse_grid_never_moves_a_point_more_than_one_cell():
    for lat, lon in ((38.812345, 105.987654), (-45.0, 170.0), (0.0, 0.0), (70.1, -20.3)):
        clat, clon = coarse(lat, lon, 1000.0)
        assert abs(clat - lat) * 111_320 <= 500.1
        assert (
            abs(clon - lon) * 111_320 * max(0.01, __import__("math").cos(__import__("math").radians(lat)))
            <= 500.1
        )


def test_a_fix_heard_by_the_station_reaches_earthranger(secure_broker, tmp_path):
    from simulators.earthranger import EarthRangerServer

    token = tmp_path / "er.token"
    token.write_text("tok-5e1f\n")
    token.chmod(0o600)
    with EarthRangerServer(token="tok-5e1f") as server:
        raw = {
            "unit": {"id": STATION, "site": SITE},
            "mqtt": {
                "host": secure_broker.host,
                "port": secure_broker.port,
                "username": STATION,
                "password_file": str(_secret(tmp_path, STATION)),
            },
            "outbox": {"path": str(tmp_path / "outbox.sqlite3")},
            "health": {"interval": 3600},
            "station": _station(tmp_path),
            "uplink": {
                "state": str(tmp_path / "uplink.sqlite3"),
                "earthranger": {
                    "url": server.url,
                    "token_file": str(token),
                    "provider_key": "uncia-helan",
                    "interval_s": 30,
                },
            },
        }
        station = Gateway(parse_config(raw), clock_source=lambda: ClockSource.NETWORK)
        relay = Client(secure_broker, "relay-02")
        station.start()
        try:
            _wait(lambda: station.hub.connected, "the hub")
            Collar(relay, "relay-02", "collar-4").fix(datetime.now(UTC), 38.84, 105.99)
            # the hub wakes the uplink when it stores a fix: no waiting for the 30 s interval
            assert server.wait_for(lambda s: len(s.observations) == 1, timeout=15)
            assert "uplinks" in station.health()
            # staff see it: the gateway's first health report (2 s after start) carries the uplinks
            _wait(
                lambda: "earthranger" in station.hub.status()["station"]["uplinks"],
                "the uplink in the status",
            )
        finally:
            relay.close()
            station.stop()


def test_a_taken_web_port_stops_the_gateway_cleanly_with_words(secure_broker, tmp_path):
    import socket
    import threading

    from gateway.station.web import WebError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        before = threading.active_count()
        station = _gateway(
            secure_broker,
            tmp_path,
            station={**_station(tmp_path), "web": True, "web_host": "127.0.0.1", "web_port": port},
        )
        with pytest.raises(WebError, match="web_port"):
            station.start()
    assert not station.relay.alive() and not station.hub.alive()
    _wait(lambda: threading.active_count() <= before, "the gateway's threads to end", timeout=10)


def test_the_staff_page_with_a_password_refuses_without_it(secure_broker, tmp_path):
    import urllib.error
    import urllib.request

    secret = tmp_path / "web.password"
    secret.write_text("snow-7-leopard\n")
    secret.chmod(0o600)
    station = _gateway(
        secure_broker,
        tmp_path,
        station={
            **_station(tmp_path),
            "web": True,
            "web_host": "127.0.0.1",
            "web_port": 0,
            "web_password_file": str(secret),
        },
    )
    station.start()
    try:
        url = f"http://127.0.0.1:{station.web.port}/api/status"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=10)
        assert refused.value.code == 401 and "Basic" in refused.value.headers["WWW-Authenticate"]
        wrong = urllib.request.Request(
            url, headers={"Authorization": "Basic " + base64.b64encode(b"staff:guess").decode()}
        )
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(wrong, timeout=10)
        right = urllib.request.Request(
            url, headers={"Authorization": "Basic " + base64.b64encode(b"staff:snow-7-leopard").decode()}
        )
        with urllib.request.urlopen(right, timeout=10) as reply:
            assert json.loads(reply.read())["station"]["unit"] == STATION
    finally:
        station.stop()


def test_collar_fixes_relayed_by_a_camera_unit_count_but_its_own_gps_does_not(secure_broker, tmp_path):
    station = _gateway(secure_broker, tmp_path, station=_station(tmp_path))
    camera = Client(secure_broker, "cam-01")
    watcher = Client(secure_broker, "staff", f"uncia/{SITE}/{STATION}/station/event/alert")
    station.start()
    try:
        _wait(lambda: station.hub.connected, "the hub")
        now = datetime.now(UTC)
        health = {"camera": "cam0", "state": "ok", "reasons": [], "position": {"lat": 38.86, "lon": 105.97}}
        camera.publish(
            Topics(SITE, "cam-01").state("cam0", "health"),
            Envelope("cam-01").encode(
                "cam0-health", 1, "camera_health", health, time=now, received=now, clock=ClockSource.GPS
            ),
        )
        Collar(camera, "cam-01", "gps").fix(now, 38.9, 106.5)  # the unit's own GPS, east of the reserve
        Collar(camera, "cam-01", "collar-33").fix(now, 38.9, 106.5)  # a collar it heard, same place
        _wait(
            lambda: any(b["key"] == "geofence_exit:collar-33" for b in watcher.bodies("/alert")),
            "the collar's alert",
        )
        time.sleep(0.5)
    finally:
        camera.close()
        watcher.close()
        station.stop()
    keys = {b["key"] for b in watcher.bodies("/alert")}
    assert "geofence_exit:cam-01/gps" not in keys


def test_the_record_misses_nothing_across_a_broker_restart(secure_broker, tmp_path):
    """Fixes published while the station broker restarts reach the record exactly once: the hub's
    persistent session, acknowledged only after commit, and the publishers' QoS 1 resends."""
    station = _gateway(secure_broker, tmp_path, station=_station(tmp_path))
    station.start()
    relay = Client(secure_broker, "relay-02")
    relay.client.reconnect_delay_set(0.1, 0.5)
    collar = Collar(relay, "relay-02", "collar-6")
    now = datetime.now(UTC).replace(microsecond=0)
    sent = 0
    try:
        _wait(lambda: station.hub.connected, "the hub")
        for i in range(40):
            collar.fix(now - timedelta(minutes=200 - i), 38.85 + i * 1e-4, 105.98)
            sent += 1
        secure_broker.stop()
        secure_broker.start()
        _wait(lambda: station.hub.connected and relay.client.is_connected(), "both back after the restart")
        for i in range(40, 80):
            collar.fix(now - timedelta(minutes=200 - i), 38.85 + i * 1e-4, 105.98)
            sent += 1

        def stored() -> int:
            with RecordReader(tmp_path / "station.sqlite3") as reader:
                return reader.count_fixes("collar-6", 0)

        _wait(lambda: stored() >= sent, f"{sent} fixes in the record")
        time.sleep(0.5)
        assert stored() == sent
    finally:
        relay.close()
        station.stop()


def test_a_full_record_keeps_messages_at_the_broker_and_a_bad_one_never_stalls_the_hub(
    secure_broker, tmp_path, caplog
):
    station = _gateway(secure_broker, tmp_path, station=_station(tmp_path))
    relay = Client(secure_broker, "relay-02")
    camera = Client(secure_broker, "cam-01")
    collar = Collar(relay, "relay-02", "collar-2")
    now = datetime.now(UTC).replace(microsecond=0)
    station.start()
    hub = station.hub

    def stored() -> int:
        with RecordReader(tmp_path / "station.sqlite3") as reader:
            return reader.count_fixes("collar-2", 0)

    try:
        _wait(lambda: hub.connected, "the hub")
        collar.fix(now - timedelta(minutes=30), 38.85, 105.98)
        _wait(lambda: stored() == 1, "the first fix")
        # The card is full: SQLite refuses to grow the file.
        pages = hub.record._db.execute("PRAGMA page_count").fetchone()[0]
        hub.record._db.execute(f"PRAGMA max_page_count = {pages}")
        for i in range(1, 60):
            collar.fix(now - timedelta(minutes=30 - i * 0.1), 38.85 + i * 1e-4, 105.98)
        _wait(lambda: "cannot be written" in caplog.text, "the hub to say the record is full")
        full_at = stored()
        time.sleep(1.0)
        assert stored() == full_at < 60  # what did not fit is not acknowledged: the broker keeps it
        hub.record._db.execute("PRAGMA max_page_count = 1073741823")  # space again
        _wait(lambda: stored() == 60, "every fix once the card has room")
        # A message the hub cannot handle (an event id that is not a string) is skipped, logged, and
        # the fixes around it are stored.
        envelope = Envelope("cam-01")
        bad = {
            "event_id": ["not", "a", "string"],
            "phase": "start",
            "camera": "cam0",
            "start": "2026-11-25T03:00:00Z",
        }
        camera.publish(
            Topics(SITE, "cam-01").event("cam0", "capture"),
            envelope.encode("cam0", 1, "capture", bad, time=now, received=now, clock=ClockSource.GPS),
        )
        collar.fix(now, 38.86, 105.98)
        _wait(lambda: stored() == 61, "the fix after the bad message")
    finally:
        relay.close()
        camera.close()
        station.stop()
    assert hub.counters.get("dropped_bad", 0) == 1, (hub.counters, dict(hub.ingest.counts))


@pytest.mark.parametrize("lat, lon", [(95.0, 105.0), (38.0, 181.0), (float("nan"), 105.0)])
def test_a_fix_that_is_not_a_position_never_enters_the_record(lat, lon):
    from gateway.station.record import FixRow

    with pytest.raises(ValueError, match="not a position"):
        FixRow.from_message(
            "relay-02", "m1", "collar-1", 1, {"time": "2026-11-25T00:00:00Z", "lat": lat, "lon": lon}
        )


def test_staff_ask_the_station_for_a_full_image_from_a_running_camera(secure_broker, tmp_path):
    """fetch_image: staff -> station -> camera unit (chunked, verified) -> the station's disk, with
    every identity as the ACL allows; the file is the camera's own, byte for byte."""
    import hashlib
    import random

    from gpiozero.pins.mock import MockFactory

    from edge.camera.agent import CameraUnit
    from edge.camera.simulated import SimulatedCamera

    station = _gateway(secure_broker, tmp_path, station=_station(tmp_path))
    camera_config = parse_config(
        {
            "unit": {"id": "cam-01", "site": SITE, "role": "camera"},
            "mqtt": {
                "host": secure_broker.host,
                "port": secure_broker.port,
                "username": "cam-01",
                "password_file": str(_secret(tmp_path, "cam-01")),
            },
            "outbox": {"path": str(tmp_path / "cam-outbox.sqlite3")},
            "health": {"interval": 3600},
            "camera": {
                "lat": 38.86,
                "lon": 105.97,
                "backend": "simulated",
                "main_width": 640,
                "main_height": 360,
                "max_burst": 1,
                "image_dir": str(tmp_path / "cam-images"),
            },
        }
    )
    clock = lambda: datetime.now(UTC)  # noqa: E731
    sim = SimulatedCamera(clock, random.Random(2), main=(640, 360), paced=True)
    camera = CameraUnit(camera_config, sim, pin_factory=MockFactory(), clock=clock, rng=random.Random(3))
    staff = Client(secure_broker, "staff", f"uncia/{SITE}/{STATION}/station/command/+/response")
    station.start()
    camera.start()
    try:
        _wait(lambda: station.hub.connected and camera.relay.online, "station and camera online")
        camera.trigger()
        _wait(lambda: len(camera.completed) == 1, "the picture")
        image_id = camera.completed[0].best.image_id

        def thumbnail_at_station() -> bool:
            with RecordReader(tmp_path / "station.sqlite3") as reader:
                return reader.thumbnail(camera.completed[0].event_id) is not None

        _wait(thumbnail_at_station, "the thumbnail at the station")
        staff.publish(
            f"uncia/{SITE}/{STATION}/station/command/fetch_image",
            json.dumps({"id": "f1", "unit": "cam-01", "image": image_id}).encode(),
        )
        _wait(lambda: staff.bodies("/fetch_image/response"), "the answer", timeout=60)
        answer = staff.bodies("/fetch_image/response")[0]
    finally:
        staff.close()
        camera.stop()
        station.stop()
    assert answer["id"] == "f1" and answer["status"] == "ok", answer
    assert answer["url"] == f"/api/image/cam-01/{image_id}"
    with RecordReader(tmp_path / "station.sqlite3") as reader:
        fetched = reader.image_path("cam-01", image_id)
    original = camera.find_image(image_id)
    assert fetched is not None and original is not None
    assert hashlib.sha256(fetched.read_bytes()).digest() == hashlib.sha256(original.read_bytes()).digest()
