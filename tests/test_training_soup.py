"""Model soups (training/soup.py, `yolov7-track soup`): the mean of finetuned weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from detector import create_model, load_model, save_model
from detector.weights_format import read_weights, read_weights_metadata
from training.cli import soup_main
from training.errors import TrainingError
from training.soup import SOUP_REFERENCE, uniform_soup, write_soup

NAMES = ["car", "person"]


def _model_file(directory: Path, name: str, seed: int, names=NAMES, arch="yolov7-tiny") -> Path:
    torch.manual_seed(seed)
    model = create_model(arch, len(names), names=names)
    with torch.no_grad():  # distinct BatchNorm statistics too, as after training
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
                module.num_batches_tracked.fill_(seed + 1)
    return save_model(model, directory / f"{name}.safetensors", half=False,
                      provenance={"stage": name})


def test_uniform_soup_is_the_elementwise_mean(tmp_path):
    paths = [_model_file(tmp_path, f"m{i}", seed=i) for i in range(3)]
    states = [read_weights(p)[0] for p in paths]
    soup, metadata = uniform_soup(paths)
    assert soup.keys() == states[0].keys()
    averaged = 0
    for name, tensor in soup.items():
        if tensor.is_floating_point():
            expected = (states[0][name] + states[1][name] + states[2][name]) / 3
            torch.testing.assert_close(tensor, expected, rtol=0, atol=1e-6)
            averaged += 1
        else:  # integer buffers come from the first model
            assert torch.equal(tensor, states[0][name])
    assert averaged > 100
    recipe = metadata["provenance"]["soup"]
    assert recipe["method"] == SOUP_REFERENCE
    assert [i["path"] for i in recipe["ingredients"]] == [str(p) for p in paths]
    assert [i["provenance"]["stage"] for i in recipe["ingredients"]] == ["m0", "m1", "m2"]
    assert all(len(i["sha256"]) == 64 for i in recipe["ingredients"])
    assert metadata["names"] == NAMES and "metrics" not in metadata


def test_the_soup_loads_as_a_model(tmp_path):
    paths = [_model_file(tmp_path, f"m{i}", seed=i) for i in range(2)]
    out = write_soup(tmp_path / "soup.safetensors", paths)
    model = load_model(out)
    assert list(model.names) == NAMES
    with torch.no_grad():
        prediction = model.eval()(torch.zeros(1, 3, 64, 64))
    prediction = prediction[0] if isinstance(prediction, tuple) else prediction
    assert prediction.shape[-1] == 5 + len(NAMES) and torch.isfinite(prediction).all()
    assert read_weights_metadata(out)["provenance"]["soup"]["ingredients"][1]["path"] == str(paths[1])


def test_incompatible_ingredients_are_refused_with_both_files_named(tmp_path):
    base = _model_file(tmp_path, "base", seed=0)
    other_classes = _model_file(tmp_path, "classes", seed=1, names=["car", "truck"])
    with pytest.raises(TrainingError, match=r"classes\.safetensors with .*base\.safetensors: their names differ"):
        uniform_soup([base, other_classes])
    other_arch = _model_file(tmp_path, "arch", seed=1, arch="yolov7")
    with pytest.raises(TrainingError, match="their arch differ"):
        uniform_soup([base, other_arch])
    with pytest.raises(TrainingError, match="at least two"):
        uniform_soup([base])
    with pytest.raises(TrainingError, match="is one of the ingredients"):
        write_soup(base, [base, _model_file(tmp_path, "m1", seed=1)])


def test_soup_command(tmp_path, capsys):
    paths = [str(_model_file(tmp_path, f"m{i}", seed=i)) for i in range(2)]
    out = tmp_path / "soup.safetensors"
    assert soup_main([*paths, "--out", str(out)]) == 0
    assert out.is_file() and "soup of 2 models" in capsys.readouterr().out
    assert soup_main([paths[0], str(tmp_path / "missing.safetensors"), "--out", str(tmp_path / "x.safetensors")]) == 1
    assert "missing.safetensors" in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists()


def test_anchors_equal_to_float16_rounding_are_one_architecture(tmp_path):
    from detector.weights_format import write_weights

    base = _model_file(tmp_path, "base", seed=0)
    state, meta = read_weights(base)
    meta["anchors_px"] = [[[w * (1 + 2e-7), h] for w, h in level] for level in meta["anchors_px"]]
    rounded = write_weights(tmp_path / "rounded.safetensors", state, meta)
    uniform_soup([base, rounded])
    meta["anchors_px"] = [[[w * 1.01, h] for w, h in level] for level in meta["anchors_px"]]
    shifted = write_weights(tmp_path / "shifted.safetensors", state, meta)
    with pytest.raises(TrainingError, match="anchors_px differ"):
        uniform_soup([base, shifted])


def test_img_size_is_recorded_and_checked(tmp_path, capsys):
    paths = [str(_model_file(tmp_path, f"m{i}", seed=i)) for i in range(2)]
    out = tmp_path / "soup.safetensors"
    assert soup_main([*paths, "--out", str(out), "--img-size", "736"]) == 0
    assert read_weights_metadata(out)["img_size"] == 736 and load_model(out).img_size == 736
    assert soup_main([*paths, "--out", str(tmp_path / "bad.safetensors"), "--img-size", "700"]) == 1
    assert "not a multiple of the model's largest stride 32" in capsys.readouterr().err
