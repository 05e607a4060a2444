"""CountingZone: enter/exit events, occupancy per class, dwell time, absence and eviction."""

from __future__ import annotations

import numpy as np
import pytest
import supervision as sv

from app.counting import CountEvent, CountingZone, Direction, ZoneRules

SQUARE = [(0.0, 0.0), (100.0, 0.0), (100.0, 100.0), (0.0, 100.0)]
EXACT = ZoneRules.exact()  # the default is ZoneRules.robust(); most scenarios test the plain rule
NAMES = {0: "person", 1: "car"}

Frame = dict[int, tuple[float, float]]


def frame_of(anchors: Frame, classes: dict[int, int] | None = None) -> sv.Detections:
    ids = sorted(anchors)
    if not ids:
        return sv.Detections.empty()
    xyxy = np.array(
        [[anchors[i][0] - 5, anchors[i][1] - 20, anchors[i][0] + 5, anchors[i][1]] for i in ids],
        dtype=np.float32,
    )
    return sv.Detections(
        xyxy=xyxy,
        class_id=np.array([(classes or {}).get(i, 0) for i in ids]),
        tracker_id=np.array(ids),
    )


def feed(zone: CountingZone, frames: list[Frame], fps: float = 10.0) -> list[CountEvent]:
    events: list[CountEvent] = []
    for index, anchors in enumerate(frames):
        events += zone.update(frame_of(anchors), index / fps, index)
    return events


def xs(track_id: int, *values: float | None, y: float = 50.0) -> list[Frame]:
    return [{} if x is None else {track_id: (x, y)} for x in values]


@pytest.mark.parametrize(
    ("name", "frames", "rules", "expected"),
    [
        ("walk through", xs(1, -20, 10, 50, 90, 120), EXACT, [("enter", 1), ("exit", 4)]),
        ("stay outside", xs(1, -50, -20, -1, -30), EXACT, []),
        ("born inside", xs(1, 50, 60), EXACT, [("enter", 0)]),
        ("boundary point has no side", xs(1, -10, 0, -10), EXACT, []),
        (
            "jitter on the boundary, exact",
            xs(1, -20, 1, -1, 2, -2, -30),
            EXACT,
            [("enter", 1), ("exit", 2), ("enter", 3), ("exit", 4)],
        ),
        (
            "jitter on the boundary, robust",
            xs(1, -20, 1, -1, 2, -2, 3, -30, -40),
            ZoneRules.robust(),
            [],
        ),
        (
            "robust enter is stamped with the first inside observation",
            xs(1, -20, 10, 20, 30, 40, 50),
            ZoneRules.robust(),
            [("enter", 1)],
        ),
        (
            "occlusion inside does not exit",
            xs(1, -20, 20, None, None, None, 60, 120),
            EXACT,
            [("enter", 1), ("exit", 6)],
        ),
        (
            "jumping over the zone between frames is not seen",
            xs(1, -20, 130),
            EXACT,
            [],
        ),
    ],
)
def test_zone_scenarios(name: str, frames: list[Frame], rules: ZoneRules, expected: list) -> None:
    zone = CountingZone(SQUARE, "z", rules=rules)
    events = feed(zone, frames)
    assert [(e.direction.value, e.frame_index) for e in events] == expected
    assert all(e.zone == "z" and e.track_id == 1 for e in events)


def test_dwell_time_and_counts() -> None:
    zone = CountingZone(SQUARE, "z", rules=EXACT, class_names=NAMES)
    events = feed(zone, xs(1, -20, 10, 50, 90, 120), fps=4.0)
    assert events == [
        CountEvent(0.25, 1, "z", 1, "person", Direction.ENTER),
        CountEvent(1.0, 4, "z", 1, "person", Direction.EXIT, dwell_s=0.75),
    ]
    assert (zone.enter_count, zone.exit_count) == (1, 1)
    assert zone.class_enter_count == {"person": 1} and zone.class_exit_count == {"person": 1}


def test_occupancy_per_class_and_current_dwell() -> None:
    zone = CountingZone(SQUARE, "z", rules=EXACT, class_names=NAMES)
    classes = {1: 0, 2: 1, 3: 1, 4: 0}
    zone.update(frame_of({1: (10, 10), 2: (50, 50), 3: (200, 50)}, classes), 0.0)
    zone.update(frame_of({1: (20, 10), 2: (50, 60), 3: (90, 50), 4: (-5, 5)}, classes), 2.0)
    assert zone.occupancy_by_class() == {"person": 1, "car": 2}
    assert zone.occupancy == 3
    assert zone.current_dwell_s() == {1: 2.0, 2: 2.0, 3: 0.0}
    # Track 2 is occluded: still inside (no exit) but not counted as present.
    events = zone.update(frame_of({1: (20, 10), 3: (90, 50)}, classes), 3.0)
    assert events == []
    assert zone.occupancy_by_class() == {"person": 1, "car": 1}


def test_occupancy_uses_majority_class() -> None:
    zone = CountingZone(SQUARE, "z", rules=EXACT, class_names=NAMES)
    for i, c in enumerate([1, 1, 0, 1, 0]):
        zone.update(frame_of({1: (50, 50)}, {1: c}), float(i))
    assert zone.occupancy_by_class() == {"car": 1}


def test_eviction_inside_emits_exit_at_last_sighting() -> None:
    zone = CountingZone(SQUARE, "z", rules=EXACT, max_absent_s=1.0)
    zone.update(frame_of({1: (50, 50)}), 0.0, 0)
    zone.update(frame_of({1: (60, 50)}), 0.5, 1)
    assert zone.update(frame_of({}), 1.4, 2) == []  # absent 0.9 s: kept
    (event,) = zone.update(frame_of({}), 1.6, 3)  # absent 1.1 s: evicted
    assert event == CountEvent(0.5, 1, "z", 1, "0", Direction.EXIT, dwell_s=0.5)
    # The same ID coming back is a new visit.
    (enter,) = zone.update(frame_of({1: (60, 50)}), 2.0, 4)
    assert enter.direction is Direction.ENTER and enter.timestamp_s == 2.0


def test_finish_exits_every_track_inside() -> None:
    zone = CountingZone(SQUARE, "z", rules=EXACT)
    zone.update(frame_of({1: (50, 50), 2: (150, 50)}), 0.0, 0)
    zone.update(frame_of({1: (55, 50), 2: (150, 50), 3: (10, 10)}), 1.0, 1)
    events = zone.finish()
    assert sorted((e.track_id, e.direction.value, e.dwell_s) for e in events) == [
        (1, "exit", 1.0),
        (3, "exit", 0.0),
    ]
    assert zone.occupancy == 0 and zone.finish() == []


def test_concave_polygon_uses_even_odd_inside_test() -> None:
    l_shape = [(0, 0), (100, 0), (100, 40), (40, 40), (40, 100), (0, 100)]
    zone = CountingZone(l_shape, "l", rules=EXACT)
    zone.update(frame_of({1: (20, 80), 2: (80, 80), 3: (80, 20)}), 0.0)
    assert zone.current_dwell_s() == {1: 0.0, 3: 0.0}  # (80, 80) is in the notch


def test_state_stays_bounded() -> None:
    zone = CountingZone(SQUARE, "z", rules=EXACT, max_absent_s=0.5)
    for index in range(3000):
        zone.update(frame_of({index: (50, 50)}), index / 10, index)  # a new ID every frame
        assert len(zone.tracked_ids) <= 7
    assert zone.enter_count == 3000 and zone.exit_count == 3000 - 6


@pytest.mark.parametrize(
    ("polygon", "message"),
    [
        ([(0, 0), (1, 1)], r"shape \(m >= 3, 2\)"),
        ([(0, 0), (1, 1), (2, 2)], "zero area"),
        ([(0, 0), (10, 10), (10, 0), (0, 10)], r"zone 'z': polygon is self-intersecting"),
        ([(0, 0), (1, float("nan")), (2, 0)], "non-finite"),
        ("abc", "polygon"),
    ],
)
def test_invalid_polygons(polygon: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CountingZone(polygon, "z")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hysteresis_px": -1.0}, "hysteresis_px"),
        ({"confirm_observations": 0}, "confirm_observations"),
    ],
)
def test_invalid_zone_rules(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ZoneRules(**kwargs)


def test_untracked_detections_are_refused() -> None:
    zone = CountingZone(SQUARE, "z", rules=EXACT)
    with pytest.raises(ValueError, match="tracker_id is None"):
        zone.update(sv.Detections(xyxy=np.array([[0, 0, 1, 1]], np.float32)), 0.0)


def test_default_rules_are_robust_and_presets_are_one_argument_away() -> None:
    assert CountingZone(SQUARE, "z").rules == ZoneRules.robust()
    assert CountingZone(SQUARE, "z", rules="exact").rules == ZoneRules.exact() == ZoneRules()
    jitter = xs(1, -20, 1, -1, 2, -2, 3, -30, -40)
    assert feed(CountingZone(SQUARE, "z"), jitter) == []
    assert len(feed(CountingZone(SQUARE, "z", rules="exact"), jitter)) == 6
    with pytest.raises(ValueError, match=r"zone 'z': rules must be a ZoneRules or one of 'exact'"):
        CountingZone(SQUARE, "z", rules="loose")


def test_self_intersecting_polygon_with_area_is_kept_with_a_warning(caplog) -> None:
    with caplog.at_level("WARNING", logger="app.counting"):
        zone = CountingZone([(0, 0), (100, 0), (100, 100), (50, -50), (0, 100)], "bent")
    assert "zone 'bent': polygon is self-intersecting (edge 0-1 meets edge 2-3)" in caplog.text
    assert len(zone.polygon) == 5
