"""Checking the ``supervision.Detections`` that enter a tracker and building the ones that leave.

Input rows are validated once, up front, so that the Kalman filters never see a NaN or a
degenerate box; each error names the first offending row. Output rows are the input rows that
were associated with a reported track (selected by index, so class, confidence, mask and ``data``
travel with them), with ``xyxy`` replaced by the track's filtered box and ``tracker_id`` set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import supervision as sv

from tracker.errors import InvalidDetectionsError, InvalidTimestampError


@dataclass(frozen=True)
class FrameInput:
    """The validated arrays of one frame's detections (n rows).

    ``xyxy`` float64 (n, 4) pixels; ``confidence`` float64 (n,) or None when absent; ``class_id``
    int64 (n,) when the tracker needs it (class-aware association), else None.
    """

    xyxy: np.ndarray
    confidence: np.ndarray | None
    class_id: np.ndarray | None


def _first_bad_row(bad: np.ndarray) -> int:
    return int(bad.nonzero()[0][0])


def read_detections(
    detections: sv.Detections, *, need_confidence: bool, need_class_id: bool
) -> FrameInput:
    """Validate ``detections`` and return the fields a tracker uses as float64 / int64 arrays
    (possibly views of the input; the trackers never write to them).

    Raises:
        InvalidDetectionsError: ``detections`` is not a ``supervision.Detections``; ``xyxy`` is not
            (n, 4); a coordinate or confidence is NaN or infinite; a box has ``x2 <= x1`` or
            ``y2 <= y1``; ``confidence`` (or ``class_id``) is None while the tracker needs it; a
            field's length differs from the number of boxes.
    """
    if not isinstance(detections, sv.Detections):
        raise InvalidDetectionsError(
            f"expected supervision.Detections, got {type(detections).__name__}; wrap boxes with "
            "sv.Detections(xyxy=..., confidence=..., class_id=...)"
        )
    xyxy = np.asarray(detections.xyxy, dtype=np.float64)
    if xyxy.ndim != 2 or xyxy.shape[1] != 4:
        raise InvalidDetectionsError(f"detections.xyxy must have shape (n, 4), got {xyxy.shape}")
    n = len(xyxy)
    if not np.isfinite(xyxy).all():
        row = _first_bad_row(~np.isfinite(xyxy).all(axis=1))
        raise InvalidDetectionsError(
            f"detections row {row}: xyxy {xyxy[row].tolist()} contains NaN or inf; drop or fix "
            "that row before tracking"
        )
    size = xyxy[:, 2:] - xyxy[:, :2]
    if not (size > 0).all():
        row = _first_bad_row(~(size > 0).all(axis=1))
        x1, y1, x2, y2 = xyxy[row].tolist()
        raise InvalidDetectionsError(
            f"detections row {row}: xyxy {[x1, y1, x2, y2]} has width {x2 - x1:g} and height "
            f"{y2 - y1:g}; both must be > 0 (x2 > x1, y2 > y1). Drop degenerate boxes before "
            "tracking"
        )
    confidence = _read_confidence(detections, n, need_confidence)
    class_id = _read_class_id(detections, n, need_class_id)
    return FrameInput(xyxy=xyxy, confidence=confidence, class_id=class_id)


def _read_confidence(detections: sv.Detections, n: int, required: bool) -> np.ndarray | None:
    if detections.confidence is None:
        if required and n > 0:
            raise InvalidDetectionsError(
                "detections.confidence is None but this tracker splits detections by score; "
                "pass the detector scores"
            )
        return None
    confidence = np.asarray(detections.confidence, dtype=np.float64).reshape(-1)
    if len(confidence) != n:
        raise InvalidDetectionsError(
            f"detections.confidence has {len(confidence)} entries for {n} boxes"
        )
    if not np.isfinite(confidence).all():
        row = _first_bad_row(~np.isfinite(confidence))
        raise InvalidDetectionsError(
            f"detections row {row}: confidence {confidence[row]} is NaN or inf"
        )
    return confidence


def _read_class_id(detections: sv.Detections, n: int, required: bool) -> np.ndarray | None:
    if not required:
        return None
    if detections.class_id is None:
        if n > 0:
            raise InvalidDetectionsError(
                "detections.class_id is None but class_aware=True needs a class per row; pass "
                "class ids or construct the tracker with class_aware=False"
            )
        return None
    class_id = np.asarray(detections.class_id).reshape(-1)
    if len(class_id) != n:
        raise InvalidDetectionsError(f"detections.class_id has {len(class_id)} entries for {n} boxes")
    return class_id.astype(np.int64, copy=False)


def select_tracked_rows(
    detections: sv.Detections, rows: np.ndarray, xyxy: np.ndarray, tracker_id: np.ndarray
) -> sv.Detections:
    """Rows ``rows`` of ``detections`` as a new object, with filtered boxes and track IDs.

    Args:
        detections: the frame's input, left unchanged.
        rows: int (m,) input row of each reported track, ascending.
        xyxy: float (m, 4) box of each reported track (Kalman filter state), pixels.
        tracker_id: int (m,) track IDs.

    Returns:
        ``supervision.Detections`` with m rows; ``xyxy`` float32; every other per-row field
        (confidence, class_id, mask, data) taken from the input rows; ``metadata`` copied.
    """
    return sv.Detections(
        xyxy=xyxy.astype(np.float32),
        mask=None if detections.mask is None else detections.mask[rows],
        confidence=None if detections.confidence is None else detections.confidence[rows],
        class_id=None if detections.class_id is None else detections.class_id[rows],
        tracker_id=tracker_id.astype(np.int64),
        data={key: _take_rows(value, rows) for key, value in detections.data.items()},
        metadata=dict(detections.metadata),
    )


def _take_rows(value: np.ndarray | list, rows: np.ndarray) -> np.ndarray | list:
    """Rows of one ``Detections.data`` entry (an array, or a list as supervision also allows)."""
    if isinstance(value, np.ndarray):
        return value[rows]
    return [value[int(i)] for i in rows]


class FrameClock:
    """Counts updates and, when ``timestamp_s`` is given, keeps the stream's time in seconds.

    The first update after construction or :meth:`reset` fixes the mode: every later update must
    give a timestamp (seconds mode) or none (frames mode), so that lifetimes cannot silently
    change unit mid-stream.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.frame_index = 0  # 1-based index of the current update, 0 before the first
        self.now_s = math.nan
        self.uses_timestamps: bool | None = None

    def tick(self, timestamp_s: float | None) -> None:
        """Advance by one update.

        Raises:
            InvalidTimestampError: non-finite or non-increasing ``timestamp_s``, or a stream that
                mixes updates with and without timestamps.
        """
        given = timestamp_s is not None
        if self.uses_timestamps is not None and given != self.uses_timestamps:
            raise InvalidTimestampError(
                "timestamp_s was given on some updates and omitted on others; pass it on every "
                "update of a stream or on none (call reset() to start a new stream)"
            )
        if given:
            t = float(timestamp_s)
            if not math.isfinite(t):
                raise InvalidTimestampError(f"timestamp_s must be finite, got {timestamp_s!r}")
            if self.frame_index > 0 and not t > self.now_s:
                raise InvalidTimestampError(
                    f"timestamp_s must increase from update to update: got {t} after {self.now_s}"
                )
            self.now_s = t
        self.uses_timestamps = given
        self.frame_index += 1
