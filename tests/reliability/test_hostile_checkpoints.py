"""Hostile and mistaken model files: each scenario builds the bad input itself.

Covered (issue #11): sizes that would exhaust memory (an ``img_size`` of 100000 in our metadata
or in ``DetectorConfig``, a small ``.pt`` whose zip claims a storage of gigabytes), metadata
that used to end in a Python traceback (fuzzed per field), errors that did not name the file,
an upper-case ``.SAFETENSORS`` suffix, ``train --resume`` on a foreign pickle, NaN/inf weights.

No test allocates gigabytes: a guard on ``zipfile.ZipFile.open`` records any attempt to open a
record larger than :data:`OPEN_GUARD_BYTES`, and the peak RSS of the process is compared before
and after.
"""

from __future__ import annotations

import collections
import json
import math
import pickle
import resource
import struct
import time
import zipfile
import zlib
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from detector import (
    CheckpointError,
    DetectorConfig,
    DetectorConfigError,
    UnknownModelError,
    create_model,
    load_model,
    save_model,
)
from detector.errors import UnsafeCheckpointError
from detector.limits import MAX_IMG_SIZE_PX
from detector.official_pickle import load_restricted_pickle, read_official_checkpoint, read_state_dict_pickle
from detector.weights_format import METADATA_KEY, read_weights, read_weights_metadata
from training.errors import ResumeError
from training.state import load_checkpoint

OPEN_GUARD_BYTES = 64 << 20  # no record of a test input legitimately exceeds this
RSS_GROWTH_LIMIT_KIB = 300 << 10  # 300 MiB: far below the gigabytes a bomb would cost
FAST_S = 5.0  # generous for two loaded cores; a decompressing bomb takes much longer


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# --------------------------------------------------------------------------- helpers: our format


@pytest.fixture(scope="module")
def good_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid yolov7-tiny file with 2 classes (random weights)."""
    torch.manual_seed(0)
    model = create_model("yolov7-tiny", 2, names=["car", "person"])
    return save_model(model, tmp_path_factory.mktemp("good") / "tiny.safetensors")


def _rewrite_metadata(source: Path, target: Path, change: dict[str, Any], drop: tuple[str, ...] = ()) -> Path:
    """Copy ``source`` to ``target`` with its yolov7-track metadata edited, bypassing every check
    of write_weights (``change`` values are written as given, NaN included)."""
    with safe_open(str(source), framework="pt") as reader:
        metadata = json.loads(reader.metadata()[METADATA_KEY])
        state = {name: reader.get_tensor(name) for name in reader.keys()}
    metadata.update(change)
    for key in drop:
        metadata.pop(key, None)
    save_file(state, str(target), metadata={METADATA_KEY: json.dumps(metadata)})  # NaN allowed
    return target


def _assert_one_line_naming(error: BaseException, path: Path, *words: str) -> None:
    text = str(error)
    assert str(path) in text, text
    assert "\n" not in text, text
    for word in words:
        assert word in text, (word, text)


# ----------------------------------------------------------------- 6. sizes that exhaust memory


def test_huge_img_size_in_metadata_is_refused(good_weights: Path, tmp_path: Path) -> None:
    path = _rewrite_metadata(good_weights, tmp_path / "huge.safetensors", {"img_size": 100_000})
    for read in (load_model, read_weights_metadata):
        with pytest.raises(CheckpointError) as info:
            read(path)
        _assert_one_line_naming(info.value, path, "img_size", str(MAX_IMG_SIZE_PX))


@pytest.mark.parametrize("img_size", [65536, MAX_IMG_SIZE_PX + 32, 10**9])
def test_huge_img_size_option_is_refused(img_size: int) -> None:
    with pytest.raises(DetectorConfigError, match=rf"img_size .*{MAX_IMG_SIZE_PX}"):
        DetectorConfig(img_size=img_size)


def test_largest_allowed_img_size_is_accepted() -> None:
    assert DetectorConfig(img_size=MAX_IMG_SIZE_PX).img_size == MAX_IMG_SIZE_PX


def _zip_entry(name: str, data: bytes, *, method: int, crc: int, file_size: int) -> tuple[bytes, bytes, int]:
    """(local header + data, central-directory record without offset patch, data length)."""
    encoded = name.encode()
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0, crc, len(data), file_size,
                        len(encoded), 0) + encoded + data
    return local, encoded, len(data)


def _write_zip(path: Path, entries: list[tuple[str, bytes, int, int, int]]) -> Path:
    """A zip written byte by byte, so that a record can claim any size: entries are
    ``(name, stored bytes, method, crc32, declared uncompressed size)``."""
    body = bytearray()
    central = bytearray()
    for name, data, method, crc, file_size in entries:
        offset = len(body)
        local, encoded, _ = _zip_entry(name, data, method=method, crc=crc, file_size=file_size)
        body += local
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0, crc, len(data),
                               file_size, len(encoded), 0, 0, 0, 0, 0, offset) + encoded
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(central), len(body), 0)
    path.write_bytes(bytes(body + central + end))
    return path


def _stored(name: str, data: bytes) -> tuple[str, bytes, int, int, int]:
    return name, data, zipfile.ZIP_STORED, zlib.crc32(data), len(data)


def _deflated_zeros(total_bytes: int) -> bytes:
    """A raw deflate stream of ``total_bytes`` zero bytes, built without touching them all:
    one fully flushed segment of zeros, repeated (each segment is self-contained)."""
    segment_bytes = 16 << 20
    assert total_bytes % segment_bytes == 0
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    segment = compressor.compress(bytes(segment_bytes)) + compressor.flush(zlib.Z_FULL_FLUSH)
    return segment * (total_bytes // segment_bytes) + compressor.flush(zlib.Z_FINISH)


class _StorageRef:
    """Pickled as the persistent id torch writes for a storage."""

    def __init__(self, key: str, numel: int, storage_type: Any = torch.HalfStorage) -> None:
        self.pid = ("storage", storage_type, key, "cpu", numel)


class _Rebuild:
    """Pickled as ``function(*args)`` (REDUCE); the function is only referenced, never called."""

    def __init__(self, function: Any, *args: Any) -> None:
        self.function, self.args = function, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.function, self.args


class _CheckpointPickler(pickle.Pickler):
    def persistent_id(self, obj: Any) -> Any:
        return obj.pid if isinstance(obj, _StorageRef) else None


def _pickle(obj: Any) -> bytes:
    import io

    buffer = io.BytesIO()
    _CheckpointPickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


def _tensor(key: str, numel: int, size: tuple[int, ...] | None = None, *, offset: int = 0,
            stride: tuple[int, ...] | None = None, hooks: Any = None) -> _Rebuild:
    size = (numel,) if size is None else size
    stride = (1,) * len(size) if stride is None else stride
    return _Rebuild(torch._utils._rebuild_tensor_v2, _StorageRef(key, numel), offset, size, stride, False,
                    collections.OrderedDict() if hooks is None else hooks)


class _ZipOpenGuard:
    """Records every attempt to open a zip record larger than the limit (and refuses it)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.refused: list[tuple[str, int]] = []
        original = zipfile.ZipFile.open

        def guarded(archive: zipfile.ZipFile, name: Any, *args: Any, **kwargs: Any) -> Any:
            info = name if isinstance(name, zipfile.ZipInfo) else archive.getinfo(name)
            if info.file_size > OPEN_GUARD_BYTES:
                self.refused.append((info.filename, info.file_size))
                raise MemoryError(f"test guard: refusing to decompress {info.file_size} bytes")
            return original(archive, name, *args, **kwargs)

        monkeypatch.setattr(zipfile.ZipFile, "open", guarded)


def _peak_rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


BOMB_BYTES = 3 << 30  # 3 GiB of zeros, about 3 MB deflated


@pytest.fixture(scope="module")
def bomb_pt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    numel = BOMB_BYTES // 2  # float16
    data = _deflated_zeros(BOMB_BYTES)
    pkl = _pickle(collections.OrderedDict(w=_tensor("0", numel)))
    path = tmp_path_factory.mktemp("bomb") / "bomb.pt"
    return _write_zip(path, [
        _stored("archive/data.pkl", pkl),
        ("archive/data/0", data, zipfile.ZIP_DEFLATED, 0, BOMB_BYTES),  # crc never reached
        _stored("archive/version", b"3\n"),
    ])


@pytest.mark.parametrize("reader", [load_model, read_state_dict_pickle, read_official_checkpoint])
def test_zip_bomb_storage_is_refused_before_allocation(bomb_pt: Path, reader: Any,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    assert bomb_pt.stat().st_size < 8 << 20
    guard = _ZipOpenGuard(monkeypatch)
    rss_before = _peak_rss_kib()
    started = time.monotonic()
    with pytest.raises(CheckpointError) as info:
        reader(bomb_pt)
    assert time.monotonic() - started < FAST_S
    assert guard.refused == [], "the reader tried to decompress the bomb"
    assert _peak_rss_kib() - rss_before < RSS_GROWTH_LIMIT_KIB
    _assert_one_line_naming(info.value, bomb_pt, "archive/data/0")


def test_stored_record_whose_size_lies_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stored (uncompressed) record that declares 3 GiB but holds 16 bytes."""
    pkl = _pickle(collections.OrderedDict(w=_tensor("0", BOMB_BYTES // 2)))
    path = _write_zip(tmp_path / "liar.pt", [
        _stored("archive/data.pkl", pkl),
        ("archive/data/0", bytes(16), zipfile.ZIP_STORED, zlib.crc32(bytes(16)), BOMB_BYTES),
    ])
    guard = _ZipOpenGuard(monkeypatch)
    with pytest.raises(CheckpointError) as info:
        read_state_dict_pickle(path)
    assert guard.refused == []
    _assert_one_line_naming(info.value, path, "archive/data/0")


def _nested_records(names: list[str], block: bytes) -> tuple[bytes, list[tuple[str, int, int, int]]]:
    """Local headers nested inside each other's data: record k's data is the headers of records
    k+1.. followed by ``block``, so every record "contains" the block (an overlap zip bomb)."""
    tail = block
    records: list[tuple[str, int, int, int]] = []
    for name in reversed(names):
        crc = zlib.crc32(tail)
        local, _, _ = _zip_entry(name, tail, method=zipfile.ZIP_STORED, crc=crc, file_size=len(tail))
        records.append((name, crc, len(tail), len(local) - len(tail)))
        tail = local
    return tail, list(reversed(records))


def test_overlapping_records_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Eight stored records that all cover the same 1 MiB: 8 MiB claimed from a 1 MiB file."""
    names = [f"archive/data/{k}" for k in range(8)]
    nested, records = _nested_records(names, bytes(1 << 20))
    pkl = _pickle(collections.OrderedDict(
        (f"w{k}", _tensor(str(k), size // 2)) for k, (_, _, size, _) in enumerate(records)))
    head = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0, zlib.crc32(pkl), len(pkl), len(pkl),
                       len(b"archive/data.pkl"), 0) + b"archive/data.pkl" + pkl
    body = head + nested
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 0, 0, 0, zlib.crc32(pkl), len(pkl),
                          len(pkl), len(b"archive/data.pkl"), 0, 0, 0, 0, 0, 0) + b"archive/data.pkl"
    offset = len(head)
    for name, crc, size, header_bytes in records:
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 0, 0, 0, crc, size, size,
                               len(name), 0, 0, 0, 0, 0, offset) + name.encode()
        offset += header_bytes
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 9, 9, len(central), len(body), 0)
    path = tmp_path / "overlap.pt"
    path.write_bytes(body + central + end)
    assert sum(size for _, _, size, _ in records) > 4 * path.stat().st_size
    with pytest.raises(CheckpointError) as info:
        read_state_dict_pickle(path)
    _assert_one_line_naming(info.value, path)


def test_compressed_pickle_bomb_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write_zip(tmp_path / "pkl-bomb.pt", [
        ("archive/data.pkl", _deflated_zeros(1 << 30), zipfile.ZIP_DEFLATED, 0, 1 << 30),
    ])
    guard = _ZipOpenGuard(monkeypatch)
    with pytest.raises(CheckpointError) as info:
        load_restricted_pickle(path)
    assert guard.refused == []
    _assert_one_line_naming(info.value, path, "data.pkl")


def test_huge_numpy_array_in_pickle_is_refused(tmp_path: Path) -> None:
    import numpy as np

    reconstruct = np.core.multiarray._reconstruct
    pkl = _pickle({"best_fitness": _Rebuild(reconstruct, np.ndarray, (1 << 40,), b"b")})
    path = _write_zip(tmp_path / "np.pt", [_stored("archive/data.pkl", pkl)])
    with pytest.raises(CheckpointError) as info:
        load_restricted_pickle(path)
    _assert_one_line_naming(info.value, path, "numpy")


# ------------------------------------------------------------- 7. malformed metadata, fuzzed

NAN = float("nan")
TINY_ANCHORS = [[[10, 13], [16, 30], [33, 23]], [[30, 61], [62, 45], [59, 119]], [[116, 90], [156, 198], [373, 326]]]

METADATA_CASES = [
    # field, bad value, words the message must contain
    ("arch", 3, ["arch"]),
    ("arch", None, ["arch"]),
    ("arch", ["yolov7-tiny"], ["arch"]),
    ("num_classes", "2", ["num_classes"]),
    ("num_classes", 2.5, ["num_classes"]),
    ("num_classes", -2, ["num_classes"]),
    ("num_classes", 0, ["num_classes"]),
    ("num_classes", True, ["num_classes"]),
    ("num_classes", NAN, ["num_classes"]),
    ("num_classes", 3, ["names"]),
    ("names", "car,person", ["names"]),
    ("names", ["car", 7], ["names"]),
    ("names", ["car"], ["names"]),
    ("names", None, ["names"]),
    ("names", {"0": "car", "1": "person"}, ["names"]),
    ("img_size", "640", ["img_size"]),
    ("img_size", 640.5, ["img_size"]),
    ("img_size", -640, ["img_size"]),
    ("img_size", 0, ["img_size"]),
    ("img_size", NAN, ["img_size"]),
    ("img_size", 1e308, ["img_size"]),
    ("img_size", True, ["img_size"]),
    ("img_size", 100_000, ["img_size"]),
    ("img_size", 650, ["img_size", "stride"]),
    ("img_size", [640], ["img_size"]),
    ("anchors_px", "10,13", ["anchors_px"]),
    ("anchors_px", [[10, 13]], ["anchors_px"]),
    ("anchors_px", [[10, 13, 16, 30, 33, 23]] * 3, ["anchors_px"]),  # flat per level: (nl, 2*na)
    ("anchors_px", TINY_ANCHORS[:2], ["anchors_px"]),
    ("anchors_px", [row[:2] for row in TINY_ANCHORS], ["anchors_px"]),
    ("anchors_px", [[[10, 13, 1]] * 3] * 3, ["anchors_px"]),
    ("anchors_px", [[[10, NAN]] * 3] * 3, ["anchors_px"]),
    ("anchors_px", [[[10, -13]] * 3] * 3, ["anchors_px"]),
    ("anchors_px", [[[10, 0]] * 3] * 3, ["anchors_px"]),
    ("anchors_px", [[["10", "13"]] * 3] * 3, ["anchors_px"]),
    ("anchors_px", [[[10, 1e30]] * 3] * 3, ["anchors_px"]),
    ("anchors_px", [[[True, 13]] * 3] * 3, ["anchors_px"]),
    ("anchors_px", [], ["anchors_px"]),
    ("anchors_px", 5, ["anchors_px"]),
    ("strides", "8", ["strides"]),
    ("strides", [8, 16], ["strides"]),
    ("strides", [8, 16, NAN], ["strides"]),
    ("strides", [8, -16, 32], ["strides"]),
    ("strides", [[8], [16], [32]], ["strides"]),
    ("strides", [8, 16, 64], ["strides"]),
    ("head_form", "weird", ["head_form"]),
    ("head_form", 1, ["head_form"]),
    ("provenance", [1, 2], ["provenance"]),
    ("metrics", "good", ["metrics"]),
]


@pytest.mark.parametrize(("field", "value", "words"), METADATA_CASES,
                         ids=[f"{f}={v!r:.30}" for f, v, _ in METADATA_CASES])
def test_malformed_metadata_is_a_checkpoint_error(good_weights: Path, tmp_path: Path, field: str, value: Any,
                                                  words: list[str]) -> None:
    path = _rewrite_metadata(good_weights, tmp_path / "bad.safetensors", {field: value})
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    _assert_one_line_naming(info.value, path, *words)


@pytest.mark.parametrize("field", ["arch", "num_classes", "names"])
def test_missing_required_metadata_is_a_checkpoint_error(good_weights: Path, tmp_path: Path, field: str) -> None:
    path = _rewrite_metadata(good_weights, tmp_path / "bad.safetensors", {}, drop=(field,))
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    _assert_one_line_naming(info.value, path, field)


def test_unknown_arch_name_is_both_unknown_model_and_checkpoint_error(good_weights: Path, tmp_path: Path) -> None:
    path = _rewrite_metadata(good_weights, tmp_path / "bad.safetensors", {"arch": "yolov9-huge"})
    with pytest.raises(UnknownModelError) as info:
        load_model(path)
    assert isinstance(info.value, CheckpointError)
    _assert_one_line_naming(info.value, path, "yolov9-huge")


def test_many_classes_claimed_are_refused_before_building(good_weights: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A header naming 2 million classes (consistent names list) must not build a head with 2
    million outputs before noticing that the tensors do not match."""
    count = 2_000_000
    path = _rewrite_metadata(good_weights, tmp_path / "many.safetensors",
                             {"num_classes": count, "names": [""] * count})
    rss_before = _peak_rss_kib()
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    assert _peak_rss_kib() - rss_before < RSS_GROWTH_LIMIT_KIB
    _assert_one_line_naming(info.value, path)


def test_good_metadata_still_loads(good_weights: Path) -> None:
    model = load_model(good_weights, fuse=False)
    assert model.names == ["car", "person"] and model.img_size == 640


# ----------------------------------------------------------------- every error names the file


def _pt(directory: Path, name: str, obj: Any, records: dict[str, bytes] | None = None) -> Path:
    entries = [_stored("archive/data.pkl", _pickle(obj))]
    entries += [_stored(f"archive/data/{key}", data) for key, data in (records or {}).items()]
    return _write_zip(directory / name, entries)


def _raw_pt(directory: Path, name: str, pkl: bytes) -> Path:
    return _write_zip(directory / name, [_stored("archive/data.pkl", pkl)])


def _text(value: str) -> bytes:
    encoded = value.encode()
    return b"X" + struct.pack("<I", len(encoded)) + encoded


FOUR_HALVES = {"0": bytes(8)}
MODEL_GLOBAL = b"cmodels.yolo\nModel\n"

CORRUPT_PT = [
    ("negative offset", lambda d: _pt(d, "a.pt", {"w": _tensor("0", 4, offset=-1)}, FOUR_HALVES)),
    ("reads past storage", lambda d: _pt(d, "a.pt", {"w": _tensor("0", 4, (100,))}, FOUR_HALVES)),
    ("bad size", lambda d: _pt(d, "a.pt", {"w": _tensor("0", 4, ("a",), stride=(1,))}, FOUR_HALVES)),
    ("backward hooks", lambda d: _pt(d, "a.pt", {"w": _tensor("0", 4, hooks=collections.OrderedDict(a=1))},
                                     FOUR_HALVES)),
    ("parameter of int", lambda d: _pt(d, "a.pt", {"w": _Rebuild(torch._utils._rebuild_parameter, 5, False,
                                                                 collections.OrderedDict())})),
    ("codecs utf-8", lambda d: _pt(d, "a.pt", {"b": _Rebuild(__import__("_codecs").encode, "x", "utf-8")})),
    ("numpy subtype", lambda d: _pt(d, "a.pt", {"b": _Rebuild(
        __import__("numpy").core.multiarray._reconstruct, collections.OrderedDict, (0,), b"b")})),
    ("numpy scalar", lambda d: _pt(d, "a.pt", {"b": _Rebuild(__import__("numpy").core.multiarray.scalar, 3, b"\x01")})),
    ("calls a module class", lambda d: _raw_pt(d, "a.pt", b"\x80\x02cmodels.common\nConv\n)R.")),
    ("state not a dict", lambda d: _raw_pt(d, "a.pt", b"\x80\x02" + MODEL_GLOBAL + b")\x81K\x05b.")),
    ("modify storage type", lambda d: _raw_pt(d, "a.pt", b"\x80\x02ctorch\nHalfStorage\n}" + _text("dtype") + b"K\x01sb.")),
    ("modify allowed function", lambda d: _raw_pt(
        d, "a.pt", b"\x80\x02ctorch._utils\n_rebuild_parameter\n}" + _text("x") + b"K\x01sb.")),
    ("_modules not a dict", lambda d: _raw_pt(
        d, "a.pt", b"\x80\x02}" + _text("model") + MODEL_GLOBAL + b")\x81}" + _text("_modules") + b"K\x05sbs.")),
    ("storage used with two dtypes", lambda d: _pt(d, "a.pt", {
        "a": _tensor("0", 4),
        "b": _Rebuild(torch._utils._rebuild_tensor_v2, _StorageRef("0", 2, torch.FloatStorage), 0, (2,), (1,),
                      False, collections.OrderedDict())}, FOUR_HALVES)),
]


@pytest.mark.parametrize(("label", "make"), CORRUPT_PT, ids=[label for label, _ in CORRUPT_PT])
def test_every_pt_error_names_the_file(tmp_path: Path, label: str, make: Any) -> None:
    path = make(tmp_path)
    for reader in (read_official_checkpoint, read_state_dict_pickle, load_model):
        with pytest.raises(CheckpointError) as info:
            reader(path)
        assert not isinstance(info.value, UnsafeCheckpointError), label
        _assert_one_line_naming(info.value, path)


def test_write_errors_name_the_file(tmp_path: Path) -> None:
    from detector.weights_format import write_weights

    target = tmp_path / "w.safetensors"
    cases = [
        ({"a": torch.zeros(1)}, {"arch": "yolov7-tiny", "num_classes": 1}),
        ({"a": torch.zeros(1)}, {"arch": "yolov7-tiny", "num_classes": 1, "names": ["a"], "x": math.nan}),
        ({1: torch.zeros(1)}, {"arch": "yolov7-tiny", "num_classes": 1, "names": ["a"]}),
        ({"a": 1.0}, {"arch": "yolov7-tiny", "num_classes": 1, "names": ["a"]}),
    ]
    for state, metadata in cases:
        with pytest.raises((TypeError, ValueError)) as info:
            write_weights(target, state, metadata)
        assert str(target) in str(info.value)


# ----------------------------------------------------------------- the suffix is not the format


def test_upper_case_safetensors_suffix_loads(good_weights: Path, tmp_path: Path) -> None:
    upper = tmp_path / "TINY.SAFETENSORS"
    upper.write_bytes(good_weights.read_bytes())
    assert load_model(upper, fuse=False).names == ["car", "person"]


def test_content_wins_over_a_wrong_suffix(good_weights: Path, tmp_path: Path) -> None:
    renamed = tmp_path / "tiny.pt"
    renamed.write_bytes(good_weights.read_bytes())
    assert load_model(renamed, fuse=False).names == ["car", "person"]


def test_upper_case_suffix_when_saving(tmp_path: Path) -> None:
    model = create_model("yolov7-tiny", 1)
    assert save_model(model, tmp_path / "M.SAFETENSORS").name == "M.SAFETENSORS"


@pytest.mark.parametrize(("name", "data", "message"), [
    ("x.SAFETENSORS", b"", "not a readable safetensors file"),
    ("x.pt", b"", "not a torch zip checkpoint"),
    ("x.weights", b"\x00" * 64, "neither"),
])
def test_unknown_content_is_refused_by_name(tmp_path: Path, name: str, data: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(CheckpointError, match=message) as info:
        load_model(path)
    _assert_one_line_naming(info.value, path)


# ----------------------------------------------------------------------- NaN and inf weights


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weights_are_refused(good_weights: Path, tmp_path: Path, bad: float) -> None:
    state, metadata = read_weights(good_weights)
    keys = [k for k, v in state.items() if v.is_floating_point()][:3]
    for key in keys:
        state[key] = state[key].clone()
        state[key].view(-1)[0] = bad
    path = tmp_path / "nan.safetensors"
    save_file(state, str(path), metadata={METADATA_KEY: json.dumps(metadata)})
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    _assert_one_line_naming(info.value, path, "3 ", keys[0])


def test_saving_weights_beyond_float16_range_is_refused(tmp_path: Path) -> None:
    model = create_model("yolov7-tiny", 1)
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] = 1e6
    with pytest.raises(CheckpointError, match="float16") as info:
        save_model(model, tmp_path / "big.safetensors")
    assert str(tmp_path / "big.safetensors") in str(info.value)
    assert not (tmp_path / "big.safetensors").exists()
    save_model(model, tmp_path / "big32.safetensors", half=False)  # float32 keeps it


# ------------------------------------------------------------------- train --resume, hostile


class _Foreign:
    """Any class outside torch's weights-only allow-list."""

    def __init__(self) -> None:
        self.payload = 1


def test_resume_on_a_foreign_pickle_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "last.ckpt"
    torch.save({"version": 1, "model": _Foreign()}, path)
    with pytest.raises(ResumeError) as info:
        load_checkpoint(path)
    _assert_one_line_naming(info.value, path, "not a training checkpoint")
    assert "weights_only" not in str(info.value)


@pytest.mark.parametrize("data", [b"", b"garbage" * 100, b"PK\x03\x04broken"])
def test_resume_on_a_corrupt_file_is_one_line(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "last.ckpt"
    path.write_bytes(data)
    with pytest.raises(ResumeError) as info:
        load_checkpoint(path)
    _assert_one_line_naming(info.value, path)
