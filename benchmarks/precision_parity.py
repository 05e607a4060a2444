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
        [--weights none|yolov7-tiny-traffic|FILE] [--seeds 0 1 ...] [--reuse]

With several seeds the verdict compares the mean mAP@0.5 of each precision, and the table shows
how far two runs of the same precision land apart: on this small set (131 validation images,
162 cars) that seed-to-seed spread is larger than the 0.02 bar, so one pair of runs cannot
show parity either way.

Run directories go outside the repository (default ``~/.cache/yolov7-track/parity-runs``);
prints a table and writes ``benchmarks/results/precision_parity.json`` (from scratch) or
``precision_parity_<model>.json`` (finetuned).
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
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


def run_pair(args: argparse.Namespace, seed: int) -> dict[str, dict]:
    """Both precisions side by side for one seed; a run whose ``metrics.csv`` already holds
    ``--epochs`` rows is read back instead of trained again (``--reuse``)."""
    start = "scratch" if args.weights == "none" else Path(args.weights).stem
    processes = {}
    for precision in PRECISIONS:
        out = args.runs_dir / f"cars-{start}-seed{seed}-{precision}"
        if args.reuse and _finished(out, args.epochs):
            processes[precision] = (None, None, out)
            continue
        out.mkdir(parents=True, exist_ok=True)
        log = open(out / "train.log", "w")
        processes[precision] = (subprocess.Popen(command(precision, args.epochs, args.threads, out,
                                                         args.weights, seed),
                                                 cwd=REPO, stdout=log, stderr=subprocess.STDOUT), log, out)
    runs = {}
    for precision, (process, log, out) in processes.items():
        if process is not None:
            status = process.wait()
            log.close()
            if status != 0:
                raise SystemExit(f"the {precision} run failed (status {status}); see {out / 'train.log'}")
        row = final_row(out)
        runs[precision] = {"map50": float(row["map50"]), "map50_95": float(row["map50_95"]),
                           "wall_s": float(row["run_s"]),  # the epochs' own times (runs end apart)
                           "train_images_per_s_last_epoch": float(row["train_images_per_s"]),
                           "run_dir": str(out)}
    return runs


def _finished(out: Path, epochs: int) -> bool:
    path = out / "metrics.csv"
    if not path.is_file():
        return False
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return len(rows) == epochs and bool(rows[-1].get("map50"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--weights", default="none", help="none (from scratch) or a model to finetune")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="one pair of runs per seed; the verdict compares the means")
    parser.add_argument("--reuse", action="store_true", help="read back runs that already finished")
    parser.add_argument("--runs-dir", type=Path, default=Path.home() / ".cache" / "yolov7-track" / "parity-runs")
    args = parser.parse_args(argv)

    by_seed = {seed: run_pair(args, seed) for seed in args.seeds}
    print(f"cars recipe from {args.weights}, {args.epochs} epochs, 320 px, batch 16, "
          f"{args.threads} thread(s) per run, the two precisions side by side per seed")
    print(f"{'seed':<6}{'precision':<10}{'mAP@0.5':>9}{'mAP@.5:.95':>12}{'img/s':>8}{'wall min':>10}")
    for seed, runs in by_seed.items():
        for precision, r in runs.items():
            print(f"{seed:<6}{precision:<10}{r['map50']:>9.4f}{r['map50_95']:>12.4f}"
                  f"{r['train_images_per_s_last_epoch']:>8.2f}{r['wall_s'] / 60:>10.1f}")
    mean = {p: statistics.mean(runs[p]["map50"] for runs in by_seed.values()) for p in PRECISIONS}
    pair_differences = [runs["bf16"]["map50"] - runs["fp32"]["map50"] for runs in by_seed.values()]
    # how far two runs of the SAME precision land apart (different seeds): the noise floor
    seed_spread = {p: max(r[p]["map50"] for r in by_seed.values()) - min(r[p]["map50"] for r in by_seed.values())
                   for p in PRECISIONS}
    difference = mean["bf16"] - mean["fp32"]
    verdict = "within" if abs(difference) <= PARITY_TOLERANCE else "NOT within"
    print(f"per seed, bf16 - fp32 mAP@0.5: {', '.join(f'{d:+.4f}' for d in pair_differences)}")
    if len(by_seed) > 1:
        print(f"same precision, different seeds (max - min mAP@0.5): fp32 {seed_spread['fp32']:.4f}, "
              f"bf16 {seed_spread['bf16']:.4f}")
    print(f"mean over {len(by_seed)} seed(s): fp32 {mean['fp32']:.4f}, bf16 {mean['bf16']:.4f}; "
          f"bf16 - fp32 = {difference:+.4f} ({verdict} {PARITY_TOLERANCE})")
    results = RESULTS_PATH if args.weights == "none" else RESULTS_PATH.with_name(
        f"precision_parity_{Path(args.weights).stem}.json")
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps({
        "weights": args.weights, "seeds": args.seeds, "epochs": args.epochs,
        "threads_per_run": args.threads, "runs": {str(seed): runs for seed, runs in by_seed.items()},
        "mean_map50": mean, "pair_differences": pair_differences, "same_precision_seed_spread": seed_spread,
        "map50_difference_of_means": difference, "tolerance": PARITY_TOLERANCE}, indent=2))
    print(f"wrote {results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
