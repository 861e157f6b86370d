"""The image store's watermarks on real files: relayed first, oldest first, unrelayed only below the
hard limit, every deletion logged, the index surviving restarts, damage and a full card.

Free space comes from `FakeDisk`, the hardware edge: a card of a given capacity whose used space is
the real files the camera wrote under the root (the store's own index is left out, so the figures in
the tests stay round). The last test fills a real, tiny tmpfs instead (root only)."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.storage import INDEX_NAME, ImageStore, StoreError

T0 = datetime(2026, 11, 25, 21, 0, tzinfo=UTC)


class FakeDisk:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity

    def __call__(self, root: Path) -> SimpleNamespace:
        used = sum(
            p.stat().st_size
            for p in Path(root).rglob("*")
            if p.is_file() and not p.name.startswith(INDEX_NAME)
        )
        return SimpleNamespace(total=self.capacity, used=used, free=self.capacity - used)


class StepClock:
    def __init__(self, step_s: float = 60.0) -> None:
        self.now, self.step = T0, timedelta(seconds=step_s)

    def __call__(self) -> datetime:
        self.now += self.step
        return self.now


def _write(root: Path, name: str, size: int) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xff" * size)
    return path


def _store(root: Path, capacity: int, low: int, hard: int, **kw: object) -> ImageStore:
    return ImageStore(
        root,
        low_free_bytes=low,
        hard_free_bytes=hard,
        disk_usage=FakeDisk(capacity),
        **{"clock": StepClock(), **kw},  # type: ignore[arg-type]
    )


def _names(deletions: list) -> list[str]:  # type: ignore[type-arg]
    return [d.path.name for d in deletions]


def test_nothing_is_deleted_above_the_low_mark(tmp_path: Path) -> None:
    store = _store(tmp_path, capacity=10_000, low=3_000, hard=1_000)
    for n in range(5):
        store.add(_write(tmp_path, f"img{n}.jpg", 1_000), relayed=True)
    assert store.free_bytes() == 5_000
    assert store.enforce() == []
    assert len(store) == 5


def test_relayed_images_go_first_oldest_first_and_only_until_above_the_low_mark(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edge.storage")
    store = _store(tmp_path, capacity=10_000, low=3_500, hard=1_000)
    for n in range(8):  # img0 is the oldest; 8,000 of 10,000 bytes used
        store.add(_write(tmp_path, f"img{n}.jpg", 1_000), relayed=n in (1, 3, 4, 6))
    deletions = store.enforce()
    assert _names(deletions) == ["img1.jpg", "img3.jpg"]  # free 2,000 -> 4,000
    assert all(d.relayed and d.bytes_freed == 1_000 for d in deletions)
    assert store.free_bytes() == 4_000
    assert sorted(p.name for p in tmp_path.glob("*.jpg")) == [f"img{n}.jpg" for n in (0, 2, 4, 5, 6, 7)]
    logged = [r for r in caplog.records if r.getMessage().startswith("deleted image")]
    assert len(logged) == 2 and all(r.levelno == logging.INFO for r in logged)
    assert "already relayed" in logged[0].getMessage() and "below the low mark" in logged[0].getMessage()


def test_unrelayed_images_stay_while_above_the_hard_limit(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = _store(tmp_path, capacity=10_000, low=5_000, hard=1_000)
    for n in range(8):
        store.add(_write(tmp_path, f"img{n}.jpg", 1_000), relayed=n == 5)
    assert _names(store.enforce()) == ["img5.jpg"]  # free 3,000: still below the low mark
    assert len(store) == 7
    assert "only unrelayed images left" in caplog.text
    assert store.enforce() == []  # and again: nothing more may go


def test_below_the_hard_limit_relayed_go_first_then_oldest_unrelayed_until_above_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = _store(tmp_path, capacity=10_000, low=4_500, hard=3_500)
    for n in range(9):  # free 1,000: below the hard limit
        store.add(_write(tmp_path, f"img{n}.jpg", 1_000), relayed=n == 7)
    deletions = store.enforce()
    assert _names(deletions) == ["img7.jpg", "img0.jpg", "img1.jpg"]  # free 2,000, 3,000, 4,000 >= hard
    assert [d.relayed for d in deletions] == [True, False, False]
    assert store.free_bytes() == 4_000
    lost = [
        r for r in caplog.records if r.levelno == logging.WARNING and r.getMessage().startswith("deleted")
    ]
    assert len(lost) == 2
    assert all("NOT yet relayed, so this image is lost" in r.getMessage() for r in lost)
    assert all("below the hard limit" in r.getMessage() for r in lost)
    assert store.stats() == {
        "images": 6,
        "relayed": 0,
        "unrelayed": 6,
        "deleted_relayed": 1,
        "deleted_unrelayed": 2,
        "index_saved": True,
    }


def test_sidecars_go_with_their_image_and_nothing_else_does(tmp_path: Path) -> None:
    store = _store(tmp_path, capacity=10_000, low=6_500, hard=0)
    image = _write(tmp_path, "day1/IMG_0001.jpg", 2_000)
    _write(tmp_path, "day1/IMG_0001.json", 300)
    _write(tmp_path, "day1/IMG_0001.thumb.jpg", 400)
    named = _write(tmp_path, "day1/meta/0001-exif.txt", 100)
    store.add(image, relayed=True, sidecars=[named])
    other = _write(tmp_path, "day1/IMG_00010.jpg", 2_000)  # a different image with a longer name
    _write(tmp_path, "day1/IMG_00010.json", 300)
    store.add(other)
    (deletion,) = store.enforce()
    assert deletion.path == image.resolve()
    assert sorted(p.name for p in deletion.sidecars) == [
        "0001-exif.txt",
        "IMG_0001.json",
        "IMG_0001.thumb.jpg",
    ]
    assert deletion.bytes_freed == 2_800
    assert sorted(p.name for p in (tmp_path / "day1").iterdir()) == [
        "IMG_00010.jpg",
        "IMG_00010.json",
        "meta",
    ]


def test_the_order_is_the_order_added_even_if_the_clock_jumps_back(tmp_path: Path) -> None:
    store = _store(tmp_path, capacity=10_000, low=8_000, hard=0, clock=StepClock(step_s=-3600))
    for n in range(3):
        store.add(_write(tmp_path, f"img{n}.jpg", 1_000), relayed=True)
    assert _names(store.enforce()) == ["img0.jpg"]


def test_a_restart_keeps_the_index(tmp_path: Path) -> None:
    store = _store(tmp_path, capacity=10_000, low=4_500, hard=0)
    for n in range(7):
        store.add(_write(tmp_path, f"img{n}.jpg", 1_000))
    for n in (5, 2, 6):
        assert store.mark_relayed(tmp_path / f"img{n}.jpg")
    store.close()

    again = _store(tmp_path, capacity=10_000, low=4_500, hard=0)
    assert len(again) == 7
    assert [again.is_relayed(f"img{n}.jpg") for n in range(7)] == [n in (2, 5, 6) for n in range(7)]
    assert _names(again.enforce()) == ["img2.jpg", "img5.jpg"]
    again.add(_write(tmp_path, "img7.jpg", 1_000), relayed=True)  # numbered after the old ones
    again.mark_relayed("img0.jpg")
    again.close()

    third = _store(tmp_path, capacity=10_000, low=6_500, hard=0)
    assert _names(third.enforce()) == ["img0.jpg", "img6.jpg", "img7.jpg"]


def test_bad_paths_and_watermarks_are_refused_in_words(tmp_path: Path) -> None:
    store = _store(tmp_path / "store", capacity=10_000, low=10, hard=5)
    with pytest.raises(StoreError, match="outside the image store"):
        store.add(_write(tmp_path, "elsewhere.jpg", 10))
    with pytest.raises(StoreError, match="not on disk"):
        store.add("missing.jpg")
    with pytest.raises(ValueError, match="hard_free_bytes"):
        _store(tmp_path / "x", capacity=1, low=5, hard=10)
    assert not store.mark_relayed("never-added.jpg")
    assert "never-added.jpg" not in store


def test_an_image_already_gone_is_dropped_not_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edge.storage")
    store = _store(tmp_path, capacity=10_000, low=7_500, hard=0)
    for n in range(3):
        store.add(_write(tmp_path, f"img{n}.jpg", 1_000), relayed=True)
    (tmp_path / "img0.jpg").unlink()
    _write(tmp_path, "other.bin", 1_000)  # something else fills the card
    assert _names(store.enforce()) == ["img1.jpg"]
    assert "img0.jpg was already gone" in caplog.text
    assert "img0.jpg" not in store


def test_a_damaged_index_is_moved_aside_and_the_images_taken_back_unrelayed(tmp_path: Path) -> None:
    store = _store(tmp_path, capacity=10_000, low=0, hard=0)
    for n in range(3):
        store.add(_write(tmp_path, f"img{n}.jpg", 100), relayed=True)
        os.utime(tmp_path / f"img{n}.jpg", (1_000_000 + n, 1_000_000 + n))
    _write(tmp_path, "img1.thumb.jpg", 10)
    store.close()
    (tmp_path / INDEX_NAME).write_bytes(b"this is not an SQLite file" * 200)

    again = _store(tmp_path, capacity=10_000, low=0, hard=0)
    assert list(tmp_path.glob(f"{INDEX_NAME}.corrupt-*"))
    assert len(again) == 3  # the thumbnail is img1's sidecar, not an image
    assert [again.is_relayed(f"img{n}.jpg") for n in range(3)] == [False] * 3
    assert again.stats()["index_saved"]


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 9), st.booleans()), min_size=1, max_size=14),
    st.integers(0, 60),
    st.integers(0, 60),
)
def test_the_policy_holds_for_any_card(images: list[tuple[int, bool]], low: int, hard: int) -> None:
    low, hard = max(low, hard), min(low, hard)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store = _store(root, capacity=sum(s for s, _ in images) + 10, low=low, hard=hard)
        for n, (size, relayed) in enumerate(images):
            store.add(_write(root, f"img{n:02d}.jpg", size), relayed=relayed)
        deletions = store.enforce()
        free = store.free_bytes()
        names = _names(deletions)
        relayed = [f"img{n:02d}.jpg" for n, (_, r) in enumerate(images) if r]
        unrelayed = [f"img{n:02d}.jpg" for n, (_, r) in enumerate(images) if not r]
        gone_relayed = [d.path.name for d in deletions if d.relayed]
        gone_unrelayed = [d.path.name for d in deletions if not d.relayed]
        assert names == gone_relayed + gone_unrelayed  # relayed always before unrelayed
        assert gone_relayed == relayed[: len(gone_relayed)]  # oldest first
        assert gone_unrelayed == unrelayed[: len(gone_unrelayed)]
        if gone_unrelayed:
            assert gone_relayed == relayed  # only once no relayed image was left
        assert free >= low or gone_relayed == relayed
        assert free >= hard or not len(store)
        # No more than needed: one deletion fewer would have left the card short.
        if deletions:
            last = deletions[-1]
            assert free - last.bytes_freed < (low if last.relayed else hard)


# --- a real full card --------------------------------------------------------------------------------


@contextlib.contextmanager
def _tiny_tmpfs(path: Path, size_kib: int) -> Iterator[Path]:
    path.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tiny tmpfs needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(path)], check=False
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_full_card_never_crashes_the_store(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="edge.storage")
    with _tiny_tmpfs(tmp_path / "card", 256) as card:
        store = ImageStore(card, low_free_bytes=64 * 1024, hard_free_bytes=16 * 1024, clock=StepClock())
        written: list[Path] = []
        for n in range(100):  # the camera writes until the card is full
            try:
                written.append(_write(card, f"img{n:03d}.jpg", 12 * 1024))
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                (card / f"img{n:03d}.jpg").unlink()  # the camera drops its half-written file
                break
            store.add(written[-1], relayed=n % 2 == 0)
        else:
            pytest.fail("the tiny card never filled")
        # The card is full to the last block; empty files (failed captures) still take index rows,
        # until the index needs a new page and cannot have it.
        for n in range(80):
            written.append(_write(card, f"empty{n:02d}.jpg", 0))
            store.add(written[-1])
        assert "image index not saved" in caplog.text
        assert not store.stats()["index_saved"]
        assert len(store) == len(written)  # every image is known, saved or not

        deletions = store.enforce()
        assert deletions and all(d.relayed for d in deletions)
        assert store.free_bytes() >= 64 * 1024
        assert store.stats()["index_saved"]  # what was held in memory is on the card now
        assert "image index saved again" in caplog.text
        store.close()

        again = ImageStore(card, low_free_bytes=64 * 1024, hard_free_bytes=16 * 1024)
        assert len(again) == len(written) - len(deletions)
        assert all(again.is_relayed(p) is False for p in written if p.name.startswith("empty"))
        again.close()
