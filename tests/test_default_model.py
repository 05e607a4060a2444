"""The bundled default model ``yolov7-tiny-traffic``: resolved by name with no network, the
default of the CLI and the GUI, shipped as package data, metadata complete (data, splits,
command, hardware, precision, held-out AP per class and per source), and it finds the cars of
the bundled clip and of the held-out traffic cameras."""

from __future__ import annotations

import json
import socket
import tomllib
from fnmatch import fnmatch

import cv2
import numpy as np
import pytest

from app.cli import DEFAULT_WEIGHTS
from app.gui.settings import GuiSettings
from detector import DEFAULT_MODEL, CheckpointError, Detector, load_model
from detector.bundled import BUNDLED_MODELS, bundled_model_path
from detector.weights_format import read_weights_metadata
from shared_data import REPO_ROOT, shared_data_config
from training.datasets import load_data_config
from training.evaluate import evaluate

CLASSES = ["person", "bicycle", "car", "motorcycle", "bus", "truck"]
SAMPLE_CLIP = REPO_ROOT / "assets" / "samples" / "traffic_street_fixedcam.mp4"
CAR_AP50_FLOOR = 0.75
"""Issue 10's bar: car AP@0.5 on the held-out atl + manaus valid + test splits, at the model's own
size (the shipped soup: 0.755 there at 736 px; 0.791 on the test splits alone)."""


@pytest.fixture()
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access in a test that must work offline")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def metadata():
    return read_weights_metadata(bundled_model_path(DEFAULT_MODEL))


def test_the_default_everywhere_is_the_bundled_model():
    assert DEFAULT_MODEL == "yolov7-tiny-traffic" == DEFAULT_WEIGHTS == GuiSettings().weights
    assert BUNDLED_MODELS[DEFAULT_MODEL] == "yolov7-tiny-traffic.safetensors"


def test_loads_by_name_without_network(no_network):
    detector = Detector.from_weights(DEFAULT_MODEL, device="cpu")
    assert detector.names == CLASSES and detector.img_size == 736  # chosen on the valid splits


def test_a_missing_bundled_file_is_a_clear_error(monkeypatch, tmp_path):
    import assets

    monkeypatch.setattr(assets, "ASSETS_DIR", tmp_path)
    with pytest.raises(CheckpointError, match="bundled model 'yolov7-tiny-traffic' is not in this installation"):
        load_model(DEFAULT_MODEL)


def test_the_wheel_ships_the_model_its_notice_and_the_sample():
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "assets*" in config["packages"]["find"]["include"]
    patterns = config["package-data"]["assets"]
    for shipped in ("models/yolov7-tiny-traffic.safetensors", "models/NOTICE.md",
                    "samples/traffic_street_fixedcam.mp4", "samples/NOTICE.md"):
        assert any(fnmatch(shipped, p) for p in patterns), shipped
        assert (REPO_ROOT / "assets" / shipped).is_file()
    for research_only in ("models/yolov7-tiny-cars.safetensors", "models/yolov7-tiny-pets09-person.safetensors"):
        assert not any(fnmatch(research_only, p) for p in patterns)
    notice = (REPO_ROOT / "assets" / "models" / "NOTICE.md").read_text()
    for attribution in ("finalproject-bqip3", "tamaturgo", "farzad", "CC BY 4.0", "COCO"):
        assert attribution in notice


def test_metadata_records_data_command_hardware_precision(metadata):
    provenance = metadata["provenance"]
    assert metadata["arch"] == "yolov7-tiny" and metadata["names"] == CLASSES
    stages = provenance["stages"]                             # 416 px from scratch, then 640 px x3
    assert [s["stage"] for s in stages] == [1, 2, 3, 4] and stages[0]["weights"] is None
    assert all(s["command"].startswith("yolov7-track train --data assets/configs/traffic.yaml") for s in stages)
    assert provenance["stage"] == 5 and provenance["command"].startswith("yolov7-track soup ")
    ingredients = provenance["soup"]["ingredients"]         # stage 5: two finetunes, averaged
    assert len(ingredients) == 2 and "Wortsman" in provenance["soup"]["method"]
    for ingredient in ingredients:
        assert ingredient["path"] in provenance["command"] and len(ingredient["sha256"]) == 64
        run = ingredient["provenance"]
        assert run["command"].startswith("yolov7-track train --data assets/configs/traffic_domain.yaml")
        assert run["weights"] == stages[3]["command"].split("--out ")[1].split()[0] + "/best.safetensors"
        assert run["precision"] == "bf16" and run["hardware"] and 1 <= run["epochs_completed"] <= run["epochs"]
        assert set(run["data"]["sources"]) == {"atl_highway_v12", "manaus_traffic_v4", "manaus_traffic_v5"}
    assert provenance["precision"] == "bf16" and provenance["hardware"]
    sources = provenance["data"]["sources"]
    assert set(sources) == {"atl_highway_v12", "manaus_traffic_v4", "manaus_traffic_v5",
                            "farzad_topview_vehicle", "coco128"}          # licensed data only
    assert all(s["train"] for s in sources.values())
    assert "person" not in sources["atl_highway_v12"]["labels"]
    assert not [v for v in json.dumps(provenance).split('"') if v.startswith(("/work", "/root", "/home"))]


def test_metadata_records_held_out_ap_per_class_and_source(metadata):
    held_out = metadata["metrics"]["held_out"]["results"]
    assert {"all", "atl_highway_v12", "manaus_traffic_v4", "manaus_traffic_v5",
            "farzad_topview_vehicle", "quantum_cctv101"} <= set(held_out)
    assert held_out["all"]["per_class"]["car"]["AP@0.5"] >= CAR_AP50_FLOOR
    assert held_out["all"]["per_class"]["car"]["boxes"] == 289 + 289 + 172 + 273 + \
        held_out["manaus_traffic_v5"]["per_class"]["car"]["boxes"]


def test_held_out_car_ap_is_reproduced_from_the_file(metadata):
    model = load_model(DEFAULT_MODEL)
    data = load_data_config(shared_data_config("traffic_heldout.yaml"))
    result = evaluate(model, data.val, img_size=int(model.img_size), batch_size=8)
    car = next(c for c in result.per_class if c.name == "car")
    recorded = metadata["metrics"]["held_out"]["results"]["all"]["per_class"]["car"]["AP@0.5"]
    assert car.ap50 == pytest.approx(recorded, abs=0.01) and car.ap50 >= CAR_AP50_FLOOR


def _sample_frames(indices):
    capture = cv2.VideoCapture(str(SAMPLE_CLIP))
    frames, index = {}, 0
    while index <= max(indices):
        ok, frame = capture.read()
        assert ok, f"{SAMPLE_CLIP} ended at frame {index}"
        if index in indices:
            frames[index] = frame
        index += 1
    capture.release()
    return [frames[i] for i in indices]


def test_finds_cars_on_the_bundled_clip(no_network):
    detector = Detector.from_weights(DEFAULT_MODEL, device="cpu")
    per_frame = []
    for frame in _sample_frames([120, 200, 360, 450, 600]):  # 2-4 cars in view in each
        detections = detector(frame)
        cars = detections[detections.data["class_name"] == "car"]
        per_frame.append(len(cars))
        assert cars.xyxy.dtype == np.float32
        assert (cars.xyxy[:, 2] <= frame.shape[1]).all() and (cars.xyxy[:, 3] <= frame.shape[0]).all()
    # frame 600 shows only two small cars far down the road, half hidden (the model gives the
    # nearer one 0.22, under the default 0.25); the other four have cars close by
    assert min(per_frame[:4]) >= 2 and sum(per_frame) >= 12, per_frame
