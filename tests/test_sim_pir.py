"""Scenarios (animals crossing, PIR output, false triggers, files) and the PIR runner driving a real
`PirSensor` on gpiozero mock pins in simulated time."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.camera.pir import DEFAULT_PIR_PIN, PirSensor
from simulators.pir import Edge, PirScenarioRunner
from simulators.scenario import Crossing, PirModel, Scenario, ScenarioError, SimClock

T0 = datetime(2026, 11, 25, 21, 0, tzinfo=UTC)


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_the_animal_walks_across_the_picture() -> None:
    scenario = Scenario([Crossing(_at(10), 2.0), Crossing(_at(100), 4.0, "red fox", left_to_right=False)])
    assert scenario.animal_in_view(_at(9.9)) is None
    assert scenario.animal_in_view(_at(10)) == 0.0
    assert scenario.animal_in_view(_at(11)) == pytest.approx(0.5)
    assert scenario.animal_in_view(_at(12)) == pytest.approx(1.0)
    assert scenario.animal_in_view(_at(12.01)) is None
    assert scenario.animal_in_view(_at(101)) == pytest.approx(0.75)  # right to left
    fox = scenario.crossing_at(_at(101))
    assert fox is not None and fox.species == "red fox" and fox.collar_id is None


def test_overlapping_animals_show_the_first_one() -> None:
    mother, cub = Crossing(_at(0), 4.0, collar_id=1042), Crossing(_at(1), 4.0)
    scenario = Scenario([cub, mother])
    assert scenario.crossing_at(_at(2)) == mother
    assert scenario.crossing_at(_at(4.5)) == cub


def test_the_pir_fires_before_the_animal_is_centred_and_holds_after_it_leaves() -> None:
    scenario = Scenario([Crossing(_at(10), 2.0)], PirModel(fire_at=0.35, hold_s=2.5))
    ((rise, fall),) = scenario.pir_intervals(T0, _at(60))
    assert rise == _at(10.7) and fall == _at(14.5)
    x = scenario.animal_in_view(rise)
    assert x is not None and x < 0.5
    assert not scenario.pir_active(_at(10.69)) and scenario.pir_active(rise)
    assert scenario.pir_active(_at(14.49)) and not scenario.pir_active(fall)


def test_close_causes_make_one_pulse() -> None:
    scenario = Scenario([Crossing(_at(0), 2.0), Crossing(_at(3), 2.0)], PirModel(fire_at=0.0, hold_s=1.0))
    assert scenario.pir_intervals(T0, _at(60)) == [(_at(0), _at(6))]


def test_false_triggers_are_seeded_pure_and_about_the_rate() -> None:
    scenario = Scenario(pir=PirModel(false_triggers_per_hour=3.0, seed=11))
    week = scenario.false_triggers(T0, T0 + timedelta(hours=200))
    assert 450 < len(week) < 750  # Poisson, mean 600: far outside ±6 sigma would be a bug
    assert week == Scenario(pir=PirModel(false_triggers_per_hour=3.0, seed=11)).false_triggers(
        T0, T0 + timedelta(hours=200)
    )
    one_hour = scenario.false_triggers(_at(7200), _at(10800))  # any slice alone: the same triggers
    assert one_hour == [f for f in week if _at(7200) <= f.start < _at(10800)]
    assert {f.cause for f in week} == {"wind in the grass", "a sun-warmed rock cooling", "a bird"}
    other = Scenario(pir=PirModel(false_triggers_per_hour=3.0, seed=12))
    assert other.false_triggers(T0, _at(36000)) != scenario.false_triggers(T0, _at(36000))
    assert Scenario().false_triggers(T0, _at(36000)) == []


@settings(max_examples=50, deadline=None)
@given(st.floats(0, 7200))
def test_pir_active_agrees_with_the_intervals(offset: float) -> None:
    scenario = Scenario(
        [Crossing(_at(600), 1.5), Crossing(_at(3000), 6.0)], PirModel(false_triggers_per_hour=30, seed=3)
    )
    t = _at(offset)
    spells = scenario.pir_intervals(T0, _at(7300))
    assert scenario.pir_active(t) == any(rise <= t < fall for rise, fall in spells)


def test_a_scenario_loads_from_toml_and_json(tmp_path: Path) -> None:
    toml = tmp_path / "night.toml"
    toml.write_text(
        """
        [pir]
        fire_at = 0.3
        false_triggers_per_hour = 2
        seed = 7

        [[crossing]]
        start = 2026-11-25T21:14:00Z
        duration_s = 1.2
        collar_id = 1042

        [[crossing]]
        start = 2026-11-25T23:02:30+08:00
        duration_s = 3
        species = "red fox"
        left_to_right = false
        """
    )
    scenario = Scenario.from_file(toml)
    assert scenario.pir == PirModel(fire_at=0.3, false_triggers_per_hour=2, seed=7)
    assert [c.collar_id for c in scenario.crossings] == [None, 1042]  # in time order: 15:02:30Z first
    as_json = tmp_path / "night.json"
    as_json.write_text(
        json.dumps(
            {
                "pir": {"fire_at": 0.3, "false_triggers_per_hour": 2, "seed": 7},
                "crossing": [
                    {"start": "2026-11-25T21:14:00Z", "duration_s": 1.2, "collar_id": 1042},
                    {
                        "start": "2026-11-25T23:02:30+08:00",
                        "duration_s": 3,
                        "species": "red fox",
                        "left_to_right": False,
                    },
                ],
            }
        )
    )
    assert Scenario.from_file(as_json).crossings == scenario.crossings


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"crossing": [{"start": "2026-11-25T21:14:00", "duration_s": 1}]}, "crossing 1 start .* time zone"),
        (
            {"crossing": [{"start": "2026-11-25T21:14:00Z", "duration_s": -1}]},
            "crossing 1: .*positive number",
        ),
        ({"crossing": [{"start": "yesterday", "duration_s": 1}]}, "ISO 8601"),
        ({"crossing": [{"duration_s": 1}]}, "start and duration_s are required"),
        (
            {"crossing": [{"start": "2026-11-25T21:14:00Z", "duration_s": 1, "speed": 3}]},
            "unknown key.*speed",
        ),
        ({"pir": {"fire_at": 1.5}}, "fire_at = 1.5"),
        ({"camera": {}}, "unknown key.*camera"),
    ],
)
def test_bad_scenarios_are_refused_in_words(data: dict, words: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ScenarioError, match=words):
        Scenario.from_dict(data, "night.toml")


def test_a_missing_file_is_a_scenario_error(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read the scenario"):
        Scenario.from_file(tmp_path / "nope.toml")


def test_the_sim_clock_only_goes_forward() -> None:
    clock = SimClock(T0)
    clock.advance(1.5)
    assert clock() == clock.now() == _at(1.5) and clock.monotonic() == 1.5
    with pytest.raises(ValueError, match="cannot go back"):
        clock.advance_to(T0)


# --- the runner and a real PirSensor ------------------------------------------------------------------


def _rig(scenario: Scenario, **sensor_kw: object) -> tuple[PirSensor, PirScenarioRunner, list[datetime]]:
    factory, clock = MockFactory(), SimClock(T0)
    seen: list[datetime] = []
    pir = PirSensor(
        pin_factory=factory,
        clock=clock.monotonic,
        wall_clock=clock.now,
        on_motion=lambda: seen.append(clock.now()),
        **sensor_kw,  # type: ignore[arg-type]
    )
    return pir, PirScenarioRunner(scenario, factory.pin(DEFAULT_PIR_PIN), clock), seen


def test_a_pir_sensor_sees_every_crossing_at_the_simulated_time() -> None:
    crossings = [Crossing(_at(60 * n), 1.0 + n % 3) for n in range(1, 40)]
    scenario = Scenario(crossings, PirModel(fire_at=0.35, hold_s=2.5))
    pir, runner, seen = _rig(scenario)
    with pir:
        played = runner.run_until(_at(3600))
        assert pir.triggers == len(crossings) == len(seen)
        assert seen == [c.start + timedelta(seconds=0.35 * c.duration_s) for c in crossings]
        assert pir.last_trigger_at == seen[-1]
        assert len(played) == 2 * len(crossings) and runner.edges_driven == len(played)
        assert not pir.motion_detected and pir.bounces == 0
        assert all(0.0 <= (scenario.animal_in_view(t) or 0.0) < 0.5 for t in seen)


def test_with_false_triggers_the_sensor_counts_every_pulse() -> None:
    scenario = Scenario([Crossing(_at(1800), 1.2)], PirModel(false_triggers_per_hour=6, seed=5))
    pir, runner, _ = _rig(scenario)
    with pir:
        for _ in range(12):  # in twelve slices of ten minutes: slicing changes nothing
            runner.run_for(600)
        spells = scenario.pir_intervals(T0, _at(7200))
        assert pir.triggers == len([r for r, _ in spells if T0 < r <= _at(7200)])
        assert pir.triggers > 1
        assert pir.motion_detected == scenario.pir_active(_at(7200))


def test_the_runner_plays_the_same_edges_in_one_go_or_in_slices() -> None:
    scenario = Scenario([Crossing(_at(100), 2.0)], PirModel(false_triggers_per_hour=20, seed=9))
    whole = PirScenarioRunner(scenario, MockFactory().pin(17), SimClock(T0)).run_until(_at(7200))
    sliced_runner = PirScenarioRunner(scenario, MockFactory().pin(17), SimClock(T0))
    sliced: list[Edge] = []
    for _ in range(37):
        sliced += sliced_runner.run_for(7200 / 37)
    assert whole == sliced and whole
    assert [e.rising for e in whole] == [True, False] * (len(whole) // 2)


def test_an_active_low_sensor_is_played_inverted() -> None:
    scenario = Scenario([Crossing(_at(10), 1.0)])
    factory, clock = MockFactory(), SimClock(T0)
    pin = factory.pin(DEFAULT_PIR_PIN)
    with PirSensor(
        pin_factory=factory, active_high=False, clock=clock.monotonic, wall_clock=clock.now
    ) as pir:
        runner = PirScenarioRunner(scenario, pin, clock, active_high=False)
        runner.run_until(_at(10.5))
        assert pin.state is False and pir.motion_detected and pir.triggers == 1
