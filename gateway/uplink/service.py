"""All of a gateway's configured uplinks, started and stopped together (what the gateway runs)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from gateway.uplink.earthranger import EarthRangerUplink
from gateway.uplink.iridium import IridiumUplink
from gateway.uplink.settings import UplinkSettings
from gateway.uplink.state import UplinkState


class Uplinks:
    """The uplinks ``[uplink]`` configures, each in its own thread, each with its own connection to
    the state file and its own reader of the station record.

    Construction reads the EarthRanger token file (raising `TokenError`/`ConfigError` at start-up,
    not in the middle of the night); nothing touches the network or the modem before `start`.
    """

    def __init__(
        self, settings: UplinkSettings, record_path: str | Path, *, log: logging.Logger | None = None
    ):
        self.settings = settings
        self.log = log or logging.getLogger("uncia.uplink")
        self.earthranger: EarthRangerUplink | None = None
        self.iridium: IridiumUplink | None = None
        if settings.earthranger is not None:
            self.earthranger = EarthRangerUplink(
                settings.earthranger, record_path, UplinkState(settings.state)
            )
        if settings.iridium is not None:
            self.iridium = IridiumUplink(settings.iridium, record_path, UplinkState(settings.state))

    @property
    def running(self) -> list[EarthRangerUplink | IridiumUplink]:
        return [u for u in (self.earthranger, self.iridium) if u is not None]

    def start(self) -> None:
        for uplink in self.running:
            uplink.start()

    def stop(self) -> None:
        """Stop the threads (each finishes the request or session in progress first)."""
        for uplink in self.running:
            uplink.stop()

    def close(self) -> None:
        """Stop, and close the state file connections."""
        self.stop()
        for uplink in self.running:
            uplink.state.close()

    def new_data(self) -> None:
        """The hub stored fixes or captures: EarthRanger looks now instead of at its next interval."""
        if self.earthranger is not None:
            self.earthranger.wake()

    def critical_alert(self) -> None:
        """The hub raised a mortality, geofence or conflict alert: the satellite uplink looks now."""
        if self.iridium is not None:
            self.iridium.wake()

    def status(self) -> dict[str, Any]:
        """Each uplink's status (for the station page and `uncia status`)."""
        out: dict[str, Any] = {}
        if self.earthranger is not None:
            out["earthranger"] = self.earthranger.status()
        if self.iridium is not None:
            out["iridium"] = self.iridium.status()
        return out
