"""Precision selection (detector/precision.py) and a tiny bf16 training run on the CPU."""

from __future__ import annotations

import json

import numpy as np

import pytest
import torch
from safetensors import safe_open

from detector import DetectorConfigError
from detector import precision as precision_module
from detector.precision import cpu_has_native_bf16, resolve_precision
from shared_data import shared_data_config
from training.cli import train_parser
from training.config import TrainConfig
from training.errors import ConfigError
from training.trainer import Trainer

CPU = torch.device("cpu")
CUDA = torch.device("cuda:0")


@pytest.fixture()
def native_bf16(monkeypatch):
    def set_native(value: bool) -> None:
        monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: value)
    return set_native


def test_auto_picks_bf16_only_on_cpus_with_native_bf16(native_bf16):
    native_bf16(True)
    assert resolve_precision("auto", CPU) == "bf16"
    native_bf16(False)
    assert resolve_precision("auto", CPU) == "fp32"
    assert resolve_precision("auto", CUDA) == "fp16"          # no CUDA call is needed to decide


def test_explicit_precisions_the_device_cannot_run_are_refused(native_bf16):
    native_bf16(False)
    with pytest.raises(DetectorConfigError, match="no native bf16"):
        resolve_precision("bf16", CPU)
    with pytest.raises(DetectorConfigError, match="'fp16' needs a CUDA device"):
        resolve_precision("fp16", CPU)
    with pytest.raises(DetectorConfigError, match="precision must be one of"):
        resolve_precision("int8", CPU)
    assert resolve_precision("fp32", CPU) == "fp32"
    native_bf16(True)
    assert resolve_precision("bf16", CPU) == "bf16"


def test_native_bf16_detection_reads_the_cpu_flags():
    flags = open("/proc/cpuinfo").read() if __import__("os").path.exists("/proc/cpuinfo") else ""
    expected = "avx512_bf16" in flags or "amx_bf16" in flags
    cpu_has_native_bf16.cache_clear()
    assert cpu_has_native_bf16() == expected


def test_training_options_validate_precision():
    with pytest.raises(ConfigError, match="precision must be auto, fp32, bf16 or fp16"):
        TrainConfig(data="x.yaml", precision="half")
    args = train_parser().parse_args(["--data", "x.yaml", "--precision", "bf16"])
    assert args.precision == "bf16"
    with pytest.raises(SystemExit):
        train_parser().parse_args(["--data", "x.yaml", "--precision", "int8"])


@pytest.mark.skipif(not cpu_has_native_bf16(), reason="this CPU has no native bf16 (AVX512-BF16/AMX)")
def test_tiny_bf16_training_run_on_cpu(tmp_path):
    config = TrainConfig(data=shared_data_config("traffic.yaml"), arch="yolov7-tiny", out_dir=tmp_path,
                         epochs=1, img_size=96, batch_size=4, device="cpu", workers=0, threads=1,
                         seed=0, precision="bf16", max_batches_per_epoch=3, close_mosaic_epochs=0,
                         progress=False, val_period_epochs=1)
    trainer = Trainer(config, command="test")
    result = trainer.run()
    assert trainer.precision == "bf16" and trainer.channels_last
    assert trainer.model.model[0].conv.weight.dtype == torch.float32          # master weights fp32
    assert trainer.model.model[0].conv.weight.is_contiguous(memory_format=torch.channels_last)
    row = result.history[0]
    assert all(torch.isfinite(torch.tensor(row[k])) for k in ("train_box", "train_obj", "train_cls"))
    assert row["train_loss"] > 0 and row["map50"] is not None
    with safe_open(str(result.last_weights), framework="pt") as reader:
        provenance = json.loads(reader.metadata()["yolov7_track"])["provenance"]
    assert provenance["precision"] == "bf16" and provenance["hardware"]
    assert provenance["data"]["format"] == "merge"


# ------------------------------------------------------------------ inference precision (issue 12)

def _sample_frames(count: int = 3):
    import av

    from shared_data import REPO_ROOT

    frames = []
    with av.open(str(REPO_ROOT / "assets" / "samples" / "traffic_street_fixedcam.mp4")) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i % 150 == 20:
                frames.append(frame.to_ndarray(format="bgr24"))
            if len(frames) == count:
                break
    return frames


def test_detector_auto_precision_follows_the_hardware_and_says_so(native_bf16, caplog):
    from detector import Detector, create_model

    model = create_model("yolov7-tiny", num_classes=2)
    native_bf16(True)
    with caplog.at_level("INFO", logger="detector.inference"):
        detector = Detector(model, device="cpu", precision="auto", img_size=64)
    assert detector.precision == "bf16"
    assert "precision bf16 (auto:" in caplog.text
    native_bf16(False)
    assert Detector(create_model("yolov7-tiny", num_classes=2), device="cpu", precision="auto").precision == "fp32"
    with pytest.raises(DetectorConfigError, match="no native bf16"):
        Detector(create_model("yolov7-tiny", num_classes=2), device="cpu", precision="bf16")
    assert Detector(create_model("yolov7-tiny", num_classes=2), device="cpu").precision == "fp32"  # library default


def test_backend_precisions_are_checked(native_bf16):
    from detector.precision import resolve_inference_precision

    native_bf16(True)
    assert resolve_inference_precision("auto", CPU, "onnxruntime") == "fp32"
    assert resolve_inference_precision("auto", CPU, "openvino") == "bf16"
    with pytest.raises(DetectorConfigError, match="'onnxruntime' runs fp32 only"):
        resolve_inference_precision("bf16", CPU, "onnxruntime")
    with pytest.raises(DetectorConfigError, match="not fp16"):
        resolve_inference_precision("fp16", CPU, "openvino")
    with pytest.raises(DetectorConfigError, match="backend must be one of"):
        resolve_inference_precision("fp32", CPU, "tensorrt")


def test_front_ends_offer_the_detectors_choices():
    from app import cli
    from app.gui import settings
    from detector.precision import BACKENDS, PRECISIONS

    assert cli.PRECISION_CHOICES == settings.PRECISION_CHOICES == PRECISIONS
    assert cli.BACKEND_CHOICES == settings.BACKEND_CHOICES == BACKENDS
    with pytest.raises(settings.SettingsError, match="precision must be one of"):
        settings.GuiSettings(precision="int4")


@pytest.mark.skipif(not cpu_has_native_bf16(), reason="this CPU has no native bf16")
def test_bf16_detections_match_fp32_on_real_frames():
    """The bundled model on frames of the bundled clip: bf16 (bf16 weights, channels_last, frozen graph) finds the
    same vehicles as fp32, boxes within IoU 0.93 and scores within 0.05 (fp32 decode and NMS;
    bf16 keeps 8 significant bits of every activation, so boxes move by a pixel or two)."""
    import supervision as sv

    from detector import Detector

    torch.set_num_threads(1)
    fp32 = Detector.from_weights("yolov7-tiny-traffic", device="cpu", precision="fp32")
    bf16 = Detector.from_weights("yolov7-tiny-traffic", device="cpu", precision="bf16")
    compared = 0
    for frame in _sample_frames():
        a, b = fp32(frame), bf16(frame)
        strong = a.confidence >= 0.4          # clear detections; marginal ones may cross conf 0.25
        if not strong.any():
            continue
        iou = sv.box_iou_batch(a.xyxy[strong], b.xyxy)
        best = iou.argmax(1)
        assert (iou.max(1) >= 0.93).all()
        np.testing.assert_array_equal(b.class_id[best], a.class_id[strong])
        np.testing.assert_allclose(b.confidence[best], a.confidence[strong], atol=0.05)
        compared += int(strong.sum())
    assert compared >= 3


@pytest.mark.skipif(not cpu_has_native_bf16(), reason="this CPU has no native bf16")
def test_bf16_box_decode_stays_in_fp32():
    """Box centres come out of the head's decode in fp32: in bf16 (8 significant bits) a
    centre near x = 600 px could only take steps of 4 px."""
    from detector import Detector

    detector = Detector.from_weights("yolov7-tiny-traffic", device="cpu", precision="bf16")
    frame = _sample_frames(1)[0]
    from detector.preprocess import letterbox_batch

    batch, _ = letterbox_batch([frame], detector.img_size, stride=detector.stride)
    x = torch.from_numpy(batch).float() / 255
    with torch.inference_mode():
        pred = detector.forward_tensor(x)
    assert pred.dtype == torch.float32
    cx = pred[0, :, 0]
    far = cx[cx > 512]
    assert (far - far.round(decimals=0)).abs().max() > 0.01    # not on a bf16 grid of whole pixels
    assert (torch.remainder(far, 4.0) != 0).float().mean() > 0.9


@pytest.mark.skipif(not cpu_has_native_bf16(), reason="this CPU has no native bf16")
def test_bf16_frozen_graph_equals_the_eager_model_for_every_input_shape():
    """bf16 runs the body as a frozen TorchScript graph traced on the first input; the one graph
    must give the eager model's exact predictions for other batch sizes and letterbox shapes
    (the body has no shape-dependent Python; a trace that baked a shape in would fail here)."""
    from detector import Detector
    from detector.frozen import FrozenYOLOv7

    torch.manual_seed(0)
    detector = Detector.from_weights("yolov7-tiny-traffic", device="cpu", precision="bf16")
    assert isinstance(detector._run_model, FrozenYOLOv7)
    with torch.inference_mode():
        for shape in [(1, 3, 384, 640), (1, 3, 640, 640), (2, 3, 320, 512), (1, 3, 256, 416)]:
            x = torch.rand(shape)
            frozen = detector.forward_tensor(x)
            eager = detector.model(x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last))
            assert frozen.shape == (shape[0], eager.shape[1], 5 + detector.num_classes)
            torch.testing.assert_close(frozen, eager.float(), rtol=0, atol=0)


def test_fp32_keeps_the_eager_model():
    """fp32 is the exact reference path (the official code's outputs): no traced graph."""
    from detector import Detector

    detector = Detector.from_weights("yolov7-tiny-traffic", device="cpu", precision="fp32")
    assert detector._run_model is detector.model
