"""The station's side of the full-image transfer: ask a camera unit for an image and put it back together.

``ImageFetcher(client, "helan", "/var/lib/uncia/images").fetch("cam-01", "E42-003.jpg", timeout=300)``
returns the path of the image once every byte has arrived and its SHA-256 matches the unit's. Until
then the bytes live in a temporary file beside the final one; the final name appears in one atomic
rename, so a half-fetched image is never mistaken for a whole one.

How it survives a bad link (for the technician reading the log):

- It asks for a window of chunks at a time and for the next ones as they arrive, so a fix on the
  unit waits behind at most one window of image data.
- Every chunk is checked against its own SHA-256; a damaged one is dropped and asked for again. A
  chunk seen twice (re-sent after an outage) is dropped by its index.
- A chunk that should have come and did not (a later one of the same or a later request arrived
  first) is asked for again at once; if nothing arrives for ``stall_timeout`` seconds (broker restart,
  unit rebooting, request lost) it asks again from the first missing chunk (``from_chunk``).
- The whole image is checked against the unit's SHA-256 before it is kept.

The planning is `Reassembly`, a pure object (no I/O, no clock of its own) fed with what arrived;
`ImageFetcher` is the thin shell around it: the MQTT client, the temporary file and the waiting.
The protocol itself is described in docs/image-transfer.md and `edge.camera.transfer`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import queue
import random
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from edge.camera.transfer import (
    CHUNK_TYPE,
    COMMAND,
    DEFAULT_CHUNK_SIZE,
    DEFAULT_WINDOW,
    ImageChunk,
    ImageRequest,
    ImageResponse,
    Status,
    TransferError,
    check_image_id,
)
from edge.messages import MessageError, decode
from edge.topics import PREFIX, TopicError, Topics


class ImageFetchError(RuntimeError):
    """An image could not be fetched; the message says why and what was received."""


class UnknownImageError(ImageFetchError):
    """The unit says it does not have this image (never taken there, or deleted to free space)."""


class ImageRefusedError(ImageFetchError):
    """The unit refused the request or could not read the image; the message is the unit's own."""


class ImageCorruptError(ImageFetchError):
    """Every chunk passed its checksum but the whole image did not, even after fetching it again."""


class FetchTimeoutError(ImageFetchError, TimeoutError):
    """The image did not arrive in time (unit offline, link down); what had arrived is in the text."""


class Verdict(StrEnum):
    """What became of one received chunk."""

    NEW = "new"
    DUPLICATE = "duplicate"  # that index is already here
    CORRUPT = "corrupt"  # bytes do not match the chunk's checksum
    FOREIGN = "foreign"  # another version of the image, or another chunk size: not ours


@dataclass(frozen=True, slots=True)
class Ask:
    """One request to send: chunks ``from_chunk`` … ``from_chunk + count - 1``; `request` is its number."""

    request: int
    from_chunk: int
    count: int


@dataclass(frozen=True, slots=True)
class FetchProgress:
    """How a fetch is going (given to the ``progress`` callback after every new chunk and at the end)."""

    unit: str
    image: str
    chunks: int
    total_chunks: int  # 0 until the unit has said
    bytes: int
    size: int  # 0 until the unit has said
    requests: int
    resumes: int  # times nothing arrived for stall_timeout and it asked again
    gaps: int  # chunks found missing and asked for again
    duplicates: int
    corrupt: int
    restarts: int  # whole image failed its SHA-256 and was fetched again
    done: bool = False

    @property
    def fraction(self) -> float:
        return self.chunks / self.total_chunks if self.total_chunks else 0.0


class Reassembly:
    """Which chunks of one image are here and what to ask for next (pure; times are passed in).

    At most `window` chunks are asked for and not yet received at any moment; a new request goes out
    when that drops to half. Delivery from one unit is in order (one outbox, one MQTT connection), so
    when anything of request r arrives, every chunk of an earlier request, or of r before it, that
    has not arrived will not: it is asked for again (a *gap*).
    """

    def __init__(self, image: str, *, chunk_size: int, window: int, stall_timeout: float, now: float) -> None:
        self.image = image
        self.chunk_size = chunk_size
        self.window = max(1, window)
        self.stall_timeout = stall_timeout
        self.size = 0
        self.sha256 = ""
        self.total = 0
        self.have = bytearray()
        self.received = 0
        self.asked: dict[int, int] = {}  # chunk index -> number of the request that asked for it
        self.counts = dict.fromkeys(
            ("requests", "resumes", "gaps", "duplicates", "corrupt", "foreign", "restarts"), 0
        )
        self._next_request = 1
        self._cursor = 0  # every chunk below it is here
        self._last_progress = now
        self._hold_until: float | None = None
        self._stalls = 0  # resumes since the last new chunk: each waits twice as long (up to 8x)

    @property
    def complete(self) -> bool:
        return self.total > 0 and self.received == self.total

    @property
    def received_bytes(self) -> int:
        if not self.total:
            return 0
        short_last = self.chunk_size * self.total - self.size  # the last chunk is this much shorter
        return self.received * self.chunk_size - (short_last if self.have[-1] else 0)

    def start(self, now: float) -> list[Ask]:
        self._last_progress = now
        return self._top_up(now)

    def deadline(self) -> float:
        """When `on_tick` has something to do if nothing arrives before."""
        if self._hold_until is not None:
            return self._hold_until
        return self._last_progress + self._patience()

    def _patience(self) -> float:
        # A slow link that needs longer than stall_timeout per window must not get a new copy of the
        # window in the unit's outbox every stall_timeout: back off while nothing new arrives.
        return self.stall_timeout * min(2**self._stalls, 8)

    def postpone(self, now: float) -> None:
        """Restart the stall timer (the link is down: asking now would be lost)."""
        self._last_progress = now

    def on_tick(self, now: float) -> list[Ask]:
        if self.complete:
            return []
        if self._hold_until is not None:
            if now < self._hold_until:
                return []
            self._hold_until = None
            self._last_progress = now
            return self._top_up(now)
        if now - self._last_progress < self._patience():
            return []
        self.counts["resumes"] += 1
        self._stalls += 1
        self.asked.clear()
        self._last_progress = now
        return self._top_up(now)

    def on_response(self, response: ImageResponse, request: int | None, now: float) -> list[Ask]:
        """The unit's answer; `request` is our request number if it answers one of ours."""
        if request is None:
            if response.status is Status.ACCEPTED:
                self._adopt(response.size or 0, response.sha256 or "", response.chunk_size or 0, ours=False)
            return self._top_up(now)
        if response.status is Status.UNKNOWN_IMAGE:
            raise UnknownImageError(response.message)
        if response.status in (Status.BAD_REQUEST, Status.ERROR):
            raise ImageRefusedError(f"the unit refused: {response.message}")
        self._last_progress = now
        self._forget(lambda j, r: r < request)
        if response.status is Status.BUSY:
            self._forget(lambda j, r: r == request)
            self._hold_until = now + (response.retry_after or self.stall_timeout)
            return []
        if not self._adopt(response.size or 0, response.sha256 or "", response.chunk_size or 0, ours=True):
            raise ImageRefusedError(
                f"the unit answered in chunks of {response.chunk_size} bytes, not the {self.chunk_size} asked for"
            )
        first, count = response.from_chunk or 0, response.count or 0
        self._forget(lambda j, r: r == request and not first <= j < first + count)  # the unit sends fewer
        return self._top_up(now)

    def on_chunk(self, chunk: ImageChunk, request: int | None, now: float) -> tuple[Verdict, list[Ask]]:
        """A chunk arrived (checked for shape); the caller writes its bytes when the verdict is NEW."""
        if not chunk.intact():
            self.counts["corrupt"] += 1
            return Verdict.CORRUPT, []
        if chunk.image != self.image or not self._adopt(
            chunk.size, chunk.sha256, chunk.chunk_size, ours=False
        ):
            self.counts["foreign"] += 1
            return Verdict.FOREIGN, []
        index = chunk.index
        if self.have[index]:
            self.counts["duplicates"] += 1
            verdict = Verdict.DUPLICATE
        else:
            self.have[index] = 1
            self.received += 1
            self._last_progress = now
            self._stalls = 0
            verdict = Verdict.NEW
        self.asked.pop(index, None)
        if request is not None:
            self._forget(lambda j, r: r < request or (r == request and j < index))
        return verdict, self._top_up(now)

    def restart(self, now: float) -> list[Ask]:
        """The whole image failed its SHA-256: forget every chunk and fetch it all again."""
        self.counts["restarts"] += 1
        self.have = bytearray(self.total)
        self.received = 0
        self._cursor = 0
        self.asked.clear()
        self._last_progress = now
        return self._top_up(now)

    # -- planning ----------------------------------------------------------------------------------
    def _adopt(self, size: int, sha256: str, chunk_size: int, *, ours: bool) -> bool:
        """Take the image's size and hash from the first answer; False if these are another's."""
        if chunk_size != self.chunk_size or size <= 0:
            return False
        if not self.total:
            self.size, self.sha256 = size, sha256
            self.total = -(-size // chunk_size)
            self.have = bytearray(self.total)
            self._forget(lambda j, r: j >= self.total)
            return True
        if (size, sha256) == (self.size, self.sha256):
            return True
        if ours:
            raise ImageRefusedError(
                f"{self.image} changed on the unit during the transfer (now {size} bytes, SHA-256 "
                f"{sha256[:12]}…, was {self.size} bytes, {self.sha256[:12]}…); fetch it again"
            )
        return False

    def _forget(self, lost: Callable[[int, int], bool]) -> None:
        gone = [j for j, r in self.asked.items() if lost(j, r)]
        for j in gone:
            del self.asked[j]
            if self.total and j < self.total and not self.have[j]:
                self.counts["gaps"] += 1

    def _ask(self, first: int, count: int) -> Ask:
        number = self._next_request
        self._next_request += 1
        self.counts["requests"] += 1
        for j in range(first, first + count):
            self.asked[j] = number
        return Ask(number, first, count)

    def _top_up(self, now: float) -> list[Ask]:
        if self._hold_until is not None and now < self._hold_until:
            return []
        if not self.total:  # size not known yet: one request for the first window
            return [] if self.asked else [self._ask(0, self.window)]
        while self._cursor < self.total and self.have[self._cursor]:
            self._cursor += 1
        asks: list[Ask] = []
        index = self._cursor
        while len(self.asked) <= self.window // 2 and index < self.total:
            if self.have[index] or index in self.asked:
                index += 1
                continue
            room = self.window - len(self.asked)
            end = index
            while end < self.total and end - index < room and not self.have[end] and end not in self.asked:
                end += 1
            asks.append(self._ask(index, end - index))
            index = end
        return asks


@dataclass
class _Active:
    unit: str
    image: str
    transfer: str
    inbox: queue.SimpleQueue[tuple[str, dict[str, Any]]]


class ImageFetcher:
    """Fetches full-resolution images from camera units of one site, over a running paho client.

    The client (paho-mqtt 2.x) is the caller's: connected, its network loop running (``loop_start``),
    ideally with a persistent session so chunks sent during a station reconnect are kept by the
    broker. The fetcher adds its own message callbacks for image chunks and responses (so those
    messages no longer reach the client's ``on_message``) and subscribes per unit while fetching.

    `fetch` blocks until the image is whole or `timeout` passes; several threads may fetch at once
    (different images). Files go to ``dest_dir/<unit>/<image id>``, with ``.jpg`` (or ``.png``) added
    when the id has no suffix of its own (the camera's ids are bare hex).
    """

    def __init__(
        self,
        client: mqtt.Client,
        site: str,
        dest_dir: str | Path,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        window: int = DEFAULT_WINDOW,
        stall_timeout: float = 10.0,
        max_restarts: int = 1,
        clock: Callable[[], float] = time.monotonic,
        rand: random.Random | None = None,
        log: logging.Logger | None = None,
    ) -> None:
        self.client = client
        self.site = site
        self.dest_dir = Path(dest_dir)
        self.chunk_size = chunk_size
        self.window = window
        self.stall_timeout = stall_timeout
        self.max_restarts = max_restarts
        self._clock = clock
        self._rand = rand or random.SystemRandom()
        self.log = log or logging.getLogger("uncia.gateway.image_fetch")
        self._lock = threading.Lock()
        self._by_image: dict[tuple[str, str], _Active] = {}
        self._by_transfer: dict[str, _Active] = {}
        self._subscribers: dict[str, int] = {}  # unit -> fetches running
        Topics(site, "x")  # checks the site name now, not at the first fetch
        self._chunk_filter = f"{PREFIX}/{site}/+/+/event/{CHUNK_TYPE}"
        self._response_filter = f"{PREFIX}/{site}/+/unit/command/{COMMAND}/response"
        client.message_callback_add(self._chunk_filter, self._on_chunk)
        client.message_callback_add(self._response_filter, self._on_response)

    def close(self) -> None:
        """Remove the fetcher's callbacks from the client (the client itself stays the caller's)."""
        self.client.message_callback_remove(self._chunk_filter)
        self.client.message_callback_remove(self._response_filter)

    def __enter__(self) -> ImageFetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- fetching ----------------------------------------------------------------------------------
    def fetch(
        self,
        unit: str,
        image: str,
        timeout: float = 300.0,
        *,
        progress: Callable[[FetchProgress], None] | None = None,
    ) -> Path:
        """Fetch `image` from `unit`; returns the path of the verified file.

        Raises `UnknownImageError`, `ImageRefusedError`, `ImageCorruptError` or `FetchTimeoutError`.
        """
        try:
            topics = Topics(self.site, unit)
            check_image_id(image)
        except (TopicError, TransferError) as exc:
            raise ImageFetchError(str(exc)) from exc
        active = _Active(unit, image, f"{self._rand.getrandbits(48):012x}", queue.SimpleQueue())
        with self._lock:
            if (unit, image) in self._by_image:
                raise ImageFetchError(f"{image} from {unit} is already being fetched")
            self._by_image[unit, image] = active
            self._by_transfer[active.transfer] = active
            first_for_unit = self._subscribers.get(unit, 0) == 0
            self._subscribers[unit] = self._subscribers.get(unit, 0) + 1
        folder = self.dest_dir / unit
        fd = -1
        tmp = ""
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{image}.", suffix=".part", dir=folder)
            if first_for_unit:
                self._subscribe(topics)
            return self._run(topics, active, fd, tmp, folder / image, timeout, progress)
        finally:
            if fd >= 0:
                os.close(fd)
            if tmp:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
            with self._lock:
                del self._by_image[unit, image]
                del self._by_transfer[active.transfer]
                self._subscribers[unit] -= 1
                last = self._subscribers[unit] == 0
                if last:
                    del self._subscribers[unit]
            if last:
                self.client.unsubscribe(self._unit_filters(topics))

    def _run(
        self,
        topics: Topics,
        active: _Active,
        fd: int,
        tmp: str,
        final: Path,
        timeout: float,
        progress: Callable[[FetchProgress], None] | None,
    ) -> Path:
        clock = self._clock
        now = clock()
        deadline = now + timeout
        core = Reassembly(
            active.image,
            chunk_size=self.chunk_size,
            window=self.window,
            stall_timeout=self.stall_timeout,
            now=now,
        )
        self._ask(topics, active, core.start(now))
        while True:
            if core.complete:
                if self._verified(fd, core):
                    os.fsync(fd)
                    final = final.with_name(final.name + _suffix_for(final.name, os.pread(fd, 8, 0)))
                    os.replace(tmp, final)
                    _fsync_dir(final.parent)
                    self._confirm(topics, active, core.sha256)
                    self._report(progress, active, core, done=True)
                    self.log.info(
                        "fetched %s from %s: %s bytes, %d chunks, %d resumes, %d damaged chunks re-fetched",
                        active.image,
                        active.unit,
                        f"{core.size:,}",
                        core.total,
                        core.counts["resumes"],
                        core.counts["corrupt"],
                    )
                    return final
                if core.counts["restarts"] >= self.max_restarts:
                    raise ImageCorruptError(
                        f"{active.image} from {active.unit}: every chunk passed its checksum but the whole "
                        f"image did not match SHA-256 {core.sha256} (fetched {core.counts['restarts'] + 1} times)"
                    )
                self.log.error("%s from %s failed its SHA-256; fetching it again", active.image, active.unit)
                self._ask(topics, active, core.restart(clock()))
                continue
            now = clock()
            if now >= deadline:
                raise FetchTimeoutError(
                    f"{active.image} from {active.unit}: {core.received} of {core.total or '?'} chunks "
                    f"arrived within {timeout:.0f} s ({core.counts['resumes']} times nothing came for "
                    f"{self.stall_timeout:.0f} s); is the unit online and its link up?"
                )
            try:
                kind, body = active.inbox.get(timeout=max(0.0, min(deadline, core.deadline()) - now))
            except queue.Empty:
                if not self.client.is_connected():
                    core.postpone(clock())  # requests now would be lost; paho is reconnecting
                    continue
                asks = core.on_tick(clock())
                if asks:
                    self.log.info(
                        "nothing from %s for %.0f s while fetching %s; asking again from chunk %d",
                        active.unit,
                        self.stall_timeout,
                        active.image,
                        asks[0].from_chunk,
                    )
                    self._subscribe(topics)  # a clean-session client lost them in a reconnect
                    self._ask(topics, active, asks)
                continue
            if kind == "response":
                self._ask(topics, active, self._handle_response(core, active, body))
            else:
                self._ask(topics, active, self._handle_chunk(core, active, body, fd, progress))

    def _handle_response(self, core: Reassembly, active: _Active, body: dict[str, Any]) -> list[Ask]:
        try:
            response = ImageResponse.from_dict(body)
        except TransferError as exc:
            self.log.warning("ignoring a bad image response from %s: %s", active.unit, exc)
            return []
        return core.on_response(response, _request_number(active.transfer, response.id), self._clock())

    def _handle_chunk(
        self,
        core: Reassembly,
        active: _Active,
        body: dict[str, Any],
        fd: int,
        progress: Callable[[FetchProgress], None] | None,
    ) -> list[Ask]:
        try:
            chunk = ImageChunk.from_dict(body)
        except TransferError as exc:
            core.counts["corrupt"] += 1
            self.log.warning("dropping a damaged chunk of %s from %s: %s", active.image, active.unit, exc)
            return []
        ours = chunk.transfer == active.transfer
        verdict, asks = core.on_chunk(
            chunk, _request_number(active.transfer, chunk.request) if ours else None, self._clock()
        )
        if verdict is Verdict.NEW:
            os.pwrite(fd, chunk.data, chunk.offset)
            self._report(progress, active, core)
        elif verdict is Verdict.CORRUPT:
            self.log.warning(
                "chunk %d of %s from %s failed its checksum; it will be asked for again",
                chunk.index,
                active.image,
                active.unit,
            )
        return asks

    def _verified(self, fd: int, core: Reassembly) -> bool:
        os.ftruncate(fd, core.size)
        digest = hashlib.sha256()
        offset = 0
        while block := os.pread(fd, 1 << 20, offset):
            digest.update(block)
            offset += len(block)
        return digest.hexdigest() == core.sha256

    def _ask(self, topics: Topics, active: _Active, asks: list[Ask]) -> None:
        for ask in asks:
            request = ImageRequest(
                id=f"{active.transfer}.{ask.request}",
                image=active.image,
                from_chunk=ask.from_chunk,
                chunk_size=self.chunk_size,
                count=ask.count,
                transfer=active.transfer,
            )
            self.client.publish(topics.command(COMMAND), request.encode(), qos=1)

    def _confirm(self, topics: Topics, active: _Active, sha256: str) -> None:
        # Fire and forget: if the notice is lost the unit only keeps the image longer than it must.
        notice = ImageRequest(
            id=f"{active.transfer}.done", image=active.image, transfer=active.transfer, delivered=sha256
        )
        self.client.publish(topics.command(COMMAND), notice.encode(), qos=1)

    def _report(
        self,
        progress: Callable[[FetchProgress], None] | None,
        active: _Active,
        core: Reassembly,
        done: bool = False,
    ) -> None:
        if progress is None:
            return
        c = core.counts
        progress(
            FetchProgress(
                active.unit,
                active.image,
                core.received,
                core.total,
                core.received_bytes,
                core.size,
                c["requests"],
                c["resumes"],
                c["gaps"],
                c["duplicates"],
                c["corrupt"],
                c["restarts"],
                done,
            )
        )

    # -- MQTT (on paho's thread: decode and route only) ---------------------------------------------
    def _unit_filters(self, topics: Topics) -> list[str]:
        return [f"{topics.base}/+/event/{CHUNK_TYPE}", topics.command_response(COMMAND)]

    def _subscribe(self, topics: Topics) -> None:
        self.client.subscribe([(f, 1) for f in self._unit_filters(topics)])

    def _on_chunk(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        body = self._body(message)
        if body is None:
            return
        unit, data = body
        with self._lock:
            active = self._by_image.get((unit, str(data.get("image"))))
        if active is not None:
            active.inbox.put(("chunk", data))

    def _on_response(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        body = self._body(message)
        if body is None:
            return
        unit, data = body
        transfer = data.get("transfer")
        with self._lock:
            active = self._by_transfer.get(transfer) if isinstance(transfer, str) else None
            if active is None:  # another station's transfer: its size and hash still help ours
                active = self._by_image.get((unit, str(data.get("image"))))
        if active is not None and active.unit == unit:
            active.inbox.put(("response", data))

    def _body(self, message: mqtt.MQTTMessage) -> tuple[str, dict[str, Any]] | None:
        try:
            unit = Topics.parse(message.topic).unit
            return unit, decode(message.payload).data
        except (TopicError, MessageError) as exc:
            self.log.warning("ignoring a message on %s that is not an uncia envelope: %s", message.topic, exc)
            return None


_MAGIC = ((b"\xff\xd8\xff", ".jpg"), (b"\x89PNG\r\n\x1a\n", ".png"))


def _suffix_for(name: str, head: bytes) -> str:
    """A file suffix for an image id that has none (camera ids are bare hex), from its first bytes."""
    if Path(name).suffix:
        return ""
    return next((suffix for magic, suffix in _MAGIC if head.startswith(magic)), "")


def _request_number(transfer: str, request_id: str | None) -> int | None:
    """Our request number from a request id ``<transfer>.<n>``; None for another transfer's."""
    if not request_id or not request_id.startswith(transfer + "."):
        return None
    suffix = request_id[len(transfer) + 1 :]
    return int(suffix) if suffix.isdigit() else None


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
