"""What Ray adds, per frame, and what N cameras cost on it: the capacity plan's measurements.

Issue 15. Everything runs here, on one machine (a local Ray instance with ``--cpus`` CPUs); no
GPU. The detector is a fake that returns two fixed boxes at once (``FixedBoxes``), so that what
is measured is the service around the detector: decode, object store, actor calls, tracker,
counting, events. The detector's own cost is added in ``docs/scaling.md`` from its measured or
published figures.

Clip: the first ``--frames`` frames of ``assets/samples/traffic_street_fixedcam.mp4`` resized to
``--width`` pixels wide (320: 320x180), written once as a PNG folder; every camera reads it as a
file (every frame processed, as fast as the service goes). A counting line across the middle.

Measurements:

1. **Round trip of one frame to the detector** (medians of ``--calls`` calls, one caller): the
   in-process :class:`app.batching.BatchingDetector` (``max_wait_ms`` 0) against a camera's
   :class:`app.ray_service.camera_actor.RemoteDetectorPool` and one detector actor (``ray.put`` of
   the frame, actor call, detections back). The difference is the per-frame overhead Ray adds to
   detection.
2. **Whole service, N cameras** (``--cameras``, default 1 and 16), the in-process
   :class:`app.service.Service` against :class:`app.ray_service.RayService` (one detector actor),
   ``--repeats`` times each, medians. Start-up: from ``start()`` until every camera has output a
   frame (camera actors start: a process each). Then the steady state, until the last camera
   ends: aggregate camera-frames per second, wall time per camera-frame, and CPU time of the whole
   machine (``/proc/stat``, all processes: the driver, the Ray workers, Ray's own daemons) per
   camera-frame. ``status()`` is polled every 50 ms during start-up only.

"N cameras at F fps" follows from these: the machine sustains them if the aggregate rate is at
least N x F camera-frames per second, with the CPU per camera-frame as the cost. 16 cameras of a
320-px clip at 2 fps need 32 camera-frames per second.

The machine is shared with other work; CPU figures are machine-wide, so a busy neighbour shows
up as cost. Run it on an idle machine for the figures of record.

Usage::

    python benchmarks/ray_scale.py [--cameras 1 16] [--frames 150] [--repeats 3] [--calls 300]
        [--width 320] [--cpus 2]

prints the table and writes ``benchmarks/results/ray_scale.json``.
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

import numpy as np
import supervision as sv

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CLIP = REPO / "assets" / "samples" / "traffic_street_fixedcam.mp4"
RESULTS = REPO / "benchmarks" / "results" / "ray_scale.json"

logger = logging.getLogger("ray_scale")


class FixedBoxes:
    """A detector that costs nothing: two fixed boxes per frame, class 0."""

    names = ["car"]

    def detect_batch(self, images):  # noqa: ANN001, ANN201
        out = []
        for image in images:
            h, w = image.shape[:2]
            out.append(sv.Detections(xyxy=np.array([[0.1 * w, 0.2 * h, 0.3 * w, 0.5 * h],
                                                    [0.6 * w, 0.4 * h, 0.8 * w, 0.7 * h]], np.float32),
                                     confidence=np.array([0.9, 0.8], np.float32), class_id=np.array([0, 0])))
        return out


def make_clip(folder: Path, frames: int, width: int) -> tuple[int, int]:
    """The first ``frames`` frames of the sample clip, ``width`` px wide, as PNGs in ``folder``."""
    import cv2

    from app.sources import open_source

    folder.mkdir(parents=True, exist_ok=True)
    shape = (0, 0)
    for frame in open_source(str(CLIP)):
        if frame.index >= frames:
            break
        h, w = frame.image.shape[:2]
        image = cv2.resize(frame.image, (width, round(h * width / w / 2) * 2), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(folder / f"{frame.index:04d}.png"), image)
        shape = image.shape[:2]
    return shape


def cpu_busy_s() -> float:
    """Busy CPU seconds of the whole machine since boot (``/proc/stat``: all but idle and iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def cameras_file(folder: Path, n: int, tmp: Path) -> object:
    from app.cameras import parse_cameras

    line = {"name": "mid", "start": [0.5, 0], "end": [0.5, 1]}
    data = {"detector": {"max_batch": 8, "max_wait_ms": 5},
            "cameras": [{"id": f"cam{i}", "source": str(folder), "lines": [line]} for i in range(n)]}
    return parse_cameras(data, tmp / "cams.yaml")


# ------------------------------------------------------------------------------ measurements
def round_trip(image: np.ndarray, calls: int, ray_config: object) -> dict:
    import ray

    from app.batching import BatchingDetector
    from app.cameras import CamerasFile, DetectorSpec, OutputsSpec
    from app.ray_service.camera_actor import RemoteDetectorPool
    from app.ray_service.detector_actor import DetectorWorker

    local = BatchingDetector(FixedBoxes().detect_batch, max_batch=1, max_wait_ms=0)
    file = CamerasFile(Path("/bench.yaml"), DetectorSpec(max_batch=1, max_wait_ms=0), OutputsSpec(), ())
    actor = ray.remote(DetectorWorker).options(num_cpus=0.5, max_concurrency=4).remote("d", file, FixedBoxes)
    pool = RemoteDetectorPool("bench", [("d", actor)], ray_config)
    out = {}
    try:
        for name, call in (("in_process", local.detect), ("ray", pool.detect)):
            for _ in range(20):  # warm-up
                call(image)
            times = []
            for _ in range(calls):
                t0 = time.perf_counter()
                call(image)
                times.append(time.perf_counter() - t0)
            out[name] = {"median_ms": 1e3 * statistics.median(times),
                         "p95_ms": 1e3 * float(np.percentile(times, 95))}
    finally:
        local.close()
        ray.kill(actor)
    out["overhead_ms"] = out["ray"]["median_ms"] - out["in_process"]["median_ms"]
    return out


def service_run(kind: str, folder: Path, n: int, frames: int, ray_config: object) -> dict:
    from app.ray_service import RayService
    from app.service import Service

    with tempfile.TemporaryDirectory() as tmp:
        cams = cameras_file(folder, n, Path(tmp))
        if kind == "in_process":
            service = Service(cams, detector=FixedBoxes())
        else:
            service = RayService(cams, detector_factory=FixedBoxes, config=ray_config)
        try:
            t0 = time.perf_counter()
            service.start()
            while min(c["frames"] for c in service.status()["cameras"]) < 1:  # every camera is up
                time.sleep(0.05)
            cpu1, t1 = cpu_busy_s(), time.perf_counter()
            started = sum(c["frames"] for c in service.status()["cameras"])
            if not service.wait(timeout_s=1200):
                raise RuntimeError(f"{kind} with {n} cameras did not finish in 20 minutes")
            t2, cpu2 = time.perf_counter(), cpu_busy_s()
            status = service.status()
        finally:
            service.stop()
    done = sum(c["frames"] for c in status["cameras"])
    if done != n * frames:
        raise RuntimeError(f"{kind}: {done} camera-frames processed, expected {n * frames}: {status}")
    steady = done - started
    return {"startup_s": t1 - t0, "steady_s": t2 - t1, "camera_frames": done, "fps": steady / (t2 - t1),
            "ms_per_frame": 1e3 * (t2 - t1) / steady, "cpu_ms_per_frame": 1e3 * (cpu2 - cpu1) / steady}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    import ray

    from app.ray_service import RayServiceConfig

    tmp = Path(tempfile.mkdtemp(prefix="ray-scale-"))
    folder = tmp / "clip"
    shape = make_clip(folder, args.frames, args.width)
    import cv2

    image = cv2.imread(str(sorted(folder.iterdir())[0]))
    # every actor fits on the machine's CPUs: the scheduler never waits for a free CPU
    config = RayServiceConfig(detector_num_cpus=0.5, camera_num_cpus=min(0.25, (args.cpus - 0.5) / max(args.cameras)),
                              detector_max_concurrency=max(64, 2 * max(args.cameras)))
    ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level="WARNING")
    try:
        trip = round_trip(image, args.calls, config)
        runs: dict[str, dict[str, list[dict]]] = {}
        for n in args.cameras:
            for repeat in range(args.repeats):
                order = ("in_process", "ray") if repeat % 2 == 0 else ("ray", "in_process")
                for kind in order:
                    result = service_run(kind, folder, n, args.frames, config)
                    runs.setdefault(str(n), {}).setdefault(kind, []).append(result)
                    logger.warning("%s, %d cameras, repeat %d: %.1f camera-frames/s, %.2f CPU ms/frame", kind, n,
                                   repeat + 1, result["fps"], result["cpu_ms_per_frame"])
    finally:
        ray.shutdown()

    def median(results: list[dict], key: str) -> float:
        return statistics.median(r[key] for r in results)

    keys = ("startup_s", "steady_s", "fps", "ms_per_frame", "cpu_ms_per_frame")
    summary = {}
    for n, kinds in runs.items():
        summary[n] = {kind: {key: median(results, key) for key in keys} for kind, results in kinds.items()}
        ip, on_ray = summary[n]["in_process"], summary[n]["ray"]
        summary[n]["wall_overhead_ms_per_frame"] = on_ray["ms_per_frame"] - ip["ms_per_frame"]
        summary[n]["cpu_overhead_ms_per_frame"] = on_ray["cpu_ms_per_frame"] - ip["cpu_ms_per_frame"]

    print(f"\nframe {shape[1]}x{shape[0]}, {args.frames} frames per camera, {args.repeats} repeats (medians), "
          f"{args.cpus} CPUs, fake detector (no inference)\n")
    print(f"detector round trip, one frame: in-process {trip['in_process']['median_ms']:.2f} ms, "
          f"Ray {trip['ray']['median_ms']:.2f} ms (p95 {trip['ray']['p95_ms']:.2f}): "
          f"+{trip['overhead_ms']:.2f} ms per frame\n")
    header = (f"{'cameras':>7} | {'service':>10} | {'start-up s':>10} | {'camera-frames/s':>15} | {'wall ms/frame':>13} | "
              f"{'CPU ms/frame':>12} | {'Ray +wall ms':>12} | {'Ray +CPU ms':>11}")
    print(header)
    print("-" * len(header))
    for n, row in summary.items():
        for kind in ("in_process", "ray"):
            extra = (f"{row['wall_overhead_ms_per_frame']:>12.2f} | {row['cpu_overhead_ms_per_frame']:>11.2f}"
                     if kind == "ray" else f"{'':>12} | {'':>11}")
            print(f"{n:>7} | {kind:>10} | {row[kind]['startup_s']:>10.2f} | {row[kind]['fps']:>15.1f} | "
                  f"{row[kind]['ms_per_frame']:>13.2f} | {row[kind]['cpu_ms_per_frame']:>12.2f} | {extra}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "machine": {"platform": platform.platform(), "cpus": args.cpus, "python": platform.python_version(),
                    "ray": ray.__version__},
        "frame_hw": list(shape), "frames_per_camera": args.frames, "repeats": args.repeats,
        "round_trip": trip, "runs": runs, "summary": summary}, indent=2) + "\n")
    print(f"\nwrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
