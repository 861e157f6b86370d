"""A camera unit with a GPS: its fixes are relayed, its position follows them, its records say `gps`."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime

from gpiozero.pins.mock import MockFactory

from edge.camera.agent import CameraUnit
from edge.camera.exif import read_tags
from edge.camera.gps import UnitGps
from edge.camera.sidecar import verify_capture
from edge.camera.simulated import SimulatedCamera
from edge.config import parse_config
from edge.fix import ClockSource
from edge.topics import Topics
from simulators.gps import make_simulator
from simulators.pty_port import PtyPort

SITE, UNIT, CAM = "helan", "cam-gps", "cam0"
TOPICS = Topics(SITE, UNIT)


def _wait(predicate, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_gps_fixes_drive_position_and_clock_source(broker, collect, tmp_path) -> None:
    inbox = collect(broker, TOPICS.all())
    with PtyPort(tmp_path / "gps0") as pty:
        config = parse_config(
            {
                "unit": {"id": UNIT, "site": SITE, "role": "camera"},
                "mqtt": {"host": broker.host, "port": broker.port},
                "outbox": {"path": str(tmp_path / "outbox.sqlite3")},
                "serial": [{"name": "gps0", "port": pty.path, "baudrate": 9600}],
                "health": {"interval": 3600},
                "camera": {
                    "lat": 38.0,  # where the installer thought it was; the GPS knows better
                    "lon": 105.9,
                    "id": CAM,
                    "backend": "simulated",
                    "main_width": 320,
                    "main_height": 240,
                    "max_burst": 1,
                    "image_dir": str(tmp_path / "images"),
                },
            }
        )
        # A GPS whose fixes carry the real time now, so the clock agrees with them.
        sim = make_simulator(pty, seed=4, profile="gp-basic", rate_hz=5.0, start_time=datetime.now(UTC))
        camera = SimulatedCamera(lambda: datetime.now(UTC), random.Random(1), main=(320, 240), paced=True)
        unit = CameraUnit(
            config,
            camera,
            pin_factory=MockFactory(),
            rng=random.Random(2),
            clock_source=lambda: ClockSource.UNSYNCED,
        )
        gps = unit.addons.get(UnitGps)
        assert gps is not None and unit._clock_source() is ClockSource.UNSYNCED
        unit.start()
        try:
            _wait(lambda: gps.workers[0].source.connected, what="the GPS port to open")
            sim.start()
            _wait(lambda: gps.fixes >= 3, what="GPS fixes")
            assert unit._clock_source() is ClockSource.GPS
            unit.trigger("manual")
            _wait(lambda: unit.completed, what="the capture")
            inbox.wait_until(lambda ms: any(m.topic.endswith("/gps0/event/fix") for m in ms))
        finally:
            sim.stop()
            unit.stop()
    last = gps.last_fix
    assert abs(unit.position.lat - last.lat) < 0.01 and abs(unit.position.lon - last.lon) < 0.01
    event = unit.completed[-1]
    still = next(i for i in event.images if i.stream == "main")
    path = unit.find_image(still.image_id)
    sidecar = verify_capture(path)
    assert sidecar.clock_source is ClockSource.GPS
    tags = read_tags(path.read_bytes())
    assert abs(tags["lat"] - 38.0) > 0.1, "EXIF carries the GPS position, not the configured one"
    fixes = [m.json() for m in inbox.unique() if m.topic.endswith("/gps0/event/fix")]
    assert fixes and fixes[0]["unit"] == UNIT and fixes[0]["seq"] == 1
