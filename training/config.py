"""Training options: :class:`Hyperparameters` (the recipe) and :class:`TrainConfig` (one run).

The default hyper-parameters are the official YOLOv7 from-scratch recipe for P5 models
(WongKinYiu/yolov7 ``data/hyp.scratch.p5.yaml``); ``PRESETS["tiny"]`` is the recipe the
official repository uses for yolov7-tiny (``data/hyp.scratch.tiny.yaml``). Loss gains and level
weights follow the YOLOv7 paper's training recipe as documented in the official ``train.py``
and ``utils/loss.py`` (see :mod:`training.loss`).
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from detector.limits import MAX_IMG_SIZE_PX

from .errors import ConfigError

NOMINAL_BATCH_SIZE = 64
"""Batch size the recipe's learning rate and weight decay are tuned for (official ``nbs``)."""


@dataclass(frozen=True)
class Hyperparameters:
    """The training recipe. Units: learning rates per optimizer step; fractions in [0, 1].

    Optimisation (official ``train.py``): SGD with Nesterov momentum ``momentum``; cosine LR
    from ``lr0`` to ``lr0 * lrf`` over the run; linear warmup over
    ``max(warmup_epochs * batches_per_epoch, warmup_min_iterations)`` iterations (capped at a
    third of the run) during which the bias LR falls from ``warmup_bias_lr``, the other LRs
    rise from 0 and momentum rises from ``warmup_momentum``; weight decay on conv/linear
    weights only.

    Loss (official ``ComputeLossOTA``): gains ``box``, ``cls`` and ``obj`` (scaled per run by
    :meth:`loss_gains`), ``anchor_t`` the anchor/target size-ratio limit, ``aux_weight`` the
    weight of auxiliary heads (P6), ``topk_iou`` the number of IoUs summed for simOTA's dynamic
    k, ``iou_cost_weight`` the factor of -log(IoU) in the assignment cost.

    Augmentation (official ``utils/datasets.py``): HSV gains, affine ``degrees``,
    ``translate`` (fraction of the image), ``scale`` (+- gain), ``shear`` (degrees), horizontal
    flip probability ``fliplr``, mosaic probability ``mosaic`` of which ``mosaic9`` are 3x3
    mosaics, mixup probability ``mixup`` (ratio ~ Beta(8, 8)).

    EMA (:mod:`training.ema`): decay ``ema_decay * (1 - exp(-updates / ema_tau))``.

    Batch: ``nominal_batch`` is the batch the LR and weight decay are tuned for (official
    ``nbs = 64``); gradients accumulate to it and weight decay scales with it. A smaller value
    gives more optimizer steps per epoch, which short runs on small data (CPU) need.

    Partial labels (merged sources, :mod:`training.merge`): with ``unlabelled_ignore``, an
    unassigned prediction whose score for a class its image's source does not label exceeds
    ``unlabelled_ignore_conf`` gets no objectness loss (:meth:`training.loss.YOLOv7Loss`);
    ``False`` is the naive merge (every unlabelled object is background).
    """

    lr0: float = 0.01
    lrf: float = 0.1
    momentum: float = 0.937
    weight_decay: float = 0.0005
    warmup_epochs: float = 3.0
    warmup_min_iterations: int = 1000
    warmup_momentum: float = 0.8
    warmup_bias_lr: float = 0.1
    box: float = 0.05
    cls: float = 0.3
    obj: float = 0.7
    anchor_t: float = 4.0
    aux_weight: float = 0.25
    topk_iou: int = 10
    iou_cost_weight: float = 3.0
    hsv_h: float = 0.015
    hsv_s: float = 0.7
    hsv_v: float = 0.4
    degrees: float = 0.0
    translate: float = 0.2
    scale: float = 0.9
    shear: float = 0.0
    fliplr: float = 0.5
    mosaic: float = 1.0
    mosaic9: float = 0.2
    mixup: float = 0.15
    ema_decay: float = 0.9999
    ema_tau: float = 2000.0
    nominal_batch: int = NOMINAL_BATCH_SIZE
    unlabelled_ignore: bool = True
    unlabelled_ignore_conf: float = 0.1

    def __post_init__(self) -> None:
        for name in ("lr0", "lrf", "box", "cls", "obj", "ema_tau"):
            _require(getattr(self, name) > 0, name, "must be > 0")
        for name in ("momentum", "warmup_momentum", "ema_decay"):
            _require(0 <= getattr(self, name) < 1, name, "must be in [0, 1)")
        for name in ("weight_decay", "warmup_epochs", "warmup_bias_lr", "aux_weight",
                     "hsv_h", "hsv_s", "hsv_v", "degrees", "translate", "shear",
                     "iou_cost_weight"):
            _require(getattr(self, name) >= 0, name, "must be >= 0")
        for name in ("fliplr", "mosaic", "mosaic9", "mixup", "translate"):
            _require(0 <= getattr(self, name) <= 1, name, "must be in [0, 1]")
        _require(0 <= self.scale < 1, "scale", "must be in [0, 1) (scale gain is 1 +- scale)")
        _require(self.anchor_t > 1, "anchor_t", "must be > 1")
        _require(self.topk_iou >= 1, "topk_iou", "must be >= 1")
        _require(self.warmup_min_iterations >= 0, "warmup_min_iterations", "must be >= 0")
        _require(self.nominal_batch >= 1, "nominal_batch", "must be >= 1")
        _require(0 < self.unlabelled_ignore_conf < 1, "unlabelled_ignore_conf", "must be in (0, 1)")

    def accumulation(self, batch_size: int) -> int:
        """Forward passes per optimizer step once warmup is over (official ``accumulate``):
        ``max(round(nominal_batch / batch_size), 1)``."""
        return max(round(self.nominal_batch / batch_size), 1)

    def loss_gains(self, num_classes: int, img_size: int, num_levels: int) -> tuple[float, float, float]:
        """``(box, cls, obj)`` gains for a run, as official ``train.py`` scales them:
        ``box * 3/nl``, ``cls * nc/80 * 3/nl``, ``obj * (img_size/640)^2 * 3/nl``
        (the ``3/nl`` factor is 1 for P5 models and 0.75 for P6)."""
        level_factor = 3.0 / num_levels
        return (self.box * level_factor,
                self.cls * num_classes / 80.0 * level_factor,
                self.obj * (img_size / 640.0) ** 2 * level_factor)

    def replace(self, **changes: Any) -> Hyperparameters:
        """A copy with ``changes`` (validated); unknown names raise :class:`ConfigError`."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ConfigError(f"unknown hyper-parameters {unknown}; known: "
                              f"{', '.join(f.name for f in dataclasses.fields(self))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _require(condition: bool, name: str, problem: str) -> None:
    if not condition:
        raise ConfigError(f"hyper-parameter {name} {problem}")


PRESETS: dict[str, Hyperparameters] = {
    "p5": Hyperparameters(),
    # hyp.scratch.tiny: smaller augmentation, a lower final LR, stronger cls/obj gains
    "tiny": Hyperparameters(lrf=0.01, cls=0.5, obj=1.0, translate=0.1, scale=0.5, mixup=0.05),
}


def load_hyperparameters(spec: str | Path | None) -> Hyperparameters:
    """A preset name (``"p5"``, ``"tiny"``), a YAML file of overrides on top of ``p5`` (or of the
    preset named by its ``preset:`` key), or ``None`` for ``p5``.

    Raises:
        ConfigError: an unknown preset, unreadable file, unknown key or invalid value.
    """
    if spec is None:
        return PRESETS["p5"]
    if str(spec) in PRESETS:
        return PRESETS[str(spec)]
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(f"--hyp {spec!r} is neither a preset ({', '.join(PRESETS)}) nor a file")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read hyper-parameters from {path}: {exc}") from exc
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of hyper-parameters, got {type(values).__name__}")
    base_name = values.pop("preset", "p5")
    if base_name not in PRESETS:
        raise ConfigError(f"{path}: unknown preset {base_name!r}; known: {', '.join(PRESETS)}")
    try:
        return PRESETS[base_name].replace(**values)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def available_cpu_count() -> int:
    """CPUs this process may run on (affinity-aware)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class TrainConfig:
    """One training run (validated at construction).

    Attributes:
        data: data YAML (see :func:`training.datasets.load_data_config`).
        arch: architecture name (``"yolov7-tiny"``, ...).
        weights: initial weights (path or registry name) or ``None`` to train from scratch.
        out_dir: run directory (checkpoints, metrics CSV, plots, final models).
        epochs: number of epochs. img_size: square training size in pixels (multiple of 32,
            64 for P6). batch_size: images per forward pass.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
        workers: DataLoader worker processes (0 = load in the main process).
        threads: torch intra-op threads (None: all CPUs this process may use).
        seed: master seed; shuffling and augmentation derive from (seed, epoch, image).
        hyp: the recipe. freeze: number of leading layers to freeze (0 = none).
        close_mosaic_epochs: mosaic/mixup are off in the last this many epochs.
        autoanchor: check anchors (BPR) and refit them when BPR < 0.98 (scratch and finetune).
        val_period_epochs: validate every this many epochs (the last epoch always).
        cache_images: keep decoded (resized) training images in memory.
        progress: show a tqdm progress bar.
        max_batches_per_epoch: stop each epoch after this many batches (smoke runs; None = all).
        precision: ``auto`` | ``fp32`` | ``bf16`` | ``fp16``: autocast dtype of the forward
            and backward pass (the loss is fp32); ``auto`` is bf16 on CPUs with native bf16,
            fp16 on CUDA, else fp32 (:func:`detector.precision.resolve_precision`).
    """

    data: Path
    arch: str = "yolov7-tiny"
    weights: str | None = None
    out_dir: Path = Path("runs/train")
    epochs: int = 300
    img_size: int = 640
    batch_size: int = 16
    device: str = "auto"
    workers: int = 2
    threads: int | None = None
    seed: int = 0
    hyp: Hyperparameters = field(default_factory=Hyperparameters)
    freeze: int = 0
    close_mosaic_epochs: int = 10
    autoanchor: bool = True
    val_period_epochs: int = 1
    cache_images: bool = False
    progress: bool = True
    max_batches_per_epoch: int | None = None
    precision: str = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", Path(self.data))
        object.__setattr__(self, "out_dir", Path(self.out_dir))
        checks = [
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.img_size >= 32 and self.img_size % 32 == 0, "img_size must be a positive multiple of 32"),
            (self.img_size <= MAX_IMG_SIZE_PX,
             f"img_size must be <= {MAX_IMG_SIZE_PX} px (detector.limits.MAX_IMG_SIZE_PX), got {self.img_size}"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.workers >= 0, "workers must be >= 0"),
            (self.threads is None or self.threads >= 1, "threads must be >= 1"),
            (self.freeze >= 0, "freeze must be >= 0"),
            (self.close_mosaic_epochs >= 0, "close_mosaic_epochs must be >= 0"),
            (self.val_period_epochs >= 1, "val_period_epochs must be >= 1"),
            (self.max_batches_per_epoch is None or self.max_batches_per_epoch >= 1,
             "max_batches_per_epoch must be >= 1"),
            (self.precision in ("auto", "fp32", "bf16", "fp16"),
             f"precision must be auto, fp32, bf16 or fp16, got {self.precision!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        if not isinstance(self.hyp, Hyperparameters):
            raise ConfigError(f"hyp must be a Hyperparameters, got {type(self.hyp).__name__}")

    @property
    def gradient_accumulation(self) -> int:
        """Forward passes per optimizer step: ``max(round(nominal_batch / batch_size), 1)``."""
        return self.hyp.accumulation(self.batch_size)

    @property
    def scaled_weight_decay(self) -> float:
        """Weight decay scaled by the effective batch over the nominal batch (official)."""
        return self.hyp.weight_decay * self.batch_size * self.gradient_accumulation / self.hyp.nominal_batch

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict` (unknown keys raise :class:`ConfigError`)."""
        values = dict(values)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown training options {unknown}")
        if isinstance(values.get("hyp"), dict):
            values["hyp"] = PRESETS["p5"].replace(**values["hyp"])
        return cls(**values)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["data"] = str(self.data)
        out["out_dir"] = str(self.out_dir)
        out["hyp"] = self.hyp.to_dict()
        return out


def warmup_iterations(hyp: Hyperparameters, batches_per_epoch: int, epochs: int) -> int:
    """Warmup length in iterations: ``max(warmup_epochs * nb, warmup_min_iterations)`` as the
    official code, capped at a third of the run so short finetunes reach the full LR;
    0 (no warmup) when ``warmup_epochs`` is 0."""
    wanted = max(round(hyp.warmup_epochs * batches_per_epoch), hyp.warmup_min_iterations)
    if hyp.warmup_epochs == 0:
        return 0
    return int(min(wanted, math.ceil(batches_per_epoch * epochs / 3)))
