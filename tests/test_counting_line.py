"""CountingLine: crossing rules, hysteresis, endpoints, state lifetime, classes, validation.

Most scenarios use the horizontal line ``(0, 100) -> (200, 100)``. Its side value
``cross(end - start, p - start)`` is positive *below* the line (y > 100, image y points down), so
moving up through it is IN and moving down is OUT. Tracks are boxes 10 px wide and 20 px tall
whose bottom-centre (the default anchor) is the given point.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
import supervision as sv
from hypothesis import given, settings
from hypothesis import strategies as st

from app.counting import Anchor, CountEvent, CountingLine, Direction, LineRules

H_LINE = ((0.0, 100.0), (200.0, 100.0))
EXACT = LineRules.exact()
ROBUST = LineRules.robust()

Frame = dict[int, tuple[float, float]]  # track_id -> anchor (x, y); absent IDs are not in it


def frame_of(anchors: Frame, classes: dict[int, int] | None = None, height: float = 20.0) -> sv.Detections:
    ids = sorted(anchors)
    if not ids:
        return sv.Detections.empty()
    xyxy = np.array(
        [[anchors[i][0] - 5, anchors[i][1] - height, anchors[i][0] + 5, anchors[i][1]] for i in ids],
        dtype=np.float32,
    )
    class_id = np.array([(classes or {}).get(i, 0) for i in ids], dtype=np.int64)
    return sv.Detections(xyxy=xyxy, class_id=class_id, tracker_id=np.array(ids, dtype=np.int64))


def path(track_id: int, *ys: float | None, x: float = 100.0) -> list[Frame]:
    """One track moving vertically at ``x``; ``None`` = absent in that frame."""
    return [{} if y is None else {track_id: (x, y)} for y in ys]


def run(line: CountingLine, frames: list[Frame], fps: float = 10.0) -> list[CountEvent]:
    events: list[CountEvent] = []
    for index, anchors in enumerate(frames):
        events += line.update(frame_of(anchors), timestamp_s=index / fps, frame_index=index)
    return events


@dataclass
class Scenario:
    name: str
    frames: list[Frame]
    expected_in: int
    expected_out: int
    rules: LineRules = EXACT
    line: tuple[tuple[float, float], tuple[float, float]] = H_LINE
    options: dict = field(default_factory=dict)


SCENARIOS = [
    # Direction sign convention.
    Scenario("up through a left-to-right line is IN", path(1, 150, 120, 90, 60), 1, 0),
    Scenario("down through a left-to-right line is OUT", path(1, 60, 90, 120, 150), 0, 1),
    Scenario(
        "up through a right-to-left line is OUT",
        path(1, 150, 120, 90, 60),
        0,
        1,
        line=((200.0, 100.0), (0.0, 100.0)),
    ),
    Scenario(
        "left to right through a downward vertical line is IN",
        [{1: (x, 50.0)} for x in (60, 90, 110, 140)],
        1,
        0,
        line=((100.0, 0.0), (100.0, 200.0)),
    ),
    Scenario("no crossing, no count", path(1, 150, 130, 110, 101, 130), 0, 0),
    # Jitter at the line: exact rules count every side change, robust rules none of them.
    Scenario(
        "jitter about the line then back, exact",
        path(1, 150, 120, 101, 99, 101, 98, 102, 99, 101, 130, 150),
        3,
        3,
    ),
    Scenario(
        "jitter about the line then back, robust",
        path(1, 150, 120, 101, 99, 101, 98, 102, 99, 101, 130, 150),
        0,
        0,
        rules=ROBUST,
    ),
    Scenario(
        "crossing with jitter on the line counts once, robust",
        path(1, 150, 120, 101, 99, 101, 97, 103, 95, 80, 60, 40, 20),
        1,
        0,
        rules=ROBUST,
    ),
    Scenario(
        "shallow excursion (< hysteresis_px) does not count",
        path(1, 150, 130, 97, 97, 97, 97, 97, 130),
        0,
        0,
        rules=LineRules(hysteresis_px=5.0, confirm_observations=1),
    ),
    Scenario(
        "brief excursion (< confirm_observations) does not count",
        path(1, 150, 130, 60, 60, 130, 150),
        0,
        0,
        rules=LineRules(confirm_observations=3),
    ),
    # Anchors exactly on the line have no side.
    Scenario("through a point on the line counts once", path(1, 150, 100, 100, 50), 1, 0),
    Scenario("touching the line and returning counts nothing", path(1, 150, 100, 150), 0, 0),
    # Occlusion across the line, low fps, skipped frames.
    Scenario(
        "absent while crossing, reappears on the other side",
        path(1, 150, 140, 130, None, None, None, None, None, 70, 60, 50, 40),
        1,
        0,
    ),
    Scenario(
        "absent while crossing, robust",
        path(1, 150, 140, 130, None, None, None, None, None, 70, 60, 50, 40),
        1,
        0,
        rules=ROBUST,
    ),
    Scenario("one step from far below to far above", path(1, 190, 10), 1, 0),
    Scenario("one step from far below to far above, robust", path(1, 190, 10, 9, 8, 7), 1, 0, rules=ROBUST),
    # Cross, wander back, cross again: three real crossings.
    Scenario("cross, wander back, cross again", path(1, 150, 50, 150, 50), 2, 1),
    Scenario(
        "cross, wander back, cross again, robust",
        path(1, 150, 150, 50, 50, 50, 50, 150, 150, 150, 150, 50, 50, 50, 50),
        2,
        1,
        rules=ROBUST,
    ),
    # The line is a finite segment.
    Scenario(
        "passing beyond the end does not count",
        [{1: (250.0, y)} for y in (150, 120, 80, 50)],
        0,
        0,
    ),
    Scenario(
        "around the end, then back through the segment counts",
        [{1: (250.0, 150.0)}, {1: (250.0, 50.0)}, {1: (100.0, 50.0)}, {1: (100.0, 150.0)}],
        0,
        1,
    ),
    Scenario(
        "diagonal step meeting the line inside the segment counts",
        [{1: (260.0, 150.0)}, {1: (140.0, 50.0)}],  # meets y=100 at x=200: the closed end
        1,
        0,
    ),
    Scenario(
        "diagonal step meeting the line beyond the end does not count",
        [{1: (270.0, 150.0)}, {1: (150.0, 50.0)}],  # meets y=100 at x=210
        0,
        0,
    ),
    # Endpoint band (margin).
    Scenario(
        "crossing 5 px beyond the end, margin 0",
        [{1: (205.0, y)} for y in (150, 50)],
        0,
        0,
    ),
    Scenario(
        "crossing 5 px beyond the end, margin +10",
        [{1: (205.0, y)} for y in (150, 50)],
        1,
        0,
        rules=LineRules(endpoint_margin_px=10.0),
    ),
    Scenario(
        "crossing 5 px inside the end, margin -10",
        [{1: (195.0, y)} for y in (150, 50)],
        0,
        0,
        rules=LineRules(endpoint_margin_px=-10.0),
    ),
    Scenario(
        "crossing 5 px beyond the start, margin +10",
        [{1: (-5.0, y)} for y in (150, 50)],
        1,
        0,
        rules=LineRules(endpoint_margin_px=10.0),
    ),
    # ID switches.
    Scenario(
        "ID switch before the line: the new ID's crossing counts once",
        path(1, 160, 140, 120) + path(2, 118, 90, 60, 40),
        1,
        0,
    ),
    Scenario(
        "ID switch after the line: no second count",
        path(1, 160, 130, 90, 80) + path(2, 78, 60, 40),
        1,
        0,
    ),
    Scenario(
        "ID switch after the line with jitter, robust: no second count",
        path(1, 160, 150, 140, 130, 90, 80, 70, 60) + path(2, 99, 101, 99, 101, 99, 70, 60, 50),
        1,
        0,
        rules=ROBUST,
    ),
    # Two tracks at once are independent.
    Scenario(
        "two tracks crossing in opposite directions",
        [{1: (50.0, 150.0), 2: (150.0, 50.0)}, {1: (50.0, 50.0), 2: (150.0, 150.0)}],
        1,
        1,
    ),
    # Straddling boxes: a tall box may cover the line while its bottom-centre does not cross.
    Scenario(
        "box straddles the line, anchor stays below",
        path(1, 140, 130, 120, 110, 105, 110, 130),
        0,
        0,
        options={"box_height": 60.0},
    ),
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_line_scenarios(scenario: Scenario) -> None:
    line = CountingLine(*scenario.line, name="a", rules=scenario.rules)
    height = scenario.options.get("box_height", 20.0)
    events: list[CountEvent] = []
    for index, anchors in enumerate(scenario.frames):
        events += line.update(frame_of(anchors, height=height), index / 10.0, index)
    assert (line.in_count, line.out_count) == (scenario.expected_in, scenario.expected_out)
    assert sum(e.direction is Direction.IN for e in events) == scenario.expected_in
    assert sum(e.direction is Direction.OUT for e in events) == scenario.expected_out
    assert all(e.zone == "a" for e in events)


def test_straddling_box_counts_when_the_anchor_crosses() -> None:
    # A 60 px box whose top is above the line from the first frame; only the bottom counts.
    line = CountingLine(*H_LINE, name="a", rules=EXACT)
    frames = path(1, 140, 120, 105, 95, 80)
    events = [
        e for i, f in enumerate(frames) for e in line.update(frame_of(f, height=60.0), i / 10, i)
    ]
    assert [(e.frame_index, e.direction) for e in events] == [(3, Direction.IN)]


@pytest.mark.parametrize(
    ("anchor", "expected_in"),
    [(Anchor.BOTTOM_CENTER, 0), (Anchor.TOP_CENTER, 1), (Anchor.CENTER, 1)],
)
def test_anchor_choice(anchor: Anchor, expected_in: int) -> None:
    # Bottom stays at y=130 (below); the box's top moves from 110 to 60 (centre 120 -> 95).
    line = CountingLine(*H_LINE, name="a", rules=EXACT, anchor=anchor)
    frames = [
        np.array([[95, 110, 105, 130]], np.float32),
        np.array([[95, 60, 105, 130]], np.float32),
    ]
    for i, xyxy in enumerate(frames):
        line.update(sv.Detections(xyxy=xyxy, tracker_id=np.array([1])), float(i))
    assert line.in_count == expected_in


def test_event_is_stamped_with_the_crossing_frame_and_emitted_on_confirmation() -> None:
    line = CountingLine(*H_LINE, name="door", rules=LineRules(confirm_observations=3))
    per_update = [
        line.update(frame_of(f), timestamp_s=10.0 + i * 0.5, frame_index=100 + i)
        for i, f in enumerate(path(7, 150, 130, 90, 80, 70, 60))
    ]
    assert [len(e) for e in per_update] == [0, 0, 0, 0, 1, 0]  # confirmed at the 3rd observation
    (event,) = per_update[4]
    assert event == CountEvent(11.0, 102, "door", 7, "0", Direction.IN)


def test_class_flicker_uses_the_majority_class_so_far() -> None:
    names = {0: "person", 1: "bicycle", 2: "car"}
    line = CountingLine(*H_LINE, name="a", rules=EXACT, class_names=names)
    classes = [0, 1, 0, 0, 1, 2, 0]  # majority "person" throughout, flickering
    ys = [160, 150, 140, 130, 120, 110, 90]
    events = []
    for i, (y, c) in enumerate(zip(ys, classes)):
        events += line.update(frame_of({1: (100.0, y)}, classes={1: c}), i / 10)
    assert [e.class_name for e in events] == ["person"]
    assert line.counts_by_class() == {"person": (1, 0)}
    assert line.class_in_count == {"person": 1} and line.class_out_count == {}


def test_class_tie_goes_to_the_class_seen_first() -> None:
    line = CountingLine(*H_LINE, name="a", rules=EXACT, class_names=["person", "car"])
    for i, (y, c) in enumerate([(150, 1), (120, 0), (90, 1), (80, 0)]):
        line.update(frame_of({1: (100.0, y)}, classes={1: c}), i / 10)
    # At the crossing (3rd frame) the votes are car 2, person 1.
    assert line.counts_by_class() == {"car": (1, 0)}


def test_class_names_from_detections_data_take_precedence() -> None:
    line = CountingLine(*H_LINE, name="a", rules=EXACT, class_names=["wrong"])
    for i, y in enumerate((150, 50)):
        tracks = frame_of({1: (100.0, y)})
        tracks.data["class_name"] = np.array(["truck"])
        line.update(tracks, float(i))
    assert line.counts_by_class() == {"truck": (1, 0)}


def test_per_class_counts_per_direction() -> None:
    line = CountingLine(*H_LINE, name="a", rules=EXACT, class_names=["person", "car"])
    frames = [
        ({1: (20.0, 150.0), 2: (60.0, 50.0), 3: (90.0, 150.0)}, {1: 0, 2: 1, 3: 1}),
        ({1: (20.0, 50.0), 2: (60.0, 150.0), 3: (90.0, 50.0)}, {1: 0, 2: 1, 3: 1}),
    ]
    for i, (anchors, classes) in enumerate(frames):
        line.update(frame_of(anchors, classes), float(i))
    assert line.counts_by_class() == {"person": (1, 0), "car": (1, 1)}
    assert (line.in_count, line.out_count) == (2, 1)


@pytest.mark.parametrize(
    ("gap_s", "max_absent_s", "expected_in"),
    [(2.0, 5.0, 1), (6.0, 5.0, 0)],
    ids=["revived-within-lifetime", "revived-after-eviction"],
)
def test_state_lifetime(gap_s: float, max_absent_s: float, expected_in: int) -> None:
    line = CountingLine(*H_LINE, name="a", rules=EXACT, max_absent_s=max_absent_s)
    line.update(frame_of({1: (100.0, 150.0)}), 0.0, 0)
    line.update(frame_of({}), gap_s / 2, 1)
    line.update(frame_of({1: (100.0, 50.0)}), gap_s, 2)
    assert line.in_count == expected_in


def test_state_lifetime_in_frames() -> None:
    line = CountingLine(*H_LINE, name="a", rules=EXACT, max_absent_s=None, max_absent_frames=3)
    run(line, path(1, 150, None, None, None, None, 50))  # absent 4 frames > 3
    assert line.in_count == 0
    line = CountingLine(*H_LINE, name="a", rules=EXACT, max_absent_s=None, max_absent_frames=3)
    run(line, path(1, 150, None, None, None, 50))  # absent 3 frames
    assert line.in_count == 1


def test_state_stays_bounded_on_an_endless_stream() -> None:
    line = CountingLine(*H_LINE, name="a", rules=EXACT, max_absent_s=1.0)
    fps = 25.0
    for index in range(5000):
        # A new track every 10 frames, each visible for 30 frames walking up through the line.
        anchors = {
            track: (100.0, 160.0 - 4.0 * (index - 10 * track))
            for track in range(max(0, index // 10 - 2), index // 10 + 1)
        }
        line.update(frame_of(anchors), index / fps, index)
        assert len(line.tracked_ids) <= 3 + int(fps * 1.0) // 10 + 1
    # Track t is seen in frames 10t..10t+29 and crosses at frame 10t+16: tracks 0..498 crossed.
    assert line.in_count == 499


def test_empty_frames_and_frames_without_tracker_ids() -> None:
    line = CountingLine(*H_LINE, name="a", rules=EXACT)
    assert line.update(sv.Detections.empty(), 0.0) == []
    with pytest.raises(ValueError, match="tracker_id is None"):
        line.update(sv.Detections(xyxy=np.array([[0, 0, 1, 1]], np.float32)), 1.0)


def test_duplicate_tracker_ids_are_refused() -> None:
    line = CountingLine(*H_LINE, name="a", rules=EXACT)
    tracks = sv.Detections(
        xyxy=np.array([[0, 0, 1, 1], [2, 2, 3, 3]], np.float32), tracker_id=np.array([4, 4])
    )
    with pytest.raises(ValueError, match=r"repeats.*\[4\]"):
        line.update(tracks, 0.0)


@pytest.mark.parametrize(
    ("calls", "message"),
    [
        ([(1.0, None), (0.5, None)], "went backwards"),
        ([(0.0, 5), (0.1, 5)], "frame_index must increase"),
        ([(0.0, 5), (0.1, 4)], "frame_index must increase"),
        ([(float("nan"), None)], "finite"),
    ],
)
def test_frame_order_is_checked(calls: list, message: str) -> None:
    line = CountingLine(*H_LINE, name="a", rules=EXACT)
    with pytest.raises(ValueError, match=message):
        for timestamp_s, frame_index in calls:
            line.update(sv.Detections.empty(), timestamp_s, frame_index)


def test_frame_index_defaults_to_a_counter() -> None:
    line = CountingLine(*H_LINE, name="a", rules=EXACT)
    events = run_without_indices(line, path(1, 150, 140, 50))
    assert [e.frame_index for e in events] == [2]


def run_without_indices(line: CountingLine, frames: list[Frame]) -> list[CountEvent]:
    events: list[CountEvent] = []
    for i, anchors in enumerate(frames):
        events += line.update(frame_of(anchors), timestamp_s=i * 0.1)
    return events


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"start": (0, 0), "end": (0, 0)}, "coincide"),
        ({"start": (0, float("nan")), "end": (1, 1)}, "finite"),
        ({"start": "ab", "end": (1, 1)}, "two numbers"),
        ({"start": (0, 0, 0), "end": (1, 1)}, "two numbers"),
        ({"name": ""}, "non-empty"),
        ({"rules": LineRules(endpoint_margin_px=-100.0)}, "leaves no segment"),
        ({"rules": {"hysteresis_px": 1}}, "LineRules"),
        ({"max_absent_s": None, "max_absent_frames": None}, "grows forever"),
        ({"max_absent_s": -1.0}, "max_absent_s"),
        ({"max_absent_frames": -1}, "max_absent_frames"),
        ({"anchor": "feet"}, "unknown anchor"),
    ],
)
def test_invalid_line_parameters(kwargs: dict, message: str) -> None:
    arguments = {"start": (0.0, 100.0), "end": (200.0, 100.0), "name": "a"} | kwargs
    with pytest.raises(ValueError, match=message):
        CountingLine(**arguments)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hysteresis_px": -1.0}, "hysteresis_px"),
        ({"hysteresis_px": float("inf")}, "hysteresis_px"),
        ({"confirm_observations": 0}, "confirm_observations"),
        ({"confirm_observations": 2.5}, "confirm_observations"),
        ({"confirm_observations": True}, "confirm_observations"),
        ({"endpoint_margin_px": float("nan")}, "endpoint_margin_px"),
    ],
)
def test_invalid_rules(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LineRules(**kwargs)


def test_reset_forgets_tracks_and_counts() -> None:
    line = CountingLine(*H_LINE, name="a", rules=EXACT)
    run(line, path(1, 150, 50))
    line.reset()
    assert (line.in_count, line.out_count, line.counts_by_class(), line.tracked_ids) == (
        0,
        0,
        {},
        frozenset(),
    )
    line.update(frame_of({1: (100.0, 150.0)}), 0.0)  # time may restart after reset()
    assert line.in_count == 0


# ---------------------------------------------------------------------------- properties
_walk = st.lists(
    st.one_of(st.none(), st.tuples(st.integers(10, 190), st.integers(0, 200))),
    min_size=1,
    max_size=40,
)


def _side_of(y: float) -> int:
    return 0 if y == 100 else (1 if y > 100 else -1)


@settings(max_examples=200, deadline=None)
@given(_walk)
def test_net_count_equals_net_side_change(points: list) -> None:
    """Exact rules, all points within the segment's span: IN - OUT = (first - last side) / 2."""
    line = CountingLine(*H_LINE, name="a", rules=EXACT)
    frames = [{} if p is None else {1: (float(p[0]), float(p[1]))} for p in points]
    run(line, frames)
    sides = [_side_of(p[1]) for p in points if p is not None and _side_of(p[1]) != 0]
    expected_net = (sides[0] - sides[-1]) // 2 if sides else 0
    assert line.in_count - line.out_count == expected_net
    # Every side change through the segment is a count.
    changes = sum(a != b for a, b in zip(sides, sides[1:]))
    assert line.in_count + line.out_count == changes


@settings(max_examples=200, deadline=None)
@given(_walk, st.integers(1, 5), st.sampled_from([0.0, 3.0, 10.0]))
def test_counts_alternate_in_direction_under_any_rules(
    points: list, confirm_observations: int, hysteresis_px: float
) -> None:
    """A single track's counts alternate IN/OUT, so |IN - OUT| <= 1, whatever the rules."""
    rules = LineRules(hysteresis_px=hysteresis_px, confirm_observations=confirm_observations)
    line = CountingLine(*H_LINE, name="a", rules=rules)
    frames = [{} if p is None else {1: (float(p[0]), float(p[1]))} for p in points]
    events = run(line, frames)
    directions = [e.direction for e in events]
    assert all(a != b for a, b in zip(directions, directions[1:]))
    assert abs(line.in_count - line.out_count) <= 1


def test_non_finite_boxes_are_refused_and_leave_the_state_unchanged() -> None:
    line = CountingLine(*H_LINE, name="a", rules=EXACT)
    line.update(frame_of({1: (100.0, 150.0)}), 0.0, 0)
    bad = sv.Detections(
        xyxy=np.array([[95, 30, 105, 50], [0, 0, 1, 1]], np.float32), tracker_id=np.array([1, 2])
    )
    bad.xyxy[1, 2] = np.nan  # supervision validates at construction only
    with pytest.raises(ValueError, match=r"non-finite box coordinates in rows \[1\]"):
        line.update(bad, 0.1, 1)
    # The failed call consumed neither the frame index nor the timestamp.
    assert line.update(frame_of({1: (100.0, 50.0)}), 0.1, 1)[0].direction is Direction.IN


# ------------------------------------------------------------------- default rules (issue 11)
JITTER_THEN_CROSS = path(1, 150, 120, 101, 99, 101, 97, 103, 95, 80, 60, 40, 20)


@pytest.mark.parametrize(
    ("rules", "expected"),
    [(None, ROBUST), ("robust", ROBUST), ("exact", EXACT), ("Robust-Stitched", LineRules.robust_stitched()),
     (EXACT, EXACT)],
)
def test_default_rules_are_robust_and_presets_are_one_argument_away(rules, expected) -> None:
    options = {} if rules is None else {"rules": rules}
    assert CountingLine(*H_LINE, name="a", **options).rules == expected


def test_default_line_counts_a_jittery_crossing_once() -> None:
    default, exact = CountingLine(*H_LINE, name="a"), CountingLine(*H_LINE, name="a", rules="exact")
    run(default, JITTER_THEN_CROSS)
    run(exact, JITTER_THEN_CROSS)
    assert (default.in_count, default.out_count) == (1, 0)
    assert (exact.in_count, exact.out_count) == (3, 2)  # every jitter across the line counts


def test_unknown_rules_name_is_refused() -> None:
    with pytest.raises(ValueError, match=r"line 'a': rules must be a LineRules or one of 'exact'"):
        CountingLine(*H_LINE, name="a", rules="loose")
