"""Station benchmark: the gateway's hub under a site ten times larger than a real one.

    python -m bench.station [--quick] [--seconds S] [--speedup X]

Two sites, one after the other, each against a fresh gateway process (`uncia gateway` with a
``[station]`` section and the web page) and a fresh Mosquitto (or the embedded broker):

- baseline: a real site — 20 collars, 5 camera units;
- large: ten times that — 200 collars, 50 camera units.

A load generator (this process) publishes what the units would: collar fixes as heard by relay
gateways (1 fix per collar every 15 min), each camera unit's health (every 60 s) and camera health
(every 10 min), capture events (start, 4 updates, end, a 15 kB thumbnail; 24 per unit per day).
Time is compressed by ``--speedup`` (default 60: an hour of the site in a minute), so the gateway sees
60x the real message rate; its CPU is then divided by the speedup to give the real-time load.

Measured, per site: the gateway process's CPU (user+system, from /proc via psutil) per simulated hour
and as a share of one core in real time; its peak resident memory; and the end-to-end latency of
each collar fix from the load generator's publish to the event on the web page's live stream
(``/api/events``, read by a real HTTP client). The last line is one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import math
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import psutil
from paho.mqtt.enums import CallbackAPIVersion
from PIL import Image

from edge.broker import start_broker
from edge.fix import ClockSource, Fix
from edge.messages import Envelope
from edge.topics import Topics

SITE, STATION = "helan", "gw-01"
REPO = Path(__file__).resolve().parents[1]
FIX_INTERVAL_S = 900.0
HEALTH_INTERVAL_S = 60.0
CAMERA_HEALTH_INTERVAL_S = 600.0
CAPTURES_PER_DAY = 24.0


@dataclass(frozen=True)
class SiteSize:
    name: str
    collars: int
    cameras: int


SITES = (SiteSize("baseline (real site)", 20, 5), SiteSize("large (10x)", 200, 50))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _thumbnail() -> bytes:
    rng = random.Random(3)
    image = Image.new("L", (320, 180))
    image.putdata([rng.randrange(40, 90) for _ in range(320 * 180)])
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=70)
    return buf.getvalue()


class LiveReader(threading.Thread):
    """Reads the web page's live stream like a browser; notes when each fix event arrives."""

    def __init__(self, url: str) -> None:
        super().__init__(name="bench-sse", daemon=True)
        self.url = url
        self.arrivals: dict[tuple[str, str], float] = {}
        self.connected = threading.Event()
        self.stop = threading.Event()

    def run(self) -> None:
        with urllib.request.urlopen(self.url, timeout=600) as stream:
            self.connected.set()
            for raw in stream:
                if self.stop.is_set():
                    return
                line = raw.decode().strip()
                if not line.startswith("data:"):
                    continue
                event = json.loads(line[5:])
                if event.get("type") == "fix":
                    self.arrivals[event["track"], event["fix"]["time"]] = time.monotonic()


class Load:
    """Publishes a site's traffic at `speedup` x real time; remembers when each fix was sent."""

    def __init__(self, host: str, port: int, size: SiteSize, speedup: float, seed: int = 1) -> None:
        self.size, self.speedup = size, speedup
        self.rng = random.Random(seed)
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-load-{seed}")
        self.client.max_inflight_messages_set(0)
        self.client.connect(host, port)
        self.client.loop_start()
        self.sent: dict[tuple[str, str], float] = {}
        self.counts = {"fix": 0, "health": 0, "camera_health": 0, "capture": 0, "thumbnail": 0}
        self.jpeg_b64 = base64.b64encode(_thumbnail()).decode()
        relays = max(1, size.collars // 20)
        self.collars = [
            (
                f"collar-{i:03d}",
                f"relay-{i % relays:02d}",
                38.85 + self.rng.uniform(-0.2, 0.2),
                105.98 + self.rng.uniform(-0.05, 0.05),
            )
            for i in range(size.collars)
        ]
        self.cameras = [f"cam-{i:03d}" for i in range(size.cameras)]
        self.seqs: dict[str, int] = {}

    def _send(
        self, unit: str, source: str, topic: str, type_: str, data: dict, *, retain: bool = False
    ) -> None:
        key = f"{unit}/{source}"
        self.seqs[key] = self.seqs.get(key, 0) + 1
        now = datetime.now(UTC)
        payload = Envelope(unit).encode(
            source,
            self.seqs[key],
            type_,
            data,
            time=data.get("time", now),
            received=now,
            clock=ClockSource.GPS,
        )
        self.client.publish(topic, payload, qos=1, retain=retain)
        self.counts[type_] += 1

    def fix(self, index: int) -> None:
        name, relay, lat, lon = self.collars[index]
        lat += self.rng.gauss(0, 0.002)
        lon += self.rng.gauss(0, 0.002)
        self.collars[index] = (name, relay, lat, lon)
        fix = Fix(time=datetime.now(UTC), lat=lat, lon=lon, quality=1, sats=7, hdop=1.3)
        data = {**fix.to_dict(), "battery": 80, "rssi": -100.0, "snr": 5.0, "modem": "lora0"}
        self.sent[name, data["time"]] = time.monotonic()
        self._send(relay, name, Topics(SITE, relay).fix(name), "fix", data)

    def health(self, unit: str) -> None:
        body = {
            "role": "camera",
            "software": "0.1.0",
            "config_hash": "0123456789ab",
            "connected": True,
            "uptime_s": 1000.0,
            "outbox": {"waiting": 0},
            "agent": {"clock": "gps"},
        }
        self._send(unit, "unit", Topics(SITE, unit).health(), "health", body, retain=True)

    def camera_health(self, unit: str) -> None:
        body = {
            "camera": "cam0",
            "state": "ok",
            "reasons": [],
            "battery_v": 3.9,
            "disk": {"free_bytes": 20e9, "total_bytes": 32e9, "used_percent": 37.5},
            "position": {"lat": 38.85, "lon": 105.98, "alt": 2400.0},
        }
        self._send(
            unit,
            "cam0-health",
            Topics(SITE, unit).state("cam0", "health"),
            "camera_health",
            body,
            retain=True,
        )

    def capture(self, unit: str, n: int) -> None:
        topics = Topics(SITE, unit)
        event_id = f"{unit}-{n:05d}"
        start = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        base = {
            "event_id": event_id,
            "camera": "cam0",
            "trigger": "pir",
            "start": start,
            "night": True,
            "pre_trigger": {"frames": 20, "seconds": 2.0},
        }
        self._send(
            unit, "cam0", topics.event("cam0", "capture"), "capture", {**base, "phase": "start", "stills": 0}
        )
        images = []
        for i in range(1, 5):
            still = {
                "id": f"{event_id}-{i}",
                "file": f"{event_id}-{i}.jpg",
                "index": i,
                "stream": "main",
                "time": start,
                "width": 1920,
                "height": 1080,
                "bytes": 900_000,
            }
            images.append(still)
            self._send(
                unit,
                "cam0",
                topics.event("cam0", "capture"),
                "capture",
                {**base, "phase": "update", "stills": i, "still": still},
            )
        self._send(
            unit,
            "cam0",
            topics.event("cam0", "capture"),
            "capture",
            {
                **base,
                "phase": "end",
                "stills": 4,
                "end": start,
                "end_reason": "motion_ended",
                "images": images,
                "best_image_id": images[1]["id"],
                "images_lost": 0,
            },
        )
        thumb = {
            "event_id": event_id,
            "camera": "cam0",
            "image_id": images[1]["id"],
            "file": images[1]["file"],
            "time": start,
            "bytes": 15000,
            "width": 320,
            "height": 180,
            "jpeg_b64": self.jpeg_b64,
        }
        self._send(unit, "cam0", topics.event("cam0", "thumbnail"), "thumbnail", thumb)

    def run(self, seconds: float) -> None:
        """Send the site's traffic for `seconds` of wall time (each source on its own schedule)."""
        s = self.speedup
        schedule: list[tuple[float, str, int]] = []  # (next due, kind, index)
        t0 = time.monotonic()
        for i in range(len(self.collars)):
            schedule.append((t0 + self.rng.uniform(0, FIX_INTERVAL_S / s), "fix", i))
        for i in range(len(self.cameras)):
            schedule.append((t0 + self.rng.uniform(0, HEALTH_INTERVAL_S / s), "health", i))
            schedule.append((t0 + self.rng.uniform(0, CAMERA_HEALTH_INTERVAL_S / s), "camera_health", i))
            schedule.append((t0 + self.rng.expovariate(CAPTURES_PER_DAY * s / 86400.0), "capture", i))
        end = t0 + seconds
        captures = 0
        while True:
            schedule.sort()
            due, kind, index = schedule[0]
            if due >= end:
                break
            time.sleep(max(0.0, due - time.monotonic()))
            if kind == "fix":
                self.fix(index)
                nxt = FIX_INTERVAL_S / s
            elif kind == "health":
                self.health(self.cameras[index])
                nxt = HEALTH_INTERVAL_S / s
            elif kind == "camera_health":
                self.camera_health(self.cameras[index])
                nxt = CAMERA_HEALTH_INTERVAL_S / s
            else:
                captures += 1
                self.capture(self.cameras[index], captures)
                nxt = self.rng.expovariate(CAPTURES_PER_DAY * s / 86400.0)
            schedule[0] = (due + nxt, kind, index)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _write_config(workdir: Path, broker_port: int, web_port: int) -> Path:
    path = workdir / "gateway.toml"
    path.write_text(
        f"""[unit]
id = "{STATION}"
site = "{SITE}"

[mqtt]
host = "127.0.0.1"
port = {broker_port}

[outbox]
path = "{workdir / "outbox.sqlite3"}"

[health]
interval = 60

[station]
record = "{workdir / "station.sqlite3"}"
image_dir = "{workdir / "images"}"
boundary = "{REPO / "deploy" / "reserve.example.geojson"}"
web_host = "127.0.0.1"
web_port = {web_port}
"""
    )
    return path


def _wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                reply.read()
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def measure(size: SiteSize, seconds: float, speedup: float, workdir: Path) -> dict[str, float]:
    workdir.mkdir(parents=True)
    with start_broker() as broker:
        web_port = _free_port()
        config = _write_config(workdir, broker.port, web_port)
        gateway = subprocess.Popen(
            [sys.executable, "-m", "uncia", "gateway", "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=open(workdir / "gateway.log", "w"),  # noqa: SIM115 (closed with the process)
        )
        try:
            url = f"http://127.0.0.1:{web_port}"
            _wait_http(url + "/api/status")
            reader = LiveReader(url + "/api/events")
            reader.start()
            reader.connected.wait(10)
            process = psutil.Process(gateway.pid)
            load = Load(broker.host, broker.port, size, speedup)
            time.sleep(1.0)
            cpu0 = process.cpu_times()
            peak = [process.memory_info().rss]

            def sample() -> None:
                while gateway.poll() is None and not reader.stop.is_set():
                    peak.append(process.memory_info().rss)
                    time.sleep(0.5)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            started = time.monotonic()
            load.run(seconds)
            # let the last messages through before reading the clock
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and len(reader.arrivals) < len(load.sent):
                time.sleep(0.1)
            elapsed = time.monotonic() - started
            cpu1 = process.cpu_times()
            reader.stop.set()
            load.close()
        finally:
            gateway.terminate()
            try:
                gateway.wait(20)
            except subprocess.TimeoutExpired:
                gateway.kill()
    cpu_s = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
    latencies = sorted(
        (reader.arrivals[key] - sent) * 1000.0 for key, sent in load.sent.items() if key in reader.arrivals
    )
    simulated_h = elapsed * speedup / 3600.0
    messages = sum(load.counts.values())
    return {
        "collars": size.collars,
        "cameras": size.cameras,
        "messages": messages,
        "fixes_sent": len(load.sent),
        "fixes_on_page": len(latencies),
        "simulated_hours": round(simulated_h, 2),
        "cpu_s_per_sim_hour": round(cpu_s / simulated_h, 3),
        "cpu_percent_realtime": round(100.0 * cpu_s / simulated_h / 3600.0, 4),
        "cpu_percent_under_load": round(100.0 * cpu_s / elapsed, 1),
        "cpu_us_per_message": round(1e6 * cpu_s / max(messages, 1), 1),
        "rss_peak_mb": round(max(peak) / 1e6, 1),
        "latency_p50_ms": round(statistics.median(latencies), 1) if latencies else math.nan,
        "latency_p99_ms": round(latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 1)
        if latencies
        else math.nan,
        "latency_max_ms": round(latencies[-1], 1) if latencies else math.nan,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a short run (10 s per site)")
    parser.add_argument(
        "--seconds", type=float, default=60.0, help="wall-clock seconds of load per site (60)"
    )
    parser.add_argument("--speedup", type=float, default=60.0, help="simulated seconds per wall second (60)")
    args = parser.parse_args(argv)
    seconds = 10.0 if args.quick else args.seconds
    results = {}
    with tempfile.TemporaryDirectory(prefix="uncia-bench-station-") as tmp:
        for n, size in enumerate(SITES):
            figures = measure(size, seconds, args.speedup, Path(tmp) / f"site{n}")
            results[size] = figures
            print(
                f"{size.name}: {size.collars} collars, {size.cameras} camera units, {args.speedup:g}x real time"
            )
            print(f"  {figures['messages']:,} messages in {figures['simulated_hours']} simulated hours")
            print(
                f"  gateway CPU: {figures['cpu_s_per_sim_hour']} s per site-hour = "
                f"{figures['cpu_percent_realtime']} % of a core in real time "
                f"({figures['cpu_us_per_message']} µs per message; {figures['cpu_percent_under_load']} % while compressed)"
            )
            print(f"  gateway memory: {figures['rss_peak_mb']} MB peak RSS")
            print(
                f"  fix -> web page: p50 {figures['latency_p50_ms']} ms, p99 {figures['latency_p99_ms']} ms, "
                f"max {figures['latency_max_ms']} ms ({figures['fixes_on_page']}/{figures['fixes_sent']} fixes seen)"
            )
    base, large = (results[s] for s in SITES)
    summary = {
        "speedup": args.speedup,
        "seconds_per_site": seconds,
        **{f"baseline_{k}": v for k, v in base.items()},
        **{f"large_{k}": v for k, v in large.items()},
        "cpu_ratio_large_to_baseline": round(
            large["cpu_s_per_sim_hour"] / max(base["cpu_s_per_sim_hour"], 1e-9), 2
        ),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
