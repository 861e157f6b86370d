"""A whole simulated field site on one machine: what `uncia demo` runs, and what the benchmark scales.

    site = FieldSite(Path("/tmp/site"), collars=6, cameras=2, seed=7)
    site.listen(on_event)   # the station's live events: fix, capture, alert, unit (gateway.station.live)
    site.start()            # FieldSiteError says what could not start, and what to do
    ...                     # site.web_url, site.broker_address, site.record_path, site.gateway ...
    site.stop()

What runs (in this process, but for the broker):

- a broker on a free loopback port: Mosquitto if installed, else the embedded amqtt broker
  (`edge.broker.start_broker`), anonymous, nothing kept; or the broker given as ``"HOST:PORT"``;
- the gateway (`gateway.agent.Gateway`) from ``deploy/demo/gateway.toml``, rendered into the work
  folder: its station hub keeps the record, raises alerts against ``deploy/reserve.example.geojson``
  and serves the staff web page on 127.0.0.1;
- LoRa collars (`simulators.collar`) on one simulated air (`simulators.lora_air`), heard by an
  emulated REYAX RYLR498 (`simulators.lora_reyax`) on a pseudo-terminal that the gateway's
  ``[[lora]]`` driver opens like a USB modem. The first collar roams by Suyukou village (conflict-zone
  and geofence alerts in the first minute), the second lies still (a dropped collar: mortality
  alert after ``mortality_h``);
- a GPS collar receiver wired to the gateway: NMEA at 1 Hz on a pseudo-terminal (``[[serial]]``);
- camera units in pairs (`edge.camera.agent.CameraUnit`, simulated NoIR cameras, gpiozero mock pins),
  each pair on one trail where animals pass every 20-40 s (`simulators.trail`).

Who stands where, and the time-lapse tracks, are in `simulators.site_layout`.

**Time-lapse.** A collar's real schedule is one fix every 15 minutes. The collars and the air run
on a clock ``speedup`` times faster than the wall (a fix every 5 s at 180 x, packet collisions as
rare as in the field) and every fix is stamped with the wall-clock time it happens, so the station
sees a day of movement in a few minutes, with times it can compare with its own clock. The alert
limits in ``deploy/demo/gateway.toml`` are scaled alike. The wired GPS gives 1 fix/s, its animal
moving at the same time-lapse. Cameras run in real time.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import signal
import socket
import string
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge.broker import Broker, BrokerError, start_broker
from edge.clock import utc_now
from edge.config import ConfigError, UnitConfig, load_config
from gateway.agent import Gateway
from simulators.collar import Collar, CollarFleet
from simulators.gps import FaultPlan, GpsSimulator
from simulators.lora_air import Air
from simulators.lora_reyax import RylrEmulator
from simulators.pty_port import PtyPort
from simulators.site_layout import (
    COLLAR_SCHEDULE_S,
    MAST_M,
    STATION_AT,
    TimeLapseTrack,
    camera_sites,
    on_the_move,
    site_collars,
)
from simulators.track import Track, terrain_alt
from simulators.trail import TrailTraffic

SITE = "helan"
STATION_UNIT = "gw-demo"
DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
TEMPLATES = DEPLOY / "demo"
BOUNDARY = DEPLOY / "reserve.example.geojson"
Listener = Callable[[dict[str, Any]], None]


class FieldSiteError(RuntimeError):
    """Part of the site could not start; the message says which and what to do about it."""


class PortInUseError(FieldSiteError):
    """The staff web page's port is taken (another demo, a gateway, any web server)."""

    def __init__(self, port: int, detail: str) -> None:
        self.port = port
        super().__init__(f"port {port} on 127.0.0.1 is already in use ({detail}): choose another web port")


class FieldSite:
    """The simulated site (module notes). `start()`, `stop()` (also as a context manager).

    ``workdir`` holds everything the site writes: the rendered configs, the station record and
    images, every unit's outbox and image card, the pty links and the broker's files. ``web``:
    None serves the staff page when this checkout has it. ``broker``: ``"HOST:PORT"`` of a broker to
    use instead of starting one; ``broker_kind`` forces ``"mosquitto"`` or ``"amqtt"``.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        collars: int = 6,
        cameras: int = 2,
        seed: int = 7,
        broker: str | None = None,
        broker_kind: str | None = None,
        web: bool | None = None,
        web_port: int = 8080,
        speedup: float = 180.0,
        templates: Path = TEMPLATES,
        boundary: Path | None = BOUNDARY,
    ) -> None:
        if not speedup > 0:
            raise ValueError(f"speedup={speedup!r}: expected a positive factor (180: 15 min in 5 s)")
        self.workdir = Path(workdir)
        self.n_collars, self.n_cameras, self.seed = collars, cameras, seed
        self.speedup = speedup
        self.templates = templates
        self.boundary = boundary if boundary is not None and boundary.is_file() else None
        self.web = _web_available() if web is None else web
        self.web_port = web_port
        self.broker_kind = broker_kind
        self._broker_arg = broker
        self.broker_host, self.broker_port = _address(broker) if broker else ("127.0.0.1", 0)
        self.broker: Broker | None = None
        self.gateway: Gateway | None = None
        self.cameras: list[Any] = []
        self.collars: list[Collar] = []
        self.gps: GpsSimulator | None = None
        self.modem: RylrEmulator | None = None
        self.air: Air | None = None
        self.trails: list[TrailTraffic] = []
        self.config_paths: dict[str, Path] = {}
        self._listeners: list[Listener] = []
        self._stop = threading.Event()
        self._stack = contextlib.ExitStack()
        self._started = False

    # --- where to look ---------------------------------------------------------------------------

    @property
    def broker_address(self) -> str:
        return f"{self.broker_host}:{self.broker_port}"

    @property
    def broker_description(self) -> str:
        if self._broker_arg:
            return "given with --broker"
        return f"{self.broker.kind if self.broker else self.broker_kind or '?'}, started for this site"

    @property
    def web_url(self) -> str | None:
        web = self.gateway.web if self.gateway is not None else None
        return web.url if web is not None else None

    @property
    def record_path(self) -> Path:
        return self.workdir / "station.sqlite3"

    @property
    def station_images(self) -> Path:
        return self.workdir / "station-images"

    @property
    def gps_port(self) -> Path:
        return self.workdir / "collar-dock"

    @property
    def lora_port(self) -> Path:
        return self.workdir / "lora0"

    @property
    def fix_interval_s(self) -> float:
        """Wall seconds between two fixes of one LoRa collar."""
        return COLLAR_SCHEDULE_S / self.speedup

    @property
    def collar_names(self) -> list[str]:
        return [c.name for c in self.collars]

    def tally(self) -> dict[str, int]:
        """What the station record holds so far (also after `stop()`, while the work folder exists)."""
        from gateway.station.record import RecordError, RecordReader

        try:
            reader = RecordReader(self.record_path)
        except RecordError:
            return {}
        queries = {
            "fixes": "SELECT COUNT(*) FROM fixes",
            "tracks": "SELECT COUNT(DISTINCT track) FROM fixes",
            "lora_fixes": "SELECT COUNT(*) FROM fixes WHERE modem IS NOT NULL",
            "captures": "SELECT COUNT(*) FROM captures",
            "thumbnails": "SELECT COUNT(*) FROM thumbnails",
            "alerts": "SELECT COUNT(*) FROM alerts",
            "active_alerts": "SELECT COUNT(*) FROM alerts WHERE cleared IS NULL",
        }
        with reader:
            return {name: int(reader.query(sql)[0][0]) for name, sql in queries.items()}

    def listen(self, listener: Listener) -> None:
        """Call `listener(event)` for every live station event (on the hub's thread: hand it on, do
        not block). May be called before `start()`."""
        self._listeners.append(listener)
        if self.gateway is not None and self.gateway.hub is not None:
            self.gateway.hub.live.listen(listener)

    # --- life cycle ------------------------------------------------------------------------------

    def __enter__(self) -> FieldSite:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start every part (broker first, cameras last); on failure stop what started and raise
        `FieldSiteError`."""
        if self._started:
            return
        self._started = True
        self._stop.clear()
        self.cameras, self.trails, self.config_paths = [], [], {}
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.web:
            _check_port_free(self.web_port)  # before anything starts: the likeliest failure, said plainly
        try:
            self._start_broker()
            self._start_gateway()
            self._start_collars()
            self._start_cameras()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop everything, cameras first, the broker last; safe to call twice."""
        self._stop.set()
        self._stack.close()
        self._started = False

    def _start_broker(self) -> None:
        if self._broker_arg:
            try:
                with socket.create_connection((self.broker_host, self.broker_port), timeout=3.0):
                    pass
            except OSError as exc:
                raise FieldSiteError(
                    f"cannot reach the broker at {self.broker_address} ({exc}): is it running and listening"
                    " there? Without a broker address the site starts its own"
                ) from exc
            return
        # Ctrl-C in a terminal goes to the whole process group: block SIGINT in the broker (a child
        # inherits the mask), so it outlives the units and they can say goodbye before it stops.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            self.broker = start_broker(kind=self.broker_kind, data_dir=self.workdir / "broker")
        except BrokerError as exc:
            raise FieldSiteError(f"could not start a broker: {exc}") from exc
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        self._stack.callback(self.broker.close)
        self.broker_host, self.broker_port = self.broker.host, self.broker.port

    def _start_gateway(self) -> None:
        gps_pty = self._stack.enter_context(PtyPort(self.gps_port))
        lora_pty = self._stack.enter_context(PtyPort(self.lora_port))
        self.modem = RylrEmulator(lora_pty, rng=random.Random(f"uncia-site-{self.seed}-modem"))
        self.modem.start()
        self._stack.callback(self.modem.stop)
        if not self.modem.wait_ready(10.0):
            raise FieldSiteError("the emulated LoRa modem did not boot within 10 s")
        config = self._render(
            "gateway",
            "gateway.toml",
            unit=STATION_UNIT,
            outbox=self.workdir / "gateway-outbox.sqlite3",
            gps_port=self.gps_port,
            lora_port=self.lora_port,
            record=self.record_path,
            station_images=self.station_images,
            boundary=self.boundary or "",
            web=self.web,
            web_port=self.web_port,
        )
        gateway = Gateway(config, log=logging.getLogger("uncia.gateway"))
        assert gateway.hub is not None  # deploy/demo/gateway.toml has a [station] section
        for listener in self._listeners:
            gateway.hub.live.listen(listener)
        try:
            gateway.start()
        except Exception as exc:
            with contextlib.suppress(Exception):  # Gateway.stop cannot join threads it never started
                gateway.stop(timeout=1.0)
            if self.web and type(exc).__name__ == "WebError":  # the port was taken since the check
                raise PortInUseError(self.web_port, str(exc)) from exc
            raise FieldSiteError(f"the gateway could not start: {exc}") from exc
        self.gateway = gateway
        self._stack.callback(gateway.stop, 3.0)
        # The wired collar: its animal moves at the site's time-lapse, one epoch a wall second.
        start = utc_now().replace(microsecond=0)
        rng = random.Random(f"uncia-site-{self.seed}-wired")
        track = on_the_move(Track(rng, start=(STATION_AT[0] + 0.02, STATION_AT[1] - 0.03), start_time=start))
        self.gps = GpsSimulator(
            gps_pty,
            track=TimeLapseTrack(track, self.speedup, advance_scale=self.speedup, clock_start=start),
            rng=random.Random(self.seed),
            profile="gn-multi",
            rate_hz=1.0,
            faults=FaultPlan(noise=0.01, bad_checksum=0.01),
            log_limit=1000,
        )
        self.gps.start()
        self._stack.callback(self.gps.stop)

    def _start_collars(self) -> None:
        assert self.gateway is not None and self.modem is not None
        workers = self.gateway.lora_workers
        if not _wait_for(lambda: all(w.state == "receiving" for w in workers), 15.0):
            states = ", ".join(f"{w.settings.name} {w.state}" for w in workers)
            raise FieldSiteError(f"the gateway's LoRa modem was not receiving within 15 s ({states})")
        self.air = Air(random.Random(f"uncia-site-{self.seed}-air"))
        mast = terrain_alt(*STATION_AT) + MAST_M
        self.air.add_receiver(STATION_UNIT, self.modem, (*STATION_AT, mast))
        self.collars = site_collars(self.n_collars, self.seed, utc_now(), self.speedup)
        fleet = CollarFleet(self.air, self.collars)
        thread = threading.Thread(
            target=fleet.run_realtime,
            args=(math.inf, self.speedup),
            kwargs={"stop": self._stop},
            name="uncia-collars",
            daemon=True,
        )
        thread.start()
        self._stack.callback(thread.join, 5.0)

    def _start_cameras(self) -> None:
        from gpiozero.pins.mock import MockFactory

        from edge.camera.agent import CameraUnit
        from edge.camera.simulated import SimulatedCamera

        sites = camera_sites(self.n_cameras)
        trails: dict[str, TrailTraffic] = {}
        for unit, partner, (lat, lon) in sites:
            trail = trails.get(partner)
            if trail is None:
                names = [unit, partner] if partner else [unit]
                trail = TrailTraffic(
                    names, random.Random(f"uncia-site-{self.seed}-trail-{unit}"), first_in_s=4.0
                )
                self.trails.append(trail)
            trails[unit] = trail
            images = self.workdir / f"{unit}-images"
            images.mkdir(parents=True, exist_ok=True)
            config = self._render(
                unit,
                "camera.toml",
                unit=unit,
                outbox=self.workdir / f"{unit}-outbox.sqlite3",
                lat=round(lat, 6),
                lon=round(lon, 6),
                alt=round(terrain_alt(lat, lon), 1),
                images=images,
                pair_with=partner,
            )
            cam = config.camera
            assert cam is not None
            factory = MockFactory()
            camera = SimulatedCamera(
                utc_now,
                random.Random(f"uncia-site-{self.seed}-{unit}"),
                animal_in_view=trail.animal_in_view,
                lores=(cam.lores_width, cam.lores_height),
                main=(cam.main_width, cam.main_height),
                fps=cam.fps,
                paced=True,
            )
            camera_unit = CameraUnit(
                config,
                camera,
                pin_factory=factory,
                rng=random.Random(f"uncia-site-{self.seed}-{unit}-events"),
                log=logging.getLogger(f"uncia.camera.{unit}"),
            )
            self._stack.callback(camera_unit.stop, 2.0)
            self.cameras.append(camera_unit)
            trail.attach(unit, factory.pin(cam.pir_pin))
        for camera_unit in self.cameras:
            camera_unit.start()
        for trail in self.trails:
            trail.start()
            self._stack.callback(trail.stop)

    def _render(self, name: str, template: str, **values: Any) -> UnitConfig:
        """Fill in a template of `templates`, write it to <workdir>/<name>.toml and load it as the
        units in the field load theirs."""
        common = {
            "site": SITE,
            "broker_host": self.broker_host,
            "broker_port": self.broker_port,
            "speedup": self.speedup,
        }
        toml = {k: _toml_value(v) for k, v in {**common, **values}.items()}
        path = self.workdir / f"{name}.toml"
        try:
            text = string.Template((self.templates / template).read_text()).substitute(toml)
            path.write_text(text)
            config = load_config(path)
        except (OSError, KeyError, ValueError) as exc:  # ConfigError is a ValueError
            kind = "config" if isinstance(exc, ConfigError) else "template"
            raise FieldSiteError(
                f"the {name} {kind} from {self.templates / template} is wrong: {exc}"
            ) from exc
        self.config_paths[name] = path
        return config


def _toml_value(value: Any) -> str:
    """A Python value as a TOML value (JSON's strings, numbers and booleans are TOML's too)."""
    return json.dumps(str(value) if isinstance(value, Path) else value)


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise FieldSiteError(f"broker {text!r}: expected HOST:PORT, e.g. 127.0.0.1:1883")
    return host, int(port)


def _web_available() -> bool:
    """Whether this checkout has the staff web page (gateway.station.web)."""
    try:
        import gateway.station.web  # noqa: F401
    except ImportError:
        return False
    return True


def _check_port_free(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the web server will
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            raise PortInUseError(port, exc.strerror or str(exc)) from exc


def _wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
