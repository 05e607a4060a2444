"""A simulated annotator: how many box edits labelling a clip takes with and without help (issue 14).

Ground truth is the oracle: PETS09-S2L1 (the 480x360 ``vtest`` video) with the MOT15 ground
truth, rows with flag 1, coordinates times 0.625 (shared/README.md; MOT frame N = video frame
N - 1). The annotator visits frames and edits the labels on each until they match the ground
truth; an edit is one of

* **add** a box for a ground-truth object with no label;
* **move** (move or resize) a label matched to an object with IoU < 0.9;
* **delete** a label that matches no object;
* **class** change of a matched label of the wrong class;
* **id** change: a matched label whose track id is not the one established for that object.

Matching (per frame, explicit): the assignment of labels to ground-truth boxes that maximises
the total IoU (LAPJV on ``1 - IoU``, ``lap.lapjv``, Jonker & Volgenant 1987), pairs with IoU >=
``MATCH_IOU`` (0.5) accepted; below that a label and an object are different things (a delete
and an add). An accepted pair with IoU >= ``EXACT_IOU`` (0.9) is correct without an edit.
Track ids: the first label id matched to an object is *established* for it (one label id per
object, one object per label id). A label whose id maps to another object than the one it
matches is an id edit; the annotator re-ids that label's track from this frame on (its
proposals, up to its next verified box), as the GUI's "set track id from here" does, so one
switch costs one edit. A label that matches nothing is deleted; if none of that track's later
proposals matches any object, the annotator deletes the track from here (one edit).

Strategies, each over the same frames:

a. **from nothing**: every object on every frame is an add.
b. **pre-labels**: the detector + ByteTrack propose tracks (:func:`app.labelling.prelabel`);
   the annotator visits every frame in order and corrects it.
c. **pre-labels + propagation**: as b, but first the annotator corrects keyframes every
   ``K`` frames; after each keyframe every box on it is carried forward by the tracker
   (:func:`carry_forward`) and the tracks of two consecutive keyframes are interpolated
   (:func:`interpolate_all`). Then the frames between two keyframes are visited middle first,
   then the middle of each half, and so on (``bisect``: the frame where a linear interpolation is
   least certain first), or in plain order (``sequential``, also reported); a box corrected there
   becomes a keyframe of its track: the gaps to its neighbouring verified boxes are
   re-interpolated (with no later one, it is carried forward). Every frame is still visited and
   verified, so every strategy ends with exactly the ground truth (checked).

Also reported: **a+** = c without a detector (keyframes + interpolation only), and b and c with
another detector (``--extra-weights``, default the PETS scene model, trained on MOT frames
1-400, so 401+ is held out for it).

The detector is the bundled default model ``yolov7-tiny-traffic`` (person class only, conf 0.1
for ByteTrack's second association, CPU, 2 threads). Prints a table and writes
``benchmarks/results/labelling.json``. The issue's goal: c needs at most 25 % of a's edits.

Usage::

    python benchmarks/labelling.py [--first 401 --last 550] [--keyframe-every 10 5 20] [--threads 2]
        [--weights yolov7-tiny-traffic] [--extra-weights yolov7-tiny-pets09-person]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lap
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from shared_data import shared_path  # noqa: E402

from app.labelling import (  # noqa: E402
    CarryConfig,
    FrameProposals,
    LabelStore,
    PrelabelConfig,
    apply_prelabels,
    carry_forward,
    interpolate_all,
    interpolate_track,
    iter_clip_frames,
    propose_tracks,
)
from tracker.geometry import iou_matrix  # noqa: E402

RESULTS_PATH = REPO / "benchmarks" / "results" / "labelling.json"
PETS_VIDEO = ("data", "videos", "vtest_PETS09-S2L1_480x360.avi")
PETS_GT = ("data", "mot", "MOT15", "train", "PETS09-S2L1", "gt", "gt.txt")
PETS_SCALE = 0.625
PETS_FPS = 10.0
MODEL = "yolov7-tiny-traffic"
TRACK_CONF = 0.1
CLASS = "person"
MATCH_IOU = 0.5
EXACT_IOU = 0.9
EDIT_KINDS = ("add", "move", "delete", "class", "id")


def load_ground_truth(first_frame: int, last_frame: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Video frame index -> (gt ids int (n,), xyxy float64 (n, 4) in 480x360 pixels), for MOT
    frames ``first_frame..last_frame`` (flag-1 rows)."""
    rows = np.loadtxt(shared_path(*PETS_GT), delimiter=",")
    rows = rows[(rows[:, 6] == 1) & (rows[:, 0] >= first_frame) & (rows[:, 0] <= last_frame)]
    out = {}
    for mot_frame in range(first_frame, last_frame + 1):
        r = rows[rows[:, 0] == mot_frame]
        xyxy = np.column_stack([r[:, 2], r[:, 3], r[:, 2] + r[:, 4], r[:, 3] + r[:, 5]]) * PETS_SCALE
        out[mot_frame - 1] = (r[:, 1].astype(np.int64), xyxy)
    return out


def match(labels_xyxy: np.ndarray, gt_xyxy: np.ndarray) -> tuple[list[tuple[int, int, float]], list[int], list[int]]:
    """Maximum-total-IoU assignment (LAPJV), pairs with IoU >= MATCH_IOU.

    Returns ``(pairs (label row, gt row, IoU), unmatched label rows, unmatched gt rows)``.
    """
    if len(labels_xyxy) == 0 or len(gt_xyxy) == 0:
        return [], list(range(len(labels_xyxy))), list(range(len(gt_xyxy)))
    iou = iou_matrix(labels_xyxy, gt_xyxy)
    _, label_to_gt, _ = lap.lapjv(1.0 - iou, extend_cost=True, cost_limit=1.0 - MATCH_IOU + 1e-9)
    pairs = [(i, int(j), float(iou[i, j])) for i, j in enumerate(label_to_gt) if j >= 0 and iou[i, j] >= MATCH_IOU]
    used_labels = {p[0] for p in pairs}
    used_gt = {p[1] for p in pairs}
    return (pairs, [i for i in range(len(labels_xyxy)) if i not in used_labels],
            [j for j in range(len(gt_xyxy)) if j not in used_gt])


@dataclass
class Annotator:
    """Corrects frames of ``store`` to the ground truth and counts the edits (module docstring)."""

    store: LabelStore
    truth: dict[int, tuple[np.ndarray, np.ndarray]]
    edits: Counter = field(default_factory=Counter)
    label_of_gt: dict[int, int] = field(default_factory=dict)
    gt_of_label: dict[int, int] = field(default_factory=dict)

    def _establish(self, label: int, gt_id: int) -> None:
        old_gt = self.gt_of_label.pop(label, None)
        if old_gt is not None and self.label_of_gt.get(old_gt) == label:
            del self.label_of_gt[old_gt]
        old_label = self.label_of_gt.get(gt_id)
        if old_label is not None:
            self.gt_of_label.pop(old_label, None)
        self.label_of_gt[gt_id] = label
        self.gt_of_label[label] = gt_id

    def _relabel_forward(self, frame: int, label: int, new_label: int, renamed: dict[int, int]) -> None:
        """The GUI's "set track id from here": ``label``'s boxes from ``frame`` on (this one, then
        proposals up to its next verified box) become ``new_label``. A proposal that holds
        ``new_label`` on one of those frames is moved out of the way to a fresh id."""
        store = self.store
        with store.transaction("re-id track from here"):
            for f, box in store.track(label).items():
                if f < frame:
                    continue
                if f > frame and box.verified:
                    break
                blocker = store.get(f, new_label)
                if blocker is not None:
                    if blocker.verified:
                        break
                    fresh = store.next_track_id()
                    store.set_track_id(f, new_label, fresh)
                    if f == frame:
                        renamed[new_label] = fresh
                store.set_track_id(f, label, new_label)

    def _track_is_spurious(self, frame: int, label: int) -> bool:
        """True if no later proposal of ``label`` matches an object (IoU >= MATCH_IOU)."""
        for f, box in self.store.track(label).items():
            if f <= frame or box.verified:
                continue
            gt_xyxy = self.truth.get(f, (None, np.zeros((0, 4))))[1]
            if len(gt_xyxy) and iou_matrix(box.xyxy_array[None], gt_xyxy).max() >= MATCH_IOU:
                return False
        return True

    def visit(self, frame: int) -> set[int]:
        """Correct ``frame``; returns the label ids of the boxes that were edited."""
        store = self.store
        gt_ids, gt_xyxy = self.truth[frame]
        labels = [b for b in store.boxes(frame) if not b.ignored]
        pairs, extra, missing = match(np.array([b.xyxy for b in labels]).reshape(-1, 4), gt_xyxy)
        edited: set[int] = set()
        for i in extra:  # deletes first: they free ids and space
            box = labels[i]
            if self._track_is_spurious(frame, box.track_id):
                store.delete_track(box.track_id, from_frame=frame, proposals_only=True)
            if store.get(frame, box.track_id) is not None:
                store.delete_box(frame, box.track_id)
            self.edits["delete"] += 1
        renamed: dict[int, int] = {}
        for i, j, iou in pairs:
            label = labels[i].track_id
            label = renamed.get(label, label)
            gt_id = int(gt_ids[j])
            wanted = self.label_of_gt.get(gt_id)
            if wanted is None:
                if self.gt_of_label.get(label, gt_id) != gt_id:  # the tracker switched objects
                    wanted = store.next_track_id()
            if wanted is not None and wanted != label:
                self._relabel_forward(frame, label, wanted, renamed)
                self.edits["id"] += 1
                edited.add(wanted)
                label = wanted
            self._establish(label, gt_id)
            box = store.box(frame, label)
            if box.class_name != CLASS:
                store.set_class(frame, label, CLASS)
                self.edits["class"] += 1
                edited.add(label)
            if iou < EXACT_IOU:
                store.move_box(frame, label, gt_xyxy[j])
                self.edits["move"] += 1
                edited.add(label)
        for j in missing:
            gt_id = int(gt_ids[j])
            label = self.label_of_gt.get(gt_id)
            if label is None or store.get(frame, label) is not None:
                label = store.next_track_id()
            store.add_box(frame, gt_xyxy[j], CLASS, track_id=label)
            self._establish(label, gt_id)
            self.edits["add"] += 1
            edited.add(label)
        store.set_frame_verified(frame)
        return edited

    def check_complete(self, frames: range) -> None:
        """Every visited frame now holds exactly the ground truth (IoU >= 0.9, one id per object)."""
        for frame in frames:
            gt_ids, gt_xyxy = self.truth[frame]
            labels = self.store.boxes(frame)
            pairs, extra, missing = match(np.array([b.xyxy for b in labels]).reshape(-1, 4), gt_xyxy)
            assert not extra and not missing and all(iou >= EXACT_IOU for _, _, iou in pairs), frame
            for i, j, _ in pairs:
                assert self.label_of_gt[int(gt_ids[j])] == labels[i].track_id, (frame, labels[i])


def _new_store(proposals: list[FrameProposals] | None) -> LabelStore:
    store = LabelStore([CLASS])
    if proposals:
        apply_prelabels(store, proposals)
    return store


def strategy_from_nothing(truth, frames: range) -> Counter:
    annotator = Annotator(_new_store(None), truth)
    for frame in frames:
        annotator.visit(frame)
    annotator.check_complete(frames)
    return annotator.edits


def strategy_prelabels(truth, frames: range, proposals: list[FrameProposals]) -> Counter:
    annotator = Annotator(_new_store(proposals), truth)
    for frame in frames:
        annotator.visit(frame)
    annotator.check_complete(frames)
    return annotator.edits


def _bisection(first: int, last: int) -> list[int]:
    """Frames strictly between ``first`` and ``last``, middle first, then each half likewise:
    the frame where linear interpolation between two verified boxes is least certain first."""
    if last - first < 2:
        return []
    middle = (first + last) // 2
    return [middle, *_bisection(first, middle), *_bisection(middle, last)]


def strategy_propagation(truth, frames: range, proposals: list[FrameProposals] | None, every: int,
                         carry: CarryConfig, order: str = "bisect") -> Counter:
    store = _new_store(proposals)
    detections = {p.frame_index: p.detections for p in proposals or []}
    annotator = Annotator(store, truth)
    keyframes = list(frames[::every])
    if keyframes[-1] != frames[-1]:
        keyframes.append(frames[-1])
    last = frames[-1]
    # pass 1: keyframes; carry every box forward, interpolate between consecutive keyframes
    for k, frame in enumerate(keyframes):
        annotator.visit(frame)
        if k:
            interpolate_all(store, first_frame=keyframes[k - 1], last_frame=frame)
        for box in store.boxes(frame):
            nxt = keyframes[k + 1] if k + 1 < len(keyframes) else last
            if nxt > frame:
                carry_forward(store, frame, box.track_id, detections.get,
                              CarryConfig(**{**carry.__dict__, "num_frames": max(1, nxt - frame - 1)}), last_frame=last)
    # pass 2: the frames between keyframes; a corrected box is a new keyframe of its track
    if order == "bisect":
        between = [f for k0, k1 in zip(keyframes, keyframes[1:]) for f in _bisection(k0, k1)]
    else:
        between = [f for f in frames if f not in set(keyframes)]
    for frame in between:
        for label in annotator.visit(frame):
            if store.get(frame, label) is None:
                continue
            track = store.track(label)
            earlier = [f for f, b in track.items() if f < frame and b.verified]
            later = [f for f, b in track.items() if f > frame and b.verified]
            if later:
                interpolate_track(store, label, first_frame=earlier[-1] if earlier else frame, last_frame=later[0])
            else:
                if earlier:
                    interpolate_track(store, label, first_frame=earlier[-1], last_frame=frame)
                carry_forward(store, frame, label, detections.get, carry, last_frame=last)
    annotator.check_complete(frames)
    return annotator.edits


def _row(name: str, edits: Counter, baseline: int) -> dict[str, Any]:
    total = sum(edits[k] for k in EDIT_KINDS)
    return {"strategy": name, **{k: int(edits[k]) for k in EDIT_KINDS}, "total": int(total),
            "fraction_of_from_nothing": round(total / baseline, 4) if baseline else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--first", type=int, default=401, help="first MOT frame (1-based)")
    parser.add_argument("--last", type=int, default=550, help="last MOT frame (inclusive)")
    parser.add_argument("--keyframe-every", type=int, nargs="+", default=[10, 5, 20],
                        help="keyframe spacings for strategy c (the first is the headline)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--weights", default=MODEL)
    parser.add_argument("--extra-weights", nargs="*", default=["yolov7-tiny-pets09-person"],
                        help="other detectors to compare (the PETS scene model was trained on MOT frames 1-400)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import torch

    from detector import Detector

    torch.set_num_threads(args.threads)
    truth = load_ground_truth(args.first, args.last)
    frames = range(args.first - 1, args.last)  # video frame indices
    n_gt = sum(len(ids) for ids, _ in truth.values())

    config = PrelabelConfig(frame_rate=PETS_FPS, classes=(CLASS,))

    def run_detector(weights: str) -> list[FrameProposals]:
        detector = Detector.from_weights(weights, device="cpu", conf_thres=TRACK_CONF, num_threads=args.threads)
        out = list(propose_tracks(iter_clip_frames(shared_path(*PETS_VIDEO), frames[0], frames[-1]),
                                  detector, config, first_track_id=1))
        assert [p.frame_index for p in out] == list(frames)
        return out

    started = time.perf_counter()
    proposals = run_detector(args.weights)
    detect_s = time.perf_counter() - started

    carry = CarryConfig()
    started = time.perf_counter()
    rows = []
    a = strategy_from_nothing(truth, frames)
    baseline = sum(a.values())
    assert baseline == n_gt
    rows.append(_row("a: from nothing", a, baseline))
    rows.append(_row("b: detector pre-labels", strategy_prelabels(truth, frames, proposals), baseline))
    headline = None
    for every in args.keyframe_every:
        for order in ("bisect", "sequential"):
            row = _row(f"c: pre-labels + propagation (keys every {every}, {order})",
                       strategy_propagation(truth, frames, proposals, every, carry, order), baseline)
            row["keyframe_every"] = every
            row["order"] = order
            headline = headline or row
            rows.append(row)
    for every in args.keyframe_every[:1]:
        row = _row(f"a+: keyframes every {every} + interpolation, no detector",
                   strategy_propagation(truth, frames, None, every, carry), baseline)
        row["keyframe_every"] = every
        rows.append(row)
    simulate_s = time.perf_counter() - started
    for weights in args.extra_weights:  # for comparison: another detector, same workflow
        extra = run_detector(weights)
        for name, edits in ((f"b: pre-labels, {weights}", strategy_prelabels(truth, frames, extra)),
                            (f"c: keys every {args.keyframe_every[0]}, bisect, {weights}",
                             strategy_propagation(truth, frames, extra, args.keyframe_every[0], carry))):
            row = _row(name, edits, baseline)
            row["weights"] = weights
            rows.append(row)

    print(f"\nPETS09-S2L1 MOT frames {args.first}-{args.last} ({len(frames)} frames, {n_gt} ground-truth boxes), "
          f"detector {args.weights} (CPU, {args.threads} threads) + ByteTrack")
    header = f"{'strategy':64s} {'add':>5s} {'move':>5s} {'del':>5s} {'class':>5s} {'id':>4s} {'total':>6s} {'vs a':>6s}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['strategy']:64s} {r['add']:5d} {r['move']:5d} {r['delete']:5d} {r['class']:5d} {r['id']:4d} "
              f"{r['total']:6d} {100 * r['fraction_of_from_nothing']:5.1f}%")
    goal_met = headline["fraction_of_from_nothing"] <= 0.25
    print(f"\ngoal (c <= 25 % of a): {'met' if goal_met else 'NOT met'} "
          f"({100 * headline['fraction_of_from_nothing']:.1f} %); detector + tracker {detect_s:.1f} s, "
          f"simulation {simulate_s:.1f} s")

    result = {
        "clip": "PETS09-S2L1 (vtest 480x360), MOT15 gt flag 1, scale 0.625",
        "mot_frames": [args.first, args.last], "frames": len(frames), "gt_boxes": n_gt,
        "detector": {"weights": args.weights, "device": "cpu", "threads": args.threads, "conf_thres": TRACK_CONF,
                     "classes": [CLASS]},
        "tracker": {"name": config.tracker, "frame_rate": PETS_FPS},
        "matching": {"solver": "lap.lapjv max total IoU", "match_iou": MATCH_IOU, "exact_iou": EXACT_IOU},
        "carry": carry.__dict__,
        "rows": rows,
        "goal": {"c_fraction_of_a_max": 0.25, "headline_keyframe_every": headline["keyframe_every"],
                 "c_fraction_of_a": headline["fraction_of_from_nothing"], "met": goal_met},
        "timing_s": {"detector_and_tracker": round(detect_s, 2), "simulation": round(simulate_s, 2)},
    }
    RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_PATH.write_text(json.dumps(result, indent=1) + "\n")
    print(f"written {RESULTS_PATH.relative_to(REPO)}")


if __name__ == "__main__":
    main()
