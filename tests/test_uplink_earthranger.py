"""The EarthRanger uplink against a stand-in server on a real TCP port that enforces the sensors API's
request format (simulators/earthranger.py), fed from a real station record.

Time: the uplink's clock is a number the test moves (record times, cursors, sweeps); the HTTP
requests are real. Steps are driven by the test (`step`), except where the thread itself is tested.
"""

from __future__ import annotations

import io
import logging
import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from gateway.station.record import FixRow, StationRecord, iso
from gateway.uplink.earthranger import DEST, EarthRangerUplink
from gateway.uplink.er_api import EarthRangerApi, server_words
from gateway.uplink.settings import EarthRangerSettings
from gateway.uplink.state import UplinkState
from simulators.earthranger import EarthRangerServer, check_observation

T0 = 1_790_000_000.0  # 2026-09-21
TOKEN = "test-token-7f3a"


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def fix(collar: int | str, t: float, *, received: float, lat: float = 38.9, lon: float = 106.0) -> FixRow:
    track = collar if isinstance(collar, str) else f"collar-{collar}"
    return FixRow(
        msg_id=f"m-{track}-{t:.0f}",
        track=track,
        unit="gw-01",
        source=track if track.startswith("collar-") else "gps0",
        seq=None,
        time=t,
        lat=lat + (t - T0) * 1e-7,
        lon=lon,
        quality=1,
        hdop=1.3,
        sats=7,
        battery=81,
        rssi=-104.0,
        snr=6.5,
        modem="lora0" if track.startswith("collar-") else None,
        received=received,
    )


def jpeg(color: tuple[int, int, int] = (120, 90, 60), size: tuple[int, int] = (64, 48)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "JPEG")
    return out.getvalue()


@pytest.fixture
def server():
    with EarthRangerServer(token=TOKEN) as running:
        yield running


@pytest.fixture
def record(tmp_path: Path):
    rec = StationRecord(tmp_path / "station.sqlite3")
    yield rec
    rec.close()


def settings(url: str, **kw: object) -> EarthRangerSettings:
    base: dict[str, object] = {
        "url": url,
        "token_file": "/nonexistent",
        "provider_key": "uncia-test",
        "batch": 25,
        "timeout_s": 5.0,
        "retry_s": 0.01,
        "retry_max_s": 0.05,
        "interval_s": 5.0,
    }
    base.update(kw)
    return EarthRangerSettings(**base)  # type: ignore[arg-type]


def make_uplink(
    server: EarthRangerServer, record: StationRecord, state_path: Path, clock: Clock, **kw: object
):
    token = str(kw.pop("token", TOKEN))
    return EarthRangerUplink(
        settings(server.url, **kw),
        record.path,
        UplinkState(state_path),
        token=token,
        clock=clock,
        rng=random.Random(7),
    )


def drive(uplink: EarthRangerUplink, until: Callable[[], bool], steps: int = 200) -> int:
    """Run steps until `until()` holds; the waits the uplink asks for are skipped (its clock stands)."""
    for n in range(steps):
        if until():
            return n
        uplink.step()
    raise AssertionError(f"not done after {steps} steps: {uplink.status()}")


def key(f: FixRow) -> tuple[str, str]:
    from datetime import datetime

    return (f.track, datetime.fromisoformat(iso(f.time).replace("Z", "+00:00")).isoformat())  # type: ignore[union-attr]


def add(record: StationRecord, rows: list[FixRow]) -> list[FixRow]:
    for row in rows:
        record.add_fix(row)
    record.commit()
    return rows


def test_every_fix_arrives_once_across_outages_and_a_restart(server, record, tmp_path):
    clock = Clock()
    state_path = tmp_path / "uplink.sqlite3"
    sent = add(record, [fix(c, T0 - 3600 + 60 * i, received=T0 - 10) for c in (1, 2, 3) for i in range(40)])
    add(record, [fix("gw-01/gps0", T0 - 60, received=T0 - 10)])  # the station's own GPS: not for ER
    uplink = make_uplink(server, record, state_path, clock, timeout_s=1.0)

    uplink.step()  # queues 120 fixes, sends the first batches
    assert server.posts and all(p.count <= 25 for p in server.posts)

    server.go_down()  # the link drops: connection refused
    clock.t += 30
    sent += add(record, [fix(4, T0 + 10 * i, received=clock.t) for i in range(10)])
    for _ in range(3):
        uplink.step()
    assert uplink.status()["consecutive_failures"] >= 1
    assert "connection refused" in uplink.status()["last_error"]
    server.come_back()

    server.fail_next(503, retry_after=0)  # busy
    server.fail_next(500)
    server.stall_next(2.5)  # the server stores the batch but answers after the client gave up
    uplink.step()
    uplink.step()
    uplink.step()
    assert "no answer within" in (uplink.last_error or "")
    uplink.stop()
    uplink.state.close()

    # The process restarts: a new uplink on the same state file, with more fixes in the record.
    clock.t += 600
    sent += add(record, [fix(5, T0 + 700 + i, received=clock.t) for i in range(7)])
    again = make_uplink(server, record, state_path, clock)
    drive(again, lambda: again.state.counts(DEST)["queued"] == 0)

    stored = server.observations
    assert set(stored) == {key(f) for f in sent}
    assert sum(p.created for p in server.posts) == len(sent)  # each fix stored exactly once
    assert not any(k[0].startswith("gw-01") for k in stored)
    assert server.refused == []  # every request met the documented format
    # Only the batch whose answer was lost went twice, and the server took it as a duplicate.
    posted = sum(p.count for p in server.posts if p.status in (200, 201))
    assert posted - len(sent) <= 25
    assert again.state.counts(DEST) == {"queued": 0, "done": len(sent), "parked": 0}
    again.stop()


def test_observations_carry_the_documented_fields(server, record, tmp_path):
    clock = Clock()
    f = add(record, [fix(7, T0 - 60, received=T0 - 5)])[0]
    uplink = make_uplink(server, record, tmp_path / "u.sqlite3", clock)
    uplink.step()
    obs = server.observations[key(f)]
    assert check_observation(obs) == {}
    assert obs["manufacturer_id"] == "collar-7" and obs["source_type"] == "tracking-device"
    assert obs["location"] == {"lat": f.lat, "lon": f.lon}
    assert obs["recorded_at"] == iso(f.time)
    assert obs["additional"]["battery_percent"] == 81 and obs["additional"]["msg_id"] == f.msg_id
    uplink.stop()


def test_batching(server, record, tmp_path):
    clock = Clock()
    add(record, [fix(1 + i % 4, T0 - 10_000 + 30 * i, received=T0 - 1) for i in range(230)])
    uplink = make_uplink(server, record, tmp_path / "u.sqlite3", clock, batch=100)
    uplink.step()
    assert [p.count for p in server.posts] == [100, 100, 30]
    assert [p.status for p in server.posts] == [201, 201, 201]
    uplink.stop()


def test_409_counts_as_done(server, record, tmp_path):
    clock = Clock()
    add(record, [fix(2, T0 - 100 + i, received=T0 - 1) for i in range(5)])
    uplink = make_uplink(server, record, tmp_path / "u.sqlite3", clock)
    server.fail_next(409)
    uplink.step()
    assert [p.status for p in server.posts] == [409]
    assert uplink.state.counts(DEST) == {"queued": 0, "done": 5, "parked": 0}
    for _ in range(3):
        uplink.step()
    assert len(server.posts) == 1  # never sent again
    uplink.stop()


def test_a_refused_fix_is_parked_with_the_servers_words_and_the_rest_go(server, record, tmp_path, caplog):
    clock = Clock()
    good = add(record, [fix(3, T0 - 100 + i, received=T0 - 1) for i in range(6)])
    bad = fix(3, T0 - 50.5, received=T0 - 1, lat=95.0)  # a corrupt latitude
    add(record, [bad])
    uplink = make_uplink(server, record, tmp_path / "u.sqlite3", clock)
    with caplog.at_level(logging.WARNING, logger="uncia.uplink.earthranger"):
        uplink.step()
    assert set(server.observations) == {key(f) for f in good}
    counts = uplink.state.counts(DEST)
    assert counts == {"queued": 0, "done": 6, "parked": 1}
    (item, kind, reason), *_ = uplink.state.parked(DEST)
    assert item == bad.msg_id and kind == "fix" and reason.startswith("400") and "lat" in reason
    assert "parked" in caplog.text and "lat" in caplog.text
    before = len(server.posts)
    uplink.step()
    assert len(server.posts) == before  # parked: not retried forever
    assert uplink.requeue_parked() == 1  # staff fixed something: it goes once more
    uplink.step()
    assert uplink.state.counts(DEST)["parked"] == 1
    uplink.stop()


def test_a_rejected_token_says_so_and_parks_nothing(server, record, tmp_path, caplog):
    clock = Clock()
    add(record, [fix(1, T0 - 10, received=T0 - 1)])
    uplink = make_uplink(server, record, tmp_path / "u.sqlite3", clock, token="wrong-secret-123")
    with caplog.at_level(logging.DEBUG):
        wait = uplink.step()
    status = uplink.status()
    assert status["token_rejected"] is True
    assert "token rejected" in status["last_error"] and "token_file" in status["last_error"]
    assert "token rejected" in caplog.text
    assert "wrong-secret-123" not in caplog.text and "wrong-secret-123" not in repr(uplink.api)
    assert uplink.state.counts(DEST) == {"queued": 1, "done": 0, "parked": 0}
    assert wait >= 0.05  # waits (for a person) instead of hammering
    uplink.stop()


def test_camera_trap_images_go_as_multipart_with_their_event(server, record, tmp_path):
    clock = Clock()
    thumb, full = jpeg((10, 200, 30)), jpeg((200, 10, 30), (320, 240))
    record.unit_health(
        "cam-03", {"camera": "cam-03", "position": {"lat": 38.91, "lon": 105.97}}, T0, camera=True
    )
    for event_id, trigger in (("20260921T000000Z-aaaaaa", "pir"), ("20260921T010000Z-bbbbbb", "self_check")):
        start = "2026-09-21T00:00:00Z" if trigger == "pir" else "2026-09-21T01:00:00Z"
        record.update_capture(
            "cam-03",
            {"event_id": event_id, "phase": "start", "camera": "cam-03", "trigger": trigger, "start": start},
            clock=None,
            now=T0 - 100,
        )
        images = [{"id": f"img-{event_id[-6:]}", "stream": "main"}]
        record.update_capture(
            "cam-03",
            {
                "event_id": event_id,
                "phase": "end",
                "camera": "cam-03",
                "start": start,
                "end": start,
                "images": images,
                "best_image_id": images[0]["id"],
                "stills": 1,
            },
            clock=None,
            now=T0 - 90,
        )
        record.add_thumbnail(
            "cam-03", {"image_id": images[0]["id"], "event_id": event_id, "time": start}, thumb
        )
    record.commit()
    uplink = make_uplink(server, record, tmp_path / "u.sqlite3", clock)
    uplink.step()
    images = server.images
    assert list(images) == ["cam-03_20260921T000000Z-aaaaaa.jpg"]  # the self-check picture stays home
    sent = images["cam-03_20260921T000000Z-aaaaaa.jpg"]
    assert sent.content == thumb
    assert sent.fields["camera_name"] == "cam-03" and sent.fields["time"] == "2026-09-21T00:00:00.000Z"
    assert sent.fields["location"] == '{"latitude": 38.91, "longitude": 105.97}'
    assert server.refused == []

    # The same event again (a second station, a lost state file): the server says 409, that is done.
    path = tmp_path / "full.jpg"
    path.write_bytes(full)
    record.add_image("cam-03", "img-aaaaaa", path, sha256=None, now=T0)
    record.commit()
    other = make_uplink(server, record, tmp_path / "other.sqlite3", clock)
    other.step()
    assert server.posts[-1].status == 409
    assert other.state.counts(DEST)["done"] == 1 and other.state.counts(DEST)["parked"] == 0
    uplink.stop()
    other.stop()


def test_an_event_waits_for_its_image_then_is_parked(server, record, tmp_path):
    clock = Clock()
    event = {
        "event_id": "20260921T020000Z-cccccc",
        "phase": "end",
        "camera": "cam-04",
        "start": "2026-09-21T02:00:00Z",
        "end": "2026-09-21T02:00:09Z",
        "images": [{"id": "img-c", "stream": "main"}],
        "best_image_id": "img-c",
    }
    record.update_capture("cam-04", event, clock=None, now=T0 - 10)
    record.commit()
    uplink = make_uplink(server, record, tmp_path / "u.sqlite3", clock, image_wait_h=1.0)
    uplink.step()
    assert server.posts == [] and uplink.state.counts(DEST)["queued"] == 1
    clock.t += 3700
    uplink.step()
    assert uplink.state.counts(DEST)["parked"] == 1
    assert "no image" in uplink.state.parked(DEST)[0][2]
    uplink.stop()


def test_a_fix_stored_long_after_it_was_taken_is_found_by_the_daily_sweep(server, record, tmp_path):
    clock = Clock()
    add(record, [fix(1, T0 - 100, received=T0 - 50)])
    uplink = make_uplink(server, record, tmp_path / "u.sqlite3", clock, late_days=1.0)
    uplink.step()
    clock.t += 600
    old = add(record, [fix(9, T0 - 5 * 86_400, received=clock.t)])[0]  # a collar's memory, read out today
    uplink.step()
    assert key(old) not in server.observations  # older than late_days: the quick scan skips it
    clock.t += 86_400
    uplink.step()
    assert key(old) in server.observations
    uplink.stop()


def test_the_thread_sends_on_its_own_and_stops(server, record, tmp_path):
    add(record, [fix(6, time.time() - 60 + i, received=time.time()) for i in range(3)])
    uplink = make_uplink(server, record, tmp_path / "u.sqlite3", Clock(time.time()))
    uplink.start()
    try:
        assert server.wait_for(lambda s: len(s.observations) == 3, timeout=10)
    finally:
        uplink.stop()
    assert not uplink.status()["running"]


def test_server_words_and_repr_never_leak_the_token():
    assert server_words(b'{"status": {"code": 401, "detail": "Invalid token."}}') == "Invalid token."
    assert server_words(b'{"data": [{"lat": ["bad"]}], "status": {"code": 400}}') == '[{"lat":["bad"]}]'
    assert server_words(b"<html>Bad Gateway</html>") == "<html>Bad Gateway</html>"
    api = EarthRangerApi("https://x.pamdas.org/api/v1.0/", "s3cret", "uncia-helan")
    assert api.tracking_url == "https://x.pamdas.org/api/v1.0/sensors/generic/uncia-helan/status"
    assert "s3cret" not in repr(api)
