"""The satellite uplink: a station digest over an Iridium SBD modem, within a daily credit budget.

Where a station has no internet, a RockBLOCK 9602/9603 sends a digest (`gateway.uplink.digest`) of
what staff most need: alerts first (mortality, geofence, conflict), then the latest fix of each
collar, then unit health, in one message of at most 340 bytes.

When: at the **slots** UTC midnight + k × ``interval_h`` (6 h: 00, 06, 12, 18 UTC), one digest per
slot; a station that was off at a slot sends that slot's digest when it comes back. With
``alert_now``, a new critical alert (mortality, geofence exit, conflict zone) goes out at once,
without waiting for the next slot, if the budget allows.

The budget: ``credits_per_day`` (UTC days) is never exceeded by what the station sends. RockBLOCK
bills one credit per started 50 bytes of a message (a 1-byte message costs 1, 340 bytes 7); a
failed session costs nothing. Each slot may use its share of what is left of the day (the rest
divided by the slots still to come), which sets the digest's byte budget; an alert digest gets the
same fair share, but never a credit the day's remaining slots need (one each). Before each session the credits it
may cost are written down as *reserved* in the uplink state; a session whose outcome was lost in a
crash counts as spent, so a restart can never lead past the budget. Messages HQ sends to the
station are billed too; they are counted when received and reduce what the station may send.

When the sky is blocked (MO status 32 no network service, 18 RF drop, ...), the session is tried
again after ``retry_s``, doubling up to ``retry_max_s``; a digest still unsent when the next slot
comes is replaced by that slot's fresher one. Account and hardware problems (access denied, antenna
fault) are logged as errors with what to check, and tried again only every ``retry_max_s``.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.station.record import RecordReader, iso
from gateway.uplink.digest import Digest, build_digest, credits_for
from gateway.uplink.sbd import SbdError, SbdModem, Session
from gateway.uplink.settings import SBD_CREDIT_BYTES, IridiumSettings
from gateway.uplink.state import Ledger, UplinkState
from gateway.uplink.worker import RecordSource, UplinkThread

DEST = "iridium"
ALERT_POLL_S = 60.0  # how often the record is read for new critical alerts between slots
MIN_WAIT_36 = 180.0  # MO status 36: "must wait 3 minutes since last registration"
CRITICAL = ("mortality", "geofence_exit", "conflict_zone")


@dataclass
class Pending:
    """A digest built and not yet sent: why, for which slot, its bytes, and the tries so far."""

    reason: str  # "scheduled" or "alert"
    slot: float
    digest: Digest
    data: bytes
    alert_raised: float  # newest ``raised`` among the critical alerts it carries
    attempts: int = 0
    next_try: float = 0.0


def utc_day(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d")


def day_start(moment: float) -> float:
    return moment - moment % 86_400.0


class IridiumUplink:
    """Sends digests of the station record through one SBD modem, within the day's credit budget.

    ``modem`` defaults to an `SbdModem` on ``settings.port``; ``clock`` is wall-clock UNIX seconds
    (slots and UTC days follow it); ``on_message`` gets each message HQ sent to the station.
    """

    def __init__(
        self,
        settings: IridiumSettings,
        record_path: str | Path,
        state: UplinkState,
        *,
        modem: SbdModem | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        on_message: Callable[[bytes], None] | None = None,
        log: logging.Logger | None = None,
    ) -> None:
        self.settings = settings
        self.record_path = Path(record_path)
        self.state = state
        self.log = log or logging.getLogger("uncia.uplink.iridium")
        self.modem = modem or SbdModem(
            settings.port,
            baudrate=settings.baudrate,
            session_timeout=settings.session_timeout_s,
            log=self.log,
        )
        self.on_message = on_message
        self._clock = clock
        self._rng = rng or random.Random()
        self._interval = settings.interval_h * 3600.0
        self._records = RecordSource(record_path, "Iridium", self.log)
        self._configured = False
        self._last_alert_poll = -1e18
        self.pending: Pending | None = None
        self.failures = 0
        self.last_error: str | None = None
        self.last_session: Session | None = None
        self.mt_waiting = 0
        self._thread = UplinkThread("uplink-iridium", self.step, self.log)

    # -- running -----------------------------------------------------------------------------------
    def start(self) -> None:
        self.log.info(
            "Iridium uplink on %s: a digest every %g h, at most %d credits a day",
            self.settings.port,
            self.settings.interval_h,
            self.settings.credits_per_day,
        )
        self._thread.start()

    def stop(self) -> None:
        self._thread.stop(timeout=self.settings.session_timeout_s + 10.0)
        self.modem.close()
        self._records.close()

    def wake(self) -> None:
        """A new alert may be in the record: look now."""
        self._last_alert_poll = -1e18
        self._thread.wake()

    # -- the schedule and the budget ---------------------------------------------------------------
    def slot_of(self, moment: float) -> float:
        start = day_start(moment)
        return start + math.floor((moment - start) / self._interval) * self._interval

    def next_slot(self, moment: float) -> float:
        nxt = self.slot_of(moment) + self._interval
        return min(nxt, day_start(moment) + 86_400.0)

    def slots_left(self, moment: float, *, including_current: bool) -> int:
        """Scheduled digests still to go today: the slots after this one, and this one if asked."""
        end = day_start(moment) + 86_400.0
        later = math.ceil((end - self.slot_of(moment)) / self._interval) - 1
        return max(0, later) + int(including_current)

    def ledger(self, moment: float | None = None) -> Ledger:
        return self.state.ledger(utc_day(self._clock() if moment is None else moment))

    def remaining(self, moment: float) -> int:
        return self.settings.credits_per_day - self.state.ledger(utc_day(moment)).spent

    def allowance(self, moment: float, reason: str) -> int:
        """Credits this digest may cost (0: none left for it)."""
        left = self.remaining(moment)
        slot_pending = self.slot_of(moment) > self._slot_done()
        if reason == "scheduled":
            share = math.ceil(left / max(1, self.slots_left(moment, including_current=True)))
        else:  # an alert: a fair share, and never the last credit of a scheduled digest to come today
            later = self.slots_left(moment, including_current=slot_pending)
            share = min(left - later, math.ceil(left / (later + 1)))
        cap = credits_for(self.settings.max_bytes, SBD_CREDIT_BYTES)
        return max(0, min(share, left, cap))

    def _slot_done(self) -> float:
        return self.state.cursor(DEST, "slot_done", -1.0) or -1.0

    # -- one step ----------------------------------------------------------------------------------
    def step(self) -> float:
        """Build, send or retry as due; returns the seconds until the next step should run."""
        now = self._clock()
        slot = self.slot_of(now)
        until_slot = max(1.0, self.next_slot(now) - now)
        if (
            self.pending is not None and slot > self.pending.slot
        ):  # a fresher digest is due: it replaces this one
            self.log.warning(
                "Iridium: the %s digest of %s never went (%d tries, %s); the %s one replaces it",
                self.pending.reason,
                _hhmm(self.pending.slot),
                self.pending.attempts,
                self.last_error,
                _hhmm(slot),
            )
            self.pending = None
        if self.pending is None:
            reason = self._due(now, slot)
            if reason is None:
                poll = ALERT_POLL_S if self.settings.alert_now else until_slot
                return min(until_slot, poll)
            self.pending = self._build(now, slot, reason)
            if self.pending is None:
                return min(until_slot, ALERT_POLL_S if self.settings.alert_now else until_slot)
        if now < self.pending.next_try:
            return min(self.pending.next_try - now, until_slot)
        return self._transmit(now, slot, until_slot)

    def _due(self, now: float, slot: float) -> str | None:
        if slot > self._slot_done():
            return "scheduled"
        if self.settings.alert_now and now - self._last_alert_poll >= ALERT_POLL_S:
            self._last_alert_poll = now
            reader = self._open_reader()
            if reader is not None:
                sent_upto = self.state.cursor(DEST, "alert_raised", 0.0) or 0.0
                fresh = [
                    a
                    for a in reader.active_alerts()
                    if a["kind"] in CRITICAL and float(a["raised"]) > sent_upto
                ]
                if fresh:
                    return "alert"
        return None

    def _build(self, now: float, slot: float, reason: str) -> Pending | None:
        credits = self.allowance(now, reason)
        if credits < 1:
            spent = self.ledger(now).spent
            if reason == "scheduled":
                self.log.warning(
                    "Iridium: no credit left for the %s digest (%d of %d spent today); next after the day ends",
                    _hhmm(slot),
                    spent,
                    self.settings.credits_per_day,
                )
                self.state.set_cursor(DEST, "slot_done", slot)
            else:
                self.log.info(
                    "Iridium: a new critical alert waits for the next digest (no spare credit today)"
                )
                self.state.set_cursor(DEST, "alert_raised", self._newest_critical())
            return None
        reader = self._open_reader()
        if reader is None:
            return None
        since = self.state.cursor(DEST, "last_sent", now - self._interval) or (now - self._interval)
        alerts = reader.active_alerts()
        alerts += [
            {**dict(row), "active": False}
            for row in reader.query(
                "SELECT * FROM alerts WHERE cleared IS NOT NULL AND cleared >= ?", (since,)
            )
        ]
        seq = int(self.state.cursor(DEST, "seq", 0) or 0)
        max_bytes = min(self.settings.max_bytes, credits * SBD_CREDIT_BYTES)
        digest, data = build_digest(
            now=now,
            seq=seq,
            site=self.settings.site,
            alerts=alerts,
            fixes=reader.latest_fixes().values(),
            units=reader.units(),
            max_bytes=max_bytes,
            rotate=seq,
        )
        raised = max(
            (float(a["raised"]) for a in alerts if a.get("active", True) and a["kind"] in CRITICAL),
            default=0.0,
        )
        if digest.omitted:
            a, f, u = digest.omitted
            self.log.info(
                "Iridium: digest #%d has room for %d bytes (%d credits): left out %d alerts, %d fixes, %d units",
                seq,
                max_bytes,
                credits,
                a,
                f,
                u,
            )
        return Pending(reason, slot, digest, data, raised, next_try=now)

    def _newest_critical(self) -> float:
        reader = self._open_reader()
        if reader is None:
            return 0.0
        return max(
            (float(a["raised"]) for a in reader.active_alerts() if a["kind"] in CRITICAL),
            default=self.state.cursor(DEST, "alert_raised", 0.0) or 0.0,
        )

    def _transmit(self, now: float, slot: float, until_slot: float) -> float:
        pending = self.pending
        assert pending is not None
        day = utc_day(now)
        cost = credits_for(len(pending.data), SBD_CREDIT_BYTES)
        if cost > self.remaining(now):  # the day changed, or HQ's messages used the credit meanwhile
            self.log.warning(
                "Iridium: digest #%d (%d credits) no longer fits today's budget", pending.digest.seq, cost
            )
            self.pending = None
            return min(until_slot, ALERT_POLL_S)
        pending.attempts += 1
        self.state.reserve(day, cost)
        session: Session | None = None
        try:
            if not self._configured:
                self.modem.configure()
                self._configured = True
            self.modem.write_mo(pending.data)
            session = self.modem.session()
        except SbdError as exc:
            self.state.settle(day, cost, sent=False, size=0, credits=0)
            self.modem.close()
            self._configured = False
            return self._failed(now, until_slot, str(exc), "retry")
        # Anything else (a crash, a kill) leaves the reservation in place: counted as spent.
        self.last_session = session
        if not session.sent:
            self.state.settle(day, cost, sent=False, size=0, credits=0)
            meaning = session.meaning
            message = f"session failed, MO status {session.mo_status}: {meaning.words}"
            if meaning.hint:
                message += f" — {meaning.hint}"
            wait = self._failed(now, until_slot, message, meaning.action)
            if session.mo_status == 36:
                pending.next_try = max(pending.next_try, now + MIN_WAIT_36)
                wait = max(wait, min(MIN_WAIT_36, until_slot))
            return wait
        self.state.settle(day, cost, sent=True, size=len(pending.data), credits=cost)
        self._sent(now, pending, session, cost)
        return min(until_slot, ALERT_POLL_S if self.settings.alert_now else until_slot)

    def _sent(self, now: float, pending: Pending, session: Session, cost: int) -> None:
        if pending.reason == "scheduled":
            self.state.set_cursor(DEST, "slot_done", max(pending.slot, self._slot_done()))
        self.state.set_cursor(DEST, "last_sent", now)
        self.state.set_cursor(DEST, "seq", (pending.digest.seq + 1) % 65536)
        if pending.alert_raised > (self.state.cursor(DEST, "alert_raised", 0.0) or 0.0):
            self.state.set_cursor(DEST, "alert_raised", pending.alert_raised)
        ledger = self.ledger(now)
        self.log.info(
            "Iridium: %s digest #%d sent (%d bytes, %d credits, MOMSN %d, %d tries); today %d of %d credits",
            pending.reason,
            pending.digest.seq,
            len(pending.data),
            cost,
            session.momsn,
            pending.attempts,
            ledger.spent,
            self.settings.credits_per_day,
        )
        if self.failures:
            self.log.info("Iridium: sending again after %d failed sessions", self.failures)
        self.failures = 0
        self.last_error = None
        self.pending = None
        try:
            self.modem.clear_mo()
            if session.mt_status == 1 and session.mt_length > 0:
                self._received(now, self.modem.read_mt())
        except SbdError as exc:
            self.log.warning("Iridium: after the session: %s", exc)
            self.modem.close()
            self._configured = False
        self.mt_waiting = session.mt_queued
        if session.mt_queued:
            self.log.info(
                "Iridium: %d more messages from HQ wait; they come with the next digests", session.mt_queued
            )

    def _received(self, now: float, data: bytes) -> None:
        self.state.book_mt(utc_day(now), credits_for(len(data), SBD_CREDIT_BYTES))
        self.log.info("Iridium: message from HQ (%d bytes)", len(data))
        if self.on_message is not None:
            try:
                self.on_message(data)
            except Exception:
                self.log.exception("Iridium: the handler of HQ's message failed")

    def _failed(self, now: float, until_slot: float, message: str, action: str) -> float:
        pending = self.pending
        assert pending is not None
        self.failures += 1
        self.last_error = message
        s = self.settings
        if action in ("account", "hardware", "message"):
            wait = s.retry_max_s
            self.log.error("Iridium: %s (try %d); trying again in %.0f s", message, pending.attempts, wait)
        else:
            wait = min(s.retry_max_s, s.retry_s * 2 ** (pending.attempts - 1)) * (
                0.75 + 0.25 * self._rng.random()
            )
            level = (
                logging.WARNING
                if pending.attempts in (1, 3, 10) or pending.attempts % 50 == 0
                else logging.INFO
            )
            self.log.log(
                level, "Iridium: %s (try %d); trying again in %.0f s", message, pending.attempts, wait
            )
        pending.next_try = now + wait
        return min(wait, until_slot)

    def _open_reader(self) -> RecordReader | None:
        return self._records.get()

    # -- for staff ---------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """For the station page and `uncia status`: today's credits, the last digest, what waits."""
        now = self._clock()
        ledger = self.ledger(now)
        pending = self.pending
        return {
            "destination": DEST,
            "port": self.settings.port,
            "imei": self.modem.imei,
            "running": self._thread.running,
            "day": ledger.day,
            "credits_per_day": self.settings.credits_per_day,
            "credits_used_today": ledger.spent,
            "credits_left_today": self.settings.credits_per_day - ledger.spent,
            "messages_today": ledger.messages,
            "bytes_today": ledger.bytes,
            "mt_messages_today": ledger.mt_messages,
            "last_sent": iso(self.state.cursor(DEST, "last_sent")),
            "next_slot": iso(self.next_slot(now)),
            "pending": None
            if pending is None
            else {"reason": pending.reason, "bytes": len(pending.data), "tries": pending.attempts},
            "consecutive_failures": self.failures,
            "last_error": self.last_error,
            "mt_waiting": self.mt_waiting,
        }

    def credit_report(self, days: int = 30) -> list[dict[str, Any]]:
        """Credits and bytes per UTC day, newest first (what the RockBLOCK account will show)."""
        return [
            {
                "day": x.day,
                "credits": x.spent,
                "messages": x.messages,
                "bytes": x.bytes,
                "mt_messages": x.mt_messages,
            }
            for x in self.state.ledgers(days)
        ]


def _hhmm(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M UTC")
