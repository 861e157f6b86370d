"""Idle CPU of the gateway: a connected serial port with nothing on it, a connected broker.

``python -m bench.uncia_idle HOST:PORT SECONDS WORKDIR`` prints one JSON line: wall and CPU seconds.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from bench.uncia_relay import cpu_seconds, gateway_config
from edge.config import parse_config
from gateway.agent import Gateway
from simulators.pty_port import PtyPort


def main() -> int:
    broker, seconds, workdir = sys.argv[1], float(sys.argv[2]), Path(sys.argv[3])
    with PtyPort(workdir / "idle-gps") as pty:
        config = gateway_config(pty.path, broker, workdir, unit="idle")
        config["health"]["interval"] = 60
        gateway = Gateway(parse_config(config))
        gateway.start()
        while not (gateway.workers[0].source.connected and gateway.relay.connected):
            time.sleep(0.01)
        time.sleep(1.0)  # start-up done
        start_wall, start_cpu = time.perf_counter(), cpu_seconds()
        time.sleep(seconds)
        wall, cpu = time.perf_counter() - start_wall, cpu_seconds() - start_cpu
        gateway.stop()
    print(json.dumps({"wall_s": wall, "cpu_s": cpu}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
