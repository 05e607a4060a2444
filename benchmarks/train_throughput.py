"""Training throughput: images per second of a full training step (batch 16, 320 px, 6 classes).

Issues 5 and 10. A training step is what :class:`training.trainer.Trainer` does per batch: forward of the
training-form model, :class:`training.loss.YOLOv7Loss` (simOTA assignment + loss), backward,
SGD step and EMA update. The batch is a real augmented batch (mosaic, mixup, affine, HSV, flip)
of the merged traffic training set (``assets/configs/traffic.yaml``, 6 classes; ``--data`` picks
another). Every number is the **median** over ``--repeats`` timed runs after ``--warmup`` untimed
ones. Reported:

* ``step``: the whole step -> images/s (the headline number), and its parts: ``forward``,
  ``loss`` and ``backward + optimizer + EMA``;
* ``data``: building one augmented batch in the main process (the DataLoader workers' work);
* ``assign``: the batched simOTA assignment of :mod:`training.assign` against a baseline
  measured in the same run, a per-image / per-target loop written like the official
  ``build_targets`` (same results, see ``tests/test_training_assign.py``).

Rows, all measured in one run on the same batch: CPU fp32 in the default (NCHW) memory format
(the baseline), fp32 channels_last, and bf16 autocast with channels_last on CPUs with native bf16
(AVX512-BF16/AMX), the trainer's setting (:mod:`detector.precision`), with 1 and 2 threads
(``--threads``); CUDA fp32 and fp16 AMP when present. ``vs fp32`` is the step time of the fp32
NCHW row with the same thread count divided by the row's.

Usage::

    python benchmarks/train_throughput.py [--models yolov7-tiny yolov7] [--batch-size 16]
        [--img-size 320] [--threads 2] [--repeats 5] [--warmup 2] [--data DATA] [--no-cuda]

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
from detector.precision import DTYPES, cpu_has_native_bf16  # noqa: E402

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


def augmented_batch(data_yaml: Path, batch_size: int, img_size: int, seed: int = 0
                    ) -> tuple[torch.Tensor, torch.Tensor, list[str], tuple, float]:
    """A real augmented batch of the training split of ``data_yaml``, its class names, its
    coarse-label class groups, and the median time to build one (seconds)."""
    shared_path("data", "detection")  # fails loudly when the data is missing
    data = load_data_config(data_yaml)
    dataset = TrainingDataset(data.train, img_size, Hyperparameters(), seed=seed)
    dataset.set_epoch(0)
    counter = iter(range(10**9))

    def build():
        start = next(counter) * batch_size
        return collate([dataset[(start + i) % len(dataset)] for i in range(batch_size)])

    seconds = median_s(build, repeats=3, warmup=1)
    images, targets, *_ = build()
    return images, targets, data.names, data.train.class_groups, seconds


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

def measure_model(arch: str, names: list[str], images: torch.Tensor, targets: torch.Tensor,
                  device: torch.device, precision: str, channels_last: bool, repeats: int,
                  warmup: int, class_groups: tuple = ()) -> dict[str, float]:
    torch.manual_seed(0)
    model = create_model(arch, len(names), training_head=True, names=names)
    model.initialize_for_training()
    model.to(device).train()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=memory_format)
    amp = precision != "fp32"
    hyp = Hyperparameters()
    img_size = images.shape[-1]
    loss_fn = YOLOv7Loss(model.head, hyp, img_size, class_groups=class_groups)
    optimizer = build_optimizer(model, hyp, hyp.weight_decay)
    ema = ModelEMA(model)
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
    x = (images.to(device).float() / 255).contiguous(memory_format=memory_format)
    t = targets.to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else None

    def forward():
        with torch.autocast(device_type=device.type, dtype=DTYPES[precision], enabled=amp):
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
    # the assignment timings compare two implementations of plain simOTA: coarse labels (class
    # id nc + g) stand in as their group's first member, which costs the same
    t_plain = t.clone()
    for g, members in enumerate(class_groups):
        t_plain[t_plain[:, 1] == len(names) + g, 1] = float(members[0])
    assign_s = median_s(lambda: simota_assign(lead, t_plain, anchors, model.head.stride), repeats, 1, sync)
    loop_s = median_s(lambda: loop_assign(lead, t_plain, anchors, model.head.stride), repeats, 1, sync)
    batch = images.shape[0]
    return {"images_per_s": batch / step_s, "step_s": step_s, "forward_s": forward_s,
            "loss_s": loss_s, "backward_optimizer_ema_s": max(step_s - forward_s - loss_s, 0.0),
            "assign_batched_ms": assign_s * 1e3, "assign_loop_baseline_ms": loop_s * 1e3,
            "assign_speedup": loop_s / assign_s}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["yolov7-tiny"])
    parser.add_argument("--data", type=Path, default=REPO / "assets" / "configs" / "traffic.yaml")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--img-size", type=int, default=320)
    parser.add_argument("--threads", type=int, nargs="+", default=[2])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--no-cuda", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    images, targets, names, class_groups, data_s = augmented_batch(args.data, args.batch_size, args.img_size)
    print(f"augmented batch of {args.batch_size} at {args.img_size} ({args.data.name}, {len(names)} "
          f"classes): {len(targets)} targets, built in {data_s:.3f} s (median, main process) = "
          f"{args.batch_size / data_s:.1f} images/s")
    runs = []
    cpu_rows = [("fp32", False), ("fp32", True)] + ([("bf16", True)] if cpu_has_native_bf16() else [])
    configs = [("cpu", n, precision, cl) for n in args.threads for precision, cl in cpu_rows]
    if torch.cuda.is_available() and not args.no_cuda:
        configs += [("cuda", None, "fp32", False), ("cuda", None, "fp16", True)]
    for arch in args.models:
        for device_name, threads, precision, channels_last in configs:
            if threads is not None:
                torch.set_num_threads(threads)
            result = measure_model(arch, names, images, targets, torch.device(device_name), precision,
                                   channels_last, args.repeats, args.warmup, class_groups)
            runs.append({"model": arch, "device": device_name, "threads": threads,
                         "precision": precision, "channels_last": channels_last, **result})
    for r in runs:
        base = next(b for b in runs if b["model"] == r["model"] and b["device"] == r["device"]
                    and b["threads"] == r["threads"] and b["precision"] == "fp32" and not b["channels_last"])
        r["speedup_vs_fp32"] = base["step_s"] / r["step_s"]

    header = (f"{'model':<13}{'device':<7}{'thr':>4}{'prec':>6}{'NHWC':>6}{'img/s':>8}{'step s':>8}"
              f"{'vs fp32':>8}{'fwd s':>7}{'loss s':>8}{'bwd+opt s':>10}{'assign ms':>11}{'loop ms':>9}{'x':>6}")
    print(header)
    for r in runs:
        print(f"{r['model']:<13}{r['device']:<7}{r['threads'] or '-':>4}{r['precision']:>6}"
              f"{'yes' if r['channels_last'] else 'no':>6}{r['images_per_s']:>8.2f}{r['step_s']:>8.2f}"
              f"{r['speedup_vs_fp32']:>7.2f}x{r['forward_s']:>7.2f}{r['loss_s']:>8.3f}"
              f"{r['backward_optimizer_ema_s']:>10.2f}{r['assign_batched_ms']:>11.1f}"
              f"{r['assign_loop_baseline_ms']:>9.1f}{r['assign_speedup']:>6.1f}")
    RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_PATH.write_text(json.dumps({
        "batch_size": args.batch_size, "img_size": args.img_size, "targets": len(targets),
        "data": str(args.data.relative_to(REPO) if args.data.is_relative_to(REPO) else args.data),
        "classes": len(names), "data_batch_s": data_s, "repeats": args.repeats, "statistic": "median",
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpu_native_bf16": cpu_has_native_bf16(),
                    "torch": torch.__version__, "numpy": np.__version__,
                    "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
        "runs": runs}, indent=2))
    print(f"wrote {RESULTS_PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
