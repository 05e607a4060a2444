"""The YOLOv7 training loss: simOTA-assigned CIoU box loss, BCE objectness against IoU, BCE
classification, over lead heads (and auxiliary heads for P6 models).

Source: the YOLOv7 paper's training recipe as implemented in the official ``ComputeLossOTA`` /
``ComputeLossAuxOTA`` (WongKinYiu/yolov7 ``utils/loss.py``). For level ``i`` with assigned
predictions ``P_i`` (see :mod:`training.assign`):

* box: ``mean over P_i of (1 - CIoU(pred, target))`` in grid units, the prediction decoded as
  ``xy = 2 sigmoid(t_xy) - 0.5`` (relative to its cell), ``wh = (2 sigmoid(t_wh))^2 * anchor``;
* objectness: ``BCE(t_obj, target)`` averaged over the whole map, the target being the
  (detached, clamped at 0) CIoU at assigned predictions and 0 elsewhere;
* class: ``BCE(t_cls, one_hot)`` averaged over ``P_i`` and classes (only when ``nc > 1``).

Level weights multiply the objectness terms: ``[4, 1, 0.4]`` (P5) and ``[4, 1, 0.25, 0.06]``
(P6; the official list ``[4, 1, 0.25, 0.06, 0.02]`` truncated to four levels). Auxiliary heads
(P6 training form) are assigned from the lead predictions with the wider centre prior
(coarse-to-fine lead guidance, YOLOv7 paper sec. 4.2) and enter with weight
``aux_weight = 0.25``. The three sums are multiplied by the gains of
:meth:`training.config.Hyperparameters.loss_gains` (box 0.05, class 0.3 nc/80, objectness
0.7 (img/640)^2 for P5) and the total by the batch size, as the official loss does (the
gradient is a sum over images, which the nominal-batch LR is tuned for).

No device is hard-coded: all tensors follow the predictions. The loss is computed in float32
even under autocast.
"""

from __future__ import annotations

from collections.abc import Sequence

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from detector.heads import COL_CLS0, COL_OBJ, Detect, IAuxDetect

from .assign import (
    AUX_NEIGHBOUR_OFFSET,
    LEAD_NEIGHBOUR_OFFSET,
    TGT_CLASS,
    TGT_CX,
    TGT_H,
    TGT_W,
    LevelMatches,
    simota_assign,
)
from .boxes import complete_iou
from .config import Hyperparameters

LEVEL_WEIGHTS = {3: (4.0, 1.0, 0.4), 4: (4.0, 1.0, 0.25, 0.06), 5: (4.0, 1.0, 0.25, 0.06, 0.02)}
"""Objectness weight per level, by number of levels (official ``balance``)."""


@dataclass(frozen=True)
class LossOutput:
    """``total``: scalar to back-propagate (already multiplied by the batch size);
    ``box``, ``obj``, ``cls``: the gained per-image components (detached floats)."""

    total: torch.Tensor
    box: float
    obj: float
    cls: float

    @property
    def per_image(self) -> float:
        return self.box + self.obj + self.cls


class YOLOv7Loss:
    """Loss of a YOLOv7 training-form model (module docstring).

    Args:
        head: the model's head (``model.head``); its anchors and strides are read at every
            call, so anchors changed by autoanchor are picked up.
        hyp: the recipe (gains, anchor_t, topk, aux_weight).
        img_size: training image size in pixels (scales the objectness gain).
        class_groups: coarse labels of the data (``source.class_groups``, :mod:`training.merge`):
            targets of class id ``nc + g`` are one of ``class_groups[g]`` (see :meth:`_class_loss`).

    Call: ``loss(raw_maps, targets)`` with the model's train-mode outputs (``nl`` lead maps,
    then ``nl`` auxiliary maps for IAuxDetect; lead maps only is accepted too, e.g. for
    validation), ``targets (N, 6)`` ``image, class, cx, cy, w, h`` in input pixels and, for
    merged sources, ``unlabelled (B, nc)`` bool: the classes each image's source does not label
    (see :meth:`_objectness_weight`). Maps may be bf16/fp16 (autocast); the loss is fp32.
    """

    def __init__(self, head: Detect, hyp: Hyperparameters, img_size: int,
                 class_groups: Sequence[Sequence[int]] = ()) -> None:
        self.head = head
        self.hyp = hyp
        self.nl, self.na, self.nc = head.nl, head.na, head.nc
        if self.nl not in LEVEL_WEIGHTS:
            raise ValueError(f"no level weights for a {self.nl}-level head")
        self.level_weights = LEVEL_WEIGHTS[self.nl]
        self.box_gain, self.cls_gain, self.obj_gain = hyp.loss_gains(self.nc, img_size, self.nl)
        self.has_aux = isinstance(head, IAuxDetect)
        self._class_member = _class_membership(self.nc, class_groups)
        self._unlabelled: torch.Tensor | None = None
        self._ignored: torch.Tensor | int = 0  # a tensor sum: no device sync on the hot path

    def _assign(self, lead_maps: list[torch.Tensor], targets: torch.Tensor,
                neighbour_offset: float) -> list[LevelMatches]:
        return simota_assign(lead_maps, targets, self.head.anchor_grid.view(self.nl, self.na, 2),
                             self.head.stride, neighbour_offset=neighbour_offset,
                             anchor_t=self.hyp.anchor_t, topk=self.hyp.topk_iou,
                             iou_cost_weight=self.hyp.iou_cost_weight,
                             class_member=self._class_member)

    def __call__(self, raw_maps: list[torch.Tensor], targets: torch.Tensor,
                 unlabelled: torch.Tensor | None = None) -> LossOutput:
        if len(raw_maps) not in (self.nl, 2 * self.nl):
            raise ValueError(f"expected {self.nl} (lead) or {2 * self.nl} (lead + aux) maps, "
                             f"got {len(raw_maps)}")
        raw_maps = [m.float() for m in raw_maps]  # bf16/fp16 under autocast: the loss is fp32
        targets = targets.to(device=raw_maps[0].device, dtype=torch.float32)
        known = self.nc + (0 if self._class_member is None else self._class_member.shape[0] - self.nc)
        if targets.shape[0] and int(targets[:, TGT_CLASS].max()) >= known:
            raise ValueError(f"target class id {int(targets[:, TGT_CLASS].max())} >= {known}: the data has "
                             "coarse labels (class id nc + g); build the loss with "
                             "class_groups=source.class_groups")
        self._unlabelled = None
        if unlabelled is not None and self.hyp.unlabelled_ignore and bool(unlabelled.any()):
            self._unlabelled = unlabelled.to(device=raw_maps[0].device, dtype=torch.bool)
        lead = raw_maps[: self.nl]
        heads = [(lead, self._assign(lead, targets, LEAD_NEIGHBOUR_OFFSET), 1.0)]
        if len(raw_maps) == 2 * self.nl:
            heads.append((raw_maps[self.nl:], self._assign(lead, targets, AUX_NEIGHBOUR_OFFSET),
                          self.hyp.aux_weight))
        device = raw_maps[0].device
        box = torch.zeros((), device=device)
        obj = torch.zeros((), device=device)
        cls = torch.zeros((), device=device)
        for maps, matches, head_weight in heads:
            for i, (pi, m) in enumerate(zip(maps, matches)):
                lb, lo, lc = self._level_terms(pi, m, targets, i)
                box = box + head_weight * lb
                obj = obj + head_weight * self.level_weights[i] * lo
                cls = cls + head_weight * lc
        box, obj, cls = box * self.box_gain, obj * self.obj_gain, cls * self.cls_gain
        batch_size = raw_maps[0].shape[0]
        total = (box + obj + cls) * batch_size
        return LossOutput(total, float(box.detach()), float(obj.detach()), float(cls.detach()))

    def _level_terms(self, pi: torch.Tensor, m: LevelMatches, targets: torch.Tensor,
                     level: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        stride = self.head.stride[level]
        anchors_grid = self.head.anchor_grid.view(self.nl, self.na, 2)[level] / stride
        pi = pi.float()
        target_obj = torch.zeros(pi.shape[:4], device=pi.device, dtype=pi.dtype)
        box = torch.zeros((), device=pi.device)
        cls = torch.zeros((), device=pi.device)
        if len(m):
            ps = pi[m.image, m.anchor, m.grid_y, m.grid_x]
            pxy = ps[:, 0:2].sigmoid() * 2 - 0.5
            pwh = (ps[:, 2:4].sigmoid() * 2) ** 2 * anchors_grid[m.anchor]
            t = targets[m.target]
            cell = torch.stack((m.grid_x, m.grid_y), 1).to(pi.dtype)
            txy = t[:, TGT_CX:TGT_CX + 2] / stride - cell
            twh = t[:, TGT_W:TGT_H + 1] / stride
            ciou = complete_iou(torch.cat((pxy, pwh), 1), torch.cat((txy, twh), 1))
            box = (1.0 - ciou).mean()
            target_obj[m.image, m.anchor, m.grid_y, m.grid_x] = ciou.detach().clamp(min=0)
            if self.nc > 1:
                cls = self._class_loss(ps[:, COL_CLS0:], t[:, TGT_CLASS].long())
        weight = self._objectness_weight(pi, target_obj)
        obj = F.binary_cross_entropy_with_logits(pi[..., COL_OBJ], target_obj, weight=weight)
        return box, obj, cls

    def _class_loss(self, logits: torch.Tensor, class_id: torch.Tensor) -> torch.Tensor:
        """Mean BCE of ``logits (n, nc)`` against one-hot classes; a coarse label (class id
        ``nc + g``, :mod:`training.merge`) is taught as "one of its member classes S, none of the
        others": BCE towards 0 for ``k`` not in S, and ``-log(1 - prod_{k in S} (1 - p_k))`` (the
        probability that some member is present) in place of S's terms, so the model's own
        scores decide which member it is. For one member that is exactly the BCE of the class.
        Source: YOLO9000 (Redmon & Farhadi, CVPR 2017, sec. 3), a coarse label backpropagates no
        loss that picks a finer class."""
        coarse = class_id >= self.nc
        if self._class_member is None or not bool(coarse.any()):
            return F.binary_cross_entropy_with_logits(logits, F.one_hot(class_id, self.nc).to(logits.dtype))
        member = self._class_member.to(logits.device)[class_id].to(logits.dtype)   # (n, nc)
        negatives = (F.softplus(logits) * (1 - member)).sum()  # BCE towards 0 outside S
        plain = ~coarse
        positives = F.softplus(-logits[plain])[member[plain].bool()].sum()  # -log p_c
        in_group = (F.softplus(logits[coarse]) * member[coarse]).sum(-1).clamp(min=1e-12)
        positives = positives + -torch.log(-torch.expm1(-in_group)).sum()
        return (negatives + positives) / logits.numel()

    @property
    def ignored_cells(self) -> int:
        """Objectness terms skipped by the partial-label rule since construction (monitoring)."""
        return int(self._ignored)

    def _objectness_weight(self, pi: torch.Tensor, target_obj: torch.Tensor) -> torch.Tensor | None:
        """Partial labels: 0 at unassigned predictions that score an object of a class the image's
        source does not label above ``hyp.unlabelled_ignore_conf`` (those may be real, unlabelled
        objects: neither positive nor background), 1 elsewhere; ``None`` when nothing is
        ignored. The mean over the map is unchanged in form (ignored cells count as zeros).

        Source: Zhao et al., "Object Detection with a Unified Label Space from Multiple
        Datasets" (ECCV 2020), sec. 1 and 3: in a naive merge, a class one dataset annotates and
        another does not is foreground in the first and background in the second; they pair the
        partial annotations with pseudo labels for the missing classes. Here the pseudo labels
        are the model's own confident predictions of the missing classes, used in the
        conservative form, as *ignore* (neither positive nor negative), which is YOLOv3's rule
        for confident unassigned predictions (Redmon & Farhadi 2018, sec. 2.1).
        """
        if self._unlabelled is None:
            return None
        with torch.no_grad():
            scores = pi[..., COL_OBJ:COL_OBJ + 1].sigmoid() * pi[..., COL_CLS0:].sigmoid()
            mask = self._unlabelled[:, None, None, None, :]            # (B, 1, 1, 1, nc)
            unlabelled_score = torch.where(mask, scores, torch.zeros((), device=pi.device)).amax(-1)
            ignore = (unlabelled_score > self.hyp.unlabelled_ignore_conf) & (target_obj == 0)
            self._ignored = self._ignored + ignore.sum()
            return (~ignore).to(pi.dtype)


def _class_membership(nc: int, class_groups: Sequence[Sequence[int]]) -> torch.Tensor | None:
    """``(nc + G, nc)`` bool: row ``c < nc`` is class ``c`` alone, row ``nc + g`` the members of
    coarse label ``g``; ``None`` without coarse labels."""
    if not class_groups:
        return None
    member = torch.zeros((nc + len(class_groups), nc), dtype=torch.bool)
    member[torch.arange(nc), torch.arange(nc)] = True
    for g, classes in enumerate(class_groups):
        if not classes or not all(0 <= int(c) < nc for c in classes):
            raise ValueError(f"class group {g} {list(classes)}: members must be class ids in [0, {nc})")
        member[nc + g, [int(c) for c in classes]] = True
    return member
