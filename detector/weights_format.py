"""yolov7-track's own weights format: one ``.safetensors`` file, tensors plus JSON metadata.

Layout (safetensors, https://github.com/huggingface/safetensors, "Format"): an 8-byte header
length, a JSON header describing every tensor (dtype, shape, byte offsets) and a
``__metadata__`` string map, then the raw little-endian tensor bytes. Nothing is pickled, so
reading a file cannot execute code. We store one metadata entry, :data:`METADATA_KEY`
(``"yolov7_track"``), whose value is a JSON object:

============== =========================================================================
key            meaning
============== =========================================================================
format_version int, :data:`FORMAT_VERSION`; written by :func:`write_weights`
arch           str, architecture name (``"yolov7-tiny"``, ...) -- required
num_classes    int -- required
names          list[str] of ``num_classes`` class names -- required
anchors_px     anchors in pixels per level, ``(nl, na, 2)`` nested lists (optional)
strides        list[float], pixels per head level (optional)
img_size       int, letterbox size the weights were trained/evaluated at, pixels (optional)
head_form      ``"deploy"`` / ``"training"`` (optional)
head           ``"Detect"`` / ``"IDetect"`` / ``"IAuxDetect"`` (optional)
provenance     dict: source, created, command, metrics, licence, ... (optional)
metrics        dict of evaluation results (optional)
============== =========================================================================

Every listed key is validated on reading and on writing (:func:`metadata_problem`): types, lengths,
finite positive numbers, and sizes bounded by :data:`~detector.limits.MAX_IMG_SIZE_PX` (a file
cannot make the program allocate an absurd letterbox); a bad value raises
:class:`~detector.errors.CheckpointError` naming the file and the key. Checks that depend on the
architecture (number of head levels and anchors, strides, ``img_size`` a multiple of the largest
stride) are made by :func:`detector.checkpoint.load_model`. Other keys are kept as given. Tensors keep their dtype (float16 weights stay float16);
safetensors stores them sorted by name, so :func:`read_weights` returns the keys in name order.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from detector.errors import CheckpointError
from detector.limits import MAX_IMG_SIZE_PX

LOGGER = logging.getLogger(__name__)

FORMAT_VERSION = 1
METADATA_KEY = "yolov7_track"
REQUIRED_METADATA: dict[str, type] = {"arch": str, "num_classes": int, "names": list}
HEAD_FORMS = ("deploy", "training")
HEAD_CLASSES = ("Detect", "IDetect", "IAuxDetect")
_CONVERT_HINT = (
    "convert an official checkpoint with `yolov7-track convert OFFICIAL.pt OUT.safetensors` or "
    "save a model with detector.save_model"
)


def write_weights(path: str | Path, state_dict: Mapping[str, torch.Tensor], metadata: Mapping[str, Any]) -> Path:
    """Write ``state_dict`` and ``metadata`` to ``path`` (``.safetensors``), atomically.

    The file is written to a temporary file in the same directory and renamed over ``path``
    with ``os.replace``, so readers never see a half-written file. Tensors are detached, moved
    to the CPU and made contiguous; their dtype is kept. Tensors that share memory are copied
    (safetensors stores each tensor on its own).

    Args:
        path: destination file; its directory must exist.
        state_dict: ``{name: tensor}``.
        metadata: JSON-serialisable mapping with at least ``arch`` (str), ``num_classes``
            (int) and ``names`` (list of ``num_classes`` str); ``format_version`` is set here
            (a different value is refused).

    Returns:
        ``path`` as a ``Path``.

    Raises:
        TypeError: a non-tensor value or non-str key in ``state_dict``.
        ValueError: missing/ill-typed metadata (see :func:`metadata_problem`), or metadata that
            is not strict JSON (NaN/inf included).
        CheckpointError: the file cannot be written.
        All messages name ``path``.
    """
    path = Path(path)
    header = _encode_metadata(metadata, path)
    tensors = _prepare_tensors(state_dict, path)
    try:
        handle, temporary_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        os.close(handle)
    except OSError as exc:
        raise CheckpointError(f"cannot write weights to {path}: {exc}") from exc
    temporary = Path(temporary_name)
    try:
        save_file(tensors, str(temporary), metadata={METADATA_KEY: header})
        with temporary.open("rb+") as written:
            os.fsync(written.fileno())
        temporary.chmod(_default_file_mode())  # mkstemp creates 0600; weights are shareable files
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise CheckpointError(f"cannot write weights to {path}: {exc}") from exc
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    LOGGER.info("wrote %d tensors (%s) to %s", len(tensors), metadata.get("arch"), path)
    return path


def read_weights(path: str | Path, *, device: str = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a file written by :func:`write_weights`.

    Args:
        path: the ``.safetensors`` file.
        device: where the tensors are placed (``"cpu"``, ``"cuda:0"``, ...).

    Returns:
        ``(state_dict, metadata)``: ``{name: tensor}`` in name order with the stored dtypes,
        and the metadata object (see the module docstring).

    Raises:
        CheckpointError: missing file; not a safetensors file; no yolov7-track metadata;
            a ``format_version`` this version cannot read; invalid required metadata.
    """
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt", device=device) as reader:
            metadata = _decode_metadata(reader.metadata(), path)
            state_dict = {name: reader.get_tensor(name) for name in reader.keys()}
    except CheckpointError:
        raise
    except Exception as exc:  # safetensors raises its own SafetensorError for a bad header
        raise _open_error(path, exc) from exc
    return state_dict, metadata


def read_weights_metadata(path: str | Path) -> dict[str, Any]:
    """Only the metadata of a :func:`write_weights` file (the tensors are not read).

    Raises:
        CheckpointError: as :func:`read_weights`.
    """
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as reader:
            return _decode_metadata(reader.metadata(), path)
    except CheckpointError:
        raise
    except Exception as exc:
        raise _open_error(path, exc) from exc


def _default_file_mode() -> int:
    """0o666 minus the process umask: what ``open(path, "w")`` would have created."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _open_error(path: Path, exc: Exception) -> CheckpointError:
    if not path.exists():
        return CheckpointError(f"weights file not found: {path}")
    if path.is_dir():
        return CheckpointError(f"{path} is a directory, expected a .safetensors weights file")
    return CheckpointError(
        f"{path} is not a readable safetensors file ({exc}); it may be truncated or in another "
        f"format (an official .pt checkpoint is read by load_model directly, or {_CONVERT_HINT})"
    )


def _encode_metadata(metadata: Mapping[str, Any], path: Path) -> str:
    if not isinstance(metadata, Mapping):
        raise TypeError(f"cannot write {path}: metadata must be a mapping, got {type(metadata).__name__}")
    version = metadata.get("format_version", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise ValueError(
            f"cannot write {path}: metadata format_version {version!r} differs from the written format {FORMAT_VERSION}"
        )
    problem = metadata_problem(metadata)
    if problem:
        raise ValueError(f"cannot write {path}: invalid weights metadata: {problem}")
    content = {"format_version": FORMAT_VERSION, **{k: v for k, v in metadata.items() if k != "format_version"}}
    try:
        return json.dumps(content, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"cannot write {path}: weights metadata is not strict JSON: {exc}") from exc


def metadata_problem(metadata: Mapping[str, Any]) -> str | None:
    """What is wrong with ``metadata`` (see the module docstring's table), or ``None``.

    Checks the required keys and, when present, ``img_size``, ``anchors_px``, ``strides``,
    ``head_form``, ``head``, ``provenance`` and ``metrics``: JSON types, lengths, finite positive
    numbers and the bound :data:`~detector.limits.MAX_IMG_SIZE_PX`. The message names the key.
    """
    for key, expected_type in REQUIRED_METADATA.items():
        value = metadata.get(key)
        if not isinstance(value, expected_type) or isinstance(value, bool):
            return f"'{key}' must be {expected_type.__name__}, got {value!r:.80}"
    names, num_classes = metadata["names"], metadata["num_classes"]
    if not metadata["arch"]:
        return "'arch' must be an architecture name, got ''"
    if num_classes < 1:
        return f"'num_classes' must be >= 1, got {num_classes}"
    if len(names) != num_classes or not all(isinstance(n, str) for n in names):
        return f"'names' must be {num_classes} strings (num_classes), got {len(names)} entries"
    for key, check in _OPTIONAL_CHECKS.items():
        if key in metadata:
            problem = check(metadata[key])
            if problem:
                return f"'{key}' {problem}"
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_length_px(value: Any) -> bool:
    """A finite number in (0, MAX_IMG_SIZE_PX] (NaN fails every comparison)."""
    return _is_number(value) and 0 < value <= MAX_IMG_SIZE_PX


def _img_size_problem(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_IMG_SIZE_PX:
        return None
    return f"must be an int of pixels in 1..{MAX_IMG_SIZE_PX} (limit: MAX_IMG_SIZE_PX), got {value!r:.80}"


def _anchors_problem(value: Any) -> str | None:
    expected = (
        f"must be anchors in pixels per head level, (levels, anchors, 2) nested lists of numbers in "
        f"(0, {MAX_IMG_SIZE_PX}]"
    )
    if not isinstance(value, list) or not value or not all(isinstance(level, list) and level for level in value):
        return f"{expected}, got {value!r:.80}"
    per_level = {len(level) for level in value}
    if len(per_level) != 1:
        return f"{expected}; the levels have different anchor counts {sorted(per_level)}"
    for level in value:
        for pair in level:
            if not (isinstance(pair, list) and len(pair) == 2 and all(_is_length_px(v) for v in pair)):
                return f"{expected}, got the entry {pair!r:.80}"
    return None


def _strides_problem(value: Any) -> str | None:
    if isinstance(value, list) and value and all(_is_length_px(v) for v in value):
        return None
    return f"must be a list of positive pixel strides per head level, got {value!r:.80}"


def _choice_problem(choices: tuple[str, ...]) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}, got {value!r:.80}"

    return check


def _dict_problem(value: Any) -> str | None:
    return None if isinstance(value, dict) else f"must be a JSON object, got {value!r:.80}"


_OPTIONAL_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "img_size": _img_size_problem,
    "anchors_px": _anchors_problem,
    "strides": _strides_problem,
    "head_form": _choice_problem(HEAD_FORMS),
    "head": _choice_problem(HEAD_CLASSES),
    "provenance": _dict_problem,
    "metrics": _dict_problem,
}


def _decode_metadata(raw: dict[str, str] | None, path: Path) -> dict[str, Any]:
    if not raw or METADATA_KEY not in raw:
        raise CheckpointError(
            f"{path} is a safetensors file without yolov7-track metadata (architecture, class "
            f"names); it was not written by yolov7-track. {_CONVERT_HINT}"
        )
    try:
        metadata = json.loads(raw[METADATA_KEY])
    except ValueError as exc:
        raise CheckpointError(
            f"{path}: the yolov7-track metadata is not valid JSON ({exc}); the file is corrupt"
        ) from exc
    if not isinstance(metadata, dict):
        raise CheckpointError(f"{path}: the yolov7-track metadata is not a JSON object; the file is corrupt")
    version = metadata.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(f"{path}: missing or invalid format_version {version!r} in its metadata")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} uses weights format version {version}, but this yolov7-track reads up to "
            f"version {FORMAT_VERSION}; upgrade yolov7-track to read it"
        )
    problem = metadata_problem(metadata)
    if problem:
        raise CheckpointError(f"{path}: invalid yolov7-track metadata: {problem}; the file is corrupt or was edited")
    return metadata


def _prepare_tensors(state_dict: Mapping[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    prepared: dict[str, torch.Tensor] = {}
    seen_storages: set[int] = set()
    for name, tensor in state_dict.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"cannot write {path}: state-dict keys must be non-empty str, got {name!r}")
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"cannot write {path}: state_dict[{name!r}] is {type(tensor).__name__}, not a torch.Tensor")
        value = tensor.detach().to("cpu").contiguous()
        storage = value.untyped_storage().data_ptr()
        if storage in seen_storages or _is_partial_view(value):
            value = value.clone()  # safetensors refuses tensors that share memory
        if value.numel() > 0:
            seen_storages.add(value.untyped_storage().data_ptr())
        prepared[name] = value
    return prepared


def _is_partial_view(tensor: torch.Tensor) -> bool:
    return tensor.untyped_storage().nbytes() != tensor.numel() * tensor.element_size() or math.prod(tensor.shape) == 0


__all__ = [
    "FORMAT_VERSION",
    "METADATA_KEY",
    "REQUIRED_METADATA",
    "metadata_problem",
    "read_weights",
    "read_weights_metadata",
    "write_weights",
]
