"""An endless stream in miniature: 100,000 frames of objects entering and leaving.

Two lanes; in each, an object crosses the frame in 40 frames, then the lane is empty for 20
frames, longer than any lost-track buffer used here, and a new object enters. Every object must
get exactly one new ID, IDs must never be reused, and the tracker's state must stay bounded: the
number of live tracks at any frame, and the size of the pickled tracker, which would grow with any
list the tracker appends to and never trims (the reference ByteTrack's ``removed_stracks``).
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import supervision as sv

from tracker import SORT, ByteTrack

NUM_FRAMES = 100_000
PERIOD = 60  # frames per lane cycle: 40 in view, 20 empty
IN_VIEW = 40
LANES = ((20.0, 40.0, 6.0), (600.0, 200.0, -6.0))  # start x, y, speed (px / frame)


def cycle_frames() -> list[sv.Detections]:
    """The PERIOD distinct frames of the cycle, built once (trackers do not modify their input)."""
    frames = []
    for phase in range(PERIOD):
        boxes, lanes = [], []
        for lane, (x0, y, speed) in enumerate(LANES):
            t = (phase + 25 * lane) % PERIOD  # lanes out of step
            if t < IN_VIEW:
                x = x0 + speed * t
                boxes.append([x, y, x + 40.0, y + 90.0])
                lanes.append(lane)
        frames.append(
            sv.Detections(
                xyxy=np.array(boxes, np.float32).reshape(-1, 4),
                confidence=np.full(len(boxes), 0.9, np.float32),
                class_id=np.zeros(len(boxes), np.int64),
                data={"lane": np.array(lanes, np.int64)},
            )
        )
    return frames


@pytest.mark.slow  # about 30 s per tracker on an idle core: 100,000 updates
@pytest.mark.parametrize(
    "make",
    [
        lambda: SORT(max_age=3, min_hits=3, iou_threshold=0.3),
        lambda: ByteTrack(track_thresh=0.5, match_thresh=0.8, track_buffer=15, frame_rate=30),
    ],
    ids=["SORT", "ByteTrack"],
)
def test_churn_keeps_state_bounded_and_ids_fresh(make) -> None:
    frames = cycle_frames()
    tracker = make()
    current_id = [0] * len(LANES)  # ID of the object now in each lane
    ids_used: set[int] = set()
    max_live_tracks = 0
    pickled_sizes = {}
    for k in range(NUM_FRAMES):
        out = tracker.update(frames[k % PERIOD])
        max_live_tracks = max(max_live_tracks, tracker.num_tracks)
        for lane, track_id in zip(out.data["lane"], out.tracker_id):
            if track_id != current_id[lane]:
                # a change of ID within a lane only happens for a new object, with a fresh ID
                assert track_id not in ids_used, f"frame {k}: ID {track_id} reused"
                assert track_id > max(ids_used, default=0)
                current_id[lane] = int(track_id)
                ids_used.add(int(track_id))
        if k + 1 in (10_000, NUM_FRAMES):
            pickled_sizes[k + 1] = len(pickle.dumps(tracker))

    objects_entered = sum(
        1
        for k in range(NUM_FRAMES)
        for lane in range(len(LANES))
        if (k + 25 * lane) % PERIOD == 0 or (k == 0 and (25 * lane) % PERIOD < IN_VIEW)
    )
    # one ID per object (the last objects may still be too young to be reported)
    assert objects_entered - len(LANES) <= len(ids_used) <= objects_entered
    assert max_live_tracks <= 2 * len(LANES)  # per lane: the object in view and one lost track
    assert pickled_sizes[NUM_FRAMES] <= pickled_sizes[10_000] * 1.2
