"""Golden parity of the seven architectures with the official YOLOv7 code.

Weights are regenerated from ``../shared/fixtures/yolov7`` (numpy recipe, sha256-checked), loaded
into our models, fused, and run on the two fixture inputs. Tolerances are the fixture README's
"suggested assertions" (about 10x the official code's own thread/fusion noise, 35x below the
BatchNorm-eps porting bug).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from detector import AVAILABLE_MODELS, create_model
from detector.postprocess import non_max_suppression, scale_boxes
from yolov7_fixtures import fixture_path, regenerate_state

INPUTS = ("coco139", "pets100")


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # the golden files were produced with 1 thread
    yield
    torch.set_num_threads(previous)


def _fused_model(arch: str):
    state = regenerate_state(arch)  # verifies the recipe's sha256
    model = create_model(arch)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    return model.float().fuse().eval()


def _golden(arch: str, inp: str):
    golden = np.load(fixture_path("golden", f"{arch}__{inp}.npz"))
    inputs = np.load(fixture_path(str(golden["input_file"])))
    x = inputs[str(golden["input_key"])].astype(np.float32)[None] / np.float32(255)
    return golden, torch.from_numpy(x), inputs["orig_bgr"].shape


def _match_detections(ours: np.ndarray, gold: np.ndarray, box_tol_px: float = 2e-2,
                      conf_tol: float = 2e-4) -> int:
    """Count golden boxes matched one-to-one to an unused box of the same class (README rule 5)."""
    used = np.zeros(len(ours), dtype=bool)
    matched = 0
    for row in gold:
        same = (ours[:, 5] == row[5]) & ~used
        box_err = np.abs(ours[:, :4] - row[:4]).max(axis=1)
        ok = same & (box_err <= box_tol_px) & (np.abs(ours[:, 4] - row[4]) <= conf_tol)
        if ok.any():
            used[np.flatnonzero(ok)[np.argmin(box_err[ok])]] = True
            matched += 1
    return matched


def _check_predictions(pred: np.ndarray, golden) -> None:
    rows = pred[golden["pred_rows_index"]]
    gold = golden["pred_rows"]
    d = np.abs(rows - gold)
    assert d[:, 0:2].max() <= 1e-2, f"cx/cy differ by {d[:, 0:2].max()} px"
    assert np.all(d[:, 2:4] <= 1e-3 + 3e-4 * np.abs(gold[:, 2:4])), "w/h beyond tolerance"
    assert d[:, 4].max() <= 2e-4, f"objectness differs by {d[:, 4].max()}"
    assert d[:, 5:].max() <= 2e-4, f"class probabilities differ by {d[:, 5:].max()}"
    col_sum = pred.astype(np.float64).sum(0)
    assert np.all(np.abs(col_sum - golden["pred_col_sum"]) <= 2e-5 * golden["pred_col_abs_sum"])


@pytest.mark.slow
@pytest.mark.parametrize("arch", AVAILABLE_MODELS)
def test_architecture_matches_official_outputs(arch: str) -> None:
    model = _fused_model(arch)
    for inp in INPUTS:
        golden, x, orig_shape = _golden(arch, inp)
        with torch.inference_mode():
            sums, decoded, raw = model.forward_layers(x, lambda t: t.double().sum().item())
        assert tuple(decoded.shape) == tuple(golden["pred_shape"])

        # per-layer sums: the first diverging layer points at the bug
        layer_index = golden["layer_index"]
        rel = np.abs(np.asarray(sums)[layer_index] - golden["layer_sum"]) / golden["layer_abs_sum"]
        bad = layer_index[rel > 1e-5]
        assert bad.size == 0, f"{arch}/{inp}: first diverging layer {bad[:1]}"
        for level, t in enumerate(raw):
            assert tuple(t.shape) == tuple(golden["raw_shapes"][level])
            assert abs(t.double().sum().item() - golden["raw_sum"][level]) <= \
                1e-5 * golden["raw_abs_sum"][level]

        pred = decoded[0].numpy()
        _check_predictions(pred, golden)

        # end to end: our model -> our NMS -> scale to the original image
        for setting, conf, iou in (("conf0p25_iou0p45", 0.25, 0.45),
                                   ("conf0p001_iou0p65", 0.001, 0.65)):
            det = non_max_suppression(decoded, conf, iou)[0]
            det[:, :4] = scale_boxes(det[:, :4], x.shape[2:], orig_shape[:2])
            gold = golden[f"det_{setting}"]
            matched = _match_detections(det.numpy(), gold)
            if conf == 0.25:
                margin = float(golden["nms_conf0p25_iou0p45_min_conf_margin"])
                slack = 1 if margin < 1e-4 else 0
                assert abs(len(det) - len(gold)) <= slack, f"{arch}/{inp}: {len(det)} vs {len(gold)}"
                assert matched >= len(gold) - slack, f"{arch}/{inp}: {matched}/{len(gold)} matched"
            else:
                assert matched >= 291, f"{arch}/{inp} @0.001: only {matched}/{len(gold)} matched"


def test_batch_norm_eps_bug_is_caught() -> None:
    """The check above must fail for the classic porting bug (BatchNorm eps 1e-5)."""
    state = regenerate_state("yolov7-tiny")
    model = create_model("yolov7-tiny")
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.eps = 1e-5
    model.float().fuse().eval()
    golden, x, _ = _golden("yolov7-tiny", "coco139")
    with torch.inference_mode():
        pred = model(x)[0].numpy()
    with pytest.raises(AssertionError):
        _check_predictions(pred, golden)


def test_unfused_equals_fused() -> None:
    state = {k: torch.from_numpy(v) for k, v in regenerate_state("yolov7").items()}
    unfused = create_model("yolov7")
    unfused.load_state_dict(state)
    unfused.float().eval()
    golden, x, _ = _golden("yolov7", "pets100")
    with torch.inference_mode():
        pred = unfused(x)[0].numpy()
    _check_predictions(pred, golden)
