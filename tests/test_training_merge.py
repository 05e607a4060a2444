"""Merged data sources (training/merge.py): class maps, drops, declared labels, errors that
name the source and class; the partial-label rule in the loss and in the evaluation; the
shipped traffic data description on the real shared data."""

from __future__ import annotations

import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from detector import create_model
from shared_data import shared_data_config
from training.config import Hyperparameters
from training.datasets import load_data_config
from training.errors import DatasetError
from training.evaluate import coco_ground_truth, coco_map
from training.loader import TrainingDataset, collate
from training.loss import YOLOv7Loss

TARGETS = ["person", "car", "truck"]


def _yolo_set(root: Path, split: str, rows_per_image: list[list[str]]) -> None:
    (root / split / "images").mkdir(parents=True)
    (root / split / "labels").mkdir(parents=True)
    for i, rows in enumerate(rows_per_image):
        cv2.imwrite(str(root / split / "images" / f"im{i}.jpg"), np.full((40, 80, 3), 90 + i, np.uint8))
        (root / split / "labels" / f"im{i}.txt").write_text("\n".join(rows) + "\n")


@pytest.fixture()
def two_sources(tmp_path):
    # "highway": classes [Car, Lorry, Sign]; labels cars and trucks, not persons; Sign dropped
    _yolo_set(tmp_path / "highway", "train", [["0 0.5 0.5 0.2 0.2", "1 0.2 0.3 0.1 0.2", "2 0.8 0.8 0.1 0.1"]])
    _yolo_set(tmp_path / "highway", "valid", [["0 0.4 0.4 0.2 0.2"]])
    # "street": classes [pedestrian, auto, dog] with `others: drop`; labels everything
    _yolo_set(tmp_path / "street", "train", [["0 0.5 0.5 0.1 0.4", "1 0.3 0.5 0.2 0.2", "2 0.7 0.7 0.1 0.1"],
                                             ["1 0.5 0.5 0.3 0.3"]])
    return tmp_path


def _write_yaml(root: Path, highway_extra: str = "", street_extra: str = "") -> Path:
    text = textwrap.dedent(f"""\
        format: merge
        names: [person, car, truck]
        sources:
          highway:
            path: highway
            names: [Car, Lorry, Sign]
            train: train/images
            val: valid/images
            classes: {{Car: car, Lorry: truck, Sign: null}}
            {highway_extra or 'labels: [car, truck]'}
          street:
            path: street
            names: [pedestrian, auto, dog]
            train: train/images
            classes: {{pedestrian: person, auto: car}}
            {street_extra or 'others: drop'}
        """)
    path = root / "data.yaml"
    path.write_text(text)
    return path


def test_merge_maps_renames_and_drops_classes(two_sources):
    data = load_data_config(_write_yaml(two_sources))
    assert data.names == TARGETS and len(data.train) == 3 and len(data.val) == 1
    assert data.train.part_ranges() == [("highway", 0, 1), ("street", 1, 3)]
    highway = data.train.annotations(0)
    assert sorted(highway.class_ids.tolist()) == [1, 2]              # Car -> car, Lorry -> truck, Sign dropped
    street = data.train.annotations(1)
    assert sorted(street.class_ids.tolist()) == [0, 1]               # pedestrian, auto; dog dropped
    np.testing.assert_allclose(street.boxes_xyxy[street.class_ids == 0][0], [36, 12, 44, 28], atol=1e-4)
    assert data.train.image_id(1) == "street/im0.jpg"
    assert data.description["sources"]["highway"]["labels"] == ["car", "truck"]
    assert data.description["sources"]["street"]["classes"] == {"pedestrian": "person", "auto": "car"}


def test_unlabelled_classes_follow_each_source_declaration(two_sources):
    data = load_data_config(_write_yaml(two_sources))
    assert data.train.unlabelled_classes(0) == frozenset({0})       # the highway set labels no person
    assert data.train.unlabelled_classes(1) == frozenset({2})       # default: the mapped targets
    assert data.val.unlabelled_classes(0) == frozenset({0})


def test_mosaic_items_carry_the_union_of_unlabelled_classes(two_sources):
    data = load_data_config(_write_yaml(two_sources))
    dataset = TrainingDataset(data.train, 64, Hyperparameters(mosaic=1.0, mixup=0.0), seed=0)
    dataset.set_epoch(0, mosaic=False)
    plain = collate([dataset[i] for i in range(3)])[3]
    assert plain.tolist() == [[True, False, False], [False, False, True], [False, False, True]]
    assert dataset.unlabelled_mask([1, 2, 0]).tolist() == [True, False, True]
    assert dataset.unlabelled_mask([1, 2]).tolist() == [False, False, True]


@pytest.mark.parametrize(("highway_extra", "message"), [
    ("labels: [car]", r"highway.*map boxes onto \['truck'\].*'labels'"),
    ("labels: [car, truck, bus]", r"highway.*labels \['bus'\] are not target classes"),
    ("others: keep", r"highway.*'others' may only be 'drop'"),
])
def test_malformed_labels_declarations_are_named(two_sources, highway_extra, message):
    with pytest.raises(DatasetError, match=message):
        load_data_config(_write_yaml(two_sources, highway_extra=highway_extra))


@pytest.mark.parametrize(("classes", "message"), [
    ("{Car: car, Lorry: truck}", r"source 'highway'.*\['Sign'\] have no entry in 'classes'"),
    ("{Car: car, Lorry: lorry, Sign: null}", r"source 'highway'.*'Lorry' maps to 'lorry', which is not a target"),
    ("{Car: car, Lorry: truck, Sign: null, Bus: bus}", r"source 'highway'.*\['Bus'\] are not classes of this source"),
    ("[car, truck]", r"source 'highway'.*'classes' must map each source class"),
])
def test_malformed_class_maps_are_named(two_sources, classes, message):
    path = _write_yaml(two_sources)
    path.write_text(path.read_text().replace("{Car: car, Lorry: truck, Sign: null}", classes))
    with pytest.raises(DatasetError, match=message):
        load_data_config(path)


def test_a_merge_needs_sources_and_both_splits(tmp_path, two_sources):
    path = _write_yaml(two_sources)
    text = path.read_text()
    path.write_text(text.replace("    val: valid/images\n", ""))
    with pytest.raises(DatasetError, match="no source gives a val split"):
        load_data_config(path)
    path.write_text("format: merge\nnames: [car]\nsources: []\n")
    with pytest.raises(DatasetError, match="'sources' must map source names"):
        load_data_config(path)


# ------------------------------------------------------------------------ loss and evaluation

def _confident_person_maps(model, size: int) -> list[torch.Tensor]:
    """Raw maps where one cell predicts a person with score ~0.9 and all else is quiet."""
    maps = []
    for level, stride in enumerate(model.head.stride.tolist()):
        n = size // int(stride)
        m = torch.full((1, model.head.na, n, n, 5 + len(TARGETS)), -8.0)
        if level == 1:
            m[0, 0, 1, 1, 4] = 4.0          # objectness
            m[0, 0, 1, 1, 5 + 0] = 4.0      # person
        maps.append(m)
    return maps


def test_partial_label_rule_skips_confident_unlabelled_predictions_only():
    size = 64
    model = create_model("yolov7-tiny", len(TARGETS), training_head=True)
    maps = _confident_person_maps(model, size)
    no_targets = torch.zeros((0, 6))
    person_unlabelled = torch.tensor([[True, False, False]])
    car_unlabelled = torch.tensor([[False, True, False]])
    ignoring = YOLOv7Loss(model.head, Hyperparameters(), size)
    naive = YOLOv7Loss(model.head, Hyperparameters(unlabelled_ignore=False), size)
    base = naive(maps, no_targets, person_unlabelled)
    skipped = ignoring(maps, no_targets, person_unlabelled)
    assert ignoring.ignored_cells == 1 and naive.ignored_cells == 0
    assert skipped.obj < 0.5 * base.obj                        # the person cell was the loss
    other = ignoring(maps, no_targets, car_unlabelled)         # persons are labelled: background
    assert other.obj == pytest.approx(base.obj) and ignoring.ignored_cells == 1
    assert ignoring(maps, no_targets).obj == pytest.approx(base.obj)


class _OneImage:
    """A minimal source for coco_ground_truth: one 100x100 image with one car."""

    names = TARGETS

    def __init__(self, unlabelled):
        self._unlabelled = frozenset(unlabelled)

    def __len__(self):
        return 1

    def image_shape(self, index):
        return (100, 100)

    def image_id(self, index):
        return "one.jpg"

    def annotations(self, index):
        from training.datasets import Annotations

        return Annotations(np.array([[1, 10, 10, 40, 40]], np.float32))

    def unlabelled_classes(self, index):
        return self._unlabelled


def test_evaluation_does_not_score_classes_a_source_leaves_unlabelled():
    results = [{"image_id": 1, "category_id": 2, "bbox": [10, 10, 30, 30], "score": 0.5},
               {"image_id": 1, "category_id": 1, "bbox": [60, 60, 20, 30], "score": 0.9}]  # a "person"
    _, _, per_class = coco_map(coco_ground_truth(_OneImage({0})), results, TARGETS)
    assert per_class[1].ap50 == pytest.approx(1.0)
    assert per_class[0].ap50 is None                               # nothing to score for person
    gt_labelled = coco_ground_truth(_OneImage(()))
    assert not [a for a in gt_labelled["annotations"] if a["iscrowd"]]


# ------------------------------------------------------------------- the shipped description

def test_traffic_description_on_the_shared_data():
    data = load_data_config(shared_data_config("traffic.yaml"))
    assert data.names == ["person", "bicycle", "car", "motorcycle", "bus", "truck"]
    ranges = {name: end - start for name, start, end in data.train.part_ranges()}
    assert ranges == {"atl_highway_v12": 3 * 234, "manaus_traffic_v4": 2 * 238, "manaus_traffic_v5": 2 * 21,
                      "farzad_topview_vehicle": 362, "coco128": 128}              # repeat: 3, 2, 2
    assert "quantum_cctv101" not in data.description["sources"]     # no licence: never trained on
    val_ranges = {name: end - start for name, start, end in data.val.part_ranges()}
    assert val_ranges == {"atl_highway_v12": 31, "manaus_traffic_v4": 56, "manaus_traffic_v5": 5,
                          "farzad_topview_vehicle": 90}
    atl = data.description["sources"]["atl_highway_v12"]
    assert "person" not in atl["labels"] and atl["classes"]["bike"] == "motorcycle"
    first_atl, first_coco = 0, sum(v for k, v in ranges.items() if k != "coco128")
    assert data.train.unlabelled_classes(first_atl) == {0, 1}        # persons, bicycles
    assert data.train.unlabelled_classes(first_coco) == frozenset()


# ------------------------------------------------------------------- coarse labels (class groups)

def test_a_list_of_targets_is_a_coarse_label_shared_by_sources(two_sources):
    path = _write_yaml(two_sources,
                       highway_extra="labels: [car, truck]",
                       street_extra="others: drop")
    text = path.read_text().replace("classes: {Car: car, Lorry: truck, Sign: null}",
                                    "classes: {Car: [car, truck], Lorry: [truck, car], Sign: null}")
    path.write_text(text)
    data = load_data_config(path)
    assert data.train.class_groups == ((1, 2),) == data.val.class_groups  # one group, order-free
    highway = data.train.annotations(0)
    assert sorted(highway.class_ids.tolist()) == [3, 3]                    # nc + 0, both boxes
    assert data.description["sources"]["highway"]["classes"]["Car"] == ["car", "truck"]
    assert data.description["class_groups"] == [["car", "truck"]]


@pytest.mark.parametrize(("classes", "message"), [
    ("{Car: [car, lorry], Lorry: truck, Sign: null}", "['lorry'] are not target classes"),
    ("{Car: [car], Lorry: truck, Sign: null}", "two or more target classes"),
])
def test_malformed_coarse_labels_are_named(two_sources, classes, message):
    path = _write_yaml(two_sources)
    path.write_text(path.read_text().replace("classes: {Car: car, Lorry: truck, Sign: null}", f"classes: {classes}"))
    with pytest.raises(DatasetError, match="source 'highway'") as info:
        load_data_config(path)
    assert message in str(info.value) and "'Car'" in str(info.value)


def test_coarse_label_members_must_be_declared_labelled(two_sources):
    path = _write_yaml(two_sources, highway_extra="labels: [car]")
    path.write_text(path.read_text().replace("classes: {Car: car, Lorry: truck, Sign: null}",
                                             "classes: {Car: [car, truck], Lorry: null, Sign: null}"))
    with pytest.raises(DatasetError, match=r"\['truck'\].*'labels'"):
        load_data_config(path)


def _class_logits(values):
    return torch.tensor([values], dtype=torch.float32, requires_grad=True)


def test_coarse_class_loss_is_bce_for_one_member_and_lets_the_model_pick_for_several():
    model = create_model("yolov7-tiny", len(TARGETS), training_head=True)
    # group 0 = (car,), group 1 = (car, truck); class ids 3 and 4
    loss = YOLOv7Loss(model.head, Hyperparameters(), 64, class_groups=[(1,), (1, 2)])
    logits = _class_logits([-3.0, 0.5, 2.0])
    plain = loss._class_loss(logits, torch.tensor([1]))
    single = loss._class_loss(logits, torch.tensor([3]))
    assert single.item() == pytest.approx(plain.item(), rel=1e-6)
    # a truck-looking prediction of a "car or truck" box: the naive map (car) pushes the truck
    # score down; the coarse label does not, and its loss is small
    coarse = loss._class_loss(logits, torch.tensor([4]))
    coarse.backward()
    truck_grad_coarse = logits.grad[0, 2].item()
    logits.grad = None
    loss._class_loss(logits, torch.tensor([1])).backward()
    assert logits.grad[0, 2].item() > 0.2                       # naive: lower the truck score
    assert abs(truck_grad_coarse) < 0.05 and coarse.item() < 0.5 * plain.item()
    # persons are not in the group: still taught as absent
    logits = _class_logits([3.0, 2.0, 2.0])
    loss._class_loss(logits, torch.tensor([4])).backward()
    assert logits.grad[0, 0].item() > 0.2


def test_coarse_assignment_cost_is_the_bce_cost_for_one_member():
    from training.assign import _coarse_class_cost

    p = torch.tensor([[[0.1, 0.7, 0.2], [0.3, 0.3, 0.6]]])                 # (B=1, C=2, nc=3)
    log_not = torch.log1p(-p)
    member = torch.tensor([[[0.0, 1.0, 0.0], [0.0, 1.0, 1.0]]])             # (B=1, G=2, nc)
    cost = _coarse_class_cost(log_not, member)                             # (1, 2, 2)
    bce = -(torch.log1p(-p).sum(-1) - torch.log1p(-p[..., 1]) + torch.log(p[..., 1]))
    assert torch.allclose(cost[0, 0], bce[0], atol=1e-6)
    either = -torch.log1p(-p[..., 0]) - torch.log(1 - (1 - p[..., 1]) * (1 - p[..., 2]))
    assert torch.allclose(cost[0, 1], either[0], atol=1e-6)


def test_training_step_with_coarse_labels_runs_and_evaluation_does_not_score_them(two_sources):
    path = _write_yaml(two_sources)
    path.write_text(path.read_text().replace("classes: {Car: car, Lorry: truck, Sign: null}",
                                             "classes: {Car: [car, truck], Lorry: truck, Sign: null}"))
    data = load_data_config(path)
    dataset = TrainingDataset(data.train, 64, Hyperparameters(mosaic=1.0), seed=0)
    images, targets, _, unlabelled = collate([dataset[i] for i in range(len(dataset))])
    assert (targets[:, 1] == 3).any()                                  # a coarse box survived
    model = create_model("yolov7-tiny", len(TARGETS), training_head=True).train()
    out = YOLOv7Loss(model.head, Hyperparameters(), 64, class_groups=data.train.class_groups)(
        model(images.float() / 255), targets, unlabelled)
    assert torch.isfinite(out.total) and out.cls > 0
    gt = coco_ground_truth(data.val)                                     # valid: one "Car" box
    boxes = [(a["category_id"], a["iscrowd"]) for a in gt["annotations"]]
    # crowd boxes: car and truck for the coarse box; person image-wide (highway leaves it unlabelled)
    assert sorted(boxes) == [(1, 1), (2, 1), (3, 1)]


def test_coarse_targets_without_class_groups_are_a_clear_error():
    model = create_model("yolov7-tiny", len(TARGETS), training_head=True)
    maps = _confident_person_maps(model, 64)
    targets = torch.tensor([[0, len(TARGETS), 32.0, 32.0, 10.0, 10.0]])
    with pytest.raises(ValueError, match="class_groups"):
        YOLOv7Loss(model.head, Hyperparameters(), 64)(maps, targets)
    out = YOLOv7Loss(model.head, Hyperparameters(), 64, class_groups=[(1, 2)])(maps, targets)
    assert torch.isfinite(out.total)


def _with_street_repeat(root: Path, value: str) -> Path:
    path = _write_yaml(root)
    path.write_text(path.read_text().replace("    others: drop", f"    others: drop\n    repeat: {value}"))
    return path


def test_repeat_cycles_a_sources_training_images_only(two_sources):
    data = load_data_config(_with_street_repeat(two_sources, "3"))
    assert data.train.part_ranges() == [("highway", 0, 1), ("street", 1, 7)]
    assert len(data.val) == 1                                        # the validation split never repeats
    ids = [data.train.image_id(i) for i in range(1, 7)]
    assert ids == ["street/im0.jpg", "street/im1.jpg"] * 3
    np.testing.assert_array_equal(data.train.annotations(6).class_ids, data.train.annotations(2).class_ids)
    np.testing.assert_array_equal(data.train.load_image(5), data.train.load_image(1))
    assert data.description["sources"]["street"]["repeat"] == 3
    assert "repeat" not in data.description["sources"]["highway"]
    with pytest.raises(IndexError):
        data.train.image_id(7)


@pytest.mark.parametrize("value", ["0", "1.5", "two", "true"])
def test_a_bad_repeat_is_named(two_sources, value):
    with pytest.raises(DatasetError, match=r"source 'street'.*'repeat' must be a whole number >= 1"):
        load_data_config(_with_street_repeat(two_sources, value))
