"""bf16 training learns as well as fp32: the cars recipe trained twice, once per precision.

Issue 10. Both runs use the bundled cars recipe (``assets/configs/kaggle_cars.yaml``, the
article's split; ``hyp.tiny-short.yaml``; yolov7-tiny; 320 px; batch 16; ``--seed``, 0 by default)
for ``--epochs`` epochs, from scratch (``--weights none``, the default) or finetuned from a model
(``--weights yolov7-tiny-traffic``: what a user does with the bundled model; the head is new, the
rest starts trained, so a short run ends near convergence instead of on the steep part of the
learning curve, where the final mAP of any two runs, even two fp32 runs with different seeds,
differs by more than the bar), one with ``--precision fp32`` and one with ``--precision bf16``
(autocast with channels_last, loss in fp32), side by side with ``--threads`` torch threads each.
Reported: the final validation mAP@0.5 and mAP@0.5:0.95 of each (pycocotools, the EMA model in
fp32), their difference, and the wall time of each run. The issue's bar: the same mAP@0.5
within 0.02.

Usage::

    python benchmarks/precision_parity.py [--epochs 30] [--threads 1] [--runs-dir DIR]
        [--weights none|yolov7-tiny-traffic|FILE] [--seed 0]

Run directories go outside the repository (default ``~/.cache/yolov7-track/parity-runs``);
prints a table and writes ``benchmarks/results/precision_parity.json`` (from scratch) or
``precision_parity_<model>.json`` (finetuned).
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from shared_data import shared_data_config  # noqa: E402

RESULTS_PATH = REPO / "benchmarks" / "results" / "precision_parity.json"
PRECISIONS = ("fp32", "bf16")
PARITY_TOLERANCE = 0.02


def command(precision: str, epochs: int, threads: int, out: Path, weights: str = "none",
            seed: int = 0) -> list[str]:
    return [sys.executable, "-m", "app.cli", "train", "--data", str(shared_data_config("kaggle_cars.yaml")),
            "--model", "yolov7-tiny", "--weights", weights, "--epochs", str(epochs), "--img-size", "320",
            "--batch-size", "16", "--hyp", str(REPO / "assets" / "configs" / "hyp.tiny-short.yaml"),
            "--device", "cpu", "--threads", str(threads), "--workers", "0", "--cache-images",
            "--val-period", str(epochs), "--close-mosaic", str(max(epochs // 8, 1)), "--seed", str(seed),
            "--precision", precision, "--no-progress", "--exist-ok", "--out", str(out)]


def final_row(run_dir: Path) -> dict[str, str]:
    with open(run_dir / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {**rows[-1], "run_s": str(sum(float(r["epoch_time_s"]) for r in rows))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--weights", default="none", help="none (from scratch) or a model to finetune")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs-dir", type=Path, default=Path.home() / ".cache" / "yolov7-track" / "parity-runs")
    args = parser.parse_args(argv)

    processes = {}
    for precision in PRECISIONS:
        start = "scratch" if args.weights == "none" else Path(args.weights).stem
        out = args.runs_dir / f"cars-{start}-seed{args.seed}-{precision}"
        out.mkdir(parents=True, exist_ok=True)
        log = open(out / "train.log", "w")
        processes[precision] = (subprocess.Popen(command(precision, args.epochs, args.threads, out,
                                                                 args.weights, args.seed),
                                                 cwd=REPO, stdout=log, stderr=subprocess.STDOUT), log, out)
    runs = {}
    for precision, (process, log, out) in processes.items():
        status = process.wait()
        log.close()
        if status != 0:
            raise SystemExit(f"the {precision} run failed (status {status}); see {out / 'train.log'}")
        row = final_row(out)
        runs[precision] = {"map50": float(row["map50"]), "map50_95": float(row["map50_95"]),
                           "wall_s": float(row["run_s"]),  # the epochs' own times (runs end apart)
                           "train_images_per_s_last_epoch": float(row["train_images_per_s"]),
                           "run_dir": str(out)}
    difference = runs["bf16"]["map50"] - runs["fp32"]["map50"]
    print(f"cars recipe from {args.weights}, seed {args.seed}, {args.epochs} epochs, 320 px, batch 16, {args.threads} thread(s) per run, side by side")
    print(f"{'precision':<10}{'mAP@0.5':>9}{'mAP@.5:.95':>12}{'img/s':>8}{'wall min':>10}")
    for precision, r in runs.items():
        print(f"{precision:<10}{r['map50']:>9.4f}{r['map50_95']:>12.4f}"
              f"{r['train_images_per_s_last_epoch']:>8.2f}{r['wall_s'] / 60:>10.1f}")
    verdict = "within" if abs(difference) <= PARITY_TOLERANCE else "NOT within"
    print(f"bf16 - fp32 mAP@0.5 = {difference:+.4f} ({verdict} {PARITY_TOLERANCE})")
    results = RESULTS_PATH if args.weights == "none" else RESULTS_PATH.with_name(
        f"precision_parity_{Path(args.weights).stem}.json")
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps({"weights": args.weights, "seed": args.seed, "epochs": args.epochs, "threads_per_run": args.threads,
                                        "runs": runs, "map50_difference": difference,
                                        "tolerance": PARITY_TOLERANCE}, indent=2))
    print(f"wrote {results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
