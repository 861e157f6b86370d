"""The simulated snow leopard: stays in the Helan box, behaves like a collared animal, replays by seed."""

from __future__ import annotations

import itertools
import math
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulators.track import (
    ALT_MAX_M,
    ALT_MIN_M,
    HELAN_BOX,
    HOME_RADIUS_M,
    M_PER_DEG_LAT,
    Track,
    TrackPoint,
    random_start,
)

T0 = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)


def _walk(seed: int, start: tuple[float, float], dt: float, seconds: float, **kw: object) -> list[TrackPoint]:
    track = Track(random.Random(seed), start=start, start_time=T0, **kw)  # type: ignore[arg-type]
    return [track.advance(dt) for _ in range(int(seconds / dt))]


def _metres(a: tuple[float, float], b: tuple[float, float]) -> float:
    north = (a[0] - b[0]) * M_PER_DEG_LAT
    east = (a[1] - b[1]) * M_PER_DEG_LAT * math.cos(math.radians(a[0]))
    return math.hypot(north, east)


@settings(max_examples=12, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    lat=st.floats(HELAN_BOX.south, HELAN_BOX.north),
    lon=st.floats(HELAN_BOX.west, HELAN_BOX.east),
    dt=st.sampled_from([7.5, 60.0, 900.0]),
)
def test_three_days_stay_in_the_box_and_replay_exactly(seed: int, lat: float, lon: float, dt: float) -> None:
    points = _walk(seed, (lat, lon), dt, 3 * 86400)
    for n, p in enumerate(points, start=1):
        assert HELAN_BOX.contains(p.lat, p.lon), p
        assert ALT_MIN_M <= p.alt <= ALT_MAX_M
        assert p.speed_mps >= 0.0
        assert 0.0 <= p.course_deg < 360.0
        assert p.time == T0 + timedelta(seconds=n * dt)
    assert points == _walk(seed, (lat, lon), dt, 3 * 86400)


def test_different_seeds_make_different_animals() -> None:
    start = (38.85, 106.0)
    assert _walk(1, start, 60, 86400)[-1] != _walk(2, start, 60, 86400)[-1]


@pytest.mark.parametrize(
    "corner",
    [(HELAN_BOX.south, HELAN_BOX.west), (HELAN_BOX.north, HELAN_BOX.east), (HELAN_BOX.south, HELAN_BOX.east)],
)
def test_an_animal_living_at_the_edge_bounces_off_it(corner: tuple[float, float]) -> None:
    # Home range centred on the corner: half of it lies outside, so the wall is hit often.
    points = _walk(5, corner, 30, 7 * 86400, home=corner)
    assert all(HELAN_BOX.contains(p.lat, p.lon) for p in points)


def test_rests_travels_and_bursts_like_a_collared_leopard() -> None:
    points = _walk(11, (38.85, 106.0), 60, 7 * 86400)
    moving = [p.speed_mps for p in points if p.speed_mps > 0]
    # Long stationary stretches: at least one rest of an hour or more, identical positions throughout.
    longest, run = 0, 0
    for a, b in itertools.pairwise(points):
        run = run + 1 if (a.lat, a.lon) == (b.lat, b.lon) else 0
        longest = max(longest, run)
    assert longest >= 60
    # Active roughly a fifth to a half of the time, at a walking pace, sometimes much faster.
    assert 0.15 < len(moving) / len(points) < 0.5
    moving.sort()
    assert 0.3 <= moving[len(moving) // 2] <= 2.0
    assert moving[-1] > 3.0


def test_reported_speed_matches_the_distance_covered() -> None:
    track = Track(random.Random(3), start=(38.85, 106.0), start_time=T0)
    prev = track.point
    checked = 0
    for _ in range(20_000):
        p = track.advance(1.0)
        if p.speed_mps > 0 and prev.speed_mps > 0:
            assert _metres((p.lat, p.lon), (prev.lat, prev.lon)) == pytest.approx(p.speed_mps, rel=0.01)
            checked += 1
        prev = p
    assert checked > 1000


@pytest.mark.parametrize("seed", [21, 22, 23])
def test_home_range_pulls_the_animal_back(seed: int) -> None:
    rng = random.Random(seed)
    start = random_start(rng)
    points = _walk(seed, start, 120, 21 * 86400)
    far = [p for p in points if _metres((p.lat, p.lon), start) > 2.5 * HOME_RADIUS_M]
    assert len(far) / len(points) < 0.01


def test_rejects_a_start_it_cannot_honour() -> None:
    with pytest.raises(ValueError, match="outside"):
        Track(random.Random(0), start=(40.0, 106.0), start_time=T0)
    with pytest.raises(ValueError, match="timezone"):
        Track(random.Random(0), start=(38.8, 106.0), start_time=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="forward"):
        Track(random.Random(0), start=(38.8, 106.0), start_time=T0).advance(-1)
