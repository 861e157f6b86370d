"""Live station events, fanned out to whoever watches (the web page's event streams, tests, the bench).

The hub publishes one event per thing that changed, already in the shape the staff view shows:

    {"type": "fix", "track": "collar-7", "fix": {...}}             a new position (see view.fix_view)
    {"type": "capture", "capture": {...}}                         a capture event began, grew or ended
    {"type": "alert", "alert": {...}, "raised": true}             an alert raised (or cleared: false)
    {"type": "unit", "unit": {...}}                               a unit's registry row changed

Listeners are called on the hub's thread and must only hand the event on (a queue, a loop's
``call_soon_threadsafe``); one that raises is dropped, never the hub.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

Listener = Callable[[dict[str, Any]], None]


class LiveFeed:
    def __init__(self, log: logging.Logger | None = None) -> None:
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()
        self.log = log or logging.getLogger("uncia.station.live")
        self.published = 0

    def listen(self, listener: Listener) -> Callable[[], None]:
        """Add `listener`; returns the function that removes it."""
        with self._lock:
            self._listeners = [*self._listeners, listener]

        def remove() -> None:
            with self._lock:
                self._listeners = [x for x in self._listeners if x is not listener]

        return remove

    @property
    def listeners(self) -> int:
        return len(self._listeners)

    def publish(self, event: dict[str, Any]) -> None:
        self.published += 1
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                self.log.exception("a live listener failed; it is removed")
                with self._lock:
                    self._listeners = [x for x in self._listeners if x is not listener]
