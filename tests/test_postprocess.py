"""NMS and box mapping: bit parity with the official post-processing on the golden fixtures, and a
plain O(N^2) reference for everything the fixtures cannot cover (conf 0.001, options, edge cases)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from detector.postprocess import (
    CLASS_OFFSET_PX,
    greedy_nms,
    non_max_suppression,
    pairwise_iou,
    scale_boxes,
    xywh2xyxy,
)
from shared_data import shared_path

ARCHS = ("yolov7-tiny", "yolov7", "yolov7x", "yolov7-w6", "yolov7-e6", "yolov7-d6", "yolov7-e6e")
INPUTS = ("coco139", "pets100")
GOLDEN_CASES = [(arch, name) for arch in ARCHS for name in INPUTS]


def load_golden(arch: str, name: str) -> dict[str, np.ndarray]:
    with np.load(shared_path("fixtures", "yolov7", "golden", f"{arch}__{name}.npz")) as data:
        return dict(data)


def prediction_from_rows(golden: dict[str, np.ndarray], row_index: np.ndarray) -> torch.Tensor:
    """A zero (1, N, 85) prediction holding the stored golden rows ``row_index`` at their places."""
    stored = golden["pred_rows_index"]
    positions = np.searchsorted(stored, row_index)
    assert (stored[positions] == row_index).all(), "rows missing from pred_rows"
    pred = torch.zeros(tuple(int(v) for v in golden["pred_shape"]), dtype=torch.float32)
    pred[0, torch.from_numpy(row_index)] = torch.from_numpy(golden["pred_rows"][positions])
    return pred


# ---------------------------------------------------------------- reference (plain, O(N^2))


def reference_nms_numpy(pred: np.ndarray, conf_thres, iou_thres, classes=None, agnostic=False,
                        max_det=300, max_candidates=30_000) -> np.ndarray:
    """The official algorithm written out directly in float32 numpy for one image ``(N, 5 + nc)``:
    every kept box tested against every later box (torchvision's CPU kernel loop)."""
    x = pred[pred[:, 4] > np.float32(conf_thres)]
    nc = pred.shape[1] - 5
    scores = x[:, 4:5] if nc == 1 else x[:, 5:] * x[:, 4:5]
    cls = scores.argmax(1)
    conf = scores[np.arange(len(x)), cls]
    half = x[:, 2:4] / np.float32(2)
    det = np.concatenate((x[:, :2] - half, x[:, :2] + half, conf[:, None], cls[:, None].astype(np.float32)), 1)
    det = det[conf > np.float32(conf_thres)]
    if classes is not None:
        det = det[np.isin(det[:, 5], np.asarray(classes, dtype=np.float32))]
    order = np.argsort(-det[:, 4], kind="stable")
    det = det[order[:max_candidates]]
    offset = np.float32(0) if agnostic else det[:, 5:6] * np.float32(CLASS_OFFSET_PX)
    boxes = (det[:, :4] + offset).astype(np.float32)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    suppressed = np.zeros(len(det), dtype=bool)
    keep = []
    for i in range(len(det)):
        if suppressed[i]:
            continue
        keep.append(i)
        later = np.arange(i + 1, len(det))
        w = np.maximum(np.float32(0), np.minimum(boxes[i, 2], boxes[later, 2]) - np.maximum(boxes[i, 0], boxes[later, 0]))
        h = np.maximum(np.float32(0), np.minimum(boxes[i, 3], boxes[later, 3]) - np.maximum(boxes[i, 1], boxes[later, 1]))
        inter = w * h
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = inter / (areas[i] + areas[later] - inter)
        suppressed[later[iou.astype(np.float64) > iou_thres]] = True  # float IoU vs double threshold
    return det[np.asarray(keep, dtype=np.int64)[:max_det]].reshape(-1, 6)


def synthetic_prediction(seed: int, n_rows: int = 4000, num_classes: int = 5, size: float = 640.0) -> torch.Tensor:
    """Clusters of jittered boxes (heavy overlap, like a dense YOLO output) with random scores."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, size, size=(max(1, n_rows // 40), 2))
    sizes = rng.uniform(8, 200, size=(len(centres), 2))
    which = rng.integers(0, len(centres), size=n_rows)
    pred = np.zeros((n_rows, 5 + num_classes), dtype=np.float32)
    pred[:, :2] = centres[which] + rng.normal(0, 6, size=(n_rows, 2))
    pred[:, 2:4] = sizes[which] * rng.uniform(0.7, 1.3, size=(n_rows, 2))
    pred[:, 4] = rng.beta(0.5, 3, size=n_rows)
    pred[:, 5:] = rng.uniform(0, 1, size=(n_rows, num_classes)) ** 3
    return torch.from_numpy(pred)[None]


# ---------------------------------------------------------------- golden parity


@pytest.mark.parametrize("arch, name", GOLDEN_CASES)
def test_nms_and_scale_match_golden_bit_for_bit(arch: str, name: str) -> None:
    golden = load_golden(arch, name)
    pred = prediction_from_rows(golden, golden["nms_conf0p25_candidate_index"])
    (det,) = non_max_suppression(pred, conf_thres=0.25, iou_thres=0.45)
    expected = golden["nms_conf0p25_iou0p45"]
    assert det.dtype == torch.float32
    np.testing.assert_array_equal(det.numpy(), expected)
    boxes = scale_boxes(det[:, :4], golden["x_shape"][2:], golden["orig_shape"][:2])
    np.testing.assert_array_equal(boxes.numpy(), golden["det_conf0p25_iou0p45"][:, :4])


@pytest.mark.parametrize("arch, name", GOLDEN_CASES)
def test_low_confidence_nms_on_stored_rows_matches_reference(arch: str, name: str) -> None:
    golden = load_golden(arch, name)
    pred = prediction_from_rows(golden, golden["pred_rows_index"])
    (det,) = non_max_suppression(pred, conf_thres=0.001, iou_thres=0.65)
    expected = reference_nms_numpy(pred[0].numpy(), 0.001, 0.65)
    assert det.shape[0] > 100  # enough candidates for the test to mean something
    np.testing.assert_array_equal(det.numpy(), expected)


# ---------------------------------------------------------------- options, table-driven

OPTION_CASES = [
    pytest.param(dict(conf_thres=0.25, iou_thres=0.45), id="defaults"),
    pytest.param(dict(conf_thres=0.001, iou_thres=0.65), id="eval"),
    pytest.param(dict(conf_thres=0.05, iou_thres=0.3, classes=[1, 3]), id="classes"),
    pytest.param(dict(conf_thres=0.05, iou_thres=0.45, agnostic=True), id="agnostic"),
    pytest.param(dict(conf_thres=0.001, iou_thres=0.9, max_det=7), id="max-det"),
    pytest.param(dict(conf_thres=0.001, iou_thres=0.65, max_candidates=100), id="max-candidates"),
    pytest.param(dict(conf_thres=0.01, iou_thres=0.0), id="iou-zero"),
    pytest.param(dict(conf_thres=0.01, iou_thres=1.0), id="iou-one"),
]


@pytest.mark.parametrize("options", OPTION_CASES)
@pytest.mark.parametrize("seed", (1, 2))
def test_options_match_reference(options: dict, seed: int) -> None:
    pred = synthetic_prediction(seed)
    (det,) = non_max_suppression(pred, **options)
    expected = reference_nms_numpy(pred[0].numpy(), **options)
    np.testing.assert_array_equal(det.numpy(), expected)


def test_single_class_model_scores_by_objectness() -> None:
    pred = synthetic_prediction(3, num_classes=1)
    (det,) = non_max_suppression(pred, conf_thres=0.1, iou_thres=0.5)
    assert det.shape[0] > 0 and (det[:, 5] == 0).all()
    np.testing.assert_array_equal(det.numpy(), reference_nms_numpy(pred[0].numpy(), 0.1, 0.5))
    assert set(det[:, 4].tolist()) <= set(pred[0, :, 4].tolist())


def test_batch_images_are_independent() -> None:
    batch = torch.cat((synthetic_prediction(4), synthetic_prediction(5)))
    outputs = non_max_suppression(batch, 0.1, 0.5)
    assert len(outputs) == 2
    for image_pred, det in zip(batch, outputs):
        np.testing.assert_array_equal(det.numpy(), reference_nms_numpy(image_pred.numpy(), 0.1, 0.5))


EMPTY_CASES = [
    pytest.param(torch.zeros((2, 0, 85)), id="no-rows"),
    pytest.param(torch.zeros((1, 50, 85)), id="all-zero"),
    pytest.param(torch.full((1, 50, 85), 0.25), id="objectness-equal-to-threshold"),
    pytest.param(torch.cat((torch.rand(1, 50, 4) * 100, torch.full((1, 50, 1), 0.9), torch.full((1, 50, 80), 0.2)), 2),
                 id="conf-below-threshold"),
]


@pytest.mark.parametrize("pred", EMPTY_CASES)
def test_nothing_above_threshold_gives_empty_detections(pred: torch.Tensor) -> None:
    outputs = non_max_suppression(pred, conf_thres=0.25, iou_thres=0.45)
    assert len(outputs) == pred.shape[0]
    for det in outputs:
        assert det.shape == (0, 6) and det.dtype == pred.dtype


def test_classes_filter_that_matches_nothing() -> None:
    pred = synthetic_prediction(6, num_classes=5)
    (det,) = non_max_suppression(pred, 0.01, 0.5, classes=[77])
    assert det.shape == (0, 6)


def make_pred(rows: list[tuple[float, float, float, float, float, int]], num_classes: int = 3) -> torch.Tensor:
    """(1, n, 5 + nc) prediction from (cx, cy, w, h, conf, cls) rows with obj = conf, cls prob = 1."""
    pred = torch.zeros((1, len(rows), 5 + num_classes))
    for i, (cx, cy, w, h, conf, cls) in enumerate(rows):
        pred[0, i, :5] = torch.tensor([cx, cy, w, h, conf])
        pred[0, i, 5 + cls] = 1.0
    return pred


# boxes (cx, cy, w, h, conf, cls), options -> number kept
SEMANTICS_CASES = [
    # [0,0,10,10] and [0,0,10,5]: IoU exactly 0.5, suppressed only when IoU > threshold (strict)
    pytest.param([(5, 5, 10, 10, 0.9, 0), (5, 2.5, 10, 5, 0.8, 0)], dict(iou_thres=0.5), 2, id="iou-equal-kept"),
    pytest.param([(5, 5, 10, 10, 0.9, 0), (5, 2.5, 10, 5, 0.8, 0)], dict(iou_thres=0.49), 1, id="iou-above-suppressed"),
    # [0,0,10,10] and [0,0,10,6]: float32 IoU 0.6 rounds up to 0.60000002 > 0.6 as a double:
    # torchvision suppresses it, a float32 comparison with float32(0.6) would not
    pytest.param([(5, 5, 10, 10, 0.9, 0), (5, 3, 10, 6, 0.8, 0)], dict(iou_thres=0.6), 1, id="iou-compared-as-double"),
    pytest.param([(5, 5, 10, 10, 0.9, 0), (5, 3, 10, 6, 0.8, 0)], dict(iou_thres=0.65), 2, id="iou-below-kept"),
    pytest.param([(5, 5, 10, 10, 0.9, 0), (5, 5, 10, 10, 0.8, 1)], dict(), 2, id="other-class-kept"),
    pytest.param([(5, 5, 10, 10, 0.9, 0), (5, 5, 10, 10, 0.8, 1)], dict(agnostic=True), 1, id="agnostic-suppresses"),
    pytest.param([(5, 5, 10, 10, 0.9, 0), (30, 30, 10, 10, 0.8, 0)], dict(), 2, id="disjoint-kept"),
    pytest.param([(5, 5, 0, 0, 0.9, 0), (5, 5, 0, 0, 0.8, 0)], dict(iou_thres=0.0), 2, id="zero-area-never-suppresses"),
    # chain: A suppresses B, B would suppress C, but B is gone so C stays (greedy, not clustering)
    pytest.param([(5, 5, 10, 10, 0.9, 0), (9, 5, 10, 10, 0.8, 0), (13, 5, 10, 10, 0.7, 0)], dict(iou_thres=0.4), 2,
                 id="greedy-chain"),
]


@pytest.mark.parametrize("rows, options, kept", SEMANTICS_CASES)
def test_suppression_semantics(rows, options, kept) -> None:
    (det,) = non_max_suppression(make_pred(rows), conf_thres=options.pop("conf_thres", 0.25), **options)
    assert det.shape[0] == kept
    assert torch.all(det[:-1, 4] >= det[1:, 4])  # descending confidence


def test_conf_threshold_is_strict_on_product() -> None:
    pred = make_pred([(5, 5, 10, 10, 0.5, 0), (50, 50, 10, 10, 0.5, 1)])
    pred[0, 1, 6] = 0.5  # conf = 0.25 exactly -> dropped
    (det,) = non_max_suppression(pred, conf_thres=0.25)
    assert det.shape[0] == 1 and det[0, 5] == 0


@pytest.mark.parametrize("block_size", (1, 7, 64, 100_000))
def test_greedy_nms_block_size_does_not_change_result(block_size: int) -> None:
    pred = synthetic_prediction(7, n_rows=1500)[0]
    boxes, scores = xywh2xyxy(pred[:, :4]), pred[:, 4]
    reference = greedy_nms(boxes, scores, 0.5, block_size=100_000)
    assert torch.equal(greedy_nms(boxes, scores, 0.5, block_size=block_size), reference)
    assert torch.equal(greedy_nms(boxes, scores, 0.5, max_keep=20, block_size=block_size), reference[:20])


def test_greedy_nms_empty_and_numpy_input() -> None:
    assert greedy_nms(torch.zeros((0, 4)), torch.zeros(0), 0.5).shape == (0,)
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], dtype=np.float32)
    keep = greedy_nms(boxes, np.array([0.5, 0.9, 0.1], dtype=np.float32), 0.5)
    assert isinstance(keep, np.ndarray)
    np.testing.assert_array_equal(keep, [1, 2])


BAD_ARGS = [
    pytest.param(torch.zeros((10, 85)), dict(), "shape", id="2d-pred"),
    pytest.param(torch.zeros((1, 10, 5)), dict(), "shape", id="no-class-columns"),
    pytest.param(torch.zeros((1, 10, 85)), dict(conf_thres=1.5), "conf_thres", id="conf"),
    pytest.param(torch.zeros((1, 10, 85)), dict(iou_thres=-0.1), "iou_thres", id="iou"),
    pytest.param(torch.zeros((1, 10, 85)), dict(max_det=0), "max_det", id="max-det"),
]


@pytest.mark.parametrize("pred, options, message", BAD_ARGS)
def test_invalid_arguments_raise(pred, options, message) -> None:
    with pytest.raises(ValueError, match=message):
        non_max_suppression(pred, **options)


# ---------------------------------------------------------------- boxes


def test_xywh2xyxy() -> None:
    boxes = torch.tensor([[10.0, 20.0, 4.0, 6.0], [0.0, 0.0, 1.0, 3.0]])
    expected = torch.tensor([[8.0, 17.0, 12.0, 23.0], [-0.5, -1.5, 0.5, 1.5]])
    assert torch.equal(xywh2xyxy(boxes), expected)
    converted = xywh2xyxy(boxes.numpy())
    assert isinstance(converted, np.ndarray) and converted.dtype == np.float32
    np.testing.assert_array_equal(converted, expected.numpy())


def test_pairwise_iou_values() -> None:
    a = np.array([[0, 0, 10, 10]], dtype=np.float32)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 5]], dtype=np.float32)
    area = lambda boxes: (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])  # noqa: E731
    iou = pairwise_iou(a, area(a), b, area(b))
    assert iou.dtype == np.float32
    np.testing.assert_allclose(iou, [[1.0, 1 / 3, 0.0, 0.5]], rtol=1e-7)


# boxes in letterbox px, input (h, w), original (h, w), ratio_pad -> expected boxes in original px
SCALE_CASES = [
    pytest.param([[0, 11, 640, 437]], (448, 640), (426, 640), None, [[0, 0, 640, 426]], id="pad-only"),
    pytest.param([[0, 12, 640, 372]], (384, 640), (720, 1280), None, [[0, 0, 1280, 720]], id="16:9"),
    pytest.param([[100, 112, 200, 212]], (384, 640), (720, 1280), None, [[200, 200, 400, 400]], id="inside"),
    pytest.param([[-50, -50, 700, 500]], (384, 640), (720, 1280), None, [[0, 0, 1280, 720]], id="clamped"),
    pytest.param([[10, 20, 30, 40]], (640, 640), (320, 320), ((2.0, 2.0), (0.0, 0.0)), [[5, 10, 15, 20]],
                 id="explicit-ratio-pad"),
]


@pytest.mark.parametrize("boxes, input_hw, orig_hw, ratio_pad, expected", SCALE_CASES)
def test_scale_boxes(boxes, input_hw, orig_hw, ratio_pad, expected) -> None:
    boxes_t = torch.tensor(boxes, dtype=torch.float32)
    original = boxes_t.clone()
    out = scale_boxes(boxes_t, input_hw, orig_hw, ratio_pad)
    torch.testing.assert_close(out, torch.tensor(expected, dtype=torch.float32))
    assert torch.equal(boxes_t, original)  # input untouched
