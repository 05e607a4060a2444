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
    # Overlap extents (n, m, 2): min of the far corners minus max of the near corners.
    overlap = np.minimum(boxes_a[:, None, 2:], boxes_b[None, :, 2:])
    overlap -= np.maximum(boxes_a[:, None, :2], boxes_b[None, :, :2])
    if pixel_offset:
        overlap += pixel_offset
    np.maximum(overlap, 0.0, out=overlap)
    intersection = overlap[..., 0] * overlap[..., 1]
    size_a = boxes_a[:, 2:] - boxes_a[:, :2] + pixel_offset
    size_b = boxes_b[:, 2:] - boxes_b[:, :2] + pixel_offset
    union = (size_a[:, 0] * size_a[:, 1])[:, None] + (size_b[:, 0] * size_b[:, 1])[None, :]
    union -= intersection
    return intersection / union


def xyxy_to_xysr(boxes: np.ndarray) -> np.ndarray:
    """SORT measurement ``(u, v, s, r)``: centre, area ``s = w * h`` and aspect ``r = w / h``.

    Bewley et al. 2016, section 3.2. float64 (n, 4) -> float64 (n, 4).
    """
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    out = np.empty((len(boxes), 4))
    out[:, 0] = boxes[:, 0] + w / 2.0
    out[:, 1] = boxes[:, 1] + h / 2.0
    out[:, 2] = w * h
    out[:, 3] = w / h
    return out


def xysr_to_xyxy(xysr: np.ndarray) -> np.ndarray:
    """Inverse of :func:`xyxy_to_xysr` on the first four state entries, float64 (n, >=4) -> (n, 4).

    ``w = sqrt(s * r)``, ``h = s / w``. A state whose area and aspect have opposite signs has no
    box; its row is NaN (SORT drops such tracks).
    """
    area_times_aspect = xysr[:, 2] * xysr[:, 3]  # = w^2
    if (area_times_aspect > 0).all():
        w = np.sqrt(area_times_aspect)
        h = xysr[:, 2] / w
    else:  # degenerate states become NaN rows, as in the reference; no warning for them
        with np.errstate(invalid="ignore", divide="ignore"):
            w = np.sqrt(area_times_aspect)
            h = xysr[:, 2] / w
    half_size = np.empty((len(xysr), 2))
    half_size[:, 0] = w
    half_size[:, 1] = h
    half_size *= 0.5
    centre = xysr[:, :2]
    return np.concatenate((centre - half_size, centre + half_size), axis=1)


def xyxy_to_xyah(boxes: np.ndarray) -> np.ndarray:
    """ByteTrack measurement ``(x, y, a, h)``: centre, aspect ``a = w / h`` and height.

    Zhang et al. 2022 (ByteTrack), section 4.1, after DeepSORT (Wojke et al. 2017, section 2.1).
    float64 (n, 4) -> float64 (n, 4).
    """
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    out = np.empty((len(boxes), 4))
    out[:, 0] = boxes[:, 0] + w / 2.0
    out[:, 1] = boxes[:, 1] + h / 2.0
    out[:, 2] = w / h
    out[:, 3] = h
    return out


def xyah_to_xyxy(xyah: np.ndarray) -> np.ndarray:
    """Inverse of :func:`xyxy_to_xyah` on the first four state entries, float64 (n, >=4) -> (n, 4)."""
    w = xyah[:, 2] * xyah[:, 3]
    out = np.empty((len(xyah), 4))
    out[:, 0] = xyah[:, 0] - w / 2.0
    out[:, 1] = xyah[:, 1] - xyah[:, 3] / 2.0
    out[:, 2] = out[:, 0] + w
    out[:, 3] = out[:, 1] + xyah[:, 3]
    return out
