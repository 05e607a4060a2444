"""Label assignment of YOLOv7: centre prior, anchor-ratio filter, then simOTA.

Source: Wang et al., "YOLOv7", CVPR 2023, sec. 4.2 (lead-guided, coarse-to-fine assignment),
Ge et al., "YOLOX", 2021, sec. 2.2 (simOTA), and the official training code
(WongKinYiu/yolov7 ``utils/loss.py``: ``find_3_positive``, ``find_5_positive``,
``ComputeLossOTA.build_targets``). Steps, for each head level with stride ``s`` and anchors:

1. **Anchor-ratio filter**: a target of size ``(w, h)`` may use anchor ``(aw, ah)`` when
   ``max(w/aw, aw/w, h/ah, ah/h) < anchor_t`` (4.0).
2. **Centre prior**: the cell holding the target centre plus neighbour cells. With offset
   ``g = 0.5`` (lead heads) the two nearest neighbours (left or right, up or down, whichever
   side of the cell the centre lies on); with ``g = 1.0`` (auxiliary heads) all four.
   Neighbours beyond the map edge are not added (official rule ``gxy > 1``).
3. The union of the candidates of all targets of an image (each prediction once), decoded to
   boxes, is scored for every target by ``cost = BCE(sqrt(p_cls * p_obj), one_hot(class)) +
   3 * (-log(IoU + 1e-8))``.
4. **Dynamic k** per target: ``k = max(1, int(sum of the top-10 IoUs))``; the target takes its
   ``k`` lowest-cost candidates.
5. A candidate taken by several targets goes to the target of lowest cost.

Difference from the official code: candidates are de-duplicated per image (the official code
keeps one copy per generating target, so one prediction can be assigned twice); the official
``IAuxDetect`` loss sums the top-20 IoUs, ours uses ``topk`` for both heads (10 by default).

Everything is vectorised over the batch (images padded to the largest candidate/target count)
and runs on the device of its inputs; no gradients flow through the assignment.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .boxes import batched_pairwise_iou, cxcywh_to_xyxy

# Columns of a target row.
TGT_IMAGE, TGT_CLASS, TGT_CX, TGT_CY, TGT_W, TGT_H = range(6)

LEAD_NEIGHBOUR_OFFSET = 0.5
"""Centre-prior offset of lead heads: the centre cell plus the 2 nearest neighbours."""
AUX_NEIGHBOUR_OFFSET = 1.0
"""Centre-prior offset of auxiliary heads: the centre cell plus all 4 neighbours."""
IOU_LOG_EPS = 1e-8
PROB_EPS = 1e-7

_NEIGHBOURS = ((0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0))
"""Centre, left, up, right, down, as multiples of the offset ``g`` subtracted from the centre."""


@dataclass(frozen=True)
class LevelMatches:
    """Predictions of one level assigned to targets; all ``(K,)`` int64 on the input's device:
    ``image``, ``anchor``, ``grid_y``, ``grid_x`` index the raw map ``(B, na, ny, nx, no)``;
    ``target`` is the row of the assigned target in the ``targets`` tensor."""

    image: torch.Tensor
    anchor: torch.Tensor
    grid_y: torch.Tensor
    grid_x: torch.Tensor
    target: torch.Tensor

    def __len__(self) -> int:
        return int(self.image.numel())

    @staticmethod
    def empty(device: torch.device) -> LevelMatches:
        z = torch.zeros(0, dtype=torch.int64, device=device)
        return LevelMatches(z, z, z, z, z)


def candidate_cells(targets: torch.Tensor, grid_hw: tuple[int, int], anchors_px: torch.Tensor,
                    stride: float, neighbour_offset: float, anchor_t: float) -> LevelMatches:
    """Centre-prior candidates of one level (steps 1-2 of the module docstring).

    Args:
        targets: ``(N, 6)`` rows ``image, class, cx, cy, w, h`` in input pixels.
        grid_hw: ``(ny, nx)`` of the level's map.
        anchors_px: ``(na, 2)`` anchor sizes in pixels.
        stride: the level's stride in pixels.
        neighbour_offset: ``g`` (0.5 lead, 1.0 auxiliary).
        anchor_t: anchor/target size-ratio limit.

    Returns:
        :class:`LevelMatches` of every (target, anchor, cell) candidate (duplicates possible
        across targets), ``target`` naming the generating target row.
    """
    ny, nx = grid_hw
    device = targets.device
    gxy = targets[:, TGT_CX:TGT_CY + 1] / stride
    gwh = targets[:, TGT_W:TGT_H + 1] / stride
    anchors = anchors_px.to(device=device, dtype=gxy.dtype) / stride
    ratio = gwh[None] / anchors[:, None]                                   # (na, N, 2)
    fits = torch.maximum(ratio, 1 / ratio).amax(-1) < anchor_t              # (na, N)
    anchor_idx, target_idx = fits.nonzero(as_tuple=True)
    centre = gxy[target_idx]                                               # (M, 2)
    inverse = torch.tensor([nx, ny], device=device, dtype=centre.dtype) - centre
    g = neighbour_offset
    low_side = (centre % 1 < g) & (centre > 1)                            # left, up
    high_side = (inverse % 1 < g) & (inverse > 1)                          # right, down
    use = torch.stack((torch.ones_like(low_side[:, 0]), low_side[:, 0], low_side[:, 1],
                       high_side[:, 0], high_side[:, 1]))                  # (5, M)
    which, member = use.nonzero(as_tuple=True)
    offsets = torch.tensor(_NEIGHBOURS, device=device, dtype=centre.dtype) * g
    cell = (centre[member] - offsets[which]).floor().long()
    return LevelMatches(
        image=targets[target_idx[member], TGT_IMAGE].long(),
        anchor=anchor_idx[member],
        grid_y=cell[:, 1].clamp(0, ny - 1),
        grid_x=cell[:, 0].clamp(0, nx - 1),
        target=target_idx[member],
    )


def _pad_groups(group: torch.Tensor, num_groups: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """For items sorted by ``group``: (group index, position within the group, max size)."""
    counts = torch.bincount(group, minlength=num_groups)
    starts = torch.cumsum(counts, 0) - counts
    position = torch.arange(group.numel(), device=group.device) - starts[group]
    return group, position, int(counts.max()) if group.numel() else 0


def simota_assign(raw_maps: list[torch.Tensor], targets: torch.Tensor, anchors_px: torch.Tensor,
                  strides: torch.Tensor, *, neighbour_offset: float = LEAD_NEIGHBOUR_OFFSET,
                  anchor_t: float = 4.0, topk: int = 10,
                  iou_cost_weight: float = 3.0,
                  class_member: torch.Tensor | None = None) -> list[LevelMatches]:
    """Assign predictions to targets (module docstring, steps 1-5).

    Args:
        raw_maps: per level ``(B, na, ny, nx, 5 + nc)`` raw head outputs (logits) whose
            decoded boxes and scores drive the assignment (for auxiliary heads: the lead maps).
        targets: ``(N, 6)`` ``image, class, cx, cy, w, h`` in input pixels.
        anchors_px: ``(nl, na, 2)`` anchors in pixels. strides: ``(nl,)`` pixels.
        neighbour_offset, anchor_t, topk, iou_cost_weight: see the module docstring.
        class_member: ``(nc + G, nc)`` membership of each class id, for coarse labels
            (:mod:`training.merge`): a target of class ``nc + g`` is one of the classes of row
            ``nc + g``, and its class cost is that of "one of them, none of the others":
            ``sum_{k not in S} -log(1 - p_k) - log(1 - prod_{k in S} (1 - p_k))``, which for one
            class is the BCE cost above. ``None`` when there are no coarse labels.

    Returns:
        One :class:`LevelMatches` per level; each prediction appears at most once overall.
    """
    device = targets.device
    num_levels = len(raw_maps)
    if targets.shape[0] == 0:
        return [LevelMatches.empty(device) for _ in range(num_levels)]
    with torch.no_grad():
        candidates = _unique_candidates(raw_maps, targets, anchors_px, strides, neighbour_offset,
                                        anchor_t)
        if candidates is None:
            return [LevelMatches.empty(device) for _ in range(num_levels)]
        level, cand, boxes, probs = candidates
        chosen_cand, chosen_target = _match(boxes, probs, cand.image, targets, raw_maps[0].shape[0],
                                            topk, iou_cost_weight, class_member)
        out = []
        for i in range(num_levels):
            keep = level[chosen_cand] == i
            idx = chosen_cand[keep]
            out.append(LevelMatches(cand.image[idx], cand.anchor[idx], cand.grid_y[idx],
                                    cand.grid_x[idx], chosen_target[keep]))
        return out


def _unique_candidates(raw_maps, targets, anchors_px, strides, neighbour_offset, anchor_t):
    """All levels' candidates, each prediction once, sorted by image; with decoded boxes
    ``(K, 4)`` xyxy pixels and class probabilities ``sqrt(p_cls * p_obj)`` ``(K, nc)``."""
    keys, level_ids, parts = [], [], []
    for i, pi in enumerate(raw_maps):
        bsz, na, ny, nx, _ = pi.shape
        c = candidate_cells(targets, (ny, nx), anchors_px[i], float(strides[i]), neighbour_offset,
                            anchor_t)
        flat = ((c.image * na + c.anchor) * ny + c.grid_y) * nx + c.grid_x
        flat = torch.unique(flat)                                         # sorted, one per prediction
        parts.append(_decode_selected(pi, flat, anchors_px[i], float(strides[i])))
        keys.append(flat)
        level_ids.append(torch.full_like(flat, i))
    if sum(k.numel() for k in keys) == 0:
        return None
    flat = torch.cat(keys)
    level = torch.cat(level_ids)
    image = torch.cat([p[0] for p in parts])
    order = torch.sort(image, stable=True).indices                        # group by image
    cand = LevelMatches(image=image[order], anchor=torch.cat([p[1] for p in parts])[order],
                        grid_y=torch.cat([p[2] for p in parts])[order],
                        grid_x=torch.cat([p[3] for p in parts])[order],
                        target=torch.full_like(flat, -1))  # no generating target: shared
    del flat
    boxes = torch.cat([p[4] for p in parts])[order]
    probs = torch.cat([p[5] for p in parts])[order]
    return level[order], cand, boxes, probs


def _decode_selected(pi: torch.Tensor, flat: torch.Tensor, anchors_px: torch.Tensor, stride: float):
    """Decode the predictions at flat indices of ``pi`` (official box decoding, pixels)."""
    bsz, na, ny, nx, no = pi.shape
    gx = flat % nx
    gy = (flat // nx) % ny
    a = (flat // (nx * ny)) % na
    b = flat // (nx * ny * na)
    rows = pi.reshape(-1, no)[flat].float()
    y = rows.sigmoid()
    grid = torch.stack((gx, gy), 1).to(y.dtype)
    xy = (y[:, 0:2] * 2 - 0.5 + grid) * stride
    wh = (y[:, 2:4] * 2) ** 2 * anchors_px.to(y.device, y.dtype)[a]
    boxes = cxcywh_to_xyxy(torch.cat((xy, wh), 1))
    probs = (y[:, 5:] * y[:, 4:5]).sqrt()
    return b, a, gy, gx, boxes, probs


def _coarse_class_cost(log_not: torch.Tensor, member: torch.Tensor) -> torch.Tensor:
    """``(B, G, C)`` class cost of coarse targets (see :func:`simota_assign`): ``log_not (B, C,
    nc)`` is ``log(1 - p)``, ``member (B, G, nc)`` each target's member classes."""
    in_group = torch.einsum("bgk,bck->bgc", member.to(log_not.dtype), log_not).clamp(max=-1e-12)
    others = log_not.sum(-1)[:, None, :] - in_group
    return -others - torch.log(-torch.expm1(in_group))


def _match(boxes: torch.Tensor, probs: torch.Tensor, cand_image: torch.Tensor, targets: torch.Tensor,
           batch_size: int, topk: int, iou_cost_weight: float,
           class_member: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """simOTA on per-image padded tensors; returns (candidate indices, target rows)."""
    device = boxes.device
    nc = probs.shape[1]
    # candidates padded to (B, C)
    _, c_pos, c_max = _pad_groups(cand_image, batch_size)
    cand_index = torch.full((batch_size, c_max), -1, dtype=torch.long, device=device)
    cand_index[cand_image, c_pos] = torch.arange(cand_image.numel(), device=device)
    cand_valid = cand_index >= 0
    safe_cand = cand_index.clamp(min=0)
    cand_boxes = boxes[safe_cand]                                         # (B, C, 4)
    cand_probs = probs[safe_cand].clamp(PROB_EPS, 1 - PROB_EPS)           # (B, C, nc)
    # targets padded to (B, G)
    t_image = targets[:, TGT_IMAGE].long()
    t_order = torch.sort(t_image, stable=True).indices
    _, t_pos, g_max = _pad_groups(t_image[t_order], batch_size)
    target_row = torch.full((batch_size, g_max), -1, dtype=torch.long, device=device)
    target_row[t_image[t_order], t_pos] = t_order
    target_valid = target_row >= 0
    safe_row = target_row.clamp(min=0)
    gt_boxes = cxcywh_to_xyxy(targets[safe_row][..., TGT_CX:TGT_H + 1].float())  # (B, G, 4)
    gt_class = targets[safe_row][..., TGT_CLASS].long().clamp(0, nc - 1)      # (B, G)

    valid = target_valid[:, :, None] & cand_valid[:, None, :]              # (B, G, C)
    iou = batched_pairwise_iou(gt_boxes, cand_boxes).masked_fill(~valid, 0.0)
    # BCE(p, one_hot(c)) summed over classes = sum_k -log(1 - p_k) + log(1 - p_c) - log(p_c)
    log_not = torch.log1p(-cand_probs)                                     # (B, C, nc)
    gather_idx = gt_class[:, :, None].expand(-1, -1, c_max)
    p_true = torch.gather(cand_probs.transpose(1, 2), 1, gather_idx)        # (B, G, C)
    cls_cost = -log_not.sum(-1)[:, None, :] + torch.log1p(-p_true) - torch.log(p_true)
    raw_class = targets[safe_row][..., TGT_CLASS].long()
    if class_member is not None and bool((raw_class >= nc).any()):
        cls_cost = torch.where((raw_class >= nc)[..., None],
                               _coarse_class_cost(log_not, class_member.to(device)[raw_class]), cls_cost)
    cost = cls_cost + iou_cost_weight * -torch.log(iou + IOU_LOG_EPS)
    cost = cost.masked_fill(~valid, float("inf"))

    k_max = min(topk, c_max)
    dynamic_k = torch.topk(iou, k_max, dim=2).values.sum(-1).int().clamp(min=1)   # (B, G)
    lowest = torch.topk(cost, k_max, dim=2, largest=False)
    take = (torch.arange(k_max, device=device) < dynamic_k[..., None]) & torch.isfinite(lowest.values)
    matching = torch.zeros_like(cost, dtype=torch.bool)
    matching.scatter_(2, lowest.indices, take)
    # a candidate wanted by several targets goes to the cheapest of all targets
    contested = matching.sum(1) > 1                                        # (B, C)
    if contested.any():
        cheapest = cost.argmin(1)                                          # (B, C)
        winner = torch.nn.functional.one_hot(cheapest, g_max).transpose(1, 2).bool()
        matching = torch.where(contested[:, None, :], winner, matching)
    matched = matching.any(1) & cand_valid                                 # (B, C)
    matched_gt = matching.float().argmax(1)                                # (B, C)
    image_idx, pos_idx = matched.nonzero(as_tuple=True)
    return cand_index[image_idx, pos_idx], target_row[image_idx, matched_gt[image_idx, pos_idx]]
