"""The base-station gateway: every configured serial source → fixes → durable outbox → station broker.

One thread per serial source reads bytes, decodes fixes and commits each to the outbox; the relay
drains the outbox to the broker. A fix is *accepted* once its outbox commit is on disk; from then on
it survives a dead broker, a killed agent and a power cut, and is sent in order when the link returns.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from edge.clock import system_clock_source, utc_now
from edge.config import UnitConfig, unit_identity
from edge.decoder import FixDecoder
from edge.fix import ClockSource, Fix
from edge.fix_source import FixListener, SourceWorker, publish_fix, publish_heard
from edge.lora.ingest import LoraWorker, RadioFix, RawPacket
from edge.messages import Envelope
from edge.outbox import Outbox
from edge.relay import Relay
from edge.topics import Topics
from edge.unit_commands import UnitCommands


class Gateway:
    """The station gateway agent. `start()`, then `stop()`; `health()` for the periodic status."""

    def __init__(
        self,
        config: UnitConfig,
        *,
        clock: Callable[[], datetime] = utc_now,
        clock_source: Callable[[], ClockSource] = system_clock_source,
        on_fix: FixListener | None = None,
        log: logging.Logger | None = None,
    ) -> None:
        self.config = config
        self.log = log or logging.getLogger("uncia.gateway")
        self.clock = clock
        self.clock_source = clock_source
        self.on_fix = on_fix
        unit = config.unit
        self.topics = Topics(unit.site, unit.id)
        self.envelope = Envelope(unit.id)
        self._stop = threading.Event()
        self.outbox = Outbox(
            config.outbox.path,
            max_messages=config.outbox.max_messages,
            commit_interval=config.outbox.commit_interval,
            log=self.log.getChild("outbox"),
        )
        self.relay = Relay(
            self.outbox,
            config.mqtt,
            self.topics,
            unit=unit,
            health_interval=config.health.interval,
            health_extra=self.health,
            identity=unit_identity(config),
            clock_source=lambda: self._clock_state,
            envelope=self.envelope,
            log=self.log.getChild("relay"),
        )
        self._clock_state = clock_source()
        self.commands = UnitCommands(
            config,
            self.outbox,
            self.topics,
            self.envelope,
            clock_source=lambda: self._clock_state,
            wall=clock,
            log=self.log.getChild("commands"),
        )
        self.commands.attach(self.relay)
        # The station's hub (record, registry, alerts, commands, staff web page) when [station] is set.
        self.hub = None
        self.web = None
        self.uplinks = None
        if config.station is not None:
            from gateway.station.hub import StationHub

            self.hub = StationHub(
                config,
                self.outbox,
                self.envelope,
                clock_source=lambda: self._clock_state,
                log=self.log.getChild("station"),
            )
        gate = config.fixes
        self.workers = [
            SourceWorker(
                settings,
                FixDecoder(min_quality=gate.min_quality, max_hdop=gate.max_hdop, date_hint=self._date_hint),
                self._accept,
                self._stop,
                self.log.getChild(settings.name),
            )
            for settings in config.serial
        ]
        self.lora_workers = [
            LoraWorker(
                settings,
                self._accept_radio_fix,
                self._accept_raw,
                self._stop,
                log=self.log.getChild(settings.name),
            )
            for settings in config.lora
        ]

    def _date_hint(self) -> date | None:
        """Today's date for receivers that send time without date — only from a synchronised clock."""
        if self._clock_state is ClockSource.UNSYNCED:
            return None
        return self.clock().date()

    def _accept(self, source: str, fix: Fix) -> None:
        publish_fix(
            self.outbox,
            self.topics,
            self.envelope,
            source,
            fix,
            received=self.clock(),
            clock=self._clock_state,
        )
        if self.on_fix is not None:
            self.on_fix(source, fix)

    def _accept_radio_fix(self, heard: RadioFix) -> None:
        """A collar fix from a LoRa modem: the collar is the entity, the radio details travel along."""
        publish_heard(
            self.outbox, self.topics, self.envelope, heard, received=self.clock(), clock=self._clock_state
        )
        if self.on_fix is not None:
            self.on_fix(heard.collar, heard.fix)

    def _accept_raw(self, raw: RawPacket) -> None:
        """A packet that did not decode: relayed as heard, with the reason, never dropped."""
        received = self.clock()
        clock = self._clock_state
        envelope = self.envelope
        data = raw.data()

        def payload(seq: int) -> bytes:
            return envelope.encode(raw.modem, seq, "raw", data, time=received, received=received, clock=clock)

        self.outbox.enqueue(raw.modem, self.topics.raw(raw.modem), payload)

    def start(self) -> None:
        unit = self.config.unit
        self.log.info(
            "gateway %s/%s starting: %d serial source(s), %d LoRa modem(s), outbox %s, broker %s:%d",
            unit.site,
            unit.id,
            len(self.workers),
            len(self.lora_workers),
            self.config.outbox.path,
            self.config.mqtt.host,
            self.config.mqtt.port,
        )
        self.relay.start()
        try:
            self._start_station()
        except BaseException:
            # e.g. the web port is taken: stop what did start, then let the caller report it
            self.stop()
            raise
        for worker in self.workers:
            worker.thread.start()
        for lora in self.lora_workers:
            lora.thread.start()

    def _start_station(self) -> None:
        if self.hub is None:
            return
        self.hub.start()
        s = self.config.station
        if s.web:
            from gateway.station.web import StationWeb

            password = s.web_password()
            if s.web_open_to_network:
                self.log.warning(
                    "the staff page on %s:%d has no password: anyone on that network sees exact positions and"
                    " can pause cameras; set [station] web_password_file",
                    s.web_host,
                    s.web_port,
                )
            web = StationWeb(
                self.hub, s.web_host, s.web_port, log=self.log.getChild("web"), password=password
            )
            web.start()
            self.web = web
            self.log.info("staff page on %s", web.url)
        if self.config.uplink is not None:
            from gateway.uplink.service import Uplinks

            self.uplinks = Uplinks(self.config.uplink, s.record, log=self.log.getChild("uplink"))
            self.hub.on_new_data = self.uplinks.new_data
            self.hub.on_critical_alert = self.uplinks.critical_alert
            self.uplinks.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop reading, commit what was accepted, give the relay `timeout` s to drain, disconnect."""
        self._stop.set()
        for worker in self.workers:
            worker.source.close()
            if worker.thread.ident is not None:
                worker.thread.join(timeout)
        for lora in self.lora_workers:
            if lora.thread.ident is not None:
                lora.thread.join(timeout)
        if self.uplinks is not None:
            self.uplinks.close()
        if self.web is not None:
            self.web.stop()
        if self.hub is not None:
            self.hub.stop()
        self.outbox.commit()
        self.relay.stop(timeout)
        self.outbox.close()
        self.log.info("gateway stopped")

    def alive(self) -> bool:
        """True while the relay and every source's thread run: the systemd watchdog pings only then."""
        threads = [w.thread for w in self.workers] + [w.thread for w in self.lora_workers]
        hub_ok = self.hub is None or self.hub.alive()
        if self.uplinks is not None:
            hub_ok = hub_ok and all(uplink.running for uplink in self.uplinks.running)
        return self.relay.alive() and hub_ok and all(t.is_alive() for t in threads)

    def wait(self, stop: threading.Event) -> None:
        """Run until `stop` is set (the CLI sets it on SIGTERM/SIGINT)."""
        stop.wait()

    def health(self) -> dict[str, Any]:
        self._clock_state = self.clock_source()
        report: dict[str, Any] = {
            "clock": str(self._clock_state),
            "sources": {w.settings.name: w.stats() for w in self.workers},
            "lora": {w.settings.name: w.stats() for w in self.lora_workers},
        }
        if self.hub is not None:
            report["station"] = {
                "connected": self.hub.connected,
                **self.hub.counters,
                "ingest": dict(self.hub.ingest.counts),
                "commands": dict(self.hub.commands.counters),
                "web_clients": self.hub.live.listeners,
            }
        if self.uplinks is not None:
            report["uplinks"] = self.uplinks.status()
        return report
