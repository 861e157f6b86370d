"""The full-resolution image on request: the unit's side of the chunked, resumable, checksummed transfer.

A camera unit relays only a thumbnail of each capture. When station staff want the full image, the
station asks for it (zigbee2mqtt ``bridge/request`` style, with a correlation id)::

    uncia/<site>/<unit>/unit/command/image            {"id":"9c1f…​.1","image":"E42-003.jpg",
                                                       "from_chunk":0,"chunk_size":8192,"count":16}
    uncia/<site>/<unit>/unit/command/image/response   envelope, type "image": accepted / unknown
                                                       image / busy / bad request / error, in words
    uncia/<site>/<unit>/<camera>/event/image_chunk    envelope, type "image_chunk": one piece

Every answer goes **through the outbox**, so a broker outage or an agent restart in the middle of a
transfer loses nothing: what was enqueued is on the card and is sent when the link is back; anything
still missing the station simply asks for again (``from_chunk`` = its first missing chunk).

The station paces the transfer: each request asks for at most ``window`` chunks, and the next request
comes only when earlier chunks have arrived. So the outbox never holds more than about one window of
one image (16 × 8 kB by default), a fix enqueued during a transfer waits behind at most that, and a
unit that cannot reach the station does not fill its card with chunks nobody is receiving. Chunks are
EVENT priority: if the outbox ever has to shed, they go before fixes (the station re-asks).

Chunks are JSON envelopes with the bytes in base64, like every other message of the unit: one format
for the relay, the station record and anyone debugging with ``mosquitto_sub`` (a binary layout would
save the 33 % base64 overhead, which matters little next to the station LAN or backhaul and would be
the only non-JSON payload on the network). See docs/image-transfer.md.
"""

from __future__ import annotations

import base64
import binascii
import collections
import hashlib
import json
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from edge.camera.sidecar import SidecarError, read_sidecar, sidecar_path
from edge.fix import ClockSource
from edge.messages import Envelope
from edge.outbox import Outbox, Priority
from edge.topics import Topics

COMMAND = "image"  # uncia/<site>/<unit>/unit/command/image (+ /response)
CHUNK_TYPE = "image_chunk"  # uncia/<site>/<unit>/<camera>/event/image_chunk
DEFAULT_CHUNK_SIZE = 8192
# 512 B keeps the envelope overhead (~400 B) from dominating; 64 kB keeps one outbox row and one MQTT
# message small enough for a Pi Zero's memory and a slow link's keepalive.
MIN_CHUNK_SIZE = 512
MAX_CHUNK_SIZE = 65536
DEFAULT_WINDOW = 16
RESPONSE_SOURCE = "unit"
# Chunks count their own `seq` (source "<camera>-transfer"): the camera's capture and thumbnail
# messages keep a gap-free sequence, and a lost chunk is the transfer's business (it is asked again).
TRANSFER_SOURCE_SUFFIX = "-transfer"
_IMAGE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_TOKEN = re.compile(r"^[\x21-\x7e]{1,128}$")  # printable ASCII without spaces: correlation/transfer ids
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class TransferError(ValueError):
    """A request, response or chunk is not what the image-transfer protocol expects; says what."""


class ImageRequestError(TransferError):
    """A request for an image cannot be served as asked; `request_id` is its id if it had one."""

    def __init__(self, message: str, request_id: str | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id


class Status(StrEnum):
    """The unit's answer to an image request."""

    ACCEPTED = "accepted"  # chunks follow
    UNKNOWN_IMAGE = "unknown_image"  # never taken here, or deleted to free space
    BUSY = "busy"  # the outbox is backed up; ask again after retry_after seconds
    BAD_REQUEST = "bad_request"  # the request itself is wrong (the station's bug)
    ERROR = "error"  # the unit could not read the image, or it is damaged on the card
    RECORDED = "recorded"  # the station's delivered notice: the image is marked relayed


def check_image_id(image: object) -> str:
    """An image id is a plain file name (``E42-003.jpg``): no directories, no ``..``."""
    if not isinstance(image, str) or not _IMAGE_ID.match(image) or ".." in image:
        raise TransferError(
            f"image id {image!r} is not valid: use a file name of letters, digits, '.', '-' or '_'"
        )
    return image


def chunk_count(size: int, chunk_size: int) -> int:
    """How many chunks of `chunk_size` bytes carry `size` bytes (the last one may be short)."""
    return -(-size // chunk_size)


def _whole(value: object, what: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high and value > high):
        limit = f" and at most {high}" if high else ""
        raise TransferError(f"'{what}' = {value!r}: expected a whole number of at least {low}{limit}")
    return value


def _token(value: object, what: str) -> str:
    if not isinstance(value, str) or not _TOKEN.match(value):
        raise TransferError(f"'{what}' = {value!r}: expected 1-128 printable characters without spaces")
    return value


def _object(payload: bytes | str, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise TransferError(f"{what} is not UTF-8 JSON ({exc})") from exc
    if not isinstance(obj, dict):
        raise TransferError(f"{what} is JSON but not an object")
    return obj


@dataclass(frozen=True, slots=True)
class ImageRequest:
    """The station asks for chunks ``from_chunk`` … ``from_chunk + count - 1`` of one image.

    ``transfer`` names the whole fetch (all its requests); the unit echoes it in every chunk so the
    station can tell its own chunks from another station's. ``count`` None: as many as the unit sends
    at once (its window). With ``delivered`` (the SHA-256 of the station's verified copy) it is not a
    request for chunks but the station's notice that it now holds the whole image: the unit marks it
    relayed, so its card may free it first when space runs low.
    """

    id: str
    image: str
    from_chunk: int = 0
    chunk_size: int = DEFAULT_CHUNK_SIZE
    count: int | None = None
    transfer: str | None = None
    delivered: str | None = None

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "image": self.image,
            "from_chunk": self.from_chunk,
            "chunk_size": self.chunk_size,
        }
        if self.count is not None:
            body["count"] = self.count
        if self.transfer is not None:
            body["transfer"] = self.transfer
        if self.delivered is not None:
            body["delivered"] = self.delivered
        return body

    def encode(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()

    @classmethod
    def parse(cls, payload: bytes | str) -> ImageRequest:
        """Check a request; `ImageRequestError` (with the id, when there is one) says what is wrong."""
        try:
            obj = _object(payload, "the image request")
        except TransferError as exc:
            raise ImageRequestError(str(exc)) from exc
        request_id = obj.get("id") if isinstance(obj.get("id"), str) else None
        try:
            transfer = obj.get("transfer")
            count = obj.get("count")
            delivered = obj.get("delivered")
            if delivered is not None and (not isinstance(delivered, str) or not _SHA256.match(delivered)):
                raise TransferError(
                    f"'delivered' = {delivered!r}: expected a SHA-256 of 64 lowercase hex digits"
                )
            return cls(
                id=_token(obj.get("id"), "id"),
                image=check_image_id(obj.get("image")),
                from_chunk=_whole(obj.get("from_chunk", 0), "from_chunk", 0),
                chunk_size=_whole(
                    obj.get("chunk_size", DEFAULT_CHUNK_SIZE), "chunk_size", MIN_CHUNK_SIZE, MAX_CHUNK_SIZE
                ),
                count=None if count is None else _whole(count, "count", 1),
                transfer=None if transfer is None else _token(transfer, "transfer"),
                delivered=delivered,
            )
        except TransferError as exc:
            raise ImageRequestError(f"bad image request: {exc}", request_id) from exc


@dataclass(frozen=True, slots=True)
class ImageResponse:
    """The unit's answer on ``…/command/image/response`` (the ``data`` of a type ``image`` envelope).

    With ``accepted``: the image's size, SHA-256 and chunk count, and which chunks follow
    (``from_chunk``, ``count``). ``retry_after`` (seconds) comes with ``busy``.
    """

    id: str | None
    status: Status
    message: str
    image: str | None = None
    transfer: str | None = None
    size: int | None = None
    sha256: str | None = None
    chunk_size: int | None = None
    total_chunks: int | None = None
    from_chunk: int | None = None
    count: int | None = None
    retry_after: float | None = None

    def to_dict(self) -> dict[str, Any]:
        body = {
            "id": self.id,
            "status": str(self.status),
            "message": self.message,
            "image": self.image,
            "transfer": self.transfer,
            "size": self.size,
            "sha256": self.sha256,
            "chunk_size": self.chunk_size,
            "total_chunks": self.total_chunks,
            "from_chunk": self.from_chunk,
            "count": self.count,
            "retry_after": self.retry_after,
        }
        return {k: v for k, v in body.items() if v is not None or k == "id"}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImageResponse:
        """Check a response body; `TransferError` names the bad field."""
        try:
            status = Status(data.get("status"))
        except ValueError as exc:
            raise TransferError(f"image response status {data.get('status')!r} is not known") from exc
        message = data.get("message")
        if not isinstance(message, str):
            raise TransferError("image response has no 'message' text")
        fields: dict[str, Any] = {}
        if status is Status.ACCEPTED:
            sha = data.get("sha256")
            if not isinstance(sha, str) or not _SHA256.match(sha):
                raise TransferError(f"'sha256' = {sha!r}: expected 64 lowercase hex digits")
            fields = {
                "image": check_image_id(data.get("image")),
                "size": _whole(data.get("size"), "size", 1),
                "sha256": sha,
                "chunk_size": _whole(data.get("chunk_size"), "chunk_size", MIN_CHUNK_SIZE, MAX_CHUNK_SIZE),
                "total_chunks": _whole(data.get("total_chunks"), "total_chunks", 1),
                "from_chunk": _whole(data.get("from_chunk"), "from_chunk", 0),
                "count": _whole(data.get("count"), "count", 0),
            }
        retry = data.get("retry_after")
        return cls(
            id=data.get("id") if isinstance(data.get("id"), str) else None,
            status=status,
            message=message,
            transfer=data.get("transfer") if isinstance(data.get("transfer"), str) else None,
            retry_after=float(retry)
            if isinstance(retry, int | float) and not isinstance(retry, bool)
            else None,
            **fields,
        )


@dataclass(frozen=True, slots=True)
class ImageChunk:
    """One piece of an image: bytes ``index * chunk_size`` … of the whole, with both checksums.

    ``sha256`` is of the whole image (the same in every chunk); ``chunk_sha256`` of this piece's bytes,
    so a damaged piece is found and asked for again without fetching the whole image.
    """

    image: str
    transfer: str
    request: str
    index: int
    total: int
    size: int
    chunk_size: int
    sha256: str
    chunk_sha256: str
    data: bytes

    @property
    def offset(self) -> int:
        return self.index * self.chunk_size

    def intact(self) -> bool:
        """Whether the bytes match the chunk's own checksum (False: damaged on the way)."""
        return hashlib.sha256(self.data).hexdigest() == self.chunk_sha256

    def to_dict(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "transfer": self.transfer,
            "request": self.request,
            "index": self.index,
            "total": self.total,
            "size": self.size,
            "chunk_size": self.chunk_size,
            "sha256": self.sha256,
            "chunk_sha256": self.chunk_sha256,
            "data": base64.b64encode(self.data).decode("ascii"),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImageChunk:
        """Check a chunk body (shape and lengths, not the checksum: see `intact`)."""
        size = _whole(data.get("size"), "size", 1)
        chunk_size = _whole(data.get("chunk_size"), "chunk_size", MIN_CHUNK_SIZE, MAX_CHUNK_SIZE)
        total = _whole(data.get("total"), "total", 1)
        if total != chunk_count(size, chunk_size):
            raise TransferError(f"'total' = {total} does not fit {size} bytes in chunks of {chunk_size}")
        index = _whole(data.get("index"), "index", 0, total - 1)
        for name in ("sha256", "chunk_sha256"):
            if not isinstance(data.get(name), str) or not _SHA256.match(data[name]):
                raise TransferError(f"'{name}' = {data.get(name)!r}: expected 64 lowercase hex digits")
        encoded = data.get("data")
        if not isinstance(encoded, str):
            raise TransferError("chunk has no base64 'data'")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise TransferError(f"chunk 'data' is not base64 ({exc})") from exc
        expected = min(chunk_size, size - index * chunk_size)
        if len(raw) != expected:
            raise TransferError(f"chunk {index} holds {len(raw)} bytes, expected {expected}")
        return cls(
            image=check_image_id(data.get("image")),
            transfer=_token(data.get("transfer"), "transfer"),
            request=_token(data.get("request"), "request"),
            index=index,
            total=total,
            size=size,
            chunk_size=chunk_size,
            sha256=data["sha256"],
            chunk_sha256=data["chunk_sha256"],
            data=raw,
        )


def cut_chunks(
    window: bytes,
    *,
    image: str,
    transfer: str,
    request: str,
    from_chunk: int,
    size: int,
    chunk_size: int,
    sha256: str,
) -> list[ImageChunk]:
    """The chunks carried by `window`, the image's bytes from chunk `from_chunk` on (pure)."""
    total = chunk_count(size, chunk_size)
    chunks = []
    for n, start in enumerate(range(0, len(window), chunk_size)):
        piece = window[start : start + chunk_size]
        checksum = hashlib.sha256(piece).hexdigest()
        chunks.append(
            ImageChunk(
                image, transfer, request, from_chunk + n, total, size, chunk_size, sha256, checksum, piece
            )
        )
    return chunks


@dataclass(frozen=True, slots=True)
class _Described:
    size: int
    sha256: str
    damaged: str  # why the image cannot be sent as it is, or ""


def _describe(path: Path, stat: os.stat_result) -> _Described:
    digest = hashlib.sha256()
    with open(path, "rb") as image:
        while block := image.read(1 << 20):
            digest.update(block)
    sha = digest.hexdigest()
    damaged = ""
    if stat.st_size == 0:
        damaged = "the image file is empty (the capture was cut short)"
    sidecar = sidecar_path(path)
    try:
        recorded: str | None = read_sidecar(sidecar).sha256
    except SidecarError:
        recorded = None  # no sidecar (an orphan after a power cut) or unreadable: nothing to compare
    if recorded is not None and recorded != sha:
        damaged = (
            f"the image on the unit's card no longer matches the SHA-256 recorded in {sidecar.name} "
            "when it was taken (card damage?); it is not sent"
        )
    return _Described(stat.st_size, sha, damaged)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ImageSender:
    """Sends full-resolution images to the station when it asks, chunk by chunk through the outbox.

    Wire it to the unit's relay: ``sender.attach(relay)`` (or
    ``relay.subscribe(sender.request_topic, sender.handle_request)``). `find_image(image_id)` returns
    the path of the stored JPEG, or None if the unit does not have it (any more). `on_delivered(image_id)`
    is called when the station confirms it holds the whole image (its SHA-256 equal to the card's),
    e.g. the camera agent's ``mark_relayed``, so the card frees that image first when it fills.

    Each request is answered with at most `window` chunks (the station asks for the next ones as these
    arrive), so a transfer never crowds fixes out of the outbox. When the outbox already holds more
    than `busy_depth` messages (the link is slow or just came back from an outage) the unit answers
    ``busy`` and the station asks again later: the backlog of fixes goes first.

    The first request for an image reads the whole file once to compute its SHA-256 (and compares it
    with the sidecar's); later requests for the same unchanged file use the remembered value.
    Runs on the relay thread: every failure becomes a response in words, never an exception.
    """

    def __init__(
        self,
        outbox: Outbox,
        topics: Topics,
        envelope: Envelope,
        find_image: Callable[[str], Path | None],
        *,
        on_delivered: Callable[[str], object] | None = None,
        camera: str = "cam0",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        window: int = DEFAULT_WINDOW,
        busy_depth: int = 2000,
        retry_after: float = 10.0,
        clock_source: Callable[[], ClockSource] = lambda: ClockSource.UNSYNCED,
        wall: Callable[[], datetime] = _utc_now,
        log: logging.Logger | None = None,
    ) -> None:
        if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk_size {chunk_size}: expected {MIN_CHUNK_SIZE} to {MAX_CHUNK_SIZE} bytes")
        if window < 1:
            raise ValueError(f"window {window}: expected at least 1 chunk")
        self.outbox = outbox
        self.topics = topics
        self.envelope = envelope
        self.find_image = find_image
        self.on_delivered = on_delivered
        self.camera = camera
        self.chunk_size = chunk_size
        self.window = window
        self.busy_depth = busy_depth
        self.retry_after = retry_after
        self.clock_source = clock_source
        self.wall = wall
        self.log = log or logging.getLogger("uncia.camera.transfer")
        self.chunk_topic = topics.event(camera, CHUNK_TYPE)
        self.response_topic = topics.command_response(COMMAND)
        # A QoS 1 request can arrive twice; answering both would send the window twice.
        self._seen: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._described: collections.OrderedDict[tuple[Any, ...], _Described] = collections.OrderedDict()
        self.counters: dict[str, int] = dict.fromkeys(
            ("requests", "duplicate_requests", "accepted", "refused", "busy", "chunks_enqueued", "delivered"),
            0,
        )

    @property
    def request_topic(self) -> str:
        """What the unit subscribes to: ``uncia/<site>/<unit>/unit/command/image``."""
        return self.topics.command(COMMAND)

    def attach(self, relay: Any) -> None:
        """Subscribe to image requests through `relay` (an `edge.relay.Relay`); renewed on reconnect."""
        relay.subscribe(self.request_topic, self.handle_request)

    def handle_request(self, topic: str, payload: bytes) -> None:
        """Answer one request (a `Relay.subscribe` handler): a response, then the chunks, via the outbox."""
        self.counters["requests"] += 1
        try:
            request = ImageRequest.parse(payload)
        except ImageRequestError as exc:
            self._refuse(exc.request_id, Status.BAD_REQUEST, str(exc), None)
            return
        if request.id in self._seen:
            self.counters["duplicate_requests"] += 1
            return
        self._seen[request.id] = None
        if len(self._seen) > 256:
            self._seen.popitem(last=False)
        try:
            self._answer(request)
        except Exception as exc:  # the relay thread must keep going; the station gets the words
            self.log.exception("image request %s for %s failed", request.id, request.image)
            self._refuse(request.id, Status.ERROR, f"the unit could not send {request.image}: {exc}", request)

    # -- answering ---------------------------------------------------------------------------------
    def _answer(self, request: ImageRequest) -> None:
        image = request.image
        path = self.find_image(image)
        described = None if path is None else self._describe(Path(path))
        if path is None or described is None:
            self._refuse(
                request.id,
                Status.UNKNOWN_IMAGE,
                f"unit {self.topics.unit} has no image {image!r} (never taken here, or deleted to free space)",
                request,
            )
            return
        if described.damaged:
            self._refuse(request.id, Status.ERROR, f"{image}: {described.damaged}", request)
            return
        if request.delivered is not None:
            self._record_delivery(request, described)
            return
        chunk_size = request.chunk_size
        total = chunk_count(described.size, chunk_size)
        if request.from_chunk >= total:
            self._refuse(
                request.id,
                Status.BAD_REQUEST,
                f"from_chunk {request.from_chunk} is past the end: {image} has {total} chunks of {chunk_size} bytes",
                request,
            )
            return
        waiting = self.outbox.depth
        if waiting > self.busy_depth:
            self.counters["busy"] += 1
            self._refuse(
                request.id,
                Status.BUSY,
                f"{waiting:,} messages are waiting in the unit's outbox; fixes go first, ask again later",
                request,
                retry_after=self.retry_after,
            )
            return
        count = min(request.count or self.window, self.window, total - request.from_chunk)
        window = self._read(Path(path), request.from_chunk * chunk_size, count, chunk_size, described)
        transfer = request.transfer or request.id
        chunks = cut_chunks(
            window,
            image=image,
            transfer=transfer,
            request=request.id,
            from_chunk=request.from_chunk,
            size=described.size,
            chunk_size=chunk_size,
            sha256=described.sha256,
        )
        response = ImageResponse(
            request.id,
            Status.ACCEPTED,
            f"sending chunks {request.from_chunk} to {request.from_chunk + count - 1} of {total}",
            image=image,
            transfer=transfer,
            size=described.size,
            sha256=described.sha256,
            chunk_size=chunk_size,
            total_chunks=total,
            from_chunk=request.from_chunk,
            count=count,
        )
        # Response first, then the chunks: the outbox keeps this order all the way to the station.
        self._respond(response)
        self.counters["accepted"] += 1
        log = self.log.info if request.from_chunk == 0 else self.log.debug
        log(
            "sending %s (%s bytes, %d chunks) from chunk %d (%d now)",
            image,
            f"{described.size:,}",
            total,
            request.from_chunk,
            count,
        )
        for chunk in chunks:
            self._enqueue(self.chunk_topic, self.camera + TRANSFER_SOURCE_SUFFIX, CHUNK_TYPE, chunk.to_dict())
        self.counters["chunks_enqueued"] += len(chunks)

    def _record_delivery(self, request: ImageRequest, described: _Described) -> None:
        if request.delivered != described.sha256:
            self._refuse(
                request.id,
                Status.ERROR,
                f"the station's copy of {request.image} (SHA-256 {request.delivered}) differs from the "
                f"card's ({described.sha256}); it stays unrelayed here",
                request,
            )
            return
        if self.on_delivered is not None:
            self.on_delivered(request.image)
        self.counters["delivered"] += 1
        self.log.info("the station holds the whole of %s; marked as relayed", request.image)
        self._respond(
            ImageResponse(
                request.id,
                Status.RECORDED,
                f"{request.image} is marked as relayed on unit {self.topics.unit}",
                image=request.image,
                transfer=request.transfer or request.id,
            )
        )

    def _describe(self, path: Path) -> _Described | None:
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        key = (str(path), stat.st_ino, stat.st_size, stat.st_mtime_ns)
        described = self._described.get(key)
        if described is None:
            try:
                described = _describe(path, stat)
            except FileNotFoundError:
                return None
            self._described[key] = described
            if len(self._described) > 16:
                self._described.popitem(last=False)
        return described

    def _read(self, path: Path, offset: int, count: int, chunk_size: int, described: _Described) -> bytes:
        with open(path, "rb") as image:
            stat = os.fstat(image.fileno())
            image.seek(offset)
            window = image.read(count * chunk_size)
        expected = min(count * chunk_size, described.size - offset)
        if stat.st_size != described.size or len(window) != expected:
            self._described.clear()
            raise OSError(f"the image changed on the card while it was being sent ({stat.st_size} bytes now)")
        return window

    def _refuse(
        self,
        request_id: str | None,
        status: Status,
        message: str,
        request: ImageRequest | None,
        retry_after: float | None = None,
    ) -> None:
        if status is not Status.BUSY:
            self.counters["refused"] += 1
            self.log.warning("image request %s: %s: %s", request_id, status, message)
        self._respond(
            ImageResponse(
                request_id,
                status,
                message,
                image=request.image if request else None,
                transfer=(request.transfer or request.id) if request else None,
                retry_after=retry_after,
            )
        )

    def _respond(self, response: ImageResponse) -> None:
        self._enqueue(self.response_topic, RESPONSE_SOURCE, COMMAND, response.to_dict())

    def _enqueue(self, topic: str, source: str, type_: str, data: dict[str, Any]) -> None:
        moment = self.wall()
        clock = self.clock_source()
        envelope = self.envelope

        def payload(seq: int) -> bytes:
            return envelope.encode(source, seq, type_, data, time=moment, received=moment, clock=clock)

        self.outbox.enqueue(source, topic, payload, qos=1, priority=Priority.EVENT)
