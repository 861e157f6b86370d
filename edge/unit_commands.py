"""Commands every unit answers: request on ``uncia/<site>/<unit>/unit/command/<name>``, reply on ``…/response``.

The request is a JSON object with a correlation ``id`` chosen by the asker (the station hub, or a
technician with ``mosquitto_pub``) and the command's own fields::

    uncia/helan/cam-01/unit/command/ping             {"id":"7f3a9c01.4"}
    uncia/helan/cam-01/unit/command/ping/response    envelope, type "ping", data:
                                                     {"id":"7f3a9c01.4","status":"ok","message":"pong",...}

Every response carries the request's ``id``, a ``status`` (``ok``, ``bad_request``, ``error``) and a
``message`` in words. Built-in commands: ``ping`` (uptime, software, clock) and ``config`` (the
effective configuration, as the unit parsed it). Agents add their own (the camera unit:
``capture_mode``, ``capture``). The image transfer (``command/image``) has its own handler
(`edge.camera.transfer`).

Responses go through the outbox like everything else the unit says, so an answer given just before
the link drops still arrives. A request delivered twice (QoS 1) is answered once.
"""

from __future__ import annotations

import collections
import json
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from edge.clock import utc_now
from edge.config import UnitConfig, effective_config, unit_identity
from edge.fix import ClockSource
from edge.messages import Envelope
from edge.outbox import Outbox, Priority
from edge.topics import Topics

OK, BAD_REQUEST, ERROR = "ok", "bad_request", "error"
MAX_ID_LENGTH = 64


class CommandError(Exception):
    """A handler's way of saying the request cannot be done; the text goes to the asker as ``error``."""


class BadRequest(CommandError):
    """The request itself is wrong (missing or bad field); answered as ``bad_request``."""


# A handler takes the request's fields (without ``id``) and returns the response's extra fields.
CommandHandler = Callable[[dict[str, Any]], dict[str, Any]]


class UnitCommands:
    """Answers the unit's commands. `add(name, handler)`, then `attach(relay)`."""

    def __init__(
        self,
        config: UnitConfig,
        outbox: Outbox,
        topics: Topics,
        envelope: Envelope,
        *,
        clock_source: Callable[[], ClockSource] = lambda: ClockSource.UNSYNCED,
        wall: Callable[[], datetime] = utc_now,
        mono: Callable[[], float] = time.monotonic,
        log: logging.Logger | None = None,
    ) -> None:
        self.config = config
        self.outbox = outbox
        self.topics = topics
        self.envelope = envelope
        self.clock_source = clock_source
        self.wall = wall
        self._mono = mono
        self._started = mono()
        self.log = log or logging.getLogger("uncia.commands")
        self._handlers: dict[str, CommandHandler] = {}
        self._seen: collections.OrderedDict[tuple[str, str], None] = collections.OrderedDict()
        self.counters = {"requests": 0, "answered": 0, "bad_requests": 0, "errors": 0, "duplicates": 0}
        self.add("ping", self._ping)
        self.add("config", self._config)

    def add(self, name: str, handler: CommandHandler) -> None:
        self.topics.command(name)  # checks the name
        self._handlers[name] = handler

    @property
    def names(self) -> list[str]:
        return sorted(self._handlers)

    def attach(self, relay: Any) -> None:
        """Subscribe to every command through `relay` (an `edge.relay.Relay`); renewed on reconnect."""
        for name in self._handlers:
            relay.subscribe(self.topics.command(name), self.handle)

    def handle(self, topic: str, payload: bytes) -> None:
        """One request (a `Relay.subscribe` handler): answer it via the outbox, whatever it holds."""
        name = topic.rsplit("/", 1)[-1]
        self.counters["requests"] += 1
        handler = self._handlers.get(name)
        request_id = None
        try:
            request = json.loads(payload)
            if not isinstance(request, dict):
                raise BadRequest("the request must be a JSON object")
            request_id = request.get("id")
            if not isinstance(request_id, str) or not 0 < len(request_id) <= MAX_ID_LENGTH:
                request_id = None
                raise BadRequest(f"the request needs an 'id' (a string of 1-{MAX_ID_LENGTH} characters)")
            if (name, request_id) in self._seen:
                self.counters["duplicates"] += 1
                return
            self._seen[name, request_id] = None
            if len(self._seen) > 256:
                self._seen.popitem(last=False)
            if handler is None:
                raise BadRequest(f"unit {self.topics.unit} has no command {name!r}")
            fields = {k: v for k, v in request.items() if k != "id"}
            result = handler(fields)
        except (json.JSONDecodeError, UnicodeDecodeError):
            self._answer(name, None, BAD_REQUEST, "the request is not JSON")
        except BadRequest as exc:
            self._answer(name, request_id, BAD_REQUEST, str(exc))
        except CommandError as exc:
            self._answer(name, request_id, ERROR, str(exc))
        except Exception as exc:  # the relay thread must keep going; the asker gets the words
            self.log.exception("command %s (%s) failed", name, request_id)
            self._answer(name, request_id, ERROR, f"the unit could not do {name!r}: {exc}")
        else:
            message = str(result.pop("message", "done"))
            self._answer(name, request_id, OK, message, result)

    def _answer(
        self,
        name: str,
        request_id: str | None,
        status: str,
        message: str,
        extra: dict[str, Any] | None = None,
    ) -> None:
        key = "answered" if status == OK else ("bad_requests" if status == BAD_REQUEST else "errors")
        self.counters[key] += 1
        if status != OK:
            self.log.warning("command %s (%s): %s: %s", name, request_id, status, message)
        data = {"id": request_id, "status": status, "message": message, **(extra or {})}
        now, clock, envelope = self.wall(), self.clock_source(), self.envelope

        def payload(seq: int) -> bytes:
            return envelope.encode("unit", seq, name, data, time=now, received=now, clock=clock)

        self.outbox.enqueue("unit", self.topics.command_response(name), payload, priority=Priority.EVENT)

    # -- built-in commands -------------------------------------------------------------------------
    def _ping(self, _fields: dict[str, Any]) -> dict[str, Any]:
        return {
            "message": "pong",
            "uptime_s": round(self._mono() - self._started, 1),
            "clock": str(self.clock_source()),
            "commands": self.names,
            **unit_identity(self.config),
        }

    def _config(self, _fields: dict[str, Any]) -> dict[str, Any]:
        return {"message": "effective configuration", "config": effective_config(self.config)}
