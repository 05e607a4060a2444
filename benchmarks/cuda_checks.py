"""CUDA checks in one short run, for a session that has a GPU lent (issue 12, scope 4).

Three parts, each printed as a table and written to ``benchmarks/results/cuda_checks.json``:

1. **Fixture parity on CUDA**, fp32 and fp16: yolov7-tiny and yolov7 with the synthetic
   fixture weights (``../shared/fixtures/yolov7``) on both golden inputs; the decoded prediction
   rows against the official code's golden rows (max abs difference of cx/cy in pixels, of
   objectness and class probabilities), and the conf 0.25 / IoU 0.45 detections matched
   against the golden ones. Bars: fp32 as the CPU parity test (cx/cy 1e-2 px, scores 2e-4);
   fp16 0.5 px and 5e-3 (half precision's 11 significant bits).
2. **Speed**: fused forward of yolov7-tiny and yolov7 at 640x640 in fp16, batch 1 and batch 16,
   median of 50 after 10 warm-up runs, CUDA-synchronised; fps = batch / time. Anchor: the
   paper's V100 figures at batch 1 (Wang et al., "YOLOv7", CVPR 2023, Table 1: 286 fps tiny,
   161 fps yolov7), measured there with fp16.
3. **A training step with AMP** (fp16 autocast + GradScaler): yolov7-tiny, batch 16, 640 px,
   a real augmented batch of ``assets/configs/traffic.yaml``; the loss is finite, the
   parameters change, and the step time is reported.

Without CUDA it says so and exits with status 0, writing nothing.

Usage::

    python benchmarks/cuda_checks.py [--repeats 50]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))

RESULTS_PATH = REPO / "benchmarks" / "results" / "cuda_checks.json"
PAPER_V100_FPS = {"yolov7-tiny": 286, "yolov7": 161}
BARS = {"fp32": {"xy_px": 1e-2, "score": 2e-4}, "fp16": {"xy_px": 0.5, "score": 5e-3}}
INPUTS = ("coco139", "pets100")


def fixture_model(arch: str, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    from detector.model import create_model
    from yolov7_fixtures import regenerate_state

    model = create_model(arch)
    state = {k: torch.from_numpy(v).float() if v.dtype == np.float16 else torch.from_numpy(v)
             for k, v in regenerate_state(arch).items()}
    model.load_state_dict(state)
    return model.fuse().eval().to(device=device, dtype=dtype)


PARITY_PRECISIONS = (("fp32", torch.float32), ("fp16", torch.float16))


def parity(device: torch.device, precisions=PARITY_PRECISIONS) -> list[dict[str, Any]]:
    from detector.postprocess import non_max_suppression
    from shared_data import shared_path

    rows = []
    for arch in ("yolov7-tiny", "yolov7"):
        for precision, dtype in precisions:
            model = fixture_model(arch, device, dtype)
            for name in INPUTS:
                golden = np.load(shared_path("fixtures", "yolov7", "golden", f"{arch}__{name}.npz"))
                with np.load(shared_path("fixtures", "yolov7", "inputs", f"{name}.npz")) as inputs:
                    x_u8 = inputs["x640_u8"]
                x = torch.from_numpy(x_u8)[None].to(device).to(dtype) / 255
                with torch.inference_mode():
                    pred = model(x).float()
                got = pred[0].cpu().numpy()[golden["pred_rows_index"]]
                diff = np.abs(got - golden["pred_rows"])
                dets = non_max_suppression(pred, 0.25, 0.45)[0].cpu().numpy()
                gold = golden["nms_conf0p25_iou0p45"]
                bar = BARS[precision]
                row = {"arch": arch, "precision": precision, "input": name,
                       "max_xy_px": float(diff[:, 0:2].max()), "max_score": float(diff[:, 4:].max()),
                       "detections": len(dets), "golden_detections": len(gold)}
                row["ok"] = row["max_xy_px"] <= bar["xy_px"] and row["max_score"] <= bar["score"] \
                    and abs(len(dets) - len(gold)) <= (0 if precision == "fp32" else 2)
                rows.append(row)
            del model
    return rows


def speed(device: torch.device, repeats: int) -> list[dict[str, Any]]:
    from detector.model import create_model

    rows = []
    for arch in ("yolov7-tiny", "yolov7"):
        model = create_model(arch).fuse().eval().to(device=device, dtype=torch.float16)
        for batch in (1, 16):
            x = torch.rand((batch, 3, 640, 640), device=device, dtype=torch.float16)
            times = []
            with torch.inference_mode():
                for i in range(10 + repeats):
                    torch.cuda.synchronize(device)
                    start = time.perf_counter()
                    model(x)
                    torch.cuda.synchronize(device)
                    if i >= 10:
                        times.append(time.perf_counter() - start)
            ms = 1e3 * statistics.median(times)
            rows.append({"arch": arch, "batch": batch, "precision": "fp16", "ms": ms, "fps": batch * 1e3 / ms,
                         "paper_v100_fps_batch1": PAPER_V100_FPS[arch] if batch == 1 else None})
        del model
        torch.cuda.empty_cache()
    return rows


def amp_training_step(device: torch.device) -> dict[str, Any]:
    from detector.model import create_model
    from shared_data import shared_data_config
    from train_throughput import augmented_batch
    from training.config import Hyperparameters
    from training.loss import YOLOv7Loss
    from training.optim import build_optimizer

    images, targets, names, groups = augmented_batch(shared_data_config("traffic.yaml"), 16, 640)[:4]
    model = create_model("yolov7-tiny", len(names), training_head=True, names=names)
    model.initialize_for_training()
    model.to(device).train()
    hyp = Hyperparameters()
    loss_fn = YOLOv7Loss(model.head, hyp, 640, class_groups=groups)
    optimizer = build_optimizer(model, hyp, hyp.weight_decay)
    scaler = torch.amp.GradScaler("cuda")
    before = [p.detach().clone() for p in model.parameters()]
    x, t = images.to(device).float() / 255, targets.to(device)
    times = []
    for _ in range(5):
        torch.cuda.synchronize(device)
        start = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.float16):
            outputs = model(x)
        loss = loss_fn(outputs, t)
        scaler.scale(loss.total).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    changed = sum(int(not torch.equal(a, b)) for a, b in zip(before, model.parameters()))
    return {"loss": float(loss.total), "finite": bool(torch.isfinite(loss.total)), "parameters_changed": changed,
            "parameters": len(before), "step_s_median_last4": statistics.median(times[1:])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device here: nothing measured (run this on a machine with a GPU)")
        return 0
    device = torch.device("cuda:0")
    result = {"device": torch.cuda.get_device_name(device), "torch": torch.__version__,
              "parity": parity(device), "speed": speed(device, args.repeats),
              "amp_training_step": amp_training_step(device)}
    print(f"CUDA checks on {result['device']}")
    print(f"{'arch':<13}{'prec':<6}{'input':<9}{'max xy px':>10}{'max score':>11}{'dets':>6}{'golden':>8}  ok")
    for r in result["parity"]:
        print(f"{r['arch']:<13}{r['precision']:<6}{r['input']:<9}{r['max_xy_px']:>10.4f}{r['max_score']:>11.2e}"
              f"{r['detections']:>6}{r['golden_detections']:>8}  {r['ok']}")
    print(f"\n{'arch':<13}{'batch':>6}{'ms':>9}{'fps':>9}{'paper V100 fps':>16}")
    for r in result["speed"]:
        paper = r["paper_v100_fps_batch1"]
        print(f"{r['arch']:<13}{r['batch']:>6}{r['ms']:>9.2f}{r['fps']:>9.1f}{paper if paper else '-':>16}")
    step = result["amp_training_step"]
    print(f"\nAMP training step (yolov7-tiny, batch 16, 640): loss {step['loss']:.4f} finite={step['finite']}, "
          f"{step['parameters_changed']}/{step['parameters']} parameters changed, {step['step_s_median_last4']:.3f} s")
    RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_PATH.write_text(json.dumps(result, indent=2))
    print(f"wrote {RESULTS_PATH}")
    return 0 if all(r["ok"] for r in result["parity"]) and step["finite"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
