"""YOLOv7 loss: CIoU, gains, level weights, auxiliary weight, known values on hand-made maps."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from detector import create_model
from training.boxes import complete_iou
from training.config import Hyperparameters
from training.loss import LEVEL_WEIGHTS, YOLOv7Loss

LOG2 = math.log(2.0)


@pytest.mark.parametrize(
    ("pred", "target", "expected"),
    [
        # identical boxes: IoU 1, no penalty
        ((5.0, 5.0, 4.0, 2.0), (5.0, 5.0, 4.0, 2.0), 1.0),
        # same centre and aspect, half the size: IoU 0.25, no distance or aspect penalty
        ((5.0, 5.0, 2.0, 1.0), (5.0, 5.0, 4.0, 2.0), 0.25),
        # disjoint unit squares 2 apart (edge gap 1): IoU 0, rho^2 = 4, c^2 = 3^2 + 1^2
        ((0.5, 0.5, 1.0, 1.0), (2.5, 0.5, 1.0, 1.0), -4.0 / 10.0),
    ],
)
def test_complete_iou_known_values(pred, target, expected):
    got = complete_iou(torch.tensor([pred], dtype=torch.float64), torch.tensor([target], dtype=torch.float64))
    assert got.item() == pytest.approx(expected, abs=1e-6)


def test_complete_iou_aspect_term():
    # same centre, pred 2x2 vs target 4x1: IoU = 2 / (4 + 4 - 2); c^2 = 4^2 + 2^2, rho = 0
    pred = torch.tensor([[0.0, 0.0, 2.0, 2.0]], dtype=torch.float64)
    target = torch.tensor([[0.0, 0.0, 4.0, 1.0]], dtype=torch.float64)
    iou = 2.0 / 6.0
    v = 4 / math.pi ** 2 * (math.atan(4.0) - math.atan(1.0)) ** 2
    alpha = v / (1 - iou + v)
    assert complete_iou(pred, target).item() == pytest.approx(iou - alpha * v, abs=1e-6)


@pytest.mark.parametrize(
    ("nc", "img_size", "levels", "expected"),
    [
        (80, 640, 3, (0.05, 0.3, 0.7)),
        (1, 640, 3, (0.05, 0.3 / 80, 0.7)),
        (2, 320, 3, (0.05, 0.3 * 2 / 80, 0.7 / 4)),
        (80, 1280, 4, (0.05 * 0.75, 0.3 * 0.75, 0.7 * 4 * 0.75)),
    ],
)
def test_loss_gains(nc, img_size, levels, expected):
    assert Hyperparameters().loss_gains(nc, img_size, levels) == pytest.approx(expected)


def test_level_weights_are_the_recipe():
    assert LEVEL_WEIGHTS[3] == (4.0, 1.0, 0.4)
    assert LEVEL_WEIGHTS[4] == (4.0, 1.0, 0.25, 0.06)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return create_model("yolov7-tiny", 3, training_head=True)


def _zero_maps(model, batch: int, size: int) -> list[torch.Tensor]:
    head = model.head
    return [torch.zeros(batch, head.na, size // int(s), size // int(s), head.no, requires_grad=True)
            for s in head.stride.tolist()]


def test_no_targets_only_objectness_with_logits_zero(tiny):
    # every objectness logit 0 against target 0: BCE = log 2 on each level
    size, batch = 128, 2
    loss = YOLOv7Loss(tiny.head, Hyperparameters(), size)(_zero_maps(tiny, batch, size), torch.zeros(0, 6))
    obj_gain = 0.7 * (size / 640) ** 2
    assert loss.box == 0.0 and loss.cls == 0.0
    assert loss.obj == pytest.approx(LOG2 * sum(LEVEL_WEIGHTS[3]) * obj_gain, rel=1e-6)
    assert loss.total.item() == pytest.approx(loss.obj * batch, rel=1e-6)


def test_auxiliary_heads_weigh_a_quarter():
    torch.manual_seed(0)
    w6 = create_model("yolov7-w6", 2, training_head=True)
    size, batch = 256, 1
    maps = [torch.zeros(batch, 3, size // int(s), size // int(s), 7) for s in w6.head.stride.tolist()]
    loss_fn = YOLOv7Loss(w6.head, Hyperparameters(), size)
    lead_only = loss_fn(maps, torch.zeros(0, 6))
    with_aux = loss_fn(maps + [m.clone() for m in maps], torch.zeros(0, 6))
    assert with_aux.obj == pytest.approx(lead_only.obj * 1.25, rel=1e-6)
    obj_gain = 0.7 * (size / 640) ** 2 * 3 / 4
    assert lead_only.obj == pytest.approx(LOG2 * sum(LEVEL_WEIGHTS[4]) * obj_gain, rel=1e-6)


def _one_target_maps(model, size, box_logits, obj_logit=0.0, cls_logits=(0.0, 0.0, 0.0)):
    maps = [torch.zeros(1, 3, size // int(s), size // int(s), 8) for s in model.head.stride.tolist()]
    for m in maps:
        m[..., 0:4] = torch.tensor(box_logits)
        m[..., 4] = obj_logit
        m[..., 5:] = torch.tensor(cls_logits)
    return [m.requires_grad_() for m in maps]


def test_one_target_known_loss(tiny):
    """Every prediction decodes to its cell's centre with the anchor's size (logits 0 ->
    sigmoid 0.5 -> xy = cell + 0.5, wh = anchor). A target near anchor 0 of level 0 in cell
    (4, 5) of the 8 px grid: the CIoU of each assigned prediction, hence every loss term, is
    computed here by hand from the decoded boxes."""
    size = 128
    head = tiny.head
    anchor = head.anchor_grid.view(3, 3, 2)[0, 0].tolist()  # 10 x 13 px at stride 8
    cx, cy = (5 + 0.5) * 8 + 1.5, (4 + 0.5) * 8 - 1.0
    anchor = [anchor[0] * 1.3, anchor[1] * 1.2]
    targets = torch.tensor([[0, 1, cx, cy, *anchor]])
    maps = _one_target_maps(tiny, size, (0.0, 0.0, 0.0, 0.0))
    loss_fn = YOLOv7Loss(head, Hyperparameters(), size)
    out = loss_fn(maps, targets)
    # the assignment takes at least the prediction of the target's own cell and anchor;
    # whatever else it takes, recompute the expected loss from the matches themselves
    matches = loss_fn._assign(maps, targets, 0.5)
    assert any(len(m) for m in matches)
    perfect = matches[0]
    hit = [(a, gy, gx) for a, gy, gx in zip(perfect.anchor.tolist(), perfect.grid_y.tolist(),
                                            perfect.grid_x.tolist())]
    assert (0, 4, 5) in hit
    box = obj = cls = 0.0
    for level, m in enumerate(matches):
        stride = float(head.stride[level])
        anchors = head.anchor_grid.view(3, 3, 2)[level] / stride
        target_obj = torch.zeros(maps[level].shape[:4])
        if len(m):
            pred = torch.stack([m.grid_x + 0.5, m.grid_y + 0.5], 1).double()  # centre in cells
            pwh = anchors[m.anchor].double()
            tgt = torch.tensor([[cx / stride, cy / stride, anchor[0] / stride, anchor[1] / stride]],
                               dtype=torch.float64).expand(len(m), 4)
            ciou = complete_iou(torch.cat((pred, pwh), 1), tgt)
            box += float((1 - ciou).mean())
            target_obj[m.image, m.anchor, m.grid_y, m.grid_x] = ciou.clamp(min=0).float()
            one_hot = F.one_hot(torch.full((len(m),), 1), 3).float()
            cls += float(F.binary_cross_entropy_with_logits(torch.zeros(len(m), 3), one_hot))
        obj += LEVEL_WEIGHTS[3][level] * float(F.binary_cross_entropy_with_logits(
            torch.zeros_like(target_obj), target_obj))
    gains = Hyperparameters().loss_gains(3, size, 3)
    assert box > 0.01
    assert out.box == pytest.approx(box * gains[0], rel=1e-5)
    assert out.obj == pytest.approx(obj * gains[2], rel=1e-5)
    assert out.cls == pytest.approx(cls * gains[1], rel=1e-5)
    assert cls == pytest.approx(LOG2 * sum(1 for m in matches if len(m)), rel=1e-6)


def test_loss_gradients_are_finite_and_reach_the_model(tiny):
    size = 96
    model = tiny.train()
    x = torch.rand(2, 3, size, size)
    targets = torch.tensor([[0, 0, 30, 40, 20, 30], [1, 2, 60, 50, 50, 40], [1, 1, 10, 10, 4, 4]])
    out = YOLOv7Loss(model.head, Hyperparameters(), size)(model(x), targets)
    model.zero_grad()
    out.total.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert out.box > 0 and out.obj > 0 and out.cls > 0


def test_single_class_has_no_class_loss():
    torch.manual_seed(0)
    model = create_model("yolov7-tiny", 1, training_head=True).train()
    out = YOLOv7Loss(model.head, Hyperparameters(), 64)(model(torch.rand(1, 3, 64, 64)),
                                                         torch.tensor([[0, 0, 32, 32, 20, 20]]))
    assert out.cls == 0.0 and out.box > 0


def test_wrong_number_of_maps_is_refused(tiny):
    with pytest.raises(ValueError, match="expected 3"):
        YOLOv7Loss(tiny.head, Hyperparameters(), 64)(_zero_maps(tiny, 1, 64)[:2], torch.zeros(0, 6))
