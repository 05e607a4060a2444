"""End-to-end pipeline throughput against the detector alone, on a 720p clip, CPU.

Issue 4, scope 7. Clip: ``pedestrians_overhead_walking.mp4`` (1280x720, 25 fps, 341 frames).
Detector: ``yolov7-tiny`` with the official-format fixture weights (deterministic random values:
the work per frame is that of the real model; only the boxes are junk), fused fp32, img_size 640
(letterboxed to 384x640 for this 16:9 clip), batch 1, ``--threads`` torch threads.

Per repeat, on the first ``--frames`` frames, two passes with the same ``Detector`` object:

* **detector only**: frames decoded by :func:`app.sources.open_source`, and only the
  ``detector(frame)`` calls timed; fps = frames / summed detector time. This is the ceiling.
* **end to end**: :class:`app.pipeline.Pipeline` as the CLI builds it — decoding in the capture
  thread, detector + ByteTrack + a counting line in the inference thread, and in the output
  stage a JSONL event sink, drawing (:class:`app.render.FrameRenderer`) and H.264 encoding of the
  annotated video (:class:`app.video_writer.VideoWriter`) to a temporary folder; fps = frames /
  wall time of ``Pipeline.run()`` (thread start to finalized video).

The figure of merit is ``ratio = end-to-end fps / detector-only fps`` per repeat (goal >= 0.85):
the stages around the detector must overlap with it rather than add to it. The table quotes
medians over repeats and the per-stage times of the last end-to-end pass.

Issue 12: each repeat runs both passes once per ``--precisions`` entry (default ``fp32 auto``,
interleaved, so both see the same machine load); ``speedup`` is the end-to-end fps of each
precision over fp32's in the same repeat (goal for ``auto``: >= 2).

Usage::

    python benchmarks/pipeline.py [--frames 60] [--repeats 7] [--threads 1] [--img-size 640]
        [--precisions fp32 auto]

prints the table and writes ``benchmarks/results/pipeline.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from app.counting import CountingConfig, LineSpec  # noqa: E402
from app.pipeline import Pipeline, PipelineConfig, PipelineReport  # noqa: E402
from app.sinks import open_event_sink  # noqa: E402
from app.sources import open_source  # noqa: E402
from detector import Detector  # noqa: E402
from shared_data import shared_path  # noqa: E402
from tracker import ByteTrack  # noqa: E402

logger = logging.getLogger("benchmarks.pipeline")

RESULTS_PATH = REPO / "benchmarks" / "results" / "pipeline.json"
CLIP = ("data", "videos", "pedestrians_overhead_walking.mp4")
WEIGHTS = ("fixtures", "yolov7", "yolov7-tiny.official-format.pt")
GOAL_RATIO = 0.85
GOAL_SPEEDUP = 2.0  # issue 12: end to end with --precision auto over fp32
#: A horizontal line through the middle of the frame (normalized), as a user would draw.
COUNTING = CountingConfig(lines=(LineSpec("middle", (0.0, 0.5), (1.0, 0.5)),), normalized=True)


def detector_only_fps(detector: Detector, clip: Path, frames: int) -> tuple[float, float]:
    """Frames per second of the detector calls alone, and their median time in ms."""
    times_s: list[float] = []
    source = open_source(clip)
    try:
        for frame in source:
            t0 = time.perf_counter()
            detector(frame.image)
            times_s.append(time.perf_counter() - t0)
            if len(times_s) == frames:
                break
    finally:
        source.close()
    return len(times_s) / sum(times_s), 1e3 * statistics.median(times_s)


def end_to_end_fps(detector: Detector, clip: Path, frames: int, workdir: Path) -> tuple[float, PipelineReport]:
    """Frames per second of a full pipeline run (wall time of ``run()``) and its report."""
    source = open_source(clip)
    pipeline = Pipeline(
        source, detector, ByteTrack(frame_rate=source.fps or 30.0), counting=COUNTING,
        event_sinks=[open_event_sink(workdir / "events.jsonl")],
        config=PipelineConfig(video_output=workdir / "annotated.mp4", max_frames=frames),
        class_names=detector.names,
    )
    t0 = time.perf_counter()
    report = pipeline.run()
    wall_s = time.perf_counter() - t0
    if report.status != "finished" or report.stats.frames_out != frames:
        raise RuntimeError(f"end-to-end run did not process {frames} frames: {report.summary()}")
    return frames / wall_s, report


def run(frames: int, repeats: int, threads: int, img_size: int,
        precisions: tuple[str, ...] = ("fp32", "auto")) -> dict[str, Any]:
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    clip = shared_path(*CLIP)
    detectors = {p: Detector.from_weights(shared_path(*WEIGHTS), img_size=img_size, device="cpu", precision=p)
                 for p in precisions}
    warm = next(iter(open_source(clip))).image
    for detector in detectors.values():
        for _ in range(3):
            detector(warm)

    rows = []
    last_reports: dict[str, PipelineReport] = {}
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        for repeat in range(repeats):
            for name, detector in detectors.items():
                det_fps, det_ms = detector_only_fps(detector, clip, frames)
                e2e_fps, last_reports[name] = end_to_end_fps(detector, clip, frames, Path(tmp))
                rows.append({"repeat": repeat, "precision": name, "resolved": detector.precision,
                             "detector_fps": det_fps, "detector_p50_ms": det_ms,
                             "end_to_end_fps": e2e_fps, "ratio": e2e_fps / det_fps})
                logger.info("repeat %d, %s (%s): detector %.2f fps, end to end %.2f fps, ratio %.3f",
                            repeat, name, detector.precision, det_fps, e2e_fps, e2e_fps / det_fps)
    reference = precisions[0]
    for row in rows:
        base = next(r for r in rows if r["repeat"] == row["repeat"] and r["precision"] == reference)
        row["speedup"] = row["end_to_end_fps"] / base["end_to_end_fps"]
    median = {
        name: {key: statistics.median(r[key] for r in rows if r["precision"] == name)
               for key in ("detector_fps", "detector_p50_ms", "end_to_end_fps", "ratio", "speedup")}
        for name in precisions
    }
    return {
        "clip": "/".join(CLIP),
        "frames": frames,
        "repeats": repeats,
        "threads": threads,
        "img_size": img_size,
        "precisions": {name: d.precision for name, d in detectors.items()},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__},
        "runs": rows,
        "median": median,
        "goal_ratio": GOAL_RATIO,
        "goal_speedup_auto": GOAL_SPEEDUP,
        "last_end_to_end": {name: report.to_dict() for name, report in last_reports.items()},
    }


def print_table(result: dict[str, Any]) -> None:
    print(f"\npipeline vs detector: {result['clip']}, first {result['frames']} frames (1280x720), yolov7-tiny "
          f"@{result['img_size']}, CPU, {result['threads']} torch thread(s), median of {result['repeats']} repeats")
    print(f"{'precision':<16}{'detector fps':>13}{'ms/frame':>10}{'e2e fps':>9}{'ms/frame':>10}"
          f"{'e2e/det':>9}{'speedup':>9}")
    for name, med in result["median"].items():
        shown = f"{name} ({result['precisions'][name]})" if name == "auto" else name
        print(f"{shown:<16}{med['detector_fps']:>13.2f}{1e3 / med['detector_fps']:>10.1f}"
              f"{med['end_to_end_fps']:>9.2f}{1e3 / med['end_to_end_fps']:>10.1f}{med['ratio']:>9.3f}"
              f"{med['speedup']:>9.2f}")
    print(f"goals: e2e/det >= {result['goal_ratio']} (the stages overlap the detector); "
          f"speedup of auto over fp32 >= {result['goal_speedup_auto']}")
    for name, report in result["last_end_to_end"].items():
        stats = report["stats"]
        print(f"\nlast end-to-end run, {name}, per stage (service time per frame):")
        print(f"{'stage':<10}{'p50 ms':>8}{'p95 ms':>8}{'mean ms':>9}")
        for stage in stats["stages"]:
            print(f"{stage['name']:<10}{stage['p50_ms']:>8.1f}{stage['p95_ms']:>8.1f}{stage['mean_ms']:>9.1f}")
        print(f"latency capture->output: p50 {stats['latency_p50_ms']:.0f} ms, p95 {stats['latency_p95_ms']:.0f} ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=60, help="frames per pass (clip has 341)")
    parser.add_argument("--repeats", type=int, default=7,
                        help="pairs of passes; short pairs see the same machine load")
    parser.add_argument("--threads", type=int, default=1, help="torch (and OpenCV) threads")
    parser.add_argument("--img-size", type=int, default=640)
    parser.add_argument("--precisions", nargs="+", default=["fp32", "auto"],
                        choices=["fp32", "bf16", "auto"], help="the first is the reference")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logger.setLevel(logging.INFO)
    result = run(args.frames, args.repeats, args.threads, args.img_size, tuple(args.precisions))
    print_table(result)
    RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_PATH.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {RESULTS_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
