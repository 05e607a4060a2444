"""The bundled default model (``yolov7-tiny-traffic``), measured as a user meets it.

Issue 10. Three measurements, each printed as a table and written to
``benchmarks/results/default_model.json``:

1. **Held-out detection** (pycocotools, :func:`training.evaluate.evaluate`, conf 0.001, NMS IoU
   0.65, the model's own image size): AP@0.5 and AP@0.5:0.95 per class, over all held-out images
   and per source, with the number of ground-truth boxes behind each value. Held out:
   ``assets/configs/traffic_heldout.yaml`` (atl + manaus, the publishers' valid + test splits),
   plus ``traffic_extra_eval.yaml`` (farzad valid; quantum_cctv101, evaluation-only licence).
   Classes a source does not label are not scored on its images (:mod:`training.merge`).
2. **PETS09-S2L1 frames 401-795 end to end**: detector (persons, conf 0.1) -> ByteTrack (its
   defaults, 10 fps) -> MOTA / IDF1 / HOTA against the MOT15 ground truth scaled by 0.625 to the
   480x360 video (motmetrics, TrackEval; ``benchmarks/_mot_metrics.py``).
3. **Counts on the bundled clip** with the README's line, through the CLI's own code path.

``--weights`` takes several models (names or files) so that others are measured in the same run:
the default compares the default model with the scene models, and ``--weights A B`` compares any
two (for example the partial-label treatment against the naive merge).

Usage::

    python benchmarks/default_model.py [--weights yolov7-tiny-traffic ...] [--threads 2]
        [--skip-tracking] [--skip-counting]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))

from _mot_metrics import evaluate as mot_evaluate  # noqa: E402
from _mot_data import read_mot_text  # noqa: E402
from detector import Detector, load_model  # noqa: E402
from shared_data import shared_data_config, shared_path  # noqa: E402
from training.datasets import Subset, load_data_config  # noqa: E402
from training.evaluate import EvaluationResult, evaluate  # noqa: E402

RESULTS_PATH = REPO / "benchmarks" / "results" / "default_model.json"
HELD_OUT = ("traffic_heldout.yaml", "traffic_extra_eval.yaml")
PETS_FRAMES = (401, 795)
PETS_SCALE = 0.625
PETS_FPS = 10.0
TRACK_CONF = 0.1  # ByteTrack's low-score threshold: its second association uses these boxes
SAMPLE_CLIP = REPO / "assets" / "samples" / "traffic_street_fixedcam.mp4"
SAMPLE_LINE = "640,230,150,230,road"
SAMPLE_CLASSES = ("car", "truck", "bus", "motorcycle")


def _result_dict(result: EvaluationResult) -> dict[str, Any]:
    return {"images": result.images, "instances": result.instances, "mAP@0.5": result.map50,
            "mAP@0.5:0.95": result.map50_95,
            "per_class": {c.name: {"boxes": c.instances, "AP@0.5": c.ap50, "AP@0.5:0.95": c.ap50_95}
                          for c in result.per_class}}


def held_out_detection(weights: str) -> dict[str, Any]:
    """AP per class over each held-out description and per source (module docstring)."""
    model = load_model(weights, fuse=True)
    out: dict[str, Any] = {}
    for name in HELD_OUT:
        data = load_data_config(shared_data_config(name))
        if list(model.names) != list(data.names):
            raise SystemExit(f"{weights} predicts {model.names}, {name} names {data.names}")
        key = name.removesuffix(".yaml")
        if key == "traffic_heldout":
            out["all"] = _result_dict(evaluate(model, data.val, img_size=int(model.img_size)))
            # the valid splits also chose the best epoch during training: the test splits alone
            # are the strictly unseen part
            test_only = Subset(data.val, _test_split_indices(data.val))
            out["all_test_splits_only"] = _result_dict(evaluate(model, test_only, img_size=int(model.img_size)))
        for source, start, end in data.val.part_ranges():
            subset = Subset(data.val, range(start, end))
            out[source] = _result_dict(evaluate(model, subset, img_size=int(model.img_size)))
    return out


def _test_split_indices(merged) -> list[int]:
    """Indices of ``merged`` whose image lies in a ``test/images`` folder."""
    indices = []
    for part, (_, start, _) in zip(merged.parts, merged.part_ranges()):
        paths = part.source.image_paths
        indices += [start + i for i, path in enumerate(paths) if path.parent.parent.name == "test"]
    return indices


def _pets_ground_truth(directory: Path) -> Path:
    """The MOT15 gt of frames 401-795, renumbered from 1 and scaled to the 480x360 video."""
    rows = read_mot_text(shared_path("data", "mot", "MOT15", "train", "PETS09-S2L1", "gt", "gt.txt"))
    first, last = PETS_FRAMES
    rows = rows[(rows[:, 0] >= first) & (rows[:, 0] <= last)].copy()
    rows[:, 0] -= first - 1
    rows[:, 2:6] *= PETS_SCALE
    path = directory / "gt.txt"
    np.savetxt(path, rows, fmt="%.3f", delimiter=",")
    return path


def pets09_tracking(weights: str) -> dict[str, Any]:
    """Detector -> ByteTrack on PETS09-S2L1 frames 401-795; MOT scores (module docstring)."""
    import cv2

    from tracker import ByteTrack

    detector = Detector.from_weights(weights, conf_thres=TRACK_CONF, device="cpu")
    person = detector.names.index("person")
    tracker = ByteTrack(frame_rate=PETS_FPS)
    capture = cv2.VideoCapture(str(shared_path("data", "videos", "vtest_PETS09-S2L1_480x360.avi")))
    first, last = PETS_FRAMES
    rows = []
    for index in range(last):
        ok, frame = capture.read()
        if not ok:
            raise SystemExit(f"the PETS09 video ended at frame {index}")
        if index + 1 < first:
            continue
        detections = detector(frame)
        detections = detections[detections.class_id == person]
        tracks = tracker.update(detections)
        for (x1, y1, x2, y2), track_id in zip(tracks.xyxy, tracks.tracker_id):
            rows.append([index + 2 - first, track_id, x1, y1, x2 - x1, y2 - y1])
    capture.release()
    with tempfile.TemporaryDirectory() as tmp:
        gt = _pets_ground_truth(Path(tmp))
        _, overall = mot_evaluate({"PETS09-S2L1": np.asarray(rows, dtype=np.float64).reshape(-1, 6)},
                                  {"PETS09-S2L1": gt}, {"PETS09-S2L1": last - first + 1})
    return overall.as_dict()


def sample_clip_counts(weights: str) -> dict[str, Any]:
    """Counts of the README's command on the bundled clip (the CLI's code path)."""
    from app.cli import main as cli_main

    model = load_model(weights, fuse=False)
    classes = [c for c in SAMPLE_CLASSES if c in model.names]
    if not classes:
        return {"skipped": f"{weights} predicts none of {SAMPLE_CLASSES}"}
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        status = cli_main([str(SAMPLE_CLIP), "--weights", str(weights), "--line", SAMPLE_LINE,
                           "--classes", *classes, "--agnostic-nms", "--report", str(report),
                           "--no-progress"])
        if status != 0:
            raise SystemExit(f"the CLI failed on the sample clip with {weights} (status {status})")
        return json.loads(report.read_text())


def record_held_out(path: Path, detection: dict[str, Any]) -> None:
    """Rewrite ``path`` (fp16, lossless) with ``metrics.held_out`` = the held-out results."""
    from detector import save_model
    from detector.weights_format import read_weights_metadata

    meta = read_weights_metadata(path)
    model = load_model(path, fuse=False)
    metrics = {**meta.get("metrics", {}), "held_out": {
        "data": [f"assets/configs/{name}" for name in HELD_OUT],
        "evaluation": "pycocotools bbox, conf 0.001, NMS IoU 0.65, img_size of the model",
        "results": detection}}
    save_model(model, path, half=True, provenance=meta.get("provenance"), metrics=metrics)
    print(f"recorded held-out results in {path}")


def _fmt(value: float | None) -> str:
    return "    -" if value is None else f"{value:.3f}"


def _print_detection(name: str, results: dict[str, Any]) -> None:
    print(f"\nheld-out detection, {name} (AP@0.5 / AP@0.5:0.95, boxes)")
    classes = list(next(iter(results.values()))["per_class"])
    print(f"{'source':<24}{'images':>7}" + "".join(f"{c:>22}" for c in classes))
    for source, r in results.items():
        cells = "".join(f"{_fmt(v['AP@0.5']):>8} /{_fmt(v['AP@0.5:0.95']):>6}{v['boxes']:>6}"
                        for v in r["per_class"].values())
        print(f"{source:<24}{r['images']:>7}{cells}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", nargs="+",
                        default=["yolov7-tiny-traffic", "yolov7-tiny-pets09-person", "yolov7-tiny-cars"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-tracking", action="store_true")
    parser.add_argument("--skip-counting", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS_PATH)
    parser.add_argument("--record-into", type=Path, metavar="MODEL.safetensors",
                        help="also store the first model's held-out results in this model file's "
                        "metadata (metrics.held_out), e.g. the bundled model before it ships")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)

    report: dict[str, Any] = {"weights": args.weights, "threads": args.threads, "models": {}}
    for weights in args.weights:
        model = load_model(weights, fuse=False)
        entry: dict[str, Any] = {"classes": list(model.names), "img_size": int(model.img_size)}
        traffic_classes = {"car", "person"} & set(model.names)
        if set(model.names) == {"person", "bicycle", "car", "motorcycle", "bus", "truck"}:
            entry["detection"] = held_out_detection(weights)
            _print_detection(weights, entry["detection"])
        if not args.skip_tracking and "person" in model.names:
            entry["pets09_401_795"] = pets09_tracking(weights)
            print(f"\nPETS09-S2L1 frames 401-795, {weights} -> ByteTrack: {entry['pets09_401_795']}")
        if not args.skip_counting and traffic_classes:
            entry["sample_clip"] = sample_clip_counts(weights)
        report["models"][weights] = entry
    if args.record_into is not None:
        record_held_out(args.record_into, report["models"][args.weights[0]]["detection"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
