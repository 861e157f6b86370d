"""`uncia budget`: LoRa airtime, days of storage and energy per day for a unit's config, before flashing."""

from __future__ import annotations

import argparse
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

from edge.config import ConfigError, UnitConfig, load_config
from uncia.cli import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK

OUTBOX_BYTES_PER_MESSAGE = 400  # a fix or event envelope with SQLite's overhead, generously


@dataclass(frozen=True)
class Line:
    """One budget line: OK, or WARN when a limit is exceeded (then `fix` says what to change)."""

    ok: bool
    text: str
    fix: str = ""

    def render(self) -> str:
        out = f"{'OK' if self.ok else 'WARN':<5} {self.text}"
        return out + (f"\n      -> {self.fix}" if self.fix else "")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "budget",
        help="LoRa airtime, days of storage and energy per day for a unit's config (before flashing)",
        description=(
            "Estimates from the unit's config: each LoRa radio's airtime per hour (the collars' fixes and "
            "the unit's own packets) against the regional duty-cycle limit, days until the image card "
            "reaches its watermarks at the expected capture rate, and watt-hours per day with days of "
            "autonomy on a battery. A WARN line for every limit exceeded; exit code 1 if any was, 3 "
            "if the config is wrong. Figures and their sources: edge/budget.py."
        ),
    )
    parser.add_argument("-c", "--config", required=True, type=Path, help="the unit's TOML file")
    parser.add_argument(
        "--captures-per-day", type=float, default=20.0, metavar="N", help="capture events a day (default 20)"
    )
    parser.add_argument(
        "--fixes-per-hour",
        type=float,
        default=4.0,
        metavar="N",
        help="fixes each collar sends an hour (default 4)",
    )
    parser.add_argument(
        "--collars", type=int, default=10, metavar="N", help="collars on the channel (default 10)"
    )
    parser.add_argument(
        "--lora-tx-per-hour",
        type=float,
        default=0.0,
        metavar="N",
        help="packets this unit itself transmits an hour (default 0: uncia units only listen)",
    )
    parser.add_argument("--lora-tx-bytes", type=int, default=12, metavar="B", help="bytes in each of them")
    parser.add_argument(
        "--card-gb", type=float, metavar="G", help="size of the card to fit (default: free space here now)"
    )
    parser.add_argument(
        "--service-days", type=float, default=90.0, metavar="D", help="days between visits (default 90)"
    )
    parser.add_argument(
        "--board", choices=("pi-zero-2w", "pi-4b"), help="default: Zero 2 W camera, Pi 4 B gateway"
    )
    parser.add_argument(
        "--battery-wh", type=float, metavar="WH", help="battery capacity for days of autonomy"
    )
    parser.add_argument(
        "--min-autonomy-days",
        type=float,
        default=3.0,
        metavar="D",
        help="days without sun to bridge (default 3)",
    )
    parser.add_argument(
        "--night-hours", type=float, metavar="H", help="default: the longest night at the unit's position"
    )
    parser.add_argument("--lamp-w", type=float, default=3.0, metavar="W", help="IR lamp power (default 3 W)")
    parser.add_argument(
        "--max-collision-percent",
        type=float,
        default=10.0,
        metavar="P",
        help="collided packets accepted on the channel (default 10 %%)",
    )
    parser.set_defaults(func=run)


def _free_bytes(folder: Path) -> int:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return int(shutil.disk_usage(folder).free)


def _duration(days: float) -> str:
    return "never" if math.isinf(days) else f"{days:,.0f} days" if days >= 2 else f"{days * 24:.0f} hours"


def lora_lines(config: UnitConfig, args: argparse.Namespace) -> list[Line]:
    from edge.budget import COLLAR_FIX_BYTES, airtime_budget, channel_load

    if not config.lora:
        return [Line(True, "lora: no [[lora]] modem configured, no airtime to budget")]
    lines: list[Line] = []
    for modem in config.lora:
        radio = modem.radio()
        link = f"SF{radio.spreading_factor}/{radio.bandwidth_khz} kHz/CR4/{radio.coding_rate + 4}"
        limit = modem.duty_cycle_percent
        collar = airtime_budget(radio, COLLAR_FIX_BYTES, args.fixes_per_hour, limit)
        text = (
            f"lora {modem.name} collars: a {collar.packet_bytes}-byte fix at {link} is "
            f"{collar.airtime_s * 1000:.0f} ms on air; {args.fixes_per_hour:g} fixes/h = "
            f"{collar.seconds_per_hour:.2f} s/h = {collar.percent_of_hour:.3f} % of each collar's hour "
            f"(limit {limit:g} %: at most {collar.max_packets_per_hour} fixes/h)"
        )
        fix = "fewer fixes per hour, batched fixes (docs/lora-payload.md) or a lower spreading factor"
        lines.append(Line(not collar.over, text, "" if not collar.over else fix))
        load = channel_load(collar, args.collars)
        collide = load.collision_probability * 100
        ok = collide <= args.max_collision_percent
        lines.append(
            Line(
                ok,
                f"lora {modem.name} channel: {args.collars} collars keep it busy {load.busy_fraction * 100:.2f} % "
                f"of the time; about {collide:.1f} % of packets collide (limit {args.max_collision_percent:g} %)",
                "" if ok else "fewer fixes per collar, a lower spreading factor, or a second channel",
            )
        )
        if args.lora_tx_per_hour > 0:
            own = airtime_budget(radio, args.lora_tx_bytes, args.lora_tx_per_hour, limit)
            lines.append(
                Line(
                    not own.over,
                    f"lora {modem.name} this unit: {args.lora_tx_per_hour:g} packets/h of {args.lora_tx_bytes} B = "
                    f"{own.percent_of_hour:.3f} % of the hour (limit {limit:g} %: at most "
                    f"{own.max_packets_per_hour}/h)",
                    "" if not own.over else "send less often or fewer bytes, or a lower spreading factor",
                )
            )
        else:
            lines.append(Line(True, f"lora {modem.name} this unit: transmits nothing (listens only)"))
    return lines


def storage_lines(config: UnitConfig, args: argparse.Namespace, stills: int) -> list[Line]:
    from edge.budget import OS_BYTES, storage_budget

    lines: list[Line] = []
    card = None if args.card_gb is None else max(0, int(args.card_gb * 1e9) - OS_BYTES)
    where = f"a {args.card_gb:g} GB card" if card is not None else "free here now"
    cam = config.camera
    if cam is not None:
        free = card if card is not None else _free_bytes(Path(cam.image_dir))
        budget = storage_budget(cam, args.captures_per_day, free, stills_per_event=stills)
        ok = budget.days_until_low >= args.service_days
        lines.append(
            Line(
                ok,
                f"storage: about {budget.bytes_per_event / 1e6:.1f} MB an event ({budget.stills_per_event} stills "
                f"{cam.main_width}x{cam.main_height}, {budget.pre_trigger_frames} pre-trigger frames), "
                f"{args.captures_per_day:g} events/day = {budget.bytes_per_day / 1e6:,.0f} MB/day; "
                f"{free / 1e9:,.1f} GB ({where}) lasts {_duration(budget.days_until_low)} before relayed images "
                f"are deleted, {_duration(budget.days_until_hard)} before unrelayed ones would be "
                f"(visit every {args.service_days:g} days)",
                "" if ok else "a larger card, fewer stills per burst (camera.max_burst) or smaller stills",
            )
        )
    free = card if card is not None else _free_bytes(Path(config.outbox.path).parent)
    need = config.outbox.max_messages * OUTBOX_BYTES_PER_MESSAGE
    ok = need <= free
    lines.append(
        Line(
            ok,
            f"outbox: at its cap of {config.outbox.max_messages:,} messages about {need / 1e9:.1f} GB; "
            f"{free / 1e9:,.1f} GB ({where})",
            "" if ok else "lower outbox.max_messages or fit a larger card",
        )
    )
    return lines


def energy_lines(config: UnitConfig, args: argparse.Namespace, stills: int) -> list[Line]:
    from edge.budget import BOARD_NAMES, energy_budget, lamp_seconds_per_day, longest_night
    from edge.lora.airtime import time_on_air

    role = config.unit.role
    board = args.board or ("pi-zero-2w" if role == "camera" else "pi-4b")
    cam = config.camera
    lamp_s = 0.0
    night = ""
    if cam is not None:
        hours = args.night_hours
        if hours is None:
            hours = longest_night(cam.lat, cam.lon, cam.night_below_deg)
        lamp_s = lamp_seconds_per_day(cam, args.captures_per_day, hours, stills)
        night = f"; IR lamp {lamp_s / 60:.1f} min/day ({hours:.1f} h nights)"
    tx_s = sum(
        24 * args.lora_tx_per_hour * time_on_air(args.lora_tx_bytes, modem.radio()) for modem in config.lora
    )
    budget = energy_budget(
        board=board,
        role=role,
        camera=cam is not None,
        lamp_on_s_per_day=lamp_s,
        lamp_w=args.lamp_w,
        lora_modems=len(config.lora),
        lora_tx_s_per_day=tx_s,
        gps_receivers=len(config.serial),
        battery_wh=args.battery_wh,
    )
    parts = ", ".join(f"{name} {wh:.1f}" for name, wh in budget.items.items() if wh >= 0.05)
    lines = [
        Line(
            True,
            f"energy: about {budget.wh_per_day:.1f} Wh/day on a {BOARD_NAMES[board]} ({parts}){night}",
        )
    ]
    if budget.autonomy_days is not None:
        ok = budget.autonomy_days >= args.min_autonomy_days
        lines.append(
            Line(
                ok,
                f"battery: {args.battery_wh:g} Wh (80 % usable) lasts {budget.autonomy_days:.1f} days without sun "
                f"(limit {args.min_autonomy_days:g} days)",
                ""
                if ok
                else "a larger battery or solar panel"
                + (", a Zero 2 W instead of a Pi 4" if board == "pi-4b" else "")
                + (", fewer night captures" if cam is not None else ""),
            )
        )
    return lines


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"uncia budget: {exc}")
        return EXIT_CONFIG
    for name in ("captures_per_day", "fixes_per_hour", "lora_tx_per_hour", "service_days", "lamp_w"):
        if getattr(args, name) < 0:
            print(f"uncia budget: --{name.replace('_', '-')} must be 0 or more")
            return EXIT_CONFIG
    stills = 0
    if config.camera is not None:
        from edge.camera.addons import longest_burst

        stills = longest_burst(config)  # with a [[lora]] modem, armed bursts run longer
    print(f"budget {config.unit.id} ({config.unit.site}), {config.unit.role} unit")
    lines = (
        lora_lines(config, args) + storage_lines(config, args, stills) + energy_lines(config, args, stills)
    )
    for line in lines:
        print(line.render())
    over = sum(not line.ok for line in lines)
    if over:
        print(f"{over} limit(s) exceeded: change the config (or the hardware) before flashing")
        return EXIT_FAILURE
    print("within every limit")
    return EXIT_OK
