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

Every tensor of the checkpoint must match the architecture exactly (keys and shapes): nothing is
skipped or left at random initialisation. Hyper-parameters that live only in an official pickle
(BatchNorm eps, activation) are checked against ours.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from .architectures import AVAILABLE_MODELS, get_arch_spec
from .errors import CheckpointError, UnknownModelError, WeightsMismatchError
from .layers import BN_EPS
from .model import YOLOv7, to_deploy

logger = logging.getLogger(__name__)

SAFETENSORS_SUFFIX = ".safetensors"
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
        CheckpointError: missing file, unreadable or unknown format.
        UnsafeCheckpointError: a pickle referencing a forbidden global (nothing executed).
        WeightsMismatchError: tensors that do not fit the architecture.
        DownloadError: a registry download that failed (offline, hash mismatch, ...).
        UnknownModelError: an architecture name we do not know in the metadata.
    """
    path = _resolve_source(source, download=download)
    if path.suffix == SAFETENSORS_SUFFIX:
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
        CheckpointError: a fused model (fusion is not reversible; save before fusing).
    """
    from .weights_format import write_weights

    if any(getattr(m, "fused", False) for m in model.modules()):
        raise CheckpointError(
            f"cannot save {model.arch} to {path}: the model is fused for inference; "
            "load it with load_model(..., fuse=False) and save that")
    path = Path(path)
    if path.suffix != SAFETENSORS_SUFFIX:
        path = path.with_name(path.name + SAFETENSORS_SUFFIX)
    state = {}
    for key, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu()
        state[key] = tensor.half() if (half and tensor.is_floating_point()) else tensor
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

    state, meta = read_weights(path)
    arch = meta["arch"]
    if arch not in AVAILABLE_MODELS:
        raise UnknownModelError(f"{path}: metadata names architecture {arch!r}, which this "
                                f"version does not know ({', '.join(AVAILABLE_MODELS)})")
    model = YOLOv7(get_arch_spec(arch), meta["num_classes"], names=meta["names"],
                   training_head=meta.get("head_form") == "training",
                   anchors_px=meta.get("anchors_px"))
    _load_exact(model, state, path)
    if "img_size" in meta:
        model.img_size = int(meta["img_size"])
    model.provenance = meta.get("provenance", {})
    model.metrics = meta.get("metrics", {})
    return model


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
    """Copy every tensor; any missing, unexpected or mis-shaped key raises, naming them."""
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
    model.load_state_dict(dict(state), strict=True)
