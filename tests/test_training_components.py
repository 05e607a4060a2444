"""Autoanchor, optimizer groups and schedule, EMA, weight transfer, config validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from detector import create_model, load_model, save_model
from training.autoanchor import anchor_metrics, check_anchors, fit_anchors
from training.config import Hyperparameters, TrainConfig, load_hyperparameters, warmup_iterations
from training.datasets import Annotations, DetectionSource
from training.ema import ModelEMA
from training.errors import ConfigError
from training.optim import build_optimizer, cosine_factor, parameter_groups, step_settings
from training.transfer import freeze_layers, transfer_weights


# ----------------------------------------------------------------------------- autoanchor

def test_best_possible_recall_uses_the_ratio_rule():
    anchors = np.asarray([[10.0, 10.0], [40.0, 40.0]])
    # 15 px fits both anchors (1.5x, 2.7x); 35x50 fits only 40 (10 is 5x smaller than 50)
    assert anchor_metrics(np.asarray([[15.0, 15.0], [35.0, 50.0]]), anchors) == (1.0, pytest.approx(1.5))
    # 100 px is 2.5x the largest anchor (fits), 200 px is 5x (does not)
    bpr, _ = anchor_metrics(np.asarray([[100.0, 100.0], [200.0, 200.0]]), anchors)
    assert bpr == 0.5


class _BoxesSource(DetectionSource):
    """Blank 640x640 images whose labels have the given sizes."""

    def __init__(self, sizes):
        self.sizes = np.asarray(sizes, np.float32)
        self.names = ["thing"]

    def __len__(self):
        return len(self.sizes)

    def image_id(self, index):
        return str(index)

    def load_image(self, index):
        return np.zeros((640, 640, 3), np.uint8)

    def image_shape(self, index):
        return 640, 640

    def annotations(self, index):
        w, h = self.sizes[index]
        return Annotations(np.asarray([[0, 10, 10, 10 + w, 10 + h]], np.float32))


def test_autoanchor_keeps_fitting_anchors():
    model = create_model("yolov7-tiny", 1, training_head=True)
    before = model.head.anchor_grid.clone()
    rng = np.random.default_rng(0)
    report = check_anchors(model.head, _BoxesSource(rng.uniform(20, 200, (60, 2))), 640)
    assert report.bpr_before >= 0.98 and not report.changed
    assert torch.equal(model.head.anchor_grid, before)


def test_autoanchor_refits_and_stores_anchors_when_bpr_is_low():
    # long thin objects (300 x 12 px) fit none of the COCO anchors (ratio rule x4)
    rng = np.random.default_rng(1)
    sizes = np.column_stack([rng.uniform(250, 350, 80), rng.uniform(10, 14, 80)])
    model = create_model("yolov7-tiny", 1, training_head=True)
    report = check_anchors(model.head, _BoxesSource(sizes), 640, generations=200)
    assert report.bpr_before < 0.5
    assert report.changed and report.bpr_after >= 0.98
    head = model.head
    new = head.anchor_grid.view(3, 3, 2)
    np.testing.assert_allclose(new.numpy(), np.asarray(report.anchors_after), rtol=1e-6)
    torch.testing.assert_close(head.anchors, new / head.stride.view(-1, 1, 1))
    areas = new.reshape(-1, 2).prod(1)
    assert torch.all(areas[1:] >= areas[:-1])  # smallest anchors on the finest level


def test_fit_anchors_is_sorted_and_covers_clusters():
    rng = np.random.default_rng(0)
    wh = np.concatenate([rng.normal(20, 1, (50, 2)), rng.normal(100, 3, (50, 2)), rng.normal(300, 5, (50, 2))])
    anchors = fit_anchors(wh, 3, rng, generations=100)
    assert np.all(np.diff(anchors.prod(1)) > 0)
    np.testing.assert_allclose(anchors[:, 0], [20, 100, 300], rtol=0.25)


# ------------------------------------------------------------------------------- optimizer

def test_parameter_groups_cover_every_parameter_once():
    model = create_model("yolov7-tiny", 2, training_head=True)
    no_decay, decay, biases = parameter_groups(model)
    ids = [id(p) for p in no_decay + decay + biases]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(names[id(p)].endswith(".weight") and p.ndim == 4 for p in decay)
    assert all(names[id(p)].endswith(".bias") for p in biases)
    assert all(".bn." in names[id(p)] or "implicit" in names[id(p)] for p in no_decay)


def test_optimizer_groups_settings():
    model = create_model("yolov7-tiny", 2, training_head=True)
    optimizer = build_optimizer(model, Hyperparameters(), weight_decay=0.0005)
    assert [g.get("weight_decay", 0) for g in optimizer.param_groups] == [0, 0.0005, 0]
    assert all(g["nesterov"] and g["momentum"] == 0.937 for g in optimizer.param_groups)


@pytest.mark.parametrize(("batch", "accumulate", "decay"), [(64, 1, 0.0005), (16, 4, 0.0005), (12, 5, 0.0005 * 60 / 64),
                                                            (100, 1, 0.0005 * 100 / 64)])
def test_accumulation_and_weight_decay_follow_the_nominal_batch(batch, accumulate, decay):
    config = TrainConfig(data="x.yaml", batch_size=batch)
    assert config.gradient_accumulation == accumulate
    assert config.scaled_weight_decay == pytest.approx(decay)


@pytest.mark.parametrize(("nominal", "batch", "accumulate", "decay"),
                         [(16, 16, 1, 0.0005), (16, 8, 2, 0.0005), (16, 32, 1, 0.0005 * 2), (8, 3, 3, 0.0005 * 9 / 8)])
def test_a_smaller_nominal_batch_means_more_optimizer_steps(nominal, batch, accumulate, decay):
    hyp = Hyperparameters(nominal_batch=nominal)
    config = TrainConfig(data="x.yaml", batch_size=batch, hyp=hyp)
    assert config.gradient_accumulation == accumulate
    assert config.scaled_weight_decay == pytest.approx(decay)
    assert step_settings(10_000, 5, 300, hyp, warmup_iters=100, batch_size=batch).accumulate == accumulate


def test_nominal_batch_must_be_positive():
    with pytest.raises(ConfigError, match="nominal_batch"):
        Hyperparameters(nominal_batch=0)


def test_cosine_schedule_and_warmup():
    hyp = Hyperparameters()
    assert cosine_factor(0, 300, 0.1) == pytest.approx(1.0)
    assert cosine_factor(150, 300, 0.1) == pytest.approx(0.55)
    assert cosine_factor(300, 300, 0.1) == pytest.approx(0.1)
    start = step_settings(0, 0, 300, hyp, warmup_iters=100, batch_size=16)
    assert start.lrs == (0.0, 0.0, 0.1) and start.momentum == pytest.approx(0.8) and start.accumulate == 1
    middle = step_settings(50, 0, 300, hyp, warmup_iters=100, batch_size=16)
    assert middle.lrs[0] == pytest.approx(0.005) and middle.lrs[2] == pytest.approx(0.055)
    assert middle.momentum == pytest.approx(0.8685) and middle.accumulate == 2  # round(2.5) -> 2
    after = step_settings(500, 3, 300, hyp, warmup_iters=100, batch_size=16)
    lr = 0.01 * cosine_factor(3, 300, 0.1)
    assert after.lrs == pytest.approx((lr, lr, lr)) and after.momentum == 0.937 and after.accumulate == 4


@pytest.mark.parametrize(("nb", "epochs", "expected"),
                         [(100, 300, 1000), (500, 300, 1500), (21, 3, 21), (10, 300, 1000)])
def test_warmup_length(nb, epochs, expected):
    assert warmup_iterations(Hyperparameters(), nb, epochs) == expected


# ------------------------------------------------------------------------------------ EMA

def test_ema_decay_ramp_and_update():
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = ModelEMA(model, decay=0.9999, tau=2000)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)
    d1 = 0.9999 * (1 - math.exp(-1 / 2000))
    assert ema.model.weight.item() == pytest.approx(1 - d1)
    ema.update(model)
    d2 = 0.9999 * (1 - math.exp(-2 / 2000))
    assert ema.model.weight.item() == pytest.approx((1 - d1) * d2 + (1 - d2))
    assert not ema.model.weight.requires_grad


# ------------------------------------------------------------------------------- transfer

def test_transfer_from_another_class_count_reinitialises_the_head(tmp_path):
    torch.manual_seed(0)
    pretrained = create_model("yolov7-tiny", 80)              # deploy form, like a release
    path = save_model(pretrained, tmp_path / "coco.safetensors", half=False)
    source = load_model(path, fuse=False)
    target = create_model("yolov7-tiny", 2, training_head=True, names=["a", "b"])
    target.initialize_for_training()
    fresh_head = target.head.m[0].weight.clone()
    report = transfer_weights(target, source, "coco.safetensors")
    head = f"model.{target.head_index}."
    # 80 -> 2 classes: the head convs change shape; the implicit layers exist only in the
    # training form, so a deploy-form source has none
    assert sorted(report.shape_mismatch) == sorted(f"{head}m.{i}.{p}" for i in range(3) for p in ("weight", "bias"))
    assert sorted(report.not_in_source) == sorted(f"{head}{kind}.{i}.implicit" for kind in ("ia", "im")
                                                  for i in range(3))
    assert report.unused_source == []
    everything = set(target.state_dict())
    assert set(report.transferred) | set(report.reinitialised) == everything
    assert not set(report.transferred) & set(report.reinitialised)
    assert torch.equal(target.head.m[0].weight, fresh_head)
    body = "model.0.conv.weight"
    assert torch.equal(target.state_dict()[body], source.state_dict()[body])
    assert torch.equal(target.head.anchor_grid, source.head.anchor_grid)
    assert "re-initialised" in report.summary()


def test_transfer_maps_the_p6_head_across_the_auxiliary_layers():
    torch.manual_seed(0)
    deploy = create_model("yolov7-w6", 80)
    target = create_model("yolov7-w6", 80, training_head=True)
    report = transfer_weights(target, deploy, "w6")
    assert report.unused_source == [] and report.shape_mismatch == {}
    head = f"model.{target.head_index}."
    assert f"{head}m.0.weight" in report.transferred
    assert torch.equal(target.head.m[0].weight, deploy.head.m[0].weight)
    not_in = set(report.not_in_source)
    assert {f"{head}m2.{i}.weight" for i in range(4)} <= not_in
    assert all(k.startswith(head) or int(k.split(".")[1]) >= deploy.head_index for k in not_in)


def test_transfer_refuses_another_architecture():
    with pytest.raises(ConfigError, match="yolov7-tiny"):
        transfer_weights(create_model("yolov7-tiny", 1, training_head=True), create_model("yolov7", 1), "x")


def test_freeze_layers():
    model = create_model("yolov7-tiny", 1, training_head=True)
    frozen = freeze_layers(model, 10)
    assert frozen and all(int(n.split(".")[1]) < 10 for n in frozen)
    no_decay, decay, biases = parameter_groups(model)
    assert len(no_decay + decay + biases) == sum(p.requires_grad for p in model.parameters())
    with pytest.raises(ConfigError):
        freeze_layers(model, model.head_index)


# --------------------------------------------------------------------------------- config

def test_config_validation_and_hyp_files(tmp_path):
    with pytest.raises(ConfigError, match="img_size"):
        TrainConfig(data="x.yaml", img_size=100)
    with pytest.raises(ConfigError, match="4096"):  # issue #11 item 6: bounded before allocation
        TrainConfig(data="x.yaml", img_size=65536)
    with pytest.raises(ConfigError, match="mixup"):
        Hyperparameters(mixup=1.5)
    path = tmp_path / "hyp.yaml"
    path.write_text("preset: tiny\nlr0: 0.02\n")
    hyp = load_hyperparameters(path)
    assert hyp.lr0 == 0.02 and hyp.cls == 0.5
    path.write_text("learning_rate: 0.02\n")
    with pytest.raises(ConfigError, match="learning_rate"):
        load_hyperparameters(path)
    config = TrainConfig(data="x.yaml", hyp=load_hyperparameters("tiny"))
    assert TrainConfig.from_dict(config.to_dict()) == config
