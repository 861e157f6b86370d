"""Sidecars: what they record, and that an image and its sidecar are never seen half-written."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PIL import Image

from edge.camera.backend import Frame
from edge.camera.exif import Position, read_tags, write_exif
from edge.camera.sidecar import (
    Sidecar,
    SidecarError,
    atomic_write,
    read_sidecar,
    recover_directory,
    verify_capture,
    write_capture,
)
from edge.camera.simulated import SimulatedCamera
from edge.fix import ClockSource

T = datetime(2026, 11, 25, 22, 5, 1, 300_000, tzinfo=UTC)
SITE = Position(38.8432, 105.9101, 2350.0)


def still() -> Frame:
    cam = SimulatedCamera(lambda: T, random.Random(5), main=(480, 270), animal_in_view=lambda t: 0.6)
    cam.start()
    return cam.capture_still()


def describe(jpeg: bytes, frame: Frame, name: str = "E42-000.jpg", index: int = 0) -> Sidecar:
    return Sidecar.describe(
        jpeg,
        frame,
        image=name,
        event_id="E42",
        index=index,
        clock_source=ClockSource.GPS,
        unit_id="helan-07",
        trigger="pir",
        position=SITE,
        extra={"pir_pin": 17},
    )


def test_write_and_read_back(tmp_path: Path) -> None:
    frame = still()
    jpeg = write_exif(frame.jpeg, time=frame.time, unit_id="helan-07", position=SITE)
    sidecar = describe(jpeg, frame)
    image_path, json_path = write_capture(tmp_path, jpeg, sidecar)
    assert image_path == tmp_path / "E42-000.jpg" and json_path == tmp_path / "E42-000.json"
    assert image_path.read_bytes() == jpeg and read_tags(image_path.read_bytes())["unit_id"] == "helan-07"
    assert verify_capture(image_path) == sidecar == read_sidecar(json_path)
    data = json.loads(json_path.read_text())
    assert data["schema"] == 1 and data["time"] == "2026-11-25T22:05:01.300Z"
    assert data["clock_source"] == "gps" and data["trigger"] == "pir" and data["camera_id"] == "helan-07"
    assert data["image"]["stream"] == "main" and data["image"]["width"] == 480
    assert data["image"]["frame_index"] == frame.index and data["image"]["bytes"] == len(jpeg)
    assert data["position"] == {"lat": 38.8432, "lon": 105.9101, "alt": 2350.0}
    assert data["exposure"]["exposure_us"] > 0 and data["extra"] == {"pir_pin": 17}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["E42-000.jpg", "E42-000.json"]  # no temp left


def test_refuses_to_overwrite_or_to_save_bytes_it_does_not_describe(tmp_path: Path) -> None:
    frame = still()
    sidecar = describe(frame.jpeg, frame)
    write_capture(tmp_path, frame.jpeg, sidecar)
    with pytest.raises(SidecarError, match="already exists"):
        write_capture(tmp_path, frame.jpeg, sidecar)
    with pytest.raises(SidecarError, match="hash differs"):
        write_capture(tmp_path, frame.jpeg + b"\x00", describe(frame.jpeg, frame, "E42-001.jpg", 1))
    with pytest.raises(SidecarError, match="plain file name"):
        write_capture(tmp_path, frame.jpeg, describe(frame.jpeg, frame, "../escape.jpg"))


def test_damage_and_missing_sidecars_are_reported(tmp_path: Path) -> None:
    frame = still()
    image_path, json_path = write_capture(tmp_path, frame.jpeg, describe(frame.jpeg, frame))
    damaged = bytearray(frame.jpeg)
    damaged[len(damaged) // 2] ^= 0xFF
    image_path.write_bytes(bytes(damaged))
    with pytest.raises(SidecarError, match="SHA-256"):
        verify_capture(image_path)
    json_path.write_text("{not json")
    with pytest.raises(SidecarError, match="unreadable sidecar"):
        verify_capture(image_path)
    json_path.write_text(json.dumps({"schema": 1, "event_id": "E1"}))
    with pytest.raises(SidecarError, match="missing or has a bad field"):
        read_sidecar(json_path)
    json_path.write_text(json.dumps({"schema": 99}))
    with pytest.raises(SidecarError, match="schema 99"):
        read_sidecar(json_path)
    json_path.unlink()
    with pytest.raises(SidecarError, match="not completed"):
        verify_capture(image_path)


def test_failed_write_leaves_neither_temp_nor_target(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        atomic_write(tmp_path / "x.jpg", "not bytes")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_recover_removes_temp_files_and_lists_orphan_images(tmp_path: Path) -> None:
    frame = still()
    write_capture(tmp_path, frame.jpeg, describe(frame.jpeg, frame))
    (tmp_path / ".E42-001.jpg.abc123.tmp").write_bytes(frame.jpeg[:1000])
    atomic_write(tmp_path / "E42-002.jpg", frame.jpeg)  # power cut before its sidecar
    found = recover_directory(tmp_path)
    assert [p.name for p in found.removed] == [".E42-001.jpg.abc123.tmp"]
    assert [p.name for p in found.orphans] == ["E42-002.jpg"]
    assert not (tmp_path / ".E42-001.jpg.abc123.tmp").exists()


WRITER = """
import random, sys
from datetime import UTC, datetime
from pathlib import Path
from edge.camera.sidecar import Sidecar, write_capture
from edge.camera.simulated import SimulatedCamera
from edge.fix import ClockSource
directory, start = Path(sys.argv[1]), int(sys.argv[2])
cam = SimulatedCamera(lambda: datetime(2026, 11, 25, tzinfo=UTC), random.Random(start), main=(1280, 720))
cam.start()
frame = cam.capture_still()
print("ready", flush=True)
for i in range(start, start + 100_000):
    jpeg = frame.jpeg + bytes(i % 251 for _ in range(i % 4096))  # every file different in length and hash
    sidecar = Sidecar.describe(jpeg, frame, image=f"E{i:06d}.jpg", event_id=f"E{i}", index=0,
                               clock_source=ClockSource.UNSYNCED, unit_id="u1", trigger="test")
    write_capture(directory, jpeg, sidecar)
"""


def test_killed_mid_write_never_leaves_a_half_written_image_or_sidecar(tmp_path: Path) -> None:
    """SIGKILL a writer at random moments: under their final names, files are whole or absent.

    (A kill is not a power cut: the page cache survives it. The fsyncs cover the power cut; this
    covers the renames, i.e. that nothing is ever written in place.)
    """
    rng = random.Random(8)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    for round_ in range(4):
        child = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path), str(round_ * 10_000)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.25))
        child.send_signal(signal.SIGKILL)
        child.wait()
    found = recover_directory(tmp_path)
    images = sorted(tmp_path.glob("*.jpg"))
    assert len(images) > 4, "the writer should have saved some captures before each kill"
    assert len(found.orphans) <= 4  # at most one per kill: the image written, its sidecar not yet
    for image in images:
        if image in found.orphans:
            Image.open(image).load()  # whole: a cut-off JPEG would fail to decode
        else:
            verify_capture(image)  # sidecar present: the image matches its hash exactly
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
