"""Training-time augmentation: mosaic (4 or 9 images), mixup, random affine, HSV jitter,
horizontal flip; letterbox for evaluation.

Written with OpenCV and numpy (albumentations would pull ``opencv-python-headless`` next to
our ``opencv-python``, two copies of the same module). Recipe and defaults follow the official
YOLOv7 data pipeline (WongKinYiu/yolov7 ``utils/datasets.py``: ``load_mosaic``,
``load_mosaic9``, ``random_perspective``, ``box_candidates``, ``augment_hsv``, mixup with
ratio ~ Beta(8, 8)); mosaic is from Bochkovskiy et al., "YOLOv4", 2020, sec. 3.3, mixup from
Zhang et al., "mixup", ICLR 2018.

Conventions: images are ``(H, W, 3)`` uint8 **BGR**; labels are ``(n, 5)`` float32 rows
``class, x1, y1, x2, y2`` in the pixels of the image they accompany. Every function returns
new arrays (inputs are never modified) and takes its randomness from a
``numpy.random.Generator``, so a sample is reproducible from its seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from detector.preprocess import letterbox

PAD_VALUE = 114
"""Grey used for padding and mosaic background (official value)."""
MIN_BOX_SIDE_PX = 2.0
"""Boxes narrower or lower than this after a transform are dropped."""
MIN_AREA_KEPT = 0.1
"""Boxes keeping less than this fraction of their (scaled) area after clipping are dropped."""
MAX_ASPECT_RATIO = 20.0
"""Boxes more elongated than this after a transform are dropped."""
MIXUP_BETA = 8.0
"""Mixup ratio ~ Beta(8, 8) (official YOLOv7)."""


def resize_long_side(image: np.ndarray, size: int, *, augment: bool) -> tuple[np.ndarray, float]:
    """Resize so the longer side is ``size`` px (aspect kept); returns ``(image, ratio)``.

    INTER_AREA when shrinking for evaluation, INTER_LINEAR otherwise (official ``load_image``).
    """
    h, w = image.shape[:2]
    ratio = size / max(h, w)
    if ratio == 1:
        return image, 1.0
    interpolation = cv2.INTER_AREA if ratio < 1 and not augment else cv2.INTER_LINEAR
    resized = cv2.resize(image, (max(1, round(w * ratio)), max(1, round(h * ratio))),
                         interpolation=interpolation)
    return resized, ratio


def scale_labels(labels: np.ndarray, ratio_w: float, ratio_h: float, pad_w: float = 0.0,
                 pad_h: float = 0.0) -> np.ndarray:
    """Labels of an image resized by ``ratio`` and shifted by ``pad`` (pixels)."""
    out = labels.astype(np.float32, copy=True)
    out[:, [1, 3]] = labels[:, [1, 3]] * ratio_w + pad_w
    out[:, [2, 4]] = labels[:, [2, 4]] * ratio_h + pad_h
    return out


def letterbox_with_labels(image: np.ndarray, labels: np.ndarray, size: int, *,
                          scaleup: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Letterbox to a ``size`` x ``size`` canvas (official letterbox, ``auto=False``) and move
    the labels with the image."""
    lb = letterbox(image, size, auto=False, scaleup=scaleup)
    return lb.image, scale_labels(labels, lb.ratio[0], lb.ratio[1], lb.pad[0], lb.pad[1])


def clip_labels(labels: np.ndarray, width: float, height: float) -> np.ndarray:
    out = labels.copy()
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, width)
    out[:, [2, 4]] = out[:, [2, 4]].clip(0, height)
    return out


def horizontal_flip(image: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror left-right; ``x1' = W - x2``, ``x2' = W - x1``."""
    width = image.shape[1]
    out = labels.copy()
    out[:, 1] = width - labels[:, 3]
    out[:, 3] = width - labels[:, 1]
    return np.ascontiguousarray(image[:, ::-1]), out


def augment_hsv(image: np.ndarray, rng: np.random.Generator, hue_gain: float = 0.015,
                saturation_gain: float = 0.7, value_gain: float = 0.4) -> np.ndarray:
    """Random hue/saturation/value gains ``1 + U(-g, g)`` applied through look-up tables
    (OpenCV HSV: hue in [0, 180), wraps around). Boxes are unaffected."""
    gains = rng.uniform(-1, 1, 3) * (hue_gain, saturation_gain, value_gain) + 1
    hue, sat, val = cv2.split(cv2.cvtColor(image, cv2.COLOR_BGR2HSV))
    x = np.arange(256, dtype=np.float32)
    lut_hue = ((x * gains[0]) % 180).astype(np.uint8)
    lut_sat = np.clip(x * gains[1], 0, 255).astype(np.uint8)
    lut_val = np.clip(x * gains[2], 0, 255).astype(np.uint8)
    hsv = cv2.merge((cv2.LUT(hue, lut_hue), cv2.LUT(sat, lut_sat), cv2.LUT(val, lut_val)))
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)


def affine_matrix(rng: np.random.Generator, image_hw: tuple[int, int], out_hw: tuple[int, int],
                  degrees: float, translate: float, scale: float, shear: float) -> tuple[np.ndarray, float]:
    """The 3x3 matrix of :func:`random_affine` and its scale gain.

    ``M = T @ S @ R @ C``: ``C`` moves the image centre to the origin, ``R`` rotates by
    ``U(-degrees, degrees)`` and scales by ``U(1 - scale, 1 + scale)``, ``S`` shears by
    ``U(-shear, shear)`` degrees on each axis, ``T`` moves the origin to
    ``U(0.5 - translate, 0.5 + translate)`` of the output size.
    """
    h, w = image_hw
    out_h, out_w = out_hw
    centre = np.eye(3)
    centre[0, 2], centre[1, 2] = -w / 2, -h / 2
    rotation = np.eye(3)
    gain = rng.uniform(1 - scale, 1 + scale)
    rotation[:2] = cv2.getRotationMatrix2D(center=(0, 0), angle=rng.uniform(-degrees, degrees), scale=gain)
    shearing = np.eye(3)
    shearing[0, 1] = math.tan(math.radians(rng.uniform(-shear, shear)))
    shearing[1, 0] = math.tan(math.radians(rng.uniform(-shear, shear)))
    translation = np.eye(3)
    translation[0, 2] = rng.uniform(0.5 - translate, 0.5 + translate) * out_w
    translation[1, 2] = rng.uniform(0.5 - translate, 0.5 + translate) * out_h
    return translation @ shearing @ rotation @ centre, gain


def transform_boxes(labels: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Labels whose boxes are the axis-aligned hulls of the transformed box corners."""
    n = len(labels)
    if n == 0:
        return labels.copy()
    corners = np.ones((n * 4, 3))
    corners[:, :2] = labels[:, [1, 2, 3, 4, 1, 4, 3, 2]].reshape(n * 4, 2)  # x1y1 x2y2 x1y2 x2y1
    moved = (corners @ matrix.T)[:, :2].reshape(n, 8)
    xs, ys = moved[:, 0::2], moved[:, 1::2]
    out = np.empty_like(labels, dtype=np.float32)
    out[:, 0] = labels[:, 0]
    out[:, 1], out[:, 2], out[:, 3], out[:, 4] = xs.min(1), ys.min(1), xs.max(1), ys.max(1)
    return out


def box_candidates(before_xyxy: np.ndarray, after_xyxy: np.ndarray, *,
                   min_side: float = MIN_BOX_SIDE_PX, min_area_kept: float = MIN_AREA_KEPT,
                   max_aspect: float = MAX_ASPECT_RATIO, eps: float = 1e-16) -> np.ndarray:
    """Boolean mask of boxes worth keeping after a transform (official ``box_candidates``):
    both sides > ``min_side`` px, area > ``min_area_kept`` of the area before (already
    scaled by the transform's gain), aspect ratio < ``max_aspect``."""
    w1, h1 = before_xyxy[:, 2] - before_xyxy[:, 0], before_xyxy[:, 3] - before_xyxy[:, 1]
    w2, h2 = after_xyxy[:, 2] - after_xyxy[:, 0], after_xyxy[:, 3] - after_xyxy[:, 1]
    aspect = np.maximum(w2 / (h2 + eps), h2 / (w2 + eps))
    return ((w2 > min_side) & (h2 > min_side) & (w2 * h2 / (w1 * h1 + eps) > min_area_kept)
            & (aspect < max_aspect))


def random_affine(image: np.ndarray, labels: np.ndarray, rng: np.random.Generator, *,
                  degrees: float = 0.0, translate: float = 0.1, scale: float = 0.5,
                  shear: float = 0.0, border: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random rotation/scale/shear/translation (official ``random_perspective`` without the
    perspective term). The output is ``(H + 2 border, W + 2 border)`` (a negative border crops:
    mosaics use ``-size // 2`` to return from their 2x canvas to ``size``). Boxes are moved
    with the image, clipped to it and filtered by :func:`box_candidates`."""
    out_h, out_w = image.shape[0] + 2 * border, image.shape[1] + 2 * border
    matrix, gain = affine_matrix(rng, image.shape[:2], (out_h, out_w), degrees, translate, scale, shear)
    warped = cv2.warpAffine(image, matrix[:2], dsize=(out_w, out_h),
                            borderValue=(PAD_VALUE, PAD_VALUE, PAD_VALUE))
    if len(labels) == 0:
        return warped, labels.copy()
    moved = clip_labels(transform_boxes(labels, matrix), out_w, out_h)
    keep = box_candidates(labels[:, 1:] * gain, moved[:, 1:])
    return warped, moved[keep]


def mosaic4(items: Sequence[tuple[np.ndarray, np.ndarray]], size: int,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Place 4 images around a random centre of a ``2 size`` canvas (top-left, top-right,
    bottom-left, bottom-right), cropping what falls outside; labels are moved and clipped.
    Returns the ``(2 size, 2 size)`` canvas (crop it back with :func:`random_affine` and
    ``border = -size // 2``). Images are expected resized to a long side of ``size``."""
    if len(items) != 4:
        raise ValueError(f"mosaic4 needs 4 images, got {len(items)}")
    s = size
    xc, yc = (int(rng.uniform(s / 2, 1.5 * s)) for _ in range(2))
    canvas = np.full((2 * s, 2 * s, 3), PAD_VALUE, dtype=np.uint8)
    all_labels = []
    for k, (image, labels) in enumerate(items):
        h, w = image.shape[:2]
        if k == 0:    # top-left: image's bottom-right corner at the centre
            x1a, y1a, x2a, y2a = max(xc - w, 0), max(yc - h, 0), xc, yc
            x1b, y1b, x2b, y2b = w - (x2a - x1a), h - (y2a - y1a), w, h
        elif k == 1:  # top-right
            x1a, y1a, x2a, y2a = xc, max(yc - h, 0), min(xc + w, 2 * s), yc
            x1b, y1b, x2b, y2b = 0, h - (y2a - y1a), min(w, x2a - x1a), h
        elif k == 2:  # bottom-left
            x1a, y1a, x2a, y2a = max(xc - w, 0), yc, xc, min(2 * s, yc + h)
            x1b, y1b, x2b, y2b = w - (x2a - x1a), 0, w, min(y2a - y1a, h)
        else:         # bottom-right
            x1a, y1a, x2a, y2a = xc, yc, min(xc + w, 2 * s), min(2 * s, yc + h)
            x1b, y1b, x2b, y2b = 0, 0, min(w, x2a - x1a), min(y2a - y1a, h)
        canvas[y1a:y2a, x1a:x2a] = image[y1b:y2b, x1b:x2b]
        all_labels.append(scale_labels(labels, 1.0, 1.0, x1a - x1b, y1a - y1b))
    merged = np.concatenate(all_labels, 0) if all_labels else np.zeros((0, 5), np.float32)
    return canvas, _drop_empty(clip_labels(merged, 2 * s, 2 * s))


def mosaic9(items: Sequence[tuple[np.ndarray, np.ndarray]], size: int,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A 3x3 mosaic: 9 images in the cells of a ``3 size`` canvas, each pushed toward the
    canvas centre, then a random ``2 size`` window of it. Same output contract as
    :func:`mosaic4`."""
    if len(items) != 9:
        raise ValueError(f"mosaic9 needs 9 images, got {len(items)}")
    s = size
    canvas = np.full((3 * s, 3 * s, 3), PAD_VALUE, dtype=np.uint8)
    all_labels = []
    for k, (image, labels) in enumerate(items):
        row, col = divmod(k, 3)
        h, w = image.shape[:2]
        # align toward the centre cell: left column right-aligned, right column left-aligned
        x0 = col * s + (s - w if col == 0 else (s - w) // 2 if col == 1 else 0)
        y0 = row * s + (s - h if row == 0 else (s - h) // 2 if row == 1 else 0)
        canvas[y0:y0 + h, x0:x0 + w] = image
        all_labels.append(scale_labels(labels, 1.0, 1.0, x0, y0))
    ox, oy = (int(rng.uniform(0, s)) for _ in range(2))
    window = np.ascontiguousarray(canvas[oy:oy + 2 * s, ox:ox + 2 * s])
    merged = scale_labels(np.concatenate(all_labels, 0), 1.0, 1.0, -ox, -oy)
    return window, _drop_empty(clip_labels(merged, 2 * s, 2 * s))


def _drop_empty(labels: np.ndarray) -> np.ndarray:
    keep = (labels[:, 3] > labels[:, 1]) & (labels[:, 4] > labels[:, 2])
    return labels[keep]


def mixup(first: tuple[np.ndarray, np.ndarray], second: tuple[np.ndarray, np.ndarray],
          rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Blend two same-size images with ratio ``r ~ Beta(8, 8)``; keep both label sets."""
    (image1, labels1), (image2, labels2) = first, second
    if image1.shape != image2.shape:
        raise ValueError(f"mixup needs equal image shapes, got {image1.shape} and {image2.shape}")
    r = rng.beta(MIXUP_BETA, MIXUP_BETA)
    blended = (image1.astype(np.float32) * r + image2.astype(np.float32) * (1 - r)).astype(np.uint8)
    return blended, np.concatenate((labels1, labels2), 0)
