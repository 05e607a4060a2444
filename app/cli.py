"""Command-line entry point ``yolov7-track``.

``yolov7-track SOURCE [options]`` runs the capture -> infer -> render pipeline on SOURCE;
``yolov7-track COMMAND ...`` runs a subcommand (``convert``, and later ``train``, ``val``, ``gui``).
Errors that come from bad input are reported as one line on stderr with a non-zero exit status.

The main command, in short::

    yolov7-track video.mp4 --line 0,300,640,300,road --output out.mp4 --events events.sqlite

``--line x1,y1,x2,y2[,name]`` takes pixels of the source frame; when all four numbers lie in
[0, 1] they are fractions of the frame width and height instead (``--line 0,0.5,1,0.5`` is a
horizontal line through the middle of any frame). Objects crossing from the right-hand side of
``(x1, y1) -> (x2, y2)`` (as seen on screen) to its left-hand side count IN; the annotated video
shows an arrow marked IN. Exit status: 0 when the source was processed to its end, 1 on an
error, 2 on a usage error, 130 when stopped with Ctrl-C (files are finalized and the counts are
printed all the same).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from yolov7_track.arg_types import positive_int, unit_float
from yolov7_track.errors import Yolov7TrackError

if TYPE_CHECKING:
    from app.counting import CountingConfig, LineSpec
    from app.pipeline import FrameResult, Pipeline, PipelineReport

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

PROG = "yolov7-track"
DEFAULT_WEIGHTS = "yolov7-tiny-traffic"  # detector.bundled.DEFAULT_MODEL (not imported: torch is slow to load)
VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi")
# detector.precision.PRECISIONS / BACKENDS (not imported: torch is slow to load; a test keeps them equal)
PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")
BACKEND_CHOICES = ("torch", "onnxruntime", "openvino")


class UserInputError(Yolov7TrackError):
    """Bad input from the user (file, URL, option); reported as one line without a traceback."""


class _OneLineArgumentParser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (``prog: error: ...``), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# ------------------------------------------------------------------------------ convert
def _convert_parser() -> argparse.ArgumentParser:
    parser = _OneLineArgumentParser(
        prog=f"{PROG} convert",
        description="Convert an official YOLOv7 release checkpoint (.pt) to yolov7-track's "
        "safetensors format (weights + JSON metadata). The .pt file is read by a restricted "
        "unpickler: no code in it is executed.",
    )
    parser.add_argument("source", help="official checkpoint (.pt), or a registry name such as yolov7-tiny")
    parser.add_argument("output", help="output path (.safetensors)")
    parser.add_argument(
        "--fp32", action="store_true", help="store float32 weights (default: float16, as released)"
    )
    return parser


def _run_convert(argv: Sequence[str]) -> int:
    args = _convert_parser().parse_args(argv)
    from detector import load_model, save_model

    model = load_model(args.source, device="cpu", fuse=False)
    path = save_model(model, args.output, half=not args.fp32)
    logger.info("wrote %s", path)
    print(f"wrote {path}")
    return EXIT_OK


# ------------------------------------------------------------------------------ track (main)
def parse_line_spec(text: str, default_name: str) -> tuple[LineSpec, bool]:
    """Parse ``x1,y1,x2,y2[,name]`` into a line and whether it is normalized.

    The line is normalized (fractions of width and height) when all four coordinates lie in
    [0, 1], in pixels otherwise.

    Raises:
        UserInputError: not four finite numbers (and an optional non-empty name), or a line of
            zero length; the message quotes the spec.
    """
    from app.counting import LineSpec

    parts = [part.strip() for part in text.split(",")]
    hint = "expected x1,y1,x2,y2[,name], e.g. --line 0,300,640,300,road or --line 0,0.5,1,0.5"
    if len(parts) not in (4, 5):
        raise UserInputError(f"--line {text!r}: {hint}")
    try:
        x1, y1, x2, y2 = (float(part) for part in parts[:4])
    except ValueError:
        raise UserInputError(f"--line {text!r}: coordinates must be numbers; {hint}") from None
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise UserInputError(f"--line {text!r}: coordinates must be finite numbers")
    name = parts[4] if len(parts) == 5 else default_name
    if not name:
        raise UserInputError(f"--line {text!r}: the name after the fourth comma is empty")
    if (x1, y1) == (x2, y2):
        raise UserInputError(f"--line {text!r}: start and end are the same point")
    if min(x1, y1, x2, y2) < 0:
        raise UserInputError(f"--line {text!r}: coordinates must be >= 0 (pixels, or fractions in [0, 1])")
    normalized = max(x1, y1, x2, y2) <= 1.0
    return LineSpec(name=name, start=(x1, y1), end=(x2, y2)), normalized


def _line_arg(text: str) -> str:
    """argparse type: validate early so a malformed spec is a usage error naming the spec."""
    try:
        parse_line_spec(text, "line")
    except UserInputError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix(f"--line {text!r}: ")) from None
    return text


def _track_parser() -> argparse.ArgumentParser:
    parser = _OneLineArgumentParser(
        prog=PROG,
        description="Detect, track and count objects in a video file, stream, webcam or image "
        "folder; write an annotated video and count events.",
        epilog="--line coordinates are pixels of the source frame, or fractions of its width and "
        "height when all four lie in [0, 1]. Objects crossing from the right-hand side of "
        "(x1,y1)->(x2,y2), as seen on screen, to its left-hand side count IN. "
        f"Subcommands: {PROG} convert --help. Ctrl-C stops cleanly (files are finalized); press it "
        "twice to abort.",
    )
    parser.add_argument("source", help="video file, image folder, rtsp/rtmp/http URL, or webcam index (0)")
    parser.add_argument("--weights", default=DEFAULT_WEIGHTS,
                        help=f"model name or .pt/.safetensors path (default {DEFAULT_WEIGHTS}: the bundled "
                        "traffic model, offline; official names such as yolov7-tiny are downloaded once)")
    parser.add_argument("--line", action="append", default=[], type=_line_arg, metavar="x1,y1,x2,y2[,name]",
                        help="counting line (repeatable); pixels, or fractions when all four are in [0, 1]")
    parser.add_argument("--zones", type=Path, metavar="FILE", help="lines and zones from a JSON or YAML file")
    parser.add_argument("--classes", nargs="+", metavar="CLASS",
                        help="keep only these classes: names (person car) or ids (0 2)")
    parser.add_argument("--conf", type=unit_float, default=0.25, help="detection confidence threshold (0.25)")
    parser.add_argument("--iou", type=unit_float, default=0.45, help="NMS IoU threshold (0.45)")
    parser.add_argument("--agnostic-nms", action="store_true",
                        help="one NMS over all classes: a vehicle seen as both car and truck gives one "
                        "box (one track, one count) instead of two")
    parser.add_argument("--img-size", type=positive_int, default=None,
                        help="detector input size in pixels, a multiple of 32 (default: the model's, 640)")
    parser.add_argument("--tracker", default="bytetrack", metavar="NAME",
                        help="tracker: bytetrack (default) or sort (tracker/registry.py)")
    parser.add_argument("--tracker-param", action="append", default=[], metavar="KEY=VALUE",
                        help="a tracker parameter, repeatable: bytetrack track_thresh, match_thresh, "
                        "track_buffer, class_aware; sort max_age, min_hits, iou_threshold, class_aware")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (auto)")
    parser.add_argument("--precision", choices=PRECISION_CHOICES, default="auto",
                        help="model compute precision: auto picks the fastest one proven accurate here "
                        "(bf16 on CPUs with AVX512-BF16/AMX, fp16 on CUDA, else fp32) and logs it")
    parser.add_argument("--backend", choices=BACKEND_CHOICES, default="torch",
                        help="inference runtime: torch, or onnxruntime / openvino (optional extras; "
                        "the weights are exported once and cached)")
    parser.add_argument("--output", type=Path, metavar="OUT.mp4", help="write the annotated video here")
    parser.add_argument("--events", type=Path, action="append", default=[], metavar="FILE",
                        help="write count events as they happen to FILE.csv, .jsonl or .sqlite (repeatable)")
    parser.add_argument("--events-mode", choices=("append", "new", "overwrite"), default="append",
                        help="an events file that already exists: append to it after checking it holds "
                        "our events (default), refuse it (new), or empty it first (overwrite)")
    parser.add_argument("--report", type=Path, metavar="FILE.json", help="write the final report as JSON")
    parser.add_argument("--show", action="store_true", help="show the annotated frames in a window (q to stop)")
    parser.add_argument("--max-frames", type=positive_int, default=None, help="stop after this many frames")
    parser.add_argument("--vid-stride", type=positive_int, default=1, metavar="N",
                        help="detect every N-th frame only (1: all); tracking and counting keep the true "
                        "timestamps, and a crossing needs about 4*N frames to count")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="debug logging, including one line per count event")
    return parser


@dataclass(frozen=True)
class _Counting:
    configs: tuple[CountingConfig, ...]
    names: tuple[str, ...]


def _counting_from_args(line_specs: Sequence[str], zones_file: Path | None) -> _Counting:
    """Lines from ``--line`` (pixel and normalized kept apart) plus the zone file, names unique."""
    from app.counting import CountingConfig, load_counting_config

    pixel, normalized = [], []
    for i, text in enumerate(line_specs, start=1):
        spec, is_normalized = parse_line_spec(text, f"line{i}")
        (normalized if is_normalized else pixel).append(spec)
    configs = []
    if pixel:
        configs.append(CountingConfig(lines=tuple(pixel), normalized=False))
    if normalized:
        configs.append(CountingConfig(lines=tuple(normalized), normalized=True))
    if zones_file is not None:
        configs.append(load_counting_config(zones_file))
    names: list[str] = []
    for config in configs:
        for spec in (*config.lines, *config.zones):
            if spec.name in names:
                raise UserInputError(
                    f"line/zone name {spec.name!r} is used twice (--line names and the zone file "
                    "must be unique); name lines with --line x1,y1,x2,y2,NAME"
                )
            names.append(spec.name)
    return _Counting(tuple(configs), tuple(names))


def resolve_classes(tokens: Sequence[str] | None, names: Sequence[str]) -> tuple[int, ...] | None:
    """Class ids from ``--classes`` tokens (:func:`app.assembly.resolve_classes`).

    Raises:
        app.assembly.ClassFilterError: an unknown name or an id the model does not have.
    """
    from app.assembly import resolve_classes as resolve

    return resolve(tokens, names, "--classes")


def _check_output_paths(args: argparse.Namespace) -> None:
    """Extensions, then :func:`app.paths.check_run_paths` (no output is the input or another
    output; every output folder is writable), then the display for ``--show``, all before
    anything is opened or written."""
    from app.paths import RunOutput, check_run_paths

    if args.output is not None and args.output.suffix.lower() not in VIDEO_SUFFIXES:
        raise UserInputError(f"--output {args.output}: use a video file name ending in {', '.join(VIDEO_SUFFIXES)}")
    supported = (".csv", ".jsonl", ".ndjson", ".sqlite", ".sqlite3", ".db")
    for path in args.events:
        if path.suffix.lower() not in supported:
            raise UserInputError(f"--events {path}: unsupported extension {path.suffix!r}; use one of {', '.join(supported)}")
    outputs = [RunOutput("--output", args.output, replaced=True)] if args.output is not None else []
    outputs += [RunOutput("--events", path) for path in args.events]
    if args.report is not None:
        outputs.append(RunOutput("--report", args.report, replaced=True))
    source = Path(args.source)
    check_run_paths(source if source.exists() else None, outputs)
    if args.show:
        from app.display import display_problem

        problem = display_problem()
        if problem is not None:
            raise UserInputError(f"--show cannot open a window: {problem}; use --output instead")


def _load_detector(args: argparse.Namespace) -> Any:
    from app.assembly import build_detector
    from detector import DetectorConfig

    config = DetectorConfig(img_size=args.img_size, conf_thres=args.conf, iou_thres=args.iou,
                            device=args.device, agnostic_nms=args.agnostic_nms,
                            precision=args.precision, backend=args.backend)
    return build_detector(args.weights, config, lambda names: resolve_classes(args.classes, names))


def _tracker_params(args: argparse.Namespace) -> dict[str, Any]:
    """``--tracker`` and ``--tracker-param`` checked against the registry (before anything loads)."""
    from tracker.registry import parse_tracker_params, tracker_parameters

    tracker_parameters(args.tracker)  # an unknown tracker is refused here, even without parameters
    return parse_tracker_params(args.tracker, args.tracker_param)


def _open_source(spec: str, vid_stride: int = 1) -> Any:
    from app.sources import SourceNotFoundError, open_source
    from app.assembly import pace_source
    from app.sources.stride import MAX_VID_STRIDE

    if vid_stride > MAX_VID_STRIDE:
        raise UserInputError(f"--vid-stride {vid_stride}: at most {MAX_VID_STRIDE}")
    try:
        source = open_source(spec)
    except SourceNotFoundError as exc:
        if spec.isidentifier():  # a bare word: perhaps a mistyped subcommand
            raise UserInputError(f"{exc} (commands: {', '.join(sorted(SUBCOMMANDS))})") from exc
        raise
    return pace_source(source, vid_stride)


def _open_sinks(paths: Sequence[Path], mode: str) -> list[Any]:
    from app.sinks import open_event_sink

    sinks: list[Any] = []
    try:
        for path in paths:
            sinks.append(open_event_sink(path, mode=mode))
    except BaseException:
        for sink in sinks:
            sink.close()
        raise
    return sinks


class _Progress:
    """tqdm bar over output frames with running totals; redraws at most a few times a second."""

    def __init__(self, total: int | None, enabled: bool, source_name: str) -> None:
        self._bar = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="frame", desc=Path(source_name).name[:30] or "frames",
                             dynamic_ncols=True, file=sys.stderr)
        self._last_postfix = 0.0

    def update(self, result: FrameResult) -> None:
        if self._bar is None:
            return
        self._bar.update(1)
        now = time.monotonic()
        if now - self._last_postfix >= 0.5:
            self._last_postfix = now
            parts = [f"{c.name} {c.in_count}/{c.out_count}" for c in result.lines]
            parts += [f"{z.name} {z.occupancy}" for z in result.zones]
            if result.stats.frames_dropped:
                parts.append(f"dropped {result.stats.frames_dropped}")
            self._bar.set_postfix_str(", ".join(parts), refresh=False)

    @property
    def enabled(self) -> bool:
        return self._bar is not None

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _logging_around(progress: _Progress) -> contextlib.AbstractContextManager[Any]:
    """Log lines printed above the progress bar instead of through it."""
    if not progress.enabled:
        return contextlib.nullcontext()
    from tqdm.contrib.logging import logging_redirect_tqdm

    return logging_redirect_tqdm()


class _Window:
    """``--show``: a frame sink (:class:`app.frame_sinks.FrameSink`) showing the annotated
    frames in an OpenCV window that lives in a child process (:class:`app.display.WindowProcess`:
    a display lost mid-run closes the window, not the run); q/Esc in the window calls
    ``on_quit`` (stops the run)."""

    TITLE = PROG

    def __init__(self, on_quit: Callable[[], None]) -> None:
        from app.display import WindowProcess

        self._on_quit = on_quit
        self._window = WindowProcess(self.TITLE)
        self.path = "--show window"

    def write(self, image_bgr: Any, frame: Any) -> None:
        if self._window.stop_requested:
            self._on_quit()
        self._window.show(image_bgr)

    def close(self) -> None:
        self._window.close()


def format_counts(report: PipelineReport) -> str:
    """The counts table printed at the end: per line IN/OUT, per zone enter/exit/occupancy,
    each broken down by class."""
    rows: list[tuple[str, ...]] = [("name", "class", "in", "out")]
    for line in report.lines:
        rows.append((line.name, "all", str(line.in_count), str(line.out_count)))
        for class_name, (n_in, n_out) in sorted(line.by_class.items()):
            rows.append(("", class_name, str(n_in), str(n_out)))
    table = [_format_rows(rows)] if report.lines else []
    if report.zones:
        zone_rows: list[tuple[str, ...]] = [("zone", "class", "enter", "exit", "inside")]
        for zone in report.zones:
            zone_rows.append((zone.name, "all", str(zone.enter_count), str(zone.exit_count), str(zone.occupancy)))
            classes = sorted(set(zone.enter_by_class) | set(zone.exit_by_class) | set(zone.occupancy_by_class))
            for class_name in classes:
                zone_rows.append(("", class_name, str(zone.enter_by_class.get(class_name, 0)),
                                  str(zone.exit_by_class.get(class_name, 0)),
                                  str(zone.occupancy_by_class.get(class_name, 0))))
        table.append(_format_rows(zone_rows))
    if not table:
        return "no lines or zones: nothing counted (use --line or --zones)"
    return "\n\n".join(table)


def _format_rows(rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    out = []
    for row in rows:
        cells = [cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)


def _configure_logging(verbose: bool) -> None:
    """Warnings only (the results are printed), or DEBUG with ``-v``; wall-clock times to the
    millisecond."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    if verbose:  # third-party debug output is noise here
        for name in ("PIL", "matplotlib", "libav"):
            logging.getLogger(name).setLevel(logging.INFO)


#: Signals that stop a run cleanly: Ctrl-C; ``docker stop``, ``systemctl stop`` and ``kill``
#: (SIGTERM); a closed terminal or ssh session (SIGHUP).
STOP_SIGNALS: tuple[int, ...] = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


class _StopSignals:
    """While installed (main thread only): the first of :data:`STOP_SIGNALS` stops the pipeline
    cleanly (``stop()``: queued frames are written out, the events file and the video are
    finalized, the report is written); a second one raises ``KeyboardInterrupt``, which still
    finalizes the files but skips the frames not yet output. ``received`` is the first signal's
    number, or ``None``."""

    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopSignals:
        if _in_main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.getsignal(signum)
                signal.signal(signum, self._on_signal)
        return self

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signum
        name = signal.Signals(signum).name
        logger.warning("%s received: stopping (finishing the files); send it again to abort", name)
        with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone
            print(f"\n{PROG}: {name}: stopping... (again to abort)", file=sys.stderr)
        self._pipeline.stop()

    def __exit__(self, *exc_info: Any) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _run_track(argv: Sequence[str]) -> int:
    args = _track_parser().parse_args(_attach_dash_values(argv, ("--line",)))
    _configure_logging(args.verbose)
    counting = _counting_from_args(args.line, args.zones)
    tracker_params = _tracker_params(args)
    _check_output_paths(args)

    from app.assembly import TrackerChoice, build_pipeline
    from app.pipeline import PipelineConfig

    source = _open_source(args.source, args.vid_stride)
    sinks: list[Any] = []
    window: _Window | None = None
    try:
        detector = _load_detector(args)
        sinks = _open_sinks(args.events, args.events_mode)
        config = PipelineConfig(
            video_output=args.output,
            render=bool(args.output is not None or args.show),
            max_frames=args.max_frames,
        )
        stop = threading.Event()  # q in the --show window
        window = _Window(stop.set) if args.show else None
        pipeline = build_pipeline(source, detector, TrackerChoice(args.tracker, tracker_params),
                                  counting=counting.configs, event_sinks=sinks, config=config,
                                  class_names=detector.names, frame_sinks=[window] if window is not None else [])
    except BaseException:
        for resource in (*sinks, source, *([window] if window is not None else [])):
            resource.close()
        raise
    # after every check that can refuse the run, so that a refusal stays one line on stderr
    print(f"{PROG}: {args.weights} on {detector.device}, {detector.backend} {detector.precision}"
          f"{' (--precision auto)' if args.precision == 'auto' else ''}, img-size {detector.img_size}",
          file=sys.stderr)
    total = getattr(source, "frame_count", None)
    if total is not None and args.max_frames is not None:
        total = min(total, args.max_frames)
    progress = _Progress(total, enabled=not args.no_progress, source_name=source.name)
    def on_result(result: FrameResult) -> None:
        progress.update(result)
        if stop.is_set():
            pipeline.stop()

    interrupted = False
    stop_signals = _StopSignals(pipeline)
    try:
        with stop_signals, _logging_around(progress):
            pipeline.run(on_result)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        progress.close()
        if pipeline.report is not None:
            _write_report(pipeline.report, args.report, counting_given=bool(counting.names))
    # Ctrl-C is the usual way to end a live stream, but the exit status says it happened
    # (130, or 128 + the signal's number for SIGTERM/SIGHUP); q in the --show window is an
    # ordinary end.
    if stop_signals.received is not None:
        return 128 + stop_signals.received
    if interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILURE if pipeline.report is not None and _output_failures(pipeline.report) else EXIT_OK


def _output_failures(report: PipelineReport) -> list[str]:
    """One line per output that failed while counting went on (an events file, the video)."""
    failures = [f"events: {line}" for line in getattr(report, "sink_errors", ()) or ()]
    video_error = getattr(report, "video_error", None)
    if video_error:
        failures.append(f"video: {video_error}")
    return failures


def _write_report(report: PipelineReport, json_path: Path | None, counting_given: bool) -> None:
    """The JSON report first (atomically: a complete file or none), then the counts and summary
    on stdout, then one line on stderr per output that failed. A terminal that is gone (after
    SIGHUP) does not stop the JSON report from being written."""
    if json_path is not None:
        _write_json_atomically(json_path, report.to_dict())
    counts = format_counts(report)
    if counting_given and not report.lines and not report.zones:
        counts = "no frame was processed: nothing counted"
    try:
        print(counts)
        print(report.summary())
    except OSError as exc:  # stdout closed (terminal gone): the files are what matters
        logger.warning("cannot print the counts: %s", exc)
    for failure in _output_failures(report):
        with contextlib.suppress(OSError):
            print(f"{PROG}: error: {failure}", file=sys.stderr)


def _write_json_atomically(path: Path, data: Any) -> None:
    """Write ``path`` through a temporary sibling renamed onto it: never a half-written file.

    Raises:
        UserInputError: the file cannot be written (one line naming it).
    """
    from app.paths import describe_os_error

    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        os.replace(temporary, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise UserInputError(f"--report {path}: cannot write it: {describe_os_error(exc)}") from exc


# ------------------------------------------------------------------------------ dispatch
def _run_train(argv: Sequence[str]) -> int:
    from training.cli import train_main  # imported on use: the training stack is not needed to count

    return train_main(list(argv))


def _run_val(argv: Sequence[str]) -> int:
    from training.cli import val_main

    return val_main(list(argv))


def _run_soup(argv: Sequence[str]) -> int:
    from training.cli import soup_main

    return soup_main(list(argv))


def _run_gui(argv: Sequence[str]) -> int:
    from app.gui import main as gui_main  # imported on use: Qt is only loaded for the GUI

    return gui_main(list(argv))


def _run_serve(argv: Sequence[str]) -> int:
    from app.serve_cmd import run_serve  # imported on use: the service loads the detector and outputs

    return run_serve(argv)


def _run_export(argv: Sequence[str]) -> int:
    from app.export_cmd import run_export  # imported on use: torch and the export extras load only here

    return run_export(argv)


def _run_report(argv: Sequence[str]) -> int:
    from app.report import report_main  # imported on use, like the other subcommands

    return report_main(list(argv))


SUBCOMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "convert": _run_convert,
    "export": _run_export,
    "serve": _run_serve,
    "report": _run_report,
    "train": _run_train,
    "val": _run_val,
    "soup": _run_soup,
    "gui": _run_gui,
}


def _known_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean 'bad input' or an expected failure (unreadable file,
    unreachable camera, bad zone file, full disk): reported in one line, no traceback. Every
    error the project raises on purpose derives from :class:`Yolov7TrackError`."""
    return (Yolov7TrackError, FileNotFoundError)


def _describe_os_error(exc: OSError) -> str:
    """One line: the path(s) Python attached, then the reason (``Permission denied``...)."""
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    reason = exc.strerror or str(exc)
    return f"{' -> '.join(paths)}: {reason}" if paths else reason


def _attach_dash_values(argv: Sequence[str], options: Sequence[str]) -> list[str]:
    """``--line -1,0,5,5`` -> ``--line=-1,0,5,5``: argparse takes a value that starts with a
    dash for an option and says "expected one argument"; attached, the value reaches our own
    check, which explains what is wrong with it."""
    out: list[str] = []
    items = list(argv)
    i = 0
    while i < len(items):
        item = items[i]
        if item in options and i + 1 < len(items) and items[i + 1].startswith("-") and items[i + 1][1:2].isdigit():
            out.append(f"{item}={items[i + 1]}")
            i += 2
            continue
        out.append(item)
        i += 1
    return out


def _usage() -> str:
    names = ", ".join(sorted(SUBCOMMANDS))
    return (
        f"usage: {PROG} SOURCE [--weights NAME|PATH] [--line x1,y1,x2,y2[,name]]... [--zones FILE]\n"
        f"       [--classes ...] [--conf C] [--tracker bytetrack|sort] [--device D] [--output OUT.mp4]\n"
        f"       [--events FILE.csv|.jsonl|.sqlite] [--show] ...   (all options: {PROG} SOURCE --help)\n"
        f"   or: {PROG} COMMAND ...   commands: {names}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the process exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not argv:
        print(_usage(), file=sys.stderr)
        return EXIT_USAGE
    if argv[0] in ("-h", "--help") and len(argv) == 1:
        print(_usage())
        _track_parser().print_help()
        return EXIT_OK
    command = argv[0] if argv[0] in SUBCOMMANDS else None
    run = SUBCOMMANDS[command] if command else _run_track
    rest = argv[1:] if command else argv
    label = f"{PROG} {command}" if command else PROG
    try:
        return run(rest)
    except _known_errors() as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"{label}: error: {message}", file=sys.stderr)
        return EXIT_FAILURE
    except OSError as exc:  # a user path that cannot be read or written (full disk, permissions)
        logger.debug("%s failed", label, exc_info=exc)
        print(f"{label}: error: {_describe_os_error(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
