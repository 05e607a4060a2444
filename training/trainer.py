"""The training loop: :class:`Trainer` runs one :class:`~training.config.TrainConfig`.

Per run (``out_dir``):

* ``config.json``: the options, the data description, anchors and transfer reports;
* ``last.ckpt``: the resumable state, written atomically after every epoch (:mod:`training.state`);
* ``best.safetensors`` / ``last.safetensors``: the EMA model in deploy form, fp16, our weights
  format, with provenance (data, split, epochs, command, seed, hyper-parameters) and metrics;
* ``metrics.csv`` and ``metrics.png``: per-epoch losses, mAP and LR;
* ``val_best.txt``: the per-class table of the best epoch.

Each epoch: the augmented training set in a seeded shuffle, forward (training-form model,
channels_last on the CPU, autocast in the run's precision: bf16 on CPUs with native bf16, fp16
with loss scaling on CUDA; see :mod:`detector.precision`), :class:`~training.loss.YOLOv7Loss`, backward, an optimizer step every
``accumulate`` batches (warmup/cosine settings from :mod:`training.optim`), EMA update after
each step; pending accumulated gradients are applied at the end of the epoch (so a checkpoint
never holds half-accumulated gradients). Then validation of the EMA model, folded and fused (pycocotools mAP), the
best model by fitness ``0.1 mAP@0.5 + 0.9 mAP@0.5:0.95`` (official), the checkpoint and plots.

Resuming (:meth:`Trainer.resume`) restores model, EMA, optimizer, scaler, counters and RNG
states; as shuffling and augmentation derive from ``(seed, epoch, index)``, the continued run is
the run that would have happened without the interruption (bit-identical on CPU with the same
thread count; on CUDA within the non-determinism of cuDNN kernels).
"""

from __future__ import annotations

import json
import logging
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from detector import create_model, load_model, save_model, to_deploy
from detector.inference import resolve_device
from detector.model import YOLOv7
from detector.precision import DTYPES, resolve_precision

from .autoanchor import check_anchors
from .config import TrainConfig, available_cpu_count, warmup_iterations
from .datasets import DataConfig, load_data_config
from .ema import ModelEMA
from .errors import ConfigError, TrainingError
from .evaluate import EvaluationResult, coco_ground_truth, evaluate
from .loader import EpochShuffleSampler, TrainingDataset, make_loader
from .loss import YOLOv7Loss
from .optim import apply_settings, build_optimizer, step_settings
from .plots import plot_metrics, write_metrics_csv
from .state import (
    CHECKPOINT_NAME,
    capture_rng_state,
    load_checkpoint,
    make_world_readable,
    restore_rng_state,
    save_checkpoint,
)
from .transfer import freeze_layers, transfer_weights

logger = logging.getLogger(__name__)

BatchCallback = Callable[[int, int], None]
"""Called as ``callback(epoch, batch_index)`` after every training batch (tests, monitoring)."""


@dataclass
class TrainResult:
    """What a finished run produced."""

    out_dir: Path
    best_weights: Path | None
    last_weights: Path
    best_fitness: float
    best_epoch: int | None
    last_evaluation: EvaluationResult | None
    history: list[dict[str, Any]] = field(default_factory=list)


class Trainer:
    """Train a YOLOv7 model as configured (module docstring).

    Args:
        config: the run.
        command: the command line recorded in the model's provenance (default: ``sys.argv``).
        data: an already loaded data configuration (default: ``load_data_config(config.data)``).
    """

    def __init__(self, config: TrainConfig, *, command: str | None = None,
                 data: DataConfig | None = None) -> None:
        self.config = config
        self.command = command if command is not None else shlex.join(sys.argv)
        self._data = data
        self._checkpoint: dict[str, Any] | None = None

    @classmethod
    def resume(cls, path: str | Path, *, command: str | None = None, data: DataConfig | None = None,
               **overrides: Any) -> Trainer:
        """A trainer that continues the run whose checkpoint is ``path`` (run directory or
        ``last.ckpt``). ``overrides`` may change only settings that do not alter the
        computation: ``workers``, ``progress``, ``out_dir``, ``threads``, ``device``,
        ``precision`` (the last three change floating-point results slightly; a run started on
        one machine may continue on another, e.g. a CPU run on a lent GPU). ``data`` must be given when
        the run was started with an in-memory data configuration.

        Raises:
            ResumeError: unreadable checkpoint. ConfigError: a forbidden override.
        """
        allowed = {"workers", "progress", "out_dir", "threads", "device", "precision"}
        forbidden = sorted(set(overrides) - allowed)
        if forbidden:
            raise ConfigError(f"cannot change {forbidden} when resuming (allowed: {sorted(allowed)})")
        checkpoint = load_checkpoint(path)
        config = TrainConfig.from_dict(checkpoint["config"]).replace(**overrides)
        trainer = cls(config, command=command if command is not None else checkpoint.get("command"),
                      data=data)
        trainer._checkpoint = checkpoint
        return trainer

    # ------------------------------------------------------------------------------- setup

    def _setup(self) -> None:
        cfg = self.config
        threads = cfg.threads or available_cpu_count()
        torch.set_num_threads(threads)
        self.device = resolve_device(cfg.device)
        self.precision = resolve_precision(cfg.precision, self.device)
        # autocast: bf16 (CPU with native bf16, or CUDA) needs no loss scaling; fp16 does
        self.autocast_dtype = DTYPES[self.precision]
        self.amp = self.precision != "fp32"
        self.channels_last = self.device.type == "cpu" or self.amp
        logger.info("training on %s (%s) with %d CPU threads, precision %s%s", self.device,
                    hardware_description(self.device), threads, self.precision,
                    " (asked: auto)" if cfg.precision == "auto" else "")
        cfg.out_dir.mkdir(parents=True, exist_ok=True)
        self.data = self._data or load_data_config(cfg.data)
        torch.manual_seed(cfg.seed)
        self.reports: dict[str, Any] = {}
        self.model = self._build_model()
        if cfg.freeze:
            freeze_layers(self.model, cfg.freeze)
        self.model.to(self.device).train()
        if self.channels_last:  # NHWC: oneDNN's fast convolution layout (and tensor cores')
            self.model.to(memory_format=torch.channels_last)
        self.optimizer = build_optimizer(self.model, cfg.hyp, cfg.scaled_weight_decay)
        self.ema = ModelEMA(self.model, cfg.hyp.ema_decay, cfg.hyp.ema_tau)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision == "fp16")
        self.loss_fn = YOLOv7Loss(self.model.head, cfg.hyp, cfg.img_size,
                                  class_groups=self.data.train.class_groups)
        self.train_set = TrainingDataset(self.data.train, cfg.img_size, cfg.hyp, seed=cfg.seed,
                                         cache_images=cfg.cache_images)
        self.train_set.fill_cache()
        self.sampler = EpochShuffleSampler(len(self.train_set), cfg.seed)
        self.loader = make_loader(self.train_set, cfg.batch_size, workers=cfg.workers, sampler=self.sampler)
        self.batches_per_epoch = len(self.loader) if cfg.max_batches_per_epoch is None else \
            min(len(self.loader), cfg.max_batches_per_epoch)
        self.warmup_iters = warmup_iterations(cfg.hyp, self.batches_per_epoch, cfg.epochs)
        self.val_ground_truth = coco_ground_truth(self.data.val)
        self.start_epoch, self.last_opt_step, self.best_fitness, self.best_epoch = 0, -1, -1.0, None
        self.history: list[dict[str, Any]] = []
        if self._checkpoint is not None:
            self._restore(self._checkpoint)
        self._write_run_config()

    def _build_model(self) -> YOLOv7:
        cfg, data = self.config, self.data
        model = create_model(cfg.arch, data.num_classes, training_head=True, names=data.names)
        model.img_size = cfg.img_size
        model.initialize_for_training()
        if self._checkpoint is not None:  # weights, anchors: all come from the checkpoint
            self.reports = dict(self._checkpoint.get("reports", {}))
            return model
        if cfg.weights:
            source = load_model(cfg.weights, fuse=False)
            report = transfer_weights(model, source, str(cfg.weights))
            self.reports["transfer"] = report.to_dict()
        if cfg.autoanchor:
            self.reports["anchors"] = check_anchors(model.head, data.train, cfg.img_size,
                                                    anchor_t=cfg.hyp.anchor_t, seed=cfg.seed).to_dict()
        return model

    def _restore(self, checkpoint: dict[str, Any]) -> None:
        self.model.load_state_dict(checkpoint["model"])
        self.ema.load_state_dict(checkpoint["ema"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scaler.load_state_dict(checkpoint["scaler"])
        self.start_epoch = int(checkpoint["epoch"]) + 1
        self.last_opt_step = int(checkpoint["last_opt_step"])
        self.best_fitness = float(checkpoint["best_fitness"])
        self.best_epoch = checkpoint.get("best_epoch")
        self.history = list(checkpoint["history"])
        restore_rng_state(checkpoint["rng"])
        logger.info("resumed %s after epoch %d of %d", checkpoint["path"], self.start_epoch,
                    self.config.epochs)

    def _write_run_config(self) -> None:
        record = {"config": self.config.to_dict(), "data": self.data.description,
                  "command": self.command, "reports": self.reports,
                  "gradient_accumulation": self.config.gradient_accumulation,
                  "weight_decay": self.config.scaled_weight_decay,
                  "warmup_iterations": self.warmup_iters, "device": str(self.device)}
        (self.config.out_dir / "config.json").write_text(json.dumps(record, indent=2, default=str))

    # -------------------------------------------------------------------------------- loop

    def run(self, on_batch_end: BatchCallback | None = None) -> TrainResult:
        """Train from the start (or the resumed epoch) to ``config.epochs``."""
        self._setup()
        cfg = self.config
        evaluation = None
        if self.start_epoch >= cfg.epochs:
            logger.info("the run in %s is complete (%d epochs); nothing to do", cfg.out_dir, cfg.epochs)
            best = cfg.out_dir / "best.safetensors"
            return TrainResult(cfg.out_dir, best if best.is_file() else None,
                               cfg.out_dir / "last.safetensors", self.best_fitness, self.best_epoch,
                               None, list(self.history))
        for epoch in range(self.start_epoch, cfg.epochs):
            started = time.perf_counter()
            train_losses, images = self._train_epoch(epoch, on_batch_end)
            train_time = time.perf_counter() - started
            evaluation = self._validate(epoch)
            row = self._metrics_row(epoch, train_losses, evaluation, time.perf_counter() - started,
                                    images / max(train_time, 1e-9))
            self.history.append(row)
            if evaluation is not None:  # per-class APs of every validated epoch, for comparisons
                with open(cfg.out_dir / "evaluations.jsonl", "a", encoding="utf-8") as handle:
                    handle.write(json.dumps({"epoch": epoch + 1, **evaluation.to_dict()}) + "\n")
            if evaluation is not None and evaluation.fitness > self.best_fitness:
                self.best_fitness, self.best_epoch = evaluation.fitness, epoch
                self._save_weights(cfg.out_dir / "best.safetensors", epoch, evaluation)
                (cfg.out_dir / "val_best.txt").write_text(f"epoch {epoch}\n{evaluation.table()}\n")
            self._save_checkpoint(epoch)
            write_metrics_csv(cfg.out_dir / "metrics.csv", self.history)
            plot_metrics(cfg.out_dir / "metrics.png", self.history)
            logger.info("epoch %d/%d: loss %.4f, mAP@0.5 %s, mAP@0.5:0.95 %s, %.1f s", epoch + 1,
                        cfg.epochs, row["train_loss"], _fmt(row["map50"]), _fmt(row["map50_95"]),
                        row["epoch_time_s"])
        last = cfg.out_dir / "last.safetensors"
        self._save_weights(last, cfg.epochs - 1, evaluation)
        best = cfg.out_dir / "best.safetensors"
        return TrainResult(cfg.out_dir, best if best.is_file() else None, last, self.best_fitness,
                           self.best_epoch, evaluation, list(self.history))

    def _train_epoch(self, epoch: int, on_batch_end: BatchCallback | None) -> tuple[dict[str, float], int]:
        cfg = self.config
        mosaic = epoch < cfg.epochs - cfg.close_mosaic_epochs
        self.train_set.set_epoch(epoch, mosaic=mosaic)
        self.sampler.set_epoch(epoch)
        self.model.train()
        sums = {"box": 0.0, "obj": 0.0, "cls": 0.0}
        images_seen, batches = 0, 0
        self._ignored_before = self.loss_fn.ignored_cells
        iterator = self._progress(epoch)
        iteration = epoch * self.batches_per_epoch - 1
        for i, (imgs, targets, indices, unlabelled) in iterator:
            if i >= self.batches_per_epoch:
                break
            iteration = epoch * self.batches_per_epoch + i
            settings = step_settings(iteration, epoch, cfg.epochs, cfg.hyp, self.warmup_iters, cfg.batch_size)
            apply_settings(self.optimizer, settings)
            x = imgs.to(self.device, non_blocking=True).float() / 255
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype, enabled=self.amp):
                outputs = self.model(x)
            loss = self.loss_fn(outputs, targets.to(self.device), unlabelled)  # fp32
            if not torch.isfinite(loss.total):
                names = [self.data.train.image_id(j) for j in indices.tolist()]
                raise TrainingError(f"non-finite loss at epoch {epoch + 1}, batch {i} (images "
                                    f"{names[:4]}...): box {loss.box}, obj {loss.obj}, cls {loss.cls}; "
                                    "check these labels or lower lr0")
            self.scaler.scale(loss.total).backward()
            if iteration - self.last_opt_step >= settings.accumulate:
                self._optimizer_step()
                self.last_opt_step = iteration
            sums = {"box": sums["box"] + loss.box, "obj": sums["obj"] + loss.obj, "cls": sums["cls"] + loss.cls}
            batches += 1
            images_seen += imgs.shape[0]
            if hasattr(iterator, "set_postfix"):
                iterator.set_postfix(box=f"{sums['box'] / batches:.4f}", obj=f"{sums['obj'] / batches:.4f}",
                                     cls=f"{sums['cls'] / batches:.4f}", refresh=False)
            if on_batch_end is not None:
                on_batch_end(epoch, i)
        if iteration > self.last_opt_step:  # apply what was accumulated since the last step
            self._optimizer_step()
            self.last_opt_step = iteration
        return {k: v / max(batches, 1) for k, v in sums.items()}, images_seen

    def _progress(self, epoch: int):
        iterable = enumerate(self.loader)
        if not self.config.progress:
            return iterable
        from tqdm import tqdm

        return tqdm(iterable, total=self.batches_per_epoch, desc=f"epoch {epoch + 1}/{self.config.epochs}",
                    dynamic_ncols=True)

    def _optimizer_step(self) -> None:
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.ema.update(self.model)

    def _validate(self, epoch: int) -> EvaluationResult | None:
        cfg = self.config
        last = epoch == cfg.epochs - 1
        if not last and (epoch + 1) % cfg.val_period_epochs:
            return None
        # the EMA model folded to the deploy form and fused: the same function, faster
        model = to_deploy(self.ema.model).fuse().to(self.device).eval()
        return evaluate(model, self.data.val, img_size=cfg.img_size,
                        batch_size=cfg.batch_size, device=self.device, workers=cfg.workers,
                        loss_fn=YOLOv7Loss(model.head, cfg.hyp, cfg.img_size,
                                           class_groups=self.data.val.class_groups),
                        progress=cfg.progress,
                        ground_truth=self.val_ground_truth)

    def _metrics_row(self, epoch: int, train: dict[str, float], evaluation: EvaluationResult | None,
                     epoch_time: float, images_per_s: float) -> dict[str, Any]:
        row: dict[str, Any] = {
            "epoch": epoch + 1, "lr": self.optimizer.param_groups[1]["lr"],
            "train_box": train["box"], "train_obj": train["obj"], "train_cls": train["cls"],
            "train_loss": sum(train.values()), "epoch_time_s": round(epoch_time, 3),
            "train_images_per_s": round(images_per_s, 3),
            "ignored_obj_cells": self.loss_fn.ignored_cells - self._ignored_before,
            "val_box": None, "val_obj": None, "val_cls": None, "val_loss": None,
            "map50": None, "map50_95": None, "fitness": None,
        }
        if evaluation is not None:
            row.update(map50=evaluation.map50, map50_95=evaluation.map50_95, fitness=evaluation.fitness)
            if evaluation.loss is not None:
                row.update(val_box=evaluation.loss["box"], val_obj=evaluation.loss["obj"],
                           val_cls=evaluation.loss["cls"], val_loss=sum(evaluation.loss.values()))
        return row

    # ------------------------------------------------------------------------------ saving

    def _save_checkpoint(self, epoch: int) -> None:
        payload = {
            "epoch": epoch, "config": self.config.to_dict(), "command": self.command,
            "model": self.model.state_dict(), "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
            "last_opt_step": self.last_opt_step, "best_fitness": self.best_fitness,
            "best_epoch": self.best_epoch, "history": self.history,
            "reports": json.loads(json.dumps(self.reports, default=str)),
            "rng": capture_rng_state(),
        }
        save_checkpoint(self.config.out_dir / CHECKPOINT_NAME, payload)

    def _save_weights(self, path: Path, epoch: int, evaluation: EvaluationResult | None) -> Path:
        cfg = self.config
        deploy = to_deploy(self.ema.model)
        deploy.img_size = cfg.img_size
        provenance = {
            "trained_by": "yolov7-track training", "command": self.command,
            "data": self.data.description, "arch": cfg.arch, "weights": cfg.weights,
            "epochs": cfg.epochs, "epochs_completed": epoch + 1, "img_size": cfg.img_size,
            "batch_size": cfg.batch_size, "seed": cfg.seed, "hyp": cfg.hyp.to_dict(),
            "device": str(self.device), "hardware": hardware_description(self.device),
            "precision": self.precision, "torch": torch.__version__,
            "anchors": self.reports.get("anchors"),
            "transfer": _transfer_digest(self.reports.get("transfer")),
        }
        metrics: dict[str, Any] = {}
        if evaluation is not None:
            metrics = {"epoch": epoch + 1, "mAP@0.5": evaluation.map50,
                       "mAP@0.5:0.95": evaluation.map50_95, "split": "val",
                       "val_images": evaluation.images, "val_instances": evaluation.instances,
                       "per_class": [c.__dict__ for c in evaluation.per_class],
                       **{f"eval_{k}": v for k, v in evaluation.settings.items()}}
        written = save_model(deploy, path, half=True, provenance=provenance, metrics=metrics)
        make_world_readable(written)
        return written


def hardware_description(device: torch.device) -> str:
    """The CPU model (``/proc/cpuinfo``) or the CUDA device name, for provenance."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({available_cpu_count()} CPUs usable)"
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def _transfer_digest(report: dict[str, Any] | None) -> dict[str, Any] | None:
    if report is None:
        return None
    return {"source": report["source"], "transferred": len(report["transferred"]),
            "reinitialised": report["reinitialised"], "unused_source": report["unused_source"]}


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def train(config: TrainConfig, **kwargs: Any) -> TrainResult:
    """Convenience: ``Trainer(config, **kwargs).run()``."""
    return Trainer(config, **kwargs).run()
