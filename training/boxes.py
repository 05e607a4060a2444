"""Box geometry for the loss and the assigner (torch, any device, float tensors).

Boxes are ``(..., 4)``: ``xyxy`` = ``x1, y1, x2, y2``; ``cxcywh`` = centre and size. Units
are whatever the caller uses (pixels or grid cells), the same for both operands.
"""

from __future__ import annotations

import math

import torch

EPS = 1e-7
"""Added to areas and denominators (the value of the official ``bbox_iou``)."""


def cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    half = boxes[..., 2:4] / 2
    return torch.cat((boxes[..., 0:2] - half, boxes[..., 0:2] + half), -1)


def xyxy_to_cxcywh(boxes: torch.Tensor) -> torch.Tensor:
    return torch.cat(((boxes[..., 0:2] + boxes[..., 2:4]) / 2, boxes[..., 2:4] - boxes[..., 0:2]), -1)


def batched_pairwise_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """IoU of every pair: ``(B, N, 4)`` x ``(B, M, 4)`` xyxy -> ``(B, N, M)`` in [0, 1]."""
    lt = torch.maximum(boxes1[:, :, None, :2], boxes2[:, None, :, :2])
    rb = torch.minimum(boxes1[:, :, None, 2:], boxes2[:, None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area1 = (boxes1[..., 2:] - boxes1[..., :2]).clamp(min=0).prod(-1)
    area2 = (boxes2[..., 2:] - boxes2[..., :2]).clamp(min=0).prod(-1)
    return inter / (area1[:, :, None] + area2[:, None, :] - inter + EPS)


def complete_iou(pred_cxcywh: torch.Tensor, target_cxcywh: torch.Tensor) -> torch.Tensor:
    """Complete IoU of matching rows, ``(N, 4)`` x ``(N, 4)`` -> ``(N,)`` in [-1.5, 1].

    Zheng et al., "Distance-IoU Loss", AAAI 2020, eq. (10)-(11):
    ``CIoU = IoU - rho^2 / c^2 - alpha * v`` with ``rho`` the centre distance, ``c`` the
    diagonal of the smallest enclosing box, ``v = 4 / pi^2 * (atan(w_t / h_t) - atan(w / h))^2``
    and ``alpha = v / ((1 - IoU) + v)``, which is treated as a constant in back-propagation
    (as in the paper's implementation and the official YOLOv7 ``bbox_iou``).
    """
    p1, p2 = pred_cxcywh[:, :2] - pred_cxcywh[:, 2:] / 2, pred_cxcywh[:, :2] + pred_cxcywh[:, 2:] / 2
    t1, t2 = target_cxcywh[:, :2] - target_cxcywh[:, 2:] / 2, target_cxcywh[:, :2] + target_cxcywh[:, 2:] / 2
    inter = (torch.minimum(p2, t2) - torch.maximum(p1, t1)).clamp(min=0).prod(-1)
    wp, hp = pred_cxcywh[:, 2], pred_cxcywh[:, 3] + EPS
    wt, ht = target_cxcywh[:, 2], target_cxcywh[:, 3] + EPS
    union = wp * hp + wt * ht - inter + EPS
    iou = inter / union
    enclosing = torch.maximum(p2, t2) - torch.minimum(p1, t1)
    diagonal_sq = enclosing.pow(2).sum(-1) + EPS
    centre_dist_sq = (target_cxcywh[:, :2] - pred_cxcywh[:, :2]).pow(2).sum(-1)
    v = (4 / math.pi ** 2) * (torch.atan(wt / ht) - torch.atan(wp / hp)).pow(2)
    with torch.no_grad():
        alpha = v / (v - iou + (1 + EPS))
    return iou - (centre_dist_sq / diagonal_sq + alpha * v)
