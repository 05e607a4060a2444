"""Proposals of the labelling mode (issue 14): interpolation, carrying a corrected box forward,
detector + tracker pre-labels; a verified box is never overwritten."""

from __future__ import annotations

import numpy as np
import pytest
import supervision as sv

from app.labelling import (
    BoxOrigin,
    CarryConfig,
    LabelStore,
    PrelabelConfig,
    ProposalBox,
    carry_forward,
    follow_box,
    interpolate_all,
    interpolate_track,
    interpolate_xyxy,
    prelabel,
    propose_tracks,
)
from app.labelling.errors import LabelValidationError


def _detections(boxes, names=None) -> sv.Detections:
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    n = len(boxes)
    names = names or ["person"] * n
    return sv.Detections(xyxy=boxes, confidence=np.full(n, 0.9, np.float32),
                         class_id=np.zeros(n, np.int64), data={"class_name": np.asarray(names, dtype=str)})


def _walker(frame: int, dx: float = 4.0) -> np.ndarray:
    """A 20x60 box walking right by ``dx`` px per frame."""
    return np.array([100 + dx * frame, 50, 120 + dx * frame, 110], dtype=np.float64)


# ----------------------------------------------------------------------------- interpolation

def test_interpolation_is_linear_in_centre_and_size_exact_values():
    a = (0.0, 0.0, 10.0, 20.0)  # centre (5, 10), size (10, 20)
    b = (100.0, 40.0, 130.0, 100.0)  # centre (115, 70), size (30, 60)
    out = interpolate_xyxy(a, 10, b, 14, [10, 11, 12, 13, 14])
    # t = 0.25: centre (32.5, 25), size (15, 30)
    np.testing.assert_allclose(out[1], [25.0, 10.0, 40.0, 40.0])
    # t = 0.5: centre (60, 40), size (20, 40)
    np.testing.assert_allclose(out[2], [50.0, 20.0, 70.0, 60.0])
    np.testing.assert_allclose(out[0], a)
    np.testing.assert_allclose(out[4], b)
    assert out.dtype == np.float64 and out.shape == (5, 4)
    with pytest.raises(LabelValidationError):
        interpolate_xyxy(a, 3, b, 3, [3])


def test_interpolate_track_fills_gaps_between_verified_boxes_only():
    store = LabelStore(["person"])
    store.add_box(0, (0, 0, 10, 20), "person", track_id=1)
    store.add_box(4, (40, 0, 50, 20), "person", track_id=1)
    store.add_box(2, (500, 500, 510, 520), "person", track_id=1, verified=False)  # old proposal: replaced
    store.add_box(2, (20, 0, 30, 20), "person", track_id=8, verified=False)  # duplicate of the same object
    store.add_box(6, (60, 0, 70, 20), "person", track_id=1, verified=False)  # after the last key: untouched
    result = interpolate_track(store, 1)
    assert (result.added, result.replaced, result.removed) == (2, 1, 1)
    assert [store.get(f, 1).xyxy for f in (1, 2, 3)] == [(10, 0, 20, 20), (20, 0, 30, 20), (30, 0, 40, 20)]
    assert all(store.get(f, 1).origin is BoxOrigin.INTERPOLATED and not store.get(f, 1).verified for f in (1, 2, 3))
    assert store.get(2, 8) is None and store.get(6, 1).xyxy == (60, 0, 70, 20)
    assert store.undo() == "interpolate track 1" and store.get(2, 1).xyxy == (500, 500, 510, 520)


def test_interpolation_never_overwrites_a_verified_box_or_frame():
    store = LabelStore(["person"])
    store.add_box(0, (0, 0, 10, 20), "person", track_id=1)
    store.add_box(6, (60, 0, 70, 20), "person", track_id=1)
    store.add_box(3, (1, 1, 2, 2), "person", track_id=2)  # another object, verified
    store.set_frame_verified(2)  # user: track 1 is not on frame 2 (occluded)
    result = interpolate_all(store)
    assert result.added == 4 and store.get(2, 1) is None  # frames 1, 3, 4, 5
    assert store.get(3, 2).xyxy == (1, 1, 2, 2) and store.get(3, 2).verified
    assert store.get(3, 1).xyxy == pytest.approx((30, 0, 40, 20))


# ----------------------------------------------------------------------------- carry forward

def test_follow_box_follows_detections_and_keeps_the_users_correction():
    seed = _walker(0) + [-2, -4, 2, 4]  # the user drew a box 4 px wider and 8 px taller than the detector's
    detections = [np.stack([_walker(f), [300, 300, 320, 360]]) for f in range(1, 6)]
    out = follow_box(seed, detections, CarryConfig(), seed_detections=_walker(0)[None])
    assert len(out) == 5
    for f, box in enumerate(out, start=1):
        np.testing.assert_allclose(box, _walker(f) + [-2, -4, 2, 4], atol=1e-9)
    plain = follow_box(seed, detections, CarryConfig(keep_correction=False), seed_detections=_walker(0)[None])
    np.testing.assert_allclose(plain[2], _walker(3))


def test_follow_box_coasts_on_the_prediction_then_stops():
    detections = [_walker(1)[None], _walker(2)[None], np.zeros((0, 4)), np.zeros((0, 4)), np.zeros((0, 4)),
                  np.zeros((0, 4))]
    out = follow_box(_walker(0), detections, CarryConfig(max_coast_frames=2))
    assert len(out) == 4  # 2 matched + 2 coasted, then lost
    assert out[2][0] > _walker(2)[0]  # the prediction keeps moving right


def test_carry_forward_writes_proposals_and_stops_at_the_next_verified_box():
    store = LabelStore(["person"])
    store.add_box(0, _walker(0), "person", track_id=1)
    store.add_box(6, _walker(6) + 1, "person", track_id=1)  # next keyframe of the track
    store.add_box(3, _walker(3) + 0.5, "person", track_id=5, verified=False)  # duplicate proposal
    detections = {f: _detections([_walker(f)]) for f in range(10)}
    result = carry_forward(store, 0, 1, detections.get, CarryConfig(num_frames=9))
    assert result.added == 5 and result.removed == 1
    assert sorted(store.track(1)) == list(range(7))
    np.testing.assert_allclose(store.get(4, 1).xyxy, _walker(4))
    assert store.get(4, 1).origin is BoxOrigin.TRACKER and not store.get(4, 1).verified
    np.testing.assert_allclose(store.get(6, 1).xyxy, _walker(6) + 1)  # the keyframe is untouched
    assert store.get(3, 5) is None


def test_carry_forward_ignores_detections_of_other_verified_objects():
    store = LabelStore(["person"])
    store.add_box(0, _walker(0), "person", track_id=1)
    for f in range(1, 4):  # another verified person right where the tracker predicts ours
        store.add_box(f, _walker(f), "person", track_id=2)
    detections = {f: _detections([_walker(f)]) for f in range(4)}
    carry_forward(store, 0, 1, detections.get, CarryConfig(num_frames=3, max_coast_frames=0))
    assert store.track(1).keys() == {0}  # nothing followed, nothing overwritten
    assert all(store.get(f, 2).verified for f in range(1, 4))


# ----------------------------------------------------------------------------- pre-labels

class StubDetector:
    """Two people walking apart and, on frame 3, a car (for the class filter)."""

    names = ["person", "car"]

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, image: np.ndarray) -> sv.Detections:
        assert image.shape == (120, 400, 3) and image.dtype == np.uint8
        f = self.calls
        self.calls += 1
        boxes = [_walker(f), _walker(f, dx=-4) + [150, 0, 150, 0]]
        names = ["person", "person"]
        if f == 3:
            boxes.append([10, 10, 60, 40])
            names.append("car")
        return _detections(boxes, names)


def _frames(n: int):
    return ((i, np.zeros((120, 400, 3), np.uint8)) for i in range(n))


def test_propose_tracks_runs_detector_and_tracker_without_touching_a_store():
    detector = StubDetector()
    out = list(propose_tracks(_frames(5), detector, PrelabelConfig(classes=("person",)), first_track_id=10))
    assert detector.calls == 5 and [p.frame_index for p in out] == [0, 1, 2, 3, 4]
    assert all(len(p.boxes) == 2 for p in out)
    assert {b.track_id for p in out for b in p.boxes} == {10, 11}
    track10 = [b for p in out for b in p.boxes if b.track_id == 10]
    for b in track10:  # the detector's own box (ProposalBox.DETECTION), not the Kalman state
        assert b.xyxy == pytest.approx(tuple(_walker(b.frame_index)), abs=1e-4)
        assert b.origin is BoxOrigin.DETECTOR and not b.verified
    assert len(out[3].detections) == 2  # the car was filtered out
    smoothed = list(propose_tracks(_frames(5), StubDetector(), PrelabelConfig(box=ProposalBox.TRACK)))
    assert len(smoothed[3].boxes) >= 2


def test_prelabel_never_overwrites_verified_boxes_and_replaces_old_proposals():
    store = LabelStore(["person"])
    corrected = _walker(2) + [-3, -3, 3, 3]
    store.add_box(2, corrected, "person", track_id=1)  # the user's box for the first walker
    store.add_box(4, (0, 0, 5, 5), "person", track_id=1, verified=False)  # a stale proposal
    store.set_frame_verified(3)  # verified frame: only what the user put there
    run = prelabel(store, _frames(5), StubDetector())
    assert store.get(2, 1).xyxy == pytest.approx(tuple(corrected)) and store.get(2, 1).verified
    assert len(store.boxes(2)) == 2  # the other walker proposed, the first one not duplicated
    assert store.boxes(3) == []
    assert store.get(4, 1) is None and len(store.boxes(4)) == 2  # stale one gone; both walkers
    assert min(b.track_id for b in store.all_boxes() if not b.verified) >= 2  # ids never reuse track 1
    assert sorted(run.detections) == [0, 1, 2, 3, 4]
    assert store.undo() == "pre-label" and store.get(4, 1) is not None and len(store) == 2


def test_carry_forward_coasts_with_the_velocity_between_verified_boxes():
    store = LabelStore(["person"])
    store.add_box(0, _walker(0), "person", track_id=1)
    store.add_box(2, _walker(2), "person", track_id=1)  # 4 px per frame to the right
    no_detections = {f: _detections([]) for f in range(6)}
    carry_forward(store, 2, 1, no_detections.get, CarryConfig(num_frames=3, max_coast_frames=3))
    for f in (3, 4, 5):  # the prediction extrapolates the labelled motion exactly
        np.testing.assert_allclose(store.get(f, 1).xyxy, _walker(f), atol=1e-9)
    store.undo()
    carry_forward(store, 2, 1, no_detections.get, CarryConfig(num_frames=3, velocity_window_frames=0))
    np.testing.assert_allclose(store.get(5, 1).xyxy, _walker(2), atol=1e-9)  # at rest: stands still


def test_iter_clip_frames_gives_indices_and_bgr_images():
    from shared_data import shared_path

    from app.labelling import iter_clip_frames

    frames = list(iter_clip_frames(shared_path("data", "videos", "vtest_PETS09-S2L1_480x360.avi"), 3, 5))
    assert [i for i, _ in frames] == [3, 4, 5]
    assert all(image.shape == (360, 480, 3) and image.dtype == np.uint8 for _, image in frames)
