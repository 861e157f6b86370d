"""The camera unit agent: scenario crossings on mock PIR pins → simulated NoIR camera → real broker.

Pure parts (burst schedule, trigger gate, pre-trigger selection, best still, event bodies) are
property-tested; the agent runs in real time with short bursts, a real broker, real files.
"""

from __future__ import annotations

import base64
import hashlib
import io
import itertools
import json
import logging
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from gpiozero.pins.mock import MockFactory
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion
from PIL import Image

from edge.camera.agent import CameraUnit
from edge.camera.backend import CameraError, Frame
from edge.camera.capture import (
    BestStill,
    Burst,
    BurstPolicy,
    EndReason,
    TriggerGate,
    Verdict,
    best_still,
    pre_trigger_frames,
)
from edge.camera.events import CaptureEvent, SavedImage, image_file, new_event_id, thumbnail_body
from edge.camera.exif import read_tags
from edge.camera.sidecar import verify_capture
from edge.camera.simulated import SimulatedCamera
from edge.config import parse_config
from edge.fix import ClockSource, iso_utc
from edge.messages import decode
from edge.topics import Topics
from gateway.image_fetch import ImageFetcher
from simulators.scenario import Crossing, PirModel, Scenario, SimClock
from uncia.cli import main
from uncia.commands.camera import RealTimeScenario

REPO = Path(__file__).resolve().parents[1]
SITE, UNIT, CAM = "helan", "cam-07", "cam0"
TOPICS = Topics(SITE, UNIT)
NIGHT = datetime(2026, 11, 25, 14, 0, tzinfo=UTC)  # 22:00 in the Helan Mountains (UTC+8)
DAY = datetime(2026, 11, 25, 5, 0, tzinfo=UTC)  # 13:00 there
LAT, LON, ALT = 38.8143, 105.9387, 2310.0


# --- pure parts -------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    interval=st.floats(0.1, 2.0),
    max_stills=st.integers(1, 12),
    delays=st.lists(st.floats(0.0, 3.0), min_size=12, max_size=12),
    motion=st.lists(st.booleans(), min_size=12, max_size=12),
)
def test_burst_schedule(interval: float, max_stills: int, delays: list[float], motion: list[bool]) -> None:
    """At most max_stills; one per interval on the grid; never two closer than half an interval;
    the burst ends at the first due still without motion."""
    burst = Burst(BurstPolicy(interval, max_stills, 5.0), start=100.0)
    now, taken_at, reason = 100.0, [], None
    for k in range(12):
        now += delays[k] * 0.1  # the camera and the card take a while
        burst.took(now)
        taken_at.append(now)
        due = burst.next_due()
        if due is None:
            reason = EndReason.MAX_STILLS
            break
        assert due >= 100.0 + len(taken_at) * interval - 1e-9
        assert due >= now + interval / 2 - 1e-9
        now = max(now, due)
        reason = burst.carry_on(motion[k])
        if reason is not None:
            break
    assert len(taken_at) <= max_stills
    if reason is EndReason.MOTION_ENDED:
        assert not motion[len(taken_at) - 1] and all(motion[: len(taken_at) - 1])
    if reason is EndReason.MAX_STILLS:
        assert len(taken_at) == max_stills and all(motion[: max_stills - 1])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["trigger", "end", "rearm"]), st.floats(0, 10), st.booleans())))
def test_trigger_gate(steps: list[tuple[str, float, bool]]) -> None:
    gate = TriggerGate(BurstPolicy(0.5, 3, retrigger_s=4.0))
    now, in_burst, rest_until = 0.0, False, None
    for action, dt, motion in steps:
        now += dt
        if action == "trigger":
            verdict = gate.offer(now)
            if in_burst:
                assert verdict is Verdict.BUSY
            elif rest_until is not None and now < rest_until:
                assert verdict is Verdict.RESTING
            else:
                assert verdict is Verdict.START
                in_burst = True
        elif action == "end" and in_burst:
            gate.finished(now)
            in_burst, rest_until = False, now + 4.0
        elif action == "rearm":
            fired = gate.rearm(now, motion)
            assert fired == (not in_burst and rest_until is not None and now >= rest_until and motion)
            if not in_burst and rest_until is not None and now >= rest_until:
                rest_until = None  # re-arming is offered once per rest


def _frames(times: list[float], start: datetime = NIGHT) -> list[Frame]:
    return [Frame(b"\xff\xd8", start + timedelta(seconds=t), 16, 16, "lores", i) for i, t in enumerate(times)]


@settings(max_examples=200, deadline=None)
@given(
    fps=st.sampled_from([5.0, 10.0, 15.0, 30.0]),
    buffered=st.floats(0.0, 4.0),
    after=st.floats(0.0, 0.3),
    seconds=st.floats(2.0, 3.0),
)
def test_pre_trigger_selection_reaches_back(
    fps: float, buffered: float, after: float, seconds: float
) -> None:
    """The kept frames reach at least `seconds` back whenever the buffer holds frames that old, and
    none is later than the trigger."""
    times = [k / fps for k in range(int((buffered + after) * fps) + 1)]
    trigger = NIGHT + timedelta(seconds=buffered)
    kept = pre_trigger_frames(_frames(times), trigger, seconds)
    assert all(f.time <= trigger for f in kept)
    if kept:
        reach = (trigger - kept[0].time).total_seconds()
        if buffered >= seconds:
            assert reach >= seconds - 1e-6
            assert reach < seconds + 1 / fps + 1e-6  # and not much more
        # consecutive: nothing in between was dropped
        assert [f.index for f in kept] == list(range(kept[0].index, kept[-1].index + 1))


def test_best_still_is_the_one_showing_the_animal() -> None:
    where: dict[str, float | None] = {"x": None}
    clock = SimClock(NIGHT)
    cam = SimulatedCamera(clock, random.Random(3), animal_in_view=lambda t: where["x"], main=(640, 360))
    cam.start()
    background = cam.next_lores()
    assert background is not None
    empty1 = cam.capture_still().jpeg
    where["x"] = 0.5
    animal = cam.capture_still().jpeg
    where["x"] = None
    empty2 = cam.capture_still().jpeg
    assert best_still([empty1, animal, empty2], background.jpeg) == 1
    assert best_still([b"not a jpeg", empty1]) == 1 or len(b"not a jpeg") < len(empty1)
    ranker = BestStill(background.jpeg)
    assert ranker.offer("a", b"garbage") and not ranker.offer("b", b"more garbage")
    assert ranker.offer("c", empty1) and ranker.best_key == "c"
    with pytest.raises(ValueError):
        best_still([])


def test_event_ids_sort_by_time_and_name_files() -> None:
    rng = random.Random(1)
    a = new_event_id(NIGHT, rng)
    b = new_event_id(NIGHT + timedelta(seconds=1), rng)
    assert a.startswith("20261125T140000Z-") and len(a) == 23 and a < b
    assert image_file(a, 7, NIGHT) == f"2026-11-25/{a}-007.jpg"


def test_event_bodies_tell_the_whole_story() -> None:
    event = CaptureEvent(
        "20261125T140000Z-abcdef", UNIT, CAM, "pir", NIGHT, ClockSource.GPS, night=True, pre_trigger_frames=21
    )
    event.pre_trigger_s = 2.04
    start = event.body("start")
    assert start["phase"] == "start" and start["stills"] == 0 and start["pre_trigger"]["seconds"] == 2.04
    still = SavedImage("a" * 32, "2026-11-25/x-021.jpg", 21, "main", NIGHT, 1920, 1080, 350_000)
    event.saved(still)
    update = event.body("update", still)
    assert update["still"]["id"] == "a" * 32 and update["stills"] == 1
    event.failed("OSError: No space left on device")
    event.failed("OSError: No space left on device")
    event.best = still
    event.end(NIGHT + timedelta(seconds=3), "motion_ended")
    end = event.body("end")
    assert end["images_lost"] == 2 and end["lost_reasons"] == ["OSError: No space left on device"]
    assert end["best_image_id"] == "a" * 32 and end["end_reason"] == "motion_ended"
    thumb = thumbnail_body(event, still, b"\xff\xd8jpeg", (320, 180))
    assert base64.b64decode(thumb["jpeg_b64"]) == b"\xff\xd8jpeg" and thumb["width"] == 320
    with pytest.raises(ValueError):
        event.body("new")


# --- the agent --------------------------------------------------------------------------------------


def _config(tmp_path: Path, broker: Any = None, **camera: Any) -> Any:
    settings = {
        "lat": LAT,
        "lon": LON,
        "alt": ALT,
        "id": CAM,
        "backend": "simulated",
        "main_width": 640,
        "main_height": 360,
        "burst_interval_s": 0.2,
        "max_burst": 3,
        "retrigger_interval_s": 0.5,
        "image_dir": str(tmp_path / "images"),
        **camera,
    }
    return parse_config(
        {
            "unit": {"id": UNIT, "site": SITE, "role": "camera"},
            # No broker: a port nobody listens on (discard); the outbox keeps everything.
            "mqtt": {"host": broker.host, "port": broker.port} if broker else {"port": 9},
            "outbox": {"path": str(tmp_path / "outbox.sqlite3")},
            "health": {"interval": 3600},
            "camera": settings,
        }
    )


class LampWitness(SimulatedCamera):
    """The simulated camera, noting whether the IR lamp's pin is high as each still is exposed."""

    lamp_pin: Any = None

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.lamp_at_still: list[bool] = []

    def capture_still(self) -> Frame:
        self.lamp_at_still.append(bool(self.lamp_pin.state))
        return super().capture_still()


def _unit(
    config: Any, clock: Callable[[], datetime], *, animal: Any = None, factory: Any = None, **kw: Any
) -> tuple[CameraUnit, LampWitness, MockFactory]:
    factory = factory or MockFactory()
    cam = config.camera
    camera = LampWitness(
        clock,
        random.Random(5),
        animal_in_view=animal or (lambda t: None),
        main=(cam.main_width, cam.main_height),
        paced=True,
    )
    unit = CameraUnit(config, camera, pin_factory=factory, clock=clock, rng=random.Random(9), **kw)
    camera.lamp_pin = unit.illuminator.pin
    return unit, camera, factory


def _real_time_from(start: datetime) -> Callable[[], datetime]:
    began = time.monotonic()
    return lambda: start + timedelta(seconds=time.monotonic() - began)


def _wait(predicate: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.01)


def _phases(messages: list[Any]) -> list[dict]:
    return [m.json()["data"] for m in messages if m.topic.endswith("/event/capture")]


def test_night_crossing_end_to_end(broker, collect, tmp_path) -> None:
    """A snow leopard crosses at night: PIR edges on mock pins → one event (start, an update per
    still, end) and a thumbnail at the subscriber; JPEGs with correct EXIF; pre-trigger frames
    reaching 2 s back; the IR lamp lit for every still and off after."""
    inbox = collect(broker, f"{TOPICS.base}/{CAM}/event/+")
    config = _config(tmp_path, broker, max_burst=4, retrigger_interval_s=30)
    crossing = Crossing(NIGHT + timedelta(seconds=2.4), 1.2, collar_id=1042)
    scenario = Scenario([crossing], PirModel(fire_at=0.35, hold_s=2.0))
    clock = SimClock(NIGHT)
    unit, camera, factory = _unit(
        config, clock.now, animal=scenario.animal_in_view, clock_source=lambda: ClockSource.GPS
    )
    player = RealTimeScenario(scenario, factory.pin(config.camera.pir_pin), clock)
    unit.start()
    player.start()
    try:
        inbox.wait_until(lambda ms: any(d["phase"] == "end" for d in _phases(ms)), timeout=20)
        inbox.wait_until(lambda ms: any(m.topic.endswith("/thumbnail") for m in ms), timeout=10)
        lamp_after = unit.illuminator.pin.state
    finally:
        player.stop()
        unit.stop()
    messages = inbox.unique()
    for m in messages:
        envelope = decode(m.payload)
        assert envelope.unit == UNIT and envelope.source == CAM and envelope.clock is ClockSource.GPS
    bodies = _phases(messages)
    assert [b["phase"] for b in bodies] == ["start", "update", "update", "update", "update", "end"]
    event_id = bodies[0]["event_id"]
    assert {b["event_id"] for b in bodies} == {event_id}
    end = bodies[-1]
    assert end["stills"] == 4 and end["end_reason"] == "max_stills" and end["night"] is True
    assert end["images_lost"] == 0 and end["illuminator_s"] > 0
    trigger = datetime.fromisoformat(end["start"].replace("Z", "+00:00"))
    assert trigger == crossing.start + timedelta(seconds=0.35 * 1.2)

    # The thumbnail: the same event, a still of it, small, a real JPEG.
    (thumb,) = [m.json()["data"] for m in messages if m.topic.endswith("/event/thumbnail")]
    stills = [i for i in end["images"] if i["stream"] == "main"]
    assert thumb["event_id"] == event_id and thumb["image_id"] == end["best_image_id"]
    assert thumb["image_id"] in {s["id"] for s in stills}
    jpeg = base64.b64decode(thumb["jpeg_b64"])
    assert len(jpeg) == thumb["bytes"] <= 20_000
    assert Image.open(io.BytesIO(jpeg)).size == (thumb["width"], thumb["height"])

    # Every image on the card: whole (hash), EXIF as the sidecar says, unit position, ids.
    root = Path(config.camera.image_dir)
    for image in end["images"]:
        sidecar = verify_capture(root / image["file"])
        tags = read_tags((root / image["file"]).read_bytes())
        assert tags["time"] == sidecar.time and tags["time"].utcoffset() == timedelta(0)
        assert iso_utc(tags["time"]) == image["time"]
        assert tags["gps_time"] == sidecar.time
        assert tags["lat"] == pytest.approx(LAT, abs=1e-6) and tags["lon"] == pytest.approx(LON, abs=1e-6)
        assert tags["alt"] == ALT
        assert (tags["unit_id"], tags["camera_id"], tags["image_id"]) == (UNIT, CAM, image["id"])
        assert sidecar.clock_source is ClockSource.GPS and sidecar.event_id == event_id
        assert sidecar.extra["pre_trigger"] == (image["stream"] == "lores")
        assert unit.find_image(image["id"]) == root / image["file"]

    # Pre-trigger frames: before the trigger, reaching at least 2 s back, no frame missing.
    pre = [i for i in end["images"] if i["stream"] == "lores"]
    times = [datetime.fromisoformat(i["time"].replace("Z", "+00:00")) for i in pre]
    assert end["pre_trigger"]["frames"] == len(pre) >= 15
    assert all(t <= trigger for t in times)
    assert (trigger - times[0]).total_seconds() >= 2.0
    assert max((b - a).total_seconds() for a, b in itertools.pairwise(times)) <= 0.35
    assert [i["index"] for i in end["images"]] == list(range(len(end["images"])))  # pre-trigger first

    # The lamp: on for every still, off afterwards, switched exactly once.
    assert camera.lamp_at_still == [True] * 4
    assert lamp_after is False and unit.illuminator.activations == 1
    assert [s.state for s in factory.pin(config.camera.illuminator_pin).states] == [False, True, False]


def test_day_capture_leaves_the_lamp_off_and_motion_that_outlasts_the_rest_captures_again(tmp_path) -> None:
    config = _config(tmp_path, max_burst=2, retrigger_interval_s=0.3)
    unit, camera, factory = _unit(config, _real_time_from(DAY))
    pir = factory.pin(config.camera.pir_pin)
    unit.start()
    try:
        pir.drive_high()  # an animal that stays in front of the trap
        _wait(lambda: len(unit.completed) >= 2, what="a second event while motion lasts")
        pir.drive_low()
    finally:
        unit.stop()
    first, second = list(unit.completed)[:2]
    assert (first.trigger, second.trigger) == ("pir", "pir-continued")
    assert first.event_id != second.event_id and not first.night and not second.night
    assert first.end_reason == "max_stills" and len(first.stills) == 2
    assert camera.lamp_at_still and not any(camera.lamp_at_still)
    assert unit.illuminator.activations == 0
    assert [s.state for s in factory.pin(config.camera.illuminator_pin).states] == [False]
    assert unit.health()["counters"]["events"] >= 2
    # After a restart the transfer hook still finds every image by its id (from the file names).
    again, _, _ = _unit(config, _real_time_from(DAY))
    try:
        for image in first.images + second.images:
            assert again.find_image(image.image_id) == Path(config.camera.image_dir) / image.file
        assert again.find_image("0" * 32) is None
    finally:
        again.stop()


class FaultyCamera(LampWitness):
    """A camera whose stills fail as told: a CameraError (cable), then any other exception (a bug)."""

    faults: list[Exception]

    def capture_still(self) -> Frame:
        if self.faults:
            raise self.faults.pop(0)
        return super().capture_still()


def test_a_failing_camera_or_a_bug_ends_the_event_and_the_unit_keeps_watching(tmp_path, caplog) -> None:
    config = _config(tmp_path, retrigger_interval_s=0.0)
    factory = MockFactory()
    clock = _real_time_from(NIGHT)
    camera = FaultyCamera(clock, random.Random(5), main=(320, 240), paced=True)
    camera.faults = [CameraError("ribbon cable loose"), RuntimeError("a bug")]
    unit = CameraUnit(config, camera, pin_factory=factory, clock=clock)
    camera.lamp_pin = unit.illuminator.pin
    unit.start()
    try:
        for n in range(1, 4):
            _wait(lambda n=n: len(unit.completed) >= n or unit.trigger(), what=f"event {n}")
    finally:
        unit.stop()
    reasons = [e.end_reason for e in unit.completed]
    assert reasons == ["camera_error", "internal_error", "motion_ended"]
    assert unit.completed[0].lost_reasons == ["camera: ribbon cable loose"]
    assert len(unit.completed[2].stills) == 1 and unit.counters["internal_errors"] == 1
    assert factory.pin(config.camera.illuminator_pin).state is False
    assert "a bug" in caplog.text


class CardOf:
    """Free space of an image card of `capacity` bytes, from the files really on it."""

    def __init__(self, root: Path, capacity: int) -> None:
        self.root, self.capacity = root, capacity

    def used(self) -> int:
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())

    def __call__(self, path: Path) -> Any:
        return type("Usage", (), {"free": self.capacity - self.used()})()


def test_a_full_card_never_stops_the_unit(broker, collect, tmp_path, caplog) -> None:
    """Saving fails outright (the day's folder cannot be made), then the card runs short: the unit
    keeps capturing, says what it lost, deletes relayed images first and unrelayed ones only below
    the hard limit, and every message reaches the broker in order."""
    caplog.set_level(logging.INFO)
    inbox = collect(broker, f"{TOPICS.base}/{CAM}/event/+")  # capture and thumbnail share one seq
    config = _config(tmp_path, broker, max_burst=2, low_free_mb=1.0, hard_free_mb=0.5)
    root = Path(config.camera.image_dir)
    root.mkdir(parents=True)
    card = CardOf(root, 10**9)
    unit, _, _ = _unit(config, _real_time_from(NIGHT), disk_usage=card)
    blocker = root / NIGHT.strftime("%Y-%m-%d")
    blocker.write_text("not a folder")  # every save of tonight fails with a real OSError

    def ends() -> list[dict]:
        return [d for d in _phases(inbox.messages) if d["phase"] == "end"]

    unit.start()
    try:
        time.sleep(2.3)  # a full pre-trigger buffer
        unit.trigger()
        inbox.wait_until(lambda ms: len(ends()) == 1, timeout=15)
        blocker.unlink()
        # The rest after a burst turns triggers away for a while: trigger until one starts (a trigger
        # that lands while it runs is part of it, never a second event).
        _wait(lambda: unit.counters["events"] >= 2 or unit.trigger(), what="an event after the failure")
        inbox.wait_until(lambda ms: len(ends()) == 2, timeout=15)
        second = ends()[1]
        relayed = second["best_image_id"]
        assert unit.mark_relayed(relayed)
        before = {i["file"] for i in second["images"]}
        card.capacity = card.used() + 600_000  # 0.6 MB free: below the low mark, above the hard limit
        _wait(lambda: unit.counters["events"] >= 3 or unit.trigger(), what="an event on a nearly full card")
        inbox.wait_until(lambda ms: len(ends()) == 3, timeout=15)
        _wait(lambda: unit.store.deleted_unrelayed > 0, what="the clean-up after it")
    finally:
        unit.stop()
    first, second, third = ends()
    assert first["stills"] == 0 and first["images_lost"] >= 20 and first["images"] == []
    assert any("File exists" in r or "Not a directory" in r for r in first["lost_reasons"])
    # A manual trigger with the PIR quiet: one still (more only while the PIR sees motion).
    assert second["images_lost"] == 0 and third["images_lost"] == 0 and third["stills"] == 1
    assert unit.find_image(relayed) is None  # relayed: deleted first
    still_there = {f for f in before if (root / f).exists()}
    oldest = min(before)
    assert oldest not in still_there and still_there != before  # then the oldest unrelayed, logged
    assert all((root / i["file"]).exists() for i in third["images"])  # only as many as needed
    assert any("NOT yet relayed" in r.getMessage() for r in caplog.records)
    assert card(root).free >= 500_000
    payloads = [m.json() for m in inbox.unique()]
    assert [p["seq"] for p in payloads] == list(range(1, len(payloads) + 1))  # nothing lost, in order


CHILD = textwrap.dedent(
    """
    import os, sys
    from gpiozero.pins.mock import MockFactory, MockPin
    from edge.config import load_config
    from simulators.scenario import Scenario
    from uncia.commands.camera import build_unit, serve

    config_path, scenario_path, record = sys.argv[1:4]

    class RecordingPin(MockPin):
        # Every level the agent sets, appended to a file the test reads from outside.
        def _set_state(self, value):
            super()._set_state(value)
            fd = os.open(record, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            os.write(fd, f"{self.info.name} {int(bool(value))}\\n".encode())
            os.close(fd)

    unit, player = build_unit(
        load_config(config_path), scenario=Scenario.from_file(scenario_path),
        pin_factory=MockFactory(pin_class=RecordingPin), start_before_s=0.6,
    )
    sys.exit(serve(unit, player))
    """
)


def _lamp_lines(record: Path) -> list[str]:
    return [line for line in record.read_text().splitlines() if line.startswith(("GPIO23", "restart"))]


def test_ir_lamp_after_a_crash_and_at_the_next_start(tmp_path) -> None:
    """kill -9 mid-capture leaves the lamp's line where it was: no software runs after SIGKILL
    (the hardware gate pull-down and systemd's ExecStopPost cover that). What software can do, it
    does: the next start drives the line low before anything else, and SIGTERM switches it off."""
    config_file = tmp_path / "cam.toml"
    config_file.write_text(
        textwrap.dedent(
            f"""
            [unit]
            id = "{UNIT}"
            site = "{SITE}"
            [mqtt]
            port = 9
            [outbox]
            path = "{tmp_path / "outbox.sqlite3"}"
            [camera]
            lat = {LAT}
            lon = {LON}
            backend = "simulated"
            main_width = 320
            main_height = 240
            burst_interval_s = 0.2
            max_burst = 100
            image_dir = "{tmp_path / "images"}"
            """
        )
    )
    scenario_file = tmp_path / "night.toml"
    scenario_file.write_text(
        f"[pir]\nfire_at = 0.0\nhold_s = 60\n\n[[crossing]]\nstart = {NIGHT.isoformat()}\nduration_s = 2.0\n"
    )
    record = tmp_path / "pins.log"

    def start() -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-c", CHILD, str(config_file), str(scenario_file), str(record)],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )

    def lamp_lit_after(mark: int) -> bool:
        return record.exists() and "GPIO23 1" in _lamp_lines(record)[mark:]

    child = start()
    try:
        _wait(lambda: lamp_lit_after(0), timeout=20, what="the lamp lit by a night capture")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    assert _lamp_lines(record)[-1] == "GPIO23 1"  # left lit: only hardware and systemd help here

    with record.open("a") as f:
        f.write("restart\n")
    mark = len(_lamp_lines(record))
    child = start()
    try:
        _wait(lambda: len(_lamp_lines(record)) > mark, timeout=20, what="the next start")
        assert _lamp_lines(record)[mark] == "GPIO23 0"  # the first thing it does: lamp off
        _wait(lambda: lamp_lit_after(mark), timeout=20, what="the next night capture")
    finally:
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=20)
    assert child.returncode == 0, err.decode()
    after = _lamp_lines(record)[mark:]
    assert after[0] == "GPIO23 0" and after[-1] == "GPIO23 0" and "GPIO23 1" in after


# --- the command and the benchmark ------------------------------------------------------------------


def _write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def test_uncia_camera_check_and_config_errors(tmp_path, capsys) -> None:
    good = _write(
        tmp_path / "cam.toml",
        f"""
        [unit]
        id = "{UNIT}"
        site = "{SITE}"
        [camera]
        lat = {LAT}
        lon = {LON}
        backend = "simulated"
        image_dir = "{tmp_path / "images"}"
        """,
    )
    assert main(["camera", "--check", "-c", str(good)]) == 0
    out = capsys.readouterr().out
    assert "camera cam0: simulated" in out and "PIR GPIO17, IR lamp GPIO23" in out and "config OK" in out
    assert main(["camera", "--check", "-c", str(REPO / "deploy" / "camera.example.toml")]) == 0
    assert "imx708_noir.json" in capsys.readouterr().out

    no_camera = _write(tmp_path / "gw.toml", f'[unit]\nid = "{UNIT}"\nsite = "{SITE}"\n')
    assert main(["camera", "-c", str(no_camera)]) == 3
    assert "'camera'" in capsys.readouterr().err
    bad = _write(tmp_path / "bad.toml", good.read_text().replace("backend", "pre_trigger_s = 1\nbackend"))
    assert main(["camera", "-c", str(bad)]) == 3
    assert "camera.pre_trigger_s" in capsys.readouterr().err
    pi = _write(
        tmp_path / "pi.toml",
        good.read_text().replace('"simulated"', '"picamera2"')
        + f'[outbox]\npath = "{tmp_path / "outbox.sqlite3"}"\n',
    )
    scenario = _write(tmp_path / "s.toml", "[pir]\nhold_s = 1\n")
    assert main(["camera", "-c", str(pi), "--scenario", str(scenario)]) == 3
    assert "camera.backend" in capsys.readouterr().err


def test_uncia_camera_runs_a_simulated_unit(tmp_path, capsys) -> None:
    config = _write(
        tmp_path / "cam.toml",
        f"""
        [unit]
        id = "{UNIT}"
        site = "{SITE}"
        [mqtt]
        port = 9
        [outbox]
        path = "{tmp_path / "outbox.sqlite3"}"
        [camera]
        lat = {LAT}
        lon = {LON}
        backend = "simulated"
        main_width = 320
        main_height = 240
        image_dir = "{tmp_path / "images"}"
        """,
    )
    before = signal.getsignal(signal.SIGTERM)
    assert main(["camera", "-c", str(config), "--duration", "0.3", "--seed", "1"]) == 0
    assert signal.getsignal(signal.SIGTERM) == before  # the command's handlers are gone again
    assert (tmp_path / "outbox.sqlite3").exists() and (tmp_path / "images").is_dir()


@pytest.mark.slow
def test_benchmark_runs_and_ends_with_json() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.camera_trigger", "--quick", "--triggers", "4", "--naive", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) >= 2, "figures as text come before the JSON line"
    figures = json.loads(lines[-1])
    assert {
        "triggers",
        "first_still_p50_ms",
        "first_still_p99_ms",
        "software_p99_ms",
        "pre_trigger_min_s",
        "naive_first_still_p50_ms",
    } <= figures.keys()
    assert figures["triggers"] == 4


def test_the_full_image_behind_a_thumbnail_reaches_the_station(broker, collect, tmp_path) -> None:
    inbox = collect(broker, f"{TOPICS.base}/{CAM}/event/+")
    config = _config(tmp_path, broker, max_burst=2, retrigger_interval_s=30)
    scenario = Scenario([Crossing(NIGHT + timedelta(seconds=2.4), 1.0)], PirModel(fire_at=0.35, hold_s=1.5))
    clock = SimClock(NIGHT)
    unit, _camera, factory = _unit(config, clock.now, animal=scenario.animal_in_view)
    player = RealTimeScenario(scenario, factory.pin(config.camera.pir_pin), clock)
    station = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="station-fetcher")
    station.connect(broker.host, broker.port)
    station.loop_start()
    unit.start()
    player.start()
    try:
        inbox.wait_until(lambda ms: any(m.topic.endswith("/thumbnail") for m in ms), timeout=20)
        (thumb,) = [m.json()["data"] for m in inbox.messages if m.topic.endswith("/event/thumbnail")]
        fetcher = ImageFetcher(station, SITE, tmp_path / "station")
        path = fetcher.fetch(UNIT, thumb["image_id"], timeout=30)
        fetcher.close()
    finally:
        player.stop()
        unit.stop()
        station.loop_stop()
        station.disconnect()
    original = Path(config.camera.image_dir)
    (end,) = [d for d in _phases(inbox.unique()) if d["phase"] == "end"]
    (best,) = [i for i in end["images"] if i["id"] == thumb["image_id"]]
    expected = (original / best["file"]).read_bytes()
    assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(expected).digest()


def test_station_pauses_and_resumes_a_camera_and_asks_for_a_picture(broker, collect, tmp_path) -> None:
    """capture_mode paused: PIR edges start nothing (counted); normal again: they do; capture: a
    manual picture now. All as commands with correlation ids, answered on …/response."""
    responses = collect(broker, f"{TOPICS.base}/unit/command/+/response")
    config = _config(tmp_path, broker, max_burst=1, retrigger_interval_s=0.2)
    unit, _camera, factory = _unit(config, _real_time_from(DAY))
    pir = factory.pin(config.camera.pir_pin)
    sender = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="station-commands")
    sender.connect(broker.host, broker.port)
    sender.loop_start()

    def ask(name: str, body: dict) -> dict:
        # As the station does: ask again (same id) until answered; the unit's subscription may still
        # be on its way right after it connects, and a repeated id is answered once.
        def answered(ms: list[Any]) -> bool:
            return any(json.loads(m.payload)["data"]["id"] == body["id"] for m in ms)

        for _ in range(15):
            sender.publish(TOPICS.command(name), json.dumps(body).encode(), qos=1).wait_for_publish(10)
            try:
                responses.wait_until(answered, timeout=1.0)
                break
            except TimeoutError:
                continue
        responses.wait_until(answered)
        return next(
            d for m in responses.messages for d in [json.loads(m.payload)["data"]] if d["id"] == body["id"]
        )

    unit.start()
    try:
        _wait(lambda: unit.relay.online, what="the unit to be online (its commands subscribed)")
        assert ask("capture_mode", {"id": "m1", "mode": "paused"})["mode"] == "paused"
        pir.drive_high()
        time.sleep(0.3)
        pir.drive_low()
        _wait(lambda: unit.counters["paused_triggers"] >= 1, what="the PIR edge to be turned away")
        assert not unit.completed
        bad = ask("capture_mode", {"id": "m2", "mode": "sleepy"})
        assert bad["status"] == "bad_request" and "normal" in bad["message"]
        taken = ask("capture", {"id": "m3"})  # a manual picture works even while paused
        assert taken["status"] == "ok"
        _wait(lambda: len(unit.completed) == 1, what="the manual picture")
        assert ask("capture_mode", {"id": "m4", "mode": "normal"})["mode"] == "normal"
        time.sleep(0.5)  # past the rest after the manual picture
        pir.drive_high()
        _wait(lambda: len(unit.completed) == 2, what="a PIR event once resumed")
        pir.drive_low()
    finally:
        sender.disconnect()
        sender.loop_stop()
        unit.stop()
    assert [e.trigger for e in unit.completed] == ["manual", "pir"]
