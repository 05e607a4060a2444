"""Training throughput: images per second of a full training step (batch 8, 640 px).

Issue 5. A training step is what :class:`training.trainer.Trainer` does per batch: forward of the
training-form model, :class:`training.loss.YOLOv7Loss` (simOTA assignment + loss), backward,
SGD step and EMA update. The batch is a real augmented batch (mosaic, mixup, affine, HSV, flip)
of the Kaggle car training split (``assets/configs/kaggle_cars.yaml``). Every number is the
**median** over ``--repeats`` timed runs after ``--warmup`` untimed ones. Reported:

* ``step``: the whole step -> images/s (the headline number), and its parts: ``forward``,
  ``loss`` and ``backward + optimizer + EMA``;
* ``data``: building one augmented batch in the main process (the DataLoader workers' work);
* ``assign``: the batched simOTA assignment of :mod:`training.assign` against a baseline
  measured in the same run, a per-image / per-target loop written like the official
  ``build_targets`` (same results, see ``tests/test_training_assign.py``).

CPU with 1 and 2 threads (``--threads``); CUDA when present (fp32 and AMP).

Usage::

    python benchmarks/train_throughput.py [--models yolov7-tiny yolov7] [--batch-size 8]
        [--img-size 640] [--threads 1 2] [--repeats 5] [--warmup 1] [--no-cuda]

prints the tables and writes ``benchmarks/results/train_throughput.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from detector import create_model  # noqa: E402
from shared_data import shared_path  # noqa: E402
from training.assign import LEAD_NEIGHBOUR_OFFSET, candidate_cells, simota_assign  # noqa: E402
from training.boxes import batched_pairwise_iou, cxcywh_to_xyxy  # noqa: E402
from training.config import Hyperparameters  # noqa: E402
from training.datasets import load_data_config  # noqa: E402
from training.ema import ModelEMA  # noqa: E402
from training.loader import TrainingDataset, collate  # noqa: E402
from training.loss import YOLOv7Loss  # noqa: E402
from training.optim import build_optimizer  # noqa: E402

logger = logging.getLogger("train_throughput")
RESULTS_PATH = REPO / "benchmarks" / "results" / "train_throughput.json"


def median_s(run: Callable[[], Any], repeats: int, warmup: int, sync: Callable[[], None] | None = None) -> float:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        if sync:
            sync()
        start = time.perf_counter()
        run()
        if sync:
            sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def augmented_batch(batch_size: int, img_size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, float]:
    """A real augmented batch of the Kaggle car training split, and the median time to build
    one (seconds)."""
    shared_path("data", "detection", "kaggle_cars")  # fails loudly when the data is missing
    data = load_data_config(REPO / "assets" / "configs" / "kaggle_cars.yaml")
    dataset = TrainingDataset(data.train, img_size, Hyperparameters(), seed=seed)
    dataset.set_epoch(0)
    counter = iter(range(10**9))

    def build():
        start = next(counter) * batch_size
        return collate([dataset[(start + i) % len(dataset)] for i in range(batch_size)])

    seconds = median_s(build, repeats=3, warmup=1)
    images, targets, _ = build()
    return images, targets, seconds


# ----------------------------------------------------------- baseline: per-image loops

def loop_assign(raw_maps, targets, anchors_px, strides, topk=10, iou_weight=3.0):
    """simOTA with Python loops over images and targets (the official code's structure)."""
    matches = []
    for b in range(raw_maps[0].shape[0]):
        rows = (targets[:, 0] == b).nonzero().flatten()
        if not len(rows):
            continue
        t = targets[rows]
        cands, boxes, probs = [], [], []
        for level, pi in enumerate(raw_maps):
            c = candidate_cells(t, pi.shape[2:4], anchors_px[level], float(strides[level]),
                                LEAD_NEIGHBOUR_OFFSET, 4.0)
            rows_pred = pi[b, c.anchor, c.grid_y, c.grid_x].detach().float().sigmoid()
            grid = torch.stack((c.grid_x, c.grid_y), 1)
            xy = (rows_pred[:, :2] * 2 - 0.5 + grid) * strides[level]
            wh = (rows_pred[:, 2:4] * 2) ** 2 * anchors_px[level][c.anchor]
            boxes.append(cxcywh_to_xyxy(torch.cat((xy, wh), 1)))
            probs.append((rows_pred[:, 5:] * rows_pred[:, 4:5]).sqrt())
            cands += [(level, *k) for k in zip(c.anchor.tolist(), c.grid_y.tolist(), c.grid_x.tolist())]
        boxes, probs = torch.cat(boxes), torch.cat(probs).clamp(1e-7, 1 - 1e-7)
        iou = batched_pairwise_iou(cxcywh_to_xyxy(t[:, 2:6])[None], boxes[None])[0]
        if iou.shape[1] == 0:  # no candidate cells in this image (random targets at small sizes)
            continue
        matching = torch.zeros_like(iou)
        cost = torch.empty_like(iou)
        for g in range(len(t)):
            onehot = torch.zeros(probs.shape[1])
            onehot[int(t[g, 1])] = 1
            bce = torch.nn.functional.binary_cross_entropy(probs, onehot.expand_as(probs), reduction="none").sum(1)
            cost[g] = bce + iou_weight * -torch.log(iou[g] + 1e-8)
        for g in range(len(t)):
            k = max(1, int(iou[g].topk(min(topk, iou.shape[1])).values.sum()))
            matching[g, cost[g].topk(k, largest=False).indices] = 1
        contested = matching.sum(0) > 1
        if contested.any():
            matching[:, contested] = 0
            matching[cost[:, contested].argmin(0), contested.nonzero().flatten()] = 1
        for j in matching.sum(0).nonzero().flatten().tolist():
            matches.append((b, *cands[j], int(matching[:, j].argmax())))
    return matches


# -------------------------------------------------------------------------- measuring

def measure_model(arch: str, images: torch.Tensor, targets: torch.Tensor, device: torch.device,
                  amp: bool, repeats: int, warmup: int) -> dict[str, float]:
    torch.manual_seed(0)
    model = create_model(arch, 1, training_head=True, names=["car"])
    model.initialize_for_training()
    model.to(device).train()
    hyp = Hyperparameters()
    img_size = images.shape[-1]
    loss_fn = YOLOv7Loss(model.head, hyp, img_size)
    optimizer = build_optimizer(model, hyp, hyp.weight_decay)
    ema = ModelEMA(model)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    x = images.to(device).float() / 255
    t = targets.to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else None

    def forward():
        with torch.autocast(device_type=device.type, enabled=amp):
            return model(x)

    def step():
        outputs = forward()
        loss = loss_fn(outputs, t)
        scaler.scale(loss.total).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        ema.update(model)

    step_s = median_s(step, repeats, warmup, sync)
    with torch.no_grad():
        forward_s = median_s(forward, repeats, 1, sync)
        outputs = forward()
    loss_s = median_s(lambda: loss_fn(outputs, t), repeats, 1, sync)
    lead = outputs[: model.head.nl]
    anchors = model.head.anchor_grid.view(model.head.nl, model.head.na, 2)
    assign_s = median_s(lambda: simota_assign(lead, t, anchors, model.head.stride), repeats, 1, sync)
    loop_s = median_s(lambda: loop_assign(lead, t, anchors, model.head.stride), repeats, 1, sync)
    batch = images.shape[0]
    return {"images_per_s": batch / step_s, "step_s": step_s, "forward_s": forward_s,
            "loss_s": loss_s, "backward_optimizer_ema_s": max(step_s - forward_s - loss_s, 0.0),
            "assign_batched_ms": assign_s * 1e3, "assign_loop_baseline_ms": loop_s * 1e3,
            "assign_speedup": loop_s / assign_s}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["yolov7-tiny"])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--img-size", type=int, default=640)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--no-cuda", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    images, targets, data_s = augmented_batch(args.batch_size, args.img_size)
    print(f"augmented batch of {args.batch_size} at {args.img_size}: {len(targets)} targets, "
          f"built in {data_s:.3f} s (median, main process) = {args.batch_size / data_s:.1f} images/s")
    runs = []
    configs = [("cpu", n, False) for n in args.threads]
    if torch.cuda.is_available() and not args.no_cuda:
        configs += [("cuda", None, False), ("cuda", None, True)]
    for arch in args.models:
        for device_name, threads, amp in configs:
            if threads is not None:
                torch.set_num_threads(threads)
            result = measure_model(arch, images, targets, torch.device(device_name), amp,
                                   args.repeats, args.warmup)
            runs.append({"model": arch, "device": device_name, "threads": threads, "amp": amp, **result})

    header = (f"{'model':<13}{'device':<8}{'thr':>4}{'amp':>5}{'img/s':>8}{'step s':>8}{'fwd s':>7}"
              f"{'loss s':>8}{'bwd+opt s':>10}{'assign ms':>11}{'loop ms':>9}{'x':>6}")
    print(header)
    for r in runs:
        print(f"{r['model']:<13}{r['device']:<8}{r['threads'] or '-':>4}{str(r['amp'])[0]:>5}"
              f"{r['images_per_s']:>8.2f}{r['step_s']:>8.2f}{r['forward_s']:>7.2f}{r['loss_s']:>8.3f}"
              f"{r['backward_optimizer_ema_s']:>10.2f}{r['assign_batched_ms']:>11.1f}"
              f"{r['assign_loop_baseline_ms']:>9.1f}{r['assign_speedup']:>6.1f}")
    RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_PATH.write_text(json.dumps({
        "batch_size": args.batch_size, "img_size": args.img_size, "targets": len(targets),
        "data_batch_s": data_s, "repeats": args.repeats, "statistic": "median",
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "torch": torch.__version__, "numpy": np.__version__,
                    "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
        "runs": runs}, indent=2))
    print(f"wrote {RESULTS_PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
