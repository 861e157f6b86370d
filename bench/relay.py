"""Relay benchmark: fixes per second from serial bytes to broker-acknowledged publish.

    python -m bench.relay [--quick] [--fixes N] [--idle-seconds S]

Both relays read the same 3-sentence epochs (GGA + RMC + GSA, as a plain GPS sends them) from a real
pseudo-terminal fed by a separate process, and publish at QoS 1 to a Mosquitto (or the embedded
broker) on loopback started for the run:

- naive: pynmea2.parse per line, one paho publish per fix, `wait_for_publish()` each (bench.naive_relay);
- uncia: the gateway's real path — SerialSource, FixDecoder, the durable SQLite outbox (WAL,
  synchronous=FULL), the Relay with its in-flight window — counting a fix only once the broker has
  acknowledged it and its outbox row is deleted (bench.uncia_relay).

Each relay runs in its own process; CPU is that process's user+system time (getrusage), so the feeder
and the broker are not counted. Then the gateway idles with no input for --idle-seconds and its CPU
share is reported. The last line printed is one JSON object of all figures.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from edge.broker import start_broker
from simulators.gps import benchmark_stream


def _child(module: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def run_relay(module: str, stream_file: Path, workdir: Path, broker: str, n_fixes: int) -> dict[str, float]:
    """One measured run of a relay child against a fresh feeder."""
    link = workdir / f"{module.rsplit('.', 1)[-1]}-gps"
    feeder = _child("bench.feeder", str(stream_file), str(link))
    assert feeder.stdout is not None and feeder.stdin is not None
    try:
        ready = feeder.stdout.readline().split()
        if not ready or ready[0] != "ready":
            raise RuntimeError(f"feeder did not start: {ready!r}")
        relay = _child(module, str(link), broker, str(n_fixes), str(workdir))
        assert relay.stdout is not None
        if relay.stdout.readline().strip() != "open":
            relay.kill()
            raise RuntimeError(f"{module} did not open the port")
        feeder.stdin.write("go\n")
        feeder.stdin.flush()
        result_line = relay.stdout.readline()
        relay.wait(timeout=60)
        if relay.returncode != 0 or not result_line:
            raise RuntimeError(f"{module} failed (exit {relay.returncode}): {result_line!r}")
        return json.loads(result_line)
    finally:
        feeder.kill()
        feeder.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.relay", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run (CI smoke)")
    parser.add_argument("--fixes", type=int, help="fixes per relay (default 50000, quick 5000)")
    parser.add_argument("--naive-fixes", type=int, help="fixes for the naive relay (default fixes/5)")
    parser.add_argument("--idle-seconds", type=float, help="idle measurement (default 60, quick 5)")
    args = parser.parse_args(argv)
    n_fixes = args.fixes or (5_000 if args.quick else 50_000)
    n_naive = args.naive_fixes or max(1_000, n_fixes // 5)
    idle_s = args.idle_seconds if args.idle_seconds is not None else (5.0 if args.quick else 60.0)

    with tempfile.TemporaryDirectory(prefix="uncia-bench-") as tmp, start_broker() as broker:
        workdir = Path(tmp)
        address = f"{broker.host}:{broker.port}"
        print(f"broker: {broker.kind} on {address}")
        figures: dict[str, float | int | str] = {"broker": broker.kind}
        for name, module, count in (
            ("naive", "bench.naive_relay", n_naive),
            ("uncia", "bench.uncia_relay", n_fixes),
        ):
            stream, _ = benchmark_stream(count)
            stream_file = workdir / f"{name}.nmea"
            stream_file.write_bytes(stream)
            result = run_relay(module, stream_file, workdir, address, count)
            rate = result["fixes"] / result["wall_s"]
            cpu_us = result["cpu_s"] / result["fixes"] * 1e6
            print(
                f"{name:>6}: {result['fixes']:>7,} fixes in {result['wall_s']:6.2f} s = "
                f"{rate:>9,.0f} fixes/s, {cpu_us:6.1f} CPU-µs/fix"
            )
            figures[f"{name}_fixes"] = int(result["fixes"])
            figures[f"{name}_fixes_per_s"] = round(rate)
            figures[f"{name}_cpu_us_per_fix"] = round(cpu_us, 1)
        figures["speedup"] = round(figures["uncia_fixes_per_s"] / figures["naive_fixes_per_s"], 2)
        figures["cpu_ratio"] = round(figures["uncia_cpu_us_per_fix"] / figures["naive_cpu_us_per_fix"], 3)
        print(
            f"uncia vs naive: {figures['speedup']}x the throughput at "
            f"{figures['cpu_ratio']:.0%} of the CPU per fix"
        )

        idle = subprocess.run(
            [sys.executable, "-m", "bench.uncia_idle", address, str(idle_s), str(workdir)],
            capture_output=True,
            text=True,
            check=True,
        )
        idle_result = json.loads(idle.stdout.strip().splitlines()[-1])
        share = idle_result["cpu_s"] / idle_result["wall_s"] * 100
        print(f"  idle: {share:.3f} % of a core over {idle_result['wall_s']:.0f} s with no input")
        figures["idle_cpu_percent"] = round(share, 3)
        figures["idle_seconds"] = round(idle_result["wall_s"], 1)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
