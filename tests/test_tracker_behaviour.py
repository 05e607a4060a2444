"""Behaviour of SORT and ByteTrack on synthetic scenes, one table row per situation.

Each scene is a list of frames; each frame lists the objects in view as ``(key, xyxy, score,
class_id)``. The key travels through the tracker in ``Detections.data["key"]``, so every output
row can be traced back to the object it came from — which is also how we check that rows keep
their class, confidence and data.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import supervision as sv

from tracker import (
    SORT,
    ByteTrack,
    InvalidDetectionsError,
    InvalidTimestampError,
    InvalidTrackerConfigError,
)

Object = tuple[str, tuple[float, float, float, float], float, int]
Frame = list[Object]


def box_at(x: float, y: float, w: float = 40.0, h: float = 80.0) -> tuple[float, float, float, float]:
    return (x, y, x + w, y + h)


def to_detections(frame: Frame) -> sv.Detections:
    if not frame:
        return sv.Detections(
            xyxy=np.zeros((0, 4), np.float32), confidence=np.zeros(0, np.float32),
            class_id=np.zeros(0, np.int64), data={"key": np.array([], dtype=str)},
        )
    keys, boxes, scores, classes = zip(*frame)
    return sv.Detections(
        xyxy=np.array(boxes, np.float32), confidence=np.array(scores, np.float32),
        class_id=np.array(classes, np.int64), data={"key": np.array(keys)},
    )


@dataclass
class Trace:
    """Track IDs reported per object key, as (frame index, id) pairs, plus every ID seen."""

    ids_by_key: dict[str, list[tuple[int, int]]]
    all_ids: list[int]

    def ids(self, key: str) -> list[int]:
        return [i for _, i in self.ids_by_key.get(key, [])]

    def id_set(self, key: str) -> set[int]:
        return set(self.ids(key))

    def frames(self, key: str) -> list[int]:
        return [f for f, _ in self.ids_by_key.get(key, [])]


def run(tracker, frames: list[Frame], timestamps_s: list[float] | None = None) -> Trace:
    ids_by_key: dict[str, list[tuple[int, int]]] = {}
    all_ids = []
    for k, frame in enumerate(frames):
        out = tracker.update(to_detections(frame), None if timestamps_s is None else timestamps_s[k])
        assert out.tracker_id is not None and len(out.tracker_id) == len(out)
        for key, track_id in zip(out.data["key"], out.tracker_id):
            ids_by_key.setdefault(str(key), []).append((k, int(track_id)))
            all_ids.append(int(track_id))
    return Trace(ids_by_key, all_ids)


def moving(key: str, start_x: float, y: float, speed: float, frames: range, score: float = 0.9,
           class_id: int = 0, w: float = 40.0, h: float = 80.0) -> dict[int, Object]:
    return {f: (key, box_at(start_x + speed * f, y, w, h), score, class_id) for f in frames}


def scene(num_frames: int, *objects: dict[int, Object]) -> list[Frame]:
    return [[obj[f] for obj in objects if f in obj] for f in range(num_frames)]


TrackerFactory = Callable[[], object]
SORT_FACTORY = ("SORT", lambda **kw: SORT(**{"max_age": 5, "min_hits": 3, "iou_threshold": 0.3, **kw}))
BYTE_FACTORY = ("ByteTrack", lambda **kw: ByteTrack(**{"track_thresh": 0.5, "match_thresh": 0.8,
                                                        "track_buffer": 10, "frame_rate": 30, **kw}))
BOTH = pytest.mark.parametrize("name, make", [SORT_FACTORY, BYTE_FACTORY], ids=["SORT", "ByteTrack"])


# --------------------------------------------------------------------------------------------
# Identity through motion, occlusion, leaving and entering
# --------------------------------------------------------------------------------------------
@BOTH
@pytest.mark.parametrize("y_offset", [10.0, 25.0, 40.0])  # 0 would make the boxes identical at the crossing
def test_crossing_paths_keep_their_ids(name, make, y_offset) -> None:
    frames = scene(
        41,
        moving("a", 0.0, 100.0, 10.0, range(41)),
        moving("b", 400.0, 100.0 + y_offset, -10.0, range(41)),
    )
    trace = run(make(), frames)
    assert len(trace.id_set("a")) == 1, trace.ids_by_key
    assert len(trace.id_set("b")) == 1, trace.ids_by_key
    assert trace.id_set("a") != trace.id_set("b")
    assert max(trace.frames("a")) == 40 and max(trace.frames("b")) == 40  # tracked to the end


# Buffers: SORT max_age=5, ByteTrack int(30 / 30 * 10) = 10 missed frames.
@pytest.mark.parametrize(
    ("name", "make", "gap_frames", "same_id"),
    [
        (*SORT_FACTORY, 3, True),
        (*SORT_FACTORY, 5, True),  # exactly max_age missed updates: still matched
        (*SORT_FACTORY, 6, False),
        (*SORT_FACTORY, 20, False),
        (*BYTE_FACTORY, 5, True),
        (*BYTE_FACTORY, 10, True),  # exactly the buffer: still re-found
        (*BYTE_FACTORY, 11, False),
        (*BYTE_FACTORY, 30, False),
    ],
)
def test_occlusion_gap_shorter_or_longer_than_the_buffer(name, make, gap_frames, same_id) -> None:
    visible = [f for f in range(30 + gap_frames + 20) if not 30 <= f < 30 + gap_frames]
    frames = scene(30 + gap_frames + 20, moving("a", 10.0, 50.0, 3.0, visible, w=50.0, h=100.0))
    trace = run(make(), frames)
    before = {i for f, i in trace.ids_by_key["a"] if f < 30}
    after = {i for f, i in trace.ids_by_key["a"] if f >= 30 + gap_frames}
    assert len(before) == 1 and len(after) == 1, trace.ids_by_key
    assert (before == after) is same_id
    if not same_id:
        assert min(after) > max(before)  # a new, never used ID


@BOTH
def test_leaving_object_and_new_objects_get_new_ids_never_reused(name, make) -> None:
    frames = scene(
        120,
        moving("first", 10.0, 50.0, 2.0, range(0, 20)),  # leaves at frame 20
        moving("second", 300.0, 200.0, -2.0, range(40, 70)),  # enters elsewhere
        moving("third", 10.0, 50.0, 2.0, range(80, 110)),  # enters where "first" was, buffers long gone
    )
    trace = run(make(), frames)
    ids = [trace.id_set(k) for k in ("first", "second", "third")]
    assert all(len(s) == 1 for s in ids), trace.ids_by_key
    first, second, third = (s.pop() for s in ids)
    assert first == 1 and first < second < third
    assert sorted(set(trace.all_ids)) == [first, second, third]


@BOTH
def test_ids_are_per_instance_and_survive_reset_without_reuse(name, make) -> None:
    frames = scene(10, moving("a", 10.0, 50.0, 2.0, range(10)))
    tracker_1, tracker_2 = make(), make()
    assert run(tracker_1, frames).id_set("a") == {1}
    assert run(tracker_2, frames).id_set("a") == {1}  # a second instance starts at 1 too
    tracker_1.reset()
    assert tracker_1.num_tracks == 0
    assert run(tracker_1, frames).id_set("a") == {2}  # after reset: fresh tracks, IDs not reused


# --------------------------------------------------------------------------------------------
# Empty frames
# --------------------------------------------------------------------------------------------
@BOTH
@pytest.mark.parametrize(
    "empty",
    [sv.Detections.empty(), to_detections([])],
    ids=["sv.Detections.empty", "empty-with-data"],
)
def test_empty_frames_give_empty_output(name, make, empty) -> None:
    tracker = make()
    for _ in range(3):
        out = tracker.update(empty)
        assert len(out) == 0
        assert out.tracker_id is not None and out.tracker_id.shape == (0,)
        assert out.xyxy.shape == (0, 4)
    assert tracker.num_tracks == 0


@BOTH
def test_tracks_bridge_empty_frames_within_the_buffer(name, make) -> None:
    visible = [*range(3, 20), *range(23, 40)]  # 3 empty frames first, 3 empty frames mid-way
    frames = scene(40, moving("a", 10.0, 50.0, 2.0, visible))
    trace = run(make(), frames)
    assert len(trace.id_set("a")) == 1
    assert max(trace.frames("a")) == 39


# --------------------------------------------------------------------------------------------
# Rows keep their class, confidence and data
# --------------------------------------------------------------------------------------------
@BOTH
def test_output_rows_are_the_input_rows(name, make) -> None:
    tracker = make()
    rng = np.random.default_rng(0)
    for f in range(12):
        n = 3
        xyxy = np.array([box_at(10 + 100 * i + 2 * f, 40 + 30 * i) for i in range(n)], np.float32)[::-1].copy()
        detections = sv.Detections(
            xyxy=xyxy,
            confidence=np.array([0.91, 0.72, 0.83], np.float32),
            class_id=np.array([5, 0, 2]),
            mask=rng.random((n, 8, 8)) > 0.5,
            data={"key": np.array(["c", "b", "a"]), "label": ["car", "person", "bus"]},
        )
        before = (detections.xyxy.copy(), detections.confidence.copy(), detections.class_id.copy())
        out = tracker.update(detections)
        np.testing.assert_array_equal(detections.xyxy, before[0])  # input untouched
        np.testing.assert_array_equal(detections.confidence, before[1])
        np.testing.assert_array_equal(detections.class_id, before[2])
        assert detections.tracker_id is None
        rows = [int(np.flatnonzero(detections.data["key"] == key)[0]) for key in out.data["key"]]
        assert rows == sorted(rows)  # input order
        np.testing.assert_array_equal(out.class_id, detections.class_id[rows])
        np.testing.assert_array_equal(out.confidence, detections.confidence[rows])
        np.testing.assert_array_equal(out.mask, detections.mask[rows])
        assert out.data["label"] == [detections.data["label"][r] for r in rows]
        assert out.xyxy.dtype == np.float32 and out.tracker_id.dtype == np.int64
        # the reported box is the Kalman estimate, close to (not necessarily equal to) the input
        np.testing.assert_allclose(out.xyxy, detections.xyxy[rows], atol=5.0)
        if f >= 3:
            assert len(out) == 3


@pytest.mark.parametrize(
    ("name", "make", "class_aware", "same_id"),
    [
        (*SORT_FACTORY, False, True),
        (*SORT_FACTORY, True, False),
        (*BYTE_FACTORY, False, True),
        (*BYTE_FACTORY, True, False),
    ],
)
def test_class_aware_association_never_matches_across_classes(name, make, class_aware, same_id) -> None:
    # A "person" is replaced, in place, by a "bicycle" detection: only class-agnostic
    # association continues the person's track with it.
    person = moving("person", 10.0, 50.0, 2.0, range(0, 15), class_id=0)
    bicycle = moving("bicycle", 10.0, 50.0, 2.0, range(15, 30), class_id=1)
    trace = run(make(class_aware=class_aware), scene(30, person, bicycle))
    assert len(trace.id_set("person")) == 1 and len(trace.id_set("bicycle")) == 1
    assert (trace.id_set("person") == trace.id_set("bicycle")) is same_id


@BOTH
def test_class_aware_needs_class_ids(name, make) -> None:
    tracker = make(class_aware=True)
    with pytest.raises(InvalidDetectionsError, match="class_id"):
        tracker.update(sv.Detections(xyxy=np.array([[0, 0, 10, 10]], np.float32), confidence=np.array([0.9])))


# --------------------------------------------------------------------------------------------
# Invalid input
# --------------------------------------------------------------------------------------------
GOOD_ROWS = [[0, 0, 10, 20], [30, 30, 50, 70], [60, 0, 80, 40]]


def _with_row_2(values) -> np.ndarray:
    xyxy = np.array(GOOD_ROWS, np.float64)
    xyxy[2] = values
    return xyxy


@BOTH
@pytest.mark.parametrize(
    ("xyxy", "confidence", "message"),
    [
        (_with_row_2([60, np.nan, 80, 40]), [0.9, 0.9, 0.9], "row 2.*NaN or inf"),
        (_with_row_2([60, 0, np.inf, 40]), [0.9, 0.9, 0.9], "row 2.*NaN or inf"),
        (_with_row_2([80, 0, 60, 40]), [0.9, 0.9, 0.9], "row 2.*width -20"),
        (_with_row_2([60, 40, 80, 40]), [0.9, 0.9, 0.9], "row 2.*height 0"),
        (np.array(GOOD_ROWS, np.float64), [0.9, 0.9, np.nan], "row 2.*confidence"),
        (np.array(GOOD_ROWS, np.float64), [0.9, 0.9, np.inf], "row 2.*confidence"),
    ],
    ids=["nan", "inf", "negative-width", "zero-height", "nan-score", "inf-score"],
)
def test_invalid_rows_are_rejected_naming_the_row(name, make, xyxy, confidence, message) -> None:
    tracker = make()
    # supervision itself refuses NaN at construction; a Detections edited afterwards must
    # still be caught by the tracker.
    detections = sv.Detections(xyxy=np.array(GOOD_ROWS, np.float64), confidence=np.full(3, 0.9))
    detections.xyxy = xyxy
    detections.confidence = np.array(confidence)
    with pytest.raises(ValueError, match=message) as info:
        tracker.update(detections)
    assert isinstance(info.value, InvalidDetectionsError)
    assert tracker.num_tracks == 0  # nothing was half-applied


@BOTH
def test_non_detections_input_is_rejected(name, make) -> None:
    with pytest.raises(InvalidDetectionsError, match="supervision.Detections"):
        make().update(np.array(GOOD_ROWS, np.float64))


def test_bytetrack_needs_confidence() -> None:
    with pytest.raises(InvalidDetectionsError, match="confidence"):
        ByteTrack().update(sv.Detections(xyxy=np.array(GOOD_ROWS, np.float32)))


def test_sort_does_not_need_confidence() -> None:
    out = SORT(min_hits=0).update(sv.Detections(xyxy=np.array(GOOD_ROWS, np.float32)))
    assert out.tracker_id.tolist() == [1, 2, 3]
    assert out.confidence is None


@pytest.mark.parametrize(
    ("factory", "kwargs", "message"),
    [
        (SORT, {"max_age": -1}, "max_age"),
        (SORT, {"max_age": 1.5}, "max_age"),
        (SORT, {"min_hits": True}, "min_hits"),
        (SORT, {"iou_threshold": 1.5}, "iou_threshold"),
        (SORT, {"iou_threshold": "0.3"}, "iou_threshold"),
        (SORT, {"frame_rate": 0}, "frame_rate"),
        (SORT, {"class_aware": 1}, "class_aware"),
        (ByteTrack, {"track_thresh": 0.05}, "track_thresh"),
        (ByteTrack, {"match_thresh": 0.0}, "match_thresh"),
        (ByteTrack, {"track_buffer": -3}, "track_buffer"),
        (ByteTrack, {"frame_rate": math.inf}, "frame_rate"),
    ],
)
def test_invalid_parameters_are_rejected(factory, kwargs, message) -> None:
    with pytest.raises(InvalidTrackerConfigError, match=message):
        factory(**kwargs)


def test_bytetrack_buffer_scales_with_frame_rate() -> None:
    assert ByteTrack(track_buffer=30, frame_rate=30).config.max_time_lost_frames == 30
    assert ByteTrack(track_buffer=30, frame_rate=14).config.max_time_lost_frames == 14
    assert ByteTrack(track_buffer=30, frame_rate=7).config.max_time_lost_frames == 7


# --------------------------------------------------------------------------------------------
# Timestamps: lifetimes in seconds
# --------------------------------------------------------------------------------------------
@BOTH
@pytest.mark.parametrize("gap_frames", [4, 5, 6, 10, 11, 12])
def test_regular_timestamps_give_the_same_tracks_as_frames(name, make, gap_frames) -> None:
    fps = 30.0
    visible = [f for f in range(60) if not 20 <= f < 20 + gap_frames]
    frames = scene(60, moving("a", 10.0, 50.0, 3.0, visible), moving("b", 300.0, 200.0, -1.0, range(60)))
    by_frames = run(make(frame_rate=fps), frames)
    by_seconds = run(make(frame_rate=fps), frames, [1000.0 + k / fps for k in range(60)])
    assert by_frames.ids_by_key == by_seconds.ids_by_key


@pytest.mark.parametrize(
    ("name", "make", "timestamps_s", "same_id"),
    [
        # Frames 0-9 at 10 fps, then the stream stalls: next frame 1.5 s later. Counted in updates
        # the object missed nothing; in seconds it was unseen longer than its lifetime.
        (*SORT_FACTORY, None, True),
        (*SORT_FACTORY, [0.1 * k for k in range(10)] + [0.9 + 1.5 + 0.1 * k for k in range(10)], False),
        (*BYTE_FACTORY, None, True),
        (*BYTE_FACTORY, [0.1 * k for k in range(10)] + [0.9 + 1.5 + 0.1 * k for k in range(10)], False),
    ],
)
def test_stalled_stream_expires_tracks_by_time(name, make, timestamps_s, same_id) -> None:
    # Lifetimes at 10 fps: SORT max_age=5 -> 0.5 s; ByteTrack int(10 / 30 * 10) = 3 frames -> 0.3 s.
    frames = scene(20, moving("a", 10.0, 50.0, 1.0, range(20)))
    frames = [[(("early" if k < 10 else "late"), *obj[1:]) for obj in frame] for k, frame in enumerate(frames)]
    trace = run(make(frame_rate=10), frames, timestamps_s)
    assert (trace.id_set("early") == trace.id_set("late")) is same_id


def test_fast_stream_keeps_lost_tracks_for_their_lifetime_in_seconds() -> None:
    # Nominal 10 fps (track_buffer=30 keeps a lost track int(10 / 30 * 30) = 10 frames = 1 s),
    # actual frames at 100 Hz: a 50-frame gap is 0.5 s, within the lifetime in seconds but far
    # beyond it in frames.
    visible = [f for f in range(120) if not 40 <= f < 90]
    frames = scene(120, moving("a", 10.0, 50.0, 0.2, visible))
    make = BYTE_FACTORY[1]
    by_seconds = run(make(frame_rate=10, track_buffer=30), frames, [0.01 * k for k in range(120)])
    by_frames = run(make(frame_rate=10, track_buffer=30), frames)
    assert len(by_seconds.id_set("a")) == 1
    assert len(by_frames.id_set("a")) == 2


@BOTH
@pytest.mark.parametrize(
    "timestamps_s",
    [[0.0, 0.1, 0.1], [0.0, 0.2, 0.1], [0.0, math.nan], [0.0, math.inf], [0.0, None], [None, 0.1]],
    ids=["repeated", "decreasing", "nan", "inf", "then-omitted", "then-given"],
)
def test_invalid_timestamps_are_rejected(name, make, timestamps_s) -> None:
    tracker = make()
    detections = to_detections([("a", box_at(10, 10), 0.9, 0)])
    with pytest.raises(InvalidTimestampError):
        for t in timestamps_s:
            tracker.update(detections, t)


@BOTH
def test_reset_starts_a_new_stream_with_any_clock(name, make) -> None:
    tracker = make()
    detections = to_detections([("a", box_at(10, 10), 0.9, 0)])
    tracker.update(detections, 100.0)
    tracker.reset()
    tracker.update(detections)  # frames mode after seconds mode: allowed after reset
    tracker.reset()
    tracker.update(detections, 5.0)  # and time may restart
