"""yolov7-track's safetensors weights format (detector.weights_format)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from detector import weights_format
from detector.errors import CheckpointError
from detector.weights_format import FORMAT_VERSION, METADATA_KEY, read_weights, read_weights_metadata, write_weights

METADATA = {
    "arch": "yolov7-tiny",
    "num_classes": 3,
    "names": ["person", "vélo", "車"],  # non-ASCII names survive
    "anchors_px": [[[10.0, 13.0], [16.0, 30.0], [33.0, 23.0]]],
    "strides": [8.0, 16.0, 32.0],
    "img_size": 640,
    "head": "Detect",
    "provenance": {"source": "yolov7-tiny.pt", "created": "2026-01-01T00:00:00Z", "metrics": {"map50_95": 0.387}},
}


def _state() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    base = torch.randn(4, 6, generator=generator)
    return {
        "model.0.conv.weight": torch.randn(8, 3, 3, 3, generator=generator).half(),
        "model.0.bn.running_var": torch.rand(8, generator=generator),
        "model.0.bn.num_batches_tracked": torch.tensor(0),  # 0-d int64
        "model.1.bf16": torch.randn(5, generator=generator).to(torch.bfloat16),
        "model.2.transposed": base.t(),  # non-contiguous view
        "model.3.first_rows": base[:2],  # shares memory with the next one
        "model.3.last_rows": base[2:],
        "model.4.mask": torch.tensor([True, False, True]),
        "model.5.bytes": torch.arange(7, dtype=torch.uint8),
        "model.6.empty": torch.zeros(0, 3),
        "model.7.param": torch.nn.Parameter(torch.ones(2, 2)),  # requires_grad
    }


def _files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_round_trip_keeps_values_dtypes_and_metadata(tmp_path: Path) -> None:
    state = _state()
    path = write_weights(tmp_path / "w.safetensors", state, METADATA)
    assert path == tmp_path / "w.safetensors"
    assert _files(tmp_path) == ["w.safetensors"]  # no temporary file left
    loaded, metadata = read_weights(path)
    assert list(loaded) == sorted(state)
    for name, tensor in state.items():
        assert loaded[name].dtype == tensor.dtype, name
        assert loaded[name].shape == tensor.shape, name
        assert torch.equal(loaded[name], tensor.detach()), name
        assert not loaded[name].requires_grad
    assert metadata == {"format_version": FORMAT_VERSION, **METADATA}
    assert read_weights_metadata(path) == metadata


def test_overwrite_replaces_the_file(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    write_weights(path, {"a": torch.zeros(2)}, METADATA)
    write_weights(path, {"b": torch.ones(3)}, {**METADATA, "arch": "yolov7"})
    loaded, metadata = read_weights(path)
    assert list(loaded) == ["b"] and metadata["arch"] == "yolov7"
    assert _files(tmp_path) == ["w.safetensors"]


def test_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_weights(tmp_path / "w.safetensors", {"a": torch.zeros(2)}, METADATA)
    before = path.read_bytes()

    def disk_full(tensors: object, filename: str, metadata: object = None) -> None:
        Path(filename).write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(weights_format, "save_file", disk_full)
    with pytest.raises(CheckpointError, match=r"cannot write weights to .*w\.safetensors.*No space left"):
        write_weights(path, {"a": torch.ones(2)}, METADATA)
    assert path.read_bytes() == before
    assert _files(tmp_path) == ["w.safetensors"]


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"cannot write weights to .*nowhere"):
        write_weights(tmp_path / "nowhere" / "w.safetensors", {"a": torch.zeros(1)}, METADATA)


@pytest.mark.parametrize(
    ("state", "metadata", "error", "message"),
    [
        pytest.param({"a": [1.0]}, METADATA, TypeError, "not a torch.Tensor", id="non-tensor"),
        pytest.param({1: torch.zeros(1)}, METADATA, TypeError, "keys must be", id="non-str-key"),
        pytest.param({"a": torch.zeros(1)}, {k: v for k, v in METADATA.items() if k != "arch"}, ValueError, "'arch'", id="no-arch"),
        pytest.param({"a": torch.zeros(1)}, {**METADATA, "num_classes": True}, ValueError, "'num_classes'", id="bool-nc"),
        pytest.param({"a": torch.zeros(1)}, {**METADATA, "num_classes": 4}, ValueError, "'names' must be 4", id="names-count"),
        pytest.param({"a": torch.zeros(1)}, {**METADATA, "names": ["a", "b", 3]}, ValueError, "'names'", id="names-type"),
        pytest.param({"a": torch.zeros(1)}, {**METADATA, "score": math.nan}, ValueError, "strict JSON", id="nan"),
        pytest.param({"a": torch.zeros(1)}, {**METADATA, "when": object()}, ValueError, "strict JSON", id="not-json"),
        pytest.param({"a": torch.zeros(1)}, {**METADATA, "format_version": 2}, ValueError, "format_version", id="version"),
    ],
)
def test_invalid_input_is_refused_and_nothing_written(
    tmp_path: Path, state: dict, metadata: dict, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        write_weights(tmp_path / "w.safetensors", state, metadata)
    assert _files(tmp_path) == []


def _raw_safetensors(path: Path, metadata: dict[str, str] | None) -> Path:
    save_file({"a": torch.zeros(2)}, str(path), metadata=metadata)
    return path


def _truncated(path: Path) -> Path:
    good = write_weights(path, _state(), METADATA)
    data = good.read_bytes()
    good.write_bytes(data[: len(data) // 2])
    return good


@pytest.mark.parametrize(
    ("make", "message"),
    [
        pytest.param(lambda p: p, r"weights file not found: .*w\.safetensors", id="missing"),
        pytest.param(lambda p: (p.write_bytes(b"PK\x03\x04 not a safetensors file at all"), p)[1], r"not a readable safetensors file", id="garbage"),
        pytest.param(lambda p: (p.write_bytes(b""), p)[1], r"not a readable safetensors file", id="empty"),
        pytest.param(_truncated, r"not a readable safetensors file", id="truncated"),
        pytest.param(lambda p: _raw_safetensors(p, None), r"without yolov7-track metadata.*yolov7-track convert", id="no-metadata"),
        pytest.param(lambda p: _raw_safetensors(p, {"format": "pt"}), r"without yolov7-track metadata", id="foreign-metadata"),
        pytest.param(lambda p: _raw_safetensors(p, {METADATA_KEY: "{not json"}), r"not valid JSON", id="bad-json"),
        pytest.param(lambda p: _raw_safetensors(p, {METADATA_KEY: "[1, 2]"}), r"not a JSON object", id="json-list"),
        pytest.param(lambda p: _raw_safetensors(p, {METADATA_KEY: json.dumps(METADATA)}), r"format_version None", id="no-version"),
        pytest.param(
            lambda p: _raw_safetensors(p, {METADATA_KEY: json.dumps({**METADATA, "format_version": FORMAT_VERSION + 1})}),
            r"version 2, but this yolov7-track reads up to version 1; upgrade", id="newer-version",
        ),
        pytest.param(
            lambda p: _raw_safetensors(p, {METADATA_KEY: json.dumps({"format_version": 1, "arch": "yolov7"})}),
            r"invalid yolov7-track metadata: 'num_classes'", id="incomplete",
        ),
    ],
)
def test_unreadable_files_are_refused(tmp_path: Path, make, message: str) -> None:
    path = make(tmp_path / "w.safetensors")
    for reader in (read_weights, read_weights_metadata):
        with pytest.raises(CheckpointError, match=message) as info:
            reader(path)
        assert str(path) in str(info.value)


def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="is a directory"):
        read_weights(tmp_path)
