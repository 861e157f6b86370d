"""The durable outbox: order, sequence numbers, acknowledgement, crash safety, damage, shedding, full disk."""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.outbox import Outbox, OutboxError, Priority

FIX_TOPIC = "uncia/helan/gw-01/gps0/event/fix"


def payload(source: str, seq: int, size: int = 0) -> bytes:
    return json.dumps({"source": source, "seq": seq, "pad": "x" * size}).encode()


def put(box: Outbox, source: str = "gps0", topic: str = FIX_TOPIC, size: int = 0, **kw) -> int:
    return box.enqueue(source, topic, lambda seq: payload(source, seq, size), **kw)


def drain(box: Outbox) -> list[dict]:
    """Read everything committed, in order, and acknowledge it (as the relay does)."""
    out, after = [], 0
    while rows := box.peek(after, 100):
        out.extend(json.loads(r.payload) for r in rows)
        after = rows[-1].id
        box.ack(r.id for r in rows)
    box.commit()
    return out


def open_box(path: Path, **kw) -> Outbox:
    kw.setdefault("background", False)
    return Outbox(path, **kw)


def test_messages_come_out_in_order_with_per_source_seq(tmp_path: Path) -> None:
    with open_box(tmp_path / "o.sqlite3") as box:
        for i in range(30):
            put(box, "gps0" if i % 3 else "gps1")
        assert box.peek(0, 100) == [], "nothing is handed out before it is committed"
        assert box.commit() == 30
        rows = box.peek(0, 100)
        assert [r.id for r in rows] == sorted(r.id for r in rows)
        got = [json.loads(r.payload) for r in rows]
        assert [m["seq"] for m in got if m["source"] == "gps0"] == list(range(1, 21))
        assert [m["seq"] for m in got if m["source"] == "gps1"] == list(range(1, 11))
        assert all(r.priority == Priority.FIX for r in rows)


def test_ack_deletes_and_depth_counts(tmp_path: Path) -> None:
    with open_box(tmp_path / "o.sqlite3") as box:
        for _ in range(10):
            put(box)
        box.commit()
        rows = box.peek(0, 100)
        box.ack([rows[0].id, rows[1].id, rows[5].id])
        box.commit()
        assert box.depth == 7
        assert [r.id for r in box.peek(0, 100)] == [r.id for i, r in enumerate(rows) if i not in (0, 1, 5)]
        stats = box.stats()
        assert (stats["enqueued"], stats["committed"], stats["acked"], stats["waiting"]) == (10, 10, 3, 7)


def test_seq_and_unsent_messages_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    with open_box(path) as box:
        for _ in range(5):
            put(box)
        box.commit()
        box.ack([box.peek(0, 1)[0].id])
        box.commit()
    with open_box(path) as box:
        assert box.last_seq("gps0") == 5
        assert put(box) == 6
        box.commit()
        assert [m["seq"] for m in drain(box)] == [2, 3, 4, 5, 6]
        assert box.depth == 0


def test_background_commit_makes_messages_visible(tmp_path: Path) -> None:
    committed = threading.Event()
    with Outbox(tmp_path / "o.sqlite3", commit_interval=0.01) as box:
        box.set_commit_listener(lambda n: committed.set())
        put(box)
        assert committed.wait(10)
        assert len(box.peek(0, 10)) == 1


def test_close_commits_what_was_queued(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    with Outbox(path, commit_interval=60) as box:
        for _ in range(3):
            put(box)
    with open_box(path) as box:
        assert [m["seq"] for m in drain(box)] == [1, 2, 3]


def test_second_process_cannot_open_the_same_outbox(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    with open_box(path), pytest.raises(OutboxError, match="in use by another uncia process"):
        open_box(path)


CHILD = r"""
import json, sys
from edge.outbox import Outbox
box = Outbox(sys.argv[1], commit_interval=0.005)
print("open", flush=True)
while True:
    for _ in range(50):
        seq = box.enqueue("gps0", "uncia/helan/gw-01/gps0/event/fix",
                          lambda s: json.dumps({"seq": s, "pad": "y" * 200}).encode())
    box.commit()
    print(seq, flush=True)
"""


def test_kill_9_while_enqueueing_loses_nothing_committed(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert child.stdout is not None
    try:
        assert child.stdout.readline().strip() == "open"
        last = 0
        for _ in range(40):
            last = int(child.stdout.readline())
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    check = sqlite3.connect(path)
    assert check.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    check.close()
    with open_box(path) as box:
        seqs = [m["seq"] for m in drain(box)]
        assert seqs == list(range(1, len(seqs) + 1)), "in order, no gaps, no duplicates"
        assert seqs[-1] >= last, "every message whose commit returned is on disk"
        assert put(box) == seqs[-1] + 1, "sequence numbers continue, never reused"


def test_garbage_file_is_moved_aside(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "o.sqlite3"
    path.write_bytes(b"this is not a database, it is what a dying SD card returns" * 100)
    with caplog.at_level(logging.ERROR), open_box(path) as box:
        put(box)
        box.commit()
        assert len(box.peek(0, 10)) == 1
    aside = list(tmp_path.glob("o.sqlite3.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not a database")
    lines = [r.getMessage() for r in caplog.records if "damaged" in r.getMessage()]
    assert len(lines) == 1 and str(aside[0]) in lines[0]


def test_damaged_page_is_caught_by_the_integrity_check(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "o.sqlite3"
    with open_box(path) as box:
        for _ in range(300):
            put(box, size=500)
        box.commit()
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    data = bytearray(path.read_bytes())
    page = 4096
    for offset in range(3 * page, 3 * page + 200):  # scribble over the header of a table page
        data[offset] = 0x5A
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.ERROR), open_box(path) as box:
        assert box.depth == 0, "a fresh outbox was started"
    assert list(tmp_path.glob("o.sqlite3.corrupt-*"))
    assert any("damaged" in r.getMessage() for r in caplog.records)


def test_shedding_order_status_then_other_then_fixes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    status = "uncia/helan/gw-01/unit/state/health"
    raw = "uncia/helan/gw-01/gps0/event/raw"
    with caplog.at_level(logging.WARNING), open_box(tmp_path / "o.sqlite3", max_messages=100) as box:
        for i in range(40):
            put(box, "gps0")
            put(box, "unit", status) if i % 2 else put(box, "raw", raw)
        box.commit()
        assert box.stats()["shed"] == 0
        for _ in range(30):  # 110 > 100: shed down to 95 -> 15 status messages go, oldest first
            put(box, "gps0")
        box.commit()
        stats = box.stats()
        assert (stats["shed_status"], stats["shed_event"], stats["shed_fix"]) == (15, 0, 0)
        assert stats["waiting"] == 95
        for _ in range(40):  # 135: shed 40 = 5 status + 20 raw + 15 oldest fixes
            put(box, "gps0")
        box.commit()
        stats = box.stats()
        assert (stats["shed_status"], stats["shed_event"], stats["shed_fix"]) == (20, 20, 15)
        left = drain(box)
        assert [m["seq"] for m in left if m["source"] == "gps0"] == list(range(16, 111))
        assert not [m for m in left if m["source"] != "gps0"]
    messages = [r for r in caplog.records if "shed" in r.getMessage()]
    assert messages[-1].levelno == logging.ERROR and "15 fix" in messages[-1].getMessage()


def test_rows_handed_to_the_relay_are_not_shed(tmp_path: Path) -> None:
    with open_box(tmp_path / "o.sqlite3", max_messages=20) as box:
        for _ in range(20):
            put(box)
        box.commit()
        taken = box.take(5)
        for _ in range(5):
            put(box)
        box.commit()
        remaining = {r.id for r in box.peek(0, 100)}
        assert {r.id for r in taken} <= remaining
        assert box.stats()["shed_fix"] == 6


def test_full_disk_keeps_messages_in_memory_and_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "o.sqlite3"
    with caplog.at_level(logging.WARNING), open_box(path, max_file_bytes=96 * 1024) as box:
        committed = 0
        for _ in range(40):
            for _ in range(20):
                put(box, size=400)
            committed += box.commit()
        assert box.stats()["write_errors"] > 0, "the size cap was reached"
        assert box.stats()["held_in_memory"] > 0
        assert committed < 800
        full = [r for r in caplog.records if "cannot write" in r.getMessage()]
        assert len(full) == 1, "one clear line, not one per retry"
        seqs = [m["seq"] for m in drain(box)]  # acknowledging frees space ...
        seqs += [m["seq"] for m in drain(box)]  # ... so the held messages get written
        while box.stats()["held_in_memory"]:
            box.commit()
            seqs += [m["seq"] for m in drain(box)]
        seqs += [m["seq"] for m in drain(box)]
        assert seqs == list(range(1, 801))
        assert any("work again" in r.getMessage() for r in caplog.records)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def test_memory_bound_while_disk_is_full_sheds_by_policy(tmp_path: Path) -> None:
    with open_box(tmp_path / "o.sqlite3", max_file_bytes=64 * 1024, memory_limit=50) as box:
        for _ in range(300):
            put(box, size=400)
            put(box, "unit", "uncia/helan/gw-01/unit/state/health")
        box.commit()
        for _ in range(3):
            box.commit()
        stats = box.stats()
        assert stats["held_in_memory"] <= 50
        assert stats["shed_status"] > 0
        assert stats["enqueued"] == stats["committed"] + stats["held_in_memory"] + stats["shed"]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from(["put0", "put1", "commit", "take", "reopen"]), max_size=60))
def test_model_order_and_seq(tmp_path_factory: pytest.TempPathFactory, ops: list[str]) -> None:
    """Whatever the interleaving, the relay sees committed messages in enqueue order, each once."""
    path = tmp_path_factory.mktemp("model") / "o.sqlite3"
    box = open_box(path)
    sent: list[tuple[str, int]] = []
    seen: list[tuple[str, int]] = []
    after = 0
    try:
        for op in ops:
            if op.startswith("put"):
                source = "gps" + op[-1]
                sent.append((source, put(box, source)))
            elif op == "commit":
                box.commit()
            elif op == "take":
                rows = box.peek(after, 3)
                if rows:
                    after = rows[-1].id
                    seen.extend((m["source"], m["seq"]) for m in map(json.loads, (r.payload for r in rows)))
                    box.ack(r.id for r in rows)
            else:
                box.close()
                box, after = open_box(path), 0
            assert box.depth == len(sent) - len(seen)
        box.commit()
        seen.extend((m["source"], m["seq"]) for m in drain(box))
    finally:
        box.close()
    assert seen == sent
