"""The relay: the one object that talks MQTT. It drains the outbox to the broker, in order.

What a technician sees in the log::

    connected to broker 10.0.0.2:1883 (1,234 messages waiting in the outbox)
    lost connection to broker 10.0.0.2:1883 (connection lost); 310 messages waiting; reconnecting
    broker unreachable at 10.0.0.2:1883 (Connection refused); 1,234 messages waiting in the outbox;
        retrying in 4.2 s

Delivery guarantee: **at least once, in order, to the broker.** A message leaves the outbox only when
the broker's PUBACK for it arrives. A message may reach the broker twice (its PUBACK was lost with the
connection, or the agent died before the deletion was committed); it keeps its envelope ``id``, so
receivers drop the copy. Per outage, duplicates are bounded by the in-flight window (``mqtt.window``);
after a crash, by that window plus the acknowledgements of the last ``outbox.commit_interval``.

How (the traps this avoids):

- paho is driven from the relay's own thread (``loop_read``/``loop_write``/``loop_misc`` around one
  ``select``) instead of ``loop_start``: no second thread woken per publish, no lock hand-offs.
  Socket I/O is batched (one send and one recv per batch, see `_BatchingClient`), because under
  load every GIL-releasing system call can cost the relay a 5 ms switch interval.
- The window is refilled as PUBACKs arrive, not when it runs dry: waiting for a whole window of
  PUBACKs stalls on Nagle's algorithm at the broker. TCP_NODELAY is set on our socket.
- Nothing is published until the broker accepted the connection. paho's ``publish()`` while
  disconnected does not fail, it queues (``MQTT_ERR_NO_CONN``), and paho re-sends its own in-flight
  messages after a reconnect; with the outbox also re-sending, every message would go twice. So
  before every (re)connect the relay empties paho's queue (``drop_out_messages``) and re-sends the
  un-acknowledged window itself, oldest first, then continues with the outbox.
- Every paho callback is wrapped: an exception is logged and counted, never left to kill the loop.
- Reconnects back off exponentially with jitter (so a station's units do not reconnect in step).
- Availability like zigbee2mqtt: retained ``online`` on connect, a last will of retained
  ``offline`` (published by the broker if the unit dies), and ``offline`` on a clean stop.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import resource
import select
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from edge.config import ConfigError, MqttSettings, UnitSettings
from edge.fix import ClockSource
from edge.messages import Envelope
from edge.outbox import Outbox, OutboxRow, Priority
from edge.topics import Topics

MessageHandler = Callable[[str, bytes], None]
FIRST_HEALTH_S = 2.0
HEALTH_SOURCE = "unit"


class _BatchingClient(mqtt.Client):
    """paho's client with buffered socket I/O: one recv() and one send() per batch of packets.

    Why: paho reads every packet with three recv() calls and writes every packet with its own
    send(). Each is a system call that releases the GIL, and while the ingest threads are busy every
    release can cost the relay thread a whole switch interval (5 ms) before it runs again — that, not
    CPU, is what limits a relay driven by paho at thousands of messages per second. This overrides
    paho's private ``_sock_recv``/``_sock_send``/``_sock_close`` (unchanged from paho 1.6 to 2.2);
    should they ever go away, the relay falls back to the plain client: slower, same behaviour.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rbuf = b""
        self._rpos = 0
        self._wbuf = bytearray()

    @property
    def buffered(self) -> bool:
        """Bytes already read (or decrypted) but not yet handled: call loop_read without waiting."""
        if self._rpos < len(self._rbuf):
            return True
        pending = getattr(self._sock, "pending", None)
        return bool(pending and pending())

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._rpos >= len(self._rbuf):
            data = super()._sock_recv(65536)
            if len(data) <= bufsize:
                return data
            self._rbuf, self._rpos = data, 0
        pos = self._rpos
        out = self._rbuf[pos : pos + bufsize]
        self._rpos = pos + len(out)
        return out

    def _sock_send(self, buf: bytes | bytearray) -> int:
        if self._sock is None:
            raise ConnectionError("self._sock is None")  # as paho's own, so paho sees a lost link
        self._wbuf += buf
        return len(buf)

    def want_write(self) -> bool:
        return bool(self._wbuf) or super().want_write()

    def loop_write(self) -> MQTTErrorCode:
        rc = super().loop_write()
        if self._wbuf and self._sock is not None and rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            try:
                sent = self._sock.send(self._wbuf)
            except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                return MQTTErrorCode.MQTT_ERR_SUCCESS
            except OSError:
                return self._loop_rc_handle(MQTTErrorCode.MQTT_ERR_CONN_LOST)
            del self._wbuf[:sent]
        return rc

    def _sock_close(self) -> None:
        if self._sock is not None and self._wbuf:
            with contextlib.suppress(OSError):  # last words (DISCONNECT, offline) on a best-effort basis
                self._sock.send(self._wbuf)
        self._wbuf.clear()
        self._rbuf, self._rpos = b"", 0
        super()._sock_close()


_PAHO_INTERNALS = ("_sock_recv", "_sock_send", "_sock_close", "_loop_rc_handle", "_sock")
_Client: type[mqtt.Client] = (
    _BatchingClient if all(hasattr(mqtt.Client, n) for n in _PAHO_INTERNALS[:4]) else mqtt.Client
)


class RelayError(RuntimeError):
    """The relay cannot be set up (for example the TLS files cannot be loaded)."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


def rss_bytes() -> int:
    """Resident memory of this process (current, from /proc; peak where /proc is missing)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def apply_login(client: mqtt.Client, settings: MqttSettings) -> None:
    """The unit's credentials on a paho client: user name and password (from its file), and TLS with
    the CA and client certificate when configured. Every client of a unit logs in the same way.
    Raises `ConfigError` (password file), OSError or ValueError (TLS files)."""
    if settings.username:
        client.username_pw_set(settings.username, settings.password())
    if settings.tls:
        client.tls_set(
            ca_certs=settings.ca_file or None,
            certfile=settings.cert_file or None,
            keyfile=settings.key_file or None,
        )


class Relay:
    """Publishes every outbox message to the station broker and keeps the unit's availability.

    `start()` runs it on its own thread; `stop(timeout)` drains what it can within `timeout`,
    publishes ``offline`` and disconnects. `connected` says whether the broker accepted us;
    `counters` and `health()` say how it is going.
    """

    def __init__(
        self,
        outbox: Outbox,
        settings: MqttSettings,
        topics: Topics,
        *,
        unit: UnitSettings | None = None,
        health_interval: float = 60.0,
        health_extra: Callable[[], dict[str, Any]] | None = None,
        identity: dict[str, Any] | None = None,
        clock_source: Callable[[], ClockSource] | None = None,
        envelope: Envelope | None = None,
        log: logging.Logger | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = _utc_now,
        rand: random.Random | None = None,
        reconnect_min: float = 0.5,
        reconnect_max: float = 30.0,
        connect_timeout: float = 10.0,
    ) -> None:
        self.outbox = outbox
        self.settings = settings
        self.topics = topics
        self.unit = unit.id if unit else topics.unit
        self.address = f"{settings.host}:{settings.port}"
        self.window = settings.window
        self.health_interval = health_interval
        self.health_extra = health_extra
        self.identity = dict(identity or {})  # role, software, config_hash: see edge.config.unit_identity
        self.clock_source = clock_source or (lambda: ClockSource.UNSYNCED)
        self.envelope = envelope or Envelope(self.unit)
        self.log = log or logging.getLogger("uncia.relay")
        self._clock = clock
        self._wall = wall
        self._rand = rand or random.Random()
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        self.connect_timeout = connect_timeout

        self._inflight: dict[int, OutboxRow] = {}  # paho mid -> outbox row awaiting PUBACK
        self._resend: list[OutboxRow] = []  # un-acknowledged rows of a lost connection, oldest first
        self._commit_gen = 0  # bumped by the outbox after each commit
        self._empty_gen = -1  # the commit generation at which the outbox was last seen drained
        self._last_peek = 0.0
        self._acked: list[int] = []
        self._live_mids: set[int] = set()  # availability publishes (not outbox rows)
        self._live_out: deque[tuple[str, bytes, int]] = deque(maxlen=100)  # publish_now, for the relay thread
        self._refill_at = 1

        self._sock: Any = None
        self._mqtt_up = False
        self._link_lost = False
        self._disconnect_reason = ""
        self._connack_deadline = 0.0
        self._attempts = 0
        self._next_attempt = 0.0
        self._offline_since: float | None = None
        self._last_unreachable_log = -1e9

        self._subs: dict[str, tuple[int, MessageHandler]] = {}
        self._new_subs: list[str] = []
        self._subs_lock = threading.Lock()
        # "online" is announced once the broker has acknowledged our subscriptions: a unit that says it
        # is online hears its commands (zigbee2mqtt's availability means the same).
        self._suback_pending: set[int] = set()
        self._online_pending = False

        self._stopping = False
        self._stop_deadline = 0.0
        self._thread: threading.Thread | None = None
        self._started_at = clock()
        # The first report soon after start: the station's registry learns the unit's software, config
        # hash and clock at once, not a health interval later.
        self._next_health = self._started_at + min(health_interval, FIRST_HEALTH_S)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)

        self.counters: dict[str, int] = dict.fromkeys(
            (
                "connects",
                "disconnects",
                "connect_failures",
                "published",
                "resent",
                "acked",
                "rejected",
                "callback_errors",
                "messages_in",
                "health_sent",
            ),
            0,
        )
        self._client = self._make_client()
        outbox.set_commit_listener(self._on_commit)

    # -- paho setup --------------------------------------------------------------------------------
    def _make_client(self) -> mqtt.Client:
        s = self.settings
        client_id = s.client_id or f"uncia-{self.topics.site}-{self.unit}"
        client = _Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True, protocol=mqtt.MQTTv311
        )
        client.max_inflight_messages_set(0)  # our window bounds it; paho must never hold one back
        client.suppress_exceptions = True
        client.connect_timeout = min(self.connect_timeout, 10.0)
        client.will_set(self.topics.availability(), b"offline", qos=1, retain=True)
        try:
            apply_login(client, s)
        except ConfigError:
            raise  # the password file: the message names the key
        except (OSError, ValueError) as exc:
            raise RelayError(f"cannot load the TLS files for the broker ({_reason(exc)})") from exc
        client.on_connect = self._guard(self._on_connect)
        client.on_disconnect = self._guard(self._on_disconnect)
        client.on_publish = self._guard(self._on_publish)
        client.on_message = self._guard(self._on_message)
        client.on_socket_open = self._guard(self._on_socket_open)
        client.on_subscribe = self._guard(self._on_subscribe)
        # With a write callback set, publish() only queues the packet; the relay writes them in one
        # loop_write per batch, and a PUBACK can never arrive before the mid is in _inflight.
        client.on_socket_register_write = self._guard(lambda *_: None)
        client.connect_async(s.host, s.port, s.keepalive)
        return client

    def _guard(self, callback: Callable[..., None]) -> Callable[..., None]:
        def guarded(*args: Any) -> None:
            try:
                callback(*args)
            except Exception:
                self.counters["callback_errors"] += 1
                self.log.exception(
                    "error in MQTT callback %s (ignored; the relay keeps running)",
                    getattr(callback, "__name__", callback),
                )

        return guarded

    # -- public API --------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        """True while the broker has accepted our connection."""
        return self._mqtt_up

    @property
    def online(self) -> bool:
        """True once ``online`` is announced: connected, and the unit's subscriptions acknowledged."""
        return self._mqtt_up and not self._online_pending

    def start(self) -> None:
        if self._thread is not None:
            raise RelayError("the relay is already started")
        self.outbox.rewind()  # rows an earlier relay took but never got acknowledged go again
        self._thread = threading.Thread(target=self._run, name="uncia-relay", daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        """True while the relay thread runs (a systemd watchdog ping means "all workers alive")."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> bool:
        """Send what can be sent within `timeout` s, publish ``offline``, disconnect.

        Returns True if the outbox was drained (nothing waiting for the broker) when it stopped.
        """
        if self._thread is None:
            return False
        self._stop_deadline = self._clock() + timeout
        self._stopping = True
        self._wake()
        self._thread.join(timeout + self.connect_timeout + 5.0)
        return self.outbox.depth <= 0

    def subscribe(self, topic_filter: str, handler: MessageHandler, qos: int = 1) -> None:
        """Call ``handler(topic, payload)`` on the relay thread for every message on `topic_filter`.

        Subscriptions are renewed on every reconnect. A handler that raises is logged, not fatal.
        """
        with self._subs_lock:
            self._subs[topic_filter] = (qos, handler)
            self._new_subs.append(topic_filter)
        self._wake()

    def publish_now(self, topic: str, payload: bytes, qos: int = 1) -> bool:
        """Publish at once, NOT through the outbox, a message that is worthless late (a paired camera's
        trigger). False, and nothing kept, while the broker is not connected; never re-sent after a
        reconnect. It goes ahead of outbox rows waiting to be published. Any thread may call it."""
        if not self._mqtt_up or self._stopping:
            return False
        self._live_out.append((topic, payload, qos))
        self._wake()
        return True

    def health(self) -> dict[str, Any]:
        """The health report body (also published every `health_interval` s)."""
        report: dict[str, Any] = {
            **self.identity,
            "connected": self._mqtt_up,
            "broker": self.address,
            "uptime_s": round(self._clock() - self._started_at, 1),
            "rss_bytes": rss_bytes(),
            "outbox": self.outbox.stats(),
            "relay": dict(self.counters, in_flight=len(self._inflight) + len(self._resend)),
        }
        if self._offline_since is not None:
            report["offline_s"] = round(self._clock() - self._offline_since, 1)
        if self.health_extra is not None:
            try:
                report["agent"] = self.health_extra()
            except Exception as exc:
                self.log.exception("the agent's health report failed")
                report["agent_error"] = _reason(exc)
        return report

    # -- wake-ups ----------------------------------------------------------------------------------
    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # a full wake pipe already means "wake up"
            self._wake_w.send(b"\0")

    def _on_commit(self, count: int) -> None:
        self._commit_gen += 1
        self._wake()

    def _drain_wake(self) -> None:
        with contextlib.suppress(OSError):
            while self._wake_r.recv(4096):
                pass

    # -- the relay thread --------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            if self._stopping and self._done_stopping():
                break
            try:
                if self._sock is None:
                    self._connect_step()
                else:
                    self._service()
                self._flush_acks()
                self._maybe_health()
            except Exception:
                self.counters["callback_errors"] += 1
                self.log.exception("unexpected error in the relay; dropping the connection and retrying")
                self._drop_link()
        self._shutdown()

    def _done_stopping(self) -> bool:
        if not self._mqtt_up or self._clock() >= self._stop_deadline:
            return True
        return not self._inflight and not self._resend and self.outbox.depth <= 0

    def _connect_step(self) -> None:
        now = self._clock()
        if now < self._next_attempt:
            self._idle(min(self._next_attempt - now, self._next_health - now))
            return
        self._attempts += 1
        self._client.drop_out_messages()  # paho must never re-send on its own: the outbox does
        self._link_lost = False
        try:
            self._client.reconnect()
        except OSError as exc:
            self._unreachable(_reason(exc))
            return
        self._sock = self._client.socket()
        self._connack_deadline = self._clock() + self.connect_timeout

    def _idle(self, timeout: float) -> None:
        readable, _, _ = select.select([self._wake_r], [], [], max(0.0, min(timeout, 1.0)))
        if readable:
            self._drain_wake()

    def _service(self) -> None:
        client = self._client
        if self._mqtt_up:
            self._subscribe_new()
            while self._live_out:  # publish_now: paho's client is only ever touched on this thread
                topic, payload, qos = self._live_out.popleft()
                self._live_mids.add(self._client.publish(topic, payload, qos=qos).mid)
            self._fill()
            if client.want_write():
                client.loop_write()
        if self._sock is not None and not self._link_lost:
            wlist = [self._sock] if client.want_write() else []
            buffered = getattr(client, "buffered", False)
            timeout = 0.0 if buffered else max(0.0, min(1.0, self._next_health - self._clock()))
            readable, writable, _ = select.select([self._sock, self._wake_r], wlist, [], timeout)
            if self._wake_r in readable:
                self._drain_wake()
            if self._sock in readable or buffered:
                client.loop_read()
            if writable and not self._link_lost:
                client.loop_write()
            if not self._link_lost:
                client.loop_misc()
        if self._link_lost or client.socket() is None:
            self._link_down()
        elif not self._mqtt_up and self._clock() > self._connack_deadline:
            self.log.warning("broker %s did not answer our connection request in time", self.address)
            self._drop_link()

    def _rows_waiting(self) -> bool:
        """Whether the outbox may hold rows we have not taken (without asking the database)."""
        return self._commit_gen != self._empty_gen or self._clock() - self._last_peek > 1.0

    def _fill(self) -> None:
        """Publish from the re-send list, then from the outbox, until the window is full."""
        free = self.window - len(self._inflight)
        if free <= 0 or (self._inflight and free < self._refill_at and not self._resend):
            return
        batch: list[OutboxRow] = []
        if self._resend:
            batch = self._resend[:free]
            del self._resend[:free]
            self.counters["resent"] += len(batch)
        want = free - len(batch)
        if want > 0 and self._rows_waiting():
            generation = self._commit_gen
            self._last_peek = self._clock()
            rows = self.outbox.take(want)
            batch.extend(rows)
            if len(rows) < want:
                self._empty_gen = generation
        if not batch:
            return
        publish = self._client.publish
        inflight = self._inflight
        sent = 0
        for row in batch:
            try:
                info = publish(row.topic, row.payload, row.qos, bool(row.retain))
            except ValueError as exc:  # a row paho can never send (bad topic): don't block the queue
                self.log.error("dropping outbox message %d on topic %r: %s", row.id, row.topic, exc)
                self._acked.append(row.id)
                self.counters["rejected"] += 1
                continue
            inflight[info.mid] = row
            sent += 1
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                # The link went away under us; paho queued this one. _link_down moves it to _resend.
                rest = batch[batch.index(row) + 1 :]
                self._resend[:0] = rest
                break
        self.counters["published"] += sent
        self.outbox.note_published(sent)

    def _flush_acks(self) -> None:
        if self._acked:
            self.outbox.ack(self._acked)
            self._acked = []

    def _subscribe_new(self) -> None:
        if not self._new_subs:
            return
        with self._subs_lock:
            topics, self._new_subs = self._new_subs, []
            wanted = [(t, self._subs[t][0]) for t in dict.fromkeys(topics)]
        for topic, qos in wanted:
            _result, mid = self._client.subscribe(topic, qos)
            if self._online_pending and mid is not None:
                self._suback_pending.add(mid)

    # -- connection state --------------------------------------------------------------------------
    def _unreachable(self, reason: str) -> None:
        self.counters["connect_failures"] += 1
        now = self._clock()
        if self._offline_since is None:
            self._offline_since = now
        delay = self._schedule_retry()
        waiting = self.outbox.depth
        if now - self._last_unreachable_log >= 60.0:
            self._last_unreachable_log = now
            offline = now - self._offline_since
            since = f" (offline for {offline:.0f} s)" if offline >= 1 else ""
            self.log.warning(
                "broker unreachable at %s (%s)%s; %s messages waiting in the outbox; retrying in %.1f s",
                self.address,
                reason,
                since,
                f"{waiting:,}",
                delay,
            )
        else:
            self.log.debug("broker unreachable at %s (%s); retrying in %.1f s", self.address, reason, delay)

    def _schedule_retry(self) -> float:
        base = min(self.reconnect_max, self.reconnect_min * 2 ** min(self._attempts - 1, 20))
        delay = base * (0.5 + 0.5 * self._rand.random())
        self._next_attempt = self._clock() + delay
        return delay

    def _drop_link(self) -> None:
        """Close the connection from our side (timeout, internal error) and plan a reconnect."""
        with contextlib.suppress(Exception):
            if self._client.socket() is not None:
                self._client.disconnect()
                self._client.loop_write()
        with contextlib.suppress(Exception):
            sock = self._client.socket()
            if sock is not None:
                sock.close()
        self._link_down()

    def _link_down(self) -> None:
        was_up = self._mqtt_up
        self._sock = None
        self._mqtt_up = False
        self._link_lost = False
        self._client.drop_out_messages()
        if self._inflight:
            self._resend = sorted([*self._inflight.values(), *self._resend], key=lambda r: r.id)
            self._inflight.clear()
        self._live_mids.clear()
        self._live_out.clear()
        if self._stopping:
            return
        if was_up:
            self.counters["disconnects"] += 1
            self._offline_since = self._clock()
            self._attempts = 0
            self.log.warning(
                "lost connection to broker %s (%s); %s messages waiting; reconnecting",
                self.address,
                self._disconnect_reason or "connection closed",
                f"{self.outbox.depth:,}",
            )
            self._last_unreachable_log = self._clock()
        self._schedule_retry()

    # -- paho callbacks (on the relay thread, inside loop_read/loop_write) --------------------------
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            hint = ""
            if "authori" in str(reason).lower() or "password" in str(reason).lower():
                hint = " — check mqtt.username and mqtt.password_file"
            self.log.error("broker %s refused the connection: %s%s", self.address, reason, hint)
            self.counters["connect_failures"] += 1
            return
        self._mqtt_up = True
        self._attempts = 0
        self.counters["connects"] += 1
        offline = ""
        if self._offline_since is not None:
            offline = f" after {self._clock() - self._offline_since:.0f} s offline"
            self._offline_since = None
        self.log.info(
            "connected to broker %s%s (%s messages waiting in the outbox)",
            self.address,
            offline,
            f"{self.outbox.depth:,}",
        )
        self._last_unreachable_log = -1e9
        with self._subs_lock:
            self._new_subs = list(self._subs)
        self._online_pending = True
        self._suback_pending.clear()
        self._subscribe_new()
        if not self._suback_pending:
            self._announce_online(client)

    def _announce_online(self, client: mqtt.Client) -> None:
        self._online_pending = False
        info = client.publish(self.topics.availability(), b"online", qos=1, retain=True)
        self._live_mids.add(info.mid)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        for reason in reasons or ():
            if getattr(reason, "is_failure", False):
                self.log.warning(
                    "the broker refused a subscription of this unit (%s): check the broker's ACL for %s",
                    reason,
                    self.unit,
                )
        self._suback_pending.discard(mid)
        if self._online_pending and not self._suback_pending:
            self._announce_online(client)

    def _on_socket_open(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        # We batch our own writes; Nagle's algorithm would only hold a lone publish back.
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._link_lost = True
        text = str(reason)
        if getattr(flags, "is_disconnect_packet_from_server", False):
            self._disconnect_reason = f"the broker closed it: {text}"
        elif text == "Keep alive timeout":
            self._disconnect_reason = "no answer from the broker within the keepalive time"
        else:  # paho reports a dropped socket as "Unspecified error"
            self._disconnect_reason = "connection lost"

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        row = self._inflight.pop(mid, None)
        if row is not None:
            self._acked.append(row.id)
            self.counters["acked"] += 1
        else:
            self._live_mids.discard(mid)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self.counters["messages_in"] += 1
        with self._subs_lock:
            handlers = [h for f, (_, h) in self._subs.items() if mqtt.topic_matches_sub(f, message.topic)]
        for handler in handlers:
            try:
                handler(message.topic, message.payload)
            except Exception:
                self.counters["callback_errors"] += 1
                self.log.exception("handler for %s failed (ignored)", message.topic)

    # -- health and shutdown -----------------------------------------------------------------------
    def _maybe_health(self) -> None:
        now = self._clock()
        if now < self._next_health or self._stopping:
            return
        self._next_health = now + self.health_interval
        data = self.health()
        moment = self._wall()
        clock = self.clock_source()
        envelope = self.envelope

        def payload(seq: int) -> bytes:
            return envelope.encode(
                HEALTH_SOURCE, seq, "health", data, time=moment, received=moment, clock=clock
            )

        self.outbox.enqueue(
            HEALTH_SOURCE, self.topics.health(), payload, qos=1, retain=True, priority=Priority.STATUS
        )
        self.counters["health_sent"] += 1

    def _shutdown(self) -> None:
        client = self._client
        if self._mqtt_up and self._sock is not None:
            info = client.publish(self.topics.availability(), b"offline", qos=1, retain=True)
            self._live_mids.add(info.mid)
            deadline = max(self._stop_deadline, self._clock()) + 1.0
            while info.mid in self._live_mids and self._clock() < deadline and not self._link_lost:
                with contextlib.suppress(Exception):
                    client.loop_write()
                    readable, _, _ = select.select([self._sock], [], [], 0.1)
                    if readable:
                        client.loop_read()
            with contextlib.suppress(Exception):
                client.disconnect()
                client.loop_write()
        self._mqtt_up = False
        with contextlib.suppress(Exception):
            sock = client.socket()
            if sock is not None:
                sock.close()
        if self._inflight:
            self._resend = sorted([*self._inflight.values(), *self._resend], key=lambda r: r.id)
            self._inflight.clear()
        self._flush_acks()
        self.outbox.set_commit_listener(None)
        self._wake_r.close()
        self._wake_w.close()
        waiting = self.outbox.depth
        self.log.info("relay stopped; %s messages waiting in the outbox for the next start", f"{waiting:,}")
