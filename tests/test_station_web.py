"""The staff web page (gateway/station/web.py and static/): a real StationHub on a real broker, the page
served on a free port, real uncia messages published with paho, and the page driven in Debian's
chromium through Playwright.

The API tests read the JSON routes and the event stream with the standard library; the browser test
checks that what staff must see (the reserve on the map, a new fix, a new capture with its thumbnail,
an alert) appears on an already open page without a reload.
"""

from __future__ import annotations

import http.client
import io
import json
import re
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from PIL import Image, ImageDraw

from edge.broker import Broker
from edge.camera.events import CaptureEvent, SavedImage, thumbnail_body
from edge.camera.exif import image_unique_id
from edge.config import parse_config
from edge.fix import ClockSource, Fix
from edge.messages import Envelope
from edge.outbox import Outbox
from gateway.station.hub import StationHub
from gateway.station.web import StationWeb, boundary_layers

ROOT = Path(__file__).resolve().parents[1]
BOUNDARY = ROOT / "deploy" / "reserve.example.geojson"
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = Path("/tmp/uncia-station-page.png")
SITE, STATION = "helan", "gw-01"
INSIDE = (38.85, 105.98)  # well inside the example reserve
OUTSIDE = (38.60, 106.30)  # east of it, on the desert foot
WAIT_S = 15.0


# -- a simulated site: real envelopes published to the broker ---------------------------------------


def jpeg(width: int, height: int, label: str, night: bool = True) -> bytes:
    """A real JPEG: a grey night-time (or a daylight) scene with a label."""
    image = Image.new("RGB", (width, height), (40, 44, 40) if night else (170, 160, 120))
    draw = ImageDraw.Draw(image)
    draw.ellipse((width * 0.3, height * 0.45, width * 0.7, height * 0.8), fill=(150, 150, 140))
    draw.text((8, 8), label, fill=(230, 230, 230))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=70)
    return out.getvalue()


@dataclass
class Site:
    """Publishes what the units of a site say, as they say it (envelopes, topics, QoS 1)."""

    broker: Broker
    client: mqtt.Client = field(init=False)
    envelopes: dict[str, Envelope] = field(default_factory=dict)
    seqs: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-site")
        self.client.connect(self.broker.host, self.broker.port)
        self.client.loop_start()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _seq(self, key: str) -> int:
        self.seqs[key] = self.seqs.get(key, 0) + 1
        return self.seqs[key]

    def _envelope(self, unit: str) -> Envelope:
        return self.envelopes.setdefault(unit, Envelope(unit))

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(WAIT_S)

    def fix(self, collar: str, lat: float, lon: float, when: datetime, **radio: Any) -> None:
        """A collar fix heard over LoRa by the gateway (as `edge.fix_source.publish_fix` sends it)."""
        envelope, seq = self._envelope(STATION), self._seq(collar)
        fix = Fix(time=when, lat=lat, lon=lon, quality=1, sats=7, hdop=1.2)
        if radio:
            data = {**fix.to_dict(), "collar": int(collar.split("-")[-1]), "modem": "lora0", **radio}
            payload = envelope.encode(
                collar, seq, "fix", data, time=data["time"], received=when, clock=ClockSource.GPS
            )
        else:
            payload = envelope.fix(collar, seq, fix, received=when, clock=ClockSource.GPS)
        self.publish(f"uncia/{SITE}/{STATION}/{collar}/event/fix", payload)

    def availability(self, unit: str, online: bool = True) -> None:
        self.publish(
            f"uncia/{SITE}/{unit}/unit/state/availability", b"online" if online else b"offline", retain=True
        )

    def unit_health(self, unit: str, *, role: str, software: str = "0.5.0") -> None:
        body = {
            "connected": True,
            "role": role,
            "software": software,
            "config_hash": "3f9c0a1b2c4d5e6f",
            "outbox": {"waiting": 0},
            "agent": {"clock": "ntp"},
        }
        now = datetime.now(UTC)
        payload = self._envelope(unit).encode(
            "unit",
            self._seq(f"{unit}/unit"),
            "health",
            body,
            time=now,
            received=now,
            clock=ClockSource.NETWORK,
        )
        self.publish(f"uncia/{SITE}/{unit}/unit/state/health", payload, retain=True)

    def camera_health(self, unit: str, lat: float, lon: float, *, used_percent: float = 41.0) -> None:
        total = 64_000_000_000
        body = {
            "camera": "cam0",
            "state": "ok",
            "degraded": False,
            "reasons": [],
            "disk": {
                "free_bytes": int(total * (1 - used_percent / 100)),
                "total_bytes": total,
                "used_percent": used_percent,
            },
            "position": {"lat": lat, "lon": lon, "alt": 2210.0},
            "battery_v": 3.92,
        }
        now = datetime.now(UTC)
        payload = self._envelope(unit).encode(
            "cam0-health",
            self._seq(f"{unit}/health"),
            "camera_health",
            body,
            time=now,
            received=now,
            clock=ClockSource.GPS,
        )
        self.publish(f"uncia/{SITE}/{unit}/cam0/state/health", payload, retain=True)

    def capture(
        self, unit: str, event_id: str, when: datetime, *, stills: int = 3, night: bool = True
    ) -> str:
        """A whole camera event: start, one update per still, end, then the best still's thumbnail
        (bodies from `edge.camera.events`, as the camera unit builds them). Returns the best image id."""
        event = CaptureEvent(
            event_id, unit, "cam0", "pir", when, ClockSource.GPS, night, pre_trigger_frames=0
        )
        envelope = self._envelope(unit)
        topic = f"uncia/{SITE}/{unit}/cam0/event"

        def send(type_: str, data: dict[str, Any], moment: datetime) -> None:
            payload = envelope.encode(
                "cam0",
                self._seq(f"{unit}/cam0"),
                type_,
                data,
                time=moment,
                received=moment,
                clock=ClockSource.GPS,
            )
            self.publish(f"{topic}/{type_}", payload)

        send("capture", event.body("start"), when)
        for index in range(stills):
            moment = when + timedelta(seconds=0.8 * (index + 1))
            image = SavedImage(
                image_unique_id(unit, "cam0", event_id, index),
                f"{when:%Y-%m-%d}/{event_id}-{index:03d}.jpg",
                index,
                "main",
                moment,
                2028,
                1520,
                812_000,
            )
            event.saved(image)
            send("capture", event.body("update", image), moment)
        event.best = event.stills[1 if stills > 1 else 0]
        event.end(when + timedelta(seconds=4), "burst_done")
        send("capture", event.body("end"), when + timedelta(seconds=4))
        small = jpeg(320, 240, f"{unit} {event_id}", night)
        send("thumbnail", thumbnail_body(event, event.best, small, (320, 240)), event.best.time)
        return event.best.image_id


# -- the station under test -------------------------------------------------------------------------


@dataclass
class Station:
    hub: StationHub
    web: StationWeb
    site: Site
    outbox: Outbox

    def get(self, path: str) -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(self.web.url.rstrip("/") + path)
        try:
            with urllib.request.urlopen(request, timeout=WAIT_S) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def json(self, path: str) -> Any:
        status, _headers, body = self.get(path)
        assert status == 200, body
        return json.loads(body)

    def post(self, path: str, body: Any, content_type: str = "application/json") -> tuple[int, Any]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        request = urllib.request.Request(
            self.web.url.rstrip("/") + path, data=data, headers={"Content-Type": content_type}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=WAIT_S) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def wait_status(self, predicate: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        deadline = time.monotonic() + WAIT_S
        while True:
            status = self.json("/api/status")
            if predicate(status):
                return status
            if time.monotonic() > deadline:
                raise AssertionError(f"the station never showed {what}; status: {json.dumps(status)[:800]}")
            time.sleep(0.05)


def make_station(broker: Broker, tmp: Path, **web_options: Any) -> Station:
    config = parse_config(
        {
            "unit": {"id": STATION, "site": SITE, "role": "gateway"},
            "mqtt": {"host": broker.host, "port": broker.port},
            "outbox": {"path": str(tmp / "outbox.sqlite3")},
            "station": {
                "record": str(tmp / "station.sqlite3"),
                "image_dir": str(tmp / "images"),
                "boundary": str(BOUNDARY),
                "web_host": "127.0.0.1",
                "web_port": 8080,
            },
        }
    )
    outbox = Outbox(config.outbox.path)
    hub = StationHub(config, outbox, Envelope(STATION), clock_source=lambda: ClockSource.NETWORK)
    hub.start()
    web = StationWeb(hub, "127.0.0.1", 0, **web_options)
    web.start()
    site = Site(broker)
    station = Station(hub, web, site, outbox)
    # The hub subscribes once connected: the first unit heard proves it listens.
    site.availability(STATION)
    station.wait_status(lambda s: any(u["unit"] == STATION for u in s["units"]), "the gateway itself")
    return station


@pytest.fixture
def station(broker: Broker, tmp_path: Path) -> Iterator[Station]:
    made = make_station(broker, tmp_path)
    yield made
    made.site.close()
    made.web.stop()
    made.hub.stop()
    made.outbox.close()


class EventStream:
    """Reads ``/api/events`` line by line (server-sent events) with the standard library."""

    def __init__(self, web: StationWeb, path: str = "/api/events") -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=WAIT_S)
        self.conn.request("GET", path, headers={"Accept": "text/event-stream"})
        self.response = self.conn.getresponse()
        assert self.response.status == 200
        assert self.response.getheader("Content-Type", "").startswith("text/event-stream")
        self.lines: list[str] = []

    def next_event(self) -> dict[str, Any]:
        """The next ``data:`` event (comments and ``retry:`` are kept in `lines`)."""
        while True:
            line = self.response.readline()
            if not line:
                raise EOFError("the event stream ended")
            text = line.decode().rstrip("\n")
            self.lines.append(text)
            if text.startswith("data: "):
                return json.loads(text[6:])

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            event = self.next_event()
            if predicate(event):
                return event
        raise AssertionError("no matching event on the stream")

    def close(self) -> None:
        self.conn.close()


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


# -- API ----------------------------------------------------------------------------------------------


def test_status_tracks_boundary_thumbnail_and_alerts(station: Station) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    site = station.site
    site.unit_health(STATION, role="gateway")
    site.availability("cam-01")
    site.camera_health("cam-01", 38.86, 105.99)
    site.fix("collar-7", *INSIDE, now - timedelta(minutes=20), rssi=-97, snr=6.5, battery=81)
    site.fix("collar-7", 38.851, 105.982, now - timedelta(minutes=10), rssi=-99, snr=5.0, battery=80)
    best = site.capture("cam-01", "20261125T211400Z-3fa2c1", now - timedelta(minutes=5))
    site.fix("collar-3", *OUTSIDE, now - timedelta(minutes=1))

    status = station.wait_status(
        lambda s: len(s["collars"]) == 2 and s["captures"] and s["captures"][0]["end"] and s["alerts"],
        "two collars, a finished capture and an alert",
    )
    collar = next(c for c in status["collars"] if c["collar"] == "collar-7")
    assert collar["last_fix"]["lat"] == 38.851 and collar["battery_percent"] == 80 and collar["rssi"] == -99
    assert collar["via"] == f"{STATION}/lora0" and collar["fixes_24h"] == 2
    cam = next(u for u in status["units"] if u["unit"] == "cam-01")
    assert cam["position"]["lat"] == 38.86 and cam["state"] == "ok" and cam["disk_used_percent"] == 41.0
    capture = status["captures"][0]
    assert capture["best_image_id"] == best and capture["stills"] == 3 and capture["night"] is True
    assert capture["thumbnail"] == "/api/thumbnail/20261125T211400Z-3fa2c1"
    assert [a["key"] for a in status["alerts"]] == ["geofence_exit:collar-3"]

    tracks = station.json("/api/tracks?hours=1")
    assert [p[1:] for p in tracks["collar-7"]] == [[38.85, 105.98], [38.851, 105.982]]
    assert station.json("/api/tracks?hours=0.25") == {
        "collar-3": [tracks["collar-3"][0]],
        "collar-7": [tracks["collar-7"][1]],
    }
    status_code, _h, body = station.get("/api/tracks?hours=-1")
    assert status_code == 400 and "hours" in json.loads(body)["error"]

    boundary = station.json("/api/boundary")
    kinds = [f["properties"]["kind"] for f in boundary["features"]]
    assert kinds[0] == "reserve" and "buffer" in kinds and "village" in kinds
    assert kinds.index("buffer") < kinds.index("village")  # buffers drawn under the places

    code, headers, body = station.get(capture["thumbnail"])
    assert code == 200 and headers["Content-Type"] == "image/jpeg" and body[:3] == b"\xff\xd8\xff"
    assert "max-age" in headers["Cache-Control"]
    again = urllib.request.Request(
        station.web.url + capture["thumbnail"][1:], headers={"If-None-Match": headers["ETag"]}
    )
    with pytest.raises(urllib.error.HTTPError) as not_modified:
        urllib.request.urlopen(again, timeout=WAIT_S)
    assert not_modified.value.code == 304
    code, headers, body = station.get("/api/thumbnail/20261125T000000Z-000000")
    assert code == 404 and "no thumbnail" in json.loads(body)["error"]

    history = station.json("/api/alerts?hours=1")["alerts"]
    assert history[0]["key"] == "geofence_exit:collar-3" and history[0]["cleared"] is None

    code, headers, page = station.get("/")
    assert code == 200 and b'id="map"' in page
    for asset in ("/static/app.js", "/static/style.css", "/static/vendor/leaflet/leaflet.js"):
        assert station.get(asset)[0] == 200, asset


def test_event_stream_sends_status_then_live_fixes_and_lets_go(broker: Broker, tmp_path: Path) -> None:
    station = make_station(broker, tmp_path, keepalive_s=0.3)
    try:
        station.site.fix("collar-7", *INSIDE, datetime.now(UTC) - timedelta(minutes=3))
        station.wait_status(lambda s: s["collars"], "collar-7")
        stream = EventStream(station.web)
        first = stream.next_event()
        assert first["type"] == "status" and first["status"]["collars"][0]["collar"] == "collar-7"
        assert list(first["tracks"]) == ["collar-7"]
        assert "retry: 3000" in stream.lines
        assert station.hub.live.listeners == 1

        when = datetime.now(UTC).replace(microsecond=0)
        station.site.fix("collar-7", 38.852, 105.983, when, rssi=-101, snr=3.5, battery=79)
        event = stream.wait_for(lambda e: e["type"] == "fix")
        assert event["track"] == "collar-7"
        assert (
            event["fix"]["lat"] == 38.852
            and event["fix"]["rssi"] == -101
            and event["fix"]["via"] == f"{STATION}/lora0"
        )
        # nothing new for a while: keep-alive comments hold the line open
        wait_until(lambda: stream.response.readline() == b": keep-alive\n", "a keep-alive comment")

        stream.close()
        wait_until(lambda: station.hub.live.listeners == 0, "the listener to be removed after the page left")
        assert station.web.clients == 0
    finally:
        station.site.close()
        station.web.stop()
        station.hub.stop()
        station.outbox.close()


def test_a_page_that_falls_behind_is_dropped_not_the_hub(broker: Broker, tmp_path: Path) -> None:
    station = make_station(broker, tmp_path, client_queue=5)
    try:
        slow = EventStream(station.web)
        assert slow.next_event()["type"] == "status"
        assert station.hub.live.listeners == 1
        # Hold the web server's loop for a moment (a page stuck on a bad link looks the same to it):
        # the hub keeps publishing, never waiting, and the page's queue overflows.
        loop = station.web._loop
        assert loop is not None
        loop.call_soon_threadsafe(time.sleep, 0.3)
        for i in range(50):
            station.hub.live.publish({"type": "unit", "unit": {"unit": f"cam-{i:02d}", "state": "ok"}})
        wait_until(lambda: station.hub.live.listeners == 0, "the slow page to be dropped")
        assert station.web.counters["dropped_slow"] == 1
        with pytest.raises((EOFError, ConnectionError)):
            for _ in range(100):
                slow.next_event()
        # a fresh connection (what the browser does next) starts again from the whole status
        fresh = EventStream(station.web)
        assert fresh.next_event()["type"] == "status"
        fresh.close()
    finally:
        station.site.close()
        station.web.stop()
        station.hub.stop()
        station.outbox.close()


def test_full_image_from_the_station_disk_and_in_words_when_it_cannot_come(
    station: Station, tmp_path: Path
) -> None:
    picture = tmp_path / "images" / "cam-01" / "0123abcd.jpg"
    picture.parent.mkdir(parents=True)
    picture.write_bytes(jpeg(1014, 760, "full image"))
    station.hub.record.add_image("cam-01", "0123abcd", picture, sha256=None, now=time.time())
    station.hub.record.commit()

    code, headers, body = station.get("/api/image/cam-01/0123abcd")
    assert code == 200 and headers["Content-Type"] == "image/jpeg" and body == picture.read_bytes()
    assert "immutable" in headers["Cache-Control"]

    # No camera unit answers on this broker: the fetch runs out of time and says so.
    code, _headers, body = station.get("/api/image/cam-09/feedbeef?timeout=1")
    assert code == 504 and "cam-09 did not deliver feedbeef" in json.loads(body)["error"]
    code, _headers, body = station.get("/api/image/CAM%20one/x")
    assert code == 400 and "not a unit id" in json.loads(body)["error"]


def test_commands_round_trip_to_a_unit_and_refuse_bad_requests(station: Station) -> None:
    """The page's buttons: POST /api/command/<name> -> station -> unit -> answer, as JSON."""
    unit = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-cam-01")
    envelope = Envelope("cam-01")
    seen: list[dict[str, Any]] = []
    subscribed = threading.Event()

    def answer(client: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        request = json.loads(message.payload)
        seen.append(request)
        now = datetime.now(UTC)
        data = {
            "id": request["id"],
            "status": "ok",
            "message": "capture mode paused",
            "mode": request.get("mode"),
        }
        payload = envelope.encode(
            "unit", len(seen), "capture_mode", data, time=now, received=now, clock="ntp"
        )
        client.publish(message.topic + "/response", payload, qos=1)

    unit.on_message = answer
    unit.on_subscribe = lambda *_a: subscribed.set()
    unit.on_connect = lambda c, *_a: c.subscribe(f"uncia/{SITE}/cam-01/unit/command/capture_mode", qos=1)
    unit.connect(station.site.broker.host, station.site.broker.port)
    unit.loop_start()
    try:
        assert subscribed.wait(WAIT_S)
        code, reply = station.post("/api/command/capture_mode", {"unit": "cam-01", "mode": "paused"})
        assert code == 200, reply
        assert reply["status"] == "ok" and reply["unit"] == "cam-01"
        assert reply["response"]["mode"] == "paused" and reply["response"]["message"] == "capture mode paused"
        assert seen[0]["mode"] == "paused" and "unit" not in seen[0]
    finally:
        unit.disconnect()
        unit.loop_stop()

    assert station.post("/api/command/reboot", {"unit": "cam-01"})[0] == 404
    code, reply = station.post("/api/command/ping", b"unit=cam-01", "application/x-www-form-urlencoded")
    assert code == 415 and "JSON" in reply["error"]
    code, reply = station.post("/api/command/ping", ["cam-01"])
    assert code == 400 and "JSON object" in reply["error"]
    code, reply = station.post("/api/command/ping", {"unit": "Not A Unit"})
    assert code == 400 and reply["status"] == "bad_request"


def test_boundary_layers_buffer_is_the_configured_distance() -> None:
    """The hatched buffer drawn around a village is `conflict_buffer_m` wide (within 1 %)."""
    import shapely
    from shapely.geometry import Point, shape

    from gateway.station.geo import LocalProjection

    layers = boundary_layers(json.loads(BOUNDARY.read_text()), 1000.0)
    assert layers is not None
    village = next(f for f in layers["features"] if f["properties"]["kind"] == "village")
    buffer = next(f for f in layers["features"] if f["properties"].get("of") == village["properties"]["name"])
    assert buffer["properties"]["kind"] == "buffer" and buffer["properties"]["buffer_m"] == 1000.0
    centre = shape(village["geometry"]).centroid
    flat = LocalProjection(lat0=centre.y, lon0=centre.x)
    place = shapely.transform(shape(village["geometry"]), flat.lonlat_to_xy)
    for lon, lat in shape(buffer["geometry"]).exterior.coords:
        assert place.distance(Point(flat.to_xy(lat, lon))) == pytest.approx(1000.0, rel=0.01)
    assert boundary_layers(None, 1000.0) is None


# -- the page in a real browser -------------------------------------------------------------------------


CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def test_page_shows_the_site_and_updates_live_in_chromium(station: Station) -> None:
    if not CHROMIUM.exists() or shutil.which(str(CHROMIUM)) is None:
        pytest.skip("Debian's chromium is not installed (/usr/bin/chromium); CI installs it with apt")
    from playwright.sync_api import expect, sync_playwright

    site = station.site
    now = datetime.now(UTC).replace(microsecond=0)
    site.unit_health(STATION, role="gateway")
    site.availability("cam-01")
    site.unit_health("cam-01", role="camera")
    site.camera_health("cam-01", 38.88, 106.02)
    site.availability("cam-02", online=False)
    site.camera_health("cam-02", 38.74, 105.90, used_percent=93.5)
    for i in range(12):
        site.fix(
            "collar-7",
            38.80 + 0.004 * i,
            105.95 + 0.003 * i,
            now - timedelta(minutes=60 - 5 * i),
            rssi=-95 - i,
            snr=7.0,
            battery=82,
        )
        site.fix(
            "collar-12",
            38.95 - 0.003 * i,
            106.05 + 0.002 * i,
            now - timedelta(minutes=62 - 5 * i),
            rssi=-104,
            snr=1.5,
            battery=64,
        )
    first_image = site.capture("cam-01", "20261125T200100Z-aa0001", now - timedelta(minutes=30))
    station.wait_status(
        lambda s: (
            len(s["collars"]) == 2 and s["captures"] and s["captures"][0]["end"] and len(s["units"]) == 3
        ),
        "the site before the page opens",
    )
    full = Path(station.hub.settings.image_dir) / "cam-01" / f"{first_image}.jpg"
    full.parent.mkdir(parents=True, exist_ok=True)
    full.write_bytes(jpeg(1014, 760, "cam-01 full image", night=True))
    station.hub.record.add_image("cam-01", first_image, full, sha256=None, now=time.time())
    station.hub.record.commit()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(station.web.url)
            expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=WAIT_S * 1000)
            expect(page.locator("#map path.zone-reserve")).to_have_count(1)
            expect(page.locator("#map path.zone-buffer")).not_to_have_count(0)
            expect(page.locator('tr[data-unit="cam-02"]')).to_have_attribute("data-state", "offline")
            expect(page.locator('tr[data-unit="cam-02"]')).to_contain_text("offline")
            expect(page.locator('[data-camera-marker="cam-01"]')).to_have_count(1)
            row = page.locator('tr[data-collar="collar-7"]')
            expect(row).to_be_visible()
            marker = page.locator('[data-collar-marker="collar-7"]')
            before = marker.get_attribute("data-lat")
            # cam-02's card is 93.5 % full: an alert already active when the page opened
            expect(page.locator('[data-alert-key="disk_full:cam-02"]')).to_have_attribute(
                "data-severity", "warning"
            )

            # A new fix, published after the page loaded: the row and the marker move.
            fix_time = datetime.now(UTC).replace(microsecond=0)
            site.fix("collar-7", 38.8512, 105.9861, fix_time, rssi=-93, snr=8.0, battery=81)
            expect(marker).to_have_attribute("data-lat", "38.8512", timeout=WAIT_S * 1000)
            assert before != "38.8512"
            expect(row).to_have_attribute("data-fix-time", fix_time.strftime("%Y-%m-%dT%H:%M:%S.000Z"))
            expect(row.locator(".fix-time")).to_contain_text("just now")

            # A new capture: its card appears first, with its thumbnail once that arrives.
            site.capture(
                "cam-01", "20261125T211400Z-bb0002", datetime.now(UTC) - timedelta(seconds=5), night=False
            )
            card = page.locator('[data-event-id="20261125T211400Z-bb0002"]')
            expect(card).to_have_attribute("data-thumb", "ok", timeout=WAIT_S * 1000)
            expect(card).to_contain_text("3 stills")
            expect(card).to_contain_text("day")
            assert (
                page.locator("#captures .capture").first.get_attribute("data-event-id")
                == "20261125T211400Z-bb0002"
            )

            # A fix outside the reserve: the geofence alert shows at the top, in words.
            site.fix("collar-7", *OUTSIDE, datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1))
            alert = page.locator('[data-alert-key="geofence_exit:collar-7"]')
            expect(alert).to_be_visible(timeout=WAIT_S * 1000)
            expect(alert).to_contain_text("outside")
            expect(alert).to_have_attribute("data-severity", "critical")
            assert page.locator("#alerts .alert").first.get_attribute("data-severity") == "critical"
            expect(alert).to_have_class(re.compile(r"\bnew\b"))  # it flashes

            # The full image of the first capture (already on the station's disk) in the lightbox.
            page.locator('[data-event-id="20261125T200100Z-aa0001"]').click()
            expect(page.locator("#lightbox-status")).to_have_attribute(
                "data-state", "ok", timeout=WAIT_S * 1000
            )
            assert page.locator("#lightbox-image").evaluate("img => img.naturalWidth") == 1014
            page.keyboard.press("Escape")
            expect(page.locator("#lightbox")).not_to_be_visible()
            page.screenshot(path=str(SCREENSHOT), full_page=True)

            # Back inside: the alert is marked cleared (in words) and fades out.
            site.fix("collar-7", *INSIDE, datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2))
            expect(alert).to_have_class(re.compile(r"\bcleared\b"), timeout=WAIT_S * 1000)
            expect(alert).to_contain_text("CLEARED")
            assert errors == []
        finally:
            browser.close()
