"""`uncia sim`: simulated field devices on real pseudo-terminals, for demos and bench tests.

Each device is one sub-command (``uncia sim gps``, later ``lora``, ``pir``). To add a device, write
an ``_add_<device>(devices)`` function that adds its sub-parser and sets ``device_run`` to a callable
``(args) -> exit code``, and list it in `DEVICES`.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import random
import signal
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from simulators.gps import FaultPlan, make_simulator
from simulators.nmea_out import PROFILES
from simulators.pty_port import PtyPort
from uncia.argtypes import lat_lon, positive_float, probability
from uncia.cli import EXIT_OK, EXIT_USAGE

log = logging.getLogger(__name__)


def _add_gps(devices: Any) -> None:
    parser = devices.add_parser(
        "gps",
        help="a GPS collar receiver writing NMEA onto a pseudo-terminal",
        description="Simulate a GPS/GNSS collar receiver on a snow leopard in the Helan Mountains. "
        "Prints the serial path to open, then sends NMEA until Ctrl-C or --duration.",
    )
    parser.add_argument("--link", metavar="PATH", help="stable symlink to the pty, like /dev/gps0")
    parser.add_argument(
        "--rate", metavar="HZ", type=positive_float, default=1.0, help="epochs per second (1)"
    )
    parser.add_argument("--profile", choices=sorted(PROFILES), default="gn-multi", help="receiver (gn-multi)")
    parser.add_argument("--seed", type=int, help="same seed, same track and faults")
    parser.add_argument("--duration", metavar="S", type=positive_float, help="stop after S seconds")
    parser.add_argument("--start", metavar="LAT,LON", type=lat_lon, help="where the animal starts")
    faults = parser.add_argument_group("faults (rates are per-sentence probabilities)")
    faults.add_argument("--noise", metavar="P", type=probability, default=0.0, help="binary noise bursts")
    faults.add_argument("--bad-checksum", metavar="P", type=probability, default=0.0, help="wrong *HH")
    faults.add_argument("--truncate", metavar="P", type=probability, default=0.0, help="lines cut short")
    faults.add_argument("--lost-crlf", metavar="P", type=probability, default=0.0, help="missing line ends")
    faults.add_argument(
        "--no-fix-every", metavar="S", type=positive_float, help="lose the fix every S seconds"
    )
    faults.add_argument(
        "--no-fix-for", metavar="S", type=positive_float, default=10.0, help="for S seconds (10)"
    )
    faults.add_argument(
        "--vanish-every", metavar="S", type=positive_float, help="unplug the device every S s"
    )
    faults.add_argument(
        "--vanish-for", metavar="S", type=positive_float, default=5.0, help="for S seconds (5)"
    )
    parser.set_defaults(device_run=run_gps)


def _add_lora(devices: Any) -> None:
    parser = devices.add_parser(
        "lora",
        help="a LoRa modem (REYAX RYLR or RAK3172) answering AT commands on a pseudo-terminal",
        description="Emulate a LoRa modem for the gateway's driver: the family's AT command set, error "
        "codes, timing and boot banner. Prints the serial path to open; runs until Ctrl-C or --duration.",
    )
    parser.add_argument("--family", choices=("rylr", "rak3172"), required=True, help="AT dialect")
    parser.add_argument("--link", metavar="PATH", help="stable symlink to the pty, like /dev/uncia-lora0")
    parser.add_argument(
        "--model", choices=("RYLR998", "RYLR498", "RYLR896", "RYLR406"), default="RYLR498", help="rylr part"
    )
    parser.add_argument("--variant", choices=("low", "high"), default="low", help="rak3172 band variant")
    parser.add_argument("--duration", metavar="S", type=positive_float, help="stop after S seconds")
    parser.add_argument(
        "--test-packet-every",
        metavar="S",
        type=positive_float,
        help="every S s, a test packet on the radio the host configured",
    )

    def run_lora(args: argparse.Namespace) -> int:
        from simulators.lora_modem import EmulatedModem

        if args.link is not None:
            link = Path(args.link)
            if os.path.lexists(link) and not link.is_symlink():
                return _usage_error(f"{link} exists and is not a symlink; choose another --link")
            if not link.parent.is_dir():
                return _usage_error(f"directory {link.parent} does not exist (for --link {link})")
        port = PtyPort(link=args.link)
        emulator: EmulatedModem
        if args.family == "rylr":
            from simulators.lora_reyax import RylrEmulator

            emulator, what = RylrEmulator(port, model=args.model), args.model
        else:
            from simulators.lora_rak3172 import Rak3172Emulator

            emulator, what = Rak3172Emulator(port, variant=args.variant), f"RAK3172 ({args.variant} band)"
        where = f"{port.link} -> {port.slave_name}" if port.link is not None else port.slave_name
        print(f"LoRa modem {what} on {where}, 115200 baud; Ctrl-C to stop", flush=True)
        emulator.start()
        forwarded = 0
        try:
            with _sigterm_as_interrupt():
                forwarded = emulator.run(duration=args.duration, test_packet_every=args.test_packet_every)
        except KeyboardInterrupt:
            pass
        finally:
            emulator.stop()
            port.close()
        counts = ", ".join(f"{n} {kind}" for kind, n in sorted(emulator.counters.items())) or "nothing"
        log.info("LoRa modem stopped: %s; %d test packets forwarded", counts, forwarded)
        return EXIT_OK

    parser.set_defaults(device_run=run_lora)


DEVICES: tuple[Callable[[Any], None], ...] = (_add_gps, _add_lora)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "sim",
        help="run a simulated device (GPS collar, ...) on a pseudo-terminal",
        description="Simulated field devices on real pseudo-terminals, for demos and bench tests.",
    )
    devices = parser.add_subparsers(dest="device", metavar="DEVICE")
    for add in DEVICES:
        add(devices)
    parser.set_defaults(func=run, sim_parser=parser)


def run(args: argparse.Namespace) -> int:
    device_run = getattr(args, "device_run", None)
    if device_run is None:
        args.sim_parser.print_help(sys.stderr)
        return EXIT_USAGE
    return int(device_run(args))


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Let `kill`/systemd stop the simulator as cleanly as Ctrl-C (the link is removed either way)."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread (an embedding test): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _usage_error(message: str) -> int:
    print(f"uncia sim gps: {message}", file=sys.stderr)
    return EXIT_USAGE


def run_gps(args: argparse.Namespace) -> int:
    try:
        plan = FaultPlan(
            noise=args.noise,
            bad_checksum=args.bad_checksum,
            truncate=args.truncate,
            lost_crlf=args.lost_crlf,
            no_fix_every=args.no_fix_every,
            no_fix_for=args.no_fix_for,
            vanish_every=args.vanish_every,
            vanish_for=args.vanish_for,
        )
    except ValueError as exc:
        return _usage_error(str(exc))
    if args.link is not None:
        link = Path(args.link)
        # PtyPort replaces the path: never let that clobber a real file or device.
        if os.path.lexists(link) and not link.is_symlink():
            return _usage_error(f"{link} exists and is not a symlink; choose another --link")
        if not link.parent.is_dir():
            return _usage_error(f"directory {link.parent} does not exist (for --link {link})")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1_000_000)
    # Receivers put epochs on whole seconds of UTC; the animal's time starts now.
    now = datetime.now(UTC).replace(microsecond=0)
    try:
        # Built without a port first, so a bad --start fails before any pty or link exists.
        sim = make_simulator(
            None,
            seed=seed,
            profile=args.profile,
            rate_hz=args.rate,
            faults=plan,
            start_time=now,
            start=args.start,
        )
    except ValueError as exc:
        return _usage_error(str(exc))
    port = PtyPort(link=args.link)
    sim.port = port
    where = f"{port.link} -> {port.slave_name}" if port.link is not None else port.slave_name
    print(f"GPS simulator on {where} ({args.profile}, {args.rate:g} Hz); Ctrl-C to stop", flush=True)
    log.info("seed %d (use --seed %d to replay this track and these faults)", seed, seed)
    try:
        with _sigterm_as_interrupt():
            sim.run(duration=args.duration)
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
        port.close()
    counts = ", ".join(f"{n} {kind}" for kind, n in sorted(sim.fault_counts.items())) or "no faults"
    log.info("GPS simulator stopped: %d sentences sent (%s)", sim.sentences_sent, counts)
    return EXIT_OK
