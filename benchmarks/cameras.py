"""Many cameras, one process: one batched detector against N separate pipelines, CPU.

Issue 13, acceptance. Clip: ``pedestrians_overhead_walking.mp4`` (1280x720, 25 fps, 341 frames);
every camera is a copy of it, read as a file (every frame processed, back-pressure, no drops),
first ``--frames`` frames. Detector: ``yolov7-tiny`` with the official-format fixture weights
(deterministic random values: the work per frame is that of the real model; only the boxes are
junk), ``--img-size`` 640, ``--precision`` (default ``auto``), ``--threads`` torch threads. One
``Detector`` object is built once and used by every run.

For each N of ``--cameras`` (default 1 2 4 8), per repeat, two runs of N
:class:`app.pipeline.Pipeline` at once (one thread per pipeline calling ``run()``; each pipeline
with its own ByteTrack and a counting line across the middle; no video, no event sinks):

* **batched**: the pipelines' detectors are views (``for_camera()``) of one
  :class:`app.batching.BatchingDetector` over ``detector.detect_batch`` (``max_batch`` N or
  ``--max-batch``, ``max_wait_ms`` ``--max-wait-ms``), as ``yolov7-track serve`` builds them.
* **separate**: each pipeline calls the same ``detector`` directly, batch 1, so N torch calls run
  at once from N threads. This is what N separate single-camera pipelines are in one process.
* **processes**: N processes (``multiprocessing``, spawn), each loading its own detector with
  ``--threads`` torch threads and running one pipeline: what a user runs without the service,
  one ``yolov7-track`` per camera. Each process loads and warms up its model before a common
  barrier; its run is timed from the barrier (``time.monotonic``, one clock for all processes).
  Its memory is the sum of the processes' peak RSS.

Warm-up, before any run: ``WARMUP_ROUNDS`` rounds of ``detect_batch`` over every batch size from 1
to the largest a run will see, alternating. The first calls of the frozen bf16 graph
(:mod:`detector.frozen`, TorchScript) at a new input shape were seen to be slow (1-2 s per frame
for the first few calls when batch sizes 1 and 2 alternate, against ~0.13 s steady; seen on a
loaded machine, presumably TorchScript profiling and re-optimizing per shape), and a batched run
sees every batch size from 1 to ``max_batch``: one call per size did not reach the steady time.

The two runs of a repeat follow each other (their order alternates between repeats) so both see
the same machine load. Per run: aggregate fps = all frames out / wall time from the common
start (a barrier) to the end of the last pipeline; per-camera fps = that camera's frames / its
own ``run()`` time; the batcher's mean batch size (frames per forward pass). Goals: batched
aggregate fps >= 1.2x separate at N = 4 (``ratio``, the median of the per-repeat ratios; also
given against ``processes``, ``ratio_vs_processes``), and no camera below 80 % of the mean
per-camera fps (``min/mean``) in the batched runs.

Memory, per run: the process's resident set (``VmRSS`` of ``/proc/self/status``) before and
after, its peak sampled every 50 ms during the run, and the process's peak RSS so far
(``resource.getrusage().ru_maxrss``). ``ru_maxrss`` is monotonic over the whole process: after
the first large run it only says the peak has not grown; the sampled peak is the per-run figure.

Usage::

    python benchmarks/cameras.py [--cameras 1 2 4 8] [--frames 60] [--repeats 3] [--threads 2]
        [--precision auto] [--max-batch N] [--max-wait-ms 15] [--img-size 640]

prints the table and writes ``benchmarks/results/cameras.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from app.batching import BatchingDetector  # noqa: E402
from app.counting import CountingConfig, LineSpec  # noqa: E402
from app.pipeline import Pipeline, PipelineConfig  # noqa: E402
from app.sources import open_source  # noqa: E402
from detector import Detector  # noqa: E402
from shared_data import shared_path  # noqa: E402
from tracker.registry import make_tracker  # noqa: E402
from yolov7_track.arg_types import non_negative_float, positive_int  # noqa: E402

logger = logging.getLogger("benchmarks.cameras")

RESULTS_PATH = REPO / "benchmarks" / "results" / "cameras.json"
CLIP = ("data", "videos", "pedestrians_overhead_walking.mp4")
CLIP_FRAMES = 341
WEIGHTS = ("fixtures", "yolov7", "yolov7-tiny.official-format.pt")
GOAL_RATIO = 1.2  # batched aggregate fps over separate, at GOAL_RATIO_CAMERAS cameras
GOAL_RATIO_CAMERAS = 4
GOAL_MIN_OVER_MEAN = 0.8  # slowest camera's fps over the mean, batched
MODES = ("batched", "separate", "processes")
RSS_SAMPLE_S = 0.05
WARMUP_ROUNDS = 3
#: A horizontal line through the middle of the frame (normalized), as a user would draw.
COUNTING = CountingConfig(lines=(LineSpec("middle", (0.0, 0.5), (1.0, 0.5)),), normalized=True)


# ------------------------------------------------------------------------------- memory
def current_rss_mib() -> float:
    """The process's resident set now (``VmRSS``), MiB."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0  # kB
    raise RuntimeError("/proc/self/status has no VmRSS line")


def max_rss_mib() -> float:
    """The process's peak resident set so far (``ru_maxrss``, KiB on Linux), MiB; monotonic."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class RssSampler:
    """Peak ``VmRSS`` over a ``with`` block, sampled every ``interval_s`` in a thread."""

    def __init__(self, interval_s: float = RSS_SAMPLE_S) -> None:
        self.interval_s = interval_s
        self.peak_mib = 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self.peak_mib = current_rss_mib()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        self._thread.join()
        self.peak_mib = max(self.peak_mib, current_rss_mib())

    def _sample(self) -> None:
        while not self._done.wait(self.interval_s):
            self.peak_mib = max(self.peak_mib, current_rss_mib())


# ------------------------------------------------------------------------------- one run
def build_pipeline(clip: Path, detect: Any, frames: int, camera_id: str, names: Any) -> Pipeline:
    """One camera as ``Service._build_pipeline`` builds it, without outputs."""
    source = open_source(clip)
    try:
        tracker = make_tracker("bytetrack", frame_rate=source.fps or 25.0)
        config = PipelineConfig(camera_id=camera_id, max_frames=frames, render=False)
        return Pipeline(source, detect, tracker, counting=COUNTING, config=config, class_names=names)
    except BaseException:
        source.close()
        raise


def run_cameras(detector: Detector, clip: Path, frames: int, cameras: int, mode: str,
                max_batch: int, max_wait_ms: float, workers: int = 1) -> dict[str, Any]:
    """N pipelines at once in ``mode``; fps, batch size and memory of the run."""
    batcher = BatchingDetector(detector.detect_batch, max_batch=max_batch, max_wait_ms=max_wait_ms,
                               workers=workers) if mode == "batched" else None
    rss_before = current_rss_mib()
    pipelines: list[Pipeline] = []
    try:
        for i in range(cameras):
            detect = batcher.for_camera() if batcher is not None else detector
            pipelines.append(build_pipeline(clip, detect, frames, f"cam{i}", detector.names))
    except BaseException:
        for pipeline in pipelines:  # never run: close what they own
            pipeline.source.close()
        if batcher is not None:
            batcher.close()
        raise

    start = threading.Barrier(cameras + 1)
    spans: list[tuple[float, float] | None] = [None] * cameras
    errors: list[BaseException | None] = [None] * cameras

    def camera(i: int) -> None:
        start.wait()
        t0 = time.perf_counter()
        try:
            pipelines[i].run()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            errors[i] = exc
        spans[i] = (t0, time.perf_counter())

    threads = [threading.Thread(target=camera, args=(i,), name=f"bench-cam{i}") for i in range(cameras)]
    try:
        with RssSampler() as sampler:
            for thread in threads:
                thread.start()
            start.wait()
            t_start = time.perf_counter()
            for thread in threads:
                thread.join()
            t_end = max(span[1] for span in spans if span is not None)
    finally:
        if batcher is not None:
            batcher.close()
    for i, error in enumerate(errors):
        if error is not None:
            raise RuntimeError(f"{mode} run, {cameras} cameras: camera {i} failed: "
                               f"{type(error).__name__}: {error}") from error
    per_camera = []
    for pipeline, span in zip(pipelines, spans):
        report = pipeline.report
        if report is None or report.status != "finished" or report.stats.frames_out != frames:
            raise RuntimeError(f"{mode} run, {cameras} cameras: a camera did not process {frames} frames: "
                               f"{report.summary() if report is not None else 'no report'}")
        per_camera.append(report.stats.frames_out / (span[1] - span[0]))
    wall_s = t_end - t_start
    mean_fps = statistics.fmean(per_camera)
    return {
        "aggregate_fps": cameras * frames / wall_s,
        "wall_s": wall_s,
        "camera_fps": per_camera,
        "camera_fps_min": min(per_camera),
        "camera_fps_mean": mean_fps,
        "camera_fps_max": max(per_camera),
        "min_over_mean": min(per_camera) / mean_fps,
        "mean_batch": batcher.mean_batch if batcher is not None else 1.0,
        "batches": batcher.batches if batcher is not None else cameras * frames,
        "rss_before_mib": rss_before,
        "rss_after_mib": current_rss_mib(),
        "rss_peak_sampled_mib": sampler.peak_mib,
        "maxrss_mib": max_rss_mib(),
    }


def _camera_process(index: int, clip: str, frames: int, threads: int, precision: str, img_size: int,
                    barrier: Any, results: Any, device: str = "cpu") -> None:
    """One camera in its own process (``processes`` mode): load, warm up, wait, run, report."""
    try:
        torch.set_num_threads(threads)
        cv2.setNumThreads(threads)
        detector = Detector.from_weights(shared_path(*WEIGHTS), img_size=img_size, device=device, precision=precision)
        source = open_source(Path(clip))
        try:
            warm = next(iter(source)).image
        finally:
            source.close()
        for _ in range(WARMUP_ROUNDS):
            detector.detect_batch([warm])
        pipeline = build_pipeline(Path(clip), detector, frames, f"cam{index}", detector.names)
        barrier.wait()
        t0 = time.monotonic()
        report = pipeline.run()
        t1 = time.monotonic()
        results.put({"index": index, "t0": t0, "t1": t1, "frames": report.stats.frames_out,
                     "status": report.status, "maxrss_mib": max_rss_mib()})
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises
        results.put({"index": index, "error": f"{type(exc).__name__}: {exc}"})
        raise


def run_processes(clip: Path, frames: int, cameras: int, threads: int, precision: str,
                  img_size: int, device: str = "cpu") -> dict[str, Any]:
    """N single-camera processes at once (``processes`` mode); fps and summed peak memory."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(cameras)
    results = context.Queue()
    processes = [context.Process(target=_camera_process, name=f"bench-cam{i}",
                                 args=(i, str(clip), frames, threads, precision, img_size, barrier, results, device))
                 for i in range(cameras)]
    for process in processes:
        process.start()
    rows = []
    try:
        for _ in range(cameras):
            rows.append(results.get(timeout=600))
    finally:
        for process in processes:
            process.join(timeout=60)
            if process.is_alive():
                process.kill()
    failed = [r for r in rows if "error" in r or r["status"] != "finished" or r["frames"] != frames]
    if failed:
        raise RuntimeError(f"processes run, {cameras} cameras: {failed}")
    start, end = min(r["t0"] for r in rows), max(r["t1"] for r in rows)
    per_camera = [r["frames"] / (r["t1"] - r["t0"]) for r in sorted(rows, key=lambda r: r["index"])]
    mean_fps = statistics.fmean(per_camera)
    rss_total = sum(r["maxrss_mib"] for r in rows)
    return {
        "aggregate_fps": cameras * frames / (end - start),
        "wall_s": end - start,
        "camera_fps": per_camera,
        "camera_fps_min": min(per_camera),
        "camera_fps_mean": mean_fps,
        "camera_fps_max": max(per_camera),
        "min_over_mean": min(per_camera) / mean_fps,
        "mean_batch": 1.0,
        "batches": cameras * frames,
        "rss_before_mib": float("nan"),
        "rss_after_mib": float("nan"),
        "rss_peak_sampled_mib": rss_total,
        "maxrss_mib": rss_total,
    }


# ------------------------------------------------------------------------------- the benchmark
MEDIAN_KEYS = ("aggregate_fps", "camera_fps_min", "camera_fps_mean", "camera_fps_max", "min_over_mean",
               "mean_batch", "rss_before_mib", "rss_after_mib", "rss_peak_sampled_mib", "maxrss_mib")


def run(cameras: tuple[int, ...], frames: int, repeats: int, threads: int, precision: str, img_size: int,
        max_batch: int | None, max_wait_ms: float, workers: int = 1, device: str = "cpu") -> dict[str, Any]:
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    clip = shared_path(*CLIP)
    rss_start = current_rss_mib()
    detector = Detector.from_weights(shared_path(*WEIGHTS), img_size=img_size, device=device, precision=precision)
    rss_model = current_rss_mib()
    source = open_source(clip)
    try:
        warm = next(iter(source)).image
    finally:
        source.close()
    largest = max(min(n, max_batch or n) for n in cameras)
    t0 = time.perf_counter()
    for _ in range(WARMUP_ROUNDS):  # every batch size the runs will see, alternating (see the docstring)
        for size in range(1, largest + 1):
            detector.detect_batch([warm] * size)
    warmup_s = time.perf_counter() - t0
    logger.info("warm-up: %d rounds of batches 1..%d in %.1f s", WARMUP_ROUNDS, largest, warmup_s)

    rows = []
    for repeat in range(repeats):
        for n in cameras:
            order = MODES if repeat % 2 == 0 else MODES[::-1]
            for mode in order:
                if mode == "processes":
                    row = run_processes(clip, frames, n, threads, precision, img_size, device)
                else:
                    row = run_cameras(detector, clip, frames, n, mode, max_batch or n, max_wait_ms, workers)
                rows.append({"repeat": repeat, "cameras": n, "mode": mode, **row})
                logger.info("repeat %d, %d camera(s), %s: %.2f fps aggregate, per camera %.2f..%.2f "
                            "(min/mean %.3f), mean batch %.2f, RSS peak %.0f MiB", repeat, n, mode,
                            row["aggregate_fps"], row["camera_fps_min"], row["camera_fps_max"],
                            row["min_over_mean"], row["mean_batch"], row["rss_peak_sampled_mib"])
    for row in rows:
        if row["mode"] == "batched":
            other = next(r for r in rows if r["repeat"] == row["repeat"] and r["cameras"] == row["cameras"]
                         and r["mode"] == "separate")
            row["ratio"] = row["aggregate_fps"] / other["aggregate_fps"]
            processes = next(r for r in rows if r["repeat"] == row["repeat"] and r["cameras"] == row["cameras"]
                             and r["mode"] == "processes")
            row["ratio_vs_processes"] = row["aggregate_fps"] / processes["aggregate_fps"]

    median: dict[str, Any] = {}
    for n in cameras:
        entry: dict[str, Any] = {
            mode: {key: statistics.median(r[key] for r in rows if r["cameras"] == n and r["mode"] == mode)
                   for key in MEDIAN_KEYS}
            for mode in MODES
        }
        batched = [r for r in rows if r["cameras"] == n and r["mode"] == "batched"]
        entry["ratio"] = statistics.median(r["ratio"] for r in batched)
        entry["ratio_vs_processes"] = statistics.median(r["ratio_vs_processes"] for r in batched)
        median[str(n)] = entry
    goals: dict[str, Any] = {"ratio": GOAL_RATIO, "ratio_at_cameras": GOAL_RATIO_CAMERAS,
                             "min_over_mean": GOAL_MIN_OVER_MEAN}
    at = median.get(str(GOAL_RATIO_CAMERAS))
    goals["ratio_met"] = None if at is None else at["ratio"] >= GOAL_RATIO
    goals["ratio_vs_processes_met"] = None if at is None else at["ratio_vs_processes"] >= GOAL_RATIO
    goals["min_over_mean_met"] = all(m["batched"]["min_over_mean"] >= GOAL_MIN_OVER_MEAN for m in median.values())
    return {
        "clip": "/".join(CLIP),
        "frames": frames,
        "repeats": repeats,
        "cameras": list(cameras),
        "threads": threads,
        "img_size": img_size,
        "precision": precision,
        "precision_resolved": detector.precision,
        "device": str(detector.device),
        "max_batch": max_batch,
        "max_wait_ms": max_wait_ms,
        "workers": workers,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "threads": threads, "precision": detector.precision},
        "warmup": {"rounds": WARMUP_ROUNDS, "batch_sizes": [1, largest], "seconds": warmup_s},
        "rss_mib": {"start": rss_start, "after_model": rss_model},
        "runs": rows,
        "median": median,
        "goals": goals,
    }


def print_table(result: dict[str, Any]) -> None:
    max_batch = result["max_batch"] if result["max_batch"] is not None else "N"
    print(f"\ncameras, batched vs separate: {result['clip']} x N, first {result['frames']} frames each (1280x720), "
          f"yolov7-tiny @{result['img_size']}, {result.get('device', 'cpu')}, {result['threads']} torch thread(s), "
          f"{result['precision']} ({result['precision_resolved']}), max_batch {max_batch}, "
          f"max_wait {result['max_wait_ms']:g} ms, median of {result['repeats']} repeats")
    print("ratio: batched aggregate fps over separate (threads, one model) / over processes (one model each); "
          "processes' memory: the sum of their peak RSS")
    print(f"{'N':>3} {'mode':<9}{'agg fps':>9}{'ratio':>11}{'cam min':>9}{'mean':>7}{'max':>7}{'min/mean':>10}"
          f"{'batch':>7}{'RSS before':>12}{'after':>7}{'peak':>7}{'maxrss':>8}")
    for n, entry in result["median"].items():
        for mode in MODES:
            m = entry[mode]
            ratio = f"{entry['ratio']:.2f}/{entry['ratio_vs_processes']:.2f}" if mode == "batched" else ""
            print(f"{n:>3} {mode:<9}{m['aggregate_fps']:>9.2f}{ratio:>11}{m['camera_fps_min']:>9.2f}"
                  f"{m['camera_fps_mean']:>7.2f}{m['camera_fps_max']:>7.2f}{m['min_over_mean']:>10.3f}"
                  f"{m['mean_batch']:>7.2f}{m['rss_before_mib']:>12.0f}{m['rss_after_mib']:>7.0f}"
                  f"{m['rss_peak_sampled_mib']:>7.0f}{m['maxrss_mib']:>8.0f}")
    goals = result["goals"]
    met = {True: "met", False: "NOT met", None: f"not measured (no N = {goals['ratio_at_cameras']})"}
    print(f"goals: batched/separate aggregate fps >= {goals['ratio']} at N = {goals['ratio_at_cameras']}: "
          f"{met[goals['ratio_met']]} against separate, {met[goals['ratio_vs_processes_met']]} against processes; "
          f"batched min/mean camera fps >= {goals['min_over_mean']}: "
          f"{met[goals['min_over_mean_met']]}")
    print(f"memory (MiB): RSS {result['rss_mib']['start']:.0f} at start, {result['rss_mib']['after_model']:.0f} "
          f"with the model; per run: VmRSS before/after, peak sampled every {RSS_SAMPLE_S * 1e3:.0f} ms, "
          f"maxrss = process peak so far (monotonic)")


# ------------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cameras", type=positive_int, nargs="+", default=[1, 2, 4, 8],
                        help="numbers of cameras (copies of the clip) to measure")
    parser.add_argument("--frames", type=positive_int, default=60,
                        help=f"frames per camera per run (the clip has {CLIP_FRAMES})")
    parser.add_argument("--repeats", type=positive_int, default=3,
                        help="repeats; each runs batched, separate and processes back to back for every N")
    parser.add_argument("--threads", type=positive_int, default=2, help="torch (and OpenCV) threads")
    parser.add_argument("--precision", default="auto", choices=["fp32", "bf16", "fp16", "auto"])
    parser.add_argument("--img-size", type=positive_int, default=640)
    parser.add_argument("--max-batch", type=positive_int, default=None,
                        help="frames per forward pass, at most (default: N, the number of cameras)")
    parser.add_argument("--max-wait-ms", type=non_negative_float, default=15.0,
                        help="how long a frame waits for others to join its batch")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (where batching pays: a GPU)")
    parser.add_argument("--workers", type=positive_int, default=1,
                        help="batches in flight at once (BatchingDetector workers)")
    args = parser.parse_args(argv)
    if args.frames > CLIP_FRAMES:
        parser.error(f"--frames: the clip has {CLIP_FRAMES} frames, got {args.frames}")
    if len(set(args.cameras)) != len(args.cameras):
        parser.error(f"--cameras: duplicate values in {args.cameras}")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logger.setLevel(logging.INFO)
    result = run(tuple(args.cameras), args.frames, args.repeats, args.threads, args.precision, args.img_size,
                 args.max_batch, args.max_wait_ms, args.workers, args.device)
    print_table(result)
    RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_PATH.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {RESULTS_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
