"""Detector with stand-in models: geometry back to the frame, output schema, batching, options."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import supervision as sv
import torch
from torch import nn

from detector.errors import DetectorError
from detector.inference import (
    Detector,
    DetectorConfig,
    DetectorConfigError,
    DeviceUnavailableError,
    resolve_device,
)
from detector.preprocess import InvalidImageError

NAMES = ["person", "square", "car"]
SQUARE_CLASS = 1


class RectangleFinder(nn.Module):
    """Stand-in YOLOv7: one detection per image at the bounding box of the near-white pixels of
    its input (class ``square``, conf 0.9 * 0.8), in input pixels; nothing on a frame without white."""

    def __init__(self, img_size: int = 640, strides: tuple[float, ...] = (8.0, 16.0, 32.0)) -> None:
        super().__init__()
        self.register_buffer("stride", torch.tensor(strides))
        self.names = list(NAMES)
        self.num_classes = len(NAMES)
        self.img_size = img_size
        self.inputs: list[torch.Tensor] = []
        self.inference_mode_seen: list[bool] = []
        self.fuse_calls = 0

    def fuse(self) -> RectangleFinder:
        self.fuse_calls += 1
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x)
        self.inference_mode_seen.append(torch.is_inference_mode_enabled())
        pred = torch.zeros((x.shape[0], 6, 5 + self.num_classes), dtype=x.dtype, device=x.device)
        pred[:, 1:, :4] = torch.tensor([50.0, 50.0, 20.0, 20.0])  # low-objectness noise rows
        pred[:, 1:, 4] = 0.2
        pred[:, 1:, 5] = 1.0
        for b in range(x.shape[0]):
            ys, xs = torch.nonzero((x[b] > 0.95).all(dim=0), as_tuple=True)
            if len(ys):
                x1, x2 = xs.min().item(), xs.max().item() + 1
                y1, y2 = ys.min().item(), ys.max().item() + 1
                pred[b, 0, :4] = torch.tensor([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1])
                pred[b, 0, 4] = 0.9
                pred[b, 0, 5 + SQUARE_CLASS] = 0.8
        return pred


class FixedPrediction(nn.Module):
    """Stand-in returning the same prediction rows (cx, cy, w, h in input pixels) for every input."""

    def __init__(self, rows: list[list[float]]) -> None:
        super().__init__()
        self.register_buffer("stride", torch.tensor([8.0, 16.0, 32.0]))
        self.names = list(NAMES)
        self.num_classes = len(NAMES)
        self.img_size = 640
        self.rows = torch.tensor(rows, dtype=torch.float32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rows.expand(x.shape[0], -1, -1).to(x.device)


def grey_frame(h: int, w: int) -> np.ndarray:
    return np.full((h, w, 3), 60, dtype=np.uint8)


def frame_with_square(h: int, w: int, box: tuple[int, int, int, int]) -> np.ndarray:
    frame = grey_frame(h, w)
    x1, y1, x2, y2 = box
    frame[y1:y2, x1:x2] = 255
    return frame


def assert_detections_schema(detections: sv.Detections) -> None:
    assert isinstance(detections, sv.Detections)
    assert detections.xyxy.dtype == np.float32 and detections.xyxy.shape == (len(detections), 4)
    assert detections.confidence.dtype == np.float32 and detections.confidence.shape == (len(detections),)
    assert np.issubdtype(detections.class_id.dtype, np.integer)
    names = detections.data["class_name"]
    assert isinstance(names, np.ndarray) and names.dtype.kind == "U" and names.shape == (len(detections),)


# frame (h, w), painted square (x1, y1, x2, y2) in frame pixels, model input (h, w), tolerance px
GEOMETRY_CASES = [
    pytest.param((720, 1280), (300, 200, 700, 500), (384, 640), 2.5, id="720p-downscaled"),
    pytest.param((1280, 720), (100, 900, 400, 1200), (640, 384), 2.5, id="portrait"),
    pytest.param((426, 640), (0, 0, 200, 100), (448, 640), 0.0, id="coco-size-no-resize"),
    pytest.param((360, 480), (400, 300, 480, 360), (480, 640), 1.0, id="pets-size-upscaled"),
    pytest.param((50, 80), (10, 10, 30, 40), (416, 640), 0.5, id="tiny-upscaled"),
]


@pytest.mark.parametrize("frame_hw, box, input_hw, tolerance_px", GEOMETRY_CASES)
def test_box_maps_back_to_frame(frame_hw, box, input_hw, tolerance_px) -> None:
    model = RectangleFinder()
    detector = Detector(model, device="cpu")
    detections = detector(frame_with_square(*frame_hw, box))
    assert tuple(model.inputs[-1].shape) == (1, 3, *input_hw)
    assert_detections_schema(detections)
    assert len(detections) == 1
    np.testing.assert_allclose(detections.xyxy[0], box, atol=tolerance_px)
    assert detections.class_id[0] == SQUARE_CLASS
    assert detections.data["class_name"][0] == "square"
    assert detections.confidence[0] == pytest.approx(0.72)


def test_fixed_prediction_maps_exactly() -> None:
    # 720x1280 frame -> 384x640 input, gain 0.5, pad (0, 12)
    rows = [
        [320.0, 192.0, 160.0, 96.0, 0.9, 0.1, 0.1, 0.9],  # centre box, class car
        [10.0, 20.0, 40.0, 60.0, 0.8, 0.9, 0.1, 0.1],  # sticks out of the top-left: clipped
        [500.0, 300.0, 10.0, 10.0, 0.2, 1.0, 1.0, 1.0],  # objectness below 0.25: dropped
    ]
    detector = Detector(FixedPrediction(rows), device="cpu")
    detections = detector(grey_frame(720, 1280))
    assert_detections_schema(detections)
    np.testing.assert_allclose(detections.xyxy, [[480, 264, 800, 456], [0, 0, 60, 76]], atol=1e-4)
    np.testing.assert_allclose(detections.confidence, [0.81, 0.72], rtol=1e-6)
    assert detections.class_id.tolist() == [2, 0]
    assert detections.data["class_name"].tolist() == ["car", "person"]


def test_square_letterbox_when_auto_is_off() -> None:
    model = RectangleFinder()
    box = (300, 200, 700, 500)
    detections = Detector(model, device="cpu", auto_letterbox=False)(frame_with_square(720, 1280, box))
    assert tuple(model.inputs[-1].shape) == (1, 3, 640, 640)
    np.testing.assert_allclose(detections.xyxy[0], box, atol=2.5)


def test_model_input_is_rgb_unit_float_under_inference_mode() -> None:
    model = RectangleFinder()
    frame = grey_frame(448, 640)
    frame[..., 0] = 255  # pure blue in BGR
    Detector(model, device="cpu")(frame)
    x = model.inputs[-1]
    assert x.dtype == torch.float32
    assert torch.all(x[0, 2] == 1.0) and torch.all(x[0, 0] == 60 / 255) and x.max() <= 1.0
    assert model.inference_mode_seen == [True]


def test_empty_detections_keep_schema() -> None:
    detections = Detector(RectangleFinder(), device="cpu")(grey_frame(360, 480))
    assert len(detections) == 0
    assert_detections_schema(detections)


def test_batch_of_mixed_sizes_equals_single_calls() -> None:
    frames = [
        frame_with_square(720, 1280, (300, 200, 700, 500)),
        frame_with_square(1280, 720, (100, 900, 400, 1200)),
        grey_frame(360, 480),
        frame_with_square(360, 480, (10, 20, 50, 80)),
    ]
    model = RectangleFinder()
    detector = Detector(model, device="cpu")
    batch = detector.detect_batch(frames)
    assert tuple(model.inputs[-1].shape) == (4, 3, 640, 640)  # common canvas
    assert [len(d) for d in batch] == [1, 1, 0, 1]
    for frame, detections in zip(frames, batch):
        single = detector(frame)
        np.testing.assert_array_equal(detections.xyxy, single.xyxy)
        np.testing.assert_array_equal(detections.confidence, single.confidence)
        np.testing.assert_array_equal(detections.class_id, single.class_id)


def test_batch_accepts_4d_array() -> None:
    frames = np.stack([frame_with_square(360, 480, (10, 20, 50, 80))] * 3)
    batch = Detector(RectangleFinder(), device="cpu").detect_batch(frames)
    assert len(batch) == 3 and all(len(d) == 1 for d in batch)


@pytest.mark.parametrize(
    "options, expected_classes",
    [
        pytest.param(dict(), [SQUARE_CLASS], id="all"),
        pytest.param(dict(classes=[SQUARE_CLASS]), [SQUARE_CLASS], id="keep-square"),
        pytest.param(dict(classes=(0, 2)), [], id="filter-out"),
        pytest.param(dict(conf_thres=0.75), [], id="above-threshold"),
        pytest.param(dict(conf_thres=0.1), [SQUARE_CLASS, 0], id="low-threshold"),
        pytest.param(dict(conf_thres=0.1, max_det=1), [SQUARE_CLASS], id="max-det"),
    ],
)
def test_options_reach_nms(options, expected_classes) -> None:
    detector = Detector(RectangleFinder(), device="cpu", **options)
    detections = detector(frame_with_square(360, 480, (10, 20, 50, 80)))
    assert detections.class_id.tolist() == expected_classes


BAD_FRAMES = [
    pytest.param(np.zeros((10, 10, 3), np.float32), id="float"),
    pytest.param(np.zeros((10, 10), np.uint8), id="grey"),
    pytest.param(np.zeros((10, 10, 4), np.uint8), id="bgra"),
    pytest.param(np.zeros((0, 10, 3), np.uint8), id="empty"),
    pytest.param(None, id="none"),
]


@pytest.mark.parametrize("frame", BAD_FRAMES)
def test_invalid_frames_raise(frame) -> None:
    detector = Detector(RectangleFinder(), device="cpu")
    with pytest.raises(InvalidImageError):
        detector(frame)
    with pytest.raises(InvalidImageError):
        detector.detect_batch([grey_frame(10, 10), frame])


def test_empty_batch_raises() -> None:
    with pytest.raises(InvalidImageError):
        Detector(RectangleFinder(), device="cpu").detect_batch([])


# ---------------------------------------------------------------- configuration

BAD_CONFIGS = [
    pytest.param(dict(conf_thres=1.5), "conf_thres", id="conf"),
    pytest.param(dict(iou_thres=-0.1), "iou_thres", id="iou"),
    pytest.param(dict(conf_thres="0.3"), "conf_thres", id="conf-str"),
    pytest.param(dict(img_size=0), "img_size", id="img-size"),
    pytest.param(dict(img_size=640.0), "img_size", id="img-size-float"),
    pytest.param(dict(max_det=0), "max_det", id="max-det"),
    pytest.param(dict(classes=[]), "classes", id="classes-empty"),
    pytest.param(dict(classes=[-1]), "classes", id="classes-negative"),
    pytest.param(dict(classes=3), "classes", id="classes-int"),
    pytest.param(dict(device="gpu"), "device", id="device"),
    pytest.param(dict(device="cpu", precision="fp16"), "'fp16' needs a CUDA device", id="fp16-on-cpu"),
    pytest.param(dict(precision="int8"), "precision must be one of", id="precision-unknown"),
    pytest.param(dict(backend="tensorrt"), "backend must be one of", id="backend-unknown"),
    pytest.param(dict(num_threads=0), "num_threads", id="threads"),
    pytest.param(dict(fuse="yes"), "fuse", id="fuse"),
]


@pytest.mark.parametrize("options, message", BAD_CONFIGS)
def test_invalid_config_raises(options, message) -> None:
    with pytest.raises(DetectorConfigError, match=message):
        DetectorConfig(**options)


def test_config_normalises_classes() -> None:
    assert DetectorConfig(classes=[2, np.int64(0)]).classes == (2, 0)


@pytest.mark.parametrize(
    "options, message",
    [
        pytest.param(dict(img_size=650), "img_size=672", id="img-size-not-stride-multiple"),
        pytest.param(dict(classes=[3]), "classes", id="unknown-class"),
    ],
)
def test_config_checked_against_model(options, message) -> None:
    with pytest.raises(DetectorConfigError, match=message):
        Detector(RectangleFinder(), device="cpu", **options)


def test_p6_stride_and_default_img_size() -> None:
    model = RectangleFinder(img_size=1280, strides=(8.0, 16.0, 32.0, 64.0))
    detector = Detector(model, device="cpu")
    assert (detector.img_size, detector.stride) == (1280, 64)
    detector(frame_with_square(720, 1280, (300, 200, 700, 500)))
    assert tuple(model.inputs[-1].shape) == (1, 3, 768, 1280)


def test_cuda_requests_without_cuda(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    for device in ("cuda", "cuda:0"):
        with pytest.raises(DeviceUnavailableError, match="CUDA is not available"):
            resolve_device(device)
    with pytest.raises(DetectorConfigError, match="'fp16' needs a CUDA device"):
        Detector(RectangleFinder(), device="auto", precision="fp16")


def test_cuda_index_out_of_range(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda") == torch.device("cuda", 0)
    with pytest.raises(DeviceUnavailableError, match="only 1 CUDA device"):
        resolve_device("cuda:3")


def test_model_without_interface_is_refused() -> None:
    with pytest.raises(DetectorError, match="stride"):
        Detector(nn.Conv2d(3, 8, 1), device="cpu")
    model = RectangleFinder()
    model.names = ["only-one"]
    with pytest.raises(DetectorError, match="class names"):
        Detector(model, device="cpu")


def test_model_returning_wrong_shape_is_reported() -> None:
    model = FixedPrediction([[1.0, 1.0, 1.0, 1.0, 0.9, 1.0]])  # 6 columns for 3 classes
    with pytest.raises(DetectorError, match=r"expected a decoded prediction tensor \(B, N, 8\)"):
        Detector(model, device="cpu")(grey_frame(64, 64))


def test_config_object_or_options_not_both() -> None:
    with pytest.raises(TypeError):
        Detector(RectangleFinder(), DetectorConfig(), conf_thres=0.5)


def test_model_prepared_fused_and_eval() -> None:
    model = RectangleFinder().train()
    detector = Detector(model, device="cpu")
    assert detector.model is model and not model.training and model.fuse_calls == 1
    assert Detector(RectangleFinder(), device="cpu", fuse=False).model.fuse_calls == 0


def test_num_threads_sets_torch_threads() -> None:
    before = torch.get_num_threads()
    try:
        Detector(RectangleFinder(), device="cpu", num_threads=1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_warmup_runs_model() -> None:
    model = RectangleFinder()
    detector = Detector(model, device="cpu")
    detector.warmup(runs=2)
    assert [tuple(x.shape) for x in model.inputs] == [(1, 3, 640, 640)] * 2
    detector.warmup(image_hw=(384, 640))
    assert tuple(model.inputs[-1].shape) == (1, 3, 384, 640)
    with pytest.raises(DetectorConfigError, match="multiples of the stride"):
        detector.warmup(image_hw=(100, 640))


def test_from_weights_uses_checkpoint_loader(monkeypatch) -> None:
    calls = []

    def fake_load_model(source, *, device, fuse):
        calls.append((source, device, fuse))
        return RectangleFinder()

    fake_module = types.ModuleType("detector.checkpoint")
    fake_module.load_model = fake_load_model
    monkeypatch.setitem(sys.modules, "detector.checkpoint", fake_module)
    detector = Detector.from_weights("weights.safetensors", device="cpu", conf_thres=0.5)
    assert calls == [("weights.safetensors", torch.device("cpu"), True)]
    assert detector.config.conf_thres == 0.5 and isinstance(detector.model, RectangleFinder)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("precision", ("fp32", "fp16"))
def test_cuda_matches_cpu(precision: str) -> None:
    frames = [frame_with_square(720, 1280, (300, 200, 700, 500)), frame_with_square(360, 480, (10, 20, 50, 80))]
    cpu = Detector(RectangleFinder(), device="cpu").detect_batch(frames)
    cuda = Detector(RectangleFinder(), device="cuda", precision=precision).detect_batch(frames)
    for expected, got in zip(cpu, cuda):
        np.testing.assert_allclose(got.xyxy, expected.xyxy, atol=0.5 if precision == "fp16" else 1e-4)
        np.testing.assert_array_equal(got.class_id, expected.class_id)


def test_from_weights_with_official_format_fixture() -> None:
    """The real loader and model: yolov7-tiny from the official-format fixture checkpoint gives
    the golden detect.py boxes on the COCO image (README assertion 5, conf 0.25 / IoU 0.45)."""
    from shared_data import shared_path

    checkpoint = shared_path("fixtures", "yolov7", "yolov7-tiny.official-format.pt")
    with np.load(shared_path("fixtures", "yolov7", "inputs", "coco139.npz")) as data:
        frame = data["orig_bgr"]
    with np.load(shared_path("fixtures", "yolov7", "golden", "yolov7-tiny__coco139.npz")) as golden:
        expected = golden["det_conf0p25_iou0p45"]
    previous_threads = torch.get_num_threads()
    try:
        detections = Detector.from_weights(checkpoint, device="cpu", num_threads=1)(frame)
    finally:
        torch.set_num_threads(previous_threads)
    assert len(detections) == len(expected)
    unused = set(range(len(detections)))
    for x1, y1, x2, y2, conf, cls in expected:
        same_class = [i for i in unused if detections.class_id[i] == int(cls)]
        assert same_class, f"no detection of class {int(cls)} left"
        errors = {i: np.abs(detections.xyxy[i] - [x1, y1, x2, y2]).max() for i in same_class}
        best = min(errors, key=errors.get)
        assert errors[best] <= 2e-2
        assert abs(detections.confidence[best] - conf) <= 2e-4
        unused.remove(best)


def test_an_export_with_the_torch_backend_names_the_backends(tmp_path) -> None:
    export = tmp_path / "model.onnx"
    export.write_bytes(b"not read")
    with pytest.raises(DetectorConfigError, match="exported model.*--backend"):
        Detector.from_weights(export, device="cpu")
