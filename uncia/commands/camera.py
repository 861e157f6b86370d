"""`uncia camera`: run a camera unit (PIR, IR lamp, camera) from its unit config file.

On a Pi (``backend = "picamera2"``) the pins go through gpiozero's default pin factory (lgpio, Pi 5
included). With ``backend = "simulated"`` the unit runs anywhere: a simulated NoIR camera and
gpiozero's mock pins; ``--scenario FILE`` then plays animals crossing (and the PIR they set off) in
real time, on a clock that starts a few seconds before the first crossing.
"""

from __future__ import annotations

import argparse
import logging
import random
import signal
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from edge.config import ConfigError, UnitConfig, load_config
from edge.watchdog import SystemdNotifier, supervised
from uncia.cli import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK

log = logging.getLogger("uncia.camera")

SCENARIO_LEAD_S = (
    3.0  # the simulated clock starts this long (plus the pre-trigger time) before the first crossing
)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "camera",
        help="run a camera unit (PIR -> IR lamp -> stills, pre-trigger frames -> station broker)",
        description=(
            "Watch the PIR; on a trigger take a burst of full-resolution stills (IR lamp lit at night), "
            "keep the seconds of low-resolution frames before it, save everything with EXIF and sidecars, "
            "and send the event and a thumbnail to the station broker through the durable outbox. "
            "Runs until SIGTERM or Ctrl-C."
        ),
    )
    parser.add_argument(
        "-c",
        "--config",
        required=True,
        type=Path,
        help="the unit's TOML file (see deploy/camera.example.toml)",
    )
    parser.add_argument("--check", action="store_true", help="only check the config file and exit")
    parser.add_argument(
        "--scenario",
        type=Path,
        help="simulated backend only: a scenario file (TOML/JSON) of animals crossing, played in real time",
    )
    parser.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    parser.add_argument("--seed", type=int, help="simulated backend: same seed, same scene")
    parser.set_defaults(func=run)


def describe(config: UnitConfig) -> str:
    cam = config.camera
    assert cam is not None
    lines = [
        f"unit {config.unit.id} at site {config.unit.site} ({config.unit.role})",
        f"broker {config.mqtt.host}:{config.mqtt.port}" + (" with TLS" if config.mqtt.tls else ""),
        f"outbox {config.outbox.path}",
        f"camera {cam.id}: {cam.backend}"
        + (f" with tuning {cam.tuning_file}" if cam.tuning_file else "")
        + f", stills {cam.main_width}x{cam.main_height}, stream {cam.lores_width}x{cam.lores_height}"
        f" at {cam.fps:g} fps",
        f"PIR GPIO{cam.pir_pin}, IR lamp GPIO{cam.illuminator_pin}, "
        + (
            f"light sensor GPIO{cam.light_sensor_pin}"
            if cam.light_sensor_pin >= 0
            else f"night when the sun is below {cam.night_below_deg:g} deg"
        ),
        f"{cam.pre_trigger_s:g} s pre-trigger, a still every {cam.burst_interval_s:g} s up to {cam.max_burst},"
        f" rest {cam.retrigger_interval_s:g} s",
        f"images {cam.image_dir} (delete relayed below {cam.low_free_mb:g} MB free, any below"
        f" {cam.hard_free_mb:g} MB)",
        f"unit position {cam.lat}, {cam.lon}" + ("" if cam.alt is None else f", {cam.alt:g} m"),
    ]
    return "\n".join(lines)


def _prepare_dirs(config: UnitConfig) -> None:
    assert config.camera is not None
    for key, folder in (
        ("outbox.path", Path(config.outbox.path).parent),
        ("camera.image_dir", Path(config.camera.image_dir)),
    ):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(key, str(folder), f"a writable folder ({exc.strerror})") from exc


class RealTimeScenario:
    """Plays a scenario's PIR output onto a mock pin as real time passes, on a simulated clock that
    keeps pace with it (the unit, its camera and the PIR all read that clock)."""

    def __init__(self, scenario: Any, pin: Any, clock: Any, *, tick: float = 0.005) -> None:
        from simulators.pir import PirScenarioRunner

        self.clock = clock
        self.runner = PirScenarioRunner(scenario, pin, clock)
        self.tick = tick
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="uncia-scenario", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        began, sim_began = time.monotonic(), self.clock.now()
        while not self._stop.wait(self.tick):
            self.runner.run_until(sim_began + timedelta(seconds=time.monotonic() - began))

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5.0)


def build_unit(
    config: UnitConfig,
    *,
    scenario: Any = None,
    pin_factory: Any = None,
    seed: int | None = None,
    start_before_s: float | None = None,
    **unit_kw: Any,
) -> tuple[Any, RealTimeScenario | None]:
    """The `CameraUnit` for `config` (not started), and the scenario player if one was given.

    ``pin_factory`` overrides the choice (default: gpiozero's own on a Pi, mock pins when simulated).
    With a scenario, the simulated clock starts `start_before_s` seconds before the first crossing
    (default: the pre-trigger time plus `SCENARIO_LEAD_S`, so the buffer is full when it comes).
    Other keywords go to `CameraUnit`.
    """
    from edge.camera.agent import CameraUnit

    cam = config.camera
    if cam is None:
        raise ConfigError("camera", None, "a [camera] table (see deploy/camera.example.toml)")
    if cam.backend == "picamera2":
        if scenario is not None:
            raise ConfigError("camera.backend", cam.backend, "'simulated' to play a scenario")
        from edge.camera.picamera import Picamera2Camera

        camera = Picamera2Camera(
            cam.tuning_file or None,
            lores=(cam.lores_width, cam.lores_height),
            main=(cam.main_width, cam.main_height),
            fps=cam.fps,
        )
        return CameraUnit(config, camera, pin_factory=pin_factory, **unit_kw), None

    from gpiozero.pins.mock import MockFactory

    from edge.camera.simulated import SimulatedCamera
    from edge.clock import utc_now

    factory = pin_factory if pin_factory is not None else MockFactory()
    clock: Any = utc_now
    animal = None
    if scenario is not None:
        from simulators.scenario import SimClock

        first = scenario.crossings[0].start if scenario.crossings else utc_now()
        lead = cam.pre_trigger_s + SCENARIO_LEAD_S if start_before_s is None else start_before_s
        clock = SimClock(first - timedelta(seconds=lead))
        animal = scenario.animal_in_view
    camera = SimulatedCamera(
        clock,
        random.Random(seed),
        animal_in_view=animal or (lambda t: None),
        lores=(cam.lores_width, cam.lores_height),
        main=(cam.main_width, cam.main_height),
        fps=cam.fps,
        paced=True,
    )
    unit = CameraUnit(config, camera, pin_factory=factory, clock=clock, **unit_kw)
    player = None if scenario is None else RealTimeScenario(scenario, factory.pin(cam.pir_pin), clock)
    return unit, player


def status_line(unit: Any) -> str:
    """The short state `systemctl status uncia-camera` shows (refreshed at each watchdog ping)."""
    broker = "broker connected" if unit.relay.connected else "broker unreachable"
    state = "capturing" if unit.current is not None else "watching"
    return (
        f"{state}: {unit.counters['events']} events, {unit.counters['stills']} stills since start; "
        f"{broker}, {unit.outbox.depth:,} waiting in the outbox"
    )


def serve(
    unit: Any,
    player: RealTimeScenario | None = None,
    duration: float | None = None,
    notifier: SystemdNotifier | None = None,
) -> int:
    """Run `unit` until SIGTERM/SIGINT (or `duration` seconds); the lamp goes off first on a signal.

    Under systemd (``Type=notify``): READY=1 once the unit runs, watchdog pings while all its
    threads are alive, STOPPING=1 before it stops. `notifier` defaults to one from the environment
    (a no-op outside systemd).
    """
    stop = threading.Event()
    notifier = notifier if notifier is not None else SystemdNotifier()

    def on_signal(signum: int, _frame: object) -> None:
        unit.illuminator.off()  # before anything slower: a stop may be a power-down coming
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        notifier.status("starting: camera, pins and outbox")
        try:
            unit.start()
        except Exception as exc:
            unit.stop(timeout=1.0)
            print(f"uncia camera: cannot start: {exc}", file=sys.stderr)
            notifier.status(f"cannot start: {exc}")
            return EXIT_FAILURE
        if player is not None:
            player.start()
        stopping = "stopping: lamp off, ending the burst, draining the outbox"
        try:
            with supervised(
                notifier, unit.alive, status=lambda: status_line(unit), stopping=stopping, log=log
            ):
                stop.wait(duration)
        finally:
            if player is not None:
                player.stop()
            unit.stop()
        return EXIT_OK
    finally:
        notifier.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
        if config.camera is None:
            raise ConfigError(
                "camera", None, "a [camera] table (see deploy/camera.example.toml)", str(args.config)
            )
        if args.check:
            print(describe(config))
            print("config OK")
            return EXIT_OK
        scenario = None
        if args.scenario is not None:
            if config.camera.backend != "simulated":
                raise ConfigError("camera.backend", config.camera.backend, "'simulated' to play a scenario")
            from simulators.scenario import Scenario, ScenarioError

            try:
                scenario = Scenario.from_file(args.scenario)
            except ScenarioError as exc:
                print(f"uncia camera: {exc}", file=sys.stderr)
                return EXIT_CONFIG
        _prepare_dirs(config)
        unit, player = build_unit(config, scenario=scenario, seed=args.seed)
    except ConfigError as exc:
        print(f"uncia camera: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except Exception as exc:  # camera stack missing, outbox in use, card unreadable: say it plainly
        print(f"uncia camera: cannot start: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return serve(unit, player, args.duration)
