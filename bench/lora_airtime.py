"""LoRa airtime per collar fix: the compact payload, batched, against one NMEA GGA sentence as text.

    python -m bench.lora_airtime [--quick] [--collars N] [--fixes N]

For SF7, SF10 and SF12 on CN470 at 125 kHz, coding rate 4/5, 8-symbol preamble, explicit header and
CRC on: the bytes a fix costs on air, its time on air, and how many fixes per hour one collar can send
within a 1 % duty cycle (36 s of airtime an hour), for

- single: the 12-byte compact payload, one fix per packet;
- batch4 / batch8: 4 or 8 fixes of one collar per packet (per-fix figures);
- gga (baseline): the GGA sentence a plain GPS emits for the same fix, sent as text.

Batches and GGA sentences come from simulated snow leopards in the Helan Mountains with a fix every
15 minutes (simulators.track, simulators.nmea_out), because batch sizes depend on how far the animal
moved between fixes. Arithmetic only: --quick changes nothing but the sample size. The last line
printed is one JSON object of all figures.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from datetime import UTC, datetime

from edge.lora.airtime import time_on_air
from edge.lora.modem import RadioSettings
from edge.lora.payload import CollarFix, encode_batch, encode_fix, hdop_class
from simulators.nmea_out import render_epoch
from simulators.track import Track, random_start

SPREADING_FACTORS = (7, 10, 12)
DUTY_LIMIT = 0.01
FIX_INTERVAL_S = 900.0
T0 = datetime(2026, 11, 25, tzinfo=UTC)


def collar_packets(collars: int, fixes: int, seed: int = 2026) -> dict[str, list[tuple[int, int]]]:
    """(payload bytes, fixes in it) for every packet each form would send for the same fixes."""
    packets: dict[str, list[tuple[int, int]]] = {"single": [], "batch4": [], "batch8": [], "gga": []}
    for collar in range(1, collars + 1):
        rng = random.Random(seed + collar)
        track = Track(rng, random_start(rng), T0)
        own: list[CollarFix] = []
        for i in range(fixes):
            point = track.advance(FIX_INTERVAL_S)
            sentences, truth = render_epoch(point, profile="gp-basic")
            assert truth is not None
            gga = next(s for s in sentences if s[3:6] == b"GGA").rstrip(b"\r\n")
            packets["gga"].append((len(gga), 1))
            fix = CollarFix(collar, truth.time, truth.lat, truth.lon, 1, hdop_class(truth.hdop), 95 - i // 50)
            packets["single"].append((len(encode_fix(fix)), 1))
            own.append(fix)
        for size in (4, 8):
            for start in range(0, len(own) - size + 1, size):
                packets[f"batch{size}"].append((len(encode_batch(own[start : start + size])), size))
    return packets


def figures_for(radio: RadioSettings, packets: list[tuple[int, int]]) -> dict[str, float]:
    """Mean bytes and airtime per fix, and fixes per hour within the duty cycle, for one form."""
    n_fixes = sum(k for _, k in packets)
    airtime = [time_on_air(length, radio) for length, _ in packets]
    airtime_per_fix = sum(airtime) / n_fixes
    return {
        "packet_bytes": round(statistics.fmean(length for length, _ in packets), 2),
        "bytes_per_fix": round(sum(length for length, _ in packets) / n_fixes, 2),
        "airtime_ms_per_fix": round(airtime_per_fix * 1000.0, 2),
        "fixes_per_hour_1pct": int(DUTY_LIMIT * 3600.0 / airtime_per_fix),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.lora_airtime", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller sample (CI smoke); same arithmetic")
    parser.add_argument("--collars", type=int, help="simulated collars (default 8, quick 2)")
    parser.add_argument("--fixes", type=int, help="fixes per collar (default 400, quick 64)")
    args = parser.parse_args(argv)
    collars = args.collars or (2 if args.quick else 8)
    fixes = args.fixes or (64 if args.quick else 400)

    packets = collar_packets(collars, fixes)
    result: dict[str, object] = {
        "collars": collars,
        "fixes_per_collar": fixes,
        "fix_interval_s": FIX_INTERVAL_S,
        "duty_cycle": DUTY_LIMIT,
    }
    print(
        f"CN470, 125 kHz, CR 4/5, preamble 8, explicit header, CRC on; {collars} simulated collars x "
        f"{fixes} fixes every {FIX_INTERVAL_S / 60:.0f} min; 1 % duty cycle = 36 s airtime/hour"
    )
    print(
        f"{'SF':>4} {'form':>7} {'B/packet':>9} {'B/fix':>6} {'ms/fix':>9} {'fixes/h @1%':>12} {'vs GGA':>7}"
    )
    for sf in SPREADING_FACTORS:
        radio = RadioSettings(spreading_factor=sf, bandwidth_khz=125, coding_rate=1, preamble=8)
        per_sf = {form: figures_for(radio, pk) for form, pk in packets.items()}
        gga_ms = per_sf["gga"]["airtime_ms_per_fix"]
        for form in ("single", "batch4", "batch8", "gga"):
            f = per_sf[form]
            f["airtime_vs_gga"] = round(f["airtime_ms_per_fix"] / gga_ms, 3)
            print(
                f"{'SF' + str(sf):>4} {form:>7} {f['packet_bytes']:>9.1f} {f['bytes_per_fix']:>6.1f} "
                f"{f['airtime_ms_per_fix']:>9.1f} {f['fixes_per_hour_1pct']:>12,} {f['airtime_vs_gga']:>7.0%}"
            )
        result[f"sf{sf}"] = per_sf
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
