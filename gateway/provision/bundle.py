"""Writing what provisioning made: into a mounted boot partition, a folder, or a .tar.gz bundle.

Secrets (passwords, private keys, the broker's password file) are created with mode 0600 from the
first byte, in a folder and as tar members alike, and the archive itself is 0600. Nothing here
prints or logs file contents; the progress bar shows file counts only.

A boot partition is recognised by its ``cmdline.txt``: the unit's tree goes to its root, the
first-boot hook is appended to ``cmdline.txt`` (a copy of the original is kept as
``cmdline.txt.uncia-orig``), and a ``firstrun.sh`` written by Raspberry Pi Imager is kept as
``firstrun-imager.sh`` and run first.
"""

from __future__ import annotations

import contextlib
import io
import os
import tarfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from gateway.provision.firstboot import FIRSTRUN_MARKER, IMAGER_FIRSTRUN, add_hook


class BundleError(OSError):
    """The output cannot be written; the message says where and why."""


@dataclass(frozen=True)
class BundleFile:
    """One file of a bundle: `path` is relative (POSIX) to the tree's root."""

    path: str
    data: bytes
    mode: int = 0o644
    secret: bool = False

    def __post_init__(self) -> None:
        parts = PurePosixPath(self.path).parts
        if not parts or self.path.startswith("/") or ".." in parts:
            raise ValueError(f"bundle path {self.path!r} must be relative and stay inside the bundle")
        if self.secret and self.mode & 0o077:
            raise ValueError(f"secret {self.path} must not be readable by group or others")


@dataclass(frozen=True)
class Tree:
    """The files of one destination: a unit's boot partition, or a person's credentials."""

    name: str  # the folder (or tar prefix) when several trees are written together
    files: tuple[BundleFile, ...]
    boot: bool = True  # a unit tree, which may go onto a boot partition


def is_boot_partition(folder: Path) -> bool:
    return (folder / "cmdline.txt").is_file()


@contextmanager
def _progress(console: Console | None, total: int, what: str) -> Iterator[Progress]:
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=console or Console(stderr=True),
        transient=False,
    )
    with progress:
        progress.add_task(what, total=total)
        yield progress


def _write_file(path: Path, item: BundleFile) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    if tmp.exists():
        tmp.unlink()
    # The mode is set at creation: a secret is never readable by others, not even for a moment.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, item.mode)
    with os.fdopen(fd, "wb") as out:
        out.write(item.data)
        out.flush()
        os.fsync(out.fileno())
    # The umask may have taken bits from a non-secret's mode (an executable script, say). A FAT boot
    # partition refuses chmod: there modes mean nothing anyway, which is why first boot moves the
    # secrets off it.
    with contextlib.suppress(PermissionError):
        os.chmod(tmp, item.mode)
    os.replace(tmp, path)


def _boot_extras(folder: Path) -> list[BundleFile]:
    """cmdline.txt with the hook; Imager's own firstrun.sh kept to run first."""
    extras: list[BundleFile] = []
    cmdline = folder / "cmdline.txt"
    original = cmdline.read_text()
    backup = folder / "cmdline.txt.uncia-orig"
    if not backup.exists():
        extras.append(BundleFile("cmdline.txt.uncia-orig", original.encode()))
    extras.append(BundleFile("cmdline.txt", add_hook(original).encode()))
    firstrun = folder / "firstrun.sh"
    if firstrun.exists() and FIRSTRUN_MARKER not in firstrun.read_text(errors="replace"):
        extras.append(BundleFile(IMAGER_FIRSTRUN, firstrun.read_bytes(), 0o755))
    return extras


def write_folder(folder: Path, trees: list[Tree], *, console: Console | None = None) -> list[Path]:
    """Write the trees into `folder`; returns the roots written.

    A boot partition takes exactly one unit tree, at its root. Any other folder gets one sub-folder
    per tree (``<folder>/<name>/``), to be copied onto each unit's boot partition later.
    """
    folder = Path(folder)
    boot = is_boot_partition(folder)
    if boot and (len(trees) != 1 or not trees[0].boot):
        names = ", ".join(t.name for t in trees)
        raise BundleError(
            f"{folder} is a boot partition (it has cmdline.txt): it takes one unit, but this run makes "
            f"{names}; choose one with --unit ID"
        )
    plan: list[tuple[Path, BundleFile]] = []
    for tree in trees:
        root = folder if boot else folder / tree.name
        files = list(tree.files) + (_boot_extras(folder) if boot else [])
        plan += [(root / item.path, item) for item in files]
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not boot:  # nobody else may even look into a unit's folder (FAT has no modes to set)
            for tree in trees:
                (folder / tree.name).mkdir(mode=0o700, exist_ok=True)
                os.chmod(folder / tree.name, 0o700)
        with _progress(console, len(plan), f"writing {folder}") as progress:
            for path, item in plan:
                _write_file(path, item)
                progress.advance(progress.task_ids[0])
    except OSError as exc:
        raise BundleError(f"cannot write {exc.filename or folder}: {exc.strerror}") from exc
    return [folder] if boot else [folder / t.name for t in trees]


def write_tar(target: Path, trees: list[Tree], *, console: Console | None = None) -> Path:
    """Write every tree under ``<name>/`` into a gzip tar; the archive and its secrets are 0600."""
    target = Path(target)
    items = [(f"{tree.name}/{item.path}", item) for tree in trees for item in tree.files]
    now = int(time.time())
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            tmp.unlink()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            with _progress(console, len(items), f"writing {target.name}") as progress:
                for directory in _directories(name for name, _ in items):
                    tar.addfile(_member(directory, 0o700, now, tarfile.DIRTYPE))
                for name, item in items:
                    info = _member(name, item.mode, now, tarfile.REGTYPE)
                    info.size = len(item.data)
                    tar.addfile(info, io.BytesIO(item.data))
                    progress.advance(progress.task_ids[0])
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        raise BundleError(f"cannot write {target}: {exc.strerror or exc}") from exc
    return target


def _member(name: str, mode: int, mtime: int, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = mtime
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def _directories(names: Iterable[str]) -> list[str]:
    found: set[str] = set()
    for name in names:
        parent = PurePosixPath(name).parent
        while str(parent) not in (".", ""):
            found.add(str(parent))
            parent = parent.parent
    return sorted(found)
