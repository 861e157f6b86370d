"""A GPS receiver or collar dock on a serial port, read in its own thread, and its fixes published.

Shared by every unit that has one: the gateway (collar docks, its own GPS) and camera units with a
GPS (position for EXIF, GPS time for the records' clock source).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from edge.config import SerialSettings
from edge.decoder import FixDecoder
from edge.fix import ClockSource, Fix
from edge.messages import Envelope
from edge.outbox import Outbox
from edge.serial_source import SerialSource
from edge.topics import Topics

FixListener = Callable[[str, Fix], None]


def publish_fix(
    outbox: Outbox,
    topics: Topics,
    envelope: Envelope,
    source: str,
    fix: Fix,
    *,
    received: datetime,
    clock: ClockSource,
    extra: dict[str, Any] | None = None,
) -> int:
    """Commit one fix message for `source` to the outbox (it is accepted at the next commit)."""
    if extra:
        data = fix.to_dict()
        data.update(extra)

        def payload(seq: int) -> bytes:
            return envelope.encode(
                source, seq, "fix", data, time=data["time"], received=received, clock=clock
            )

    else:

        def payload(seq: int) -> bytes:
            return envelope.fix(source, seq, fix, received=received, clock=clock)

    return outbox.enqueue(source, topics.fix(source), payload)


def publish_heard(
    outbox: Outbox,
    topics: Topics,
    envelope: Envelope,
    heard: Any,
    *,
    received: datetime,
    clock: ClockSource,
) -> int:
    """Commit a collar fix heard by radio (an `edge.lora.ingest.RadioFix`): the collar is the entity,
    the radio details (RSSI, SNR, modem, battery) travel along. The gateway and camera units alike."""
    return publish_fix(
        outbox, topics, envelope, heard.collar, heard.fix, received=received, clock=clock, extra=heard.extra()
    )


class SourceWorker:
    """Reads one serial source in its own thread and hands each decoded fix to `accept`."""

    def __init__(
        self,
        settings: SerialSettings,
        decoder: FixDecoder,
        accept: FixListener,
        stop: threading.Event,
        log: logging.Logger,
    ) -> None:
        self.settings = settings
        self.decoder = decoder
        self.source = SerialSource(settings.port, baudrate=settings.baudrate, name=settings.name, log=log)
        self._accept = accept
        self._stop = stop
        self._log = log
        self.fixes = 0
        self.thread = threading.Thread(target=self._run, name=f"source-{settings.name}", daemon=True)

    def _run(self) -> None:
        name, decoder, accept = self.settings.name, self.decoder, self._accept
        try:
            for chunk in self.source.read_chunks(self._stop):
                # b"" marks a quiet spell: the epoch in progress is complete (a half-received line
                # stays pending; the device may only be slow).
                for fix in decoder.feed(chunk) if chunk else decoder.idle():
                    accept(name, fix)
                    self.fixes += 1
            for fix in decoder.flush():
                accept(name, fix)
                self.fixes += 1
        except Exception:  # a bug must not silently stop a source: say so loudly, the watchdog restarts us
            self._log.exception("source %s stopped by an internal error", name)
            raise
        finally:
            self.source.close()

    def stats(self) -> dict[str, Any]:
        source = self.source
        return {
            "port": self.settings.port,
            "connected": source.connected,
            "bytes": source.bytes_read,
            "reconnects": source.reconnects,
            "last_error": source.last_error,
            "sentences": self.decoder.sentences_ok,
            "fixes": self.fixes,
            "dropped": dict(self.decoder.dropped),
        }
