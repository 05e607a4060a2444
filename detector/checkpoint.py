"""Load and save YOLOv7 models: ``load_model`` and ``save_model``.

``load_model(source)`` accepts

* an official release or training checkpoint (``yolov7-tiny.pt``, ...), read by the restricted
  unpickler of :mod:`detector.official_pickle` (nothing in the file is executed);
* our own format, a ``.safetensors`` file with JSON metadata (:mod:`detector.weights_format`),
  written by :func:`save_model`;
* a bundled model name (``"yolov7-tiny-traffic"``, the default; :mod:`detector.bundled`),
  resolved with no network;
* a registry name (``"yolov7-tiny"``, ...; :mod:`detector.hub`), downloaded once into the user
  cache with a sha256 check.

The format is told by the content, not the suffix: a safetensors file starts with an 8-byte
little-endian header length followed by ``{``, a torch zip checkpoint with ``PK``. Only a file
that is neither is judged by its suffix (case-insensitive), to give that format's error.

Every tensor of the checkpoint must match the architecture exactly (keys and shapes): nothing is
skipped or left at random initialisation; the shapes are compared on the ``meta`` device before
the model is built, so a file claiming millions of classes allocates nothing. Hyper-parameters
that live only in an official pickle (BatchNorm eps, activation) are checked against ours.

A weight that does not load raises, and that includes NaN or infinite values: a model with such
weights outputs garbage (or nothing) without any other sign, so :func:`load_model` refuses them
with :class:`CheckpointError` naming the file, the number of tensors affected and the first ones.
:func:`save_model` likewise refuses weights that float16 cannot hold (use ``half=False``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from .architectures import AVAILABLE_MODELS, ArchSpec, get_arch_spec
from .errors import CheckpointError, UnknownArchitectureError, WeightsMismatchError
from .layers import BN_EPS
from .model import YOLOv7, to_deploy

logger = logging.getLogger(__name__)

SAFETENSORS_SUFFIX = ".safetensors"
_ZIP_MAGIC = b"PK"
_SAFETENSORS_HEADER_START = b"{"
_EXPECTED_ACTIVATION = {"leaky": "LeakyReLU(negative_slope=0.1)", "silu": "SiLU"}


def load_model(source: str | Path, *, device: str | torch.device = "cpu", fuse: bool = True,
               download: bool = True) -> YOLOv7:
    """Load a YOLOv7 model from a file or a registry name.

    Args:
        source: path to an official ``.pt`` checkpoint or to our ``.safetensors`` file, a
            bundled model name (``"yolov7-tiny-traffic"``, :mod:`detector.bundled`; no
            network) or a registry name (see :func:`detector.hub.available_weights`).
        device: ``"cpu"``, ``"cuda:N"``, ``"auto"`` or a :class:`torch.device`.
        fuse: return the inference form: a training-form checkpoint is folded to the deploy
            form and BatchNorm/RepConv are fused. With ``fuse=False`` the model is returned as
            stored (for training or re-saving).
        download: allow downloading a registry name that is not cached yet.

    Returns:
        A float32 :class:`YOLOv7` in eval mode on ``device``.

    Raises:
        CheckpointError: missing file, unreadable or unknown format, invalid metadata, NaN or
            infinite weights.
        UnsafeCheckpointError: a pickle referencing a forbidden global (nothing executed).
        WeightsMismatchError: tensors that do not fit the architecture.
        DownloadError: a registry download that failed (offline, hash mismatch, ...).
        UnknownArchitectureError: an architecture name we do not know in the metadata (both a
            CheckpointError and an UnknownModelError).
    """
    path = _resolve_source(source, download=download)
    if _is_safetensors(path):
        model = _load_ours(path)
    else:
        model = _load_official(path)
    model.float().eval()
    if fuse:
        if model.head_form == "training":
            model = to_deploy(model).eval()
        model.fuse()
    return model.to(_torch_device(device))


def save_model(model: YOLOv7, path: str | Path, *, half: bool = True,
               provenance: Mapping[str, Any] | None = None,
               metrics: Mapping[str, Any] | None = None) -> Path:
    """Write ``model`` to ``path`` in our format (safetensors + JSON metadata), atomically.

    Args:
        model: an unfused :class:`YOLOv7` (deploy or training form).
        path: destination; ``.safetensors`` is appended when missing.
        half: store floating-point tensors as float16 (as the official releases do).
        provenance: free-form JSON-able record (source checkpoint, data, command, ...).
        metrics: JSON-able evaluation results (e.g. ``{"mAP@0.5": 0.97}``).

    Raises:
        CheckpointError: a fused model (fusion is not reversible; save before fusing); with
            ``half=True``, weights beyond the float16 range (they would be stored as inf).
    """
    from .weights_format import write_weights

    if any(getattr(m, "fused", False) for m in model.modules()):
        raise CheckpointError(
            f"cannot save {model.arch} to {path}: the model is fused for inference; "
            "load it with load_model(..., fuse=False) and save that")
    path = Path(path)
    if path.suffix.lower() != SAFETENSORS_SUFFIX:
        path = path.with_name(path.name + SAFETENSORS_SUFFIX)
    state = {}
    overflowing = []
    for key, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu()
        if half and tensor.is_floating_point():
            halved = tensor.half()
            if not torch.isfinite(halved).all() and torch.isfinite(tensor).all():
                overflowing.append(key)
            tensor = halved
        state[key] = tensor
    if overflowing:
        raise CheckpointError(
            f"cannot save {model.arch} to {path} in float16: {len(overflowing)} tensors hold values "
            f"beyond its range (+-65504), e.g. {overflowing[:3]}; save with half=False"
        )
    metadata = model.describe()
    metadata["dtype"] = "float16" if half else "float32"
    metadata["created_utc"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    metadata["provenance"] = dict(provenance or getattr(model, "provenance", None) or {})
    metadata["metrics"] = dict(metrics or {})
    return write_weights(path, state, metadata)


def _torch_device(device: str | torch.device) -> torch.device:
    if isinstance(device, torch.device):
        return device
    from .inference import resolve_device

    return resolve_device(device)


def _is_safetensors(path: Path) -> bool:
    """Whether ``path`` holds a safetensors file, told by its first bytes (8-byte little-endian
    header length, then ``{``) or by the suffix (case-insensitive) when the content is neither
    safetensors nor a zip -- so that the reader of that format reports what is wrong."""
    try:
        with path.open("rb") as handle:
            head = handle.read(9)
    except OSError as exc:
        raise CheckpointError(f"cannot read weights file {path}: {exc}") from exc
    if head.startswith(_ZIP_MAGIC):
        return False
    if len(head) == 9 and head[8:9] == _SAFETENSORS_HEADER_START:
        return True
    suffix = path.suffix.lower()
    if suffix == SAFETENSORS_SUFFIX:
        return True
    if suffix in (".pt", ".pth"):
        return False
    raise CheckpointError(
        f"{path} is neither a safetensors file nor a torch zip checkpoint (it starts with {head[:8]!r}); "
        "pass a .safetensors file written by yolov7-track or an official YOLOv7 .pt file"
    )


def _resolve_source(source: str | Path, *, download: bool) -> Path:
    """A local file, or the cached/downloaded file of a registry name."""
    path = Path(source).expanduser()
    if path.is_file():
        return path
    from .bundled import BUNDLED_MODELS, bundled_model_path
    from .hub import REGISTRY, resolve_weights

    name = str(source)
    if name in BUNDLED_MODELS:
        try:
            return bundled_model_path(name)
        except FileNotFoundError as exc:
            raise CheckpointError(str(exc)) from None
    if name in REGISTRY:
        return resolve_weights(name, download=download)
    if path.exists():
        raise CheckpointError(f"{path} is not a file; pass a .pt or .safetensors weights file")
    raise CheckpointError(
        f"weights not found: {source!r} is neither an existing file nor a model name (bundled: "
        f"{', '.join(BUNDLED_MODELS)}; downloadable: {', '.join(REGISTRY.names())}); check the path")


# ----------------------------------------------------------------------------- our format

def _load_ours(path: Path) -> YOLOv7:
    from .weights_format import read_weights

    state, meta = read_weights(path)  # types, lengths and size bounds of the metadata checked
    arch = meta["arch"]
    if arch not in AVAILABLE_MODELS:
        raise UnknownArchitectureError(f"{path}: metadata names architecture {arch!r}, which this "
                                       f"version does not know ({', '.join(AVAILABLE_MODELS)})")
    spec = get_arch_spec(arch)
    _check_metadata_fits_arch(meta, spec, path)
    options = {"names": meta["names"], "training_head": meta.get("head_form") == "training",
               "anchors_px": meta.get("anchors_px")}
    with torch.device("meta"):  # shapes only: nothing is allocated for a file that does not fit
        probe = YOLOv7(spec, meta["num_classes"], **options)
    _check_shapes(probe, state, path)
    model = YOLOv7(spec, meta["num_classes"], **options)
    _load_exact(model, state, path)
    if "img_size" in meta:
        model.img_size = meta["img_size"]
    model.provenance = meta.get("provenance", {})
    model.metrics = meta.get("metrics", {})
    return model


def _check_metadata_fits_arch(meta: Mapping[str, Any], spec: ArchSpec, path: Path) -> None:
    """The metadata checks that need the architecture: head levels and anchors per level,
    strides, and an ``img_size`` that is a multiple of the largest stride."""
    levels = spec.num_levels
    anchors_per_level = len(spec.anchors_px[0]) // 2
    anchors = meta.get("anchors_px")
    if anchors is not None and (len(anchors) != levels or len(anchors[0]) != anchors_per_level):
        raise CheckpointError(
            f"{path}: invalid yolov7-track metadata: 'anchors_px' has {len(anchors)} levels of "
            f"{len(anchors[0])} anchors, {spec.name} has {levels} levels of {anchors_per_level}; the "
            "file is corrupt or was edited"
        )
    strides = meta.get("strides")
    if strides is not None and [float(s) for s in strides] != [float(s) for s in spec.strides]:
        raise CheckpointError(
            f"{path}: invalid yolov7-track metadata: 'strides' {strides} differ from {spec.name}'s "
            f"{list(spec.strides)}; the file is corrupt or was edited"
        )
    img_size = meta.get("img_size")
    largest_stride = int(max(spec.strides))
    if img_size is not None and img_size % largest_stride:
        raise CheckpointError(
            f"{path}: invalid yolov7-track metadata: 'img_size' {img_size} is not a multiple of "
            f"{spec.name}'s largest stride {largest_stride}; the file is corrupt or was edited"
        )


# ------------------------------------------------------------------ official checkpoints

def _load_official(path: Path) -> YOLOv7:
    from .official_pickle import read_official_checkpoint

    ckpt = read_official_checkpoint(path)
    training_head = ckpt.head != "Detect"
    arch = _identify_arch(ckpt.state_dict, ckpt.yaml_file, ckpt.num_classes, training_head, path)
    spec = get_arch_spec(arch)
    _check_hyper_parameters(ckpt.hyper, spec.activation, path)
    model = YOLOv7(spec, ckpt.num_classes, names=ckpt.names, training_head=training_head,
                   anchors_px=ckpt.anchors_px)
    _load_exact(model, ckpt.state_dict, path)
    model.provenance = {"source": str(path), "format": "official", "head": ckpt.head,
                        "yaml_file": ckpt.yaml_file, "epoch": ckpt.epoch}
    logger.info("loaded %s from %s (%d classes, %s head)", arch, path, ckpt.num_classes, ckpt.head)
    return model


def _arch_hint(yaml_file: str | None) -> str | None:
    """'cfg/training/yolov7-e6e.yaml' -> 'yolov7-e6e' when that is one of ours."""
    if not yaml_file:
        return None
    stem = re.sub(r"\.ya?ml$", "", Path(yaml_file).name)
    stem = re.sub(r"[_-]training$", "", stem)
    return stem if stem in AVAILABLE_MODELS else None


def _shapes(state: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


def _identify_arch(state: Mapping[str, torch.Tensor], yaml_file: str | None, num_classes: int,
                   training_head: bool, path: Path) -> str:
    """The architecture whose state-dict layout equals ``state`` (yaml name tried first)."""
    wanted = _shapes(state)
    hint = _arch_hint(yaml_file)
    candidates = ([hint] if hint else []) + [a for a in AVAILABLE_MODELS if a != hint]
    for arch in candidates:
        with torch.device("meta"):
            probe = YOLOv7(get_arch_spec(arch), num_classes, training_head=training_head)
        if _shapes(probe.state_dict()) == wanted:
            return arch
    raise WeightsMismatchError(
        f"{path}: the tensors match none of the architectures {', '.join(AVAILABLE_MODELS)} "
        f"(yaml_file={yaml_file!r}, {len(state)} tensors); it may be a variant we do not "
        "support (e.g. yolov7-tiny-silu, a pose or mask model)")


def _check_hyper_parameters(hyper: Mapping[str, Any], activation: str, path: Path) -> None:
    eps = hyper.get("batchnorm_eps") or []
    if eps and any(abs(e - BN_EPS) > 1e-12 for e in eps):
        raise WeightsMismatchError(
            f"{path}: BatchNorm eps {eps} differ from YOLOv7's {BN_EPS}; not an official layout")
    acts = set(hyper.get("activations") or [])
    expected = _EXPECTED_ACTIVATION[activation]
    unexpected = {a for a in acts if a != expected and a not in ("Identity",)}
    if unexpected:
        raise WeightsMismatchError(
            f"{path}: activations {sorted(unexpected)} found where {expected} is expected; "
            "this variant is not supported")


def _load_exact(model: YOLOv7, state: Mapping[str, torch.Tensor], path: Path) -> None:
    """Copy every tensor; any missing, unexpected or mis-shaped key, or a NaN/inf value, raises,
    naming them."""
    _check_shapes(model, state, path)
    _check_finite(state, path)
    model.load_state_dict(dict(state), strict=True)


def _check_finite(state: Mapping[str, torch.Tensor], path: Path) -> None:
    floating = [k for k, v in state.items() if v.is_floating_point()]
    bad = [k for k in floating if not bool(torch.isfinite(state[k]).all())]
    if bad:
        raise CheckpointError(
            f"{path}: {len(bad)} of {len(floating)} weight tensors contain NaN or infinite values "
            f"(e.g. {bad[:3]}); the file is corrupt or its training diverged; use another checkpoint"
        )


def _check_shapes(model: YOLOv7, state: Mapping[str, torch.Tensor], path: Path) -> None:
    """Raise WeightsMismatchError unless ``state`` has exactly the keys and shapes of ``model``
    (which may live on the ``meta`` device)."""
    target = _shapes(model.state_dict())
    given = _shapes(state)
    missing = [k for k in target if k not in given]
    unexpected = [k for k in given if k not in target]
    mismatched = [f"{k}: file {given[k]} vs model {target[k]}"
                  for k in target if k in given and given[k] != target[k]]
    if missing or unexpected or mismatched:
        raise WeightsMismatchError(
            f"{path}: weights do not fit {model.arch} ({model.num_classes} classes, "
            f"{model.head_form} head): {len(missing)} missing {missing[:5]}, "
            f"{len(unexpected)} unexpected {unexpected[:5]}, {len(mismatched)} with other "
            f"shapes {mismatched[:5]}")
