"""The measured side of `bench.relay`: the gateway's real path, one process.

``python -m bench.uncia_relay PORT HOST:PORT N WORKDIR``: runs `Gateway` (SerialSource → FixDecoder →
durable Outbox → Relay) on PORT until N fixes are acknowledged by the broker and deleted from the
outbox, then prints one JSON line of wall time and this process's CPU time.
"""

from __future__ import annotations

import json
import resource
import sys
import threading
import time
from pathlib import Path

from edge.config import parse_config
from gateway.agent import Gateway


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def gateway_config(port: str, broker: str, workdir: Path, *, unit: str = "bench") -> dict:
    host, _, mqtt_port = broker.rpartition(":")
    outbox = workdir / f"{unit}-outbox.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{outbox}{suffix}").unlink(missing_ok=True)
    return {
        "unit": {"id": unit, "site": "bench"},
        "mqtt": {"host": host, "port": int(mqtt_port)},
        "outbox": {"path": str(outbox)},
        "serial": [{"name": "gps0", "port": port, "baudrate": 115200}],
        "health": {"interval": 3600},
    }


def main() -> int:
    port, broker, n_fixes, workdir = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
    gateway = Gateway(parse_config(gateway_config(port, broker, workdir)))
    done = threading.Event()
    gateway.start()
    deadline = time.monotonic() + 30
    while not (gateway.workers[0].source.connected and gateway.relay.connected):
        if time.monotonic() > deadline:
            print(json.dumps({"error": "port or broker not ready"}), flush=True)
            return 1
        time.sleep(0.005)
    print("open", flush=True)
    start_wall, start_cpu = time.perf_counter(), cpu_seconds()
    outbox = gateway.outbox
    # Poll at 1 kHz-ish: cheap next to the work measured, and keeps end-of-run error under 1 ms.
    while not done.is_set():
        if outbox.counts["acked"] >= n_fixes:
            break
        time.sleep(0.001)
    wall, cpu = time.perf_counter() - start_wall, cpu_seconds() - start_cpu
    acked = outbox.counts["acked"]
    gateway.stop()
    print(json.dumps({"fixes": acked, "wall_s": wall, "cpu_s": cpu}), flush=True)
    return 0 if acked >= n_fixes else 1


if __name__ == "__main__":
    sys.exit(main())
