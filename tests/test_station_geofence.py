"""The station's geofence: the example reserve file, distances in metres, and boundary files that are
wrong in the ways people get them wrong."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from edge.config import StationSettings
from gateway.station.geo import LocalProjection, haversine_m
from gateway.station.geofence import Geofence, GeofenceError, parse_zones
from simulators.track import HELAN_BOX

EXAMPLE = Path(__file__).resolve().parent.parent / "deploy" / "reserve.example.geojson"


def square(lon: float, lat: float, half_deg: float) -> list[list[list[float]]]:
    w, e, s, n = lon - half_deg, lon + half_deg, lat - half_deg, lat + half_deg
    return [[[w, s], [e, s], [e, n], [w, n], [w, s]]]


def feature(name: str, kind: str, coords: Any, gtype: str = "Polygon") -> dict[str, Any]:
    return {
        "type": "Feature",
        "properties": {"name": name, "kind": kind},
        "geometry": {"type": gtype, "coordinates": coords},
    }


def collection(*features: dict[str, Any]) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": list(features)}


RESERVE = feature("Test reserve", "reserve", square(106.0, 38.85, 0.2))


@pytest.fixture(scope="module")
def example() -> Geofence:
    return Geofence.load(EXAMPLE, conflict_buffer_m=1000.0)


def test_example_file_names_a_reserve_and_places_near_its_edge(example: Geofence) -> None:
    kinds = {z.name: z.kind for z in example.zones}
    assert kinds["Helan Mountains reserve"] == "reserve"
    assert sorted(k for k in kinds.values() if k != "reserve") == ["camp", "camp", "village"]
    west, south, east, north = example.bounds
    assert west < HELAN_BOX.west + 0.05 and east > HELAN_BOX.east - 0.05
    assert south < HELAN_BOX.south + 0.05 and north > HELAN_BOX.north - 0.05


def test_example_reserve_holds_most_of_the_simulated_study_area(example: Geofence) -> None:
    box = HELAN_BOX
    grid = [
        (
            box.south + (i + 0.5) / 40 * (box.north - box.south),
            box.west + (j + 0.5) / 20 * (box.east - box.west),
        )
        for i in range(40)
        for j in range(20)
    ]
    inside = sum(example.check(lat, lon).inside_reserve for lat, lon in grid)
    assert inside / len(grid) > 0.75
    # Simulated leopards start in the middle 60 % of the box (simulators.track.random_start).
    middle = [
        (
            box.south + (0.2 + 0.6 * i / 10) * (box.north - box.south),
            box.west + (0.2 + 0.6 * j / 10) * (box.east - box.west),
        )
        for i in range(11)
        for j in range(11)
    ]
    assert all(example.check(lat, lon).inside_reserve for lat, lon in middle)
    # ... and the desert foot in the south-east corner is outside.
    corner = example.check(box.south + 0.01, box.east - 0.01)
    assert (
        not corner.inside_reserve and corner.reserve == "Helan Mountains reserve" and corner.outside_m > 1000
    )


def test_a_fix_in_a_village_and_one_near_it(example: Geofence) -> None:
    inside = example.check(38.720, 106.184)
    assert inside.conflict is not None
    assert (inside.conflict.name, inside.conflict.kind, inside.conflict.inside) == (
        "Suyukou village",
        "village",
        True,
    )
    assert inside.conflict.distance_m == 0.0

    near = example.check(38.720, 106.170)
    assert near.inside_reserve and near.conflict is not None and not near.conflict.inside
    assert 0 < near.conflict.distance_m < 1000
    assert example.check(38.85, 106.0).conflict is None


def test_distances_are_metres_on_the_ground(example: Geofence) -> None:
    """The flat map's distance to the village edge against great-circle metres to points along it."""
    village = next(z for z in example.zones if z.name == "Suyukou village").geometry
    edge = [village.exterior.interpolate(f, normalized=True) for f in (k / 4000 for k in range(4000))]
    for lat, lon in [(38.720, 106.170), (38.712, 106.181), (38.729, 106.195), (38.7205, 106.1925)]:
        hit = example.check(lat, lon).conflict
        assert hit is not None
        truth = min(haversine_m(lat, lon, p.y, p.x) for p in edge)
        assert hit.distance_m == pytest.approx(truth, rel=0.01, abs=2.0)


def test_the_buffer_edge_is_exact_not_the_buffer_polygons_chords() -> None:
    village = feature("Corner village", "village", square(106.1, 38.7, 0.002))
    fence = Geofence(parse_zones(collection(RESERVE, village)), conflict_buffer_m=1000.0)
    proj = fence.projection
    # Diagonally off the village's north-east corner, where a buffer polygon's round corner is a chord.
    cx, cy = proj.to_xy(38.702, 106.102)
    for metres, expected in [(995.0, True), (1005.0, False)]:
        lat, lon = proj.to_latlon(cx + metres / math.sqrt(2), cy + metres / math.sqrt(2))
        hit = fence.check(lat, lon).conflict
        assert (hit is not None) is expected
        if hit is not None:
            assert hit.distance_m == pytest.approx(metres, abs=0.5)


def test_the_nearest_of_two_zones_is_named() -> None:
    a = feature("Upper camp", "camp", square(106.10, 38.70, 0.001))
    b = feature("Lower village", "village", square(106.11, 38.70, 0.001))
    fence = Geofence(parse_zones(collection(RESERVE, a, b)), conflict_buffer_m=1500.0)
    hit = fence.check(38.70, 106.107)
    assert hit.conflict is not None and hit.conflict.name == "Lower village"
    hit = fence.check(38.70, 106.103)
    assert hit.conflict is not None and hit.conflict.name == "Upper camp"


def test_a_hole_in_the_reserve_is_outside_it_and_two_reserves_both_count() -> None:
    outer = square(106.0, 38.85, 0.2)[0]
    hole = list(reversed(square(106.0, 38.85, 0.02)[0]))
    holed = feature("Holed reserve", "reserve", [outer, hole])
    extra = feature("Annex", "reserve", [square(106.5, 38.85, 0.05)], gtype="MultiPolygon")
    fence = Geofence(parse_zones(collection(holed, extra)))
    assert not fence.check(38.85, 106.0).inside_reserve
    assert fence.check(38.85, 106.1).inside_reserve
    annex = fence.check(38.85, 106.5)
    assert annex.inside_reserve and annex.reserve == "Annex"
    gap = fence.check(38.85, 106.3)
    assert not gap.inside_reserve and gap.outside_m > 0


def test_geojson_round_trips_and_settings_pick_the_file(example: Geofence) -> None:
    again = parse_zones(json.loads(json.dumps(example.geojson())))
    assert [(z.name, z.kind) for z in again] == [(z.name, z.kind) for z in example.zones]
    assert Geofence.from_settings(StationSettings()) is None
    fence = Geofence.from_settings(StationSettings(boundary=str(EXAMPLE), conflict_buffer_m=250.0))
    assert fence is not None and fence.conflict_buffer_m == 250.0
    assert fence.check(38.720, 106.170).conflict is None  # 787 m from the village: outside a 250 m buffer


def test_local_projection_round_trips() -> None:
    proj = LocalProjection(38.85, 106.0)
    x, y = proj.to_xy(38.9, 106.05)
    lat, lon = proj.to_latlon(x, y)
    assert (lat, lon) == pytest.approx((38.9, 106.05))
    assert proj.distance_m(38.85, 106.0, 38.9, 106.05) == pytest.approx(
        haversine_m(38.85, 106.0, 38.9, 106.05), rel=0.002
    )


BOWTIE = [[[106.0, 38.7], [106.01, 38.71], [106.01, 38.7], [106.0, 38.71], [106.0, 38.7]]]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{not json", "not valid JSON (line 1"),
        (
            json.dumps({"type": "Polygon", "coordinates": square(106.0, 38.8, 0.1)}),
            "expected a GeoJSON FeatureCollection",
        ),
        (json.dumps(collection()), "has no features"),
        (
            json.dumps(
                collection(RESERVE, feature("Track", "village", [[106.0, 38.7], [106.1, 38.8]], "LineString"))
            ),
            "feature 2 of 2 ('Track'): the geometry is LineString, not a Polygon or MultiPolygon",
        ),
        (
            json.dumps(collection(RESERVE, feature("Dawukou", "town", square(106.3, 39.0, 0.01)))),
            "feature 2 of 2 ('Dawukou'): properties.kind is 'town'; use one of 'reserve', 'village', 'camp'",
        ),
        (
            json.dumps(collection({**RESERVE, "properties": {"kind": "reserve"}})),
            "feature 1 of 1: properties.name is missing",
        ),
        (
            json.dumps(
                collection(
                    feature(
                        "Swapped", "reserve", [[[38.7, 106.0], [38.8, 106.0], [38.8, 106.1], [38.7, 106.0]]]
                    )
                )
            ),
            "position [38.7, 106.0] is out of range: longitude must be -180..180 and latitude -90..90 (GeoJSON is"
            " [lon, lat]: are they swapped?)",
        ),
        (
            json.dumps(collection(RESERVE, feature("Bowtie camp", "camp", BOWTIE))),
            "feature 2 of 2 ('Bowtie camp'): the boundary crosses itself near lon 106.00500, lat 38.70500",
        ),
        (
            json.dumps(collection(feature("Lonely village", "village", square(106.0, 38.8, 0.01)))),
            "no feature with properties.kind 'reserve'",
        ),
        (
            json.dumps(collection(RESERVE, feature("Test reserve", "camp", square(106.0, 38.8, 0.01)))),
            "features 1 and 2: both are named 'Test reserve'",
        ),
        (
            json.dumps(
                collection(feature("Sliver", "reserve", [[[106.0, 38.7], [106.1, 38.7], [106.0, 38.7]]]))
            ),
            "a ring has 2 distinct position(s)",
        ),
        (
            json.dumps(
                collection(feature("Texty", "reserve", [[["106.0", "38.7"], [106.1, 38.7], [106.1, 38.8]]]))
            ),
            "position ['106.0', '38.7'] is not a [lon, lat] pair of numbers",
        ),
    ],
)
def test_bad_boundary_files_say_what_to_fix(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "boundary.geojson"
    path.write_text(content)
    with pytest.raises(GeofenceError) as err:
        Geofence.load(path)
    assert str(path) in str(err.value)
    assert expected in str(err.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(GeofenceError, match="cannot read it"):
        Geofence.load(tmp_path / "nowhere.geojson")
