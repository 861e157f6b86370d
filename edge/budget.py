"""Before flashing: will this unit's config stay within the radio rules, its card and its battery?

Pure calculations (`uncia budget` is the shell around them):

- **Airtime** (`airtime_budget`): a transmitter's seconds on air per hour at a packet rate, on the
  config's radio (Semtech time-on-air, `edge.lora.airtime`), against the regional duty-cycle limit
  (``lora.duty_cycle_percent``). Used for the collars heard on the unit's radio (their fixes) and
  for the unit's own transmissions. `channel_load` adds up all collars on the channel and estimates
  collisions as pure ALOHA (unslotted, no listen-before-talk: what LoRa P2P collars do).
- **Storage** (`storage_budget`): bytes per capture event from the camera settings (stills, the
  pre-trigger frames, sidecars) times events per day, against the free space above the image store's
  watermarks (``camera.low_free_mb``: relayed images start being deleted; ``hard_free_mb``: even
  unrelayed ones).
- **Energy** (`energy_budget`): watt-hours per day from the table `DRAWS` of typical draws, and days
  of autonomy from a battery.

Every figure here is an estimate for planning; the table's sources are next to it. Measure a real
unit (a USB power meter for a day) and prefer its figure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from edge.config import CameraSettings
from edge.lora.airtime import time_on_air
from edge.lora.modem import RadioSettings

COLLAR_FIX_BYTES = 12  # the single-fix compact payload (docs/lora-payload.md)

# JPEG size per pixel. Stills are encoded at quality 90 and lores frames at 80 (edge/camera/
# picamera.py); grainy night IR scenes and foliage compress worse than the simulator's slope (which
# gives ~1.4 bits per pixel), so these err on the large side.
STILL_BITS_PER_PIXEL = 2.5
LORES_BITS_PER_PIXEL = 1.5
SIDECAR_BYTES = 1_500  # the JSON sidecar written next to every image (edge/camera/sidecar.py)
OS_BYTES = 3_000_000_000  # Raspberry Pi OS Lite, the venv and logs, on a card of --card-gb

# Typical draws in watts, for planning. Sources:
# - Raspberry Pi documentation, "Power supply": "typical bare-board active current consumption"
#   350 mA for the Zero 2 W and 600 mA for the Pi 4 B at 5 V (used as "busy"). Idle figures are
#   published bench measurements (e.g. Jeff Geerling's and RasPi.TV's power tests): about 0.6 W for
#   a Zero 2 W and 2.7 W for a Pi 4 B with Wi-Fi up, nothing on HDMI or USB. Expect +-30 %.
# - Camera: Raspberry Pi's camera documentation gives about 250 mA at 5 V for a streaming camera
#   module; a camera unit streams its low-resolution picture all day (the pre-trigger buffer).
# - IR illuminator: the 850 nm LED boards sold for NoIR cameras are 1-3 W each; we plan with 3 W,
#   lit only during bursts at night.
# - LoRa: Semtech SX1262 datasheet (the radio in the RYLR998 and the RAK3172's STM32WL): TX 118 mA at
#   +22 dBm, RX 4.6 mA; the modules' own microcontroller stays awake for AT commands, so we plan with
#   125 mA TX and 15 mA RX at 3.3 V.
# - GPS: u-blox NEO-M8 datasheet, about 25 mA at 3 V tracking; breakout boards with their regulator
#   and LED draw more: 45 mA at 3.3 V.
# - PIR (HC-SR501 class): under 65 uA quiescent; negligible beside the rest.
DRAWS: dict[str, float] = {
    "pi-zero-2w idle": 0.6,
    "pi-zero-2w busy": 5.0 * 0.350,
    "pi-4b idle": 2.7,
    "pi-4b busy": 5.0 * 0.600,
    "camera streaming": 5.0 * 0.250,
    "ir lamp": 3.0,
    "lora tx": 3.3 * 0.125,
    "lora rx": 3.3 * 0.015,
    "gps": 3.3 * 0.045,
    "pir": 5.0 * 0.000065,
}
BOARDS = ("pi-zero-2w", "pi-4b")
BOARD_NAMES = {"pi-zero-2w": "Raspberry Pi Zero 2 W", "pi-4b": "Raspberry Pi 4 B"}
# Share of the day the board's CPU is busy: a camera unit encodes its lores stream all the time
# (about half a Zero 2 W's CPU at 10 fps); a gateway mostly waits on its ports.
BUSY_FRACTION = {"camera": 0.5, "gateway": 0.1}
BATTERY_USABLE = 0.8  # a LiFePO4 pack used to 80 % depth of discharge


# --- airtime ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AirtimeBudget:
    """One transmitter on one radio: seconds on air per packet and per hour, against its limit."""

    packet_bytes: int
    packets_per_hour: float
    airtime_s: float  # one packet
    limit_percent: float

    @property
    def seconds_per_hour(self) -> float:
        return self.airtime_s * self.packets_per_hour

    @property
    def percent_of_hour(self) -> float:
        return self.seconds_per_hour / 36.0

    @property
    def max_packets_per_hour(self) -> int:
        """The most packets per hour within the limit."""
        return math.floor(self.limit_percent * 36.0 / self.airtime_s + 1e-9)

    @property
    def over(self) -> bool:
        return self.percent_of_hour > self.limit_percent * (1 + 1e-9)


def airtime_budget(
    radio: RadioSettings, packet_bytes: int, packets_per_hour: float, limit_percent: float
) -> AirtimeBudget:
    if packets_per_hour < 0:
        raise ValueError(f"packets per hour must be 0 or more, got {packets_per_hour}")
    return AirtimeBudget(packet_bytes, packets_per_hour, time_on_air(packet_bytes, radio), limit_percent)


@dataclass(frozen=True)
class ChannelLoad:
    """All transmitters on one channel: the share of time it is busy and the chance a packet collides."""

    transmitters: int
    busy_fraction: float  # G, the offered load: packets x airtime / time

    @property
    def collision_probability(self) -> float:
        """Pure ALOHA: a packet survives if no other starts within one airtime either side, P = e^(-2G).
        With one transmitter there is nobody to collide with."""
        if self.transmitters <= 1:
            return 0.0
        return 1.0 - math.exp(-2.0 * self.busy_fraction)


def channel_load(per_transmitter: AirtimeBudget, transmitters: int) -> ChannelLoad:
    return ChannelLoad(transmitters, transmitters * per_transmitter.seconds_per_hour / 3600.0)


# --- storage ----------------------------------------------------------------------------------------


def jpeg_bytes(width: int, height: int, bits_per_pixel: float) -> int:
    return math.ceil(width * height * bits_per_pixel / 8)


@dataclass(frozen=True)
class StorageBudget:
    stills_per_event: int
    pre_trigger_frames: int
    bytes_per_event: int
    events_per_day: float
    free_bytes: int
    low_free_bytes: int
    hard_free_bytes: int

    @property
    def bytes_per_day(self) -> float:
        return self.bytes_per_event * self.events_per_day

    def _days(self, floor: int) -> float:
        room = max(0, self.free_bytes - floor)
        return math.inf if self.bytes_per_day == 0 else room / self.bytes_per_day

    @property
    def days_until_low(self) -> float:
        """Days until the card reaches ``low_free_mb``: relayed images are deleted from then on."""
        return self._days(self.low_free_bytes)

    @property
    def days_until_hard(self) -> float:
        """Days until ``hard_free_mb``: images not yet relayed would be deleted too."""
        return self._days(self.hard_free_bytes)


def storage_budget(
    cam: CameraSettings, events_per_day: float, free_bytes: int, *, stills_per_event: int | None = None
) -> StorageBudget:
    """`stills_per_event` defaults to ``max_burst`` (an animal that stays: the card's worst case)."""
    if events_per_day < 0:
        raise ValueError(f"capture events per day must be 0 or more, got {events_per_day}")
    stills = cam.max_burst if stills_per_event is None else stills_per_event
    frames = math.ceil(cam.pre_trigger_s * cam.fps) + 1
    per_event = stills * (jpeg_bytes(cam.main_width, cam.main_height, STILL_BITS_PER_PIXEL) + SIDECAR_BYTES)
    per_event += frames * (
        jpeg_bytes(cam.lores_width, cam.lores_height, LORES_BITS_PER_PIXEL) + SIDECAR_BYTES
    )
    return StorageBudget(
        stills,
        frames,
        per_event,
        events_per_day,
        free_bytes,
        int(cam.low_free_mb * 1_000_000),
        int(cam.hard_free_mb * 1_000_000),
    )


# --- energy -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnergyBudget:
    """Watt-hours per day by consumer; days of autonomy from `battery_wh` (None: not given)."""

    items: dict[str, float] = field(default_factory=dict)
    battery_wh: float | None = None

    @property
    def wh_per_day(self) -> float:
        return sum(self.items.values())

    @property
    def autonomy_days(self) -> float | None:
        if self.battery_wh is None:
            return None
        return math.inf if self.wh_per_day == 0 else self.battery_wh * BATTERY_USABLE / self.wh_per_day


def energy_budget(
    *,
    board: str,
    role: str,
    camera: bool = False,
    lamp_on_s_per_day: float = 0.0,
    lamp_w: float = DRAWS["ir lamp"],
    lora_modems: int = 0,
    lora_tx_s_per_day: float = 0.0,
    gps_receivers: int = 0,
    battery_wh: float | None = None,
    busy_fraction: float | None = None,
) -> EnergyBudget:
    """A unit's watt-hours per day from `DRAWS`. ``lamp_on_s_per_day``: seconds the IR lamp is lit."""
    if board not in BOARDS:
        raise ValueError(f"board {board!r}: expected one of {', '.join(BOARDS)}")
    busy = BUSY_FRACTION.get(role, 0.1) if busy_fraction is None else busy_fraction
    if not 0.0 <= busy <= 1.0:
        raise ValueError(f"busy fraction must be 0 to 1, got {busy}")
    hours = 24.0
    items = {"board": hours * (DRAWS[f"{board} idle"] * (1 - busy) + DRAWS[f"{board} busy"] * busy)}
    if camera:
        items["camera"] = hours * DRAWS["camera streaming"]
        items["IR lamp"] = lamp_w * lamp_on_s_per_day / 3600.0
        items["PIR"] = hours * DRAWS["pir"]
    if lora_modems:
        rx = lora_modems * hours * DRAWS["lora rx"]
        items["LoRa"] = rx + lora_tx_s_per_day * (DRAWS["lora tx"] - DRAWS["lora rx"]) / 3600.0
    if gps_receivers:
        items["GPS"] = gps_receivers * hours * DRAWS["gps"]
    return EnergyBudget(items, battery_wh)


def lamp_seconds_per_day(
    cam: CameraSettings, events_per_day: float, night_hours: float, stills: int
) -> float:
    """The lamp is lit for the burst only, at night: events spread evenly over the day."""
    return events_per_day * (night_hours / 24.0) * stills * cam.burst_interval_s


def night_hours(lat: float, lon: float, below_deg: float, day: date) -> float:
    """Hours of `day` (UTC) with the sun below `below_deg` at the position, in 10-minute steps."""
    from edge.camera.daylight import sun_elevation

    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    steps = 144
    dark = sum(
        sun_elevation((lat, lon, 0.0), start + timedelta(minutes=10 * i)) < below_deg for i in range(steps)
    )
    return dark * 24.0 / steps


def longest_night(lat: float, lon: float, below_deg: float, year: int = 2026) -> float:
    """Night hours at the winter solstice of the unit's hemisphere: the lamp's (and a solar panel's)
    worst day."""
    solstice = date(year, 12, 21) if lat >= 0 else date(year, 6, 21)
    return night_hours(lat, lon, below_deg, solstice)
