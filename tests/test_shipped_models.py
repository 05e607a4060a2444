"""The models in ``assets/models/`` (trained by ``yolov7-track train``, see the README):
metadata complete and machine-independent, the recorded mAP reproduced from the file, and the
model run through :class:`detector.Detector` on real frames finds the labelled objects."""

from __future__ import annotations

import json

import numpy as np
import pytest

from detector import Detector, load_model
from detector.weights_format import read_weights_metadata
from shared_data import REPO_ROOT, shared_data_config
from training.datasets import LABEL_X1, LABEL_Y2, load_data_config
from training.evaluate import evaluate

MODELS_DIR = REPO_ROOT / "assets" / "models"
SHIPPED = {
    # file name: (data YAML, class names, the mAP@0.5 the issue asks for or None (report only),
    #             the share of labelled boxes found at conf 0.25 on 12 validation frames: a floor
    #             a little under what the shipped file gives)
    "yolov7-tiny-cars.safetensors": ("kaggle_cars.yaml", ["car"], 0.95, 0.9),
    "yolov7-tiny-pets09-person.safetensors": ("pets09_person.yaml", ["person"], None, 0.75),
}


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(len(a), len(b))`` IoU of xyxy boxes."""
    tl = np.maximum(a[:, None, :2], b[None, :, :2])
    br = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(br - tl, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def _strings(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, str):
        yield value


@pytest.fixture(scope="module", params=sorted(SHIPPED))
def shipped(request):
    name = request.param
    path = MODELS_DIR / name
    assert path.is_file(), f"{path} is missing; the README's training commands produce it"
    return name, path, read_weights_metadata(path)


def test_metadata_records_data_split_epochs_command_and_map(shipped):
    name, _, meta = shipped
    data_yaml, names, _, _ = SHIPPED[name]
    assert meta["arch"] == "yolov7-tiny" and meta["names"] == names and meta["dtype"] == "float16"
    provenance = meta["provenance"]
    assert provenance["weights"] is None  # from scratch: no pretrained weights exist here
    assert provenance["command"].startswith("yolov7-track train ")
    assert f"--data assets/configs/{data_yaml}" in provenance["command"]
    assert provenance["data"]["data_yaml"] == f"assets/configs/{data_yaml}"
    assert provenance["epochs_completed"] <= provenance["epochs"]
    assert meta["img_size"] == provenance["img_size"]
    assert 0 < meta["metrics"]["mAP@0.5:0.95"] < meta["metrics"]["mAP@0.5"] <= 1
    # nothing tied to the machine that trained it
    assert not [s for s in _strings(meta) if s.startswith("/")], json.dumps(meta["provenance"]["data"])


def test_cars_split_is_the_articles():
    meta = read_weights_metadata(MODELS_DIR / "yolov7-tiny-cars.safetensors")
    split = meta["provenance"]["data"]["split"]
    assert (split["seed"], split["val_fraction"], split["background_images"]) == (42, 0.2, 100)
    assert (split["train_images"], split["val_images"], split["val_annotated"]) == (324, 131, 99)
    assert meta["metrics"]["val_images"] == 131


def test_pets_split_is_by_time():
    meta = read_weights_metadata(MODELS_DIR / "yolov7-tiny-pets09-person.safetensors")
    split = meta["provenance"]["data"]["split"]
    assert split["train_frames"] == [1, 400] and split["val_frames"] == [401, 795]
    assert meta["metrics"]["val_images"] == 395


def test_recorded_map_is_reproduced_from_the_file(shipped):
    """Evaluating the fp16 file (loaded as fp32) on the validation split gives the mAP stored in
    it (measured on the fp32 EMA weights at the end of training) and meets the issue's bar."""
    name, path, meta = shipped
    data_yaml, _, required, _ = SHIPPED[name]
    model = load_model(path, device="cpu")
    data = load_data_config(shared_data_config(data_yaml))
    result = evaluate(model, data.val, img_size=meta["img_size"], batch_size=8)
    assert result.map50 == pytest.approx(meta["metrics"]["mAP@0.5"], abs=0.01)
    assert result.map50_95 == pytest.approx(meta["metrics"]["mAP@0.5:0.95"], abs=0.01)
    if required is not None:
        assert result.map50 >= required


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_detector_finds_the_labelled_objects_on_validation_frames(name):
    """Through the application's :class:`Detector` (default conf 0.25, original-frame pixels):
    most labelled boxes of 12 validation frames are found at IoU >= 0.5, with the model's
    class name."""
    data_yaml, names, _, floor = SHIPPED[name]
    detector = Detector(load_model(MODELS_DIR / name, device="cpu"), device="cpu")
    val = load_data_config(shared_data_config(data_yaml)).val
    annotated = [i for i in range(len(val)) if len(val.annotations(i).labels)]
    picks = [annotated[k] for k in np.linspace(0, len(annotated) - 1, 12).round().astype(int)]
    found = total = 0
    for index in picks:
        image, annotations = val.load(index)
        detections = detector.detect_batch([image])[0]
        assert detections.xyxy.dtype == np.float32
        assert {detections.data["class_name"][k] for k in range(len(detections))} <= set(names)
        truth = annotations.labels[:, LABEL_X1:LABEL_Y2 + 1]
        total += len(truth)
        if len(detections):
            found += int((_box_iou(truth, detections.xyxy).max(axis=1) >= 0.5).sum())
    print(f"{name}: {found} of {total} labelled boxes found")
    assert found >= floor * total, f"{found} of {total} labelled boxes found"
