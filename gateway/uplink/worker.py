"""What every uplink shares: its thread (start, stop, sleeping between steps without polling) and its
lazily opened reader of the station record."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from gateway.station.record import RecordError, RecordReader


class UplinkThread:
    """Runs ``step()`` in a daemon thread; ``step`` returns how many seconds to wait before the next.

    `stop` wakes the thread at once; `wake` cuts the current wait short (new data in the record).
    A step that raises is logged and retried after `error_wait` seconds: an uplink never dies.
    """

    def __init__(self, name: str, step: Callable[[], float], log: logging.Logger, error_wait: float = 60.0):
        self.name = name
        self._step = step
        self.log = log
        self.error_wait = error_wait
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self._thread = None

    def wake(self) -> None:
        self._wake.set()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()  # before the step: a wake during the step cuts the next wait short
            try:
                wait = self._step()
            except Exception:
                self.log.exception("%s: unexpected error; trying again in %.0f s", self.name, self.error_wait)
                wait = self.error_wait
            if self._stop.is_set():
                break
            self._wake.wait(max(0.0, wait))


class RecordSource:
    """The uplink's read-only view of the station record, opened when first needed: the gateway may
    not have made the record yet. Says once why it cannot open it, and again only if the reason changes."""

    def __init__(self, path: Any, label: str, log: logging.Logger) -> None:
        self.path = path
        self.label = label
        self.log = log
        self._reader: RecordReader | None = None
        self._problem: str | None = None

    def get(self) -> RecordReader | None:
        if self._reader is None:
            try:
                self._reader = RecordReader(self.path)
            except RecordError as exc:
                if str(exc) != self._problem:
                    self.log.warning("%s uplink waits for the station record: %s", self.label, exc)
                    self._problem = str(exc)
                return None
            self._problem = None
        return self._reader

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
