"""Box conversion, class-aware NMS and mapping boxes back to the original frame.

Semantics are those of the official YOLOv7 code (WongKinYiu/yolov7 ``utils/general.py``:
``xywh2xyxy``, ``non_max_suppression``, ``scale_coords``, ``clip_coords``) with greedy NMS as
``torchvision.ops.nms`` computes it, written here in plain torch (no torchvision). Every float32
operation is done in the official order, so the output is bit-identical to the official
post-processing (checked against ``../shared/fixtures/yolov7/golden``).

Prediction layout (the model's decoded output, ``(B, N, 5 + nc)`` float):
``cx, cy, w, h`` in letterbox pixels, objectness, then ``nc`` class probabilities (sigmoids, not
multiplied by objectness). Detection layout (NMS output, ``(M, 6)``):
``x1, y1, x2, y2, conf, cls``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

logger = logging.getLogger(__name__)

# Column indices of the prediction tensor.
PRED_CX, PRED_CY, PRED_W, PRED_H, PRED_OBJ, PRED_CLS0 = 0, 1, 2, 3, 4, 5
# Column indices of a detection row.
DET_X1, DET_Y1, DET_X2, DET_Y2, DET_CONF, DET_CLS = 0, 1, 2, 3, 4, 5

CLASS_OFFSET_PX = 4096
"""Per-class box offset that makes one NMS pass class-aware (official ``max_wh = 4096``): boxes of
different classes are moved apart so they never overlap (for images up to 4096 px)."""

MAX_CANDIDATES = 30_000
"""Highest-scoring candidates that enter NMS (official ``max_nms``)."""

MAX_DETECTIONS = 300
"""Detections kept per image (official ``max_det``)."""

NMS_BLOCK_SIZE = 512
"""Candidates per block of the blocked greedy NMS (speed only; any value gives the same result)."""


def xywh2xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """Convert ``(..., 4)`` centre boxes ``cx, cy, w, h`` to corners ``x1, y1, x2, y2``.

    ``x1 = cx - w / 2``, ``x2 = cx + w / 2`` (same for y) in the tensor's dtype, as the official
    ``xywh2xyxy``. Returns a new tensor of the same shape, dtype and device.
    """
    centre, half_size = boxes[..., :2], boxes[..., 2:4] / 2
    return torch.cat((centre - half_size, centre + half_size), dim=-1)


def box_areas(boxes: torch.Tensor) -> torch.Tensor:
    """``(x2 - x1) * (y2 - y1)`` of ``(N, 4)`` corner boxes -> ``(N,)`` (no clamping, as torchvision)."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def pairwise_iou(
    boxes_a: torch.Tensor,
    areas_a: torch.Tensor,
    boxes_b: torch.Tensor,
    areas_b: torch.Tensor,
) -> torch.Tensor:
    """IoU of every box of ``a`` ``(K, 4)`` with every box of ``b`` ``(R, 4)`` -> ``(K, R)``.

    Computed in the boxes' dtype as torchvision's CPU NMS kernel does:
    ``inter = max(0, min(x2) - max(x1)) * max(0, min(y2) - max(y1))``,
    ``iou = inter / (area_a + area_b - inter)`` (0/0 gives NaN, which never suppresses).
    """
    a = boxes_a[:, None, :]
    b = boxes_b[None, :, :]
    top_left = torch.maximum(a[..., :2], b[..., :2])
    bottom_right = torch.minimum(a[..., 2:], b[..., 2:])
    size = (bottom_right - top_left).clamp_(min=0)
    inter = size[..., 0] * size[..., 1]
    union = areas_a[:, None] + areas_b[None, :]
    return inter.div_(union.sub_(inter))


def _greedy_scan(over_threshold: np.ndarray, max_keep: int) -> np.ndarray:
    """Greedy NMS on a boolean ``(R, R)`` matrix whose row ``i`` marks the later boxes that box
    ``i`` suppresses (strictly upper triangular; rows in descending score). Returns the kept row
    indices in order, at most ``max_keep``."""
    alive = np.ones(over_threshold.shape[0], dtype=bool)
    kept = []
    for i in range(over_threshold.shape[0]):
        if not alive[i]:
            continue
        kept.append(i)
        if len(kept) == max_keep:
            break
        alive &= ~over_threshold[i]
    return np.asarray(kept, dtype=np.int64)


def greedy_nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    iou_thres: float,
    max_keep: int | None = None,
    block_size: int = NMS_BLOCK_SIZE,
) -> torch.Tensor:
    """Greedy non-maximum suppression with ``torchvision.ops.nms`` semantics.

    Boxes are visited in descending score; a box is kept unless a kept box overlaps it with
    ``IoU > iou_thres`` (strict). IoU as in :func:`pairwise_iou`. The classic greedy algorithm
    (e.g. Girshick et al., "Rich feature hierarchies...", CVPR 2014), run block by block: the boxes
    of a block are first tested against every box kept so far, then against each other with one
    ``(R, R)`` matrix and a sequential scan. Memory stays ``O(block_size * max(kept, block_size))``
    instead of ``O(N^2)``, and work stops once ``max_keep`` boxes are kept; the result equals the
    full greedy pass truncated to ``max_keep``.

    Ties in score are ordered by index (stable sort); torchvision's CPU kernel uses an unstable sort,
    so exact ties may come out in a different order there.

    Args:
        boxes: ``(N, 4)`` float ``x1, y1, x2, y2``.
        scores: ``(N,)`` float.
        iou_thres: suppress when IoU is strictly greater than this.
        max_keep: stop after this many kept boxes (``None``: no limit).
        block_size: candidates per block (speed only).

    Returns:
        int64 indices into ``boxes`` of the kept boxes, in descending score, on ``boxes.device``.
    """
    n = boxes.shape[0]
    limit = n if max_keep is None else min(n, max_keep)
    if n == 0 or limit <= 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    sorted_boxes = boxes[order]
    sorted_areas = box_areas(sorted_boxes)

    kept_positions: list[torch.Tensor] = []
    kept_boxes = sorted_boxes[:0]
    kept_areas = sorted_areas[:0]
    n_kept = 0
    for start in range(0, n, block_size):
        stop = min(n, start + block_size)
        block_boxes = sorted_boxes[start:stop]
        block_areas = sorted_areas[start:stop]
        positions = torch.arange(start, stop, device=boxes.device)
        if n_kept:
            iou_vs_kept = pairwise_iou(kept_boxes, kept_areas, block_boxes, block_areas)
            survivors = torch.nonzero(~(iou_vs_kept > iou_thres).any(dim=0)).squeeze(1)
            if survivors.numel() == 0:
                continue
            block_boxes, block_areas = block_boxes[survivors], block_areas[survivors]
            positions = positions[survivors]
        over = pairwise_iou(block_boxes, block_areas, block_boxes, block_areas) > iou_thres
        over = over.triu_(diagonal=1).cpu().numpy()
        local_kept = torch.from_numpy(_greedy_scan(over, limit - n_kept)).to(boxes.device)
        kept_positions.append(positions[local_kept])
        kept_boxes = torch.cat((kept_boxes, block_boxes[local_kept]))
        kept_areas = torch.cat((kept_areas, block_areas[local_kept]))
        n_kept += local_kept.numel()
        if n_kept >= limit:
            break
    return order[torch.cat(kept_positions)]


def _validate_thresholds(conf_thres: float, iou_thres: float, max_det: int, max_candidates: int) -> None:
    if not 0.0 <= conf_thres <= 1.0:
        raise ValueError(f"conf_thres must be in [0, 1], got {conf_thres}")
    if not 0.0 <= iou_thres <= 1.0:
        raise ValueError(f"iou_thres must be in [0, 1], got {iou_thres}")
    if max_det < 1:
        raise ValueError(f"max_det must be >= 1, got {max_det}")
    if max_candidates < 1:
        raise ValueError(f"max_candidates must be >= 1, got {max_candidates}")


def _candidates(
    image_pred: torch.Tensor, conf_thres: float, classes: torch.Tensor | None, max_candidates: int
) -> torch.Tensor:
    """Rows of one image's ``(N, 5 + nc)`` prediction that enter NMS, as ``(n, 6)`` detections."""
    x = image_pred[image_pred[:, PRED_OBJ] > conf_thres]
    if x.shape[0] == 0:
        return x.new_zeros((0, 6))
    num_classes = x.shape[1] - PRED_CLS0
    objectness = x[:, PRED_OBJ : PRED_OBJ + 1]
    # Official: a one-class model scores by objectness alone (its class output is untrained).
    class_scores = objectness if num_classes == 1 else x[:, PRED_CLS0:] * objectness
    conf, class_index = class_scores.max(dim=1, keepdim=True)
    det = torch.cat((xywh2xyxy(x[:, :4]), conf, class_index.to(x.dtype)), dim=1)
    det = det[conf.view(-1) > conf_thres]
    if classes is not None:
        det = det[(det[:, DET_CLS : DET_CLS + 1] == classes).any(dim=1)]
    if det.shape[0] > max_candidates:
        det = det[det[:, DET_CONF].argsort(descending=True)[:max_candidates]]
    return det


def non_max_suppression(
    pred: torch.Tensor,
    conf_thres: float = 0.25,
    iou_thres: float = 0.45,
    classes: Sequence[int] | None = None,
    agnostic: bool = False,
    max_det: int = MAX_DETECTIONS,
    max_candidates: int = MAX_CANDIDATES,
) -> list[torch.Tensor]:
    """Official YOLOv7 non-maximum suppression (``utils/general.py``, best class per box).

    Per image:

    1. keep rows with objectness ``> conf_thres``;
    2. class scores ``cls * obj`` (a one-class model uses ``obj``); ``cx, cy, w, h -> x1, y1, x2, y2``;
    3. best class per row, keep ``conf > conf_thres`` (strict); optional ``classes`` filter;
    4. at most ``max_candidates`` highest ``conf`` rows;
    5. greedy NMS (:func:`greedy_nms`, suppress at ``IoU > iou_thres``) on boxes shifted by
       ``cls * 4096`` px so that classes never suppress each other (no shift when ``agnostic``);
    6. at most ``max_det`` detections, in descending ``conf``.

    Args:
        pred: ``(B, N, 5 + nc)`` float prediction, see the module docstring (letterbox pixels).
        conf_thres: confidence threshold in [0, 1].
        iou_thres: IoU threshold in [0, 1].
        classes: class ids to keep (``None``: all).
        agnostic: one NMS over all classes instead of per class.
        max_det: detections kept per image (>= 1).
        max_candidates: boxes entering NMS per image (>= 1).

    Returns:
        ``B`` tensors ``(M, 6)`` ``x1, y1, x2, y2, conf, cls`` (letterbox pixels, ``cls`` as float),
        dtype and device of ``pred``.

    Raises:
        ValueError: ``pred`` is not ``(B, N, >= 6)`` or a threshold/limit is out of range.
    """
    if pred.ndim != 3 or pred.shape[2] < PRED_CLS0 + 1:
        raise ValueError(f"pred must have shape (B, N, 5 + num_classes), got {tuple(pred.shape)}")
    _validate_thresholds(conf_thres, iou_thres, max_det, max_candidates)
    class_filter = None
    if classes is not None:
        class_filter = torch.tensor(list(classes), dtype=pred.dtype, device=pred.device)
    outputs = []
    for image_pred in pred:
        det = _candidates(image_pred, conf_thres, class_filter, max_candidates)
        if det.shape[0] == 0:
            outputs.append(det)
            continue
        offsets = 0.0 if agnostic else det[:, DET_CLS : DET_CLS + 1] * CLASS_OFFSET_PX
        keep = greedy_nms(det[:, :4] + offsets, det[:, DET_CONF], iou_thres, max_keep=max_det)
        outputs.append(det[keep])
    return outputs


def scale_boxes(
    boxes: torch.Tensor,
    input_hw: Sequence[int],
    orig_hw: Sequence[int],
    ratio_pad: tuple[Sequence[float], Sequence[float]] | None = None,
) -> torch.Tensor:
    """Map ``(M, 4)`` ``x1, y1, x2, y2`` boxes from letterbox pixels to original-image pixels.

    Official ``scale_coords`` + ``clip_coords``: ``gain = min(h_in / h0, w_in / w0)``,
    ``pad = ((w_in - w0 * gain) / 2, (h_in - h0 * gain) / 2)`` recomputed from the shapes (unless
    ``ratio_pad = ((gain, _), (pad_w, pad_h))`` is given); subtract the pad, divide by the gain,
    clamp x to ``[0, w0]`` and y to ``[0, h0]``.

    Args:
        boxes: ``(M, 4)`` float boxes in the letterboxed image (or ``(M, >= 4)``: only the first four
            columns are used).
        input_hw: ``(h_in, w_in)`` of the letterboxed image the boxes refer to.
        orig_hw: ``(h0, w0)`` of the original image.
        ratio_pad: optional explicit ``((gain_w, gain_h), (pad_w, pad_h))``; only ``gain_w`` is used,
            as in the official code.

    Returns:
        new ``(M, 4)`` tensor, dtype and device of ``boxes``; ``boxes`` is not modified.
    """
    h_in, w_in = float(input_hw[0]), float(input_hw[1])
    h0, w0 = float(orig_hw[0]), float(orig_hw[1])
    if ratio_pad is None:
        gain = min(h_in / h0, w_in / w0)
        pad_w, pad_h = (w_in - w0 * gain) / 2, (h_in - h0 * gain) / 2
    else:
        gain = float(ratio_pad[0][0])
        pad_w, pad_h = float(ratio_pad[1][0]), float(ratio_pad[1][1])
    out = boxes[:, :4].clone()
    out[:, [0, 2]] -= pad_w
    out[:, [1, 3]] -= pad_h
    out /= gain
    out[:, [0, 2]] = out[:, [0, 2]].clamp(0, w0)
    out[:, [1, 3]] = out[:, [1, 3]].clamp(0, h0)
    return out
