"""A stand-in EarthRanger server on a real TCP port, strict about the sensors API's request format.

It answers the two endpoints the station uses the way EarthRanger's handlers do (PADAS/er-server
``das/sensors``: ``GenericSensorHandler``, ``CameraTrapSensorHandler``) and refuses anything the
real server would refuse, and a little more: a field the API does not know is a 400 here (the real
server ignores it silently, which would hide a misspelt key).

- ``POST /api/v1.0/sensors/generic/<provider_key>/status``: JSON, one observation or a list; each
  needs ``manufacturer_id``, ``recorded_at`` (ISO 8601 with a zone), ``location.lat``/``lon``. 201 if
  anything was new, 200 if all were duplicates (source + ``recorded_at``), 400 with per-item errors.
- ``POST /api/v1.0/sensors/camera-trap/<provider_key>/status/``: multipart/form-data with the image
  in ``filecontent.file`` (a JPEG; .png is refused as on the real server), optional text fields
  ``camera_name``, ``camera_description``, ``camera_version``, ``time``, ``location`` (JSON
  ``{"latitude", "longitude"}``), ``group_id``. 201 ``{"group_id"}``; 409 for a file name seen before.

Every request needs ``Authorization: Bearer <token>`` (else 401) and must accept JSON.
Answers are wrapped as EarthRanger wraps them: ``{"data": ..., "status": {"code", "message"|"detail"}}``.

Faults on demand: `fail_next` (any status, optional Retry-After), `stall_next` (answer only after
a delay: the client times out though the server stored the post), `drop_next` (close without an
answer), and `go_down`/`come_back` (the port refuses connections, then listens again).
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from email import policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TRACKING = re.compile(r"^/api/v1\.0/sensors/generic/(?P<key>[\w-]{3,20})/status/?$")
CAMERA_TRAP = re.compile(r"^/api/v1\.0/sensors/camera-trap/(?P<key>[\w-]{3,20})/status/?$")
OBSERVATION_FIELDS = {
    "location": dict,
    "recorded_at": str,
    "manufacturer_id": str,
    "subject_id": str,
    "subject_name": str,
    "subject_groups": list,
    "subject_type": str,
    "subject_subtype": str,
    "subject_additional": dict,
    "model_name": str,
    "source_type": str,
    "additional": dict,
    "source_additional": dict,
    "user_id": str,
    "exclusion_flags": int,
}
REQUIRED = ("location", "recorded_at", "manufacturer_id")
CAMERA_FIELDS = {"camera_name", "camera_description", "camera_version", "time", "location", "group_id"}


@dataclass
class Post:
    """One request as the server saw it: path, status answered, and what it carried."""

    path: str
    status: int
    count: int = 0  # observations in it
    created: int = 0
    note: str = ""


@dataclass
class Image:
    filename: str
    fields: dict[str, str]
    content: bytes
    group_id: str


@dataclass
class _Fault:
    kind: str  # "status", "stall", "drop"
    status: int = 500
    body: Any = None
    retry_after: float | None = None
    seconds: float = 0.0


@dataclass
class _Store:
    token: str
    observations: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    images: dict[str, Image] = field(default_factory=dict)
    posts: list[Post] = field(default_factory=list)
    refused: list[Post] = field(default_factory=list)  # format violations (4xx other than 409)
    faults: deque[_Fault] = field(default_factory=deque)
    lock: threading.Lock = field(default_factory=threading.Lock)
    changed: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.changed = threading.Condition(self.lock)


def _iso(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_observation(obs: Any) -> dict[str, list[str]]:
    """The errors the server reports for one observation ({} when it is valid)."""
    if not isinstance(obs, dict):
        return {"non_field_errors": ["Invalid data. Expected a dictionary."]}
    errors: dict[str, list[str]] = {}
    for key in REQUIRED:
        if key not in obs:
            errors[key] = ["This field is required."]
    for key, value in obs.items():
        kind = OBSERVATION_FIELDS.get(key)
        if kind is None:
            errors[key] = ["Unknown field (the real server would silently ignore it)."]
        elif not isinstance(value, kind) or (kind is str and not value.strip()):
            errors[key] = [f"Expected a {kind.__name__}."]
    location = obs.get("location")
    if isinstance(location, dict):
        lat, lon = location.get("lat"), location.get("lon")
        if not (_number(lat) and -90 <= lat <= 90 and _number(lon) and -180 <= lon <= 180):
            errors["location"] = ['Expected {"lat": -90..90, "lon": -180..180}.']
    if "recorded_at" in obs and _iso(obs["recorded_at"]) is None:
        errors["recorded_at"] = ["Datetime has wrong format. Use ISO 8601 with a time zone."]
    return errors


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read `posts`
        pass

    def _reply(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        raw = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if raw:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(raw)
        self.close_connection = True

    def _envelope(self, status: int, data: Any = None, detail: str | None = None) -> dict[str, Any]:
        state: dict[str, Any] = {"code": status}
        if detail is not None:
            state["detail"] = detail
        else:
            state["message"] = {200: "OK", 201: "Created", 400: "Bad Request"}.get(status, "")
        return {"data": data, "status": state}

    def do_GET(self) -> None:
        self._reply(405, self._envelope(405, detail='Method "GET" not allowed.'))

    def do_POST(self) -> None:
        store = self.server.store
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        with store.lock:
            fault = store.faults.popleft() if store.faults else None
        if fault is not None and fault.kind == "drop":
            self.close_connection = True
            self.connection.close()
            return
        if fault is not None and fault.kind == "status":
            self._record(Post(self.path, fault.status, note="injected"))
            headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else None
            self._reply(fault.status, fault.body, headers)
            return
        status, answer, post = self._handle(body)
        self._record(post)
        if fault is not None and fault.kind == "stall":
            time.sleep(fault.seconds)
        # The client may have given up waiting: what was stored stays stored, as on the real server.
        with contextlib.suppress(OSError):
            self._reply(status, answer)

    def _record(self, post: Post) -> None:
        store = self.server.store
        with store.lock:
            store.posts.append(post)
            if 400 <= post.status < 500 and post.status != 409 and post.note != "injected":
                store.refused.append(post)
            store.changed.notify_all()

    def _auth(self) -> tuple[int, Any] | None:
        header = self.headers.get("Authorization", "")
        if not header:
            return 401, self._envelope(401, detail="Authentication credentials were not provided.")
        if header != f"Bearer {self.server.store.token}":
            return 401, self._envelope(401, detail="Invalid token header / token not recognised.")
        accept = self.headers.get("Accept", "*/*")
        if "application/json" not in accept and "*/*" not in accept:
            return 406, self._envelope(406, detail=f'Could not satisfy the request Accept header "{accept}".')
        return None

    def _handle(self, body: bytes) -> tuple[int, Any, Post]:
        path = self.path.split("?", 1)[0]
        tracking, camera = TRACKING.match(path), CAMERA_TRAP.match(path)
        if not tracking and not camera:
            return (
                404,
                self._envelope(404, detail="Not found."),
                Post(self.path, 404, note="no such endpoint"),
            )
        refused = self._auth()
        if refused is not None:
            return refused[0], refused[1], Post(self.path, refused[0], note="auth")
        if tracking:
            return self._tracking(body)
        return self._camera_trap(body)

    def _tracking(self, body: bytes) -> tuple[int, Any, Post]:
        ctype = self.headers.get("Content-Type", "")
        if ctype.split(";")[0].strip() != "application/json":
            detail = f'Unsupported media type "{ctype}" in request.'
            return 415, self._envelope(415, detail=detail), Post(self.path, 415, note=detail)
        try:
            data = json.loads(body)
        except ValueError as exc:
            detail = f"JSON parse error - {exc}"
            return 400, self._envelope(400, detail=detail), Post(self.path, 400, note=detail)
        items = data if isinstance(data, list) else [data]
        errors = [check_observation(obs) for obs in items]
        if any(errors):
            note = json.dumps(errors)
            return 400, self._envelope(400, errors), Post(self.path, 400, len(items), note=note)
        store = self.server.store
        created = 0
        with store.lock:
            for obs in items:
                key = (obs["manufacturer_id"], _iso(obs["recorded_at"]).isoformat())  # type: ignore[union-attr]
                if key not in store.observations:
                    store.observations[key] = obs
                    created += 1
        status = 201 if created else 200
        return status, self._envelope(status, {}), Post(self.path, status, len(items), created)

    def _camera_trap(self, body: bytes) -> tuple[int, Any, Post]:
        ctype = self.headers.get("Content-Type", "")
        if not ctype.startswith("multipart/form-data") or "boundary=" not in ctype:
            detail = f'Unsupported media type "{ctype}" in request.'
            return 415, self._envelope(415, detail=detail), Post(self.path, 415, note=detail)
        message = BytesParser(policy=policy.HTTP).parsebytes(
            f"Content-Type: {ctype}\r\nMIME-Version: 1.0\r\n\r\n".encode() + body
        )
        if not message.is_multipart():
            return (
                400,
                self._envelope(400, detail="Multipart form parse error"),
                Post(self.path, 400, note="parse"),
            )
        fields: dict[str, str] = {}
        upload: tuple[str, bytes] | None = None
        errors: dict[str, list[str]] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            filename = part.get_filename()
            content = part.get_payload(decode=True) or b""
            if name == "filecontent.file" and filename:
                upload = (filename, content)
            elif name in CAMERA_FIELDS and not filename:
                fields[str(name)] = content.decode("utf-8")
            else:
                errors[str(name)] = ["Unknown field (the real server would silently ignore it)."]
        if upload is None:
            errors["file"] = ["No file was submitted."]
        elif upload[0].lower().endswith(".png"):
            return 400, "png is not a supported media type", Post(self.path, 400, note="png")
        elif not (upload[1].startswith(b"\xff\xd8") and upload[1].rstrip(b"\0").endswith(b"\xff\xd9")):
            errors["file"] = [
                "Upload a valid image. The file you uploaded was either not an image or a corrupted image."
            ]
        if "time" in fields and _iso(fields["time"]) is None:
            errors["time"] = ["Datetime has wrong format. Use ISO 8601 with a time zone."]
        if "location" in fields:
            try:
                loc = json.loads(fields["location"])
                ok = isinstance(loc, dict) and _number(loc.get("latitude")) and _number(loc.get("longitude"))
            except ValueError:
                ok = False
            if not ok:
                errors["location"] = ['Expected JSON {"latitude": .., "longitude": ..}.']
        if errors:
            return 400, self._envelope(400, errors), Post(self.path, 400, 1, note=json.dumps(errors))
        assert upload is not None
        store = self.server.store
        with store.lock:
            if upload[0] in store.images:
                return 409, None, Post(self.path, 409, 1, note=upload[0])
            group = str(uuid.uuid4())
            store.images[upload[0]] = Image(upload[0], fields, upload[1], group)
        return 201, self._envelope(201, {"group_id": group}), Post(self.path, 201, 1, 1)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    store: _Store


class EarthRangerServer:
    """The stand-in server; ``url`` is what goes in ``[uplink.earthranger] url``."""

    def __init__(self, token: str = "test-token-7f3a", host: str = "127.0.0.1", port: int = 0) -> None:
        self.store = _Store(token)
        self.host = host
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.port = port
        self.come_back()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def observations(self) -> dict[tuple[str, str], dict[str, Any]]:
        with self.store.lock:
            return dict(self.store.observations)

    @property
    def images(self) -> dict[str, Image]:
        with self.store.lock:
            return dict(self.store.images)

    @property
    def posts(self) -> list[Post]:
        with self.store.lock:
            return list(self.store.posts)

    @property
    def refused(self) -> list[Post]:
        with self.store.lock:
            return list(self.store.refused)

    def fail_next(
        self, status: int, times: int = 1, *, body: Any = None, retry_after: float | None = None
    ) -> None:
        with self.store.lock:
            for _ in range(times):
                self.store.faults.append(_Fault("status", status, body, retry_after))

    def stall_next(self, seconds: float, times: int = 1) -> None:
        with self.store.lock:
            self.store.faults.extend(_Fault("stall", seconds=seconds) for _ in range(times))

    def drop_next(self, times: int = 1) -> None:
        with self.store.lock:
            self.store.faults.extend(_Fault("drop") for _ in range(times))

    def wait_for(self, predicate: Any, timeout: float = 10.0) -> bool:
        """Wait until ``predicate(server)`` holds (checked after each request)."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with self.store.changed:  # woken by each request; the short wait covers a missed wake-up
                self.store.changed.wait(min(remaining, 0.2))
        return True

    def go_down(self) -> None:
        """Stop listening: connections are refused until `come_back`."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None

    def come_back(self) -> None:
        if self._server is not None:
            return
        server = _Server((self.host, self.port), _Handler)
        server.store = self.store
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-earthranger", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self.go_down()

    def __enter__(self) -> EarthRangerServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
