"""ByteTrack: multi-object tracking by associating every detection box (Zhang, Sun, Jiang, Yu,
Weng, Yuan, Luo, Liu, Wang; ECCV 2022), BYTE as in the paper's Algorithm 1 (section 3).

Per update, in the paper's steps:

1. Split detections at ``track_thresh``: ``D_high`` (score > track_thresh) and ``D_low``
   (``LOW_SCORE_THRESH`` < score < track_thresh).
2. Predict every tracked and lost track with the Kalman filter, in one batch.
3. First association: ``D_high`` with all tracks ``T`` (tracked + lost), cost ``1 - IoU * score``
   (the reference code fuses the score into the IoU cost for MOT17-style data), accepted below
   ``match_thresh``; leftovers are ``D_remain`` and ``T_remain``.
4. Second association: ``D_low`` with the tracked tracks of ``T_remain``, cost ``1 - IoU``,
   accepted below ``1 - SECOND_MATCH_IOU``; unmatched low detections are dropped as background,
   unmatched tracks ``T_re-remain`` become lost.
5. Unconfirmed tracks (born in the previous update, not matched since) with ``D_remain``, cost
   ``1 - IoU * score`` below ``UNCONFIRMED_MATCH_COST``; unmatched ones are deleted (reference
   code; the paper's "track initialisation" needs a second hit).
6. Lost tracks unmatched for more than ``int(frame_rate / 30 * track_buffer)`` updates are deleted
   (``track_buffer`` is defined at 30 fps) — with timestamps, for more than that many frame
   periods in seconds (see :mod:`tracker.lifetime`).
7. New tracks from the rest of ``D_remain`` with score >= ``track_thresh + NEW_TRACK_MARGIN``.
8. A tracked and a lost track that overlap almost completely are duplicates; the younger is
   deleted (reference code, ``remove_duplicate_stracks``).

Reported: the confirmed tracks matched in this update, with their Kalman-corrected box.

Thresholds that the paper leaves implicit are module constants taken from the authors' reference
implementation (ifzhang/ByteTrack, ``yolox/tracker/byte_tracker.py``), including its IoU convention
(``cython_bbox``: widths and heights of ``x2 - x1 + 1`` pixels) and the order of its track lists.
Unlike that code, deleted tracks are freed at once (the reference keeps every removed track in a
list forever, and a lost track removed for age stays matchable for one more update), IDs are per
tracker instance, and every reported box is tied to the input row it was matched with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import supervision as sv

from tracker import kalman_xyah
from tracker._config import require_bool, require_frame_rate, require_int, require_number_in
from tracker._io import FrameClock, read_detections, select_tracked_rows
from tracker.association import FORBIDDEN_COST, forbid_cross_class, match_below_cost
from tracker.geometry import iou_matrix, xyah_to_xyxy, xyxy_to_xyah
from tracker.lifetime import MissedLifetime

LOW_SCORE_THRESH = 0.1  # D_low holds scores strictly above this (reference: `scores > 0.1`)
NEW_TRACK_MARGIN = 0.1  # new tracks need score >= track_thresh + this
SECOND_MATCH_IOU = 0.5  # second association accepts cost 1 - IoU below 1 - 0.5
UNCONFIRMED_MATCH_COST = 0.7  # unconfirmed tracks accept fused cost below this
DUPLICATE_IOU_COST = 0.15  # tracked and lost tracks with 1 - IoU below this are duplicates
BUFFER_REFERENCE_FPS = 30.0  # track_buffer is given in frames at this frame rate
IOU_PIXEL_OFFSET = 1.0  # the reference's cython_bbox IoU: inclusive pixel widths

_TRACKED, _LOST = 1, 2
_NO_CLASS = -1


@dataclass(frozen=True)
class ByteTrackConfig:
    """ByteTrack parameters, validated at construction.

    Attributes:
        track_thresh: detection score splitting ``D_high`` from ``D_low`` (the paper's tau;
            0.5 in the reference code, 0.6 in the MOT15 setting of issue 3).
        match_thresh: largest accepted cost ``1 - IoU * score`` of the first association.
        track_buffer: frames, at 30 fps, that a lost track is kept for re-identification.
        frame_rate: the stream's frame rate (frames per second); scales ``track_buffer``.
        class_aware: if True, a detection is never matched to a track of another class.
    """

    track_thresh: float = 0.5
    match_thresh: float = 0.8
    track_buffer: int = 30
    frame_rate: float = 30.0
    class_aware: bool = False

    def __post_init__(self) -> None:
        require_number_in(self.track_thresh, "track_thresh", LOW_SCORE_THRESH, 1.0, low_open=True)
        require_number_in(self.match_thresh, "match_thresh", 0.0, 1.0, low_open=True)
        require_int(self.track_buffer, "track_buffer", minimum=0)
        require_frame_rate(self.frame_rate)
        require_bool(self.class_aware, "class_aware")

    @property
    def max_time_lost_frames(self) -> int:
        """Lost-track lifetime in updates: ``int(frame_rate / 30 * track_buffer)`` (reference)."""
        return int(self.frame_rate / BUFFER_REFERENCE_FPS * self.track_buffer)


class _ByteTracks:
    """All live tracks (tracked, unconfirmed and lost) as rows of two packed arrays; packing keeps
    the per-frame bookkeeping to a few array operations.

    Rows are kept sorted by ``rank``, which reproduces the order of the reference's Python lists:
    a track gets a new, larger rank whenever it is appended to the tracked list (new, re-found) or
    to the lost list, so selecting the tracked or the lost rows yields them in list order.

    Float columns: Kalman ``mean`` (8) and ``cov`` (12, see :mod:`tracker.kalman_xyah`),
    ``last_seen_s``. Integer columns: ``track_id``, ``state`` (tracked / lost), ``activated``
    (confirmed: matched twice, or born in update 1), ``start_frame``, ``last_seen_frame``,
    ``class_id``, ``rank``, ``row`` (input row matched in this update, -1 if none).
    """

    _MEAN = slice(0, kalman_xyah.STATE_DIM)
    _COV = slice(kalman_xyah.STATE_DIM, kalman_xyah.STATE_DIM + kalman_xyah.COV_DIM)
    _LAST_SEEN_S = kalman_xyah.STATE_DIM + kalman_xyah.COV_DIM
    (_TRACK_ID, _STATE, _ACTIVATED, _START_FRAME, _LAST_SEEN_FRAME, _CLASS_ID, _RANK, _ROW) = range(8)
    _NUM_INTS = 8

    def __init__(self) -> None:
        self.floats = np.zeros((0, self._LAST_SEEN_S + 1))
        self.ints = np.zeros((0, self._NUM_INTS), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.ints)

    mean = property(lambda self: self.floats[:, self._MEAN])
    cov = property(lambda self: self.floats[:, self._COV])
    last_seen_s = property(lambda self: self.floats[:, self._LAST_SEEN_S])
    track_id = property(lambda self: self.ints[:, self._TRACK_ID])
    state = property(lambda self: self.ints[:, self._STATE])
    activated = property(lambda self: self.ints[:, self._ACTIVATED])
    start_frame = property(lambda self: self.ints[:, self._START_FRAME])
    last_seen_frame = property(lambda self: self.ints[:, self._LAST_SEEN_FRAME])
    class_id = property(lambda self: self.ints[:, self._CLASS_ID])
    rank = property(lambda self: self.ints[:, self._RANK])
    row = property(lambda self: self.ints[:, self._ROW])

    def take(self, index: np.ndarray) -> None:
        """Keep the rows selected by a boolean mask or an index array, in that order."""
        self.floats = self.floats[index]
        self.ints = self.ints[index]

    def append(self, mean: np.ndarray, cov: np.ndarray, now_s: float, ints: np.ndarray) -> None:
        floats = np.empty((len(mean), self.floats.shape[1]))
        floats[:, self._MEAN] = mean
        floats[:, self._COV] = cov
        floats[:, self._LAST_SEEN_S] = now_s
        self.floats = np.concatenate([self.floats, floats])
        self.ints = np.concatenate([self.ints, ints])


class ByteTrack:
    """ByteTrack multi-object tracker over ``supervision.Detections``.

    Example::

        tracker = ByteTrack(track_thresh=0.6, match_thresh=0.9, track_buffer=30, frame_rate=25)
        for detections in detections_per_frame:
            tracked = tracker.update(detections)   # rows of `detections` with tracker_id set

    Track IDs are per instance, start at 1 and are never reused (not even after :meth:`reset`).
    Deleted tracks are freed, so memory is bounded by the objects seen within the lost-track
    lifetime.
    """

    def __init__(
        self,
        track_thresh: float = 0.5,
        match_thresh: float = 0.8,
        track_buffer: int = 30,
        frame_rate: float = 30.0,
        class_aware: bool = False,
    ) -> None:
        """See :class:`ByteTrackConfig` for the parameters.

        Raises:
            InvalidTrackerConfigError (a ValueError): a parameter outside its range.
        """
        self.config = ByteTrackConfig(track_thresh, match_thresh, track_buffer, frame_rate, class_aware)
        self._lifetime = MissedLifetime(self.config.max_time_lost_frames, self.config.frame_rate)
        self._new_track_thresh = self.config.track_thresh + NEW_TRACK_MARGIN
        self._next_id = 1
        self._next_rank = 0
        self._clock = FrameClock()
        self._tracks = _ByteTracks()

    @property
    def num_tracks(self) -> int:
        """Number of live (stored) tracks: tracked, unconfirmed and lost."""
        return len(self._tracks)

    def reset(self) -> None:
        """Forget all tracks and the clock (start a new stream). IDs keep counting up."""
        self._clock.reset()
        self._tracks = _ByteTracks()

    def update(self, detections: sv.Detections, timestamp_s: float | None = None) -> sv.Detections:
        """Advance the tracker by one frame (one iteration of the paper's Algorithm 1).

        Args:
            detections: this frame's detections; ``xyxy`` (n, 4) pixels and ``confidence`` (n,)
                scores in [0, 1] are required; ``class_id`` only with ``class_aware=True``.
                Call once per frame, also with empty detections.
            timestamp_s: capture time of the frame in seconds, increasing. If given (on every
                update of the stream), lost tracks are kept for
                ``int(frame_rate / 30 * track_buffer) / frame_rate`` seconds.

        Returns:
            The input rows matched to a confirmed track, in input order, with ``tracker_id``
            (int64) set and ``xyxy`` replaced by the track's Kalman-corrected box (float32);
            confidence, class_id, mask and data are the input row's.

        Raises:
            InvalidDetectionsError (a ValueError): a NaN/inf box or score, a non-positive-size
                box (naming the row), or missing confidence.
            InvalidTimestampError (a ValueError): a non-finite or non-increasing timestamp, or
                timestamps given on some updates only.
        """
        cfg = self.config
        frame = read_detections(detections, need_confidence=True, need_class_id=cfg.class_aware)
        self._clock.tick(timestamp_s)
        tracks = self._tracks
        self._drop_expired_during_gap(tracks)
        n_dets = len(frame.xyxy)
        scores = frame.confidence if frame.confidence is not None else np.zeros(n_dets)
        det_class = frame.class_id  # None unless class_aware

        # Step 1: split detections by score.
        high = (scores > cfg.track_thresh).nonzero()[0]
        low = ((scores > LOW_SCORE_THRESH) & (scores < cfg.track_thresh)).nonzero()[0]

        # Step 2: confirmed tracked + lost tracks form the pool (in list order); predict it.
        tracks.row[:] = -1
        state, activated = tracks.state, tracks.activated.astype(bool)
        was_lost = state == _LOST
        is_tracked = ~was_lost
        pool = np.concatenate([(is_tracked & activated).nonzero()[0], was_lost.nonzero()[0]])
        unconfirmed = (is_tracked & ~activated).nonzero()[0]
        self._predict(tracks, pool, was_lost)
        costs = _AssociationCosts(tracks, frame.xyxy, scores, det_class, cfg.class_aware)

        # Step 3: first association, high detections with tracked + lost tracks.
        t1, d1, pool_left, high_left = costs.match(pool, high, cfg.match_thresh, fuse_score=True)
        # Step 4: second association, low detections with the tracked tracks left over.
        remaining = pool[pool_left]
        remaining = remaining[is_tracked[remaining]]
        t2, d2, remaining_left, _ = costs.match(remaining, low, 1.0 - SECOND_MATCH_IOU, fuse_score=False)
        # Step 5: unconfirmed tracks with the high detections left over.
        high_rest = high[high_left]
        t3, d3, unconfirmed_left, high_rest_left = costs.match(
            unconfirmed, high_rest, UNCONFIRMED_MATCH_COST, fuse_score=True
        )

        refound = t1[was_lost[t1]]
        newly_lost = remaining[remaining_left]
        self._correct(tracks, np.concatenate([t1, t2, t3]), np.concatenate([d1, d2, d3]), frame.xyxy)
        state[newly_lost] = _LOST  # T_re-remain -> T_lost

        # Step 6: lost tracks (before this update) past their lifetime; unmatched unconfirmed.
        delete = was_lost & (tracks.row < 0)
        if delete.any():
            delete &= self._lifetime.expired_after_association(
                self._clock, tracks.last_seen_frame, tracks.last_seen_s
            )
        delete[unconfirmed[unconfirmed_left]] = True

        # Step 7: new tracks; step 8: duplicates.
        births = high_rest[high_rest_left]
        births = births[scores[births] >= self._new_track_thresh]
        self._start_tracks(tracks, births, frame.xyxy, det_class)
        keep = np.concatenate([~delete, np.ones(len(births), dtype=bool)])
        self._reorder(tracks, refound, newly_lost, keep)
        boxes = self._remove_duplicates(tracks)

        reported = ((tracks.state == _TRACKED) & (tracks.activated == 1)).nonzero()[0]
        reported = reported[np.argsort(tracks.row[reported], kind="stable")]
        return select_tracked_rows(detections, tracks.row[reported], boxes[reported], tracks.track_id[reported])

    def _drop_expired_during_gap(self, tracks: _ByteTracks) -> None:
        # Any track, tracked or lost, unseen for longer than a lost track may live: with a gap in
        # the stream a tracked track has had no chance to become lost first.
        expired = self._lifetime.expired_before_association(self._clock, tracks.last_seen_s)
        if expired is not None and expired.any():
            tracks.take(~expired)

    @staticmethod
    def _predict(tracks: _ByteTracks, pool: np.ndarray, was_lost: np.ndarray) -> None:
        """Kalman-predict the pool in one batch; lost tracks' height velocity is zeroed first."""
        if len(pool) == 0:
            return
        mean = tracks.mean[pool]
        mean[:, kalman_xyah.HEIGHT_VELOCITY] *= ~was_lost[pool]
        tracks.mean[pool], tracks.cov[pool] = kalman_xyah.predict(mean, tracks.cov[pool])

    def _correct(self, tracks: _ByteTracks, track_idx: np.ndarray, rows: np.ndarray, xyxy: np.ndarray) -> None:
        """Kalman-correct every matched track in one batch; they become tracked and confirmed."""
        if len(track_idx) == 0:
            return
        tracks.mean[track_idx], tracks.cov[track_idx] = kalman_xyah.update(
            tracks.mean[track_idx], tracks.cov[track_idx], xyxy_to_xyah(xyxy[rows])
        )
        tracks.last_seen_s[track_idx] = self._clock.now_s
        matched = tracks.ints[track_idx]
        matched[:, _ByteTracks._STATE] = _TRACKED
        matched[:, _ByteTracks._ACTIVATED] = 1
        matched[:, _ByteTracks._LAST_SEEN_FRAME] = self._clock.frame_index
        matched[:, _ByteTracks._ROW] = rows
        tracks.ints[track_idx] = matched

    def _start_tracks(
        self, tracks: _ByteTracks, rows: np.ndarray, xyxy: np.ndarray, det_class: np.ndarray | None
    ) -> None:
        """New tracks (step 7), appended to the tracked list; confirmed at once only in the
        first update of a stream."""
        n = len(rows)
        if n == 0:
            return
        mean, cov = kalman_xyah.initiate(xyxy_to_xyah(xyxy[rows]))
        frame_index = self._clock.frame_index
        ints = np.empty((n, _ByteTracks._NUM_INTS), dtype=np.int64)
        ints[:, _ByteTracks._TRACK_ID] = np.arange(self._next_id, self._next_id + n)
        ints[:, _ByteTracks._STATE] = _TRACKED
        ints[:, _ByteTracks._ACTIVATED] = frame_index == 1
        ints[:, _ByteTracks._START_FRAME] = frame_index
        ints[:, _ByteTracks._LAST_SEEN_FRAME] = frame_index
        ints[:, _ByteTracks._CLASS_ID] = det_class[rows] if det_class is not None else _NO_CLASS
        ints[:, _ByteTracks._RANK] = self._next_rank + np.arange(n)
        ints[:, _ByteTracks._ROW] = rows
        self._next_id += n
        self._next_rank += n
        tracks.append(mean, cov, self._clock.now_s, ints)

    def _reorder(self, tracks: _ByteTracks, refound: np.ndarray, newly_lost: np.ndarray, keep: np.ndarray) -> None:
        """Move re-found tracks to the end of the tracked list and newly lost ones to the end of
        the lost list (the reference appends them after this update's new tracks), and drop the
        rows not in ``keep``."""
        moved = len(refound) + len(newly_lost)
        if moved:
            rank = tracks.rank
            rank[refound] = self._next_rank + np.arange(len(refound))
            rank[newly_lost] = self._next_rank + len(refound) + np.arange(len(newly_lost))
            self._next_rank += moved
            kept = keep.nonzero()[0]
            tracks.take(kept[np.argsort(rank[kept], kind="stable")])
        elif not keep.all():
            tracks.take(keep)

    def _remove_duplicates(self, tracks: _ByteTracks) -> np.ndarray:
        """Delete the younger of each tracked/lost pair with ``1 - IoU < DUPLICATE_IOU_COST``.

        Returns the xyxy boxes (n, 4) of the remaining tracks' Kalman means.
        """
        boxes = xyah_to_xyxy(tracks.mean)
        is_lost = tracks.state == _LOST
        tracked, lost = (~is_lost).nonzero()[0], is_lost.nonzero()[0]
        if len(tracked) == 0 or len(lost) == 0:
            return boxes
        cost = 1.0 - iou_matrix(boxes[tracked], boxes[lost], IOU_PIXEL_OFFSET)
        if self.config.class_aware:
            cost = forbid_cross_class(cost, tracks.class_id[tracked], tracks.class_id[lost], FORBIDDEN_COST)
        ti, li = np.nonzero(cost < DUPLICATE_IOU_COST)
        if len(ti) == 0:
            return boxes
        age = tracks.last_seen_frame - tracks.start_frame
        lost_is_younger = age[tracked[ti]] > age[lost[li]]
        keep = np.ones(len(tracks), dtype=bool)
        keep[lost[li[lost_is_younger]]] = False
        keep[tracked[ti[~lost_is_younger]]] = False
        tracks.take(keep)
        return boxes[keep]


class _AssociationCosts:
    """IoU of every track's (predicted) box with every detection, computed once per update and
    sliced for the three associations."""

    def __init__(
        self, tracks: _ByteTracks, xyxy: np.ndarray, scores: np.ndarray, det_class: np.ndarray | None,
        class_aware: bool,
    ) -> None:
        self._cost = 1.0 - iou_matrix(xyah_to_xyxy(tracks.mean), xyxy, IOU_PIXEL_OFFSET)
        if class_aware:
            self._cost = forbid_cross_class(self._cost, tracks.class_id, det_class, FORBIDDEN_COST)
        self._scores = scores

    def match(
        self, track_idx: np.ndarray, det_rows: np.ndarray, cost_limit: float, fuse_score: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Match tracks ``track_idx`` with detections ``det_rows``.

        Returns ``(matched track indices, matched detection rows, unmatched positions in
        track_idx, unmatched positions in det_rows)``.
        """
        if len(track_idx) == 0 or len(det_rows) == 0:
            return (_EMPTY, _EMPTY, np.arange(len(track_idx)), np.arange(len(det_rows)))
        cost = self._cost[track_idx][:, det_rows]
        if fuse_score:
            # Reference `fuse_score`: the IoU similarity (1 - cost) weighted by the score.
            cost = 1.0 - (1.0 - cost) * self._scores[det_rows]
        ti, di, t_left, d_left = match_below_cost(cost, cost_limit)
        return track_idx[ti], det_rows[di], t_left, d_left


_EMPTY = np.zeros(0, dtype=np.int64)
