"""ByteTrack: multi-object tracking by associating every detection box (Zhang, Sun, Jiang, Yu,
Weng, Yuan, Luo, Liu, Wang; ECCV 2022), Algorithm 1.

Per update:

* Split detections at ``track_thresh``: high ``D_high`` (score > track_thresh) and low ``D_low``
  (``LOW_SCORE_THRESH`` < score < track_thresh) (Algorithm 1, lines 3-13).
* Predict every tracked and lost track with the Kalman filter, in one batch (line 14-16).
* First association: ``D_high`` with tracked + lost tracks, cost ``1 - IoU * score``, accepted
  below ``match_thresh`` (lines 17-19; the score fusion is the reference code's default for MOT17).
* Second association: ``D_low`` with the tracked tracks left over, cost ``1 - IoU``, accepted below
  ``1 - SECOND_MATCH_IOU`` (lines 20-21). Tracked tracks still unmatched become lost (line 22).
* Unconfirmed tracks (started in the previous update, not yet matched again) with the high
  detections left over, cost ``1 - IoU * score`` below ``UNCONFIRMED_MATCH_COST``; unmatched ones
  are deleted (reference code, "unconfirmed").
* New tracks from high detections left over with score >= ``track_thresh + NEW_TRACK_MARGIN``
  (lines 23-27).
* Lost tracks unmatched for more than ``int(frame_rate / 30 * track_buffer)`` updates are deleted
  (line 23; ``track_buffer`` is defined at 30 fps) — with timestamps, for more than that many
  frame periods in seconds (see :mod:`tracker.lifetime`).
* A tracked and a lost track that overlap almost completely are duplicates; the younger is deleted
  (reference code, ``remove_duplicate_stracks``).

Reported: the confirmed tracks matched in this update, with their Kalman-corrected box.

Thresholds that the paper leaves implicit are module constants taken from the authors'
reference implementation (ifzhang/ByteTrack, ``yolox/tracker/byte_tracker.py``), including its
IoU convention (``cython_bbox``: widths and heights of ``x2 - x1 + 1`` pixels). Unlike that code,
deleted tracks are freed at once, IDs are per tracker instance, and every reported box is tied
to the input row it was matched with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import supervision as sv

from tracker import kalman_xyah
from tracker._io import FrameClock, read_detections, select_tracked_rows
from tracker.association import FORBIDDEN_COST, forbid_cross_class, match_below_cost
from tracker.errors import InvalidTrackerConfigError
from tracker.geometry import iou_matrix, xyah_to_xyxy, xyxy_to_xyah
from tracker.lifetime import MissedLifetime
from tracker.sort import _require_frame_rate, _require_int

LOW_SCORE_THRESH = 0.1  # D_low holds scores strictly above this
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
        track_thresh: score splitting high from low detections (paper's tau; reference 0.6 on MOT15
            in the issue, 0.5 in the reference code's default).
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
        if not LOW_SCORE_THRESH <= float(self.track_thresh) < 1.0:
            raise InvalidTrackerConfigError(
                f"track_thresh must lie in [{LOW_SCORE_THRESH}, 1), got {self.track_thresh}"
            )
        if not 0.0 < float(self.match_thresh) <= 1.0:
            raise InvalidTrackerConfigError(f"match_thresh must lie in (0, 1], got {self.match_thresh}")
        _require_int(self.track_buffer, "track_buffer", minimum=0)
        _require_frame_rate(self.frame_rate)

    @property
    def max_time_lost_frames(self) -> int:
        """Lost-track lifetime in updates: ``int(frame_rate / 30 * track_buffer)`` (reference)."""
        return int(self.frame_rate / BUFFER_REFERENCE_FPS * self.track_buffer)


class _ByteTracks:
    """All live tracks (tracked, unconfirmed and lost) as parallel arrays.

    ``rank`` orders each list the way the reference keeps its Python lists: a track gets a new,
    larger rank whenever it is appended to the tracked list (new, re-found) or the lost list.
    """

    FIELDS = ("mean", "cov", "track_id", "state", "activated", "start_frame", "last_seen_frame",
              "last_seen_s", "class_id", "rank", "row")

    def __init__(self) -> None:
        self.mean = np.zeros((0, kalman_xyah.STATE_DIM))
        self.cov = np.zeros((0, kalman_xyah.STATE_DIM, kalman_xyah.STATE_DIM))
        self.track_id = np.zeros(0, dtype=np.int64)
        self.state = np.zeros(0, dtype=np.int8)
        self.activated = np.zeros(0, dtype=bool)  # confirmed (matched twice, or born in update 1)
        self.start_frame = np.zeros(0, dtype=np.int64)
        self.last_seen_frame = np.zeros(0, dtype=np.int64)
        self.last_seen_s = np.zeros(0)
        self.class_id = np.zeros(0, dtype=np.int64)
        self.rank = np.zeros(0, dtype=np.int64)
        self.row = np.zeros(0, dtype=np.int64)  # input row matched in this update, -1 if none

    def __len__(self) -> int:
        return len(self.track_id)

    def keep(self, mask: np.ndarray) -> None:
        for name in self.FIELDS:
            setattr(self, name, getattr(self, name)[mask])

    def append(self, other: dict[str, np.ndarray]) -> None:
        for name in self.FIELDS:
            setattr(self, name, np.concatenate([getattr(self, name), other[name]]))

    def in_list_order(self, mask: np.ndarray) -> np.ndarray:
        idx = np.flatnonzero(mask)
        return idx[np.argsort(self.rank[idx], kind="stable")]


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
        self.config = ByteTrackConfig(float(track_thresh), float(match_thresh), track_buffer,
                                      float(frame_rate), class_aware)
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
        """Advance the tracker by one frame (Algorithm 1 of the paper, one loop iteration).

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
        tracks.row = np.full(len(tracks), -1, dtype=np.int64)
        self._drop_expired_during_gap(tracks)
        n = len(frame.xyxy)
        scores = frame.confidence if frame.confidence is not None else np.zeros(n)
        det_class = frame.class_id if frame.class_id is not None else np.full(n, _NO_CLASS, dtype=np.int64)

        # Split detections by score (Algorithm 1, lines 3-13).
        high = np.flatnonzero(scores > cfg.track_thresh)
        low = np.flatnonzero((scores > LOW_SCORE_THRESH) & (scores < cfg.track_thresh))

        was_lost = tracks.state == _LOST
        pool = tracks.in_list_order((tracks.state == _TRACKED) & tracks.activated)
        pool = np.concatenate([pool, tracks.in_list_order(was_lost)])
        unconfirmed = tracks.in_list_order((tracks.state == _TRACKED) & ~tracks.activated)
        self._predict(tracks, pool)

        # First association: high detections with tracked + lost tracks (lines 17-19).
        t1, d1, pool_left, high_left = self._associate(
            tracks, pool, frame.xyxy, high, scores, det_class, cfg.match_thresh, fuse_score=True
        )
        # Second association: low detections with the remaining tracked tracks (lines 20-21).
        remaining = pool[pool_left][tracks.state[pool[pool_left]] == _TRACKED]
        t2, d2, remaining_left, _ = self._associate(
            tracks, remaining, frame.xyxy, low, scores, det_class, 1.0 - SECOND_MATCH_IOU, fuse_score=False
        )
        # Unconfirmed tracks with the high detections left over.
        high_rest = high[high_left]
        t3, d3, unconfirmed_left, high_rest_left = self._associate(
            tracks, unconfirmed, frame.xyxy, high_rest, scores, det_class, UNCONFIRMED_MATCH_COST, fuse_score=True
        )

        refound = t1[was_lost[t1]]
        self._correct(tracks, np.concatenate([t1, t2, t3]), np.concatenate([d1, d2, d3]), frame.xyxy)
        newly_lost = remaining[remaining_left]
        tracks.state[newly_lost] = _LOST

        # Lost tracks (before this update) past their lifetime (line 23).
        expired = was_lost & (tracks.row < 0) & self._lifetime.expired_after_association(
            self._clock, tracks.last_seen_frame, tracks.last_seen_s
        )
        delete = expired
        delete[unconfirmed[unconfirmed_left]] = True

        # Ranks: new tracks, then re-found ones, join the tracked list; newly lost join the lost list.
        births = high_rest[high_rest_left]
        births = births[scores[births] >= self._new_track_thresh]
        rank_base = self._next_rank + len(births)
        tracks.rank[refound] = rank_base + np.arange(len(refound))
        tracks.rank[newly_lost] = rank_base + len(refound) + np.arange(len(newly_lost))
        self._next_rank = rank_base + len(refound) + len(newly_lost)
        tracks.keep(~delete)
        self._start_tracks(tracks, births, frame.xyxy, det_class, rank_start=rank_base - len(births))
        self._remove_duplicates(tracks)

        reported = np.flatnonzero((tracks.state == _TRACKED) & tracks.activated)
        reported = reported[np.argsort(tracks.row[reported], kind="stable")]
        boxes = xyah_to_xyxy(tracks.mean[reported])
        return select_tracked_rows(detections, tracks.row[reported], boxes, tracks.track_id[reported])

    def _drop_expired_during_gap(self, tracks: _ByteTracks) -> None:
        expired = self._lifetime.expired_before_association(self._clock, tracks.last_seen_s)
        if expired is not None:
            tracks.keep(~(expired & (tracks.state == _LOST)))

    @staticmethod
    def _predict(tracks: _ByteTracks, pool: np.ndarray) -> None:
        """Kalman-predict the pool in one batch; lost tracks' height velocity is zeroed first."""
        if len(pool) == 0:
            return
        mean = tracks.mean[pool]
        mean[tracks.state[pool] != _TRACKED, kalman_xyah.HEIGHT_VELOCITY] = 0.0
        tracks.mean[pool], tracks.cov[pool] = kalman_xyah.predict(mean, tracks.cov[pool])

    def _associate(
        self,
        tracks: _ByteTracks,
        track_idx: np.ndarray,
        xyxy: np.ndarray,
        det_rows: np.ndarray,
        scores: np.ndarray,
        det_class: np.ndarray,
        cost_limit: float,
        fuse_score: bool,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Match ``tracks[track_idx]`` with detections ``det_rows``.

        Returns ``(matched track indices, matched detection rows, unmatched positions in
        track_idx, unmatched positions in det_rows)``.
        """
        if len(track_idx) == 0 or len(det_rows) == 0:
            return (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64),
                    np.arange(len(track_idx)), np.arange(len(det_rows)))
        iou = iou_matrix(xyah_to_xyxy(tracks.mean[track_idx]), xyxy[det_rows], IOU_PIXEL_OFFSET)
        cost = 1.0 - iou
        if fuse_score:
            # Reference `fuse_score`: similarity (1 - cost) weighted by the detection score.
            cost = 1.0 - (1.0 - cost) * scores[det_rows][None, :]
        if self.config.class_aware:
            cost = forbid_cross_class(cost, tracks.class_id[track_idx], det_class[det_rows], FORBIDDEN_COST)
        ti, di, t_left, d_left = match_below_cost(cost, cost_limit)
        return track_idx[ti], det_rows[di], t_left, d_left

    def _correct(self, tracks: _ByteTracks, track_idx: np.ndarray, rows: np.ndarray, xyxy: np.ndarray) -> None:
        """Kalman-correct every matched track in one batch; they become tracked and confirmed."""
        if len(track_idx) == 0:
            return
        tracks.mean[track_idx], tracks.cov[track_idx] = kalman_xyah.update(
            tracks.mean[track_idx], tracks.cov[track_idx], xyxy_to_xyah(xyxy[rows])
        )
        tracks.state[track_idx] = _TRACKED
        tracks.activated[track_idx] = True
        tracks.last_seen_frame[track_idx] = self._clock.frame_index
        tracks.last_seen_s[track_idx] = self._clock.now_s
        tracks.row[track_idx] = rows

    def _start_tracks(
        self, tracks: _ByteTracks, rows: np.ndarray, xyxy: np.ndarray, det_class: np.ndarray, rank_start: int
    ) -> None:
        """New tracks (lines 24-27); confirmed at once only in the first update of a stream."""
        n = len(rows)
        if n == 0:
            return
        mean, cov = kalman_xyah.initiate(xyxy_to_xyah(xyxy[rows]))
        frame_index = self._clock.frame_index
        tracks.append(
            {
                "mean": mean,
                "cov": cov,
                "track_id": np.arange(self._next_id, self._next_id + n, dtype=np.int64),
                "state": np.full(n, _TRACKED, dtype=np.int8),
                "activated": np.full(n, frame_index == 1),
                "start_frame": np.full(n, frame_index, dtype=np.int64),
                "last_seen_frame": np.full(n, frame_index, dtype=np.int64),
                "last_seen_s": np.full(n, self._clock.now_s),
                "class_id": det_class[rows],
                "rank": rank_start + np.arange(n, dtype=np.int64),
                "row": rows,
            }
        )
        self._next_id += n

    def _remove_duplicates(self, tracks: _ByteTracks) -> None:
        """Delete the younger of each tracked/lost pair with ``1 - IoU < DUPLICATE_IOU_COST``."""
        tracked = np.flatnonzero(tracks.state == _TRACKED)
        lost = np.flatnonzero(tracks.state == _LOST)
        if len(tracked) == 0 or len(lost) == 0:
            return
        cost = 1.0 - iou_matrix(
            xyah_to_xyxy(tracks.mean[tracked]), xyah_to_xyxy(tracks.mean[lost]), IOU_PIXEL_OFFSET
        )
        if self.config.class_aware:
            cost = forbid_cross_class(cost, tracks.class_id[tracked], tracks.class_id[lost], FORBIDDEN_COST)
        ti, li = np.nonzero(cost < DUPLICATE_IOU_COST)
        if len(ti) == 0:
            return
        age = tracks.last_seen_frame - tracks.start_frame
        lost_is_younger = age[tracked[ti]] > age[lost[li]]
        delete = np.zeros(len(tracks), dtype=bool)
        delete[lost[li[lost_is_younger]]] = True
        delete[tracked[ti[~lost_is_younger]]] = True
        tracks.keep(~delete)
