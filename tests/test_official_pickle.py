"""Restricted reading of official YOLOv7 checkpoints (detector.official_pickle)."""

from __future__ import annotations

import collections
import copy
import os
import pickle
import struct
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from detector.errors import CheckpointError, UnsafeCheckpointError
from detector.official_pickle import (
    OfficialCheckpoint,
    load_restricted_pickle,
    read_official_checkpoint,
    read_state_dict_pickle,
)
from yolov7_fixtures import (
    OFFICIAL_FORMAT_ARCHS,
    coco_names,
    fixture_path,
    load_recipe,
    official_checkpoint_path,
    read_state_spec,
    regenerate_state,
)

PWNED_MARKER = Path("/tmp/yolov7_track_pwned")


@pytest.fixture(scope="module", params=OFFICIAL_FORMAT_ARCHS)
def official(request: pytest.FixtureRequest) -> tuple[str, OfficialCheckpoint]:
    return request.param, read_official_checkpoint(official_checkpoint_path(request.param))


@pytest.fixture()
def torch_load_forbidden(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if anything calls torch.load."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("torch.load must not be used to read checkpoints")

    monkeypatch.setattr(torch, "load", refuse)


# ------------------------------------------------------------------ official-format fixtures


def test_official_state_dict_equals_recipe_bit_for_bit(official: tuple[str, OfficialCheckpoint]) -> None:
    arch, checkpoint = official
    expected = regenerate_state(arch)
    assert list(checkpoint.state_dict) == list(expected)  # official keys, official order
    for key, array in expected.items():
        tensor = checkpoint.state_dict[key]
        assert tensor.device.type == "cpu", key
        assert tensor.dtype == {np.float16: torch.float16, np.int64: torch.int64}[array.dtype.type], key
        assert tuple(tensor.shape) == array.shape, key
        # Compare raw bits, not values: -0.0 vs 0.0 or NaN payloads would slip through ==.
        assert tensor.contiguous().numpy().tobytes() == np.ascontiguousarray(array).tobytes(), key


def test_official_kinds_follow_state_spec(official: tuple[str, OfficialCheckpoint]) -> None:
    arch, checkpoint = official
    spec = read_state_spec(arch)
    assert [row.key for row in spec] == list(checkpoint.state_dict)


def test_official_metadata(official: tuple[str, OfficialCheckpoint]) -> None:
    arch, checkpoint = official
    detect = load_recipe()["archs"][arch]["detect"]
    assert checkpoint.names == coco_names()
    assert checkpoint.num_classes == 80
    assert checkpoint.stride == [8.0, 16.0, 32.0]
    assert checkpoint.head == "Detect"
    assert checkpoint.yaml_file == f"{arch}.yaml"
    assert checkpoint.yaml is not None and checkpoint.yaml["nc"] == 80
    assert checkpoint.anchors_px == detect["anchors_px"]
    assert len(checkpoint.module_types) == detect["index"] + 1
    assert checkpoint.module_types[detect["index"]] == "Detect"
    assert checkpoint.source_key == "model"
    assert checkpoint.epoch == -1
    assert checkpoint.extra == {"has_optimizer": False, "training_results": None}


@pytest.mark.parametrize(
    ("arch", "activation", "layer_types"),
    [
        ("yolov7-tiny", "LeakyReLU(negative_slope=0.1)", {"Conv", "Concat", "MP", "SP", "Upsample", "Detect"}),
        ("yolov7", "SiLU", {"Conv", "Concat", "MP", "SPPCSPC", "RepConv", "Upsample", "Detect"}),
    ],
)
def test_official_hyper_parameters(arch: str, activation: str, layer_types: set[str]) -> None:
    checkpoint = read_official_checkpoint(official_checkpoint_path(arch))
    assert checkpoint.hyper["batchnorm_eps"] == [0.001]
    assert checkpoint.hyper["batchnorm_momentum"] == [0.03]
    assert checkpoint.hyper["activations"] == [activation]
    assert checkpoint.hyper["upsample"] == [{"scale_factor": 2.0, "mode": "nearest"}]
    assert checkpoint.hyper["head"] == {"nc": 80, "no": 85, "nl": 3, "na": 3}
    assert set(checkpoint.module_types.values()) == layer_types
    assert checkpoint.module_attributes["model.0.bn"]["eps"] == 0.001
    assert checkpoint.module_attributes["model.0.conv"]["class"] == "torch.nn.modules.conv.Conv2d"


def test_official_read_imports_and_calls_nothing(torch_load_forbidden: None) -> None:
    assert "models" not in sys.modules
    checkpoint = read_official_checkpoint(official_checkpoint_path("yolov7-tiny"))
    assert len(checkpoint.state_dict) == 338
    assert "models" not in sys.modules  # the official package was never imported


# ------------------------------------------------------------------ refusals


def test_malicious_checkpoint_is_refused_without_side_effect(torch_load_forbidden: None) -> None:
    PWNED_MARKER.unlink(missing_ok=True)
    path = fixture_path("malicious.pt")
    for reader in (read_official_checkpoint, read_state_dict_pickle):
        with pytest.raises(UnsafeCheckpointError) as info:
            reader(path)
        assert "posix.system" in str(info.value)
        assert str(path) in str(info.value)
    assert not PWNED_MARKER.exists()


def _write_torch_zip(path: Path, pickle_bytes: bytes, records: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", pickle_bytes)
        for key, payload in (records or {}).items():
            archive.writestr(f"archive/data/{key}", payload)
        archive.writestr("archive/version", "3\n")
    return path


def _global_call_pickle(module: str, name: str, argument: str, protocol: int) -> bytes:
    """``{'model': module.name(argument)}`` written opcode by opcode (GLOBAL for protocol 2,
    STACK_GLOBAL for protocol 4), as an attacker would."""

    def text(value: str) -> bytes:  # BINUNICODE
        data = value.encode("utf-8")
        return b"X" + struct.pack("<I", len(data)) + data

    if protocol == 2:
        callable_ops = b"c" + f"{module}\n{name}\n".encode()  # GLOBAL
    else:
        callable_ops = text(module) + text(name) + b"\x93"  # STACK_GLOBAL
    return (
        bytes([0x80, protocol])  # PROTO
        + b"}"  # EMPTY_DICT
        + text("model")
        + callable_ops
        + text(argument)
        + b"\x85"  # TUPLE1
        + b"R"  # REDUCE: the call an unrestricted unpickler would make
        + b"s"  # SETITEM
        + b"."  # STOP
    )


FORBIDDEN_GLOBALS = [
    ("builtins", "eval"),
    ("builtins", "exec"),
    ("builtins", "getattr"),
    ("builtins", "__import__"),
    ("os", "system"),
    ("posix", "system"),
    ("subprocess", "Popen"),
    ("torch", "load"),
    ("torch.serialization", "load"),
    ("numpy", "load"),
    ("models.common", "os"),  # an allow-listed module, but not an allow-listed name
    ("collections", "namedtuple"),
]


@pytest.mark.parametrize("protocol", [2, 4])
@pytest.mark.parametrize(("module", "name"), FORBIDDEN_GLOBALS)
def test_forbidden_global_is_refused(tmp_path: Path, module: str, name: str, protocol: int) -> None:
    marker = tmp_path / "executed"
    payload = f"open({str(marker)!r}, 'w')" if name in ("eval", "exec") else f"touch {marker}"
    path = _write_torch_zip(tmp_path / "evil.pt", _global_call_pickle(module, name, payload, protocol))
    with pytest.raises(UnsafeCheckpointError, match=rf"'{module}\.{name}'"):
        read_official_checkpoint(path)
    assert not marker.exists()


def _text(value: str) -> bytes:
    data = value.encode("utf-8")
    return b"X" + struct.pack("<I", len(data)) + data


def _build_on_global_pickle(module: str, name: str, attribute: str) -> bytes:
    """A protocol-2 pickle that applies BUILD with ``(None, {attribute: (1,)})`` to the global
    itself, i.e. tries ``setattr(module.name, attribute, (1,))``."""
    return (
        b"\x80\x02" + b"c" + f"{module}\n{name}\n".encode()
        + b"N}" + _text(attribute) + b"K\x01\x85" + b"s" + b"\x86"  # state = (None, {attribute: (1,)})
        + b"b" + b"."  # BUILD, STOP
    )


@pytest.mark.parametrize(
    ("module", "name", "attribute"),
    [
        ("torch._utils", "_rebuild_tensor_v2", "__defaults__"),
        ("torch._utils", "_rebuild_parameter", "__kwdefaults__"),
        ("torch", "HalfStorage", "dtype"),
        ("models.common", "Conv", "qualified_name"),
        ("collections", "OrderedDict", "fromkeys"),
        ("numpy", "ndarray", "shape"),
    ],
)
def test_allow_listed_globals_cannot_be_modified(tmp_path: Path, module: str, name: str, attribute: str) -> None:
    path = _write_torch_zip(tmp_path / "tamper.pt", _build_on_global_pickle(module, name, attribute))
    with pytest.raises(CheckpointError):
        load_restricted_pickle(path)
    # The shared allow-list objects still work: the official checkpoint reads as before.
    checkpoint = read_official_checkpoint(official_checkpoint_path("yolov7-tiny"))
    assert checkpoint.state_dict["model.0.conv.weight"].dtype == torch.float16
    assert checkpoint.module_types[0] == "Conv"


def test_numpy_builtin_dtypes_cannot_be_modified(tmp_path: Path) -> None:
    # numpy.dtype('f8', False, False) would be numpy's shared float64 instance; BUILD then sets
    # its state (here: big-endian). The reader must hand out a copy instead.
    state = b"(K\x03" + _text(">") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t"
    data = b"\x80\x02cnumpy\ndtype\n" + _text("f8") + b"\x89\x89\x87R" + state + b"b."
    loaded = load_restricted_pickle(_write_torch_zip(tmp_path / "dtype.pt", data))
    assert loaded.byteorder == ">"
    assert np.dtype("f8").byteorder == "="


class _ShellPayload:
    """Pickles itself as a call to ``os.system`` (the classic attack)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (self.command,)


@pytest.mark.parametrize("protocol", [2, 4])
def test_pickler_written_payload_is_refused(tmp_path: Path, protocol: int) -> None:
    marker = tmp_path / "executed"
    data = pickle.dumps({"model": collections.OrderedDict(w=_ShellPayload(f"touch {marker}"))}, protocol=protocol)
    path = _write_torch_zip(tmp_path / "evil.pt", data)
    with pytest.raises(UnsafeCheckpointError, match=r"system"):
        read_state_dict_pickle(path)
    assert not marker.exists()


def test_unsafe_error_is_a_checkpoint_error() -> None:
    assert issubclass(UnsafeCheckpointError, CheckpointError)


def _truncated_copy(tmp_path: Path, size: int) -> Path:
    path = tmp_path / "truncated.pt"
    with official_checkpoint_path("yolov7-tiny").open("rb") as source:
        path.write_bytes(source.read(size))
    return path


@pytest.mark.parametrize(
    ("label", "make", "message"),
    [
        ("missing", lambda d: d / "nope.pt", r"not found"),
        ("empty", lambda d: _bytes(d, b""), r"not a torch zip checkpoint"),
        ("garbage", lambda d: _bytes(d, os.urandom(4096)), r"not a torch zip checkpoint"),
        ("legacy pickle", lambda d: _bytes(d, pickle.dumps({"model": None}, protocol=2)), r"not a torch zip"),
        ("truncated 1 MB", lambda d: _truncated_copy(d, 1 << 20), r"not a torch zip checkpoint"),
        ("zip without data.pkl", lambda d: _plain_zip(d), r"not a torch checkpoint"),
        ("truncated pickle", lambda d: _write_torch_zip(d / "t.pt", pickle.dumps({"a": [1, 2, 3]}, 2)[:-5]), r"cannot unpickle"),
        ("not a dict", lambda d: _write_torch_zip(d / "t.pt", pickle.dumps([1, 2], 2)), r"expected a dict"),
        ("no model", lambda d: _write_torch_zip(d / "t.pt", pickle.dumps({"epoch": 3}, 2)), r"no YOLOv7 model"),
    ],
)
def test_invalid_files_are_refused(tmp_path: Path, label: str, make, message: str) -> None:
    path = make(tmp_path)
    with pytest.raises(CheckpointError, match=message) as info:
        read_official_checkpoint(path)
    assert not isinstance(info.value, UnsafeCheckpointError), label
    assert str(path) in str(info.value)


def _bytes(directory: Path, data: bytes) -> Path:
    path = directory / "file.pt"
    path.write_bytes(data)
    return path


def _plain_zip(directory: Path) -> Path:
    path = directory / "plain.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    return path


def _saved(tmp_path: Path, obj: object, name: str = "ckpt.pt") -> Path:
    path = tmp_path / name
    torch.save(obj, path)
    return path


def _rewrite_record(path: Path, suffix: str, new_payload: bytes | None) -> None:
    """Replace (or drop, with ``None``) the zip member whose name ends with ``suffix``."""
    with zipfile.ZipFile(path) as source:
        members = [(info, source.read(info)) for info in source.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as target:
        for info, payload in members:
            if info.filename.endswith(suffix):
                if new_payload is None:
                    continue
                payload = new_payload
            target.writestr(info.filename, payload)


def test_short_storage_record_is_refused(tmp_path: Path) -> None:
    path = _saved(tmp_path, {"model": collections.OrderedDict(w=torch.arange(10, dtype=torch.float16))})
    _rewrite_record(path, "/data/0", b"\x00" * 6)
    with pytest.raises(CheckpointError, match=r"has 6 bytes, expected 10 x 2"):
        read_state_dict_pickle(path)


def test_corrupted_storage_bytes_are_refused(tmp_path: Path) -> None:
    path = _saved(tmp_path, {"model": collections.OrderedDict(w=torch.full((64,), 1.5))})
    data = bytearray(path.read_bytes())
    payload_at = data.index(torch.full((64,), 1.5).numpy().tobytes())
    data[payload_at + 10] ^= 0xFF  # flip one byte of the tensor: the zip CRC no longer matches
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"truncated or corrupt"):
        read_state_dict_pickle(path)


def test_missing_storage_record_is_refused(tmp_path: Path) -> None:
    path = _saved(tmp_path, {"model": collections.OrderedDict(w=torch.arange(10, dtype=torch.float16))})
    _rewrite_record(path, "/data/0", None)
    with pytest.raises(CheckpointError, match=r"lacks the storage record"):
        read_state_dict_pickle(path)


# ------------------------------------------------------------------ plain state dicts


@pytest.mark.parametrize("layout", ["bare", "model", "state_dict", "ema"])
def test_state_dict_pickle_round_trip(tmp_path: Path, layout: str) -> None:
    state = collections.OrderedDict(
        [
            ("model.0.conv.weight", torch.randn(4, 3, 3, 3).half()),
            ("model.0.bn.num_batches_tracked", torch.tensor(7)),
            ("model.1.w", torch.arange(12, dtype=torch.float32).reshape(3, 4).t()),  # non-contiguous view
            ("model.2.bf", torch.randn(5).to(torch.bfloat16)),
            ("model.3.param", nn.Parameter(torch.ones(2, 2))),  # pickled via _rebuild_parameter
        ]
    )
    top = {"bare": state, "model": {"model": state, "epoch": -1}, "state_dict": {"state_dict": state},
           "ema": {"ema": state, "model": None}}[layout]
    loaded = read_state_dict_pickle(_saved(tmp_path, top))
    assert list(loaded) == list(state)
    for key, tensor in state.items():
        assert loaded[key].dtype == tensor.dtype and torch.equal(loaded[key], tensor.detach()), key
        assert type(loaded[key]) is torch.Tensor and not loaded[key].requires_grad, key


def test_state_dict_is_pointed_to_the_right_reader(tmp_path: Path) -> None:
    path = _saved(tmp_path, {"model": collections.OrderedDict(w=torch.zeros(2))})
    with pytest.raises(CheckpointError, match=r"read_state_dict_pickle"):
        read_official_checkpoint(path)


def test_module_checkpoint_is_pointed_to_the_right_reader() -> None:
    with pytest.raises(CheckpointError, match=r"read_official_checkpoint"):
        read_state_dict_pickle(official_checkpoint_path("yolov7-tiny"))


# ------------------------------------------------------------------ training checkpoints


def _official_like_classes(monkeypatch: pytest.MonkeyPatch) -> dict[str, type]:
    """nn.Module classes that pickle under the official names (``models.yolo.Model`` ...), so
    ``torch.save`` writes the same globals as the official ``train.py`` without its code."""
    yolo = types.ModuleType("models.yolo")
    common = types.ModuleType("models.common")
    package = types.ModuleType("models")
    package.yolo, package.common = yolo, common
    for name, module in (("models", package), ("models.yolo", yolo), ("models.common", common)):
        monkeypatch.setitem(sys.modules, name, module)

    def define(module: types.ModuleType, name: str, init) -> type:
        cls = type(name, (nn.Module,), {"__init__": init, "__module__": module.__name__, "__qualname__": name})
        setattr(module, name, cls)
        return cls

    def conv_init(self, c1: int, c2: int) -> None:
        nn.Module.__init__(self)
        self.conv = nn.Conv2d(c1, c2, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(c2, eps=0.001, momentum=0.03)
        self.act = nn.SiLU()

    def implicit_a_init(self, channels: int) -> None:
        nn.Module.__init__(self)
        self.implicit = nn.Parameter(torch.randn(1, channels, 1, 1))

    def implicit_m_init(self, channels: int) -> None:
        nn.Module.__init__(self)
        self.implicit = nn.Parameter(torch.randn(1, channels, 1, 1))

    classes: dict[str, type] = {}
    classes["Conv"] = define(common, "Conv", conv_init)
    classes["ImplicitA"] = define(common, "ImplicitA", implicit_a_init)
    classes["ImplicitM"] = define(common, "ImplicitM", implicit_m_init)

    def idetect_init(self, nc: int, channels: int) -> None:
        nn.Module.__init__(self)
        self.nc, self.no, self.nl, self.na = nc, nc + 5, 1, 1
        self.grid = [torch.zeros(1)]
        self.register_buffer("anchors", torch.tensor([[[1.25, 1.625]]]))
        self.register_buffer("anchor_grid", torch.tensor([10.0, 13.0]).view(1, 1, 1, 1, 1, 2))
        self.m = nn.ModuleList([nn.Conv2d(channels, self.no, 1)])
        self.ia = nn.ModuleList([classes["ImplicitA"](channels)])
        self.im = nn.ModuleList([classes["ImplicitM"](self.no)])
        self.stride = torch.tensor([8.0])

    classes["IDetect"] = define(yolo, "IDetect", idetect_init)

    def model_init(self, nc: int) -> None:
        nn.Module.__init__(self)
        self.model = nn.Sequential(classes["Conv"](3, 8), classes["IDetect"](nc, 8))
        self.yaml_file, self.yaml = "tiny-test.yaml", {"nc": nc}
        self.names = [f"c{i}" for i in range(nc)]
        self.nc, self.stride = nc, torch.tensor([8.0])
        self.hyp, self.gr = {"lr0": 0.01}, 1.0
        self.class_weights = torch.ones(nc)

    classes["Model"] = define(yolo, "Model", model_init)
    return classes


@pytest.mark.parametrize("with_ema", [True, False])
def test_training_checkpoint_prefers_ema(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, with_ema: bool) -> None:
    classes = _official_like_classes(monkeypatch)
    torch.manual_seed(0)
    model = classes["Model"](nc=2)
    ema = copy.deepcopy(model)
    with torch.no_grad():
        for parameter in ema.parameters():
            parameter.add_(1.0)  # EMA weights differ from the raw model's
    # What SGD(...).state_dict() holds (built by hand: importing torch.optim costs seconds).
    optimizer_state = {
        "state": {0: {"momentum_buffer": torch.zeros(8, 3, 3, 3)}},
        "param_groups": [{"lr": 0.01, "momentum": 0.9, "nesterov": True, "weight_decay": 0.0005,
                          "foreach": None, "params": list(range(len(list(model.parameters()))))}],
    }
    checkpoint = {
        "epoch": 5,
        "best_fitness": np.array([0.5]),
        "training_results": "results",
        "model": copy.deepcopy(model).half(),
        "ema": copy.deepcopy(ema).half() if with_ema else None,
        "updates": 10,
        "optimizer": optimizer_state,
        "wandb_id": None,
    }
    path = _saved(tmp_path, checkpoint)
    monkeypatch.delitem(sys.modules, "models")  # the reader must not need the classes
    read = read_official_checkpoint(path)

    source = (ema if with_ema else model).half().state_dict()
    assert read.source_key == ("ema" if with_ema else "model")
    assert list(read.state_dict) == list(source)
    for key, tensor in source.items():
        assert torch.equal(read.state_dict[key], tensor), key
    assert read.head == "IDetect"
    assert read.module_types == {0: "Conv", 1: "IDetect"}
    assert read.names == ["c0", "c1"] and read.num_classes == 2
    assert read.stride == [8.0] and read.anchors_px == [[[10.0, 13.0]]]
    assert read.epoch == 5
    assert read.extra["best_fitness"] == 0.5 and read.extra["updates"] == 10
    assert read.extra["has_optimizer"] is True and read.extra["wandb_id"] is None
    assert read.hyper["activations"] == ["SiLU"]


def test_class_count_mismatch_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    classes = _official_like_classes(monkeypatch)
    model = classes["Model"](nc=2)
    model.names = ["only-one"]
    path = _saved(tmp_path, {"model": model})
    with pytest.raises(CheckpointError, match=r"1 names but the head has nc=2"):
        read_official_checkpoint(path)


def test_load_restricted_pickle_returns_plain_data(tmp_path: Path) -> None:
    data = {"a": [1, 2.5, "x", None, True], "b": {3, 4}, "c": (b"\x00\xff",), "d": np.arange(3)}
    loaded = load_restricted_pickle(_saved(tmp_path, data))
    assert loaded["a"] == data["a"] and loaded["b"] == data["b"] and loaded["c"] == data["c"]
    assert np.array_equal(loaded["d"], data["d"])


@pytest.mark.parametrize("protocol", [2, 4])
def test_attack_pickle_helper_is_well_formed(protocol: int) -> None:
    # The forbidden-global tests only prove something if their pickles would really make the
    # call: check it with a harmless global and the standard (unrestricted) unpickler.
    assert pickle.loads(_global_call_pickle("builtins", "len", "abcd", protocol)) == {"model": 4}
