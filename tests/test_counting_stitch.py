"""CountingLine track stitching: a new ID continues a recently lost track (LineRules.stitch_*).

Line ``(0, 100) -> (200, 100)``: moving up through it is IN. Boxes are 10 px wide and 20 px tall
with the given bottom-centre, so ``LineRules.robust_stitched()`` bridges jumps of at most
``0.5 * 20 = 10`` px and gaps of at most 0.5 s (5 frames at the 10 fps used here).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pytest
import supervision as sv

from app.counting import CountingLine, Direction, LineRules

LINE = ((0.0, 100.0), (200.0, 100.0))
STITCHED = LineRules.robust_stitched()
FPS = 10.0

# One frame: track_id -> (x, y, class_id); absent IDs are not in it.
Frame = dict[int, tuple[float, float, int]]


def frames(track_id: int, *ys: float | None, x: float = 100.0, class_id: int = 0) -> list[Frame]:
    return [{} if y is None else {track_id: (x, y, class_id)} for y in ys]


def merge(*sequences: list[Frame]) -> list[Frame]:
    """Overlay several per-track frame lists (same length) into one."""
    length = max(len(s) for s in sequences)
    out: list[Frame] = [{} for _ in range(length)]
    for seq in sequences:
        for i, frame in enumerate(seq):
            out[i].update(frame)
    return out


def detections(frame: Frame) -> sv.Detections:
    if not frame:
        return sv.Detections.empty()
    ids = sorted(frame)
    xyxy = np.array([[frame[i][0] - 5, frame[i][1] - 20, frame[i][0] + 5, frame[i][1]] for i in ids])
    return sv.Detections(
        xyxy=xyxy.astype(np.float32),
        class_id=np.array([frame[i][2] for i in ids], dtype=np.int64),
        tracker_id=np.array(ids, dtype=np.int64),
    )


def run(rules: LineRules, sequence: list[Frame]) -> tuple[CountingLine, list]:
    line = CountingLine(*LINE, name="a", rules=rules, class_names=["person", "car"])
    events = []
    for index, frame in enumerate(sequence):
        events += line.update(detections(frame), index / FPS, index)
    return line, events


# Track 1 walks up to 4 px below the line and is lost; track 2 appears 8 px away, above it.
FRAGMENTED = frames(1, 130, 120, 110, 104, None, None) + frames(2, 96, 88, 80, 72, 64)


@dataclass
class Scenario:
    name: str
    sequence: list[Frame]
    stitched: tuple[int, int]  # (in, out) with robust_stitched()
    unstitched: tuple[int, int]  # (in, out) with robust() (same jitter rules, no stitching)


SCENARIOS = [
    Scenario("fragmented crossing counted once", FRAGMENTED, (1, 0), (0, 0)),
    Scenario(
        "old ID revived after its successor counted: not counted again",
        merge(FRAGMENTED + [{}] * 3, [{}] * 12 + frames(1, 60, 55, 50, 45)),
        (1, 0),
        (1, 0),  # without stitching the revived ID 1 counts the crossing itself
    ),
    Scenario(
        "old ID revived and both walk on: still one count",
        merge(FRAGMENTED + frames(2, 56, 48, 40), [{}] * 11 + frames(1, 60, 52, 44, 36, x=104.0)),
        (1, 0),
        (1, 0),
    ),
    Scenario(
        "new ID far away (80 px) is not stitched",
        frames(1, 130, 120, 110, 104, None, None) + frames(2, 96, 88, 80, 72, 64, x=180.0),
        (0, 0),
        (0, 0),
    ),
    Scenario(
        "new ID after a gap longer than 0.5 s is not stitched",
        frames(1, 130, 120, 110, 104) + [{}] * 7 + frames(2, 96, 88, 80, 72, 64),
        (0, 0),
        (0, 0),
    ),
    Scenario(
        "new ID of another class is not stitched",
        frames(1, 130, 120, 110, 104, None, None) + frames(2, 96, 88, 80, 72, 64, class_id=1),
        (0, 0),
        (0, 0),
    ),
    Scenario(
        "a track still present is not a candidate",
        merge(frames(1, 130, 120, 110, 104, 104, 104, 104, 104, 104, 104, 104),
              [{}] * 6 + frames(2, 96, 88, 80, 72, 64)),
        (0, 0),
        (0, 0),
    ),
    Scenario(
        "new ID beyond the line after a counted crossing counts nothing",
        frames(1, 130, 120, 110, 90, 80, 70, 66, None) + frames(2, 60, 58, 56, 54),
        (1, 0),
        (1, 0),
    ),
    Scenario(
        "stitched track that really comes back counts the return",
        FRAGMENTED + frames(2, 80, 96, 110, 120, 130, 140),
        (1, 1),
        (0, 1),  # without stitching ID 2 is born above the line: only its return counts
    ),
    Scenario(
        "a lost track is continued by one new ID only",
        frames(1, 130, 120, 110, 104, None, None)
        + merge(frames(2, 96, 88, 80, 72, 64), frames(3, 97, 89, 81, 73, 65, x=104.0)),
        (1, 0),
        (0, 0),
    ),
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_stitching_scenarios(scenario: Scenario) -> None:
    robust = LineRules.robust()
    assert replace(STITCHED, stitch_max_gap_s=0.0) == robust  # only stitching differs
    for rules, expected in ((STITCHED, scenario.stitched), (robust, scenario.unstitched)):
        line, events = run(rules, scenario.sequence)
        assert (line.in_count, line.out_count) == expected, rules
        assert [e.direction for e in events].count(Direction.IN) == expected[0]
        assert [e.direction for e in events].count(Direction.OUT) == expected[1]


def test_stitched_event_carries_the_new_id_the_old_crossing_frame_and_inherited_class() -> None:
    # Old ID: four "car" boxes up to 4 px below the line, lost for one frame; the new ID's first
    # box is a car, then its class flickers to "person" for three frames. Its own majority would
    # be "person"; with the inherited votes (car 5, person 3) it is "car".
    sequence = (
        frames(1, 130, 120, 110, 104, class_id=1)
        + [{}]
        + frames(2, 96, class_id=1)
        + frames(2, 88, 80, 72, class_id=0)
    )
    _, events = run(STITCHED, sequence)
    assert len(events) == 1
    event = events[0]
    assert (event.track_id, event.direction, event.class_name) == (2, Direction.IN, "car")
    assert event.frame_index == 5  # first observation of ID 2, above the line


def test_default_and_robust_rules_do_not_stitch() -> None:
    assert not LineRules().stitching and not LineRules.robust().stitching
    assert LineRules.robust_stitched().stitching
    line, _ = run(LineRules(), FRAGMENTED)  # exact rules: ID 2 is born above, nothing crossed
    assert (line.in_count, line.out_count) == (0, 0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"stitch_max_gap_s": -1.0}, "stitch_max_gap_s"),
        ({"stitch_max_gap_s": float("inf")}, "stitch_max_gap_s"),
        ({"stitch_max_distance_heights": 0.0}, "stitch_max_distance_heights"),
        ({"stitch_max_distance_heights": float("nan")}, "stitch_max_distance_heights"),
    ],
)
def test_invalid_stitch_rules(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LineRules(**kwargs)
