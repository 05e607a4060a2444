"""SORT: Simple Online and Realtime Tracking (Bewley, Ge, Ott, Ramos, Upcroft; ICIP 2016).

Per update (paper section 3):

1. Predict every track one frame ahead with its constant-velocity Kalman filter (section 3.2);
   tracks whose prediction has no valid box are dropped.
2. Associate detections with predicted boxes by maximum total IoU, rejecting pairs below
   ``iou_threshold`` (section 3.3).
3. Correct matched tracks with their detection; start a track for each unmatched detection
   (section 3.4).
4. Report tracks matched in this update that have ``min_hits`` consecutive matches (or all of
   them during the first ``min_hits`` updates); drop tracks unmatched for more than ``max_age``
   updates (section 3.4) — or, with timestamps, for more than ``max_age / frame_rate`` seconds.

Behavioural details (the IoU shortcut, the area-velocity clamp, the order new tracks are
created in) follow the authors' reference implementation, abewley/sort, so that the published
MOT15 figures are reproduced.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import supervision as sv

from tracker import kalman_sort
from tracker._config import require_bool, require_frame_rate, require_int, require_number_in
from tracker._io import FrameClock, read_detections, select_tracked_rows
from tracker.association import FORBIDDEN_IOU, forbid_cross_class, match_sort
from tracker.geometry import iou_matrix, xysr_to_xyxy, xyxy_to_xysr
from tracker.lifetime import MissedLifetime

_NO_CLASS = -1


@dataclass(frozen=True)
class SortConfig:
    """SORT parameters, validated at construction.

    Attributes:
        max_age: updates a track may go unmatched before it is dropped (frames; reference 1).
        min_hits: consecutive matches before a track is reported (reference 3).
        iou_threshold: minimum IoU of a detection-track match (reference 0.3).
        frame_rate: nominal frames per second, used only to turn ``max_age`` into seconds when
            ``update`` receives timestamps.
        class_aware: if True, a detection is never matched to a track of another class.
    """

    max_age: int = 1
    min_hits: int = 3
    iou_threshold: float = 0.3
    frame_rate: float = 30.0
    class_aware: bool = False

    def __post_init__(self) -> None:
        require_int(self.max_age, "max_age", minimum=0)
        require_int(self.min_hits, "min_hits", minimum=0)
        require_number_in(self.iou_threshold, "iou_threshold", 0.0, 1.0)
        require_frame_rate(self.frame_rate)
        require_bool(self.class_aware, "class_aware")


class _SortTracks:
    """All live tracks as rows of two packed arrays, in creation order (the reference's list
    order); packing keeps the per-frame bookkeeping to a few array operations.

    Float columns: Kalman state ``x`` (7), covariance (10, see :mod:`tracker.kalman_sort`),
    ``last_seen_s``. Integer columns: ``track_id``, ``hit_streak`` (consecutive matched updates),
    ``last_seen_frame`` (update index of the last match), ``class_id``, ``row`` (input row matched
    in this update, -1 if none).
    """

    _X = slice(0, kalman_sort.STATE_DIM)
    _COV = slice(kalman_sort.STATE_DIM, kalman_sort.STATE_DIM + kalman_sort.COV_DIM)
    _LAST_SEEN_S = kalman_sort.STATE_DIM + kalman_sort.COV_DIM
    _TRACK_ID, _HIT_STREAK, _LAST_SEEN_FRAME, _CLASS_ID, _ROW = range(5)

    def __init__(self) -> None:
        self.floats = np.zeros((0, self._LAST_SEEN_S + 1))
        self.ints = np.zeros((0, 5), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.ints)

    x = property(lambda self: self.floats[:, self._X])
    cov = property(lambda self: self.floats[:, self._COV])
    last_seen_s = property(lambda self: self.floats[:, self._LAST_SEEN_S])
    track_id = property(lambda self: self.ints[:, self._TRACK_ID])
    hit_streak = property(lambda self: self.ints[:, self._HIT_STREAK])
    last_seen_frame = property(lambda self: self.ints[:, self._LAST_SEEN_FRAME])
    class_id = property(lambda self: self.ints[:, self._CLASS_ID])
    row = property(lambda self: self.ints[:, self._ROW])

    def keep(self, mask: np.ndarray) -> None:
        self.floats = self.floats[mask]
        self.ints = self.ints[mask]

    def append(self, x: np.ndarray, cov: np.ndarray, now_s: float, ints: np.ndarray) -> None:
        floats = np.empty((len(x), self.floats.shape[1]))
        floats[:, self._X] = x
        floats[:, self._COV] = cov
        floats[:, self._LAST_SEEN_S] = now_s
        self.floats = np.concatenate([self.floats, floats])
        self.ints = np.concatenate([self.ints, ints])


class SORT:
    """SORT multi-object tracker over ``supervision.Detections``.

    Example::

        tracker = SORT(max_age=1, min_hits=3, iou_threshold=0.3)
        for detections in detections_per_frame:
            tracked = tracker.update(detections)   # rows of `detections` with tracker_id set

    Track IDs are per instance, start at 1 and are never reused (not even after :meth:`reset`).
    Only live tracks are stored, so memory is bounded by the number of objects in view.
    """

    def __init__(
        self,
        max_age: int = 1,
        min_hits: int = 3,
        iou_threshold: float = 0.3,
        frame_rate: float = 30.0,
        class_aware: bool = False,
    ) -> None:
        """See :class:`SortConfig` for the parameters.

        Raises:
            InvalidTrackerConfigError (a ValueError): a parameter outside its range.
        """
        self.config = SortConfig(max_age, min_hits, iou_threshold, frame_rate, class_aware)
        self._model = kalman_sort.SortKalmanModel.from_filterpy(kalman_sort.sort_kalman_filter())
        self._lifetime = MissedLifetime(self.config.max_age, self.config.frame_rate)
        self._next_id = 1
        self._clock = FrameClock()
        self._tracks = _SortTracks()

    @property
    def num_tracks(self) -> int:
        """Number of live (stored) tracks, reported or not."""
        return len(self._tracks)

    def reset(self) -> None:
        """Forget all tracks and the clock (start a new stream). IDs keep counting up."""
        self._clock.reset()
        self._tracks = _SortTracks()

    def update(self, detections: sv.Detections, timestamp_s: float | None = None) -> sv.Detections:
        """Advance the tracker by one frame.

        Args:
            detections: this frame's detections; ``xyxy`` (n, 4) pixels. ``confidence`` is not
                used by SORT (filter by score beforehand); ``class_id`` is needed only with
                ``class_aware=True``. Call once per frame, also with empty detections.
            timestamp_s: capture time of the frame in seconds, increasing. If given (on every
                update of the stream), ``max_age`` is applied as ``max_age / frame_rate`` seconds.

        Returns:
            The input rows matched to a reported track, in input order, with ``tracker_id`` (int64)
            set and ``xyxy`` replaced by the track's Kalman-filtered box (float32); confidence,
            class_id, mask and data are the input row's.

        Raises:
            InvalidDetectionsError (a ValueError): a NaN/inf or non-positive-size box, naming the row.
            InvalidTimestampError (a ValueError): a non-finite or non-increasing timestamp, or
                timestamps given on some updates only.
        """
        cfg = self.config
        frame = read_detections(detections, need_confidence=False, need_class_id=cfg.class_aware)
        self._clock.tick(timestamp_s)
        tracks = self._tracks
        self._drop_expired_during_gap(tracks)

        predicted_xyxy = self._predict(tracks)
        iou = iou_matrix(frame.xyxy, predicted_xyxy)
        if cfg.class_aware:
            iou = forbid_cross_class(iou, frame.class_id, tracks.class_id, FORBIDDEN_IOU)
        det_idx, track_idx, unmatched = match_sort(iou, cfg.iou_threshold)

        z = xyxy_to_xysr(frame.xyxy)
        self._correct(tracks, track_idx, det_idx, z)
        self._start_tracks(tracks, unmatched, z, frame.class_id)

        reported = self._reported_mask(tracks).nonzero()[0]
        reported = reported[np.argsort(tracks.row[reported], kind="stable")]
        boxes = xysr_to_xyxy(tracks.x[reported])
        ids = tracks.track_id[reported]
        rows = tracks.row[reported]
        expired = self._lifetime.expired_after_association(self._clock, tracks.last_seen_frame, tracks.last_seen_s)
        if expired.any():
            tracks.keep(~expired)
        return select_tracked_rows(detections, rows, boxes, ids)

    def _drop_expired_during_gap(self, tracks: _SortTracks) -> None:
        expired = self._lifetime.expired_before_association(self._clock, tracks.last_seen_s)
        if expired is not None and expired.any():
            tracks.keep(~expired)

    def _predict(self, tracks: _SortTracks) -> np.ndarray:
        """Step 1: predict all tracks; drop those without a valid box. Returns (n, 4) xyxy."""
        if len(tracks) == 0:
            return np.zeros((0, 4))
        tracks.row[:] = -1
        # A track unmatched in the previous update loses its streak (reference `predict`).
        tracks.hit_streak[tracks.last_seen_frame < self._clock.frame_index - 1] = 0
        tracks.x[:], tracks.cov[:] = kalman_sort.predict(self._model, tracks.x, tracks.cov)
        boxes = xysr_to_xyxy(tracks.x)
        invalid = np.isnan(boxes[:, 1])  # y1 is NaN exactly when the state has no box
        if invalid.any():
            tracks.keep(~invalid)
            boxes = boxes[~invalid]
        return boxes

    def _correct(self, tracks: _SortTracks, track_idx: np.ndarray, det_idx: np.ndarray, z: np.ndarray) -> None:
        """Step 3a: Kalman-correct matched tracks and record the matched input row."""
        if len(track_idx) == 0:
            return
        tracks.x[track_idx], tracks.cov[track_idx] = kalman_sort.update(
            self._model, tracks.x[track_idx], tracks.cov[track_idx], z[det_idx]
        )
        tracks.last_seen_s[track_idx] = self._clock.now_s
        matched = tracks.ints[track_idx]
        matched[:, tracks._HIT_STREAK] += 1
        matched[:, tracks._LAST_SEEN_FRAME] = self._clock.frame_index
        matched[:, tracks._ROW] = det_idx
        tracks.ints[track_idx] = matched

    def _start_tracks(
        self, tracks: _SortTracks, rows: np.ndarray, z: np.ndarray, class_id: np.ndarray | None
    ) -> None:
        """Step 3b: one new track per unmatched detection, IDs in the given row order."""
        n = len(rows)
        if n == 0:
            return
        x, cov = kalman_sort.initiate(self._model, z[rows])
        ints = np.empty((n, 5), dtype=np.int64)
        ints[:, tracks._TRACK_ID] = np.arange(self._next_id, self._next_id + n)
        ints[:, tracks._HIT_STREAK] = 0
        ints[:, tracks._LAST_SEEN_FRAME] = self._clock.frame_index
        ints[:, tracks._CLASS_ID] = class_id[rows] if class_id is not None else _NO_CLASS
        ints[:, tracks._ROW] = rows
        self._next_id += n
        tracks.append(x, cov, self._clock.now_s, ints)

    def _reported_mask(self, tracks: _SortTracks) -> np.ndarray:
        """Step 4: matched this update and confirmed (``min_hits`` streak, or still warming up)."""
        min_hits = self.config.min_hits
        matched_now = tracks.row >= 0
        if self._clock.frame_index <= min_hits:
            return matched_now
        return matched_now & (tracks.hit_streak >= min_hits)
