"""Naive baseline trackers for the MOT benchmark: the reference algorithms written plainly.

These are deliberately straightforward re-implementations (our own code) with the behaviour and the
per-track, per-object Python structure of the published reference implementations:

* ``NaiveSort``: abewley/sort ``sort.py`` (Bewley et al. 2016) — one filterpy ``KalmanFilter`` per
  track, predict/update called per track, IoU matrix + ``lap.lapjv``.
* ``NaiveByteTrack``: ifzhang/ByteTrack ``yolox/tracker`` (Zhang et al. 2022, Algorithm 1) — one
  object per track, a Kalman filter step per track with a Cholesky solve, list bookkeeping of
  tracked / lost / removed tracks (the removed list grows without bound, as in the reference).

They exist for two reasons: their time per frame, measured in the same run, is the baseline of the
speed ratio in ``benchmarks/mot.py``; and their output is what our trackers in ``tracker/`` must
reproduce. Input and output are plain arrays: ``update(dets)`` takes float64 ``(n, 5)``
``x1, y1, x2, y2, score`` and returns ``(m, 5)`` ``x1, y1, x2, y2, track_id``.
"""

from __future__ import annotations

import lap
import numpy as np
import scipy.linalg
from filterpy.kalman import KalmanFilter


# ----------------------------------------------------------------------------------------------
# SORT
# ----------------------------------------------------------------------------------------------
def _pairwise_iou(a: np.ndarray, b: np.ndarray, plus_one: float = 0.0) -> np.ndarray:
    """IoU of every box in ``a`` (n, 4) with every box in ``b`` (m, 4), xyxy.

    Broadcast in numpy like the reference SORT's ``iou_batch``; ``plus_one=1`` gives the
    inclusive-pixel convention of ``cython_bbox`` used by the reference ByteTrack.
    """
    a = a[:, None, :]
    b = b[None, :, :]
    iw = np.maximum(0.0, np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + plus_one)
    ih = np.maximum(0.0, np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + plus_one)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0] + plus_one) * (a[..., 3] - a[..., 1] + plus_one)
    area_b = (b[..., 2] - b[..., 0] + plus_one) * (b[..., 3] - b[..., 1] + plus_one)
    return inter / (area_a + area_b - inter)


def _box_to_z(box: np.ndarray) -> np.ndarray:
    w, h = box[2] - box[0], box[3] - box[1]
    return np.array([box[0] + w / 2.0, box[1] + h / 2.0, w * h, w / float(h)]).reshape((4, 1))


def _x_to_box(x: np.ndarray) -> np.ndarray:
    w = np.sqrt(x[2] * x[3])
    h = x[2] / w
    return np.array([x[0] - w / 2.0, x[1] - h / 2.0, x[0] + w / 2.0, x[1] + h / 2.0]).reshape((1, 4))


class _SortTrack:
    def __init__(self, box: np.ndarray, track_id: int) -> None:
        kf = KalmanFilter(dim_x=7, dim_z=4)
        kf.F = np.array([[1, 0, 0, 0, 1, 0, 0], [0, 1, 0, 0, 0, 1, 0], [0, 0, 1, 0, 0, 0, 1],
                         [0, 0, 0, 1, 0, 0, 0], [0, 0, 0, 0, 1, 0, 0], [0, 0, 0, 0, 0, 1, 0],
                         [0, 0, 0, 0, 0, 0, 1]])
        kf.H = np.array([[1, 0, 0, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0, 0],
                         [0, 0, 0, 1, 0, 0, 0]])
        kf.R[2:, 2:] *= 10.0
        kf.P[4:, 4:] *= 1000.0
        kf.P *= 10.0
        kf.Q[-1, -1] *= 0.01
        kf.Q[4:, 4:] *= 0.01
        kf.x[:4] = _box_to_z(box)
        self.kf = kf
        self.id = track_id
        self.time_since_update = 0
        self.hit_streak = 0
        self.history: list[np.ndarray] = []

    def predict(self) -> np.ndarray:
        if self.kf.x[6] + self.kf.x[2] <= 0:
            self.kf.x[6] *= 0.0
        self.kf.predict()
        if self.time_since_update > 0:
            self.hit_streak = 0
        self.time_since_update += 1
        self.history.append(_x_to_box(self.kf.x))
        return self.history[-1]

    def update(self, box: np.ndarray) -> None:
        self.time_since_update = 0
        self.history = []
        self.hit_streak += 1
        self.kf.update(_box_to_z(box))

    def get_state(self) -> np.ndarray:
        return _x_to_box(self.kf.x)


class NaiveSort:
    """SORT as in the reference ``sort.py``, operation for operation; IDs per instance from 1."""

    def __init__(self, max_age: int = 1, min_hits: int = 3, iou_threshold: float = 0.3) -> None:
        self.max_age, self.min_hits, self.iou_threshold = max_age, min_hits, iou_threshold
        self.tracks: list[_SortTrack] = []
        self.frame_count = 0
        self.next_id = 1

    def _associate(self, dets: np.ndarray, predicted: np.ndarray):
        if len(predicted) == 0:
            return np.empty((0, 2), dtype=int), np.arange(len(dets))
        iou = _pairwise_iou(dets[:, :4], predicted[:, :4])
        if min(iou.shape) > 0:
            above = (iou > self.iou_threshold).astype(np.int32)
            if above.sum(1).max() == 1 and above.sum(0).max() == 1:
                pairs = np.stack(np.where(above), axis=1)
            else:
                _, row_to_col, col_to_row = lap.lapjv(-iou, extend_cost=True)
                pairs = np.array([[col_to_row[c], c] for c in row_to_col if c >= 0])
        else:
            pairs = np.empty(shape=(0, 2))
        unmatched_dets = [d for d in range(len(dets)) if d not in pairs[:, 0]]
        matches = []
        for pair in pairs:
            if iou[pair[0], pair[1]] < self.iou_threshold:
                unmatched_dets.append(pair[0])
            else:
                matches.append(pair.reshape(1, 2))
        matches = np.concatenate(matches, axis=0) if matches else np.empty((0, 2), dtype=int)
        return matches, np.array(unmatched_dets)

    def update(self, dets: np.ndarray) -> np.ndarray:
        self.frame_count += 1
        predicted = np.zeros((len(self.tracks), 5))
        invalid = []
        for t, row in enumerate(predicted):
            box = self.tracks[t].predict()[0]
            row[:] = [box[0], box[1], box[2], box[3], 0]
            if np.any(np.isnan(box)):
                invalid.append(t)
        predicted = np.ma.compress_rows(np.ma.masked_invalid(predicted))
        for t in reversed(invalid):
            self.tracks.pop(t)
        matches, unmatched_dets = self._associate(dets, predicted)
        for d, t in matches:
            self.tracks[t].update(dets[d, :4])
        for d in unmatched_dets:
            self.tracks.append(_SortTrack(dets[d, :4], self.next_id))
            self.next_id += 1
        out = []
        i = len(self.tracks)
        for track in reversed(self.tracks):
            box = track.get_state()[0]
            if track.time_since_update < 1 and (
                track.hit_streak >= self.min_hits or self.frame_count <= self.min_hits
            ):
                out.append(np.concatenate((box, [track.id])).reshape(1, -1))
            i -= 1
            if track.time_since_update > self.max_age:
                self.tracks.pop(i)
        return np.concatenate(out) if out else np.empty((0, 5))


# ----------------------------------------------------------------------------------------------
# ByteTrack
# ----------------------------------------------------------------------------------------------
_W_POS, _W_VEL = 1.0 / 20, 1.0 / 160
_TRACKED, _LOST, _REMOVED = 1, 2, 3


def _kf_initiate(xyah: np.ndarray):
    h = xyah[3]
    std = [2 * _W_POS * h, 2 * _W_POS * h, 1e-2, 2 * _W_POS * h,
           10 * _W_VEL * h, 10 * _W_VEL * h, 1e-5, 10 * _W_VEL * h]
    return np.r_[xyah, np.zeros(4)], np.diag(np.square(std))


_F8 = np.eye(8)
for _i in range(4):
    _F8[_i, 4 + _i] = 1.0
_H8 = np.eye(4, 8)


def _kf_predict_many(means: np.ndarray, covs: np.ndarray):
    out_m, out_c = [], []
    for mean, cov in zip(means, covs):
        h = mean[3]
        std = [_W_POS * h, _W_POS * h, 1e-2, _W_POS * h, _W_VEL * h, _W_VEL * h, 1e-5, _W_VEL * h]
        out_m.append(_F8 @ mean)
        out_c.append(_F8 @ cov @ _F8.T + np.diag(np.square(std)))
    return out_m, out_c


def _kf_update(mean: np.ndarray, cov: np.ndarray, xyah: np.ndarray):
    h = mean[3]
    innovation_cov = np.diag(np.square([_W_POS * h, _W_POS * h, 1e-1, _W_POS * h]))
    projected_mean = _H8 @ mean
    projected_cov = _H8 @ cov @ _H8.T + innovation_cov
    factor = scipy.linalg.cho_factor(projected_cov, lower=True, check_finite=False)
    gain = scipy.linalg.cho_solve(factor, (cov @ _H8.T).T, check_finite=False).T
    new_mean = mean + (xyah - projected_mean) @ gain.T
    new_cov = cov - gain @ projected_cov @ gain.T
    return new_mean, new_cov


def _tlbr_to_xyah(tlbr: np.ndarray) -> np.ndarray:
    w, h = tlbr[2] - tlbr[0], tlbr[3] - tlbr[1]
    return np.array([tlbr[0] + w / 2, tlbr[1] + h / 2, w / h, h])


class _ByteTrack:
    def __init__(self, tlbr: np.ndarray, score: float) -> None:
        self.det_tlbr = np.asarray(tlbr, dtype=float)
        self.score = score
        self.mean = None
        self.cov = None
        self.state = 0
        self.is_activated = False
        self.track_id = 0
        self.frame_id = 0
        self.start_frame = 0

    @property
    def tlbr(self) -> np.ndarray:
        if self.mean is None:
            return self.det_tlbr.copy()
        x, y, a, h = self.mean[:4]
        w = a * h
        return np.array([x - w / 2, y - h / 2, x + w / 2, y + h / 2])

    def activate(self, track_id: int, frame_id: int) -> None:
        self.track_id = track_id
        self.mean, self.cov = _kf_initiate(_tlbr_to_xyah(self.det_tlbr))
        self.state = _TRACKED
        self.is_activated = frame_id == 1
        self.frame_id = self.start_frame = frame_id

    def update(self, det: "_ByteTrack", frame_id: int) -> None:
        self.mean, self.cov = _kf_update(self.mean, self.cov, _tlbr_to_xyah(det.det_tlbr))
        self.state = _TRACKED
        self.is_activated = True
        self.frame_id = frame_id
        self.score = det.score


def _join(a: list, b: list) -> list:
    seen = {t.track_id for t in a}
    out = list(a)
    for t in b:
        if t.track_id not in seen:
            seen.add(t.track_id)
            out.append(t)
    return out


def _subtract(a: list, b: list) -> list:
    drop = {t.track_id for t in b}
    return [t for t in a if t.track_id not in drop]


class NaiveByteTrack:
    """ByteTrack as in the reference ``yolox/tracker/byte_tracker.py`` (``mot20=False``).

    Defaults reproduce the reference exactly. ``iou_plus_one`` is the reference's ``cython_bbox``
    IoU convention (+1 pixel on widths and heights). ``drop_removed_at_once=False`` keeps the
    reference's list handling, in which a lost track removed for age stays in the lost list for
    one more update (it can still be re-found there, and if it is, it is dropped as soon as it is
    lost again); ``True`` drops it at once, which is what ``tracker.ByteTrack`` does.
    """

    def __init__(self, track_thresh: float = 0.5, match_thresh: float = 0.8, track_buffer: int = 30,
                 frame_rate: float = 30, iou_plus_one: bool = True,
                 drop_removed_at_once: bool = False) -> None:
        self.drop_removed_at_once = drop_removed_at_once
        self.track_thresh, self.match_thresh = track_thresh, match_thresh
        self.det_thresh = track_thresh + 0.1
        self.max_time_lost = int(frame_rate / 30.0 * track_buffer)
        self.plus_one = 1.0 if iou_plus_one else 0.0
        self.tracked: list[_ByteTrack] = []
        self.lost: list[_ByteTrack] = []
        self.removed: list[_ByteTrack] = []
        self.frame_id = 0
        self.next_id = 1

    def _iou_cost(self, tracks: list, dets: list) -> np.ndarray:
        if not tracks or not dets:
            return np.zeros((len(tracks), len(dets)))
        return 1.0 - _pairwise_iou(np.array([t.tlbr for t in tracks]),
                                   np.array([d.tlbr for d in dets]), self.plus_one)

    @staticmethod
    def _fuse_score(cost: np.ndarray, dets: list) -> np.ndarray:
        if cost.size == 0:
            return cost
        return 1.0 - (1.0 - cost) * np.array([d.score for d in dets])[None, :]

    @staticmethod
    def _assign(cost: np.ndarray, thresh: float):
        if cost.size == 0:
            return [], list(range(cost.shape[0])), list(range(cost.shape[1]))
        _, x, y = lap.lapjv(cost, extend_cost=True, cost_limit=thresh)
        matches = [(i, int(j)) for i, j in enumerate(x) if j >= 0]
        return matches, list(np.where(x < 0)[0]), list(np.where(y < 0)[0])

    def update(self, dets: np.ndarray) -> np.ndarray:
        self.frame_id += 1
        activated, refound, newly_lost, newly_removed = [], [], [], []
        scores, boxes = dets[:, 4], dets[:, :4]
        high = scores > self.track_thresh
        low = (scores > 0.1) & (scores < self.track_thresh)
        detections = [_ByteTrack(b, s) for b, s in zip(boxes[high], scores[high])]
        detections_low = [_ByteTrack(b, s) for b, s in zip(boxes[low], scores[low])]

        unconfirmed = [t for t in self.tracked if not t.is_activated]
        confirmed = [t for t in self.tracked if t.is_activated]

        # Step 2: first association (high detections vs tracked + lost), IoU fused with score.
        pool = _join(confirmed, self.lost)
        if pool:
            means = [t.mean.copy() for t in pool]
            for m, t in zip(means, pool):
                if t.state != _TRACKED:
                    m[7] = 0
            means, covs = _kf_predict_many(means, [t.cov for t in pool])
            for t, m, c in zip(pool, means, covs):
                t.mean, t.cov = m, c
        cost = self._fuse_score(self._iou_cost(pool, detections), detections)
        matches, u_track, u_det = self._assign(cost, self.match_thresh)
        for it, idet in matches:
            track = pool[it]
            was_tracked = track.state == _TRACKED
            track.update(detections[idet], self.frame_id)
            (activated if was_tracked else refound).append(track)

        # Step 3: second association (low detections vs remaining tracked), plain IoU at 0.5.
        remaining = [pool[i] for i in u_track if pool[i].state == _TRACKED]
        cost = self._iou_cost(remaining, detections_low)
        matches, u_remaining, _ = self._assign(cost, 0.5)
        for it, idet in matches:
            remaining[it].update(detections_low[idet], self.frame_id)
            activated.append(remaining[it])
        for it in u_remaining:
            track = remaining[it]
            if track.state != _LOST:
                track.state = _LOST
                newly_lost.append(track)

        # Unconfirmed tracks vs leftover high detections.
        detections = [detections[i] for i in u_det]
        cost = self._fuse_score(self._iou_cost(unconfirmed, detections), detections)
        matches, u_unconfirmed, u_det = self._assign(cost, 0.7)
        for it, idet in matches:
            unconfirmed[it].update(detections[idet], self.frame_id)
            activated.append(unconfirmed[it])
        for it in u_unconfirmed:
            unconfirmed[it].state = _REMOVED
            newly_removed.append(unconfirmed[it])

        # Step 4: new tracks.
        for idet in u_det:
            det = detections[idet]
            if det.score < self.det_thresh:
                continue
            det.activate(self.next_id, self.frame_id)
            self.next_id += 1
            activated.append(det)

        # Step 5: lost tracks past the buffer.
        for track in self.lost:
            if self.frame_id - track.frame_id > self.max_time_lost:
                track.state = _REMOVED
                newly_removed.append(track)

        self.tracked = [t for t in self.tracked if t.state == _TRACKED]
        self.tracked = _join(self.tracked, activated)
        self.tracked = _join(self.tracked, refound)
        self.lost = _subtract(self.lost, self.tracked)
        self.lost.extend(newly_lost)
        self.lost = _subtract(self.lost, self.removed)
        if self.drop_removed_at_once:
            self.lost = _subtract(self.lost, newly_removed)
        self.removed.extend(newly_removed)
        self.tracked, self.lost = self._remove_duplicates(self.tracked, self.lost)
        out = [np.r_[t.tlbr, t.track_id] for t in self.tracked if t.is_activated]
        return np.array(out).reshape(-1, 5)

    def _remove_duplicates(self, a: list, b: list):
        cost = self._iou_cost(a, b)
        drop_a, drop_b = set(), set()
        for p, q in zip(*np.where(cost < 0.15)):
            if a[p].frame_id - a[p].start_frame > b[q].frame_id - b[q].start_frame:
                drop_b.add(q)
            else:
                drop_a.add(p)
        return ([t for i, t in enumerate(a) if i not in drop_a],
                [t for i, t in enumerate(b) if i not in drop_b])
