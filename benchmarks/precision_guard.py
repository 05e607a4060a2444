"""Accuracy guard: every precision and backend ``auto`` may pick, on every bundled model.

Issue 12. For each bundled model, ``yolov7-track val`` (pycocotools mAP@0.5, conf 0.001, NMS IoU
0.65, the model's image size) on its own validation data, once per inference path:

* torch fp32 (the reference), torch bf16 (autocast + channels_last; CPUs with native bf16);
* ONNX Runtime fp32; OpenVINO fp32, OpenVINO bf16 (CPUs with native bf16);
* OpenVINO int8 (NNCF post-training quantisation, calibrated on ``--calib-images`` training
  images of the same data; never frames it is evaluated on).

Each row gives mAP@0.5 and its change from torch fp32. The bar (``detector.precision``): a
precision or backend that ``auto`` may pick moves mAP@0.5 by at most 0.005 on every model; int8
by at most 0.01 before ``auto`` could pick it (it never does today: int8 is an export option).

Models and data: ``yolov7-tiny-traffic`` on ``traffic_heldout.yaml`` (atl + manaus valid + test),
``yolov7-tiny-cars`` on ``kaggle_cars.yaml`` (the article's val split), ``yolov7-tiny-pets09-person``
on ``pets09_person.yaml`` (frames 401-795).

Usage::

    python benchmarks/precision_guard.py [--models NAME ...] [--paths torch-fp32 torch-bf16 ...]
        [--threads 2] [--calib-images 64]

prints a table and writes ``benchmarks/results/precision_guard.json``. Paths whose optional
runtime is not installed, or whose precision this CPU cannot run, are listed as skipped with why.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from shared_data import shared_data_config  # noqa: E402

RESULTS_PATH = REPO / "benchmarks" / "results" / "precision_guard.json"
MODELS = {
    "yolov7-tiny-traffic": "traffic_heldout.yaml",
    "yolov7-tiny-cars": "kaggle_cars.yaml",
    "yolov7-tiny-pets09-person": "pets09_person.yaml",
}
# name -> (backend, precision, int8)
PATHS = {
    "torch-fp32": ("torch", "fp32", False),
    "torch-bf16": ("torch", "bf16", False),
    "onnxruntime-fp32": ("onnxruntime", "fp32", False),
    "openvino-fp32": ("openvino", "fp32", False),
    "openvino-bf16": ("openvino", "bf16", False),
    "openvino-int8": ("openvino", "fp32", True),
}
GUARD_MAP50 = 0.005
GUARD_INT8_MAP50 = 0.01

logger = logging.getLogger("precision_guard")


def calibration_folder(data_yaml: Path, count: int, folder: Path) -> Path:
    """``count`` training images of ``data_yaml``, evenly spaced, written as BGR JPEG files."""
    import cv2

    from training.datasets import load_data_config

    train = load_data_config(data_yaml).train
    step = max(len(train) // count, 1)
    for n, index in enumerate(range(0, len(train), step)[:count]):
        cv2.imwrite(str(folder / f"calib_{n:04d}.jpg"), train.load_image(index))
    return folder


def weights_for(model: str, backend: str, int8: bool, data_yaml: Path, args, work: Path) -> str:
    """The ``--weights`` of a path: the model name, or its int8 OpenVINO export."""
    if not int8:
        return model
    from app.export_cmd import run_export

    calib = calibration_folder(data_yaml, args.calib_images, Path(tempfile.mkdtemp(dir=work)))
    out = work / f"{model}-int8" / f"{model}.xml"
    status = run_export([model, "--format", "openvino", "--int8", "--calib", str(calib), "--output", str(out)])
    if status != 0:
        raise SystemExit(f"int8 export of {model} failed (status {status})")
    return str(out)


def run_val(weights: str, data_yaml: Path, backend: str, precision: str, threads: int,
            json_path: Path) -> dict[str, Any]:
    from training.cli import val_main

    status = val_main(["--data", str(data_yaml), "--weights", weights, "--device", "cpu",
                       "--precision", precision, "--backend", backend, "--threads", str(threads),
                       "--no-progress", "--json", str(json_path)])
    if status != 0:
        raise RuntimeError(f"yolov7-track val failed (status {status})")
    return json.loads(json_path.read_text())


def unavailable(backend: str, precision: str) -> str | None:
    """Why this path cannot run here, or ``None``."""
    import importlib.util

    from detector.precision import cpu_has_native_bf16

    if precision == "bf16" and not cpu_has_native_bf16():
        return "no native bf16 on this CPU"
    module = {"onnxruntime": "onnxruntime", "openvino": "openvino"}.get(backend)
    if module is not None and importlib.util.find_spec(module) is None:
        return f"{module} is not installed (pip install 'yolov7-track[{'onnx' if module == 'onnxruntime' else 'openvino'}]')"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--paths", nargs="+", default=list(PATHS), choices=list(PATHS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calib-images", type=int, default=64)
    parser.add_argument("--out", type=Path, default=RESULTS_PATH)
    parser.add_argument("--update", action="store_true",
                        help="keep the other models' entries of an existing --out (re-measure some models)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    import platform

    results: dict[str, Any] = {"cpu": platform.processor() or platform.machine(), "threads": args.threads,
                               "guard_map50": GUARD_MAP50, "guard_int8_map50": GUARD_INT8_MAP50, "models": {}}
    with tempfile.TemporaryDirectory(prefix="precision-guard-") as tmp:
        work = Path(tmp)
        for model in args.models:
            data_yaml = shared_data_config(MODELS[model])
            rows: dict[str, Any] = {}
            reference = None
            for name in ["torch-fp32"] + [p for p in args.paths if p != "torch-fp32"]:
                backend, precision, int8 = PATHS[name]
                why = unavailable(backend, precision)
                if why is not None:
                    rows[name] = {"skipped": why}
                    continue
                weights = weights_for(model, backend, int8, data_yaml, args, work)
                result = run_val(weights, data_yaml, backend, precision, args.threads, work / "val.json")
                row = {"mAP@0.5": result["map50"], "mAP@0.5:0.95": result["map50_95"]}
                if reference is None:
                    reference = result["map50"]
                else:
                    bar = GUARD_INT8_MAP50 if int8 else GUARD_MAP50
                    row["change"] = result["map50"] - reference
                    row["within_guard"] = abs(row["change"]) <= bar
                rows[name] = row
                logger.warning("%s %s: mAP@0.5 %.4f", model, name, result["map50"])
            results["models"][model] = {"data": MODELS[model], "paths": rows}
    if args.update and args.out.is_file():
        earlier = json.loads(args.out.read_text())
        results["models"] = {**earlier.get("models", {}), **results["models"]}
    print_table(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")
    return 0


def print_table(results: dict[str, Any]) -> None:
    print(f"accuracy guard: mAP@0.5 through yolov7-track val, change from torch fp32 "
          f"(bar {GUARD_MAP50}; int8 {GUARD_INT8_MAP50}); {results['threads']} threads")
    print(f"{'model':<28}{'path':<18}{'mAP@0.5':>9}{'change':>9}  verdict")
    for model, entry in results["models"].items():
        for name, row in entry["paths"].items():
            if "skipped" in row:
                print(f"{model:<28}{name:<18}{'-':>9}{'-':>9}  skipped: {row['skipped']}")
                continue
            change = row.get("change")
            verdict = "reference" if change is None else ("ok" if row["within_guard"] else "OUTSIDE THE BAR")
            shown = "" if change is None else f"{change:+.4f}"
            print(f"{model:<28}{name:<18}{row['mAP@0.5']:>9.4f}{shown:>9}  {verdict}")


if __name__ == "__main__":
    raise SystemExit(main())
