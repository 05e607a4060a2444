"""load_model / save_model / convert: official checkpoints, our format, training forms, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from app.cli import main as cli_main
from detector import (
    CheckpointError,
    UnsafeCheckpointError,
    WeightsMismatchError,
    create_model,
    load_model,
    save_model,
    to_deploy,
)
from detector.weights_format import read_weights, write_weights
from yolov7_fixtures import fixture_path, official_checkpoint_path, regenerate_state

MARKER = Path("/tmp/yolov7_track_pwned")


@pytest.fixture(autouse=True)
def _threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _input(name: str = "coco139", key: str = "x640_u8") -> torch.Tensor:
    u8 = np.load(fixture_path("inputs", f"{name}.npz"))[key]
    return torch.from_numpy(u8.astype(np.float32)[None] / np.float32(255))


def _predict(model, x: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        return model(x)[0].numpy()


@pytest.mark.parametrize("arch", ["yolov7-tiny", "yolov7"])
def test_official_checkpoint_loads_bit_exact_and_matches_golden(arch: str) -> None:
    path = official_checkpoint_path(arch)
    stored = load_model(path, fuse=False)
    assert stored.arch == arch and stored.head_form == "deploy"
    assert stored.names[0] == "person" and len(stored.names) == 80
    expected = regenerate_state(arch)
    state = stored.state_dict()
    assert list(state) == list(expected)
    for key, value in expected.items():
        ours = state[key].numpy()
        if value.dtype == np.float16:
            ours = ours.astype(np.float16)  # fp16 -> fp32 -> fp16 is exact
        assert np.array_equal(ours, value), key

    fused = load_model(path)
    golden = np.load(fixture_path("golden", f"{arch}__coco139.npz"))
    pred = _predict(fused, _input())
    assert pred.shape == tuple(golden["pred_shape"][1:])
    rows = pred[golden["pred_rows_index"]]
    assert np.abs(rows[:, 4:] - golden["pred_rows"][:, 4:]).max() <= 2e-4
    assert np.abs(rows[:, :2] - golden["pred_rows"][:, :2]).max() <= 1e-2


def test_malicious_checkpoint_is_refused_and_nothing_runs() -> None:
    MARKER.unlink(missing_ok=True)
    with pytest.raises(UnsafeCheckpointError, match="posix.system"):
        load_model(fixture_path("malicious.pt"))
    assert not MARKER.exists()


def test_convert_then_load_gives_identical_outputs(tmp_path: Path) -> None:
    source = official_checkpoint_path("yolov7-tiny")
    out = tmp_path / "tiny.safetensors"
    assert cli_main(["convert", str(source), str(out)]) == 0
    _, meta = read_weights(out)
    assert meta["arch"] == "yolov7-tiny" and meta["num_classes"] == 80
    assert meta["provenance"]["source"] == str(source)
    x = _input("pets100")
    assert np.array_equal(_predict(load_model(source), x), _predict(load_model(out), x))


def test_convert_reports_bad_input_in_one_line(tmp_path: Path, capsys) -> None:
    status = cli_main(["convert", str(tmp_path / "missing.pt"), str(tmp_path / "o.safetensors")])
    assert status == 1
    err = capsys.readouterr().err.strip()
    assert "missing.pt" in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_missing_file_error_names_it(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="nope.pt"):
        load_model(tmp_path / "nope.pt")


def test_saving_a_fused_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="fused"):
        save_model(create_model("yolov7-tiny", 2).fuse(), tmp_path / "x.safetensors")


def test_custom_classes_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model("yolov7-tiny", 2, names=["car", "bus"]).eval()
    path = save_model(model, tmp_path / "cars", half=False, metrics={"mAP@0.5": 0.5})
    assert path.suffix == ".safetensors"
    loaded = load_model(path, fuse=False)
    assert loaded.names == ["car", "bus"] and loaded.num_classes == 2
    assert loaded.metrics == {"mAP@0.5": 0.5}
    x = torch.rand(1, 3, 128, 160)
    assert np.array_equal(_predict(model, x), _predict(loaded, x))


def test_weights_for_another_architecture_are_refused(tmp_path: Path) -> None:
    model = create_model("yolov7-tiny", 2)
    meta = model.describe() | {"arch": "yolov7"}
    path = write_weights(tmp_path / "wrong.safetensors", model.state_dict(), meta)
    with pytest.raises(WeightsMismatchError, match="missing"):
        load_model(path)


def test_unknown_official_variant_is_refused(tmp_path: Path) -> None:
    """An official-format file whose tensors fit no architecture: loud, not half-loaded."""
    import shutil

    path = tmp_path / "yolov7-tiny.pt"
    shutil.copy(official_checkpoint_path("yolov7-tiny"), path)
    model = load_model(path, fuse=False)
    state = model.state_dict()
    state.pop("model.0.conv.weight")
    with pytest.raises(WeightsMismatchError, match="model.0.conv.weight"):
        from detector.checkpoint import _load_exact

        _load_exact(create_model("yolov7-tiny"), state, path)


@pytest.mark.parametrize("arch", ["yolov7-tiny", "yolov7-w6"])
def test_training_form_folds_to_deploy(arch: str, tmp_path: Path) -> None:
    torch.manual_seed(1)
    train = create_model(arch, 3, training_head=True)
    with torch.no_grad():  # non-trivial implicit knowledge and BN statistics
        for name, p in train.named_parameters():
            if "implicit" in name:
                p.add_(torch.randn_like(p) * 0.1)
    train.eval()
    size = 128 if arch == "yolov7-tiny" else 256
    x = torch.rand(1, 3, size, size)

    train.train()
    raw = train(x)
    expected_maps = 2 * train.head.nl if arch.endswith("w6") else train.head.nl
    assert len(raw) == expected_maps and raw[0].shape[-1] == 8
    train.eval()

    reference = _predict(train, x)
    deploy = to_deploy(train).eval()
    assert deploy.head_form == "deploy" and len(deploy.model) < len(train.model) + 1
    np.testing.assert_allclose(_predict(deploy, x), reference, rtol=1e-4, atol=1e-3)

    path = save_model(train, tmp_path / "train.safetensors", half=False)
    fused = load_model(path)  # training form -> deploy -> fused
    assert fused.head_form == "deploy" and fused.is_fused
    np.testing.assert_allclose(_predict(fused, x), reference, rtol=1e-4, atol=1e-3)
    assert load_model(path, fuse=False).head_form == "training"


def test_model_call_contract() -> None:
    """Eval-mode ``model(x)``: (B, 3, H, W) RGB 0-1 -> (B, N, 5 + nc) in input pixels."""
    model = create_model("yolov7-tiny", 4).eval()
    x = torch.rand(2, 3, 96, 160)
    with torch.inference_mode():
        out = model(x)
    n = 3 * sum((96 // s) * (160 // s) for s in (8, 16, 32))
    assert out.shape == (2, n, 9)
    assert out[..., 4:].min() >= 0 and out[..., 4:].max() <= 1
    assert 0 <= float(out[..., 0].mean()) <= 160 and 0 <= float(out[..., 1].mean()) <= 96


def test_official_training_checkpoint_names() -> None:
    from detector.checkpoint import _arch_hint

    assert _arch_hint("cfg/training/yolov7-e6e.yaml") == "yolov7-e6e"
    assert _arch_hint("yolov7_training.yaml") == "yolov7"
    assert _arch_hint("yolov7-tiny-silu.yaml") is None
    assert _arch_hint(None) is None
