"""The staff web page of the station, served by the gateway on the station LAN (``[station] web``).

`StationWeb(hub, "0.0.0.0", 8080).start()` serves, from a thread of its own (aiohttp on its own event
loop), the page in ``gateway/station/static/`` (plain HTML/JS/CSS, Leaflet vendored: no internet
needed in the field) and its data:

| route | answers |
| --- | --- |
| ``GET /`` | the page |
| ``GET /static/...`` | the page's scripts, style and the vendored Leaflet |
| ``GET /api/status`` | the status document (`gateway.station.view`: station, units, collars, alerts, captures) |
| ``GET /api/tracks?hours=24`` | ``{track: [[unix_time, lat, lon], ...]}``, oldest first |
| ``GET /api/boundary`` | the reserve, villages and camps (GeoJSON) plus each village's/camp's conflict buffer (``kind`` ``"buffer"``); ``null`` without a boundary file |
| ``GET /api/alerts?hours=24`` | alerts raised in the last hours, active and cleared, newest first |
| ``GET /api/thumbnail/{event_id}`` | the JPEG thumbnail of a capture (404 until it arrives) |
| ``GET /api/image/{unit}/{image_id}`` | the full image: from the station's disk, else fetched from the camera unit (may take a while; 404 unknown image, 504 unit did not deliver in time) |
| ``GET /api/events?hours=24`` | server-sent events: a ``status`` event first (status and tracks), then one ``data:`` JSON line per live event (`gateway.station.live`), a comment every 15 s to keep the line open |
| ``POST /api/command/{name}`` | a staff command (`gateway.station.commands`: ping, config, capture_mode, capture, fetch_image): JSON body ``{"unit": "cam-01", ...}``, JSON answer |

Errors are JSON ``{"error": "<what went wrong, in words>"}`` with a fitting HTTP status. Each event
stream has a bounded queue: a page that cannot keep up (a laptop asleep, a bad Wi-Fi link) is
dropped and its browser reconnects and starts again from a fresh ``status`` — the hub never waits
for a page. Commands need a JSON body, so another web site cannot trigger them through a form.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import itertools
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from aiohttp import web
from numpy.typing import NDArray
from shapely.geometry import mapping, shape

from gateway.image_fetch import FetchTimeoutError, ImageFetchError, UnknownImageError
from gateway.station.commands import NAMES as COMMAND_NAMES
from gateway.station.geo import M_PER_DEG
from gateway.station.record import RecordReader
from gateway.station.view import alert_view

STATIC = Path(__file__).with_name("static")
KEEPALIVE_S = 15.0
RETRY_MS = 3000  # how soon a browser reconnects its event stream
CLIENT_QUEUE = 2000  # live events buffered per page before it counts as too slow and is dropped
MAX_HOURS = 24.0 * 400
_NAME = re.compile(r"^[a-z0-9_-]{1,63}$")
_IMAGE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_EVENT = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_HTTP_FOR_STATUS = {"ok": 200, "bad_request": 400, "timeout": 504}


class WebError(RuntimeError):
    """The staff page cannot be served (the port is taken, the address is not this machine's)."""


@dataclass(eq=False)
class _Client:
    """One open event stream (one browser tab)."""

    peer: str
    queue: asyncio.Queue[dict[str, Any] | None]
    transport: asyncio.BaseTransport | None = None
    unlisten: Callable[[], None] = field(default=lambda: None)
    ended: bool = False
    dropped: bool = False  # too slow


class StationWeb:
    """The staff page and its API for one `StationHub` (module notes). `start()`, `stop()`, `url`."""

    def __init__(
        self,
        hub: Any,
        host: str = "0.0.0.0",
        port: int = 8080,
        *,
        log: logging.Logger | None = None,
        keepalive_s: float = KEEPALIVE_S,
        client_queue: int = CLIENT_QUEUE,
        fetch_timeout_s: float = 180.0,
        password: str | None = None,
    ) -> None:
        self.hub = hub
        # With a password (``[station] web_password_file``) every page and API call needs HTTP Basic
        # auth as user "staff": the page shows exact positions and can pause cameras.
        self._password = password
        self.host = host
        self.port = port
        self.log = log or logging.getLogger("uncia.station.web")
        self.keepalive_s = keepalive_s
        self.client_queue = client_queue
        self.fetch_timeout_s = fetch_timeout_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self._clients: set[_Client] = set()
        self._fetching: dict[tuple[str, str], asyncio.Future[Path]] = {}
        self._boundary: bytes | None = None
        self._asker = itertools.count(1)
        # SQLite reads run off the event loop, each worker thread with its own read-only connection.
        self._db_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="station-web-db")
        self._local = threading.local()
        self._readers: list[RecordReader] = []
        self._readers_lock = threading.Lock()
        self.counters = dict.fromkeys(("streams", "dropped_slow", "events_sent", "images_fetched"), 0)

    # -- life cycle --------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """Where to point a browser (a wildcard host is shown as this machine's loopback address)."""
        host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "[::1]"}.get(self.host, self.host)
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.port}/"

    @property
    def clients(self) -> int:
        """Open event streams (browser tabs watching live)."""
        return len(self._clients)

    def start(self, timeout: float = 10.0) -> None:
        """Start serving; returns once listening (``port`` 0 picks a free port: see `port`)."""
        self._thread = threading.Thread(target=self._serve, name="station-web", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise WebError(
                f"the staff page did not start listening on {self.host}:{self.port} in {timeout} s"
            )
        if self._start_error is not None:
            raise WebError(
                f"cannot serve the staff page on {self.host}:{self.port} ({self._start_error}): is another"
                " program using the port? Change [station] web_port or web_host in the gateway config"
            ) from self._start_error
        self.log.info("staff page listening on %s:%d (%s)", self.host, self.port, self.url)

    def stop(self, timeout: float = 5.0) -> None:
        """Close every event stream, stop listening, and end the server thread."""
        loop = self._loop
        if loop is not None and self._thread is not None and self._thread.is_alive():
            future = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
            with contextlib.suppress(Exception):
                future.result(timeout)
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(timeout)
        self._db_pool.shutdown(wait=True, cancel_futures=True)
        with self._readers_lock:
            for reader in self._readers:
                with contextlib.suppress(Exception):
                    reader.close()
            self._readers.clear()

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            loop.run_until_complete(self._listen())
        except BaseException as exc:  # reported to start()'s caller
            self._start_error = exc
            self._started.set()
            loop.close()
            return
        self._started.set()
        try:
            loop.run_forever()
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _listen(self) -> None:
        runner = web.AppRunner(self._app(), access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])

    async def _shutdown(self) -> None:
        for client in list(self._clients):
            self._end(client)
        if self._runner is not None:
            await self._runner.cleanup()

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth, self._errors])
        app.router.add_get("/", self._index)
        app.router.add_static("/static/", STATIC, follow_symlinks=False)
        app.router.add_get("/api/status", self._status)
        app.router.add_get("/api/tracks", self._tracks)
        app.router.add_get("/api/boundary", self._boundary_route)
        app.router.add_get("/api/alerts", self._alerts)
        app.router.add_get("/api/thumbnail/{event_id}", self._thumbnail)
        app.router.add_get("/api/image/{unit}/{image_id}", self._image)
        app.router.add_get("/api/events", self._events)
        app.router.add_post("/api/command/{name}", self._command)
        return app

    @web.middleware
    async def _auth(self, request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
        if self._password is None or _basic_auth_ok(request.headers.get("Authorization", ""), self._password):
            return await handler(request)
        return web.Response(
            status=401,
            text="the station page needs the staff password (user 'staff')",
            headers={"WWW-Authenticate": 'Basic realm="uncia station", charset="UTF-8"'},
        )

    @web.middleware
    async def _errors(self, request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
        """Every failure as JSON words; unexpected ones logged once as a warning with the route."""
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400 or not request.path.startswith("/api/"):
                raise
            return _error(exc.status, exc.text or exc.reason)
        except (asyncio.CancelledError, ConnectionError):
            raise
        except Exception as exc:
            self.log.warning(
                "staff page: %s %s failed: %s: %s", request.method, request.path, type(exc).__name__, exc
            )
            return _error(500, f"the station could not answer {request.path}: {exc}")

    # -- reading the record (off the loop) ---------------------------------------------------------
    def _reader(self) -> RecordReader:
        reader = getattr(self._local, "reader", None)
        if reader is None:
            reader = self.hub.reader()
            self._local.reader = reader
            with self._readers_lock:
                self._readers.append(reader)
        return reader

    async def _db(self, work: Callable[..., Any], *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._db_pool, lambda: work(self._reader(), *args))

    def _now(self) -> float:
        wall = getattr(self.hub, "wall", None)
        return float(wall()) if callable(wall) else time.time()

    # -- pages and JSON ----------------------------------------------------------------------------
    async def _index(self, _request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def _status(self, _request: web.Request) -> web.Response:
        body = await self._db(lambda reader: _json(self.hub.status(reader)))
        return _json_response(body)

    async def _tracks(self, request: web.Request) -> web.Response:
        hours = _number(request, "hours", 24.0, 0.0, MAX_HOURS)
        body = await self._db(lambda reader: _json(self.hub.tracks(hours, reader)))
        return _json_response(body)

    async def _alerts(self, request: web.Request) -> web.Response:
        hours = _number(request, "hours", 24.0, 0.0, MAX_HOURS)
        since = self._now() - hours * 3600.0
        body = await self._db(
            lambda reader: _json(
                {"alerts": [alert_view(a) for a in reader.alerts(since=since)], "hours": hours}
            )
        )
        return _json_response(body)

    async def _boundary_route(self, _request: web.Request) -> web.Response:
        if self._boundary is None:
            settings = getattr(self.hub, "settings", None)
            buffer_m = float(getattr(settings, "conflict_buffer_m", 1000.0))
            loop = asyncio.get_running_loop()
            self._boundary = await loop.run_in_executor(
                self._db_pool, lambda: _json(boundary_layers(self.hub.boundary(), buffer_m))
            )
        return _json_response(self._boundary, cache="no-cache")

    async def _thumbnail(self, request: web.Request) -> web.Response:
        event_id = request.match_info["event_id"]
        if not _EVENT.match(event_id):
            return _error(400, f"{event_id!r} is not a capture event id")
        jpeg = await self._db(lambda reader: reader.thumbnail(event_id))
        if jpeg is None:
            return _error(404, f"no thumbnail for {event_id} yet: the camera sends it after the burst")
        etag = '"' + hashlib.blake2b(jpeg, digest_size=12).hexdigest() + '"'
        headers = {"Cache-Control": "private, max-age=86400", "ETag": etag}
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=headers)
        return web.Response(body=jpeg, content_type="image/jpeg", headers=headers)

    async def _image(self, request: web.Request) -> web.StreamResponse:
        unit, image = request.match_info["unit"], request.match_info["image_id"]
        if not _NAME.match(unit):
            return _error(400, f"{unit!r} is not a unit id")
        if not _IMAGE.match(image) or ".." in image:
            return _error(400, f"{image!r} is not an image id")
        timeout = _number(request, "timeout", self.fetch_timeout_s, 0.5, 600.0)
        key = (unit, image)
        future = self._fetching.get(key)
        if future is None:
            # One fetch per image however many tabs ask; it goes on if the asking tab is closed, so the
            # image is on the station's disk for the next click.
            future = _in_thread(self.hub.fetch_image, unit, image, timeout)
            self._fetching[key] = future
            future.add_done_callback(lambda f: self._fetched(key, f))
        try:
            path = await asyncio.shield(future)
        except UnknownImageError as exc:
            return _error(404, f"{unit} does not have {image}: {exc}")
        except (FetchTimeoutError, TimeoutError) as exc:
            return _error(504, f"{unit} did not deliver {image} in {timeout:g} s: {exc}")
        except ImageFetchError as exc:
            self.log.warning("full image %s from %s: %s", image, unit, exc)
            return _error(502, f"{image} from {unit} could not be fetched: {exc}")
        self.counters["images_fetched"] += 1
        return web.FileResponse(path, headers={"Cache-Control": "private, max-age=604800, immutable"})

    def _fetched(self, key: tuple[str, str], future: asyncio.Future[Path]) -> None:
        self._fetching.pop(key, None)
        if not future.cancelled():
            future.exception()  # retrieved here: a fetch nobody waits for any more is not an error

    async def _command(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in COMMAND_NAMES:
            return _error(404, f"no station command {name!r}; try one of {', '.join(COMMAND_NAMES)}")
        if request.content_type != "application/json":
            return _error(415, "send the command as JSON (Content-Type: application/json)")
        try:
            body = await request.json()
        except ValueError as exc:
            return _error(400, f"the command body is not JSON: {exc}")
        if not isinstance(body, dict):
            return _error(400, 'the command body must be a JSON object such as {"unit": "cam-01"}')
        timeout = body.get("timeout", 30.0)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 600:
            return _error(400, f"timeout {timeout!r}: expected seconds between 0 and 600")
        fields = {k: v for k, v in body.items() if k not in ("id", "timeout")}
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[dict[str, Any]] = loop.create_future()

        def on_done(data: dict[str, Any]) -> None:  # a hub or worker thread
            with contextlib.suppress(RuntimeError):  # the server is stopping
                loop.call_soon_threadsafe(lambda: answer.done() or answer.set_result(data))

        asker = f"web-{next(self._asker)}"
        self.hub.commands.ask(name, asker, fields, float(timeout), on_done)
        try:
            # The bridge answers "timeout" itself within a few seconds of `timeout`; this is a backstop.
            data = await asyncio.wait_for(answer, float(timeout) + 15.0)
        except TimeoutError:
            return _error(504, f"the station got no answer to {name} in {timeout:g} s")
        status = _HTTP_FOR_STATUS.get(str(data.get("status")), 502)
        if status >= 500:
            self.log.warning("staff command %s %s: %s", name, fields.get("unit", ""), data.get("message"))
        return web.json_response(data, status=status, headers={"Cache-Control": "no-store"})

    # -- the live event stream -----------------------------------------------------------------------
    async def _events(self, request: web.Request) -> web.StreamResponse:
        hours = _number(request, "hours", 24.0, 0.0, MAX_HOURS)
        loop = asyncio.get_running_loop()
        peer = request.transport.get_extra_info("peername") if request.transport else None
        where = (
            f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else request.remote or "?"
        )
        client = _Client(where, asyncio.Queue(self.client_queue), request.transport)

        def on_event(event: dict[str, Any]) -> None:  # the hub's thread: hand on, nothing else
            with contextlib.suppress(RuntimeError):  # the loop is closed: the server is stopping
                loop.call_soon_threadsafe(self._offer, client, event)

        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        # Listen before reading the status, so nothing falls between the two (the page ignores a fix
        # it already has).
        client.unlisten = self.hub.live.listen(on_event)
        self._clients.add(client)
        self.counters["streams"] += 1
        self.log.debug("staff page %s connected to the live feed (%d open)", client.peer, len(self._clients))
        try:
            await response.write(f"retry: {RETRY_MS}\n\n".encode())
            initial = await self._db(self._initial, hours)
            await response.write(b"data: " + initial + b"\n\n")
            while True:
                try:
                    event = await asyncio.wait_for(client.queue.get(), self.keepalive_s)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                batch = [event]
                while batch[-1] is not None and not client.queue.empty():
                    batch.append(client.queue.get_nowait())
                events = [e for e in batch if e is not None]
                if events:
                    await response.write(b"".join(b"data: " + _json(e) + b"\n\n" for e in events))
                    self.counters["events_sent"] += len(events)
                if batch[-1] is None:
                    break  # dropped as too slow, or the server is stopping
        except ConnectionError:
            pass  # the tab was closed, or the page was dropped as too slow
        finally:
            client.unlisten()
            self._clients.discard(client)
            self.log.debug(
                "staff page %s left the live feed%s (%d open)",
                client.peer,
                " (too slow: dropped)" if client.dropped else "",
                len(self._clients),
            )
        return response

    def _initial(self, reader: RecordReader, hours: float) -> bytes:
        return _json(
            {"type": "status", "status": self.hub.status(reader), "tracks": self.hub.tracks(hours, reader)}
        )

    def _offer(self, client: _Client, event: dict[str, Any]) -> None:
        """On the loop: queue `event` for one page, or drop the page if it has fallen too far behind."""
        if client.ended:
            return
        try:
            client.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.counters["dropped_slow"] += 1
            self.log.warning(
                "staff page %s fell %d live events behind; dropped (its browser reconnects and reloads)",
                client.peer,
                self.client_queue,
            )
            client.dropped = True
            self._end(client)
            # Its writer may be stuck on a full TCP window: closing the connection frees it.
            if client.transport is not None:
                client.transport.close()

    def _end(self, client: _Client) -> None:
        """Stop feeding `client`; its stream ends after what it has already been sent."""
        client.ended = True
        client.unlisten()
        while not client.queue.empty():
            client.queue.get_nowait()
        client.queue.put_nowait(None)


# -- helpers -----------------------------------------------------------------------------------------


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()


def _json_response(body: bytes, *, cache: str = "no-store") -> web.Response:
    return web.Response(body=body, content_type="application/json", headers={"Cache-Control": cache})


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers={"Cache-Control": "no-store"})


def _number(request: web.Request, name: str, default: float, low: float, high: float) -> float:
    text = request.query.get(name)
    if text is None or text == "":
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not low < value <= high:
        raise web.HTTPBadRequest(
            text=f"{name}={text!r}: expected a number above {low:g} and at most {high:g}"
        )
    return value


def _in_thread(work: Callable[..., Path], *args: Any) -> asyncio.Future[Path]:
    """Run a blocking call (an image fetch: seconds to minutes) on a daemon thread of its own, so a
    fetch still waiting for an offline unit never holds up the gateway's exit."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Path] = loop.create_future()

    def settle(result: Path | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            result, error = work(*args), None
        except Exception as exc:
            result, error = None, exc
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name="station-web-fetch", daemon=True).start()
    return future


def boundary_layers(geojson: dict[str, Any] | None, buffer_m: float) -> dict[str, Any] | None:
    """The boundary file for the map, plus one ``kind: "buffer"`` feature per village or camp: the area
    within `buffer_m` of it, where a collar raises a conflict alert (drawn under the places themselves).
    """
    if geojson is None:
        return None
    features = list(geojson.get("features") or [])
    buffers = []
    for feature in features:
        props = feature.get("properties") or {}
        if props.get("kind") not in ("village", "camp") or buffer_m <= 0:
            continue
        geom = shape(feature["geometry"])
        centre = geom.centroid
        lon0, lat0 = centre.x, centre.y
        m_per_deg_lon = M_PER_DEG * math.cos(math.radians(lat0))

        def to_m(
            c: NDArray[np.float64], lon0: float = lon0, lat0: float = lat0, k: float = m_per_deg_lon
        ) -> Any:
            return np.column_stack(((c[:, 0] - lon0) * k, (c[:, 1] - lat0) * M_PER_DEG))

        def to_deg(
            c: NDArray[np.float64], lon0: float = lon0, lat0: float = lat0, k: float = m_per_deg_lon
        ) -> Any:
            return np.column_stack((lon0 + c[:, 0] / k, lat0 + c[:, 1] / M_PER_DEG))

        zone = shapely.transform(shapely.transform(geom, to_m).buffer(buffer_m, quad_segs=8), to_deg)
        zone = shapely.set_precision(zone, 1e-6)
        buffers.append(
            {
                "type": "Feature",
                "properties": {
                    "kind": "buffer",
                    "name": f"{props.get('name', '?')}: {buffer_m:g} m conflict buffer",
                    "of": props.get("name"),
                    "of_kind": props.get("kind"),
                    "buffer_m": buffer_m,
                },
                "geometry": mapping(zone),
            }
        )
    reserves = [f for f in features if (f.get("properties") or {}).get("kind") == "reserve"]
    others = [f for f in features if (f.get("properties") or {}).get("kind") != "reserve"]
    return {**geojson, "features": reserves + buffers + others}


def _basic_auth_ok(header: str, password: str) -> bool:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, _, given = base64.b64decode(value, validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return False
    # compare_digest on both, always: no early exit that tells the user name from the password by timing
    ok_user = hmac.compare_digest(user.encode(), b"staff")
    ok_password = hmac.compare_digest(given.encode(), password.encode())
    return ok_user and ok_password
