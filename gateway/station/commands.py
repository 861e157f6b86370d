"""The station's request/response commands (the zigbee2mqtt ``bridge/request`` pattern).

Staff, the web page and the central office ask the station, never a unit directly::

    uncia/<site>/<gateway>/station/command/<name>            {"id": "<yours>", "unit": "cam-01", ...}
    uncia/<site>/<gateway>/station/command/<name>/response   envelope, type <name>, data:
        {"id": "<yours>", "unit": "cam-01", "status": "ok", "message": "...", "response": {...}}

| name | does |
| --- | --- |
| ``ping``, ``config``, ``capture_mode``, ``capture`` | forwarded to the unit's own command topic with a fresh correlation id; the unit's answer comes back in ``response`` |
| ``fetch_image`` | ``{"unit", "image"}``: the station fetches the full image from the camera unit (chunked, verified) and answers with its ``url`` on the staff page |
| ``status`` | the station status document (as ``GET /api/status``) |

``status`` is ``ok``, or ``timeout`` (the unit did not answer in ``timeout`` s, default 30), ``bad_request``,
``error`` — always with a ``message`` in words. Only the station identity may write the units' command
topics (the generated ACL), so staff rights are decided in one place.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edge.topics import TopicError, Topics

FORWARDED = ("ping", "config", "capture_mode", "capture")
LOCAL = ("fetch_image", "status")
NAMES = FORWARDED + LOCAL
DEFAULT_TIMEOUT = 30.0
MAX_TIMEOUT = 600.0

# reply(name, data): publish a response on the station's command/<name>/response topic.
Reply = Callable[[str, dict[str, Any]], None]
# send(topic, payload): publish a request to a unit (live, QoS 1).
Send = Callable[[str, bytes], None]


@dataclass
class _Waiting:
    name: str
    asker_id: str
    unit: str
    deadline: float
    on_done: Callable[[dict[str, Any]], None] | None = None


class CommandBridge:
    """Forwards staff requests to units and their answers back; runs local ones on worker threads."""

    def __init__(
        self,
        site: str,
        station: str,
        *,
        send: Send,
        reply: Reply,
        local: dict[str, Callable[[dict[str, Any]], dict[str, Any]]],
        clock: Callable[[], float] = time.monotonic,
        log: logging.Logger | None = None,
    ) -> None:
        self.site = site
        self.station = Topics(site, station)
        self.send = send
        self.reply = reply
        self.local = local
        self.clock = clock
        self.log = log or logging.getLogger("uncia.station.commands")
        self._prefix = f"st{random.SystemRandom().getrandbits(32):08x}"
        self._counter = itertools.count(1)
        self._waiting: dict[str, _Waiting] = {}
        self._lock = threading.Lock()
        self.counters = dict.fromkeys(("requests", "forwarded", "answered", "timeouts", "refused"), 0)

    def request_filter(self) -> str:
        return f"{self.station.base}/station/command/+"

    def response_filter(self) -> str:
        """Where units answer: the hub routes these here."""
        return f"uncia/{self.site}/+/unit/command/+/response"

    # -- from staff --------------------------------------------------------------------------------
    def on_request(self, topic: str, payload: bytes) -> None:
        name = topic.rsplit("/", 1)[-1]
        self.counters["requests"] += 1
        asker_id: Any = None
        try:
            request = json.loads(payload)
            if not isinstance(request, dict):
                raise ValueError("the request must be a JSON object")
            asker_id = request.get("id")
            if not isinstance(asker_id, str) or not 0 < len(asker_id) <= 64:
                asker_id = None
                raise ValueError("the request needs an 'id' (a string of 1-64 characters)")
            if name not in NAMES:
                raise ValueError(f"no station command {name!r}; try one of {', '.join(NAMES)}")
            fields = {k: v for k, v in request.items() if k not in ("id", "timeout")}
            timeout = float(request.get("timeout", DEFAULT_TIMEOUT))
            if not 0 < timeout <= MAX_TIMEOUT:
                raise ValueError(f"timeout {timeout}: expected seconds between 0 and {MAX_TIMEOUT:g}")
        except (ValueError, TypeError, UnicodeDecodeError) as exc:
            self.counters["refused"] += 1
            self.reply(name, {"id": asker_id, "status": "bad_request", "message": str(exc)})
            return
        self.ask(name, asker_id, fields, timeout)

    def ask(
        self,
        name: str,
        asker_id: str,
        fields: dict[str, Any],
        timeout: float = DEFAULT_TIMEOUT,
        on_done: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        """Run one command; the answer is published (and handed to `on_done`, for the web page)."""
        unit = fields.get("unit")

        def done(data: dict[str, Any]) -> None:
            self.reply(name, data)
            if on_done is not None:
                on_done(data)

        if name in LOCAL:
            threading.Thread(
                target=self._run_local,
                args=(name, asker_id, fields, done),
                name=f"station-{name}",
                daemon=True,
            ).start()
            return
        try:
            topics = Topics(self.site, unit if isinstance(unit, str) else "")
        except TopicError:
            self.counters["refused"] += 1
            done({"id": asker_id, "status": "bad_request", "message": f"'unit' {unit!r} is not a unit id"})
            return
        ours = f"{self._prefix}.{next(self._counter)}"
        with self._lock:
            self._waiting[ours] = _Waiting(name, asker_id, unit, self.clock() + timeout, done)
        forwarded = {k: v for k, v in fields.items() if k != "unit"}
        self.counters["forwarded"] += 1
        self.send(topics.command(name), json.dumps({"id": ours, **forwarded}).encode())

    def _run_local(
        self, name: str, asker_id: str, fields: dict[str, Any], done: Callable[[dict[str, Any]], None]
    ) -> None:
        try:
            result = self.local[name](fields)
            data = {"id": asker_id, "status": "ok", "message": result.pop("message", "done"), **result}
        except (ValueError, KeyError) as exc:
            data = {"id": asker_id, "status": "bad_request", "message": str(exc)}
        except Exception as exc:  # e.g. the image fetch failed: staff get the words
            self.log.warning("station command %s failed: %s", name, exc)
            data = {"id": asker_id, "status": "error", "message": str(exc)}
        if fields.get("unit"):
            data.setdefault("unit", fields["unit"])
        self.counters["answered"] += 1
        done(data)

    # -- from units --------------------------------------------------------------------------------
    def on_unit_response(self, body: dict[str, Any]) -> bool:
        """A unit's answer (the ``data`` of its response envelope); True if it was one of ours."""
        ours = body.get("id")
        with self._lock:
            waiting = self._waiting.pop(ours, None) if isinstance(ours, str) else None
        if waiting is None:
            return False
        self.counters["answered"] += 1
        unit_reply = {k: v for k, v in body.items() if k != "id"}
        if waiting.on_done is not None:
            waiting.on_done(
                {
                    "id": waiting.asker_id,
                    "unit": waiting.unit,
                    "status": body.get("status", "ok"),
                    "message": body.get("message", ""),
                    "response": unit_reply,
                }
            )
        return True

    def tick(self) -> None:
        """Answer ``timeout`` for requests whose unit did not reply in time."""
        now = self.clock()
        with self._lock:
            late = [k for k, w in self._waiting.items() if w.deadline <= now]
            expired = [self._waiting.pop(k) for k in late]
        for waiting in expired:
            self.counters["timeouts"] += 1
            if waiting.on_done is not None:
                waiting.on_done(
                    {
                        "id": waiting.asker_id,
                        "unit": waiting.unit,
                        "status": "timeout",
                        "message": f"{waiting.unit} did not answer {waiting.name!r} in time: is it online?",
                    }
                )

    @property
    def waiting(self) -> int:
        return len(self._waiting)
