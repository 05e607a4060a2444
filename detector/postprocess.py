"""Box conversion, class-aware NMS and mapping boxes back to the original frame.

Semantics are those of the official YOLOv7 code (WongKinYiu/yolov7 ``utils/general.py``:
``xywh2xyxy``, ``non_max_suppression``, ``scale_coords``, ``clip_coords``) with greedy NMS as
``torchvision.ops.nms`` computes it, written here in numpy (no torchvision; the objectness filter
runs on the prediction's device). Every float32 operation is done in the official order, so the
output is bit-identical to the official post-processing (checked against
``../shared/fixtures/yolov7/golden``).

Prediction layout (the model's decoded output, ``(B, N, 5 + nc)`` float):
``cx, cy, w, h`` in letterbox pixels, objectness, then ``nc`` class probabilities (sigmoids, not
multiplied by objectness). Detection layout (NMS output, ``(M, 6)``):
``x1, y1, x2, y2, conf, cls``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import torch

logger = logging.getLogger(__name__)

ArrayT = TypeVar("ArrayT", torch.Tensor, np.ndarray)

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

NMS_BLOCK_SIZE = 256
"""Candidates per block of the blocked greedy NMS (speed only; any value gives the same result)."""


def xywh2xyxy(boxes: ArrayT) -> ArrayT:
    """Convert ``(..., 4)`` centre boxes ``cx, cy, w, h`` to corners ``x1, y1, x2, y2``.

    ``x1 = cx - w / 2``, ``x2 = cx + w / 2`` (same for y) in the input's dtype, as the official
    ``xywh2xyxy``. Accepts a torch tensor or a numpy array and returns a new one of the same kind,
    shape and dtype (extra columns after the fourth are copied unchanged).
    """
    out = boxes.clone() if isinstance(boxes, torch.Tensor) else boxes.copy()
    half_size = boxes[..., 2:4] / 2
    out[..., 0:2] = boxes[..., 0:2] - half_size
    out[..., 2:4] = boxes[..., 0:2] + half_size
    return out


def pairwise_iou(
    boxes_a: np.ndarray,
    areas_a: np.ndarray,
    boxes_b: np.ndarray,
    areas_b: np.ndarray,
) -> np.ndarray:
    """IoU of every box of ``a`` ``(K, 4)`` with every box of ``b`` ``(R, 4)`` -> ``(K, R)``.

    numpy arrays; computed in their dtype (float32 for the detector) in the order of torchvision's
    CPU NMS kernel: ``inter = max(0, min(x2) - max(x1)) * max(0, min(y2) - max(y1))``,
    ``iou = inter / (area_a + area_b - inter)``; 0/0 gives NaN, which never suppresses.
    """
    width = np.minimum(boxes_a[:, None, 2], boxes_b[None, :, 2])
    width -= np.maximum(boxes_a[:, None, 0], boxes_b[None, :, 0])
    np.maximum(width, 0, out=width)
    height = np.minimum(boxes_a[:, None, 3], boxes_b[None, :, 3])
    height -= np.maximum(boxes_a[:, None, 1], boxes_b[None, :, 1])
    np.maximum(height, 0, out=height)
    inter = np.multiply(width, height, out=width)
    union = np.add(areas_a[:, None], areas_b[None, :], out=height)
    union -= inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.divide(inter, union, out=inter)


def _largest_at_most(threshold: float, dtype: np.dtype) -> np.generic:
    """The largest ``dtype`` value ``<= threshold``.

    torchvision compares the float32 IoU with the threshold as a double (``ovr > iou_threshold``);
    for a float ``x``, ``x > t`` holds exactly when ``x > largest_at_most(t)``, so the comparison
    can stay in float32 (plain ``float32(t)`` would differ for thresholds that round up, e.g. 0.6).
    """
    value = np.asarray(threshold, dtype=dtype)[()]
    if float(value) > threshold:
        value = np.nextafter(value, dtype.type(-np.inf))
    return value


def _greedy_scan(over_threshold: np.ndarray, max_keep: int) -> np.ndarray:
    """Greedy NMS on a boolean ``(R, R)`` matrix whose row ``i`` marks the later boxes that box
    ``i`` suppresses (strictly upper triangular; rows in descending score). Returns the kept row
    indices in order, at most ``max_keep``.

    Only rows that suppress something can change the outcome, so only they are visited, in order;
    a row acts only if its own box is still alive when it is reached."""
    alive = np.ones(over_threshold.shape[0], dtype=bool)
    for i in np.flatnonzero(over_threshold.any(axis=1)):
        if alive[i]:
            alive[over_threshold[i]] = False
    return np.flatnonzero(alive)[:max_keep]


def _greedy_nms_numpy(boxes: np.ndarray, scores: np.ndarray, iou_thres: float, limit: int,
                      block_size: int) -> np.ndarray:
    """:func:`greedy_nms` on numpy arrays; ``limit >= 1`` kept boxes at most."""
    n = boxes.shape[0]
    threshold = _largest_at_most(iou_thres, boxes.dtype)
    order = np.argsort(-scores, kind="stable")
    sorted_boxes = boxes[order]
    sorted_areas = (sorted_boxes[:, 2] - sorted_boxes[:, 0]) * (sorted_boxes[:, 3] - sorted_boxes[:, 1])

    kept_positions: list[np.ndarray] = []
    kept_boxes = sorted_boxes[:0]
    kept_areas = sorted_areas[:0]
    for start in range(0, n, block_size):
        positions = np.arange(start, min(n, start + block_size))
        if kept_boxes.shape[0]:
            iou_vs_kept = pairwise_iou(kept_boxes, kept_areas, sorted_boxes[positions], sorted_areas[positions])
            positions = positions[~(iou_vs_kept > threshold).any(axis=0)]
            if positions.size == 0:
                continue
        block_boxes, block_areas = sorted_boxes[positions], sorted_areas[positions]
        over = np.triu(pairwise_iou(block_boxes, block_areas, block_boxes, block_areas) > threshold, k=1)
        local_kept = _greedy_scan(over, limit - kept_boxes.shape[0])
        kept_positions.append(positions[local_kept])
        kept_boxes = np.concatenate((kept_boxes, block_boxes[local_kept]))
        kept_areas = np.concatenate((kept_areas, block_areas[local_kept]))
        if kept_boxes.shape[0] >= limit:
            break
    return order[np.concatenate(kept_positions)]


def greedy_nms(
    boxes: ArrayT,
    scores: ArrayT,
    iou_thres: float,
    max_keep: int | None = None,
    block_size: int = NMS_BLOCK_SIZE,
) -> ArrayT:
    """Greedy non-maximum suppression with ``torchvision.ops.nms`` semantics.

    Boxes are visited in descending score (ties by index: a stable sort, as torchvision's CPU
    kernel); a box is kept unless a kept box overlaps it with ``IoU > iou_thres`` (strict; the IoU
    of :func:`pairwise_iou` in the boxes' dtype, compared with the threshold as a double, as
    torchvision does). This is the classic greedy algorithm (Girshick et al., "Rich feature
    hierarchies for accurate object detection and semantic segmentation", CVPR 2014), run block by
    block: the boxes of a block are first tested against every box kept so far, then against each
    other with one ``(R, R)`` matrix and a sequential scan over its rows. Memory stays
    ``O(block_size * max(kept, block_size))`` instead of ``O(N^2)``, and work stops once
    ``max_keep`` boxes are kept; the result equals the full greedy pass truncated to ``max_keep``.
    It runs in numpy on the CPU (a tensor on another device is copied over and back).

    Args:
        boxes: ``(N, 4)`` float ``x1, y1, x2, y2``, a torch tensor or numpy array.
        scores: ``(N,)`` float, same kind as ``boxes``.
        iou_thres: suppress when IoU is strictly greater than this.
        max_keep: stop after this many kept boxes (``None``: no limit).
        block_size: candidates per block (speed only; any value gives the same result).

    Returns:
        int64 indices into ``boxes`` of the kept boxes in descending score; a tensor on
        ``boxes.device`` for tensor input, else a numpy array.
    """
    is_tensor = isinstance(boxes, torch.Tensor)
    boxes_np = boxes.detach().cpu().numpy() if is_tensor else np.asarray(boxes)
    scores_np = scores.detach().cpu().numpy() if is_tensor else np.asarray(scores)
    n = boxes_np.shape[0]
    limit = n if max_keep is None else min(n, max_keep)
    if n == 0 or limit <= 0:
        keep = np.zeros(0, dtype=np.int64)
    else:
        keep = _greedy_nms_numpy(boxes_np, scores_np, iou_thres, limit, block_size)
    return torch.from_numpy(keep).to(boxes.device) if is_tensor else keep


def _validate_thresholds(conf_thres: float, iou_thres: float, max_det: int, max_candidates: int) -> None:
    if not 0.0 <= conf_thres <= 1.0:
        raise ValueError(f"conf_thres must be in [0, 1], got {conf_thres}")
    if not 0.0 <= iou_thres <= 1.0:
        raise ValueError(f"iou_thres must be in [0, 1], got {iou_thres}")
    if max_det < 1:
        raise ValueError(f"max_det must be >= 1, got {max_det}")
    if max_candidates < 1:
        raise ValueError(f"max_candidates must be >= 1, got {max_candidates}")


def _rows_above_objectness(image_pred: torch.Tensor, conf_thres: float) -> np.ndarray:
    """Rows of one image's ``(N, 5 + nc)`` prediction with objectness ``> conf_thres``, as numpy.

    The comparison is in the prediction's dtype (torch casts the Python threshold to it, as in
    the official code); on an accelerator the rows are selected there and only they are copied."""
    if image_pred.device.type == "cpu":
        rows = image_pred.detach().numpy()
        return rows[rows[:, PRED_OBJ] > rows.dtype.type(conf_thres)]
    return image_pred[image_pred[:, PRED_OBJ] > conf_thres].detach().cpu().numpy()


def _candidates(rows: np.ndarray, conf_thres: float, classes: np.ndarray | None, max_candidates: int) -> np.ndarray:
    """Steps 2-4 of :func:`non_max_suppression` on the rows that passed objectness -> ``(n, 6)``."""
    num_classes = rows.shape[1] - PRED_CLS0
    objectness = rows[:, PRED_OBJ : PRED_OBJ + 1]
    # Official: a one-class model scores by objectness alone (its class output is untrained).
    class_scores = objectness if num_classes == 1 else rows[:, PRED_CLS0:] * objectness
    # argmax returns the first of equal maxima, as torch.max(dim) does in the official code
    class_index = class_scores.argmax(axis=1)
    conf = np.take_along_axis(class_scores, class_index[:, None], axis=1)[:, 0]
    passed = conf > conf.dtype.type(conf_thres)
    det = np.empty((int(passed.sum()), 6), dtype=rows.dtype)
    det[:, :4] = xywh2xyxy(rows[passed, :4])
    det[:, DET_CONF] = conf[passed]
    det[:, DET_CLS] = class_index[passed]
    if classes is not None:
        det = det[np.isin(det[:, DET_CLS], classes)]
    if det.shape[0] > max_candidates:
        det = det[np.argsort(-det[:, DET_CONF], kind="stable")[:max_candidates]]
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
    3. best class per row (first on ties), keep ``conf > conf_thres`` (strict); optional ``classes``;
    4. at most ``max_candidates`` highest ``conf`` rows;
    5. greedy NMS (:func:`greedy_nms`, suppress at ``IoU > iou_thres``) on boxes shifted by
       ``cls * 4096`` px so that classes never suppress each other (no shift when ``agnostic``);
    6. at most ``max_det`` detections, in descending ``conf``.

    Step 1 runs on ``pred``'s device, the rest in numpy on the CPU (float32 operations in the
    official order, so results are bit-identical to the official code on the same prediction).

    Args:
        pred: ``(B, N, 5 + nc)`` float16/32/64 prediction, see the module docstring
            (letterbox pixels).
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
        ValueError: ``pred`` is not ``(B, N, >= 6)`` float16/32/64, or a threshold or limit is out
            of range.
    """
    if pred.ndim != 3 or pred.shape[2] < PRED_CLS0 + 1:
        raise ValueError(f"pred must have shape (B, N, 5 + num_classes), got {tuple(pred.shape)}")
    if pred.dtype not in (torch.float16, torch.float32, torch.float64):
        raise ValueError(f"pred must be float16, float32 or float64, got {pred.dtype}; convert with pred.float()")
    _validate_thresholds(conf_thres, iou_thres, max_det, max_candidates)
    class_filter = None if classes is None else np.asarray(list(classes), dtype=np.float64)
    outputs = []
    for image_pred in pred:
        det = _candidates(_rows_above_objectness(image_pred, conf_thres), conf_thres, class_filter, max_candidates)
        if det.shape[0]:
            boxes = det[:, :4] if agnostic else det[:, :4] + det[:, DET_CLS : DET_CLS + 1] * det.dtype.type(CLASS_OFFSET_PX)
            det = det[_greedy_nms_numpy(boxes, det[:, DET_CONF], iou_thres, max_det, NMS_BLOCK_SIZE)]
        outputs.append(torch.from_numpy(det).to(pred.device))
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
