"""CLEAR MOT, identity and HOTA scores of tracker output against MOT15 ground truth.

* MOTA, ID switches, FP, FN: CLEAR MOT (Bernardin & Stiefelhagen 2008), IDF1: Ristani et al. 2016,
  both computed by ``motmetrics`` the way its MOTChallenge app does it: ground-truth rows with
  ``conf < 1`` dropped, boxes matched at IoU >= 0.5 (``distth=0.5`` on ``1 - IoU``).
* HOTA (Luiten et al. 2021, IJCV) computed by TrackEval's ``HOTA`` metric on the same boxes, with
  the MOT15 preprocessing of TrackEval's ``MotChallenge2DBox`` dataset (zero-marked ground truth
  removed, no distractor classes in MOT15).

Tracker output is a float array of shape (n, 6): ``frame, id, left, top, width, height`` (pixels,
1-based frames) — the first six columns of the MOT text format.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import math

import motmetrics as mm
import numpy as np

from _mot_data import read_mot_text

GT_MIN_CONFIDENCE = 1.0  # motmetrics' MOTChallenge evaluation keeps gt rows with conf >= 1
IOU_MATCH_THRESHOLD = 0.5


@dataclass(frozen=True)
class MotScores:
    """Scores of one sequence or of all of them together (overall = summed over sequences)."""

    mota_pct: float
    idf1_pct: float
    hota_pct: float  # NaN when HOTA was not computed
    id_switches: int
    false_positives: int
    false_negatives: int
    num_gt_boxes: int

    def as_dict(self) -> dict[str, float | int]:
        return {
            "MOTA": round(self.mota_pct, 2),
            "IDF1": round(self.idf1_pct, 2),
            "HOTA": None if math.isnan(self.hota_pct) else round(self.hota_pct, 2),
            "IDSW": self.id_switches,
            "FP": self.false_positives,
            "FN": self.false_negatives,
            "GT": self.num_gt_boxes,
        }


def _iou_distances(gt_xywh: np.ndarray, tracker_xywh: np.ndarray) -> np.ndarray:
    """``1 - IoU`` with pairs beyond the match threshold set to NaN (do-not-pair).

    Same maths as ``motmetrics.distances.iou_matrix(max_iou=0.5)``, which cannot run on NumPy 2
    (it calls the removed ``np.asfarray``), so the accumulator is fed here directly.
    """
    iou = mm.distances.boxiou(gt_xywh[:, None], tracker_xywh[None, :])
    dist = 1.0 - iou
    return np.where(dist > IOU_MATCH_THRESHOLD, np.nan, dist)


def _accumulate(gt_rows: np.ndarray, tracker_rows: np.ndarray) -> mm.MOTAccumulator:
    """Frame-by-frame CLEAR MOT matching, as ``motmetrics.utils.compare_to_groundtruth`` does."""
    acc = mm.MOTAccumulator()
    frames = np.union1d(gt_rows[:, 0], tracker_rows[:, 0]).astype(np.int64)
    for frame in frames:
        g = gt_rows[gt_rows[:, 0] == frame]
        t = tracker_rows[tracker_rows[:, 0] == frame]
        dists = _iou_distances(g[:, 2:6], t[:, 2:6]) if len(g) and len(t) else np.empty((0, 0))
        acc.update(g[:, 1].astype(np.int64), t[:, 1].astype(np.int64), dists, frameid=int(frame))
    return acc


def load_ground_truth(gt_path: Path) -> np.ndarray:
    """Ground-truth rows kept for scoring (``conf >= 1``), float64 of shape (n, 10)."""
    rows = read_mot_text(gt_path)
    return rows[rows[:, 6] >= GT_MIN_CONFIDENCE]


def _hota_data(gt_rows: np.ndarray, tracker_rows: np.ndarray, num_frames: int) -> dict:
    """Build the per-timestep input of TrackEval's ``HOTA.eval_sequence`` (MOT15 preprocessing)."""
    from trackeval.datasets._base_dataset import _BaseDataset  # noqa: PLC0415 (optional, heavy)

    gt_ids_all = np.unique(gt_rows[:, 1].astype(np.int64))
    tr_ids_all = np.unique(tracker_rows[:, 1].astype(np.int64))
    gt_map = {v: k for k, v in enumerate(gt_ids_all)}
    tr_map = {v: k for k, v in enumerate(tr_ids_all)}
    data: dict = {"gt_ids": [], "tracker_ids": [], "similarity_scores": []}
    for frame in range(1, num_frames + 1):
        g = gt_rows[gt_rows[:, 0] == frame]
        t = tracker_rows[tracker_rows[:, 0] == frame]
        data["gt_ids"].append(np.array([gt_map[int(i)] for i in g[:, 1]], dtype=int))
        data["tracker_ids"].append(np.array([tr_map[int(i)] for i in t[:, 1]], dtype=int))
        data["similarity_scores"].append(
            _BaseDataset._calculate_box_ious(g[:, 2:6], t[:, 2:6], box_format="xywh")
        )
    data.update(
        num_gt_ids=len(gt_ids_all),
        num_tracker_ids=len(tr_ids_all),
        num_gt_dets=len(gt_rows),
        num_tracker_dets=len(tracker_rows),
        num_timesteps=num_frames,
    )
    return data


def evaluate(
    tracker_rows_by_seq: dict[str, np.ndarray],
    gt_paths_by_seq: dict[str, Path],
    num_frames_by_seq: dict[str, int],
    with_hota: bool = True,
) -> tuple[dict[str, MotScores], MotScores]:
    """Score tracker output per sequence and overall.

    Overall MOTA/IDF1/HOTA are computed from summed counts over sequences (motmetrics'
    ``generate_overall`` and TrackEval's ``combine_sequences``), as the MOTChallenge devkit does.
    ``with_hota=False`` skips HOTA (and the TrackEval import).
    """
    names = list(tracker_rows_by_seq)
    accumulators, hota_results = [], {}
    hota_metric = None
    if with_hota:
        from trackeval.metrics import HOTA  # noqa: PLC0415 (optional, heavy)

        hota_metric = HOTA()
    gt_counts = {}
    for name in names:
        gt = load_ground_truth(gt_paths_by_seq[name])
        tracks = np.asarray(tracker_rows_by_seq[name], dtype=np.float64).reshape(-1, 6)
        gt_counts[name] = len(gt)
        accumulators.append(_accumulate(gt, tracks))
        if hota_metric is not None:
            hota_results[name] = hota_metric.eval_sequence(_hota_data(gt, tracks, num_frames_by_seq[name]))
    host = mm.metrics.create()
    summary = host.compute_many(
        accumulators,
        metrics=["mota", "idf1", "num_switches", "num_false_positives", "num_misses"],
        names=names,
        generate_overall=True,
    )
    hota_overall = hota_metric.combine_sequences(hota_results) if hota_metric is not None else None

    def scores(row_name: str, hota_res: dict | None, num_gt: int) -> MotScores:
        row = summary.loc[row_name]
        return MotScores(
            mota_pct=100.0 * float(row["mota"]),
            idf1_pct=100.0 * float(row["idf1"]),
            hota_pct=100.0 * float(np.mean(hota_res["HOTA"])) if hota_res is not None else math.nan,
            id_switches=int(row["num_switches"]),
            false_positives=int(row["num_false_positives"]),
            false_negatives=int(row["num_misses"]),
            num_gt_boxes=num_gt,
        )

    per_seq = {n: scores(n, hota_results.get(n), gt_counts[n]) for n in names}
    overall = scores("OVERALL", hota_overall, sum(gt_counts.values()))
    return per_seq, overall
