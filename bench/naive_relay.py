"""The baseline the relay benchmark compares against: what a quick script would do.

pynmea2.parse on every line, a paho publish per fix at QoS 1 and `wait_for_publish()` before the next
(so it is also "durable" in its own way: nothing is read ahead of the broker's acknowledgement).
Lines are split from whatever the port has waiting, as the gateway reads: pyserial's own
`readline()` reads one byte per system call and would make the baseline several times slower than
what the issue measured (~4,700 fixes/s, ~200 CPU-µs per fix), flattering the comparison.
Run as a child process by `bench.relay`: ``python -m bench.naive_relay PORT HOST:PORT N``.
"""

from __future__ import annotations

import json
import resource
import sys
import time

import paho.mqtt.client as mqtt
import pynmea2
import serial


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    port, broker, n_fixes = sys.argv[1], sys.argv[2], int(sys.argv[3])
    host, _, mqtt_port = broker.partition(":")
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-naive")
    client.connect(host, int(mqtt_port))
    client.loop_start()
    ser = serial.Serial(port, 115200, timeout=10)
    print("open", flush=True)
    start_wall, start_cpu = time.perf_counter(), cpu_seconds()
    fix: dict[str, object] = {}
    published = 0
    pending = b""
    lines: list[bytes] = []
    while published < n_fixes:
        if not lines:
            chunk = ser.read(ser.in_waiting or 1)
            if not chunk:
                break
            *lines, pending = (pending + chunk).split(b"\n")
            lines.reverse()
            continue
        line = lines.pop()
        try:
            msg = pynmea2.parse(line.decode("ascii", "replace").strip(), check=True)
        except pynmea2.ParseError:
            continue
        if isinstance(msg, pynmea2.GGA):
            fix = {
                "time": msg.timestamp.isoformat(),
                "lat": msg.latitude,
                "lon": msg.longitude,
                "alt": msg.altitude,
                "quality": msg.gps_qual,
                "sats": msg.num_sats,
                "hdop": msg.horizontal_dil,
            }
        elif isinstance(msg, pynmea2.RMC):
            fix["speed"] = msg.spd_over_grnd
            fix["course"] = msg.true_course
        elif isinstance(msg, pynmea2.GSA):
            fix["mode"] = msg.mode_fix_type
            info = client.publish("bench/naive/fix", json.dumps(fix), qos=1)
            info.wait_for_publish()
            published += 1
    wall, cpu = time.perf_counter() - start_wall, cpu_seconds() - start_cpu
    client.loop_stop()
    client.disconnect()
    print(json.dumps({"fixes": published, "wall_s": wall, "cpu_s": cpu}), flush=True)
    return 0 if published == n_fixes else 1


if __name__ == "__main__":
    sys.exit(main())
