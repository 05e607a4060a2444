"""The counting engine of one camera (app/counting/engine.py), without threads or a pipeline:
counters built on the first frame, and what edits do to the counts."""

from __future__ import annotations

import numpy as np
import pytest
import supervision as sv

from app.counting import (
    CountingConfig,
    CountingEngine,
    CountingSetupError,
    Direction,
    DuplicateNameError,
    LineCounts,
    LineRules,
    LineSpec,
    ZoneCounts,
    ZoneSpec,
)

FRAME_WH = (200, 200)
ROAD = LineSpec("road", (0.0, 100.0), (200.0, 100.0))
ROAD_MOVED = LineSpec("road", (0.0, 120.0), (200.0, 120.0))
ZONE = ZoneSpec("box", ((50.0, 50.0), (150.0, 50.0), (150.0, 150.0), (50.0, 150.0)))


def one_car(y_bottom: float, track_id: int = 7) -> sv.Detections:
    """One tracked car whose box bottom centre is at (100, ``y_bottom``)."""
    return sv.Detections(
        xyxy=np.array([[90.0, y_bottom - 20.0, 110.0, y_bottom]], dtype=np.float32),
        confidence=np.array([0.9], dtype=np.float32),
        class_id=np.array([2]),
        tracker_id=np.array([track_id]),
        data={"class_name": np.array(["car"])},
    )


def drive(engine: CountingEngine, ys: list[float], start: int = 0) -> list:
    events = []
    for i, y in enumerate(ys, start=start):
        events.extend(engine.update(one_car(y), timestamp_s=i / 10, frame_index=i, frame_wh=FRAME_WH))
    return events


# bottom centre moving down the image across a left-to-right line: an "out" crossing
DOWN = [60.0, 70.0, 80.0, 90.0, 105.0, 115.0, 125.0, 135.0, 140.0]


def test_counters_are_built_on_the_first_frame_and_count_a_crossing():
    engine = CountingEngine(CountingConfig(lines=(ROAD,)), line_rules=LineRules.exact())
    assert engine.lines == ()
    events = drive(engine, DOWN)
    assert [(e.zone, e.direction, e.class_name) for e in events] == [("road", Direction.OUT, "car")]
    lines, zones = engine.readouts()
    assert lines == (LineCounts("road", (0.0, 100.0), (200.0, 100.0), 0, 1, {"car": (0, 1)}),)
    assert zones == ()


def test_an_unchanged_line_keeps_its_counts_and_a_moved_one_starts_from_zero():
    engine = CountingEngine(CountingConfig(lines=(ROAD,)), line_rules=LineRules.exact())
    drive(engine, DOWN)
    engine.set_configs(CountingConfig(lines=(ROAD,)))
    drive(engine, [140.0], start=len(DOWN))
    assert engine.readouts()[0][0].out_count == 1 and engine.changes == 1
    engine.set_configs(CountingConfig(lines=(ROAD_MOVED,)))
    drive(engine, [140.0], start=len(DOWN) + 1)
    assert engine.readouts()[0][0].out_count == 0 and engine.lines[0].start == (0.0, 120.0)


def test_a_removed_zone_reports_the_exits_of_the_objects_inside():
    engine = CountingEngine(CountingConfig(zones=(ZONE,)))
    enters = drive(engine, [100.0] * 6)
    assert [e.direction for e in enters] == [Direction.ENTER]
    engine.set_configs(None)
    exits = engine.update(one_car(100.0), timestamp_s=1.0, frame_index=6, frame_wh=FRAME_WH)
    assert [(e.zone, e.direction, e.track_id) for e in exits] == [("box", Direction.EXIT, 7)]
    assert engine.zones == () and engine.readouts() == ((), ())


def test_finish_reports_exits_at_the_end_of_the_stream():
    engine = CountingEngine(CountingConfig(zones=(ZONE,)))
    drive(engine, [100.0] * 6)
    assert isinstance(engine.readouts()[1][0], ZoneCounts) and engine.readouts()[1][0].occupancy == 1
    assert [e.direction for e in engine.finish()] == [Direction.EXIT]


def test_duplicate_names_are_refused_at_construction_and_on_edit():
    with pytest.raises(DuplicateNameError, match="'road' is used twice"):
        CountingEngine([CountingConfig(lines=(ROAD,)), CountingConfig(lines=(ROAD_MOVED,))])
    engine = CountingEngine()
    with pytest.raises(DuplicateNameError):
        engine.set_configs([CountingConfig(lines=(ROAD,)), CountingConfig(lines=(ROAD,))])
    with pytest.raises(CountingSetupError, match="CountingConfig"):
        engine.set_configs(["road"])  # type: ignore[list-item]
