"""The JSON sidecar beside each saved image, and the power-cut-safe way to write the pair.

Every image a unit saves, ``<stem>.jpg``, gets ``<stem>.json`` beside it: which event and which
capture of it, when (and how trustworthy that time is: `edge.fix.ClockSource`), where the unit stands,
which unit and camera, what triggered it, how the sensor exposed it, and the SHA-256 of the image
bytes exactly as written (EXIF included), so a copy can be checked anywhere.

Power cuts: both files are written to a temporary name in the same directory, flushed to the card
(fsync), renamed over the final name, and the directory entry flushed too; the image first, then the
sidecar. So a file under its final name is never half-written, and a sidecar present means its image
is complete: the sidecar is the commit mark of the pair. After a cut there may be temp files (removed
by `recover_directory`) and an image without sidecar, which is whole and still carries its EXIF time,
place and ids (listed as an orphan for the agent to deal with).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from edge.camera.backend import Exposure, Frame, Stream
from edge.camera.exif import Position
from edge.fix import ClockSource, iso_utc

SCHEMA = 1
_TEMP_SUFFIX = ".tmp"


class SidecarError(ValueError):
    """A sidecar is missing, unreadable or does not match its image; the message names the file."""


@dataclass(frozen=True, slots=True)
class Sidecar:
    """What is known about one saved image. See the module docstring for the file layout.

    ``index`` is the capture's number within its event (0 first, pre-trigger frames included);
    ``frame_index`` the camera's sensor frame count (`Frame.index`). ``trigger`` says what started the
    event: ``"pir"``, ``"motion"``, ``"manual"``, ``"schedule"``, ``"test"``.
    """

    event_id: str
    index: int
    time: datetime
    clock_source: ClockSource
    unit_id: str
    camera_id: str
    trigger: str
    image: str  # file name of the image, in the same directory
    sha256: str
    size: int  # bytes
    width: int
    height: int
    stream: Stream
    frame_index: int | None = None
    position: Position | None = None
    exposure: Exposure | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # agent-specific fields, kept as they are

    @classmethod
    def describe(
        cls,
        jpeg: bytes,
        frame: Frame,
        *,
        image: str,
        event_id: str,
        index: int,
        clock_source: ClockSource,
        unit_id: str,
        trigger: str,
        camera_id: str | None = None,
        position: Position | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Sidecar:
        """The sidecar for `jpeg` (the bytes to be saved, EXIF included) taken as `frame`."""
        return cls(
            event_id=event_id,
            index=index,
            time=frame.time,
            clock_source=ClockSource(clock_source),
            unit_id=unit_id,
            camera_id=unit_id if camera_id is None else camera_id,
            trigger=trigger,
            image=image,
            sha256=hashlib.sha256(jpeg).hexdigest(),
            size=len(jpeg),
            width=frame.width,
            height=frame.height,
            stream=frame.stream,
            frame_index=frame.index,
            position=position,
            exposure=frame.exposure,
            extra=dict(extra or {}),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; ``time`` as ISO 8601 UTC with milliseconds."""
        return {
            "schema": SCHEMA,
            "event_id": self.event_id,
            "index": self.index,
            "time": iso_utc(self.time),
            "clock_source": str(self.clock_source),
            "unit_id": self.unit_id,
            "camera_id": self.camera_id,
            "trigger": self.trigger,
            "image": {
                "file": self.image,
                "sha256": self.sha256,
                "bytes": self.size,
                "width": self.width,
                "height": self.height,
                "stream": self.stream,
                "frame_index": self.frame_index,
            },
            "position": None if self.position is None else self.position.to_dict(),
            "exposure": None if self.exposure is None else self.exposure.to_dict(),
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Sidecar:
        """Inverse of `to_dict`; raises `SidecarError` naming what is missing or wrong."""
        try:
            if data.get("schema") != SCHEMA:
                raise SidecarError(
                    f"sidecar schema {data.get('schema')!r}: this software reads schema {SCHEMA}"
                )
            image = data["image"]
            position = data.get("position")
            exposure = data.get("exposure")
            return cls(
                event_id=data["event_id"],
                index=data["index"],
                time=datetime.fromisoformat(data["time"].replace("Z", "+00:00")),
                clock_source=ClockSource(data["clock_source"]),
                unit_id=data["unit_id"],
                camera_id=data["camera_id"],
                trigger=data["trigger"],
                image=image["file"],
                sha256=image["sha256"],
                size=image["bytes"],
                width=image["width"],
                height=image["height"],
                stream=image["stream"],
                frame_index=image.get("frame_index"),
                position=None if position is None else Position(**position),
                exposure=None if exposure is None else Exposure(**exposure),
                extra=data.get("extra") or {},
            )
        except SidecarError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise SidecarError(f"sidecar is missing or has a bad field: {exc!r}") from exc

    def to_json(self) -> bytes:
        return (json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n").encode()


def sidecar_path(image_path: Path) -> Path:
    """``.../E42-003.jpg`` -> ``.../E42-003.json``."""
    return image_path.with_suffix(".json")


def write_capture(directory: Path, jpeg: bytes, sidecar: Sidecar) -> tuple[Path, Path]:
    """Save `jpeg` as ``directory / sidecar.image`` and its sidecar beside it, power-cut safe.

    Refuses (`SidecarError`) to overwrite an existing image or a sidecar whose hash does not match
    `jpeg`. Returns (image path, sidecar path).
    """
    if hashlib.sha256(jpeg).hexdigest() != sidecar.sha256 or len(jpeg) != sidecar.size:
        raise SidecarError(f"sidecar for {sidecar.image} does not describe these bytes (hash differs)")
    if Path(sidecar.image).name != sidecar.image or sidecar.image.endswith((".json", _TEMP_SUFFIX)):
        raise SidecarError(f"image name {sidecar.image!r}: expected a plain file name such as E42-003.jpg")
    image_path = Path(directory) / sidecar.image
    json_path = sidecar_path(image_path)
    for path in (image_path, json_path):
        if path.exists():
            raise SidecarError(f"{path} already exists: capture names must be unique (event id + index)")
    atomic_write(image_path, jpeg)
    atomic_write(json_path, sidecar.to_json())
    return image_path, json_path


def read_sidecar(path: Path) -> Sidecar:
    """Load a sidecar file; `SidecarError` if it is missing or not a valid sidecar."""
    try:
        data = json.loads(Path(path).read_bytes())
    except FileNotFoundError as exc:
        raise SidecarError(f"{path}: no sidecar (the capture was not completed)") from exc
    except (OSError, ValueError) as exc:
        raise SidecarError(f"{path}: unreadable sidecar: {exc}") from exc
    if not isinstance(data, dict):
        raise SidecarError(f"{path}: a sidecar is a JSON object")
    try:
        return Sidecar.from_dict(data)
    except SidecarError as exc:
        raise SidecarError(f"{path}: {exc}") from exc


def verify_capture(image_path: Path) -> Sidecar:
    """The image's sidecar, after checking that the image bytes still match its hash."""
    image_path = Path(image_path)
    sidecar = read_sidecar(sidecar_path(image_path))
    try:
        digest = hashlib.sha256(image_path.read_bytes()).hexdigest()
    except OSError as exc:
        raise SidecarError(f"{image_path}: image unreadable: {exc}") from exc
    if digest != sidecar.sha256:
        raise SidecarError(f"{image_path}: image does not match its sidecar's SHA-256 (damaged or replaced)")
    return sidecar


@dataclass(frozen=True, slots=True)
class Recovery:
    """What `recover_directory` found: temp files it removed, and whole images lacking a sidecar."""

    removed: list[Path]
    orphans: list[Path]


def recover_directory(directory: Path) -> Recovery:
    """Tidy a capture directory after a crash or power cut (call at agent start-up)."""
    directory = Path(directory)
    removed, orphans = [], []
    for path in sorted(directory.iterdir()):
        if path.name.startswith(".") and path.name.endswith(_TEMP_SUFFIX):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            removed.append(path)
        elif path.suffix.lower() in (".jpg", ".jpeg") and not sidecar_path(path).exists():
            orphans.append(path)
    if removed:
        _fsync_dir(directory)
    return Recovery(removed, orphans)


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that `path` holds either nothing (or its old content) or all of it.

    Temp file in the same directory (a rename is only atomic within one file system), fsync of the
    data, rename, fsync of the directory so the rename itself survives a power cut.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=_TEMP_SUFFIX, dir=path.parent)
    try:
        try:
            os.fchmod(fd, 0o644)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
