"""Collar-proximity arming: a collared snow leopard heard nearby makes the camera capture more.

A camera unit with a LoRa modem (a ``[[lora]]`` table in its config) listens to the collars' radio
packets like the station does. A collar fix heard **louder than** ``collar_rssi_dbm`` (the collar is
close: tune the threshold on site by walking a collar past the trap) arms the unit for
``proximity_hold_s`` after the last such packet. While armed:

- **no rest after a burst** (the re-trigger interval is 0 s): an animal that lingers is photographed
  all the time the PIR sees it, instead of once per ``retrigger_interval_s``;
- **bursts up to twice as long** (``2 × max_burst`` stills, at most 100), still at
  ``burst_interval_s``, still only while the PIR sees motion: a collar heard 100 m away behind a ridge
  must not fill the card with pictures of an empty trail;
- every event that starts (and any running when a collar is heard) is **tagged with the collar ids**
  heard in the window (``tags.collars``, and ``tags.collar_rssi_dbm``: the strongest reception of
  each), in its capture messages and in every image's sidecar saved after the tag.

`CollarProximity` is the pure core (packets and a monotonic time in, armed or not out).
`CollarListener` is the add-on: one `edge.lora.ingest.LoraWorker` per modem (the station's modem
worker: configure, receive, health check, reset and retry with backoff, each failure logged once
with its reason), feeding the core. With ``relay_collars`` (the default) every collar fix the unit
hears, near or far, is also relayed to the station like the gateway's own (``uncia/<site>/<unit>/
collar-<id>/event/fix``, through the outbox): a trap in a ravine hears collars the station cannot.
Packets that are not collar fixes are counted and dropped.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from edge.camera.addons import CameraAddon
from edge.camera.capture import BurstPolicy
from edge.camera.events import CaptureEvent
from edge.config import LoraSettings
from edge.lora.ingest import LoraWorker, ModemFactory, PacketDecoder, RadioFix, RawPacket, open_modem
from edge.lora.modem import Packet

if TYPE_CHECKING:
    from edge.camera.agent import CameraUnit

ARMED_BURST_FACTOR = 2
MAX_STILLS = 100  # the config's own limit for max_burst


def armed_policy(base: BurstPolicy) -> BurstPolicy:
    """The burst policy while a collar is near: no rest, bursts up to twice as long (module notes)."""
    return dataclasses.replace(
        base, max_stills=min(MAX_STILLS, base.max_stills * ARMED_BURST_FACTOR), retrigger_s=0.0
    )


@dataclasses.dataclass
class _Heard:
    last: float  # monotonic seconds of the last packet above the threshold
    rssi: int  # its RSSI
    strongest: int  # the strongest above-threshold RSSI in the current window


class CollarProximity:
    """Which collars were heard close (RSSI above `threshold_dbm`) in the last `hold_s` seconds.

    Pure: times are monotonic seconds passed in by the caller. `feed` takes a radio packet as the
    modem heard it; `heard` a collar id (``collar-17``) already decoded. The unit is armed while any
    collar was heard close within `hold_s`; `armings` counts how often it became armed.
    """

    def __init__(self, threshold_dbm: float, hold_s: float, *, decoder: PacketDecoder | None = None) -> None:
        if not hold_s > 0:
            raise ValueError(f"proximity hold {hold_s!r} s: expected more than 0 s")
        self.threshold_dbm = threshold_dbm
        self.hold_s = hold_s
        self.decoder = decoder or PacketDecoder("proximity")
        self.counts: Counter[str] = Counter()
        self.armings = 0
        self._heard: dict[str, _Heard] = {}
        self._lock = threading.Lock()  # the modem thread writes, the capture thread reads

    def feed(self, packet: Packet, now: float) -> list[str]:
        """A packet heard at `now`: the collars in it that count as close (empty if none, or if it is
        not a collar fix at all)."""
        self.counts["packets"] += 1
        result = self.decoder.decode(packet)
        if isinstance(result, RawPacket):
            self.counts["not_collar"] += 1
            return []
        close = [fix.collar for fix in result if self.heard(fix.collar, fix.rssi, now)]
        return list(dict.fromkeys(close))

    def heard(self, collar: str, rssi: float, now: float) -> bool:
        """Collar `collar` heard at `rssi` dBm at `now`; True if that was close enough to count."""
        if rssi <= self.threshold_dbm:
            self.counts["too_weak"] += 1
            return False
        self.counts["close"] += 1
        with self._lock:
            self._prune(now)
            if not self._heard:
                self.armings += 1
            entry = self._heard.get(collar)
            rssi = int(rssi)
            if entry is None:
                self._heard[collar] = _Heard(now, rssi, rssi)
            else:
                entry.last, entry.rssi, entry.strongest = now, rssi, max(entry.strongest, rssi)
        return True

    def _prune(self, now: float) -> None:
        for collar in [c for c, h in self._heard.items() if now - h.last > self.hold_s]:
            del self._heard[collar]

    def armed(self, now: float) -> bool:
        """Whether a collar was heard close within `hold_s` before `now`."""
        with self._lock:
            self._prune(now)
            return bool(self._heard)

    def collars(self, now: float) -> dict[str, int]:
        """The collars heard close within the window, sorted by id, each with its strongest RSSI."""
        with self._lock:
            self._prune(now)
            return {c: self._heard[c].strongest for c in sorted(self._heard)}

    def remaining_s(self, now: float) -> float:
        """How long capture stays armed if no collar is heard again (0 when not armed)."""
        with self._lock:
            self._prune(now)
            last = max((h.last for h in self._heard.values()), default=None)
        return 0.0 if last is None else max(0.0, last + self.hold_s - now)


class CollarListener(CameraAddon):
    """Listens to collars on the unit's LoRa modem(s) and arms capture when one is close (module notes)."""

    name = "proximity"

    def __init__(
        self,
        unit: CameraUnit,
        modems: tuple[LoraSettings, ...],
        *,
        monotonic: Callable[[], float],
        modem_factory: ModemFactory = open_modem,
        log: logging.Logger | None = None,
    ) -> None:
        s = unit.settings
        self.unit = unit
        site = modems[0].payload_site() if modems else None
        decoder = PacketDecoder("proximity", site) if site is not None else None
        self.core = CollarProximity(s.collar_rssi_dbm, s.proximity_hold_s, decoder=decoder)
        self._mono = monotonic
        self.log = log or logging.getLogger("uncia.camera.proximity")
        self._stop = threading.Event()
        self.workers = [
            LoraWorker(
                settings,
                self._on_fix,
                self._on_raw,
                self._stop,
                modem_factory=modem_factory,
                log=self.log.getChild(settings.name),
            )
            for settings in modems
        ]

    def start(self) -> None:
        for worker in self.workers:
            worker.thread.start()

    def stop(self) -> None:
        self._stop.set()
        for worker in self.workers:
            if worker.thread.is_alive():
                worker.thread.join(5.0)

    def _on_fix(self, fix: RadioFix) -> None:
        if self.unit.settings.relay_collars:
            self.unit.relay_collar_fix(fix)
        now = self._mono()
        was_armed = self.core.armed(now)
        if not self.core.heard(fix.collar, fix.rssi, now):
            return
        if not was_armed:
            self.log.info(
                "%s heard at %d dBm (threshold %g dBm): capture armed for %g s",
                fix.collar,
                fix.rssi,
                self.core.threshold_dbm,
                self.core.hold_s,
            )
        current = self.unit.current
        if current is not None:
            self._tag(current, now)

    def _on_raw(self, raw: RawPacket) -> None:
        self.core.counts["not_collar"] += 1

    def _tag(self, event: CaptureEvent, now: float) -> None:
        collars = self.core.collars(now)
        if not collars:
            return
        known = dict(event.tags.get("collar_rssi_dbm", {}))
        for collar, rssi in collars.items():
            known[collar] = max(rssi, known.get(collar, rssi))
        event.tag("collars", sorted(known))
        event.tag("collar_rssi_dbm", {c: known[c] for c in sorted(known)})

    def event_started(self, event: CaptureEvent) -> None:
        self._tag(event, self._mono())

    def policy(self, policy: BurstPolicy) -> BurstPolicy:
        return armed_policy(policy) if self.core.armed(self._mono()) else policy

    def report(self) -> dict[str, Any]:
        now = self._mono()
        return {
            "armed": self.core.armed(now),
            "armed_for_s": round(self.core.remaining_s(now), 1),
            "collars": self.core.collars(now),
            "armings": self.core.armings,
            "threshold_dbm": self.core.threshold_dbm,
            "counts": dict(self.core.counts),
            "modems": {w.settings.name: w.stats() for w in self.workers},
        }
