"""EarthRanger's sensors API, as the station uses it: two POSTs and what their answers mean.

Request formats (EarthRanger API primer, ``/api/v1.0/docs/topics/api_primer.html``; the server's own
handlers in PADAS/er-server ``das/sensors``; the er-client package's ``post_sensor_observation`` and
``post_camera_trap_report``):

- **Tracking** (``POST {url}/api/v1.0/sensors/generic/{provider_key}/status``, JSON): one observation
  or a list of them, each ``{"manufacturer_id", "recorded_at" (ISO 8601), "location": {"lat", "lon"},
  "subject_name", "subject_subtype", "source_type", "model_name", "additional": {...}}``. The server
  answers 201 when something new was stored, 200 when every observation was already there (it
  de-duplicates on source + ``recorded_at``), 400 with per-observation errors, 409 on a duplicate
  that raced another post.
- **Camera trap** (``POST {url}/api/v1.0/sensors/camera-trap/{provider_key}/status/``,
  multipart/form-data): the image as the file part ``filecontent.file`` plus text fields
  ``camera_name``, ``camera_description``, ``time`` (ISO 8601), ``location`` (a JSON string
  ``{"latitude", "longitude"}``). The server makes a ``cameratrap_rep`` event with the image, answers
  201 ``{"group_id"}``, and 409 when an image of that file name was posted before.

Every request carries ``Authorization: Bearer <token>`` and ``Accept: application/json``.

Why `urllib` (standard library) and not aiohttp: an uplink is one thread sending one request at a
time, in order, and waiting for its answer before the next; aiohttp would need an event loop in that
thread and give nothing for it. urllib verifies TLS against the system's CAs and honours the usual
``https_proxy``/``no_proxy`` variables. Multipart bodies are built by hand below because the
standard library has no ``multipart/form-data`` encoder and the format is a dozen lines.
"""

from __future__ import annotations

import json
import socket
import ssl
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from http.client import HTTPException
from typing import Any
from urllib.parse import quote

from edge.config import software_version

API_ROOT = "/api/v1.0"
_WORDS = 400  # how much of the server's answer goes into a log line or a parked item's note


class ErError(Exception):
    """A post did not go through. ``status`` is the HTTP status (None: no answer), ``words`` what the
    server said (never the token)."""

    def __init__(self, message: str, *, status: int | None = None, words: str = "") -> None:
        self.status, self.words = status, words
        super().__init__(message)


class ServerUnavailable(ErError):
    """No usable answer (network down, timeout, 408, 429, 5xx): try the same thing again later.
    ``retry_after`` is the server's Retry-After in seconds, if it gave one."""

    def __init__(
        self, message: str, *, status: int | None = None, words: str = "", retry_after: float | None = None
    ):
        super().__init__(message, status=status, words=words)
        self.retry_after = retry_after


class TokenRejected(ErError):
    """401/403: the server does not accept the token. Nothing is parked; fix the token file."""


class EndpointMissing(ErError):
    """404 or a redirect: this server has no such sensors endpoint (wrong url or provider key)."""


class Rejected(ErError):
    """Another 4xx: the server refuses what was sent. Sending it again will not help."""


@dataclass(frozen=True)
class Answer:
    """A 2xx or 409 answer: ``duplicate`` when the server already had it; ``data`` its JSON ``data``."""

    status: int
    duplicate: bool
    data: Any


def server_words(body: bytes) -> str:
    """What the server said, short: ER's ``status.detail``, else its ``data`` (validation errors), else
    the text."""
    text = body.decode("utf-8", "replace").strip()
    try:
        parsed = json.loads(text)
    except ValueError:
        return text[:_WORDS]
    if isinstance(parsed, Mapping):
        status = parsed.get("status")
        if isinstance(status, Mapping) and status.get("detail"):
            return str(status["detail"])[:_WORDS]
        if parsed.get("detail"):
            return str(parsed["detail"])[:_WORDS]
        if "data" in parsed and parsed["data"] not in (None, {}, []):
            return json.dumps(parsed["data"], separators=(",", ":"))[:_WORDS]
    return json.dumps(parsed, separators=(",", ":"))[:_WORDS]


def multipart(
    fields: Mapping[str, str], file_field: str, filename: str, content: bytes, content_type: str
) -> tuple[bytes, str]:
    """A ``multipart/form-data`` body and its Content-Type header value (RFC 7578)."""
    boundary = f"uncia-{uuid.uuid4().hex}"
    out = bytearray()
    for name, value in fields.items():
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        out += value.encode("utf-8") + b"\r\n"
    out += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; filename="{quote(filename)}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode()
    out += content + b"\r\n" + f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # urllib would follow a redirect of a POST as a GET without the body: a silent loss. Surface it.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class EarthRangerApi:
    """One EarthRanger server, one provider key, one token. Methods raise the `ErError` kinds above."""

    def __init__(self, url: str, token: str, provider_key: str, *, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        # Accept a full API root too (er-client does): https://x.pamdas.org/api/v1.0 -> the server.
        if self.url.endswith(API_ROOT):
            self.url = self.url[: -len(API_ROOT)]
        self.provider_key = provider_key
        self.timeout = timeout
        self._token = token
        self._opener = urllib.request.build_opener(_NoRedirect)
        self._agent = f"uncia/{software_version()}"

    def __repr__(self) -> str:  # never the token
        return f"EarthRangerApi({self.url!r}, provider_key={self.provider_key!r})"

    @property
    def tracking_url(self) -> str:
        return f"{self.url}{API_ROOT}/sensors/generic/{self.provider_key}/status"

    @property
    def camera_trap_url(self) -> str:
        return f"{self.url}{API_ROOT}/sensors/camera-trap/{self.provider_key}/status/"

    def post_observations(self, observations: list[dict[str, Any]]) -> Answer:
        body = json.dumps(observations, separators=(",", ":")).encode()
        return self._post(self.tracking_url, body, "application/json")

    def post_camera_trap(self, fields: Mapping[str, str], filename: str, jpeg: bytes) -> Answer:
        body, content_type = multipart(fields, "filecontent.file", filename, jpeg, "image/jpeg")
        return self._post(self.camera_trap_url, body, content_type)

    def _post(self, url: str, body: bytes, content_type: str) -> Answer:
        request = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers={
                "Authorization": f"Bearer {self._token}",
                "Accept": "application/json",
                "Content-Type": content_type,
                "User-Agent": self._agent,
            },
        )
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                status, answer, headers = response.status, response.read(), response.headers
        except urllib.error.HTTPError as exc:
            status, headers = exc.code, exc.headers
            try:
                answer = exc.read()
            except (OSError, HTTPException):
                answer = b""
        except TimeoutError as exc:
            raise ServerUnavailable(f"{url}: no answer within {self.timeout:g} s") from exc
        except urllib.error.URLError as exc:
            raise ServerUnavailable(f"{url}: {_network_problem(exc.reason)}") from exc
        except (OSError, HTTPException) as exc:
            raise ServerUnavailable(f"{url}: connection broke ({exc.__class__.__name__}: {exc})") from exc
        return _judge(url, status, answer, headers)


def _network_problem(reason: Any) -> str:
    if isinstance(reason, ssl.SSLCertVerificationError):
        return (
            f"TLS certificate not accepted ({reason.verify_message}): is the station's clock right? An "
            "unsynced clock makes every certificate look expired or not yet valid"
        )
    if isinstance(reason, TimeoutError):
        return "connection timed out: no internet, or the server is down"
    if isinstance(reason, socket.gaierror):
        return f"cannot resolve the server's name ({reason}): no internet or no DNS?"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused: the server is down, or url has the wrong port"
    return str(reason)


def _judge(url: str, status: int, body: bytes, headers: Any) -> Answer:
    words = server_words(body) if body else ""
    if 200 <= status < 300 or status == 409:
        data: Any = None
        try:
            parsed = json.loads(body) if body else None
            data = parsed.get("data", parsed) if isinstance(parsed, Mapping) else parsed
        except ValueError:
            pass
        return Answer(status, status == 409 or status == 200, data)
    if status in (401, 403):
        raise TokenRejected(
            f"{url}: token rejected ({status}: {words or 'no reason given'}): check the token file "
            "(uplink.earthranger.token_file) and that the token's user may post to this provider",
            status=status,
            words=words,
        )
    if status == 404 or 300 <= status < 400:
        where = headers.get("Location") if headers is not None else None
        hint = (
            f"the server redirects to {where}: use that in uplink.earthranger.url"
            if where
            else (
                "check uplink.earthranger.url and provider_key (ER admin › Observations › Source providers)"
            )
        )
        raise EndpointMissing(f"{url}: {status} {words or 'not found'}: {hint}", status=status, words=words)
    if status in (408, 425, 429) or status >= 500:
        retry_after = None
        if headers is not None and headers.get("Retry-After", "").strip().isdigit():
            retry_after = float(headers["Retry-After"].strip())
        raise ServerUnavailable(
            f"{url}: server busy or failing ({status}{': ' + words if words else ''})",
            status=status,
            words=words,
            retry_after=retry_after,
        )
    raise Rejected(f"{url}: refused ({status}): {words or 'no reason given'}", status=status, words=words)
