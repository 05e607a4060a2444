"""simOTA assignment: centre prior, anchor-ratio filter, dynamic k, conflict resolution.

Hand-made targets with known answers, plus an equivalence check of the batched implementation
against a plain per-image loop written from the algorithm's description.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from training.assign import (
    AUX_NEIGHBOUR_OFFSET,
    LEAD_NEIGHBOUR_OFFSET,
    candidate_cells,
    simota_assign,
)
from training.boxes import batched_pairwise_iou, cxcywh_to_xyxy

STRIDE = 8.0
GRID = (10, 10)  # (ny, nx) -> an 80 x 80 input
ONE_ANCHOR = torch.tensor([[[16.0, 16.0]]])  # (nl=1, na=1, 2) pixels


def _cells(matches) -> set[tuple[int, int, int]]:
    return set(zip(matches.anchor.tolist(), matches.grid_y.tolist(), matches.grid_x.tolist()))


def _target(cx_cells: float, cy_cells: float, w_px: float = 16.0, h_px: float = 16.0,
            image: int = 0, cls: int = 0) -> torch.Tensor:
    return torch.tensor([[image, cls, cx_cells * STRIDE, cy_cells * STRIDE, w_px, h_px]])


@pytest.mark.parametrize(
    ("centre", "offset", "expected"),
    [
        # lead: the centre cell plus the nearest horizontal and vertical neighbour
        ((3.3, 5.7), LEAD_NEIGHBOUR_OFFSET, {(0, 5, 3), (0, 5, 2), (0, 6, 3)}),
        ((3.7, 5.2), LEAD_NEIGHBOUR_OFFSET, {(0, 5, 3), (0, 5, 4), (0, 4, 3)}),
        # near the left/top edge: no neighbour outside the map (official rule gxy > 1)
        ((0.3, 0.4), LEAD_NEIGHBOUR_OFFSET, {(0, 0, 0)}),
        # near the right/bottom edge
        ((9.8, 9.9), LEAD_NEIGHBOUR_OFFSET, {(0, 9, 9)}),
        # auxiliary: centre plus all four neighbours
        ((3.3, 5.7), AUX_NEIGHBOUR_OFFSET, {(0, 5, 3), (0, 5, 2), (0, 5, 4), (0, 4, 3), (0, 6, 3)}),
        ((0.5, 5.5), AUX_NEIGHBOUR_OFFSET, {(0, 5, 0), (0, 5, 1), (0, 4, 0), (0, 6, 0)}),
    ],
)
def test_centre_prior_cells(centre, offset, expected):
    got = candidate_cells(_target(*centre), GRID, ONE_ANCHOR[0], STRIDE, offset, anchor_t=4.0)
    assert _cells(got) == expected
    assert set(got.target.tolist()) == {0}


@pytest.mark.parametrize(
    ("size_px", "expected_anchors"),
    [
        ((16.0, 16.0), {0, 1}),   # 10x10: ratio 1.6, 40x40: 2.5, 160x160: 10 (rejected)
        ((63.0, 63.0), {1, 2}),   # 10x10: 6.3 (rejected), 40x40: 1.6, 160x160: 2.5
        ((16.0, 70.0), {1}),      # 10x10: 7 on h, 160x160: 10 on w
        ((3.0, 3.0), {0}),        # 10 / 3 = 3.3 < 4: a ratio rule, not a minimum size
        ((2.0, 2.0), set()),      # 10 / 2 = 5: no anchor fits
    ],
)
def test_anchor_ratio_filter(size_px, expected_anchors):
    anchors = torch.tensor([[10.0, 10.0], [40.0, 40.0], [160.0, 160.0]])
    got = candidate_cells(_target(4.5, 4.5, *size_px), GRID, anchors, STRIDE, 0.5, anchor_t=4.0)
    assert set(got.anchor.tolist()) == expected_anchors


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _raw_map_with_boxes(boxes: dict[tuple[int, int], tuple[float, float, float, float]],
                        anchor_px: tuple[float, float], num_classes: int = 1, batch: int = 1,
                        obj: float = 0.5, cls: float = 0.5) -> torch.Tensor:
    """A raw map (B, 1, ny, nx, 5 + nc) whose decoded box at cell (gy, gx) is the given
    cx, cy, w, h (pixels), obtained by inverting the official decoding."""
    ny, nx = GRID
    raw = torch.zeros(batch, 1, ny, nx, 5 + num_classes, dtype=torch.float64)
    raw[..., 4] = _logit(obj)
    raw[..., 5:] = _logit(cls)
    for (gy, gx), (cx, cy, w, h) in boxes.items():
        sx = (cx / STRIDE - gx + 0.5) / 2
        sy = (cy / STRIDE - gy + 0.5) / 2
        sw = math.sqrt(w / anchor_px[0]) / 2
        sh = math.sqrt(h / anchor_px[1]) / 2
        raw[:, 0, gy, gx, :4] = torch.tensor([_logit(sx), _logit(sy), _logit(sw), _logit(sh)])
    return raw.float()


def _iou_xywh(a, b) -> float:
    ax1, ay1, ax2, ay2 = a[0] - a[2] / 2, a[1] - a[3] / 2, a[0] + a[2] / 2, a[1] + a[3] / 2
    bx1, by1, bx2, by2 = b[0] - b[2] / 2, b[1] - b[3] / 2, b[0] + b[2] / 2, b[1] + b[3] / 2
    iw = max(0.0, min(ax2, bx2) - max(ax1, bx1))
    ih = max(0.0, min(ay2, by2) - max(ay1, by1))
    inter = iw * ih
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


TARGET_BOX = (3.3 * STRIDE, 5.7 * STRIDE, 16.0, 16.0)  # candidate cells (5,3), (5,2), (6,3)


@pytest.mark.parametrize(
    ("shifts", "expected_k", "expected_cells"),
    [
        # a 16 px box shifted by d px has IoU (16 - |d|) / (16 + |d|) with the target
        # IoUs 0.95, 0.89, 0.57 -> sum 2.4 -> k = 2: the two best predictions
        ((0.4, 0.9, 4.4), 2, {(5, 3), (5, 2)}),
        # IoUs 0.98, 0.33, 0.28 -> sum 1.59 -> k = 1
        ((0.2, -8.0, 9.0), 1, {(5, 3)}),
        # IoUs 0.99, 0.99, 0.98 -> sum 2.96 -> k = 2: the two smallest costs
        ((0.05, 0.1, 0.2), 2, {(5, 3), (5, 2)}),
    ],
)
def test_dynamic_k_takes_the_k_lowest_costs(shifts, expected_k, expected_cells):
    cx, cy, w, h = TARGET_BOX
    cells = [(5, 3), (5, 2), (6, 3)]
    boxes = {cell: (cx + shift, cy, w, h) for cell, shift in zip(cells, shifts)}
    ious = [_iou_xywh(b, TARGET_BOX) for b in boxes.values()]
    assert max(1, int(sum(ious))) == expected_k  # the hand-made case is what we think it is
    raw = _raw_map_with_boxes(boxes, (16.0, 16.0))
    targets = torch.tensor([[0, 0, cx, cy, w, h]])
    (matches,) = simota_assign([raw], targets, ONE_ANCHOR, torch.tensor([STRIDE]))
    assert len(matches) == expected_k
    assert set(zip(matches.grid_y.tolist(), matches.grid_x.tolist())) == expected_cells
    assert matches.target.tolist() == [0] * expected_k


def test_contested_prediction_goes_to_the_cheaper_target():
    # two targets whose prior regions share cell (5, 3); the prediction there overlaps the
    # first target much better, so it must be assigned to target 0 only
    t0 = (3.3 * STRIDE, 5.3 * STRIDE, 16.0, 16.0)
    t1 = (3.9 * STRIDE, 5.4 * STRIDE, 16.0, 16.0)
    boxes = {(5, 3): t0, (5, 4): t1}
    raw = _raw_map_with_boxes(boxes, (16.0, 16.0))
    targets = torch.tensor([[0, 0, *t0], [0, 0, *t1]])
    (m,) = simota_assign([raw], targets, ONE_ANCHOR, torch.tensor([STRIDE]))
    owner = dict(zip(zip(m.grid_y.tolist(), m.grid_x.tolist()), m.target.tolist()))
    assert owner[(5, 3)] == 0
    assert owner[(5, 4)] == 1
    keys = list(zip(m.image.tolist(), m.anchor.tolist(), m.grid_y.tolist(), m.grid_x.tolist()))
    assert len(keys) == len(set(keys)), "a prediction was assigned twice"


def test_class_cost_breaks_ties_between_equal_boxes():
    # two predictions with the same IoU; the one scoring the target's class higher wins (k=1)
    cx, cy, w, h = TARGET_BOX
    boxes = {(5, 3): (cx + 2.0, cy, w, h), (5, 2): (cx - 2.0, cy, w, h), (6, 3): (cx, cy + 12, w, h)}
    raw = _raw_map_with_boxes(boxes, (16.0, 16.0), num_classes=2)
    raw[0, 0, 5, 2, 5] = _logit(0.9)   # class 0 (the target's) confident at (5, 2)
    raw[0, 0, 5, 3, 5] = _logit(0.1)
    targets = torch.tensor([[0, 0, cx, cy, w, h]])
    (m,) = simota_assign([raw], targets, ONE_ANCHOR, torch.tensor([STRIDE]))
    assert list(zip(m.grid_y.tolist(), m.grid_x.tolist())) == [(5, 2)]


def test_images_of_a_batch_are_assigned_independently():
    cx, cy, w, h = TARGET_BOX
    boxes = {(5, 3): (cx + 0.4, cy, w, h), (5, 2): (cx + 0.9, cy, w, h), (6, 3): (cx + 4.4, cy, w, h)}
    raw = _raw_map_with_boxes(boxes, (16.0, 16.0), batch=3)
    targets = torch.tensor([[0, 0, cx, cy, w, h], [2, 0, cx, cy, w, h]])
    (m,) = simota_assign([raw], targets, ONE_ANCHOR, torch.tensor([STRIDE]))
    by_image = {}
    for b, gy, gx, t in zip(m.image.tolist(), m.grid_y.tolist(), m.grid_x.tolist(), m.target.tolist()):
        by_image.setdefault(b, set()).add((gy, gx, t))
    assert by_image == {0: {(5, 3, 0), (5, 2, 0)}, 2: {(5, 3, 1), (5, 2, 1)}}


def test_no_targets_gives_empty_assignment_on_every_level():
    raw = [torch.zeros(2, 3, 8, 8, 6), torch.zeros(2, 3, 4, 4, 6)]
    anchors = torch.tensor([[[10.0, 13.0], [16.0, 30.0], [33.0, 23.0]],
                            [[30.0, 61.0], [62.0, 45.0], [59.0, 119.0]]])
    out = simota_assign(raw, torch.zeros(0, 6), anchors, torch.tensor([8.0, 16.0]))
    assert [len(m) for m in out] == [0, 0]


# ------------------------------------------------------------- batched == per-image loop

def _reference_assign(raw_maps, targets, anchors_px, strides, g, anchor_t=4.0, topk=10, w_iou=3.0):
    """The algorithm of training.assign, written as a plain loop per image and target."""
    out = set()
    batch = raw_maps[0].shape[0]
    for b in range(batch):
        rows = [r for r in range(len(targets)) if int(targets[r, 0]) == b]
        if not rows:
            continue
        cands = []  # (level, anchor, gy, gx) unique, in level order
        for level, pi in enumerate(raw_maps):
            ny, nx = pi.shape[2:4]
            c = candidate_cells(targets[rows], (ny, nx), anchors_px[level], float(strides[level]), g, anchor_t)
            for key in sorted(set(zip(c.anchor.tolist(), c.grid_y.tolist(), c.grid_x.tolist()))):
                cands.append((level, *key))
        boxes, probs = [], []
        for level, a, gy, gx in cands:
            y = raw_maps[level][b, a, gy, gx].double().sigmoid()
            s = float(strides[level])
            cx, cy = (2 * y[0] - 0.5 + gx) * s, (2 * y[1] - 0.5 + gy) * s
            w, h = (2 * y[2]) ** 2 * anchors_px[level][a][0], (2 * y[3]) ** 2 * anchors_px[level][a][1]
            boxes.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
            probs.append((y[5:] * y[4]).sqrt().clamp(1e-7, 1 - 1e-7))
        boxes = torch.tensor(boxes, dtype=torch.float64)
        probs = torch.stack(probs)
        gt = cxcywh_to_xyxy(targets[rows, 2:6].double())
        iou = batched_pairwise_iou(gt[None], boxes[None])[0]
        cost = torch.zeros_like(iou)
        for i, r in enumerate(rows):
            onehot = torch.zeros(probs.shape[1], dtype=torch.float64)
            onehot[int(targets[r, 1])] = 1
            bce = -(onehot * probs.log() + (1 - onehot) * (1 - probs).log()).sum(1)
            cost[i] = bce + w_iou * -torch.log(iou[i] + 1e-8)
        chosen = {}
        for i in range(len(rows)):
            k = max(1, int(iou[i].topk(min(topk, len(cands))).values.sum()))
            for j in cost[i].argsort()[:k].tolist():
                chosen.setdefault(j, []).append(i)
        for j, owners in chosen.items():
            owner = owners[0] if len(owners) == 1 else int(cost[:, j].argmin())
            out.add((cands[j][0], b, *cands[j][1:], rows[owner]))
    return out


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("offset", [LEAD_NEIGHBOUR_OFFSET, AUX_NEIGHBOUR_OFFSET])
def test_batched_assignment_equals_per_image_loop(seed, offset):
    rng = np.random.default_rng(seed)
    batch, nc = 3, 3
    strides = torch.tensor([8.0, 16.0, 32.0])
    anchors = torch.tensor([[[10, 13], [16, 30], [33, 23]], [[30, 61], [62, 45], [59, 119]],
                            [[116, 90], [156, 198], [373, 326]]], dtype=torch.float32)
    size = 128
    raw = [torch.from_numpy(rng.normal(0, 1.5, (batch, 3, size // int(s), size // int(s), 5 + nc)))
           .float() for s in strides]
    n = int(rng.integers(1, 12))
    wh = rng.uniform(6, 90, (n, 2))
    cxy = rng.uniform(wh / 2, size - wh / 2)
    targets = torch.from_numpy(np.column_stack([rng.integers(0, batch, n), rng.integers(0, nc, n),
                                                cxy, wh])).float()
    got = simota_assign(raw, targets, anchors, strides, neighbour_offset=offset)
    got_set = set()
    for level, m in enumerate(got):
        got_set |= set(zip([level] * len(m), m.image.tolist(), m.anchor.tolist(), m.grid_y.tolist(),
                           m.grid_x.tolist(), m.target.tolist()))
    assert sum(len(m) for m in got) == len(got_set)  # nothing assigned twice
    assert got_set == _reference_assign(raw, targets, anchors, strides, offset)
