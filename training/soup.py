"""Model soups: the element-wise mean of the weights of several finetuned models.

Wortsman et al., "Model soups: averaging weights of multiple fine-tuned models improves accuracy
without increasing inference time", ICML 2022 (the "uniform soup", section 3, eq. 1:
``theta = (1/k) * sum_i theta_i``). Models finetuned from the same starting weights lie in one
low-loss basin, so their mean is a model of the same size and speed that usually generalises
better than each of them. The paper's "greedy soup" adds ingredients one by one, best first,
keeping each only if the held-in validation score does not drop: run ``yolov7-track val`` on the
validation split (never the test split) after each step.

Every floating-point tensor (weights, biases, BatchNorm running mean and variance) is averaged in
float32 and stored in the first model's dtype; integer buffers (BatchNorm's
``num_batches_tracked``) are taken from the first model.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from detector.weights_format import read_weights, write_weights

from .errors import TrainingError

__all__ = ["SOUP_REFERENCE", "uniform_soup", "write_soup"]

logger = logging.getLogger(__name__)

SOUP_REFERENCE = ("uniform model soup: Wortsman et al., 'Model soups: averaging weights of multiple "
                  "fine-tuned models improves accuracy without increasing inference time', ICML 2022, eq. 1")

# metadata that must agree for two files to be one architecture predicting the same classes
_MATCHING_METADATA = ("arch", "num_classes", "names", "anchors_px", "strides", "head_form")
# anchors pass through float16 tensors on the way to the metadata: equal to this relative tolerance
_ANCHOR_RTOL = 1e-4


def _same(key: str, a: Any, b: Any) -> bool:
    if key in ("anchors_px", "strides") and a is not None and b is not None:
        a_t, b_t = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
        return a_t.shape == b_t.shape and torch.allclose(a_t, b_t, rtol=_ANCHOR_RTOL, atol=0)
    return a == b


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_compatible(first: Path, first_meta: dict[str, Any], first_state: dict[str, torch.Tensor],
                      other: Path, meta: dict[str, Any], state: dict[str, torch.Tensor]) -> None:
    for key in _MATCHING_METADATA:
        if not _same(key, first_meta.get(key), meta.get(key)):
            raise TrainingError(f"cannot average {other} with {first}: their {key} differ "
                                f"({meta.get(key)!r} vs {first_meta.get(key)!r}); a soup needs one "
                                "architecture and class list, finetuned from the same weights")
    if state.keys() != first_state.keys():
        extra = sorted(state.keys() ^ first_state.keys())[:3]
        raise TrainingError(f"cannot average {other} with {first}: different tensors (e.g. {extra})")
    for name, tensor in state.items():
        if tensor.shape != first_state[name].shape:
            raise TrainingError(f"cannot average {other} with {first}: {name} has shape "
                                f"{tuple(tensor.shape)} vs {tuple(first_state[name].shape)}")


def uniform_soup(paths: Sequence[str | Path], img_size: int | None = None,
                 ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The uniform soup of two or more ``.safetensors`` weight files (see the module docstring).

    Args:
        paths: the ingredients.
        img_size: the letterbox size (pixels, a multiple of the largest stride) recorded in the
            soup's metadata, which the detector then runs at by default; choose it on validation
            data. ``None``: the first ingredient's.

    Returns:
        ``(state_dict, metadata)``: the averaged tensors (the first file's dtypes) and the first
        file's metadata with ``provenance.soup`` recording the method and each ingredient's path,
        sha256 and own provenance; its ``metrics`` are dropped (they describe another model).

    Raises:
        TrainingError: fewer than two files, or files that differ in architecture, classes,
            anchors, head form, tensor names or shapes (the message names both files); an
            ``img_size`` that is not a positive multiple of the largest stride.
        detector.CheckpointError: a file that cannot be read.
    """
    paths = [Path(p) for p in paths]
    if img_size is not None and (not isinstance(img_size, int) or img_size < 1):
        raise TrainingError(f"img_size must be a positive integer, got {img_size!r}")
    if len(paths) < 2:
        raise TrainingError(f"a soup needs at least two weight files, got {len(paths)}")
    first_state, first_meta = read_weights(paths[0])
    sums = {name: t.float().clone() for name, t in first_state.items() if t.is_floating_point()}
    ingredients = [{"path": str(paths[0]), "sha256": _sha256(paths[0]),
                    "provenance": first_meta.get("provenance")}]
    for path in paths[1:]:
        state, meta = read_weights(path)
        _check_compatible(paths[0], first_meta, first_state, path, meta, state)
        for name, total in sums.items():
            total += state[name].float()
        ingredients.append({"path": str(path), "sha256": _sha256(path), "provenance": meta.get("provenance")})
    soup = {name: (sums[name] / len(paths)).to(t.dtype) if name in sums else t.clone()
            for name, t in first_state.items()}
    metadata = {key: value for key, value in first_meta.items() if key not in ("metrics", "provenance")}
    metadata["created_utc"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    metadata["provenance"] = {"trained_by": "yolov7-track training",
                              "soup": {"method": SOUP_REFERENCE, "ingredients": ingredients}}
    if img_size is not None:
        stride = int(max(metadata.get("strides") or [32]))
        if img_size % stride:
            raise TrainingError(f"img_size {img_size} is not a multiple of the model's largest stride {stride}")
        metadata["img_size"] = img_size
    return soup, metadata


def write_soup(out: str | Path, paths: Sequence[str | Path], img_size: int | None = None) -> Path:
    """Write the uniform soup of ``paths`` to ``out`` (atomically), recording ``img_size`` (see
    :func:`uniform_soup`); returns ``out``.

    Raises:
        TrainingError, detector.CheckpointError: see :func:`uniform_soup`; ``out`` cannot be written.
    """
    out = Path(out)
    if any(out.resolve() == Path(p).resolve() for p in paths):
        raise TrainingError(f"{out} is one of the ingredients; write the soup to another file")
    state, metadata = uniform_soup(paths, img_size)
    written = write_weights(out, state, metadata)
    logger.info("soup of %d models written to %s", len(paths), out)
    return written
