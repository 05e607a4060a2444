"""Test support for the YOLOv7 parity fixtures in ``../shared/fixtures/yolov7``.

Implements the fixture README's weight recipe ("Synthetic weights: recipe (numpy only)"): every
state tensor of an architecture is regenerated bit-exactly from ``<arch>.state.tsv`` (keys,
dtypes, shapes in ``state_dict()`` order) and ``weights_recipe.json`` (seed, gains, explicit
Detect-head scales and biases), then checked against the recipe's sha256.

API:

* :data:`ARCHS` -- the seven architecture names;
* :func:`fixture_path` -- path of a fixture file (fails loudly when missing);
* :func:`read_state_spec` -- the ``.state.tsv`` rows;
* :func:`load_recipe` -- the parsed ``weights_recipe.json``;
* :func:`regenerate_state` -- ``{key: np.ndarray}`` (float16 / int64) in ``.state.tsv`` order;
* :func:`state_sha256` -- the recipe's checksum of such a state.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from shared_data import shared_path

ARCHS: tuple[str, ...] = (
    "yolov7-tiny", "yolov7", "yolov7x", "yolov7-w6", "yolov7-e6", "yolov7-d6", "yolov7-e6e",
)

# Architectures that have a full checkpoint in the official release format.
OFFICIAL_FORMAT_ARCHS: tuple[str, ...] = ("yolov7-tiny", "yolov7")

_DTYPES = {"Half": np.float16, "Long": np.int64}


class FixtureError(AssertionError):
    """A fixture file that does not match its own recipe (corrupt or wrong version)."""


def fixture_path(*parts: str) -> Path:
    """``<shared>/fixtures/yolov7/<parts...>``; raises ``SharedDataMissingError`` if absent.

    Example: ``fixture_path("golden", "yolov7-tiny__coco139.npz")``.
    """
    return shared_path("fixtures", "yolov7", *parts)


def official_checkpoint_path(arch: str) -> Path:
    """Path of ``<arch>.official-format.pt`` (only for :data:`OFFICIAL_FORMAT_ARCHS`)."""
    return fixture_path(f"{arch}.official-format.pt")


@dataclass(frozen=True)
class StateRow:
    """One line of ``<arch>.state.tsv``."""

    key: str
    kind: str  # "param" or "buffer"
    dtype: str  # "Half" or "Long"
    shape: tuple[int, ...]


def read_state_spec(arch: str) -> list[StateRow]:
    """Rows of ``<arch>.state.tsv`` in ``state_dict()`` order."""
    _check_arch(arch)
    rows = []
    with fixture_path(f"{arch}.state.tsv").open(encoding="utf-8") as handle:
        for line in handle:
            key, kind, dtype, shape = line.rstrip("\n").split("\t")
            rows.append(StateRow(key, kind, dtype, tuple(json.loads(shape))))
    return rows


@functools.lru_cache(maxsize=1)
def load_recipe() -> dict[str, Any]:
    """The parsed ``weights_recipe.json`` (cached; do not mutate)."""
    return json.loads(fixture_path("weights_recipe.json").read_text(encoding="utf-8"))


def _check_arch(arch: str) -> None:
    if arch not in ARCHS:
        raise KeyError(f"unknown fixture architecture {arch!r}; expected one of {', '.join(ARCHS)}")


def _to_fp16(values: np.ndarray) -> np.ndarray:
    """float64 -> float32 -> float16, each step rounding to nearest even (the recipe's cast)."""
    return values.astype(np.float32).astype(np.float16)


def regenerate_state(arch: str, *, verify: bool = True) -> dict[str, np.ndarray]:
    """Regenerate the fixture weights of ``arch``, bit-exactly.

    Returns:
        ``{key: array}`` in ``.state.tsv`` order: float16 for ``Half`` rows, int64 zeros for
        ``Long`` rows (``num_batches_tracked``). Detect ``anchors`` are in grid units
        (``anchors_px / stride``), ``anchor_grid`` in pixels.

    Raises:
        FixtureError: with ``verify`` (default), when the sha256 differs from the recipe's.
    """
    spec = read_state_spec(arch)
    recipe = load_recipe()
    arch_recipe = recipe["archs"][arch]
    detect = arch_recipe["detect"]
    anchors_px = np.asarray(detect["anchors_px"], dtype=np.float32)  # (nl, na, 2)
    strides = np.asarray(detect["strides"], dtype=np.float32)  # (nl,)
    head_prefix = f"model.{detect['index']}.m."
    bn_ranges = {
        "weight": recipe["common"]["bn_weight"],
        "bias": recipe["common"]["bn_bias"],
        "running_mean": recipe["common"]["bn_running_mean"],
        "running_var": recipe["common"]["bn_running_var"],
    }
    rng = np.random.default_rng(arch_recipe["seed"])
    state: dict[str, np.ndarray] = {}
    for row in spec:
        if row.dtype == "Long":
            state[row.key] = np.zeros(row.shape, dtype=np.int64)
        elif row.key.endswith(".anchors"):
            state[row.key] = (anchors_px / strides[:, None, None]).astype(np.float16).reshape(row.shape)
        elif row.key.endswith(".anchor_grid"):
            state[row.key] = anchors_px.astype(np.float16).reshape(row.shape)
        elif row.key.startswith(head_prefix) and row.key.endswith(".bias"):
            level = row.key[len(head_prefix):].split(".")[0]
            bias = np.asarray(arch_recipe["head_bias"][level], dtype=np.float64)
            state[row.key] = _to_fp16(bias).reshape(row.shape)
        else:
            uniform = rng.random(math.prod(row.shape))  # float64 in [0, 1), one draw per tensor
            state[row.key] = _to_fp16(_drawn_values(row, uniform, arch_recipe, head_prefix, bn_ranges))
    if verify:
        expected = arch_recipe["sha256_fp16_state"]
        actual = state_sha256(state)
        if actual != expected:
            raise FixtureError(f"{arch}: regenerated state sha256 {actual} != recipe {expected}")
    return state


def _drawn_values(
    row: StateRow,
    uniform: np.ndarray,
    arch_recipe: dict[str, Any],
    head_prefix: str,
    bn_ranges: dict[str, list[float]],
) -> np.ndarray:
    if len(row.shape) == 4:  # Conv2d weight (out, in, kh, kw): uniform with variance gain^2 / fan_in
        out_channels = row.shape[0]
        fan_in = row.shape[1] * row.shape[2] * row.shape[3]
        symmetric = 2.0 * uniform - 1.0
        if row.key.startswith(head_prefix):  # Detect 1x1 conv: gain 1, then a per-row scale
            level = row.key[len(head_prefix):].split(".")[0]
            scale = np.asarray(arch_recipe["head_scale"][level], dtype=np.float64)
            values = (symmetric * math.sqrt(3.0 / fan_in)).reshape(out_channels, -1) * scale[:, None]
        else:
            values = symmetric * (arch_recipe["conv_gain"] * math.sqrt(3.0 / fan_in))
        return values.reshape(row.shape)
    low, high = bn_ranges[row.key.rsplit(".", 1)[1]]  # BatchNorm2d vectors
    return (low + (high - low) * uniform).reshape(row.shape)


def state_sha256(state: dict[str, np.ndarray]) -> str:
    """sha256 over the C-order little-endian bytes of every tensor, in the dict's order."""
    digest = hashlib.sha256()
    for array in state.values():
        little = array.astype(array.dtype.newbyteorder("<"), copy=False)
        digest.update(np.ascontiguousarray(little).tobytes())
    return digest.hexdigest()


def coco_names() -> list[str]:
    """The 80 COCO class names, read from the shared ``coco128.yaml``."""
    import yaml

    data = yaml.safe_load(shared_path("data", "detection", "coco128", "coco128.yaml").read_text(encoding="utf-8"))
    names = data["names"]
    return [names[i] for i in range(len(names))] if isinstance(names, dict) else list(names)
