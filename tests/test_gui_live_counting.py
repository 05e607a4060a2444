"""Lines and zones changed while the pipeline runs (``Pipeline.set_counting``).

Real frames (the PETS09-S2L1 clip) with ground-truth boxes as detections give real crossings;
each run is compared with the same stages run by hand in a plain loop.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from gui_support import ReplayDetector, pets_ground_truth, pets_video

from app.counting import (
    CountEvent,
    CountingConfig,
    CountingLine,
    CountingZone,
    Direction,
    LineRules,
    LineSpec,
    ZoneRules,
    ZoneSpec,
)
from app.pipeline import Pipeline, PipelineConfig, PipelineConfigError
from app.sources import open_source
from tracker import ByteTrack

FRAMES = 260
H = LineSpec("h", (0.0, 180.0), (480.0, 180.0))
V = LineSpec("v", (240.0, 0.0), (240.0, 360.0))
V_MOVED = LineSpec("v", (160.0, 0.0), (160.0, 360.0))
ZONE = ZoneSpec("z", ((100.0, 150.0), (380.0, 150.0), (380.0, 300.0), (100.0, 300.0)))


def run_with_change(initial: CountingConfig, change_at: int | None, new: CountingConfig | None):  # noqa: ANN201
    """Run the pipeline; during frame ``change_at``'s detection (inference thread) hand over
    ``new``, which therefore applies from frame ``change_at + 1``. Returns (events, report)."""
    source = open_source(pets_video())
    replay = ReplayDetector(pets_ground_truth())
    holder: dict[str, Pipeline] = {}
    calls = [0]

    def detect(image: np.ndarray):  # noqa: ANN202
        if calls[0] == change_at:
            holder["pipeline"].set_counting(new)
        calls[0] += 1
        return replay(image)

    pipeline = Pipeline(source, detect, ByteTrack(frame_rate=source.fps), counting=initial,
                                        config=PipelineConfig(max_frames=FRAMES))
    holder["pipeline"] = pipeline
    # the plain loop of reference() has no clock: compare without the wall time
    events = [dataclasses.replace(event, wall_time=None) for result in pipeline.results() for event in result.events]
    return events, pipeline.report


def reference(schedule) -> list[CountEvent]:  # noqa: ANN001
    """The same tracker and counters in a plain loop. ``schedule(frame_index)`` lists the
    counters that see that frame, in the pipeline's order (lines, then zones)."""
    boxes = pets_ground_truth()
    source = open_source(pets_video())
    tracker = ByteTrack(frame_rate=source.fps)
    events: list[CountEvent] = []
    try:
        for frame in source:
            if frame.index >= FRAMES:
                break
            tracks = tracker.update(boxes[frame.index], timestamp_s=frame.timestamp_s)
            for counter in schedule(frame.index):
                events.extend(counter.update(tracks, frame.timestamp_s, frame.index))
    finally:
        source.close()
    return events


def line(spec: LineSpec) -> CountingLine:
    return CountingLine(spec.start, spec.end, spec.name, rules=LineRules.robust())


def test_unchanged_line_keeps_its_counts_and_a_moved_line_restarts() -> None:
    change_at = 150
    events, report = run_with_change(CountingConfig(lines=(H, V)), change_at, CountingConfig(lines=(H, V_MOVED)))
    h, v_old, v_new = line(H), line(V), line(V_MOVED)
    expected = reference(lambda i: (h, v_old) if i <= change_at else (h, v_new))

    assert report.status == "finished"
    assert sum(e.zone == "h" for e in expected) >= 3 and sum(e.zone == "v" for e in expected) >= 3
    assert any(e.zone == "v" and e.frame_index > change_at for e in expected)  # the moved line counts
    assert events == expected
    final = {c.name: (c.in_count, c.out_count) for c in report.lines}
    assert final == {"h": (h.in_count, h.out_count), "v": (v_new.in_count, v_new.out_count)}


def test_removed_zone_reports_the_exits_of_objects_inside() -> None:
    change_at = 120
    events, report = run_with_change(CountingConfig(lines=(H,), zones=(ZONE,)), change_at, CountingConfig(lines=(H,)))
    zone_events = [e for e in events if e.zone == "z"]
    enters = [e for e in zone_events if e.direction is Direction.ENTER]
    exits = [e for e in zone_events if e.direction is Direction.EXIT]

    reference_zone = CountingZone(ZONE.polygon, "z", rules=ZoneRules.robust())
    reference(lambda i: (reference_zone,) if i <= change_at else ())
    inside_at_removal = sum(reference_zone.occupancy_by_class().values())
    assert inside_at_removal >= 1  # the test means something: people were inside
    assert len(enters) == len(exits) >= inside_at_removal
    assert max(e.frame_index for e in zone_events) <= change_at
    assert [z.name for z in report.zones] == []


def test_counting_set_before_the_first_frame_replaces_the_initial_one() -> None:
    source = open_source(pets_video())
    pipeline = Pipeline(source, ReplayDetector(pets_ground_truth()), ByteTrack(frame_rate=source.fps),
                                        counting=CountingConfig(lines=(H,)), config=PipelineConfig(max_frames=FRAMES))
    pipeline.set_counting(CountingConfig(lines=(V,)))
    events = [dataclasses.replace(event, wall_time=None) for result in pipeline.results() for event in result.events]
    v = line(V)
    assert events == reference(lambda i: (v,))
    assert [c.name for c in pipeline.report.lines] == ["v"]


@pytest.mark.parametrize(
    ("counting", "message"),
    [
        ((CountingConfig(lines=(H,)), CountingConfig(lines=(H,))), "'h' is used twice"),
        (("not a config",), "must hold CountingConfig objects"),
    ],
)
def test_invalid_counting_is_refused_at_once(counting, message: str) -> None:  # noqa: ANN001
    source = open_source(pets_video())
    try:
        pipeline = Pipeline(source, ReplayDetector({}), ByteTrack(frame_rate=10))
        with pytest.raises(PipelineConfigError, match=message):
            pipeline.set_counting(counting)
    finally:
        source.close()
