"""Shared pieces of the GUI tests (no tests here): a detector that replays ground truth, the
window fixture's helpers, and drawing with simulated mouse events.

The replaying detectors give real crossings on real frames: MOT15 PETS09-S2L1 ground-truth
boxes (visible, flag 1) on the PETS clip, MOT frame N = video frame N-1, coordinates times
0.625 for the 480x360 video (shared/README.md). The pipeline calls a detector once per frame in
order for a file, so the call count is the frame index; a batched detector sees frames of
several cameras in one call, so :class:`HashReplay` finds each frame's boxes by the frame's
content (a hash of its pixels) instead.
"""

from __future__ import annotations

import functools
import hashlib
import time
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import supervision as sv
from shared_data import shared_path

from app.sources import open_source

PETS_VIDEO = ("data", "videos", "vtest_PETS09-S2L1_480x360.avi")
PETS_SCALE = 0.625  # 768x576 ground truth -> 480x360 video


@functools.lru_cache(maxsize=1)
def pets_ground_truth() -> dict[int, sv.Detections]:
    """Video frame index -> ground-truth boxes as detections (class 0 ``person``)."""
    rows = np.loadtxt(shared_path("data", "mot", "MOT15", "train", "PETS09-S2L1", "gt", "gt.txt"), delimiter=",")
    rows = rows[rows[:, 6] == 1]
    per_frame: dict[int, sv.Detections] = {}
    for frame in np.unique(rows[:, 0]).astype(int):
        r = rows[rows[:, 0] == frame]
        xyxy = np.column_stack([r[:, 2], r[:, 3], r[:, 2] + r[:, 4], r[:, 3] + r[:, 5]]) * PETS_SCALE
        per_frame[int(frame) - 1] = sv.Detections(
            xyxy=xyxy.astype(np.float32),
            confidence=np.full(len(r), 0.9, dtype=np.float32),
            class_id=np.zeros(len(r), dtype=np.int64),
            data={"class_name": np.array(["person"] * len(r))},
        )
    return per_frame


_EMPTY = sv.Detections(
    xyxy=np.zeros((0, 4), np.float32), confidence=np.zeros(0, np.float32),
    class_id=np.zeros(0, np.int64), data={"class_name": np.array([], dtype="<U6")},
)


class ReplayDetector:
    """``detector(image) -> sv.Detections`` returning the ground truth of the n-th call.

    ``delay_s`` simulates a slower detector (sleeping, so the GIL is free as during inference).
    """

    names = ["person"]

    def __init__(self, boxes: dict[int, sv.Detections], delay_s: float = 0.0) -> None:
        self._boxes = boxes
        self._calls = 0
        self._delay_s = delay_s
        self._lock = threading.Lock()

    def __call__(self, image: np.ndarray) -> sv.Detections:
        with self._lock:
            index, self._calls = self._calls, self._calls + 1
        if self._delay_s:
            threading.Event().wait(self._delay_s)
        return self._boxes.get(index, _EMPTY)


def pets_detector_factory(delay_s: float = 0.0) -> Callable[[object], ReplayDetector]:
    """A detector factory for the window: a fresh replay (frame 0 first) for every run."""
    boxes = pets_ground_truth()
    return lambda settings: ReplayDetector(boxes, delay_s)


def pets_video() -> Path:
    return shared_path(*PETS_VIDEO)


def drag(qtbot, widget, start, end, steps: int = 6) -> None:  # noqa: ANN001 - pytest-qt objects
    """Press the left button at ``start``, move in ``steps`` to ``end``, release (widget
    coordinates, ``QPoint``)."""
    from PyQt6.QtCore import QPoint, Qt

    qtbot.mousePress(widget, Qt.MouseButton.LeftButton, pos=start)
    for i in range(1, steps + 1):
        point = QPoint(start.x() + (end.x() - start.x()) * i // steps, start.y() + (end.y() - start.y()) * i // steps)
        qtbot.mouseMove(widget, point)
    qtbot.mouseRelease(widget, Qt.MouseButton.LeftButton, pos=end)


def widget_point(view, xy):  # noqa: ANN001, ANN201
    """Frame pixels -> the view's widget coordinates as a ``QPoint``."""
    return view.to_widget(xy).toPoint()


def _digest(image: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(image).data, digest_size=16).digest()


class HashReplay:
    """``detect_batch`` (and ``__call__``) returning each PETS frame's ground truth, found by
    the frame's pixels; ``delay_s`` per call stands for the forward pass."""

    names = ["person"]

    def __init__(self, delay_s: float = 0.0) -> None:
        truth = pets_ground_truth()
        self._boxes: dict[bytes, sv.Detections] = {}
        for frame in open_source(pets_video()):
            self._boxes[_digest(frame.image)] = truth.get(frame.index, _EMPTY)
        self.delay_s = delay_s
        self.batch_sizes: list[int] = []

    def detect_batch(self, images):  # noqa: ANN001, ANN201
        self.batch_sizes.append(len(images))
        if self.delay_s:
            time.sleep(self.delay_s)
        return [self._boxes[_digest(image)] for image in images]

    def __call__(self, image: np.ndarray) -> sv.Detections:
        return self.detect_batch([image])[0]
