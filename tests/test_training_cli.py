"""``yolov7-track train`` / ``val`` entry points (``training.cli.train_main`` / ``val_main``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from shared_data import shared_path

from training.cli import train_main, val_main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    """A YOLO-layout data YAML over two coco128 images (listed by absolute path)."""
    folder = tmp_path_factory.mktemp("data")
    images = shared_path("data", "detection", "coco128", "images", "train2017")
    listing = folder / "images.txt"
    listing.write_text("".join(f"{images / name}\n" for name in ("000000000034.jpg", "000000000081.jpg")))
    names = yaml.safe_load((REPO / "assets" / "configs" / "coco128.yaml").read_text())["names"]
    config = folder / "data.yaml"
    config.write_text(yaml.safe_dump({"train": str(listing), "val": str(listing), "names": names}))
    return config


def _train_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["--data", str(data), "--model", "yolov7-tiny", "--epochs", "1", "--img-size", "64",
            "--batch-size", "2", "--device", "cpu", "--workers", "0", "--threads", "1",
            "--no-progress", "--out", str(out), *extra]


def test_train_then_val_then_resume_finished_run(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    assert train_main(_train_args(tiny_data, out, "--hyp", "tiny", "--close-mosaic", "0")) == 0
    printed = capsys.readouterr().out
    assert "weights:" in printed and "mAP@0.5" in printed
    assert (out / "best.safetensors").is_file() and (out / "last.ckpt").is_file()
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["hyp"]["cls"] == 0.5 and config["command"].startswith("yolov7-track train")

    report = tmp_path / "val.json"
    assert val_main(["--data", str(tiny_data), "--weights", str(out / "best.safetensors"),
                     "--device", "cpu", "--no-progress", "--json", str(report)]) == 0
    printed = capsys.readouterr().out
    assert "img-size 64" in printed and "mAP@.5:.95" in printed
    result = json.loads(report.read_text())
    assert result["images"] == 2 and 0.0 <= result["map50"] <= 1.0

    # a finished run resumes to nothing new, and a second train into it is refused
    assert train_main(["--resume", str(out), "--no-progress", "--workers", "0"]) == 0
    assert train_main(_train_args(tiny_data, out)) == 1
    assert "already holds a run" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--epochs", "1"], "--data is required"),
        (["--resume", "/nonexistent/run"], "no training checkpoint"),
        (["--data", "/nonexistent.yaml"], "cannot read data YAML"),
    ],
)
def test_train_errors_are_one_line(argv, message, capsys, tmp_path):
    assert train_main([*argv, "--out", str(tmp_path / "x"), "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_val_refuses_mismatched_classes(tiny_data, tmp_path, capsys):
    from detector import create_model, save_model

    weights = save_model(create_model("yolov7-tiny", 1, names=["car"]), tmp_path / "car.safetensors")
    assert val_main(["--data", str(tiny_data), "--weights", str(weights), "--device", "cpu"]) == 1
    assert "predicts classes" in capsys.readouterr().err


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        train_main(["--epochs", "0"])
    assert info.value.code == 2


def test_val_runs_each_precision_and_backend_and_says_which(tiny_data, tmp_path, capsys, monkeypatch):
    """``val --precision/--backend`` evaluate through the Detector the app runs (issue 12's
    accuracy guard): the header names the path, and fp32 torch and ONNX Runtime agree."""
    from detector import create_model, save_model
    from detector.precision import cpu_has_native_bf16

    names = yaml.safe_load((REPO / "assets" / "configs" / "coco128.yaml").read_text())["names"]
    monkeypatch.setenv("YOLOV7_TRACK_CACHE", str(tmp_path / "cache"))   # the ONNX export goes here
    model = create_model("yolov7-tiny", len(names), names=names)
    model.img_size = 64                                    # a small input keeps this quick
    weights = save_model(model, tmp_path / "w.safetensors", half=False)
    results = {}
    paths = [("torch", "fp32"), ("onnxruntime", "fp32")] + ([("torch", "bf16")] if cpu_has_native_bf16() else [])
    for backend, precision in paths:
        report = tmp_path / f"{backend}-{precision}.json"
        assert val_main(["--data", str(tiny_data), "--weights", str(weights), "--device", "cpu",
                         "--threads", "1", "--no-progress", "--precision", precision, "--backend", backend,
                         "--json", str(report)]) == 0
        assert f"{backend} {precision})" in capsys.readouterr().out
        results[(backend, precision)] = json.loads(report.read_text())
    assert results[("onnxruntime", "fp32")]["detections"] == results[("torch", "fp32")]["detections"]
    assert list((tmp_path / "cache" / "exports").iterdir())          # exported once, cached
    assert val_main(["--data", str(tiny_data), "--weights", str(weights), "--device", "cpu",
                     "--backend", "onnxruntime", "--precision", "bf16"]) == 1
    assert "runs fp32 only" in capsys.readouterr().err
