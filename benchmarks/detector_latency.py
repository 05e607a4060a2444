"""Detector latency: pre-processing, post-processing and the fused forward pass, per frame.

Issue 2, scope 6. Every number is the **median** wall-clock time of ``--repeats`` runs (>= 20)
after ``--warmup`` untimed runs, batch 1, on this machine, with 1 and 2 CPU threads
(``torch.set_num_threads`` and ``cv2.setNumThreads``):

* ``preprocess``: :func:`detector.preprocess.letterbox` + model-input tensor (BGR -> RGB, CHW,
  float32 / 255) at 640 (stride 32, ``auto=True``) on real frames: COCO ``000000000139``
  (426x640) and PETS09 frame 100 (360x480) from the YOLOv7 fixtures, and frame 0 of
  ``pedestrians_overhead_walking.mp4`` (720x1280) decoded with PyAV.
* ``postprocess``: :func:`detector.postprocess.non_max_suppression` + :func:`scale_boxes` on the
  full prediction of ``yolov7-tiny`` with the fixture weights (the model the golden files come
  from) for those three frames, at conf 0.25 / IoU 0.45 (detect.py) and conf 0.001 / IoU 0.65
  (mAP evaluation: thousands of candidates).
* ``forward``: the fused fp32 model (``create_model(arch).fuse().eval()``, default init: timing
  does not depend on the weight values) per architecture and input: 640x640 and 384x640 for the
  P5 models, 1280x1280 and 768x1280 for the P6 models; on CUDA (when present) fp32 and fp16.
  Reference: the official code on this machine kind (fused, fp32, batch 1, 2 threads), from
  issue 2: yolov7-tiny 64 ms at 640x640 and 41 ms at 384x640; yolov7 397 / 222 ms; yolov7x 711 ms
  at 640x640.

* ``runtimes`` (issue 12): each inference path on the same official-format checkpoint (the
  fixture weights of ``yolov7-tiny`` and ``yolov7``), batch 1, ``--runtime-threads`` threads (2),
  at 640x640 and 384x640: the **official code** (fused fp32, from the checkout at
  ``$YOLOV7_OFFICIAL_DIR``; the column is skipped, saying so, when it is not set), ours fp32,
  ours bf16 (bf16 weights in channels_last, the body as a frozen TorchScript graph, as
  ``--precision bf16``; and the same model eager), ONNX Runtime fp32, OpenVINO
  fp32 / bf16 / int8 (NNCF, calibrated on 16 frames of the bundled clip), each also as a ratio
  to the official fp32 (goal for our best default path on tiny at 384x640: <= 0.40).

Usage::

    python benchmarks/detector_latency.py [--models yolov7-tiny yolov7 ... | all] [--repeats 20]
        [--threads 1 2] [--skip-forward] [--no-cuda] [--skip-runtimes] [--runtime-models ...]

prints the tables and writes ``benchmarks/results/detector_latency.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from detector import layers  # noqa: E402
from detector.architectures import AVAILABLE_MODELS  # noqa: E402
from detector.model import create_model  # noqa: E402
from detector.postprocess import non_max_suppression, scale_boxes  # noqa: E402
from detector.preprocess import letterbox, to_input_tensor, uint8_to_unit_float  # noqa: E402
from shared_data import shared_path  # noqa: E402

logger = logging.getLogger("detector_latency")

RESULTS_PATH = REPO / "benchmarks" / "results" / "detector_latency.json"
IMG_SIZE_P5 = 640
STRIDE_P5 = 32
NMS_SETTINGS = ((0.25, 0.45), (0.001, 0.65))
P6_MODELS = frozenset({"yolov7-w6", "yolov7-e6", "yolov7-d6", "yolov7-e6e"})
DEFAULT_MODELS = ("yolov7-tiny", "yolov7", "yolov7x")

# Official code, fused fp32, batch 1, 2 threads, this machine kind (issue 2): (arch, h, w) -> ms
REFERENCE_MS_2_THREADS = {
    ("yolov7-tiny", 640, 640): 64.0,
    ("yolov7-tiny", 384, 640): 41.0,
    ("yolov7", 640, 640): 397.0,
    ("yolov7", 384, 640): 222.0,
    ("yolov7x", 640, 640): 711.0,
}


# ---------------------------------------------------------------- timing


def median_ms(run: Callable[[], Any], repeats: int, warmup: int, sync: Callable[[], None] | None = None) -> float:
    """Median wall time of ``run()`` in milliseconds over ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        run()
    if sync:
        sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        if sync:
            sync()
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def set_threads(threads: int) -> None:
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)


# ---------------------------------------------------------------- data


def load_frames() -> dict[str, np.ndarray]:
    """The three benchmark frames, BGR uint8."""
    frames = {}
    for name in ("coco139", "pets100"):
        with np.load(shared_path("fixtures", "yolov7", "inputs", f"{name}.npz")) as data:
            frames[name] = data["orig_bgr"]
    import av  # only needed here

    with av.open(str(shared_path("data", "videos", "pedestrians_overhead_walking.mp4"))) as container:
        frame = next(container.decode(video=0))
        frames["walking720p"] = frame.to_ndarray(format="bgr24")
    return frames


def fixture_tiny_model() -> torch.nn.Module:
    """yolov7-tiny with the fixture weights (fp16 -> fp32, fused, eval), as the golden files."""
    from yolov7_fixtures import regenerate_state

    model = create_model("yolov7-tiny")
    state = {
        key: torch.from_numpy(value).float() if value.dtype == np.float16 else torch.from_numpy(value)
        for key, value in regenerate_state("yolov7-tiny").items()
    }
    model.load_state_dict(state)
    return model.fuse().eval()


# ---------------------------------------------------------------- benchmarks


def bench_preprocess(frames: dict[str, np.ndarray], threads: int, repeats: int, warmup: int) -> list[dict]:
    """Letterbox and tensor conversion per frame at 640."""
    set_threads(threads)
    rows = []
    for name, frame in frames.items():
        boxed = letterbox(frame, IMG_SIZE_P5, STRIDE_P5)
        chw = np.ascontiguousarray(boxed.image.transpose(2, 0, 1)[::-1])[None]
        x, _ = to_input_tensor(frame, IMG_SIZE_P5, STRIDE_P5)
        rows.append({
            "frame": name,
            "frame_hw": list(frame.shape[:2]),
            "input_hw": list(x.shape[2:]),
            "threads": threads,
            "letterbox_ms": median_ms(lambda: letterbox(frame, IMG_SIZE_P5, STRIDE_P5), repeats, warmup),
            "to_float_ms": median_ms(lambda: uint8_to_unit_float(chw), repeats, warmup),
            "total_ms": median_ms(lambda: to_input_tensor(frame, IMG_SIZE_P5, STRIDE_P5), repeats, warmup),
        })
    return rows


def tiny_predictions(frames: dict[str, np.ndarray]) -> dict[str, tuple[torch.Tensor, tuple[int, int]]]:
    """Full yolov7-tiny predictions (fixture weights) for the frames: name -> (pred, input_hw)."""
    model = fixture_tiny_model()
    preds = {}
    with torch.inference_mode():
        for name, frame in frames.items():
            x, _ = to_input_tensor(frame, IMG_SIZE_P5, STRIDE_P5)
            preds[name] = (model(x), tuple(x.shape[2:]))
    return preds


def bench_postprocess(
    frames: dict[str, np.ndarray],
    preds: dict[str, tuple[torch.Tensor, tuple[int, int]]],
    threads: int,
    repeats: int,
    warmup: int,
) -> list[dict]:
    """NMS + scale_boxes per frame, for each (conf, IoU) setting."""
    set_threads(threads)
    rows = []
    for name, (pred, input_hw) in preds.items():
        orig_hw = frames[name].shape[:2]
        for conf, iou in NMS_SETTINGS:
            def run() -> list[torch.Tensor]:
                dets = non_max_suppression(pred, conf, iou)
                return [scale_boxes(det[:, :4], input_hw, orig_hw) for det in dets]

            candidates = int((pred[0, :, 4] > conf).sum())
            rows.append({
                "frame": name,
                "input_hw": list(input_hw),
                "conf_thres": conf,
                "iou_thres": iou,
                "threads": threads,
                "rows_above_objectness": candidates,
                "detections": int(non_max_suppression(pred, conf, iou)[0].shape[0]),
                "nms_scale_ms": median_ms(run, repeats, warmup),
            })
    return rows


def forward_inputs(model_name: str) -> list[tuple[int, int]]:
    """Input sizes timed for a model: square and 16:9 (auto letterbox) at its native size; for
    yolov7-tiny also the fixture frames' inputs, for the pre/post-processing budget."""
    if model_name in P6_MODELS:
        return [(1280, 1280), (768, 1280)]
    if model_name == "yolov7-tiny":
        return [(640, 640), (384, 640), (448, 640), (480, 640)]
    return [(640, 640), (384, 640)]


@contextlib.contextmanager
def official_op_sequence():
    """Run our model with the torch max-pool kernels the official code calls (``nn.MaxPool2d``)
    instead of our exact, faster ones: the official implementation's op sequence, measured in
    the same run as ours (the official code itself is not vendored here)."""
    saved = layers.max_pool_same, layers.max_pool_2x2
    layers.max_pool_same = lambda x, k: F.max_pool2d(x, k, 1, k // 2)
    layers.max_pool_2x2 = lambda x: F.max_pool2d(x, 2, 2)
    try:
        yield
    finally:
        layers.max_pool_same, layers.max_pool_2x2 = saved


def gemm_gflops(threads: int, size: int = 2048, repeats: int = 10) -> float:
    """Median fp32 GEMM throughput (GFLOP/s) at ``threads``: the machine's practical peak."""
    set_threads(threads)
    a, b = torch.rand(size, size), torch.rand(size, size)
    ms = median_ms(lambda: a @ b, repeats, 2)
    return 2 * size**3 / (ms / 1e3) / 1e9


def bench_forward(
    model_name: str,
    threads_list: list[int],
    repeats: int,
    warmup: int,
    use_cuda: bool,
) -> list[dict]:
    """Fused forward latency of ``model_name``, batch 1: fp32 on the CPU per thread count, and
    fp32 / fp16 on CUDA when ``use_cuda``."""
    torch.manual_seed(0)
    model = create_model(model_name).fuse().eval()
    rows = []
    for h, w in forward_inputs(model_name):
        x = torch.rand((1, 3, h, w))
        for threads in threads_list:
            set_threads(threads)
            with torch.inference_mode():
                ms = median_ms(lambda: model(x), repeats, warmup)
                with official_op_sequence():
                    official_ops_ms = median_ms(lambda: model(x), repeats, warmup)
            row = _forward_row(model_name, h, w, "cpu", "float32", threads, ms)
            row["official_ops_ms"] = official_ops_ms
            rows.append(row)
            logger.info("%s %dx%d cpu %d threads: %.1f ms (official op sequence %.1f ms)",
                        model_name, h, w, threads, ms, official_ops_ms)
    if use_cuda:
        device = torch.device("cuda:0")
        for dtype in (torch.float32, torch.float16):
            cuda_model = create_model(model_name).fuse().eval().to(device=device, dtype=dtype)
            for h, w in forward_inputs(model_name):
                x = torch.rand((1, 3, h, w), device=device, dtype=dtype)
                with torch.inference_mode():
                    ms = median_ms(lambda: cuda_model(x), repeats, warmup, sync=torch.cuda.synchronize)
                rows.append(_forward_row(model_name, h, w, torch.cuda.get_device_name(device),
                                         str(dtype).removeprefix("torch."), None, ms))
            del cuda_model
            torch.cuda.empty_cache()
    return rows


def _forward_row(model_name: str, h: int, w: int, device: str, dtype: str, threads: int | None, ms: float) -> dict:
    reference = REFERENCE_MS_2_THREADS.get((model_name, h, w)) if threads == 2 else None
    return {
        "model": model_name,
        "input_hw": [h, w],
        "device": device,
        "dtype": dtype,
        "threads": threads,
        "forward_ms": ms,
        "reference_official_ms": reference,
    }


# ---------------------------------------------------------------- runtimes (issue 12)

RUNTIME_INPUTS = ((640, 640), (384, 640))
RUNTIME_MODELS = ("yolov7-tiny", "yolov7")
GOAL_BEST_VS_OFFICIAL = 0.40
CALIB_CLIP = REPO / "assets" / "samples" / "traffic_street_fixedcam.mp4"


def runtime_paths(arch: str, work: Path) -> dict[str, Callable[[torch.Tensor], Any] | str]:
    """Inference path name -> ``run(x)`` or the reason it is skipped, for ``arch`` with the
    fixture's official-format checkpoint."""
    import importlib.util

    from _official import official_model
    from detector import Detector, load_model
    from detector.precision import cpu_has_native_bf16

    weights = shared_path("fixtures", "yolov7", f"{arch}.official-format.pt")
    paths: dict[str, Callable[[torch.Tensor], Any] | str] = {}
    official, why = official_model(weights)
    paths["official fp32"] = (lambda x: official(x)[0]) if official is not None else why
    ours = load_model(weights, fuse=True)
    paths["ours fp32"] = ours
    if cpu_has_native_bf16():
        bf16 = Detector(load_model(weights, fuse=True), device="cpu", precision="bf16")
        paths["ours bf16"] = bf16.forward_tensor  # the default path: body as a frozen graph
        paths["ours bf16 eager"] = lambda x: bf16.model(x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last))
    else:
        paths["ours bf16"] = paths["ours bf16 eager"] = "no native bf16 on this CPU"
    have_ort = importlib.util.find_spec("onnxruntime") is not None
    have_ov = importlib.util.find_spec("openvino") is not None and importlib.util.find_spec("nncf") is not None
    if have_ort or have_ov:
        from detector.export import export_onnx, export_openvino
        from detector.runtimes import load_runtime

        onnx_path = export_onnx(ours, work / f"{arch}.onnx")
    threads = torch.get_num_threads()
    paths["onnxruntime fp32"] = (load_runtime(onnx_path, "onnxruntime", num_threads=threads) if have_ort
                                 else "onnxruntime is not installed (pip install 'yolov7-track[onnx]')")
    if have_ov:
        xml = export_openvino(onnx_path, work / f"{arch}.xml")
        int8_xml = export_openvino(onnx_path, work / f"{arch}-int8.xml", int8=True, calib=CALIB_CLIP, calib_frames=16)
        paths["openvino fp32"] = load_runtime(xml, "openvino", precision="fp32", num_threads=threads)
        paths["openvino bf16"] = (load_runtime(xml, "openvino", precision="bf16", num_threads=threads)
                                  if cpu_has_native_bf16() else "no native bf16 on this CPU")
        paths["openvino int8"] = load_runtime(int8_xml, "openvino", precision="fp32", num_threads=threads)
    else:
        for name in ("openvino fp32", "openvino bf16", "openvino int8"):
            paths[name] = "openvino/nncf are not installed (pip install 'yolov7-track[openvino]')"
    return paths


def bench_runtimes(models: list[str], threads: int, repeats: int, warmup: int) -> list[dict]:
    """Median ms of every inference path per model and input, with the ratio to the official
    fp32 path (or ``None`` when the official code is not available)."""
    import tempfile

    set_threads(threads)
    rows = []
    with tempfile.TemporaryDirectory(prefix="latency-runtimes-") as tmp:
        for arch in models:
            paths = runtime_paths(arch, Path(tmp))
            for h, w in RUNTIME_INPUTS:
                x = torch.rand((1, 3, h, w))
                measured: dict[str, float] = {}
                for name, run in paths.items():
                    if isinstance(run, str):
                        rows.append({"model": arch, "input_hw": [h, w], "path": name, "threads": threads,
                                     "ms": None, "vs_official": None, "skipped": run})
                        continue
                    with torch.inference_mode():
                        measured[name] = median_ms(lambda: run(x), repeats, warmup)
                    logger.info("%s %dx%d %s: %.1f ms", arch, h, w, name, measured[name])
                official_ms = measured.get("official fp32")
                for name, ms in measured.items():
                    rows.append({"model": arch, "input_hw": [h, w], "path": name, "threads": threads, "ms": ms,
                                 "vs_official": ms / official_ms if official_ms else None,
                                 "vs_ours_fp32": ms / measured["ours fp32"], "skipped": None})
    return rows


# ---------------------------------------------------------------- report


def print_table(title: str, rows: list[dict], columns: list[tuple[str, str]]) -> None:
    print(f"\n{title}")
    widths = [max(len(header), *(len(_fmt(row.get(key))) for row in rows)) for key, header in columns]
    print("  ".join(header.rjust(width) for (_, header), width in zip(columns, widths)))
    for row in rows:
        print("  ".join(_fmt(row.get(key)).rjust(width) for (key, _), width in zip(columns, widths)))


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if value < 1 else f"{value:.2f}" if value < 100 else f"{value:.1f}"
    if isinstance(value, list):
        return "x".join(str(v) for v in value)
    return str(value)


def budget_summary(pre: list[dict], post: list[dict], forward: list[dict]) -> list[dict]:
    """Pre + post time at conf 0.25 against yolov7-tiny's forward time (goal: under 10 %)."""
    rows = []
    for p in pre:
        for q in post:
            if q["frame"] != p["frame"] or q["threads"] != p["threads"] or q["conf_thres"] != 0.25:
                continue
            tiny = [f for f in forward if f["model"] == "yolov7-tiny" and f["device"] == "cpu"
                    and f["threads"] == p["threads"] and f["input_hw"] == p["input_hw"]]
            forward_ms = tiny[0]["forward_ms"] if tiny else None
            total = p["total_ms"] + q["nms_scale_ms"]
            rows.append({
                "frame": p["frame"], "input_hw": p["input_hw"], "threads": p["threads"],
                "pre_post_ms": total, "tiny_forward_ms": forward_ms,
                "share_percent": 100.0 * total / forward_ms if forward_ms else None,
            })
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS),
                        help=f"architectures to time, or 'all' (default: {' '.join(DEFAULT_MODELS)})")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per measurement (>= 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs before timing")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="CPU thread counts")
    parser.add_argument("--skip-forward", action="store_true", help="time pre/post-processing only")
    parser.add_argument("--no-cuda", action="store_true", help="skip CUDA timings even if a GPU is present")
    parser.add_argument("--skip-runtimes", action="store_true", help="skip the inference-path comparison")
    parser.add_argument("--runtime-models", nargs="+", default=list(RUNTIME_MODELS),
                        help="models of the inference-path comparison (yolov7-tiny yolov7)")
    parser.add_argument("--runtime-threads", type=int, default=2, help="threads of that comparison (2)")
    parser.add_argument("--output", type=Path, default=RESULTS_PATH, help="JSON output path")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.repeats < 20:
        parser.error("--repeats must be >= 20 (medians of at least 20 runs)")
    models = list(AVAILABLE_MODELS) if args.models == ["all"] else args.models
    unknown = [m for m in models if m not in AVAILABLE_MODELS]
    if unknown:
        parser.error(f"unknown models {unknown}; available: {', '.join(AVAILABLE_MODELS)}")
    use_cuda = torch.cuda.is_available() and not args.no_cuda

    frames = load_frames()
    preds = tiny_predictions(frames)
    pre, post, forward = [], [], []
    for threads in args.threads:
        pre += bench_preprocess(frames, threads, args.repeats, args.warmup)
        post += bench_postprocess(frames, preds, threads, args.repeats, args.warmup)
    if not args.skip_forward:
        for model_name in models:
            forward += bench_forward(model_name, args.threads, args.repeats, args.warmup, use_cuda)
    budget = budget_summary(pre, post, forward)
    runtimes = [] if args.skip_runtimes else bench_runtimes(args.runtime_models, args.runtime_threads,
                                                           args.repeats, args.warmup)
    gemm = [{"threads": t, "gemm_gflops": gemm_gflops(t)} for t in args.threads]

    print_table("Pre-processing at 640 (letterbox + tensor), median ms", pre, [
        ("frame", "frame"), ("frame_hw", "frame hw"), ("input_hw", "input hw"), ("threads", "threads"),
        ("letterbox_ms", "letterbox"), ("to_float_ms", "to float"), ("total_ms", "total")])
    print_table("Post-processing (NMS + scale_boxes) on yolov7-tiny predictions, median ms", post, [
        ("frame", "frame"), ("input_hw", "input hw"), ("conf_thres", "conf"), ("iou_thres", "iou"),
        ("threads", "threads"), ("rows_above_objectness", "obj > conf"), ("detections", "dets"),
        ("nms_scale_ms", "ms")])
    if forward:
        print_table("Fused forward, batch 1, median ms (reference: official code, 2 threads)", forward, [
            ("model", "model"), ("input_hw", "input hw"), ("device", "device"), ("dtype", "dtype"),
            ("threads", "threads"), ("forward_ms", "ours ms"),
            ("official_ops_ms", "official ops, same run"), ("reference_official_ms", "issue ref ms")])
    if runtimes:
        skipped = sorted({row["skipped"] for row in runtimes if row["skipped"]})
        print_table(f"Inference paths, batch 1, {args.runtime_threads} threads, median ms; ratios to the "
                    f"official fp32 (goal for the best default path, tiny 384x640: <= {GOAL_BEST_VS_OFFICIAL})",
                    [r for r in runtimes if not r["skipped"]], [
                        ("model", "model"), ("input_hw", "input hw"), ("path", "path"), ("ms", "ms"),
                        ("vs_official", "vs official fp32"), ("vs_ours_fp32", "vs ours fp32")])
        for reason in skipped:
            names = ", ".join(sorted({r["path"] for r in runtimes if r["skipped"] == reason}))
            print(f"skipped ({names}): {reason}")
    print_table("fp32 GEMM 2048^3, median GFLOP/s (the machine's practical peak, for context)", gemm, [
        ("threads", "threads"), ("gemm_gflops", "GFLOP/s")])
    if budget:
        print_table("Pre + post (conf 0.25) vs yolov7-tiny forward (goal < 10 %)", budget, [
            ("frame", "frame"), ("input_hw", "input hw"), ("threads", "threads"),
            ("pre_post_ms", "pre+post ms"), ("tiny_forward_ms", "tiny fwd ms"), ("share_percent", "%")])

    report = {
        "machine": {
            "python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "opencv": cv2.__version__, "cpu_count": __import__("os").cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "cuda": torch.cuda.get_device_name(0) if use_cuda else None,
        },
        "settings": {"repeats": args.repeats, "warmup": args.warmup, "threads": args.threads, "models": models},
        "preprocess": pre, "postprocess": post, "forward": forward, "pre_post_budget": budget,
        "gemm": gemm, "runtimes": runtimes,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
