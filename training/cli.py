"""``yolov7-track train`` and ``yolov7-track val`` (registered by :mod:`app.cli`).

``train_main(argv)`` and ``val_main(argv)`` take the arguments after the subcommand and return
the process exit status: 0 success, 1 a reported error (one line on stderr, no traceback),
2 usage error (argparse), 130 interrupted (the message says how to resume).
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from yolov7_track.arg_types import non_negative_int, positive_int

from .config import PRESETS, TrainConfig, load_hyperparameters
from .errors import TrainingError

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 130


def train_parser() -> argparse.ArgumentParser:
    from detector import AVAILABLE_MODELS

    parser = argparse.ArgumentParser(
        prog="yolov7-track train",
        description="Train or finetune a YOLOv7 model (simOTA loss, mosaic/mixup, EMA, cosine LR "
        "with warmup, autoanchor) on a data YAML: YOLO txt, COCO JSON, the Kaggle car CSV or a "
        "labelled video clip. Writes checkpoints, metrics.csv/png and best/last .safetensors "
        "into --out.",
        epilog="Resume an interrupted run with: yolov7-track train --resume RUN_DIR")
    parser.add_argument("--data", type=Path, help="data YAML (see assets/configs/)")
    parser.add_argument("--model", default="yolov7-tiny", choices=AVAILABLE_MODELS,
                        help="architecture (yolov7-tiny)")
    parser.add_argument("--weights", default="none",
                        help="initial weights: .pt/.safetensors path, registry name, or 'none' to "
                        "train from scratch (none)")
    parser.add_argument("--epochs", type=positive_int, default=300, help="epochs (300)")
    parser.add_argument("--img-size", type=positive_int, default=640,
                        help="training/validation size in pixels, multiple of 32 (640)")
    parser.add_argument("--batch-size", type=positive_int, default=16,
                        help="images per batch (16); gradients accumulate to a nominal 64")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (auto)")
    parser.add_argument("--out", type=Path, default=Path("runs/train"), help="run directory (runs/train)")
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR",
                        help="continue the run in RUN_DIR (or its last.ckpt) exactly where it stopped")
    parser.add_argument("--hyp", default="p5",
                        help=f"hyper-parameters: a preset ({', '.join(PRESETS)}) or a YAML of "
                        "overrides (p5)")
    parser.add_argument("--workers", type=non_negative_int, default=2,
                        help="data-loading worker processes (2; 0 loads in the main process)")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="torch CPU threads (default: all CPUs this process may use)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="master seed (0)")
    parser.add_argument("--freeze", type=non_negative_int, default=0,
                        help="freeze the first N layers, e.g. the backbone when finetuning (0)")
    parser.add_argument("--close-mosaic", type=non_negative_int, default=10,
                        help="turn mosaic/mixup off for the last N epochs (10)")
    parser.add_argument("--no-autoanchor", action="store_true", help="keep the anchors as they are")
    parser.add_argument("--val-period", type=positive_int, default=1,
                        help="validate every N epochs; the last epoch always (1)")
    parser.add_argument("--cache-images", action="store_true", help="keep decoded training images in RAM")
    parser.add_argument("--max-batches", type=positive_int, default=None,
                        help="stop every epoch after N batches (smoke tests)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                        help="compute precision: bf16 on CPUs with native bf16 (AVX512-BF16/AMX), "
                        "fp16 mixed precision on CUDA; auto picks the native one, else fp32 (auto)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--exist-ok", action="store_true",
                        help="allow --out to hold an earlier run (its files are overwritten)")
    return parser


def _config_from_args(args: argparse.Namespace) -> TrainConfig:
    if args.data is None:
        raise TrainingError("--data is required (or --resume RUN_DIR)")
    out = args.out
    if (out / "last.ckpt").exists() and not args.exist_ok:
        raise TrainingError(f"{out} already holds a run; continue it with --resume {out}, or "
                            "choose another --out (or pass --exist-ok to overwrite)")
    weights = None if str(args.weights).lower() == "none" else args.weights
    return TrainConfig(
        data=args.data, arch=args.model, weights=weights, out_dir=out, epochs=args.epochs,
        img_size=args.img_size, batch_size=args.batch_size, device=args.device,
        workers=args.workers, threads=args.threads, seed=args.seed,
        hyp=load_hyperparameters(args.hyp), freeze=args.freeze,
        close_mosaic_epochs=args.close_mosaic, autoanchor=not args.no_autoanchor,
        val_period_epochs=args.val_period, cache_images=args.cache_images,
        progress=not args.no_progress, max_batches_per_epoch=args.max_batches,
        precision=args.precision)


def _configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


def _known_errors() -> tuple[type[BaseException], ...]:
    from detector.errors import DetectorError

    return (TrainingError, DetectorError, FileNotFoundError)


def train_main(argv: Sequence[str]) -> int:
    """Run ``yolov7-track train``; returns the exit status."""
    args = train_parser().parse_args(list(argv))
    _configure_logging()
    from .trainer import Trainer

    command = shlex.join(["yolov7-track", "train", *argv])
    out_dir = args.resume or args.out
    try:
        if args.resume is not None:
            overrides = {"progress": not args.no_progress, "workers": args.workers}
            if args.threads is not None:
                overrides["threads"] = args.threads
            if args.device != "auto":
                overrides["device"] = args.device
            if args.precision != "auto":
                overrides["precision"] = args.precision
            trainer = Trainer.resume(args.resume, **overrides)
            out_dir = trainer.config.out_dir
        else:
            trainer = Trainer(_config_from_args(args), command=command)
        result = trainer.run()
    except KeyboardInterrupt:
        print(f"yolov7-track train: interrupted; continue with: yolov7-track train --resume {out_dir}",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except _known_errors() as exc:
        print(f"yolov7-track train: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    best = result.best_weights or result.last_weights
    best_epoch = "-" if result.best_epoch is None else result.best_epoch + 1
    print(f"best fitness {result.best_fitness:.4f} (epoch {best_epoch}); weights: {best}")
    if result.last_evaluation is not None:
        print(result.last_evaluation.table())
    return EXIT_OK


def val_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="yolov7-track val",
        description="Evaluate weights on a data YAML's validation (or training) split: mAP@0.5 and "
        "mAP@0.5:0.95 overall and per class, computed with pycocotools.")
    parser.add_argument("--data", type=Path, required=True, help="data YAML")
    parser.add_argument("--weights", required=True, help=".safetensors/.pt path or registry name")
    parser.add_argument("--split", choices=("val", "train"), default="val", help="split (val)")
    parser.add_argument("--img-size", type=positive_int, default=None,
                        help="letterbox size (default: the model's training size)")
    parser.add_argument("--batch-size", type=positive_int, default=16, help="batch size (16)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (auto)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="fp32",
                        help="model compute precision (fp32, the reference; auto: the one the app's "
                        "--precision auto picks here)")
    parser.add_argument("--backend", choices=("torch", "onnxruntime", "openvino"), default="torch",
                        help="inference runtime (torch; onnxruntime/openvino: optional extras, also "
                        "an exported .onnx/.xml as --weights)")
    parser.add_argument("--conf-thres", type=float, default=0.001, help="confidence threshold (0.001)")
    parser.add_argument("--iou-thres", type=float, default=0.65, help="NMS IoU threshold (0.65)")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    parser.add_argument("--workers", type=non_negative_int, default=0, help="loader workers (0)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def val_main(argv: Sequence[str]) -> int:
    """Run ``yolov7-track val``; returns the exit status."""
    args = val_parser().parse_args(list(argv))
    _configure_logging()
    import torch

    from detector import Detector

    from .config import available_cpu_count
    from .datasets import load_data_config
    from .evaluate import evaluate

    try:
        torch.set_num_threads(args.threads or available_cpu_count())
        data = load_data_config(args.data)
        # the app's own inference path: precision (autocast, channels_last) and backend as it runs
        detector = Detector.from_weights(args.weights, device=args.device, precision=args.precision,
                                         backend=args.backend, img_size=args.img_size)
        if list(detector.names) != list(data.names):
            raise TrainingError(f"{args.weights} predicts classes {detector.names[:5]}, the data YAML "
                                f"names {data.names[:5]}; evaluate with matching data")
        img_size = detector.img_size
        source = data.val if args.split == "val" else data.train
        result = evaluate(detector.model, source, img_size=img_size, batch_size=args.batch_size,
                          device=detector.device, conf_thres=args.conf_thres, iou_thres=args.iou_thres,
                          workers=args.workers, progress=not args.no_progress,
                          forward=detector.forward_tensor)
    except _known_errors() as exc:
        print(f"yolov7-track val: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(f"{args.weights} on {args.data} ({args.split}, {result.images} images, img-size {img_size}, "
          f"{detector.backend} {detector.precision})")
    print(result.table())
    if args.json is not None:
        args.json.write_text(json.dumps(result.to_dict(), indent=2))
    return EXIT_OK


def soup_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="yolov7-track soup",
        description="Average the weights of models finetuned from the same weights into one model "
                    "of the same size and speed (a uniform model soup, Wortsman et al., ICML 2022).")
    parser.add_argument("weights", nargs="+", help="two or more .safetensors files of one architecture and class list")
    parser.add_argument("--out", type=Path, required=True, help="the soup's .safetensors file")
    parser.add_argument("--img-size", type=positive_int, default=None,
                        help="letterbox size the soup runs at by default, pixels, a multiple of 32; "
                        "choose it on validation data (default: the first model's)")
    return parser


def soup_main(argv: Sequence[str]) -> int:
    """Run ``yolov7-track soup``; returns the exit status."""
    args = soup_parser().parse_args(list(argv))
    _configure_logging()
    from .soup import write_soup

    try:
        write_soup(args.out, args.weights, args.img_size)
    except _known_errors() as exc:
        print(f"yolov7-track soup: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(f"soup of {len(args.weights)} models: {args.out}")
    return EXIT_OK
