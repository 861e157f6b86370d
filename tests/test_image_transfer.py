"""The full image on request, through a real broker: whole and checksummed, through outages and crashes.

What these prove: a 1-2 MB JPEG made by Pillow arrives byte for byte (SHA-256 equal) while a fix
enqueued mid-transfer is not held back behind it; the broker stopped and restarted mid-transfer, or
the unit's process SIGKILLed and restarted on its outbox, still ends in the whole image; a chunk
damaged on the wire is refused and asked for again; unknown and damaged images and bad requests get
answers in words. The planning core is property-tested against a link that drops, repeats and
damages messages.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion
from PIL import Image

from edge.broker import Broker, find_mosquitto, start_broker
from edge.camera.sidecar import Sidecar, write_capture
from edge.camera.transfer import (
    ImageChunk,
    ImageRequest,
    ImageRequestError,
    ImageResponse,
    ImageSender,
    Status,
    chunk_count,
    cut_chunks,
)
from edge.config import MqttSettings
from edge.fix import ClockSource
from edge.messages import Envelope, decode
from edge.outbox import Outbox
from edge.relay import Relay
from edge.topics import Topics
from gateway.image_fetch import (
    FetchProgress,
    ImageFetcher,
    ImageRefusedError,
    Reassembly,
    UnknownImageError,
    Verdict,
)

SITE, UNIT = "helan", "cam-01"
TOPICS = Topics(SITE, UNIT)
REPO = Path(__file__).resolve().parents[1]
WINDOW = 8
needs_mosquitto = pytest.mark.skipif(find_mosquitto() is None, reason="needs Mosquitto (persistence)")


def wait(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.01)


def make_jpeg(folder: Path, name: str, width: int, height: int, seed: int = 1) -> bytes:
    """A real JPEG of IR-grey noise (noise does not compress: ~1 byte a pixel at quality 95)."""
    noise = random.Random(seed).randbytes(width * height)
    out = io.BytesIO()
    Image.frombytes("L", (width, height), noise).save(out, "JPEG", quality=95)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(out.getvalue())
    return out.getvalue()


def finder(folder: Path) -> Callable[[str], Path | None]:
    def find(image: str) -> Path | None:
        path = folder / image
        return path if path.is_file() else None

    return find


class UnitSide:
    """The camera unit's runtime in this process: outbox on disk, relay, image sender."""

    def __init__(self, root: Path, port: int) -> None:
        self.outbox = Outbox(root / "unit-outbox.sqlite3", commit_interval=0.01)
        settings = MqttSettings(host="127.0.0.1", port=port, keepalive=5, window=50)
        self.relay = Relay(self.outbox, settings, TOPICS, reconnect_min=0.05, reconnect_max=0.3)
        self.delivered: list[str] = []  # what the station confirmed it holds (the agent's mark_relayed)
        self.sender = ImageSender(
            self.outbox,
            TOPICS,
            Envelope(UNIT),
            finder(root / "images"),
            on_delivered=self.delivered.append,
            window=WINDOW,
        )
        self.sender.attach(self.relay)
        self.relay.start()
        wait(lambda: self.relay.connected, what="the unit to connect")

    def close(self) -> None:
        self.relay.stop(1.0)
        self.outbox.close()


@pytest.fixture
def units(tmp_path: Path) -> Iterator[Callable[[int], UnitSide]]:
    made: list[UnitSide] = []

    def make(port: int) -> UnitSide:
        made.append(UnitSide(tmp_path, port))
        return made[-1]

    yield make
    for unit in made:
        unit.close()


@pytest.fixture
def station(tmp_path: Path) -> Iterator[Callable[..., ImageFetcher]]:
    """``station(port, persistent=False)`` → an ImageFetcher on its own running paho client."""
    clients: list[mqtt.Client] = []

    def make(port: int, *, persistent: bool = False) -> ImageFetcher:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"station-{uuid.uuid4().hex[:8]}",
            clean_session=not persistent,
        )
        client.reconnect_delay_set(0.05, 0.3)
        client.connect("127.0.0.1", port, keepalive=5)
        client.loop_start()
        clients.append(client)
        wait(client.is_connected, what="the station to connect")
        return ImageFetcher(client, SITE, tmp_path / "station", window=WINDOW, stall_timeout=0.5)

    yield make
    for client in clients:
        client.disconnect()
        client.loop_stop()


class Fetch(threading.Thread):
    """`fetcher.fetch(...)` on a thread; `result()` returns the path or raises what fetch raised."""

    def __init__(
        self, fetcher: ImageFetcher, image: str, on_progress: Callable[[FetchProgress], None]
    ) -> None:
        super().__init__(daemon=True)
        self.fetcher, self.image, self.on_progress = fetcher, image, on_progress
        self.last: FetchProgress | None = None
        self.outcome: Path | BaseException | None = None
        self.start()

    def _progress(self, progress: FetchProgress) -> None:
        self.last = progress
        self.on_progress(progress)

    def run(self) -> None:
        try:
            self.outcome = self.fetcher.fetch(UNIT, self.image, timeout=60, progress=self._progress)
        except BaseException as exc:
            self.outcome = exc

    def result(self, timeout: float = 60) -> Path:
        self.join(timeout)
        assert not self.is_alive(), "the fetch did not finish"
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        assert isinstance(self.outcome, Path)
        return self.outcome


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_two_megabyte_image_arrives_whole_without_holding_back_fixes(
    broker: Broker, collect, station, units, tmp_path: Path
) -> None:
    jpeg = make_jpeg(tmp_path / "images", "E42-003.jpg", 1600, 1200)
    assert 1_000_000 < len(jpeg) < 3_000_000
    unit = units(broker.port)
    seen = collect(broker, TOPICS.all())
    depths: list[int] = []
    fix_sent = threading.Event()

    def on_progress(progress: FetchProgress) -> None:
        depths.append(unit.outbox.depth)
        if progress.fraction >= 0.5 and not fix_sent.is_set():
            fix_sent.set()
            unit.outbox.enqueue("gps0", TOPICS.fix("gps0"), lambda seq: b'{"fix":1}')

    fetch = Fetch(station(broker.port), "E42-003.jpg", on_progress)
    path = fetch.result()

    assert path == tmp_path / "station" / UNIT / "E42-003.jpg"
    assert sha(path.read_bytes()) == sha(jpeg)
    assert [p.name for p in path.parent.iterdir()] == ["E42-003.jpg"], "no temporary file left behind"
    assert fetch.last is not None and fetch.last.done and fetch.last.corrupt == 0
    assert fetch.last.bytes == fetch.last.size == len(jpeg)
    assert fetch.last.total_chunks == chunk_count(len(jpeg), 8192) == fetch.last.chunks
    wait(lambda: unit.delivered == ["E42-003.jpg"], what="the station's delivered notice")
    # The unit never held more than about one window of the image: fixes wait behind little.
    assert max(depths) <= 2 * WINDOW + 2
    seen.wait_until(lambda ms: any(m.topic == TOPICS.fix("gps0") for m in ms))
    topics = [m.topic for m in seen.messages]
    chunk_topic = TOPICS.event("cam0", "image_chunk")
    last_chunk = len(topics) - 1 - topics[::-1].index(chunk_topic)
    assert topics.index(TOPICS.fix("gps0")) < last_chunk, "the fix went out before the transfer ended"
    chunk = next(m for m in seen.messages if m.topic == chunk_topic)
    assert chunk.qos == 1 and not chunk.retain
    assert (decode(chunk.payload).type, decode(chunk.payload).source) == ("image_chunk", "cam0-transfer")
    response = next(m for m in seen.messages if m.topic == TOPICS.command_response("image"))
    body = decode(response.payload).data
    assert body["status"] == "accepted" and body["sha256"] == sha(jpeg) and body["size"] == len(jpeg)


@needs_mosquitto
def test_broker_stopped_and_restarted_mid_transfer(tmp_path: Path, station, units) -> None:
    jpeg = make_jpeg(tmp_path / "images", "E7-000.jpg", 1200, 1000, seed=2)
    with start_broker(persistence=True, data_dir=tmp_path / "broker") as broker:
        unit = units(broker.port)
        reached, restarted = threading.Event(), threading.Event()

        def on_progress(progress: FetchProgress) -> None:
            if progress.fraction >= 0.25 and not reached.is_set():
                reached.set()
                restarted.wait(20)  # hold the station here until the broker has been away

        fetch = Fetch(station(broker.port, persistent=True), "E7-000.jpg", on_progress)
        assert reached.wait(30)
        broker.stop()
        wait(lambda: not unit.relay.connected, what="the unit to notice the outage")
        at_outage = fetch.last
        broker.start()
        restarted.set()
        path = fetch.result()
    assert at_outage is not None and not at_outage.done and at_outage.chunks < at_outage.total_chunks
    assert sha(path.read_bytes()) == sha(jpeg)
    assert unit.relay.counters["disconnects"] >= 1


CHILD = r"""
import pathlib, sys, time
from edge.camera.transfer import ImageSender
from edge.config import MqttSettings
from edge.messages import Envelope
from edge.outbox import Outbox
from edge.relay import Relay
from edge.topics import Topics
outbox, port, images = sys.argv[1], int(sys.argv[2]), pathlib.Path(sys.argv[3])
topics = Topics("helan", "cam-01")
box = Outbox(outbox, commit_interval=0.01)
relay = Relay(box, MqttSettings(host="127.0.0.1", port=port, keepalive=5, window=50), topics,
              reconnect_min=0.05, reconnect_max=0.3)
def find(image):
    path = images / image
    return path if path.is_file() else None
ImageSender(box, topics, Envelope("cam-01"), find, window=8).attach(relay)
relay.start()
while not relay.connected:
    time.sleep(0.01)
print("up", flush=True)
while True:
    time.sleep(1)
"""


def _unit_process(tmp_path: Path, port: int) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CHILD,
            str(tmp_path / "unit-outbox.sqlite3"),
            str(port),
            str(tmp_path / "images"),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "up"
    return child


def _chunks_waiting(outbox: Path) -> dict[str, int]:
    """Envelope id -> chunk index of every image chunk in a unit's outbox file (read-only, from outside)."""
    db = sqlite3.connect(f"file:{outbox}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT payload FROM outbox WHERE topic LIKE '%/event/image_chunk'").fetchall()
    finally:
        db.close()
    return {(e := json.loads(r[0]))["id"]: e["data"]["index"] for r in rows}


def test_unit_killed_mid_transfer_and_restarted_on_its_outbox(
    broker: Broker, collect, station, tmp_path: Path
) -> None:
    """SIGKILL while chunks wait in the unit's outbox (its link held); the restarted unit sends them."""
    jpeg = make_jpeg(tmp_path / "images", "E9-001.jpg", 1200, 1000, seed=3)
    seen = collect(broker, TOPICS.event("cam0", "image_chunk"))
    link = LinkProxy(broker.port)
    child = _unit_process(tmp_path, link.port)
    reached = threading.Event()

    def on_progress(progress: FetchProgress) -> None:
        if progress.fraction >= 0.3 and not reached.is_set():
            link.hold()  # the unit's answers now pile up in its outbox
            reached.set()

    outbox = tmp_path / "unit-outbox.sqlite3"
    try:
        fetch = Fetch(station(broker.port), "E9-001.jpg", on_progress)
        assert reached.wait(30)

        def held() -> dict[str, int]:  # in the outbox and not yet seen on the broker
            delivered = {m.json()["id"] for m in seen.messages}
            return {i: n for i, n in _chunks_waiting(outbox).items() if i not in delivered}

        wait(lambda: len(held()) >= 3, what="chunks waiting in the unit's outbox")
        waiting = held()
        os.kill(child.pid, signal.SIGKILL)  # like a power cut: the outbox on disk is all that is left
        child.wait()
        link.sever()  # what was still in the link is lost with it
        at_kill = fetch.last
        child = _unit_process(tmp_path, broker.port)
        path = fetch.result()
    finally:
        child.kill()
        child.wait()
        link.close()
    assert at_kill is not None and at_kill.chunks < at_kill.total_chunks
    assert sha(path.read_bytes()) == sha(jpeg)
    delivered = {m.json()["id"] for m in seen.messages}
    assert set(waiting) <= delivered, (
        "every chunk waiting in the outbox at the kill went out after the restart"
    )


class LinkProxy:
    """A TCP link between the unit and the broker that a test can damage, hold and cut.

    It forwards whole MQTT packets (fixed header: type, then the remaining length as a varint). With
    `damage_index` it flips one base64 character inside the data of the first PUBLISH carrying that
    chunk: the message stays valid JSON and a valid envelope, only its bytes no longer match their
    checksum. `hold()` stops forwarding from the unit (nothing it sends reaches the broker, so nothing
    is acknowledged); `sever()` drops every connection and whatever was held.
    """

    def __init__(self, broker_port: int, damage_index: int | None = None) -> None:
        self.broker_port = broker_port
        self.marker = None if damage_index is None else f'"index":{damage_index},'.encode()
        self.damaged = 0
        self._open = threading.Event()
        self._open.set()
        self._sockets: list[socket.socket] = []
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def hold(self) -> None:
        self._open.clear()

    def sever(self) -> None:
        for s in list(self._sockets):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        self._sockets.clear()
        self._open.set()

    def _accept(self) -> None:
        while True:
            try:
                unit, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.broker_port))
            self._sockets += [unit, upstream]
            threading.Thread(target=self._pump, args=(unit, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, unit, False), daemon=True).start()

    def _damage(self, packet: bytes) -> bytes:
        if self.marker is None or self.damaged or packet[0] >> 4 != 3 or self.marker not in packet:
            return packet
        at = packet.index(b'"data":"') + len(b'"data":"') + 40
        self.damaged += 1
        return packet[:at] + (b"B" if packet[at : at + 1] == b"A" else b"A") + packet[at + 1 :]

    def _pump(self, source: socket.socket, sink: socket.socket, upward: bool) -> None:
        buffer = b""
        try:
            while data := source.recv(65536):
                if not upward:
                    sink.sendall(data)
                    continue
                buffer += data
                while (end := _packet_end(buffer)) is not None:
                    self._open.wait()
                    if source not in self._sockets:
                        return  # severed while held: what was held is lost
                    sink.sendall(self._damage(buffer[:end]))
                    buffer = buffer[end:]
        except OSError:
            pass
        finally:
            for s in (source, sink):
                s.close()

    def close(self) -> None:
        self.sever()
        self.server.close()


def _packet_end(buffer: bytes) -> int | None:
    """Where the first complete MQTT packet in `buffer` ends, or None if it is not all here yet."""
    length, shift, i = 0, 0, 1
    while True:
        if i >= len(buffer):
            return None
        length |= (buffer[i] & 0x7F) << shift
        shift += 7
        i += 1
        if not buffer[i - 1] & 0x80:
            break
    return i + length if len(buffer) >= i + length else None


def test_a_damaged_chunk_is_refused_and_fetched_again(
    broker: Broker, collect, station, tmp_path: Path
) -> None:
    jpeg = make_jpeg(tmp_path / "images", "E3-002.jpg", 600, 400, seed=4)
    proxy = LinkProxy(broker.port, damage_index=5)
    unit = UnitSide(tmp_path, proxy.port)
    chunk_topic = TOPICS.event("cam0", "image_chunk")
    seen = collect(broker, chunk_topic)
    # A second kind of damage: a bad duplicate of chunk 3 published by someone else on the broker.
    rogue = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="rogue")

    def forge(client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        envelope = json.loads(message.payload)
        if envelope["data"]["index"] == 3 and envelope["id"] != "forged":
            envelope["id"] = "forged"
            envelope["data"]["data"] = "AAAA" + envelope["data"]["data"][4:]
            client.publish(message.topic, json.dumps(envelope), qos=1)

    rogue.on_message = forge
    rogue.on_connect = lambda c, *_: c.subscribe(chunk_topic, 1)
    rogue.connect("127.0.0.1", broker.port)
    rogue.loop_start()
    try:
        wait(rogue.is_connected, what="the rogue client")
        fetch = Fetch(station(broker.port), "E3-002.jpg", lambda p: None)
        path = fetch.result()
    finally:
        rogue.disconnect()
        rogue.loop_stop()
        unit.close()
        proxy.close()
    assert sha(path.read_bytes()) == sha(jpeg)
    assert proxy.damaged == 1
    assert fetch.last is not None and fetch.last.corrupt >= 2 and fetch.last.gaps >= 1
    fives = [m for m in seen.messages if m.json()["data"]["index"] == 5]
    assert len(fives) >= 2, "chunk 5 was sent again after the damaged copy"


def test_unknown_or_damaged_images_and_bad_requests_get_answers_in_words(
    broker: Broker, collect, station, units, tmp_path: Path
) -> None:
    unit = units(broker.port)
    fetcher = station(broker.port)
    with pytest.raises(UnknownImageError, match=r"cam-01 has no image 'E99-000.jpg'.*deleted to free space"):
        fetcher.fetch(UNIT, "E99-000.jpg", timeout=20)

    # A bare hex id, as the camera agent's: the station's file gets its suffix from the JPEG's first bytes.
    jpeg = make_jpeg(tmp_path / "images", "d9243b8923cc51bfbe99968633e408eb", 64, 48)
    path = fetcher.fetch(UNIT, "d9243b8923cc51bfbe99968633e408eb", timeout=20)
    assert path.name == "d9243b8923cc51bfbe99968633e408eb.jpg" and path.read_bytes() == jpeg
    wait(lambda: unit.delivered == ["d9243b8923cc51bfbe99968633e408eb"], what="the delivered notice")

    # An image whose bytes no longer match the SHA-256 its sidecar recorded: refused, not sent.
    jpeg = make_jpeg(tmp_path / "tmp", "x.jpg", 64, 48)
    sidecar = Sidecar(
        "E5", 0, datetime(2026, 11, 25, tzinfo=UTC), ClockSource.GPS, UNIT, "cam0", "pir", "E5-000.jpg",
        sha(jpeg), len(jpeg), 64, 48, "main",
    )  # fmt: skip
    image, _ = write_capture(tmp_path / "images", jpeg, sidecar)
    image.write_bytes(jpeg[:-10] + bytes(10))
    with pytest.raises(ImageRefusedError, match=r"no longer matches the SHA-256 recorded in E5-000\.json"):
        fetcher.fetch(UNIT, "E5-000.jpg", timeout=20)

    answers = collect(broker, TOPICS.command_response("image"))
    station_client = fetcher.client
    station_client.publish(TOPICS.command("image"), b"not json", qos=1)
    station_client.publish(TOPICS.command("image"), b'{"id":"r1","image":"../etc/passwd"}', qos=1)
    station_client.publish(TOPICS.command("image"), b'{"id":"r2","image":"a.jpg","chunk_size":5}', qos=1)
    make_jpeg(tmp_path / "images", "E6-000.jpg", 64, 48)
    wrong = json.dumps({"id": "r3", "image": "E6-000.jpg", "delivered": "0" * 64})
    station_client.publish(TOPICS.command("image"), wrong, qos=1)
    answers.wait_until(lambda ms: sum(decode(m.payload).data["status"] != "recorded" for m in ms) >= 4)
    got = [a for a in (decode(m.payload).data for m in answers.messages) if a["status"] != "recorded"]
    assert [(a["id"], a["status"]) for a in got] == [
        (None, "bad_request"),
        ("r1", "bad_request"),
        ("r2", "bad_request"),
        ("r3", "error"),
    ]
    assert "not UTF-8 JSON" in got[0]["message"]
    assert "image id '../etc/passwd' is not valid" in got[1]["message"]
    assert "'chunk_size' = 5: expected a whole number of at least 512" in got[2]["message"]
    assert "the station's copy of E6-000.jpg" in got[3]["message"] and "stays unrelayed" in got[3]["message"]
    assert unit.delivered == ["d9243b8923cc51bfbe99968633e408eb"]


# -- the pure parts --------------------------------------------------------------------------------
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
@settings(max_examples=200, deadline=None)
def test_any_request_payload_is_served_or_refused_in_words(payload: bytes) -> None:
    try:
        request = ImageRequest.parse(payload)
    except ImageRequestError as exc:
        assert str(exc)
    else:
        assert ImageRequest.parse(request.encode()) == request


# deliver the next message; drop it; deliver it twice; damage its bytes; deliver an old one again;
# deliver it but lose the requests it makes the station send; let the station's stall timer run out.
ACTIONS = ("deliver", "deliver", "deliver", "drop", "repeat", "damage", "late", "lose", "tick")


@given(
    data=st.data(),
    chunks=st.integers(1, 24),
    last=st.floats(0.001, 1.0),
    chunk_size=st.sampled_from([512, 700, 1024]),
    window=st.integers(1, 8),
    unit_window=st.integers(1, 8),
    seed=st.integers(0, 2**32),
)
@settings(max_examples=150, deadline=None)
def test_reassembly_over_a_link_that_drops_repeats_and_damages(
    data: st.DataObject, chunks: int, last: float, chunk_size: int, window: int, unit_window: int, seed: int
) -> None:
    """Whatever the link does for a while, once it behaves the image is whole and nothing bad was kept."""
    size = (chunks - 1) * chunk_size + max(1, int(last * chunk_size))
    image = random.Random(seed).randbytes(size)
    digest = sha(image)
    total = chunk_count(size, chunk_size)
    now = 0.0
    core = Reassembly("a.jpg", chunk_size=chunk_size, window=window, stall_timeout=1.0, now=now)
    wire: deque[tuple[Any, int]] = deque()  # (response or chunk, request number), in order
    history: list[tuple[Any, int]] = []
    written = bytearray(size)

    def unit(asks: list) -> None:  # the sender's answer to each request, as ImageSender builds it
        for ask in asks:
            assert len(core.asked) <= window
            count = min(ask.count, unit_window, total - ask.from_chunk)
            offset = ask.from_chunk * chunk_size
            response = ImageResponse(
                f"t.{ask.request}", Status.ACCEPTED, "ok", image="a.jpg", size=size, sha256=digest,
                chunk_size=chunk_size, total_chunks=total, from_chunk=ask.from_chunk, count=count,
            )  # fmt: skip
            chunks = cut_chunks(
                image[offset : offset + count * chunk_size], image="a.jpg", transfer="t",
                request=f"t.{ask.request}", from_chunk=ask.from_chunk, size=size, chunk_size=chunk_size,
                sha256=digest,
            )  # fmt: skip
            for item in [response, *chunks]:
                wire.append((item, ask.request))
                history.append((item, ask.request))

    def receive(item: Any, request: int) -> list:
        if isinstance(item, ImageResponse):
            return core.on_response(item, request, now)
        verdict, asks = core.on_chunk(item, request, now)
        if verdict is Verdict.NEW:
            assert item.intact()
            written[item.offset : item.offset + len(item.data)] = item.data
        return asks

    unit(core.start(now))
    chaos = data.draw(st.lists(st.sampled_from(ACTIONS), max_size=120))
    for step in range(20_000):
        if core.complete:
            break
        action = chaos[step] if step < len(chaos) else ("deliver" if wire else "tick")
        asks: list = []
        if action == "tick":
            now += 10.0
            asks = core.on_tick(now)
        elif action == "late" and history:
            asks = receive(*history[data.draw(st.integers(0, len(history) - 1))])
        elif wire:
            item, request = wire.popleft()
            if action == "repeat":
                wire.appendleft((item, request))
            if action == "damage" and isinstance(item, ImageChunk):
                item = dataclasses.replace(item, data=bytes([item.data[0] ^ 1]) + item.data[1:])
            if action != "drop":
                asks = receive(item, request)
        if action != "lose":
            unit(asks)
    assert core.complete, f"stuck with {core.received} of {total} chunks"
    assert bytes(written) == image
    assert core.received_bytes == size


def test_a_chunk_survives_its_own_encoding() -> None:
    image = bytes(range(256)) * 5
    chunks = cut_chunks(
        image,
        image="b.jpg",
        transfer="t",
        request="t.1",
        from_chunk=0,
        size=len(image),
        chunk_size=512,
        sha256=sha(image),
    )
    assert [len(c.data) for c in chunks] == [512, 512, 256]
    again = [ImageChunk.from_dict(json.loads(json.dumps(c.to_dict()))) for c in chunks]
    assert again == chunks and all(c.intact() for c in again)
