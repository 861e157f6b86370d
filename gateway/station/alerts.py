"""The station's alert rules: what staff must look at, raised when a condition starts and cleared
when it ends.

`AlertEngine` is a pure core: the hub feeds it what it hears (collar fixes, unit availability, any
message from a unit, health bodies) and the time (`tick`), and gets back `AlertChange` s to log,
keep in the station record and publish. It reads no clock, no disk and no network, so a simulated
week runs in milliseconds. Times are timezone-aware UTC datetimes; each alert has a stable ``key``
(``"<kind>:<subject>"``), so a change replaces the one before it.

The rules (limits from ``[station]``, `edge.config.StationSettings`):

===================  ========  ===========================================================================
kind                 severity  raised when … / cleared when …
===================  ========  ===========================================================================
``unit_offline``     warning   availability ``offline``, or nothing heard, for more than
                               ``unit_offline_min`` (from the earlier of going offline and the last
                               message) / availability ``online`` or a message newer than the alert
``collar_silent``    warning   no fix for ``collar_silent_h`` hours (fix time vs. `tick` time) / a fix
``mortality``        critical  fixes stay within ``mortality_radius_m`` for ``mortality_h`` hours
                               (`gateway.station.mortality`: the rule, its trade-offs) / two fixes in
                               a row beyond 1.5 × the radius, or one beyond 10 ×
``geofence_exit``    critical  a fix outside the reserve / a fix inside it
``conflict_zone``    critical  a fix inside a village or camp, or within ``conflict_buffer_m`` of one /
                               a fix outside every buffer (raised again, same ``since``, when the
                               collar enters the zone itself or a different zone becomes the nearest)
``low_battery``      warning   collar ``battery_percent`` below ``low_battery_percent``, or a unit's
                               ``battery_v`` below ``low_battery_v`` / ``+5`` % or ``+0.1`` V above
``disk_full``        warning   a unit's disk use above ``disk_full_percent`` / 5 points below it
                               (``disk.used_percent``, or ``disk.total_bytes`` with ``free_bytes``;
                               free bytes alone cannot say how full a card is)
``modem_unhealthy``  warning   a gateway's LoRa modem (``agent.lora.<name>.state``) ``failed``, or
                               ``starting``/``configuring``/``resetting`` in two health reports in a
                               row / ``receiving`` again, or no longer reported
===================  ========  ===========================================================================

Fixes are taken in time order per collar: a fix not newer than the collar's latest (a duplicate, a
late batch) changes nothing, since it says nothing about where the animal is now.

After a restart, `restore` the alerts the station record holds as active: they are not raised again,
and each clears by its own rule (a restored mortality alert keeps its centre and start). Recent fixes
from the record go to `remember_fix`, which rebuilds each collar's state without judging old positions.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from edge.config import StationSettings
from edge.fix import iso_utc
from gateway.station.geofence import Geofence
from gateway.station.mortality import StationaryWatch

KINDS = (
    "unit_offline",
    "collar_silent",
    "mortality",
    "geofence_exit",
    "conflict_zone",
    "low_battery",
    "disk_full",
    "modem_unhealthy",
)
CRITICAL = frozenset({"mortality", "geofence_exit", "conflict_zone"})
# Hysteresis: a reading that wobbles around the limit raises once, and clears only this far beyond.
BATTERY_CLEAR_PERCENT = 5.0
BATTERY_CLEAR_V = 0.1
DISK_CLEAR_PERCENT = 5.0
MODEM_HEALTHY = frozenset({"receiving"})
# A modem passes through these while starting or recovering; seen in two reports in a row it is stuck.
MODEM_TRANSIENT = frozenset({"starting", "configuring", "resetting"})
# Details that make an active alert worth announcing again (same `since`) when they change.
_MATERIAL: dict[str, tuple[str, ...]] = {"conflict_zone": ("zone", "inside")}


def _utc(moment: datetime, what: str = "time") -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} {moment.isoformat()} has no timezone; pass an aware UTC datetime")
    return moment.astimezone(UTC)


def _parse_time(text: Any, what: str) -> datetime:
    if not isinstance(text, str):
        raise ValueError(f"alert {what} must be an ISO 8601 string, not {text!r}")
    return _utc(datetime.fromisoformat(text.replace("Z", "+00:00")), f"alert {what}")


@dataclass(frozen=True)
class Alert:
    """One condition staff should look at (module notes for the kinds). ``key`` is
    ``"<kind>:<subject>"``; ``since`` is when the condition began; ``details`` are JSON values."""

    key: str
    kind: str
    subject: str
    severity: str
    message: str
    since: datetime
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, kind: str, subject: str, message: str, since: datetime, **details: Any) -> Alert:
        """An alert with its key and severity filled in from `kind`."""
        severity = "critical" if kind in CRITICAL else "warning"
        return cls(f"{kind}:{subject}", kind, subject, severity, message, _utc(since), details)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "kind": self.kind,
            "subject": self.subject,
            "severity": self.severity,
            "message": self.message,
            "since": iso_utc(self.since),
            "details": self.details,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Alert:
        """The alert `to_dict` wrote; ValueError names a missing or malformed field."""
        missing = [k for k in ("key", "kind", "subject", "severity", "message", "since") if k not in data]
        if missing:
            raise ValueError(f"alert {data.get('key', '?')!r} lacks {', '.join(missing)}")
        details = data.get("details") or {}
        if not isinstance(details, Mapping):
            raise ValueError(f"alert {data['key']!r}: details must be an object, not {details!r}")
        return cls(
            str(data["key"]),
            str(data["kind"]),
            str(data["subject"]),
            str(data["severity"]),
            str(data["message"]),
            _parse_time(data["since"], "since"),
            dict(details),
        )


@dataclass(frozen=True)
class AlertChange:
    """An alert raised (`raised` True: new, or its details changed materially) or cleared, at `at`
    (the time of the fix, message or tick that decided it); `note` says why it cleared."""

    alert: Alert
    raised: bool
    at: datetime
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the alert's fields plus ``state`` (``raised``/``cleared``), ``at`` and ``note``."""
        return {
            **self.alert.to_dict(),
            "state": "raised" if self.raised else "cleared",
            "at": iso_utc(self.at),
            "note": self.note,
        }


@dataclass
class _Unit:
    offline_since: datetime | None = None  # availability went offline (None: online or not said)
    last_seen: datetime | None = None


@dataclass
class _Collar:
    watch: StationaryWatch
    last_fix: datetime | None = None


class AlertEngine:
    """The station's alert rules over what the hub hears (module notes). Not thread-safe: call it
    from one thread (the hub's), or under one lock."""

    def __init__(self, settings: StationSettings, geofence: Geofence | None = None) -> None:
        """`geofence` defaults to the ``[station] boundary`` file, if one is set (read once, here)."""
        self.settings = settings
        self.geofence = geofence if geofence is not None else Geofence.from_settings(settings)
        self._active: dict[str, Alert] = {}
        self._units: dict[str, _Unit] = {}
        self._collars: dict[str, _Collar] = {}
        self._modem_first_bad: dict[str, datetime] = {}  # "<unit>/<name>": first report not healthy

    # --- alerts in and out -----------------------------------------------------------------------

    def active(self) -> list[Alert]:
        """The alerts raised and not cleared: critical first, then oldest first."""
        return sorted(self._active.values(), key=lambda a: (a.severity != "critical", a.since, a.key))

    def restore(self, active: Iterable[Alert]) -> None:
        """Take alerts known to be active (from the station record after a restart) without raising
        them again; each clears by its rule. Call before feeding messages."""
        for alert in active:
            self._active[alert.key] = alert
            s, since = alert.subject, alert.since
            if alert.kind == "unit_offline":
                unit = self._units.setdefault(s, _Unit())
                unit.offline_since = since if unit.offline_since is None else min(unit.offline_since, since)
            elif alert.kind == "collar_silent":
                collar = self._collar(s)
                collar.last_fix = collar.last_fix or since
            elif alert.kind == "mortality":
                lat, lon = alert.details.get("lat"), alert.details.get("lon")
                if isinstance(lat, int | float) and isinstance(lon, int | float):
                    self._collar(s).watch.seed(float(lat), float(lon), since)
            elif alert.kind == "modem_unhealthy":
                self._modem_first_bad.setdefault(s, since)

    def forget(self, subject: str, at: datetime) -> list[AlertChange]:
        """Drop a unit or collar taken out of service: its state, and its alerts cleared (a unit's
        modem alerts too)."""
        at = _utc(at, "at")
        self._units.pop(subject, None)
        self._collars.pop(subject, None)
        changes: list[AlertChange] = []
        for key, alert in list(self._active.items()):
            if alert.subject == subject or alert.subject.startswith(subject + "/"):
                changes += self._clear(key, at, f"{alert.subject} taken out of service")
        for modem in [m for m in self._modem_first_bad if m.startswith(subject + "/")]:
            del self._modem_first_bad[modem]
        return changes

    def _raise(self, alert: Alert, at: datetime) -> list[AlertChange]:
        current = self._active.get(alert.key)
        if current is not None:
            fields_ = _MATERIAL.get(alert.kind, ())
            if all(current.details.get(f) == alert.details.get(f) for f in fields_):
                return []
            alert = replace(alert, since=current.since)
        self._active[alert.key] = alert
        return [AlertChange(alert, True, at)]

    def _clear(self, key: str, at: datetime, note: str) -> list[AlertChange]:
        alert = self._active.pop(key, None)
        return [] if alert is None else [AlertChange(alert, False, at, note)]

    def _collar(self, collar: str) -> _Collar:
        state = self._collars.get(collar)
        if state is None:
            state = self._collars[collar] = _Collar(
                StationaryWatch(self.settings.mortality_radius_m, self.settings.mortality_h)
            )
        return state

    # --- collars ---------------------------------------------------------------------------------

    def fix(
        self, collar: str, time: datetime, lat: float, lon: float, *, battery_percent: float | None = None
    ) -> list[AlertChange]:
        """A collar's fix (its GPS `time`): clears ``collar_silent``, and judges the geofence,
        conflict zones, mortality and battery. An older or duplicate fix changes nothing."""
        t = _utc(time, "fix time")
        if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
            raise ValueError(f"fix from {collar} at lat {lat}, lon {lon}: not a position in degrees")
        state = self._collar(collar)
        if state.last_fix is not None and t <= state.last_fix:
            return []
        state.last_fix = t
        at = f"{lat:.5f}, {lon:.5f}"
        changes = self._clear(f"collar_silent:{collar}", t, f"{collar} heard again (fix at {_clock(t, t)})")
        if self.geofence is not None:
            changes += self._geofence(collar, t, lat, lon, at)
        changes += self._mortality(collar, state, t, lat, lon)
        if battery_percent is not None:
            changes += self._collar_battery(collar, t, float(battery_percent))
        return changes

    def remember_fix(self, collar: str, time: datetime, lat: float, lon: float) -> None:
        """A fix from the station record, replayed after a restart: rebuilds the collar's last-fix
        time and mortality cluster without judging anything (so an old fix outside the reserve does
        not raise, or clear, an alert about where the animal is now). Feed them in time order after
        `restore`; live fixes then go to `fix`."""
        t = _utc(time, "fix time")
        state = self._collar(collar)
        if state.last_fix is not None and t <= state.last_fix:
            return
        state.last_fix = t
        state.watch.add(t, lat, lon)

    def _geofence(self, collar: str, t: datetime, lat: float, lon: float, at: str) -> list[AlertChange]:
        assert self.geofence is not None
        where = self.geofence.check(lat, lon)
        changes: list[AlertChange] = []
        key = f"geofence_exit:{collar}"
        if where.inside_reserve:
            changes += self._clear(key, t, f"{collar} back inside {where.reserve} at {at}")
        else:
            out = round(where.outside_m)
            current = self._active.get(key)
            since = current.since if current else t
            msg = (
                f"{collar} is outside {where.reserve}: {_distance(out)} beyond the boundary at {at}"
                f" (outside since {_clock(since, t)})"
            )
            changes += self._raise(
                Alert.of(
                    "geofence_exit", collar, msg, t, lat=lat, lon=lon, reserve=where.reserve, distance_m=out
                ),
                t,
            )
        key = f"conflict_zone:{collar}"
        hit = where.conflict
        if hit is None:
            changes += self._clear(key, t, f"{collar} clear of every village and camp buffer at {at}")
        else:
            place = f"{hit.name} ({hit.kind})"
            msg = (
                f"{collar} is inside {place} at {at}: risk of conflict with people and livestock"
                if hit.inside
                else f"{collar} is {_distance(hit.distance_m)} from {place} at {at}: risk of conflict"
                " with people and livestock"
            )
            changes += self._raise(
                Alert.of(
                    "conflict_zone",
                    collar,
                    msg,
                    t,
                    lat=lat,
                    lon=lon,
                    zone=hit.name,
                    zone_kind=hit.kind,
                    distance_m=hit.distance_m,
                    inside=hit.inside,
                ),
                t,
            )
        return changes

    def _mortality(
        self, collar: str, state: _Collar, t: datetime, lat: float, lon: float
    ) -> list[AlertChange]:
        key = f"mortality:{collar}"
        moved, still = state.watch.add(t, lat, lon)
        if moved:
            return self._clear(key, t, f"{collar} moved: fix at {lat:.5f}, {lon:.5f} is outside the cluster")
        if still is None or key in self._active:
            return []
        msg = (
            f"{collar} has stayed within {still.radius_m:.0f} m since {_clock(still.since, t)}"
            f" ({_duration(timedelta(hours=still.hours))}): possible mortality or collar drop-off"
        )
        alert = Alert.of(
            "mortality",
            collar,
            msg,
            still.since,
            lat=round(still.lat, 6),
            lon=round(still.lon, 6),
            radius_m=still.radius_m,
            max_distance_m=still.max_m,
            fixes=still.fixes,
            hours=round(still.hours, 2),
        )
        return self._raise(alert, t)

    def _collar_battery(self, collar: str, t: datetime, percent: float) -> list[AlertChange]:
        key, limit = f"low_battery:{collar}", self.settings.low_battery_percent
        if percent < limit:
            msg = f"{collar} battery at {percent:.0f} % (below {limit:.0f} %): plan a collar drop-off or recapture"
            return self._raise(
                Alert.of("low_battery", collar, msg, t, battery_percent=percent, limit=limit), t
            )
        if percent >= limit + BATTERY_CLEAR_PERCENT:
            return self._clear(key, t, f"{collar} battery at {percent:.0f} %")
        return []

    # --- units -----------------------------------------------------------------------------------

    def unit_availability(self, unit: str, online: bool, at: datetime) -> list[AlertChange]:
        """The unit's ``unit/state/availability`` (``online``/``offline``), in the order it arrives."""
        at = _utc(at, "at")
        state = self._units.setdefault(unit, _Unit())
        if online:
            state.offline_since = None
            state.last_seen = at if state.last_seen is None else max(state.last_seen, at)
            return self._clear(f"unit_offline:{unit}", at, f"{unit} is online again")
        if state.offline_since is None:
            state.offline_since = at
        return self._check_unit(unit, state, at)

    def unit_seen(self, unit: str, at: datetime) -> list[AlertChange]:
        """Any message from the unit (a fix, an event, health), at its arrival time. A message older
        than the unit going offline (a retained one replayed on subscribe) does not clear it."""
        at = _utc(at, "at")
        state = self._units.setdefault(unit, _Unit())
        state.last_seen = at if state.last_seen is None else max(state.last_seen, at)
        if state.offline_since is not None and at > state.offline_since:
            state.offline_since = None
        alert = self._active.get(f"unit_offline:{unit}")
        if alert is not None and state.offline_since is None and at > alert.since:
            return self._clear(alert.key, at, f"{unit} heard again")
        return []

    def _check_unit(self, unit: str, state: _Unit, now: datetime) -> list[AlertChange]:
        limit = timedelta(minutes=self.settings.unit_offline_min)
        if state.offline_since is not None:
            since, why = state.offline_since, "offline"
            if state.last_seen is not None and state.last_seen < since:
                since = state.last_seen
        elif state.last_seen is not None:
            since, why = state.last_seen, "silent"
        else:
            return []
        if now - since <= limit:
            return []
        heard = "never heard" if state.last_seen is None else f"last heard {_clock(state.last_seen, now)}"
        if why == "offline":
            msg = (
                f"{unit} has been offline for {_duration(now - since)} ({heard}): power, network or a crash?"
            )
        else:
            msg = (
                f"{unit} has sent nothing for {_duration(now - since)} ({heard}) though not reported offline"
            )
        last_seen = None if state.last_seen is None else iso_utc(state.last_seen)
        return self._raise(Alert.of("unit_offline", unit, msg, since, reason=why, last_seen=last_seen), now)

    def unit_health(self, unit: str, body: Mapping[str, Any], at: datetime) -> list[AlertChange]:
        """A health body (the envelope's ``data``): a unit's ``health`` (``unit/state/health``) or a
        camera's ``camera_health`` (``<camera>/state/health``). Judges battery, disk and LoRa modems
        from whatever the body carries; a value it lacks changes nothing. Does not count as the unit
        being heard: call `unit_seen` for every message as well."""
        at = _utc(at, "at")
        agent = body.get("agent") if isinstance(body.get("agent"), Mapping) else {}
        changes: list[AlertChange] = []
        volts = _number(body.get("battery_v", agent.get("battery_v")))
        if volts is not None:
            changes += self._unit_battery(unit, at, volts)
        disk = body.get("disk", agent.get("disk"))
        if isinstance(disk, Mapping) and (used := disk_used_percent(disk)) is not None:
            changes += self._disk(unit, at, used, disk)
        lora = agent.get("lora")
        if isinstance(lora, Mapping):
            changes += self._modems(unit, at, lora)
        return changes

    def _unit_battery(self, unit: str, at: datetime, volts: float) -> list[AlertChange]:
        key, limit = f"low_battery:{unit}", self.settings.low_battery_v
        if volts < limit:
            msg = f"{unit} battery at {volts:.2f} V (below {limit:.2f} V): check the panel and charge controller"
            return self._raise(Alert.of("low_battery", unit, msg, at, battery_v=volts, limit_v=limit), at)
        if volts >= limit + BATTERY_CLEAR_V - 1e-9:
            return self._clear(key, at, f"{unit} battery at {volts:.2f} V")
        return []

    def _disk(self, unit: str, at: datetime, used: float, disk: Mapping[str, Any]) -> list[AlertChange]:
        key, limit = f"disk_full:{unit}", self.settings.disk_full_percent
        if used > limit:
            free = _number(disk.get("free_bytes"))
            left = "" if free is None else f", {free / 1e9:.1f} GB free"
            msg = (
                f"{unit} disk {used:.0f} % full (limit {limit:.0f} %{left}): images not yet relayed may be"
                " deleted; check the link to the station"
            )
            return self._raise(
                Alert.of(
                    "disk_full", unit, msg, at, used_percent=round(used, 1), free_bytes=free, limit=limit
                ),
                at,
            )
        if used <= limit - DISK_CLEAR_PERCENT:
            return self._clear(key, at, f"{unit} disk {used:.0f} % full")
        return []

    def _modems(self, unit: str, at: datetime, lora: Mapping[str, Any]) -> list[AlertChange]:
        changes: list[AlertChange] = []
        for name, stats in lora.items():
            subject = f"{unit}/{name}"
            key = f"modem_unhealthy:{subject}"
            state = stats.get("state") if isinstance(stats, Mapping) else None
            if state in MODEM_HEALTHY:
                self._modem_first_bad.pop(subject, None)
                changes += self._clear(key, at, f"{unit} LoRa modem {name} receiving again")
                continue
            first = self._modem_first_bad.setdefault(subject, at)
            if state in MODEM_TRANSIENT and first == at:
                continue  # starting or recovering: give it until the next report
            stats = stats if isinstance(stats, Mapping) else {}
            error = stats.get("last_error")
            port = f" on {stats['port']}" if stats.get("port") else ""
            msg = f"{unit} LoRa modem {name}{port} is {state or 'not reporting a state'}" + (
                f": {error}" if error else ": collars it should hear are not being received"
            )
            details = {
                "unit": unit,
                "modem": name,
                "state": state,
                "last_error": error,
                "port": stats.get("port"),
            }
            changes += self._raise(Alert.of("modem_unhealthy", subject, msg, first, **details), at)
        for key, alert in list(self._active.items()):
            mine = alert.kind == "modem_unhealthy" and alert.subject.startswith(unit + "/")
            if mine and alert.subject[len(unit) + 1 :] not in lora:
                self._modem_first_bad.pop(alert.subject, None)
                changes += self._clear(key, at, f"{alert.subject} no longer in the unit's health report")
        return changes

    # --- time ------------------------------------------------------------------------------------

    def tick(self, now: datetime) -> list[AlertChange]:
        """The rules driven by time passing: units offline or silent, collars silent."""
        now = _utc(now, "now")
        changes: list[AlertChange] = []
        for unit, state in self._units.items():
            changes += self._check_unit(unit, state, now)
        silent = timedelta(hours=self.settings.collar_silent_h)
        for collar, cstate in self._collars.items():
            last = cstate.last_fix
            if last is not None and now - last > silent:
                msg = (
                    f"{collar} not heard for {_duration(now - last)} (last fix {_clock(last, now)}):"
                    " out of radio range, in a cave or ravine, or the collar failed"
                )
                changes += self._raise(
                    Alert.of("collar_silent", collar, msg, last, last_fix=iso_utc(last)), now
                )
        return changes


# --- reading health bodies and saying things ---------------------------------------------------------


def disk_used_percent(disk: Mapping[str, Any]) -> float | None:
    """Disk use in percent from a health body's ``disk``: ``used_percent``, or ``total_bytes`` with
    ``free_bytes``. None when it carries neither (free bytes alone say nothing about how full)."""
    used = _number(disk.get("used_percent"))
    if used is not None:
        return used
    total, free = _number(disk.get("total_bytes")), _number(disk.get("free_bytes"))
    if total and total > 0 and free is not None:
        return max(0.0, min(100.0, 100.0 * (total - free) / total))
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _clock(moment: datetime, now: datetime) -> str:
    """``02:15 UTC`` the same day as `now`, else ``23 Nov 02:15 UTC``."""
    moment = moment.astimezone(UTC)
    if moment.date() == now.astimezone(UTC).date():
        return moment.strftime("%H:%M UTC")
    return moment.strftime("%d %b %H:%M UTC").lstrip("0")


def _duration(span: timedelta) -> str:
    s = span.total_seconds()
    if s < 90 * 60:
        return f"{s / 60:.0f} min"
    if s < 72 * 3600:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} days"


def _distance(metres: float) -> str:
    return f"{metres:.0f} m" if metres < 1000 else f"{metres / 1000:.1f} km"
