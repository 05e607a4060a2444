"""Assignment of detections to tracks: the two matching rules of SORT and ByteTrack, both solved
with ``lap.lapjv`` (Jonker & Volgenant 1987).

Class-aware association forbids pairs of different classes by giving them a cost that no
threshold accepts (IoU -1 for SORT, cost 2 for ByteTrack), so the solver needs no special case.
"""

from __future__ import annotations

import lap
import numpy as np

# IoU given to pairs that must never match (different classes); below every valid threshold.
FORBIDDEN_IOU = -1.0
# Cost given to pairs that must never match in ByteTrack (costs of valid pairs lie in [0, 1]).
FORBIDDEN_COST = 2.0


def forbid_cross_class(
    matrix: np.ndarray, row_class: np.ndarray, col_class: np.ndarray, forbidden_value: float
) -> np.ndarray:
    """Copy of ``matrix`` (n, m) with ``forbidden_value`` where ``row_class[i] != col_class[j]``."""
    return np.where(row_class[:, None] == col_class[None, :], matrix, forbidden_value)


def match_sort(iou: np.ndarray, iou_threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SORT association of detections (rows) to predicted tracks (columns).

    Bewley et al. 2016, section 3.3: the assignment maximising total IoU (Hungarian / LAPJV on
    ``-IoU``), then pairs with ``IoU < iou_threshold`` rejected. As in the SORT reference code,
    when every detection and every track has at most one partner above the threshold and at
    least one pair exists, those pairs are taken directly; that is the same answer the solver
    would give in almost every case, and it is what the published figures were computed with.

    Args:
        iou: float64 (n_dets, n_tracks).
        iou_threshold: minimum IoU of an accepted pair.

    Returns:
        ``(det_idx, track_idx, unmatched_dets)``: int arrays; matched pairs in ascending detection
        order; unmatched detections as the reference orders them — never-paired detections in
        ascending order, then detections whose pair was rejected.
    """
    n_dets, n_tracks = iou.shape
    if n_dets == 0 or n_tracks == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.arange(n_dets)
    above = iou > iou_threshold
    if _is_partial_permutation(above):
        det_idx, track_idx = np.nonzero(above)
        unmatched = np.ones(n_dets, dtype=bool)
        unmatched[det_idx] = False
        return det_idx, track_idx, unmatched.nonzero()[0]
    det_to_track = _max_total_assignment(iou)
    det_idx = (det_to_track >= 0).nonzero()[0]
    track_idx = det_to_track[det_idx].astype(np.int64)
    accepted = iou[det_idx, track_idx] >= iou_threshold
    never_paired = det_to_track < 0
    unmatched = np.concatenate([never_paired.nonzero()[0], det_idx[~accepted]])
    return det_idx[accepted], track_idx[accepted], unmatched


def _max_total_assignment(score: np.ndarray) -> np.ndarray:
    """Row -> column (-1 if none) maximising the total score of a rectangular matrix.

    Same answer as ``lap.lapjv(-score, extend_cost=True)`` (which zero-pads to square), with the
    padding done here because that is cheaper than lap's wrapper.
    """
    n_rows, n_cols = score.shape
    size = max(n_rows, n_cols)
    square = np.zeros((size, size))
    square[:n_rows, :n_cols] = -score
    _, row_to_col, _ = lap.lapjv(square)
    row_to_col = row_to_col[:n_rows]
    return np.where(row_to_col < n_cols, row_to_col, -1)


def _is_partial_permutation(mask: np.ndarray) -> bool:
    """True if ``mask`` has at least one True and at most one True in every row and column."""
    return bool(mask.sum(axis=1).max() == 1 and mask.sum(axis=0).max() == 1)


def match_below_cost(cost: np.ndarray, cost_limit: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """ByteTrack association: minimum-cost assignment in which leaving a row and a column
    unmatched costs ``cost_limit``, so a pair is used only when it is cheaper than that
    (``lap.lapjv(cost, extend_cost=True, cost_limit=cost_limit)`` in the reference code).

    Args:
        cost: float64 (n_tracks, n_dets).

    Returns:
        ``(track_idx, det_idx, unmatched_tracks, unmatched_dets)``, int64 arrays, ascending.
    """
    n_rows, n_cols = cost.shape
    if n_rows == 0 or n_cols == 0 or not (cost <= cost_limit).any():
        # Nothing to solve: no pair costs less than leaving both ends unmatched.
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.arange(n_rows), np.arange(n_cols)
    # The square (n + m) matrix lap builds for extend_cost + cost_limit: cost_limit / 2 for every
    # dummy pairing, 0 between dummies. Building it here is cheaper than lap's wrapper.
    size = n_rows + n_cols
    extended = np.full((size, size), cost_limit / 2.0)
    extended[n_rows:, n_cols:] = 0.0
    extended[:n_rows, :n_cols] = cost
    _, row_to_col, col_to_row = lap.lapjv(extended)
    row_to_col = row_to_col[:n_rows]
    matched = (row_to_col < n_cols).nonzero()[0]
    return (
        matched,
        row_to_col[matched].astype(np.int64),
        (row_to_col >= n_cols).nonzero()[0],
        (col_to_row[:n_cols] >= n_rows).nonzero()[0],
    )
