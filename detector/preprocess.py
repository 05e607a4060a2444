"""Letterbox resizing and model-input tensors, exactly as the official YOLOv7 ``detect.py``.

The official pipeline (WongKinYiu/yolov7 ``utils/datasets.py`` ``letterbox`` and ``detect.py``)
resizes a BGR frame so that it fits ``new_shape`` keeping its aspect ratio, pads it with grey
(114, 114, 114) to a multiple of the network stride (``auto=True``) or to the full target
(``auto=False``), flips BGR to RGB, moves channels first and divides by 255. Every rounding rule
below is the official one, so the model input is bit-identical to the official code's (checked
against ``../shared/fixtures/yolov7/inputs``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from detector.errors import DetectorError

logger = logging.getLogger(__name__)

LETTERBOX_COLOR_BGR: tuple[int, int, int] = (114, 114, 114)
"""Padding value of the official letterbox (``utils/datasets.py``); also used in training."""


class InvalidImageError(DetectorError, ValueError):
    """An image that is not a non-empty ``(H, W, 3)`` uint8 array."""


@dataclass(frozen=True)
class Letterbox:
    """One letterboxed image and how it was made.

    Attributes:
        image: ``(h, w, 3)`` uint8, **BGR** (same colour order as the input), resized and padded.
        ratio: ``(ratio_w, ratio_h)`` scale applied to the source image (equal unless
            ``scale_fill``).
        pad: ``(dw, dh)`` padding in pixels added on **each** side (left/right and top/bottom);
            a half-pixel value means the two sides differ by one pixel (see :func:`letterbox`).
        source_hw: ``(H, W)`` of the source image in pixels.
    """

    image: np.ndarray
    ratio: tuple[float, float]
    pad: tuple[float, float]
    source_hw: tuple[int, int]

    @property
    def shape_hw(self) -> tuple[int, int]:
        """``(h, w)`` of the letterboxed image in pixels."""
        return int(self.image.shape[0]), int(self.image.shape[1])


def validate_bgr_image(image: object, name: str = "image") -> np.ndarray:
    """Check that ``image`` is a non-empty ``(H, W, 3)`` uint8 numpy array and return it.

    Raises:
        InvalidImageError: wrong type, dtype, number of dimensions or channels, or zero size;
            the message names ``name`` and shows what was received.
    """
    if not isinstance(image, np.ndarray):
        raise InvalidImageError(
            f"{name} must be a numpy array (H, W, 3) uint8 BGR, got {type(image).__name__}"
        )
    if image.dtype != np.uint8:
        raise InvalidImageError(
            f"{name} must have dtype uint8 (0-255 BGR), got {image.dtype}; "
            "convert it with np.clip(a, 0, 255).astype(np.uint8) if it holds 0-255 values"
        )
    if image.ndim != 3 or image.shape[2] != 3:
        raise InvalidImageError(
            f"{name} must have shape (H, W, 3) (3 colour channels, BGR), got {image.shape}; "
            "convert grey or BGRA images with cv2.cvtColor first"
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InvalidImageError(f"{name} is empty: shape {image.shape}")
    return image


def _as_hw(new_shape: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(new_shape, (int, np.integer)):
        h = w = int(new_shape)
    else:
        if len(new_shape) != 2:
            raise ValueError(f"new_shape must be an int or (height, width), got {new_shape!r}")
        h, w = (int(v) for v in new_shape)
    if h <= 0 or w <= 0:
        raise ValueError(f"new_shape must be positive, got {new_shape!r}")
    return h, w


def letterbox(
    image: np.ndarray,
    new_shape: int | Sequence[int] = 640,
    stride: int = 32,
    auto: bool = True,
    scale_fill: bool = False,
    scaleup: bool = True,
    color: tuple[int, int, int] = LETTERBOX_COLOR_BGR,
) -> Letterbox:
    """Resize and pad ``image`` as the official YOLOv7 ``letterbox`` does, bit for bit.

    Algorithm (WongKinYiu/yolov7 ``utils/datasets.py``):

    1. ``r = min(new_h / h, new_w / w)`` (``min(r, 1)`` if not ``scaleup``);
       ``new_unpad = (round(w * r), round(h * r))`` with Python's round-half-to-even.
    2. padding ``dw, dh = new_w - new_unpad_w, new_h - new_unpad_h``; with ``auto`` only the
       remainder modulo ``stride`` is kept (the smallest stride-multiple canvas: a 1280x720 frame
       at 640 becomes 384x640); with ``scale_fill`` (and not ``auto``) the image is stretched to
       ``new_shape`` without padding. Then halved: ``dw /= 2``, ``dh /= 2``.
    3. ``cv2.resize(INTER_LINEAR)`` only if the size changes.
    4. borders ``top = round(dh - 0.1)``, ``bottom = round(dh + 0.1)`` (left/right alike), so an
       odd padding puts the extra pixel at the bottom/right; filled with ``color``.

    Args:
        image: ``(H, W, 3)`` uint8 BGR.
        new_shape: target size, an int (square) or ``(height, width)`` in pixels.
        stride: network stride the canvas must be a multiple of when ``auto`` (the model's largest
            stride: 32 for P5 models, 64 for P6).
        auto: pad only up to the next multiple of ``stride`` (rectangular inference).
        scale_fill: stretch to ``new_shape`` exactly (ignored when ``auto``).
        scaleup: allow enlarging; ``False`` only shrinks.
        color: BGR padding value.

    Returns:
        :class:`Letterbox` with the BGR image, ``ratio`` (w, h) and ``pad`` (dw, dh).

    Raises:
        InvalidImageError: ``image`` is not a non-empty (H, W, 3) uint8 array.
        ValueError: ``new_shape`` or ``stride`` is not positive.
    """
    validate_bgr_image(image)
    new_h, new_w = _as_hw(new_shape)
    if stride <= 0:
        raise ValueError(f"stride must be positive, got {stride}")
    h, w = image.shape[:2]

    r = min(new_h / h, new_w / w)
    if not scaleup:
        r = min(r, 1.0)
    ratio = (r, r)
    unpad_w, unpad_h = int(round(w * r)), int(round(h * r))
    dw, dh = new_w - unpad_w, new_h - unpad_h
    if auto:
        dw, dh = dw % stride, dh % stride
    elif scale_fill:
        dw, dh = 0, 0
        unpad_w, unpad_h = new_w, new_h
        ratio = (new_w / w, new_h / h)
    dw_half, dh_half = dw / 2, dh / 2

    if (w, h) != (unpad_w, unpad_h):
        image = cv2.resize(image, (unpad_w, unpad_h), interpolation=cv2.INTER_LINEAR)
    # The +-0.1 makes an odd padding split as (n, n + 1) despite round-half-to-even.
    top, bottom = int(round(dh_half - 0.1)), int(round(dh_half + 0.1))
    left, right = int(round(dw_half - 0.1)), int(round(dw_half + 0.1))
    if top or bottom or left or right:
        image = cv2.copyMakeBorder(
            image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=tuple(color)
        )
    elif not image.flags.c_contiguous:
        image = np.ascontiguousarray(image)
    return Letterbox(
        image=image,
        ratio=(float(ratio[0]), float(ratio[1])),
        pad=(float(dw_half), float(dh_half)),
        source_hw=(int(h), int(w)),
    )


def _as_image_list(images: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
    if isinstance(images, np.ndarray):
        if images.ndim == 4:
            return list(images)
        return [images]
    images = list(images)
    if not images:
        raise InvalidImageError("images is an empty sequence; pass at least one (H, W, 3) image")
    return images


def letterbox_batch(
    images: np.ndarray | Sequence[np.ndarray],
    new_shape: int | Sequence[int] = 640,
    stride: int = 32,
    auto: bool = True,
    scale_fill: bool = False,
    scaleup: bool = True,
    color: tuple[int, int, int] = LETTERBOX_COLOR_BGR,
) -> tuple[np.ndarray, list[Letterbox]]:
    """Letterbox several BGR images into one uint8 RGB batch ``(B, 3, h, w)``.

    Each image is letterboxed on its own (:func:`letterbox`). When their canvases differ in size
    (``auto=True`` with different aspect ratios), every canvas is placed at the **top-left** of a
    common canvas of the largest height and the largest width and the rest is filled with
    ``color``. Both sizes are multiples of ``stride``, so each image keeps the pixel offsets (and
    stride-grid alignment) it has when run alone; its :attr:`Letterbox.shape_hw` stays its own
    canvas size, which is what :func:`detector.postprocess.scale_boxes` needs to map boxes back.

    Args:
        images: one ``(H, W, 3)`` uint8 BGR image, a ``(B, H, W, 3)`` array, or a sequence of images
            (sizes may differ).
        new_shape, stride, auto, scale_fill, scaleup, color: as :func:`letterbox`.

    Returns:
        ``(batch, letterboxes)``: ``batch`` is a C-contiguous uint8 array ``(B, 3, h, w)``, **RGB**,
        channels first; ``letterboxes`` the per-image :class:`Letterbox` (BGR images).

    Raises:
        InvalidImageError: an empty sequence or an image that is not (H, W, 3) uint8.
    """
    image_list = _as_image_list(images)
    boxes = []
    for index, image in enumerate(image_list):
        validate_bgr_image(image, name=f"images[{index}]")
        boxes.append(letterbox(image, new_shape, stride, auto, scale_fill, scaleup, color))
    batch_h = max(lb.shape_hw[0] for lb in boxes)
    batch_w = max(lb.shape_hw[1] for lb in boxes)
    batch = np.empty((len(boxes), 3, batch_h, batch_w), dtype=np.uint8)
    for index, lb in enumerate(boxes):
        h, w = lb.shape_hw
        if (h, w) != (batch_h, batch_w):
            # colour is BGR; the batch is RGB, so channel c of the batch takes colour[2 - c]
            for channel in range(3):
                batch[index, channel] = color[2 - channel]
        # BGR -> RGB and HWC -> CHW: cv2.split gives contiguous planes, faster than a strided copy
        blue, green, red = cv2.split(lb.image)
        batch[index, 0, :h, :w] = red
        batch[index, 1, :h, :w] = green
        batch[index, 2, :h, :w] = blue
    return batch, boxes


def uint8_to_unit_float(batch_u8: np.ndarray) -> torch.Tensor:
    """Convert uint8 pixels to float32 in [0, 1], bit-identical to ``u8.astype(float32) / 255``.

    This is the official ``img = torch.from_numpy(img).float(); img /= 255.0``.

    Args:
        batch_u8: uint8 array of any shape (usually ``(B, 3, h, w)`` RGB).

    Returns:
        float32 CPU tensor of the same shape.
    """
    if batch_u8.dtype != np.uint8:
        raise InvalidImageError(f"expected a uint8 array, got {batch_u8.dtype}")
    # numpy, single-threaded: torch would spread this short op over its thread pool, which costs
    # more than it saves when the other cores are busy (measured in benchmarks/detector_latency.py)
    return torch.from_numpy(np.divide(batch_u8, np.float32(255), dtype=np.float32))


def to_input_tensor(
    images: np.ndarray | Sequence[np.ndarray],
    new_shape: int | Sequence[int] = 640,
    stride: int = 32,
    auto: bool = True,
    scale_fill: bool = False,
    scaleup: bool = True,
    color: tuple[int, int, int] = LETTERBOX_COLOR_BGR,
) -> tuple[torch.Tensor, list[Letterbox]]:
    """Letterbox BGR images and build the model input as the official ``detect.py`` does.

    Args:
        images: one ``(H, W, 3)`` uint8 **BGR** image, a ``(B, H, W, 3)`` array, or a sequence of
            images of possibly different sizes (batched as in :func:`letterbox_batch`).
        new_shape, stride, auto, scale_fill, scaleup, color: as :func:`letterbox`.

    Returns:
        ``(x, letterboxes)``: ``x`` float32 CPU tensor ``(B, 3, h, w)``, **RGB**, values in [0, 1]
        (``u8 / 255`` in float32, bit-identical to the official input); ``letterboxes`` the
        per-image :class:`Letterbox` records (ratio, pad, own canvas size, source size).

    Raises:
        InvalidImageError: an image that is not a non-empty (H, W, 3) uint8 array.
    """
    batch_u8, boxes = letterbox_batch(images, new_shape, stride, auto, scale_fill, scaleup, color)
    return uint8_to_unit_float(batch_u8), boxes
