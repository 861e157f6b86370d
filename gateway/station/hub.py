"""The station hub: the gateway's second job, beside relaying its own sources.

It listens to the whole site on the station broker (``uncia/<site>/#``) with a persistent session, so
nothing sent while the hub was restarting is missed, and:

- keeps the station record (`gateway.station.record`): fixes, captures, thumbnails, the unit registry,
  alerts; acknowledges a message to the broker only after it is committed there;
- runs the alert rules (`gateway.station.alerts`) and publishes each alert raised or cleared on
  ``uncia/<site>/<gateway>/station/event/alert`` and the list of active ones, retained, on
  ``…/station/state/alerts`` (both through the gateway's outbox: alerts survive an outage too);
- publishes the coarsened position feed ``uncia-shared/<site>/<track>/fix`` (positions rounded to
  ``coarse_precision_m``) for dashboards shared beyond the station;
- answers staff commands (`gateway.station.commands`) and fetches full images from camera units;
- feeds the live view (`gateway.station.live`) of the staff web page.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge.config import UnitConfig
from edge.messages import Envelope, MessageError, decode
from edge.outbox import Outbox, Priority
from edge.relay import apply_login
from edge.topics import Topics
from gateway.image_fetch import ImageFetcher
from gateway.station.alerts import Alert, AlertChange, AlertEngine
from gateway.station.commands import CommandBridge
from gateway.station.geofence import Geofence
from gateway.station.ingest import STATION_ENTITY, Ingest
from gateway.station.live import LiveFeed
from gateway.station.record import FixRow, RecordReader, StationRecord, iso
from gateway.station.view import alert_view, status, tracks, unit_view

SHARED_PREFIX = "uncia-shared"
BRIDGE_STATE_FILTER = "$SYS/broker/connection/+/state"  # docs/bridge.md
_BATCH = 500
_TICK_S = 5.0
_PRUNE_S = 3600.0
_EARTH_M_PER_DEG = 111_320.0


def coarse(lat: float, lon: float, precision_m: float) -> tuple[float, float]:
    """Snap a position to the centre of its cell of a ~`precision_m` grid (longitude cells widened
    by 1/cos(lat) so they stay about square); the exact position cannot be recovered from it."""
    dlat = precision_m / _EARTH_M_PER_DEG
    dlon = precision_m / (_EARTH_M_PER_DEG * max(math.cos(math.radians(lat)), 0.01))
    return (
        round((math.floor(lat / dlat) + 0.5) * dlat, 5),
        round((math.floor(lon / dlon) + 0.5) * dlon, 5),
    )


class StationHub:
    """The hub of one gateway. `start()`, `stop()`; `status()`, `tracks()`, `live` for the staff view."""

    def __init__(
        self,
        config: UnitConfig,
        outbox: Outbox,
        envelope: Envelope,
        *,
        clock_source: Callable[[], Any],
        wall: Callable[[], float] = time.time,
        log: logging.Logger | None = None,
    ) -> None:
        if config.station is None:
            raise ValueError("the station hub needs a [station] section in the gateway config")
        self.config = config
        self.settings = config.station
        self.site = config.unit.site
        self.unit = config.unit.id
        self.topics = Topics(self.site, self.unit)
        self.outbox = outbox
        self.envelope = envelope
        self.clock_source = clock_source
        self.wall = wall
        self.log = log or logging.getLogger("uncia.station")
        self.record = StationRecord(self.settings.record, log=self.log.getChild("record"))
        geofence = Geofence.from_settings(self.settings)
        self.geofence = geofence
        self.engine = AlertEngine(self.settings, geofence)
        self.ingest = Ingest(self.record, self.engine, site=self.site, station=self.unit, log=self.log)
        self.live = LiveFeed(self.log.getChild("live"))
        self.alert_topic = self.topics.event(STATION_ENTITY, "alert")
        self.alerts_state_topic = self.topics.state(STATION_ENTITY, "alerts")
        self.commands = CommandBridge(
            self.site,
            self.unit,
            send=self._send_live,
            reply=self._reply,
            local={
                "fetch_image": self._fetch_image_command,
                "status": lambda _f: {"message": "status", **self.status()},
            },
            log=self.log.getChild("commands"),
        )
        self.bridges: dict[str, dict[str, Any]] = {}  # the station broker's bridges: up, since
        self._queue: queue.SimpleQueue[mqtt.MQTTMessage | None] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._connected = threading.Event()
        client_id = config.mqtt.client_id or f"uncia-{self.site}-{self.unit}"
        self.client = self._client(f"{client_id}-hub", manual_ack=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *_a: self._connected.clear()
        self.client.on_message = self._on_message
        # The image fetcher gets a client of its own: chunks are acknowledged as they arrive, while the
        # hub's client acknowledges only what the record has committed.
        self.fetch_client = self._client(f"{client_id}-images", manual_ack=False)
        self.fetcher = ImageFetcher(
            self.fetch_client, self.site, self.settings.image_dir, log=self.log.getChild("images")
        )
        # Hooks for the uplinks (gateway/uplink): new data stored; a critical alert raised.
        self.on_new_data: Callable[[], None] | None = None
        self.on_critical_alert: Callable[[], None] | None = None
        self._critical_pending = False
        self.counters = {"messages": 0, "batches": 0, "alerts_raised": 0, "alerts_cleared": 0, "coarse": 0}

    def _client(self, client_id: str, *, manual_ack: bool) -> mqtt.Client:
        settings = self.config.mqtt
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False, manual_ack=manual_ack
        )
        apply_login(client, settings)
        client.reconnect_delay_set(0.5, 30)
        return client

    # -- life cycle --------------------------------------------------------------------------------
    def start(self) -> None:
        self._restore()
        s = self.config.mqtt
        for client in (self.client, self.fetch_client):
            client.connect_async(s.host, s.port, keepalive=s.keepalive)
            client.loop_start()
        for name, target in (("station-ingest", self._ingest_loop), ("station-tick", self._tick_loop)):
            thread = threading.Thread(target=target, name=name, daemon=True)
            self._threads.append(thread)
            thread.start()
        self.log.info(
            "station hub %s/%s: record %s, %s, alerts on %s",
            self.site,
            self.unit,
            self.settings.record,
            f"geofence {self.settings.boundary}" if self.geofence else "no geofence (station.boundary unset)",
            self.alert_topic,
        )

    def stop(self) -> None:
        self._stop.set()
        self._queue.put(None)
        for thread in self._threads:
            thread.join(10)
        for client in (self.client, self.fetch_client):
            client.disconnect()
            client.loop_stop()
        self.fetcher.close()
        # The gateway's own "offline" would reach the broker after the hub has gone: note it here, so
        # `uncia status -c` on a stopped station says so.
        with contextlib.suppress(Exception):
            self.record.unit_availability(self.unit, False, self.wall())
            self.record.commit()
        self.record.close()

    def alive(self) -> bool:
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def _restore(self) -> None:
        """After a restart: the alerts still active, and the recent fixes and unit states the time rules need."""
        active = [_alert_from_row(row) for row in self.record.active_alerts()]
        self.engine.restore(active)
        now = self.wall()
        window_h = max(self.settings.mortality_h, self.settings.collar_silent_h) + 1.0
        replayed = 0
        for row in self.record.fixes_since(now - window_h * 3600.0):
            # remembered, not judged: an old position must not clear (or raise) what is true now
            self.engine.remember_fix(row.track, _dt(row.time), row.lat, row.lon)
            replayed += 1
        for unit in self.record.select("SELECT unit, online, availability_at, last_seen FROM units"):
            if unit["last_seen"] is not None:
                self._apply(self.engine.unit_seen(unit["unit"], _dt(unit["last_seen"])), now)
            if unit["online"] is not None:
                self._apply(
                    self.engine.unit_availability(
                        unit["unit"], bool(unit["online"]), _dt(unit["availability_at"] or now)
                    ),
                    now,
                )
        self.record.commit()
        if active or replayed:
            self.log.info(
                "station record: %d active alert(s) restored, %d recent fixes replayed", len(active), replayed
            )

    # -- MQTT --------------------------------------------------------------------------------------
    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            self.log.error("station broker refused the hub: %s", reason)
            return
        self._connected.set()
        client.subscribe([(f"uncia/{self.site}/#", 1), (BRIDGE_STATE_FILTER, 1)])

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic.startswith("$SYS/"):
            self._bridge_state(message.topic, bytes(message.payload))
            self._ack(message)
            return
        self._queue.put(message)

    def _bridge_state(self, topic: str, payload: bytes) -> None:
        """``$SYS/broker/connection/<name>/state``: the station broker's bridge to the centre up (1) or down (0)."""
        name = topic.split("/")[3] if topic.count("/") >= 4 else topic
        up = payload.strip() == b"1"
        before = self.bridges.get(name)
        self.bridges[name] = {
            "up": up,
            "since": iso(self.wall()) if before is None or before["up"] != up else before["since"],
        }
        if before is None or before["up"] != up:
            (self.log.info if up else self.log.warning)(
                "bridge %s to the central broker is %s",
                name,
                "up" if up else "DOWN: the centre gets the site's data later",
            )
            self.live.publish({"type": "bridge", "bridge": name, **self.bridges[name]})

    def _ack(self, message: mqtt.MQTTMessage) -> None:
        if message.qos > 0:
            self.client.ack(message.mid, message.qos)

    def _send_live(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1)

    def _reply(self, name: str, data: dict[str, Any]) -> None:
        envelope, clock = self.envelope, self.clock_source()
        now = datetime.fromtimestamp(self.wall(), UTC)
        payload = envelope.encode(STATION_ENTITY, 0, name, data, time=now, received=now, clock=clock)
        self.client.publish(f"{self.topics.base}/{STATION_ENTITY}/command/{name}/response", payload, qos=1)

    # -- the ingest thread -------------------------------------------------------------------------
    def _ingest_loop(self) -> None:
        while not self._stop.is_set():
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            with contextlib.suppress(queue.Empty):
                while len(batch) < _BATCH:
                    item = self._queue.get_nowait()
                    if item is None:
                        self._stop.set()
                        break
                    batch.append(item)
            self._take(batch)

    def _take(self, batch: list[mqtt.MQTTMessage]) -> None:
        """Handle a batch, then acknowledge it. The record cannot be written (disk full, I/O error): keep
        trying, unacknowledged, so the broker keeps the messages. A message the hub itself cannot handle
        (a bug): isolate it, log it with its topic, acknowledge it, so one bad message never stalls the
        station (the broker sends no more than its in-flight window to an unacknowledging client)."""
        wait = 1.0
        complained = False
        while not self._stop.is_set():
            try:
                self._handle_batch(batch)
            except sqlite3.OperationalError as exc:  # full, I/O error, locked: the disk, not the data
                self.record.rollback()
                if not complained:
                    self.log.error(
                        "the station record %s cannot be written (%s): %d messages wait at the broker;"
                        " retrying (free disk space / check the card)",
                        self.settings.record,
                        exc,
                        len(batch),
                    )
                    complained = True
                self._stop.wait(wait)
                wait = min(wait * 2, 30.0)
                continue
            except Exception:
                self.record.rollback()
                if len(batch) == 1:
                    self.counters["dropped_bad"] = self.counters.get("dropped_bad", 0) + 1
                    self.log.exception(
                        "station hub could not handle a message on %s; it is logged and skipped",
                        batch[0].topic,
                    )
                    self._ack(batch[0])
                    return
                for message in batch:  # one by one: find the bad one, keep the rest
                    self._take([message])
                return
            if complained:
                self.log.info("the station record is written again; %d waiting messages stored", len(batch))
            for message in batch:
                self._ack(message)
            return

    def _handle_batch(self, batch: list[mqtt.MQTTMessage]) -> None:
        now = self.wall()
        live: list[dict[str, Any]] = []
        changed_units: set[str] = set()
        stored = False
        for message in batch:
            topic, payload = message.topic, bytes(message.payload)
            self.counters["messages"] += 1
            if topic.startswith(
                f"uncia/{self.site}/{self.unit}/{STATION_ENTITY}/command/"
            ) and not topic.endswith("/response"):
                self.commands.on_request(topic, payload)
                continue
            if topic.endswith("/response") and "/unit/command/" in topic:
                with contextlib.suppress(MessageError):
                    self.commands.on_unit_response(decode(payload).data)
            outcome = self.ingest.handle(topic, payload, now)
            live += outcome.live
            if outcome.unit_changed:
                changed_units.add(outcome.unit_changed)
            if outcome.new_fix is not None:
                stored = True
                self._publish_coarse(outcome.new_fix)
            self._apply(outcome.changes, now)
        self.record.commit()
        self.counters["batches"] += 1
        if self.on_new_data is not None and (stored or live):
            self.on_new_data()
        self._after_commit()
        for event in live:
            self.live.publish(event)
        if changed_units:
            offline_s = self.settings.unit_offline_min * 60.0
            for row in sorted(self.record.units(changed_units), key=lambda u: u["unit"]):
                self.live.publish(
                    {"type": "unit", "unit": unit_view(row, now=now, offline_after_s=offline_s)}
                )

    def _apply(self, changes: list[AlertChange], now: float) -> None:
        if not changes:
            return
        for change in changes:
            body = change.alert.to_dict()
            if change.raised:
                self.record.raise_alert(body, now)
                self.counters["alerts_raised"] += 1
                self.log.warning("ALERT %s: %s", change.alert.kind, change.alert.message)
                if change.alert.severity == "critical":
                    self._critical_pending = True
            else:
                self.record.clear_alert(change.alert.key, now)
                self.counters["alerts_cleared"] += 1
                self.log.info("alert cleared %s: %s", change.alert.kind, change.alert.subject)
            self._publish_alert(body, change.raised, now)
        self._publish_active()

    def _after_commit(self) -> None:
        """Tell the uplinks about a critical alert only once it is committed (they read the record)."""
        if self._critical_pending:
            self._critical_pending = False
            if self.on_critical_alert is not None:
                self.on_critical_alert()

    def _publish_alert(self, body: dict[str, Any], raised: bool, now: float) -> None:
        data = {**body, "state": "raised" if raised else "cleared"}
        self._durable(self.alert_topic, "alert", data, now)
        self.live.publish(
            {"type": "alert", "raised": raised, "alert": {**data, "cleared": None if raised else iso(now)}}
        )

    def _publish_active(self) -> None:
        active = [alert_view(a) for a in self.record.active_alerts()]
        self._durable(self.alerts_state_topic, "alerts", {"active": active}, self.wall(), retain=True)

    def _durable(
        self, topic: str, type_: str, data: dict[str, Any], now: float, *, retain: bool = False
    ) -> None:
        envelope, clock = self.envelope, self.clock_source()
        stamp = datetime.fromtimestamp(now, UTC)

        def payload(seq: int) -> bytes:
            return envelope.encode(STATION_ENTITY, seq, type_, data, time=stamp, received=stamp, clock=clock)

        self.outbox.enqueue(
            STATION_ENTITY,
            topic,
            payload,
            retain=retain,
            priority=Priority.STATUS if retain else Priority.EVENT,
        )

    def _publish_coarse(self, row: FixRow) -> None:
        if row.unit in self.ingest.camera_units and row.track != row.source:
            return  # a camera unit's own position is not an animal's
        lat, lon = coarse(row.lat, row.lon, self.settings.coarse_precision_m)
        hour = datetime.fromtimestamp(row.time, UTC).replace(minute=0, second=0, microsecond=0)
        body = {
            "track": row.track,
            "time": iso(hour.timestamp()),
            "lat": lat,
            "lon": lon,
            "precision_m": self.settings.coarse_precision_m,
        }
        track = row.track.replace("/", "-")
        topic = f"{SHARED_PREFIX}/{self.site}/{track}/fix"
        self.client.publish(topic, json.dumps(body, separators=(",", ":")).encode(), qos=1, retain=True)
        self.counters["coarse"] += 1

    # -- the timer thread --------------------------------------------------------------------------
    def _tick_loop(self) -> None:
        next_prune = 0.0
        while not self._stop.wait(_TICK_S):
            try:
                now = self.wall()
                self._apply(self.engine.tick(_dt(now)), now)
                self.record.commit()
                self._after_commit()
                self.commands.tick()
                if time.monotonic() >= next_prune:
                    self.record.prune(now, self.settings.retention_days)
                    next_prune = time.monotonic() + _PRUNE_S
            except Exception:
                self.log.exception("station hub timer failed; it keeps going")

    def tick_now(self) -> None:
        """Run the time-driven rules at once (tests, `uncia demo`)."""
        now = self.wall()
        self._apply(self.engine.tick(_dt(now)), now)
        self.record.commit()

    # -- the staff view ----------------------------------------------------------------------------
    def reader(self) -> RecordReader:
        return self.record.open_reader()

    def web_address(self) -> str | None:
        s = self.settings
        return f"http://{s.web_host}:{s.web_port}/" if s.web else None

    def status(self, reader: RecordReader | None = None) -> dict[str, Any]:
        own = reader is None
        reader = reader or self.reader()
        try:
            return status(
                reader,
                site=self.site,
                station=self.unit,
                web=self.web_address(),
                now=self.wall(),
                offline_after_s=self.settings.unit_offline_min * 60.0,
                bridges=dict(self.bridges),
            )
        finally:
            if own:
                reader.close()

    def tracks(self, hours: float = 24.0, reader: RecordReader | None = None) -> dict[str, list[list[float]]]:
        own = reader is None
        reader = reader or self.reader()
        try:
            return tracks(reader, since=self.wall() - hours * 3600.0)
        finally:
            if own:
                reader.close()

    def boundary(self) -> dict[str, Any] | None:
        """The reserve boundary and conflict zones (GeoJSON) for the map, if configured."""
        if not self.settings.boundary:
            return None
        return json.loads(Path(self.settings.boundary).read_text())

    def fetch_image(self, unit: str, image_id: str, timeout: float = 300.0) -> Path:
        """The full image on the station's disk: fetched from the unit unless already here."""
        with self.reader() as reader:
            known = reader.image_path(unit, image_id)
        if known is not None and known.is_file():
            return known
        path = self.fetcher.fetch(unit, image_id, timeout=timeout)
        self.record.add_image(unit, image_id, path, sha256=None, now=self.wall())
        self.record.commit()
        return path

    def _fetch_image_command(self, fields: dict[str, Any]) -> dict[str, Any]:
        unit, image = fields.get("unit"), fields.get("image")
        if not isinstance(unit, str) or not isinstance(image, str):
            raise ValueError("fetch_image needs 'unit' and 'image' (the image id of a thumbnail or capture)")
        path = self.fetch_image(unit, image)
        return {
            "message": f"{image} from {unit} is on the station ({path.stat().st_size:,} bytes)",
            "unit": unit,
            "image": image,
            "url": f"/api/image/{unit}/{image}",
            "bytes": path.stat().st_size,
        }


def _dt(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _alert_from_row(row: dict[str, Any]) -> Alert:
    return Alert.from_dict(alert_view(row))
