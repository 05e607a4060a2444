"""Box geometry shared by the trackers: pairwise IoU and the box parameterisations of the two
Kalman filters.

All boxes are float64 arrays in pixels. ``xyxy`` is ``(x1, y1, x2, y2)`` with ``x2 > x1`` and
``y2 > y1``.
"""

from __future__ import annotations

import numpy as np


def iou_matrix(boxes_a: np.ndarray, boxes_b: np.ndarray, pixel_offset: float = 0.0) -> np.ndarray:
    """Intersection over union of every box in ``boxes_a`` with every box in ``boxes_b``.

    Args:
        boxes_a: float64 (n, 4) xyxy pixels.
        boxes_b: float64 (m, 4) xyxy pixels.
        pixel_offset: added to every width and height. ``0`` is the continuous-coordinate IoU
            (SORT, Bewley et al. 2016, section 3.3). ``1`` is the inclusive-pixel convention of
            ``cython_bbox`` that the reference ByteTrack uses (width = x2 - x1 + 1).

    Returns:
        float64 (n, m) IoU in [0, 1]; an empty (n, m) array when either side is empty.
    """
    if len(boxes_a) == 0 or len(boxes_b) == 0:
        return np.zeros((len(boxes_a), len(boxes_b)))
    a = boxes_a[:, None, :]
    b = boxes_b[None, :, :]
    inter_w = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + pixel_offset
    inter_h = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + pixel_offset
    intersection = np.maximum(inter_w, 0.0) * np.maximum(inter_h, 0.0)
    area_a = (boxes_a[:, 2] - boxes_a[:, 0] + pixel_offset) * (boxes_a[:, 3] - boxes_a[:, 1] + pixel_offset)
    area_b = (boxes_b[:, 2] - boxes_b[:, 0] + pixel_offset) * (boxes_b[:, 3] - boxes_b[:, 1] + pixel_offset)
    return intersection / (area_a[:, None] + area_b[None, :] - intersection)


def xyxy_to_xysr(boxes: np.ndarray) -> np.ndarray:
    """SORT measurement ``(u, v, s, r)``: centre, area ``s = w * h`` and aspect ``r = w / h``.

    Bewley et al. 2016, section 3.2. float64 (n, 4) -> float64 (n, 4).
    """
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    return np.stack([boxes[:, 0] + w / 2.0, boxes[:, 1] + h / 2.0, w * h, w / h], axis=1)


def xysr_to_xyxy(xysr: np.ndarray) -> np.ndarray:
    """Inverse of :func:`xyxy_to_xysr` on the first four state entries, float64 (n, >=4) -> (n, 4).

    ``w = sqrt(s * r)``, ``h = s / w``. A state whose area and aspect have opposite signs has no
    box; its row is NaN (SORT drops such tracks).
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        w = np.sqrt(xysr[:, 2] * xysr[:, 3])
        h = xysr[:, 2] / w
    half_w, half_h = w / 2.0, h / 2.0
    return np.stack(
        [xysr[:, 0] - half_w, xysr[:, 1] - half_h, xysr[:, 0] + half_w, xysr[:, 1] + half_h], axis=1
    )


def xyxy_to_xyah(boxes: np.ndarray) -> np.ndarray:
    """ByteTrack measurement ``(x, y, a, h)``: centre, aspect ``a = w / h`` and height.

    Zhang et al. 2022 (ByteTrack), section 4.1, after DeepSORT (Wojke et al. 2017, section 2.1).
    float64 (n, 4) -> float64 (n, 4).
    """
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    return np.stack([boxes[:, 0] + w / 2.0, boxes[:, 1] + h / 2.0, w / h, h], axis=1)


def xyah_to_xyxy(xyah: np.ndarray) -> np.ndarray:
    """Inverse of :func:`xyxy_to_xyah` on the first four state entries, float64 (n, >=4) -> (n, 4)."""
    w = xyah[:, 2] * xyah[:, 3]
    x1 = xyah[:, 0] - w / 2.0
    y1 = xyah[:, 1] - xyah[:, 3] / 2.0
    return np.stack([x1, y1, x1 + w, y1 + xyah[:, 3]], axis=1)
