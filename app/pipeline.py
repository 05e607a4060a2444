"""The capture -> infer -> render pipeline: plain Python threads and bounded queues, no Qt.

Three stages, each in its own thread::

    capture thread        inference thread                       output stage (caller's thread)
    source -> [queue] ->  detector -> tracker -> lines/zones  -> [queue] ->  sinks -> render -> encode
             capture_queue_frames                               result_queue_frames

- **Files and folders** (``source.is_live`` false): every frame is processed; a full queue
  blocks the stage before it (back-pressure), so decoding never runs ahead of inference.
- **Live sources** (cameras, streams): the freshest frame wins. When the capture queue is full the
  oldest queued frame is dropped, and the inference stage always takes the newest queued frame,
  dropping the older ones; drops are logged and counted. The result queue never drops —
  it carries count events — so a slow output stage slows inference, which makes capture drop.
- The **output stage** runs in the thread that iterates :meth:`Pipeline.results` (a generator
  of :class:`FrameResult`): it writes each frame's events to the event sinks first (events reach
  the sinks as they happen, one frame after counting at most a queue's length later), then draws
  the frame (:mod:`app.render`) and encodes it (:mod:`app.video_writer`). The CLI iterates in its
  main thread; the GUI wraps the generator in a worker thread (cooperative stop, as
  superqt's generator workers do).

Shutdown. :meth:`Pipeline.stop` (thread-safe; also from a SIGINT handler) stops capture, lets
the frame being inferred finish, discards frames not yet inferred, and lets the output stage
write out everything already inferred before the generator ends. Whatever ends the run — the
end of the source, ``stop()``, ``KeyboardInterrupt``, an exception in any stage, or the consumer
closing the generator — the zones report exits of the objects still inside
(:meth:`CountingZone.finish`), the sinks and the video file are closed (finalized), the source is
closed, and a :class:`PipelineReport` is built (``Pipeline.report``) and logged. An exception
raised in the capture or inference thread is re-raised, unchanged, by the generator in the
caller's thread after the frames already inferred have been written out.

Timestamps. Trackers need strictly increasing timestamps and the counting engine increasing
frame indices. A source that breaks this (broken PTS in a file, a stream whose clock restarts
after a reconnect) has its values repaired (see :class:`_MonotonicClock`), with a warning, and
the repairs are counted in :class:`PipelineStats`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import supervision as sv

from app.counting import (
    DEFAULT_MAX_ABSENT_S,
    CountEvent,
    CountingConfig,
    CountingLine,
    CountingZone,
    LineRules,
    ZoneRules,
)
from app.counting.engine import CountingEngine, CountingSetupError, LineCounts, ZoneCounts
from app.counting.events import wall_time_iso
from app.frames import Frame, FrameSource
from app.render import FrameRenderer
from app.sinks import EventSinkError
from app.frame_sinks import FrameSink, VideoFileSink, draws_counting
from app.video_writer import VideoWriterConfig

from yolov7_track.checks import require_int, require_positive
from yolov7_track.errors import Yolov7TrackError

__all__ = [
    "STAGES",
    "EventSinkLike",
    "FrameResult",
    "LineCounts",
    "Pipeline",
    "PipelineConfig",
    "PipelineConfigError",
    "PipelineError",
    "PipelineReport",
    "PipelineStats",
    "StageStats",
    "TrackerLike",
    "ZoneCounts",
]

logger = logging.getLogger(__name__)

#: Timed steps, in order: reading a frame, detector, tracker, lines and zones, writing events to
#: the sinks, drawing, encoding the annotated frame.
STAGES: tuple[str, ...] = ("capture", "detect", "track", "count", "sink", "render", "encode")

#: Status of a finished run (see :class:`PipelineReport`).
STATUS_FINISHED, STATUS_STOPPED, STATUS_INTERRUPTED, STATUS_FAILED = (
    "finished", "stopped", "interrupted", "failed",
)

# Sub-millisecond steps up to minutes, 2 % apart: percentiles of latencies to within 2 %.
_HIST_MIN_S = 1e-6
_HIST_RATIO = 1.02
_HIST_BINS = int(math.ceil(math.log(1e3 / _HIST_MIN_S) / math.log(_HIST_RATIO))) + 1

_END = object()  # queue sentinel: no more items from the stage before
_NO_TRACKS = sv.Detections.empty()  # the second drawing pass: lines and zones only


# ------------------------------------------------------------------------------------- errors
class PipelineError(Yolov7TrackError, RuntimeError):
    """Misuse of a :class:`Pipeline` (for example iterating it twice)."""


class PipelineConfigError(PipelineError, ValueError):
    """An invalid pipeline option (the message names it)."""


# ------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class PipelineConfig:
    """Options of a :class:`Pipeline`, validated at construction.

    Attributes:
        capture_queue_frames: frames decoded ahead of inference (>= 1).
        result_queue_frames: inferred frames waiting for the output stage (>= 1).
        drop_oldest: ``None`` follows the source (drop on live sources, never on files);
            ``True``/``False`` forces the policy.
        max_frames: stop after this many processed frames (``None``: all). Without drops
            (files, folders) these are the first ``max_frames`` frames of the source, and no
            more are read. With drop-oldest (live sources) frames dropped before inference do
            not count: the run ends once ``max_frames`` frames have been inferred (and are then
            output), however many were captured (issue 11).
        render: draw annotated frames; ``None`` draws only when ``video_output`` is set. The GUI
            and ``--show`` set it.
        video_output: write the annotated video here (``None``: no video).
        output_fps: frame rate of the video; ``None`` uses the source's nominal rate, or
            ``fallback_fps`` (with a warning) when the source has none.
        fallback_fps: see ``output_fps`` (> 0).
        line_rules, zone_rules: counting rules for every line and zone. The defaults are the
            robust rules made for tracker output (:meth:`LineRules.robust`: jitter about a line
            counts nothing).
        max_absent_s: seconds the counting engine keeps the state of an absent track (> 0).
        shutdown_timeout_s: how long shutdown waits for a stage thread to end (> 0); a thread
            still running then (a stuck camera driver) is left behind as a daemon and logged.
        poll_interval_s: how often blocked stages look at the stop flag (> 0).
        encoder: settings of the video encoder.
        camera_id: stamped on every event (``CountEvent.camera_id``); ``None`` leaves it empty.
        start_wall_time_s: files and folders: the wall time (seconds since 1970, UTC) of media
            time 0, so an event's ``wall_time`` is this plus its ``timestamp_s``. ``None``: the
            source's own start time when it reports one (``source.start_wall_time_s``, e.g. a
            container's ``creation_time``), else the moment the run started. Live sources
            always stamp the time each frame arrived.
    """

    capture_queue_frames: int = 4
    result_queue_frames: int = 4
    drop_oldest: bool | None = None
    max_frames: int | None = None
    render: bool | None = None
    video_output: Path | None = None
    output_fps: float | None = None
    fallback_fps: float = 25.0
    line_rules: LineRules = field(default_factory=LineRules.robust)
    zone_rules: ZoneRules = field(default_factory=ZoneRules.robust)
    max_absent_s: float = DEFAULT_MAX_ABSENT_S
    shutdown_timeout_s: float = 10.0
    poll_interval_s: float = 0.05
    encoder: VideoWriterConfig = field(default_factory=VideoWriterConfig)
    camera_id: str | None = None
    start_wall_time_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("capture_queue_frames", "result_queue_frames"):
            _require_int(getattr(self, name), name, minimum=1)
        if self.max_frames is not None:
            _require_int(self.max_frames, "max_frames", minimum=1)
        for name in ("drop_oldest", "render"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, bool):
                raise PipelineConfigError(f"{name} must be None, True or False, got {value!r}")
        if self.video_output is not None:
            object.__setattr__(self, "video_output", Path(self.video_output))
        if self.output_fps is not None:
            _require_positive(self.output_fps, "output_fps")
        for name in ("fallback_fps", "max_absent_s", "shutdown_timeout_s", "poll_interval_s"):
            _require_positive(getattr(self, name), name)
        if not isinstance(self.line_rules, LineRules):
            raise PipelineConfigError(f"line_rules must be a LineRules, got {type(self.line_rules).__name__}")
        if not isinstance(self.zone_rules, ZoneRules):
            raise PipelineConfigError(f"zone_rules must be a ZoneRules, got {type(self.zone_rules).__name__}")
        if self.camera_id is not None and (not isinstance(self.camera_id, str) or not self.camera_id.strip()):
            raise PipelineConfigError(f"camera_id must be a non-empty string or None, got {self.camera_id!r}")
        if self.start_wall_time_s is not None:
            _require_positive(self.start_wall_time_s, "start_wall_time_s")
        if not isinstance(self.encoder, VideoWriterConfig):
            raise PipelineConfigError(f"encoder must be a VideoWriterConfig, got {type(self.encoder).__name__}")


def _require_int(value: object, name: str, minimum: int) -> None:
    require_int(value, name, minimum, PipelineConfigError)


def _require_positive(value: object, name: str) -> None:
    require_positive(value, name, PipelineConfigError)


# ---------------------------------------------------------------------------- collaborators
class TrackerLike(Protocol):
    """What the pipeline needs from a tracker (``tracker.SORT``, ``tracker.ByteTrack``)."""

    def update(self, detections: sv.Detections, timestamp_s: float | None = None) -> sv.Detections: ...


class EventSinkLike(Protocol):
    """What the pipeline needs from an event sink (``app.sinks.open_event_sink``).

    Sinks are isolated from each other. ``write_many`` and ``close`` raise
    :class:`app.sinks.EventSinkError` when the sink fails (disk full, file removed...): the
    pipeline then logs that failure once, writes nothing more to that sink, counts the events it
    did not get and reports it in :attr:`PipelineReport.sink_errors`, while the other sinks get
    every event and counting goes on. Any other exception from a sink is a bug and ends the run.

    Optional members, read with ``getattr``: ``failure`` (``EventSinkError | None``, as
    :attr:`app.sinks.EventSink.failure`; must be cheap) is read once per output frame, so a
    failure in a sink's background thread is noticed within a frame, not at the next event;
    ``events_written`` (``int``) tells how much of a failed batch got through; ``path`` names the
    sink in messages.
    """

    def write_many(self, events: Sequence[CountEvent]) -> None: ...

    def close(self) -> None: ...


@dataclass
class _SinkState:
    """An event sink and what the pipeline knows of its health (see :class:`EventSinkLike`)."""

    sink: EventSinkLike
    error: BaseException | None = None
    events_lost: int = 0  # events of the run this sink did not get, once it failed

    @property
    def name(self) -> str:
        path = getattr(self.sink, "path", None)
        return str(path) if path is not None else repr(self.sink)

    def fail(self, error: BaseException) -> None:
        self.error = error
        logger.error("event sink failed: %s; the other sinks and counting go on", self._named(error))

    def describe(self) -> str:
        """One line for the report: file, error, events lost."""
        return f"{self._named(self.error)} ({self.events_lost} events not written to it)"

    def _named(self, error: BaseException | None) -> str:
        """The error's message, prefixed with the sink's name unless the message has it."""
        message = str(error)
        return message if self.name in message else f"{self.name}: {message}"


Detect = Callable[[np.ndarray], sv.Detections]


@dataclass(frozen=True)
class StageStats:
    """One timed step of the pipeline (see :data:`STAGES`).

    Attributes:
        name: the step.
        frames: frames it has handled.
        fps: its throughput, frames per second over the last ``window`` completions (0 before two).
        mean_ms, p50_ms, p95_ms: time it spends per frame (service time, not waiting), ms.
    """

    name: str
    frames: int
    fps: float
    mean_ms: float
    p50_ms: float
    p95_ms: float


@dataclass(frozen=True)
class PipelineStats:
    """A snapshot of the pipeline's counters, safe to read from any thread.

    Attributes:
        elapsed_s: wall time since the pipeline started.
        frames_in: frames received from the source.
        frames_inferred: frames through detector, tracker and counting.
        frames_out: frames through the output stage (events written, drawn, encoded).
        frames_dropped: frames dropped by drop-oldest (live sources) before inference.
        frames_discarded: frames decoded but discarded on stop (not inferred, no events).
        timestamp_repairs: frames whose timestamp or index went backwards and were repaired,
            by the source (``source.timestamp_repairs``, when it has one) or by the pipeline;
            each repair is logged (the first as a warning).
        reconnects: reconnections of the source (``source.stats``).
        corrupt_frames: frames the source reported as corrupt.
        connection_state: the source's state (``connecting``, ``connected``, ...).
        capture_queue_depth, result_queue_depth: items waiting now.
        fps: output frames per second over the last few seconds' completions.
        latency_p50_ms, latency_p95_ms: time from a frame's arrival from the source to the end
            of its output stage, over the whole run, ms.
        stages: per-step statistics in :data:`STAGES` order.
    """

    elapsed_s: float
    frames_in: int
    frames_inferred: int
    frames_out: int
    frames_dropped: int
    frames_discarded: int
    timestamp_repairs: int
    reconnects: int
    corrupt_frames: int
    connection_state: str
    capture_queue_depth: int
    result_queue_depth: int
    fps: float
    latency_p50_ms: float
    latency_p95_ms: float
    stages: tuple[StageStats, ...]

    def stage(self, name: str) -> StageStats:
        """The statistics of one step; ``KeyError`` for an unknown name."""
        for stats in self.stages:
            if stats.name == name:
                return stats
        raise KeyError(f"no stage {name!r}; stages: {', '.join(STAGES)}")


@dataclass(frozen=True)
class FrameResult:
    """What the pipeline yields per frame.

    Attributes:
        frame: the source frame (``image`` BGR ``(H, W, 3)`` uint8, index, ``timestamp_s``).
        detections: the detector's output for the frame (zero-area boxes removed).
        tracks: the tracker's output (``tracker_id`` set), the rows the counters saw.
        events: count events this frame produced (already written to the sinks).
        lines, zones: counts after this frame.
        annotated: the drawn frame (BGR, same shape as ``frame.image``) or ``None`` when the
            pipeline does not render; the tracks only when every frame sink asked for that
            (:func:`app.frame_sinks.draws_counting`).
        timestamp_s: the timestamp used for tracking and counting (after any repair), seconds.
        latency_s: seconds from the frame's arrival from the source to the end of its output.
        timings_ms: this frame's time in each step of :data:`STAGES`, ms.
        stats: pipeline statistics right after this frame.
    """

    frame: Frame
    detections: sv.Detections
    tracks: sv.Detections
    events: tuple[CountEvent, ...]
    lines: tuple[LineCounts, ...]
    zones: tuple[ZoneCounts, ...]
    annotated: np.ndarray | None
    timestamp_s: float
    latency_s: float
    timings_ms: Mapping[str, float]
    stats: PipelineStats


@dataclass(frozen=True)
class PipelineReport:
    """The "finished" report, produced however a run ends.

    Attributes:
        status: ``"finished"`` (the source ended or ``max_frames`` was reached), ``"stopped"``
            (:meth:`Pipeline.stop`, or the consumer closed the generator), ``"interrupted"``
            (``KeyboardInterrupt``) or ``"failed"`` (an exception; see ``error``).
        source: the source's printable name.
        stats: final statistics.
        lines, zones: final counts.
        events_total: events produced (including zone exits at the end of the stream).
        sink_errors: one line per event sink that failed during the run: its file, the error and
            how many events it did not get (see :class:`EventSinkLike`); empty when every sink
            got every event. The run goes on (and its status is unaffected) when a sink fails,
            so a caller that needs the events files complete checks this.
        video_output: path of the annotated video, if one was written: the requested path, or,
            after a video failure, the playable partial file that was kept
            (:func:`app.video_writer.partial_path_for`); ``None`` if there is none.
        video_frames: frames handed to the encoder (after a failure the partial file may hold
            fewer: it plays up to its last complete fragment).
        video_error: why the video could not be written (the run went on counting without it;
            the message says where the partial video is, if any), else ``None``.
        error: ``"<ExceptionType>: message"`` of the exception that ended the run, else ``None``.
    """

    status: str
    source: str
    stats: PipelineStats
    lines: tuple[LineCounts, ...]
    zones: tuple[ZoneCounts, ...]
    events_total: int
    sink_errors: tuple[str, ...]
    video_output: str | None
    video_frames: int
    video_error: str | None
    error: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation."""
        data = asdict(self)
        data["lines"] = [_jsonable_counts(asdict(line)) for line in self.lines]
        data["zones"] = [_jsonable_counts(asdict(zone)) for zone in self.zones]
        return data

    def summary(self) -> str:
        """A few human-readable lines: frames, per-stage speed, latency, drops, error."""
        s = self.stats
        lines = [
            f"{self.status}: {self.source}: {s.frames_in} frames in, {s.frames_out} out, "
            f"{s.frames_dropped} dropped, {s.frames_discarded} discarded at stop, "
            f"{s.reconnects} reconnects, {s.timestamp_repairs} timestamp repairs, "
            f"{self.events_total} events, {s.elapsed_s:.1f} s",
            f"latency p50 {s.latency_p50_ms:.1f} ms, p95 {s.latency_p95_ms:.1f} ms; per stage (ms/frame p50, fps): "
            + ", ".join(f"{st.name} {st.p50_ms:.1f} ({st.fps:.1f})" for st in s.stages if st.frames),
        ]
        if self.video_output:
            lines.append(f"video: {self.video_output} ({self.video_frames} frames)")
        if self.video_error:
            lines.append(f"video error: {self.video_error}")
        lines.extend(f"event sink failed: {line}" for line in self.sink_errors)
        if self.error:
            lines.append(f"error: {self.error}")
        return "\n".join(lines)


def _jsonable_counts(data: dict[str, Any]) -> dict[str, Any]:
    return {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in data.items()}


# ---------------------------------------------------------------------------- measurement
class _LogHistogram:
    """Durations in log-spaced bins (2 % wide) for whole-run percentiles in O(1) memory."""

    def __init__(self) -> None:
        self._bins = np.zeros(_HIST_BINS, dtype=np.int64)
        self.count = 0
        self.total_s = 0.0

    def add(self, seconds: float) -> None:
        index = 0 if seconds <= _HIST_MIN_S else int(math.log(seconds / _HIST_MIN_S) / math.log(_HIST_RATIO)) + 1
        self._bins[min(index, _HIST_BINS - 1)] += 1
        self.count += 1
        self.total_s += seconds

    def percentile_s(self, q: float) -> float:
        """Upper edge of the bin holding the ``q``-th percentile (0 <= q <= 100); 0 if empty."""
        if self.count == 0:
            return 0.0
        rank = max(1, math.ceil(q / 100.0 * self.count))
        index = int(np.searchsorted(np.cumsum(self._bins), rank))
        return _HIST_MIN_S * _HIST_RATIO ** index


class _Meter:
    """Completions and service times of one step; written by one thread, read by any."""

    def __init__(self, name: str, window: int = 64) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._hist = _LogHistogram()
        self._recent_done = deque(maxlen=window)

    def record(self, seconds: float, done_at: float) -> None:
        with self._lock:
            self._hist.add(seconds)
            self._recent_done.append(done_at)

    def snapshot(self) -> StageStats:
        with self._lock:
            n = self._hist.count
            recent = list(self._recent_done)
            mean_ms = 1e3 * self._hist.total_s / n if n else 0.0
            p50, p95 = self._hist.percentile_s(50), self._hist.percentile_s(95)
        fps = (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) >= 2 and recent[-1] > recent[0] else 0.0
        return StageStats(self.name, n, fps, mean_ms, 1e3 * p50 if n else 0.0, 1e3 * p95 if n else 0.0)


class _MonotonicClock:
    """Makes frame timestamps strictly increasing and indices increasing (trackers need both).

    A timestamp that is not after the previous one (or not finite) is moved to the previous one
    plus one frame period (``1 / fps``, 1 ms without a rate), and the same shift is applied to
    every later timestamp, so that a stream whose clock restarts (after a reconnect) keeps its
    real frame spacing instead of piling up on one instant. An index that does not increase
    becomes the previous one plus one. Each repaired frame is logged and counted.
    """

    _MIN_STEP_S = 1e-3

    def __init__(self, fps: float | None) -> None:
        self._step_s = 1.0 / fps if fps else self._MIN_STEP_S
        self._offset_s = 0.0
        self._last_ts: float | None = None
        self._last_index: int | None = None
        self._lock = threading.Lock()
        self.repairs = 0

    def next(self, frame: Frame) -> tuple[float, int]:
        raw_ts, index = float(frame.timestamp_s), int(frame.index)
        ts = raw_ts + self._offset_s
        repaired = False
        if self._last_ts is not None and not ts > self._last_ts:  # also catches NaN
            target = self._last_ts + self._step_s
            if math.isfinite(raw_ts):
                self._offset_s += target - ts
            ts, repaired = target, True
        elif not math.isfinite(ts):
            ts, repaired = 0.0, True
        if self._last_index is not None and index <= self._last_index:
            index, repaired = self._last_index + 1, True
        if repaired:
            with self._lock:
                self.repairs += 1
            log = logger.warning if self.repairs == 1 else logger.debug
            log(
                "%s: frame %d at %.6f s does not follow the previous frame (%s at %s s); using "
                "frame %d at %.6f s (counted as a timestamp repair)",
                frame.source, frame.index, raw_ts, self._last_index, self._last_ts, index, ts,
            )
        self._last_ts, self._last_index = ts, index
        return ts, index


# ---------------------------------------------------------------------------- queue items
@dataclass
class _Captured:
    frame: Frame
    arrived_at: float  # time.perf_counter() when the frame came out of the source
    capture_s: float
    arrived_wall_s: float = 0.0  # time.time() then: the wall time of a live frame


@dataclass
class _Inferred:
    captured: _Captured
    timestamp_s: float
    detections: sv.Detections
    tracks: sv.Detections
    events: tuple[CountEvent, ...]
    lines: tuple[LineCounts, ...]
    zones: tuple[ZoneCounts, ...]
    step_s: dict[str, float]


def _drop_degenerate(detections: sv.Detections) -> sv.Detections:
    """Remove boxes of zero width or height (a box clipped to the frame edge can be one);
    trackers reject them."""
    if len(detections) == 0:
        return detections
    xyxy = detections.xyxy
    keep = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
    return detections if bool(keep.all()) else detections[keep]


# ---------------------------------------------------------------------------- the pipeline
class Pipeline:
    """Capture, inference and output stages over one source (see the module docstring).

    Example::

        pipeline = Pipeline(source, detector, ByteTrack(frame_rate=source.fps or 30),
                            counting=CountingConfig(lines=(LineSpec("road", (0, 300), (640, 300)),)),
                            event_sinks=[open_event_sink("events.sqlite")],
                            config=PipelineConfig(video_output=Path("out.mp4")))
        for result in pipeline.results():      # or: report = pipeline.run()
            print(result.frame.index, result.lines[0].in_count)
        print(pipeline.report.summary())

    The pipeline takes ownership of ``source`` and ``event_sinks``: it closes them when the run
    ends. A pipeline runs once.

    Args:
        source: frames to process (:class:`app.frames.FrameSource`).
        detector: ``detector(image_bgr) -> sv.Detections`` (``(H, W, 3)`` uint8 BGR in, boxes
            in the frame's pixels out), e.g. :class:`detector.Detector`.
        tracker: ``tracker.update(detections, timestamp_s) -> sv.Detections`` with
            ``tracker_id``, e.g. :class:`tracker.ByteTrack`.
        counting: lines and zones (one :class:`CountingConfig` or several, e.g. command-line
            lines in pixels plus a zone file in normalized coordinates); built for the size of
            the first frame. Names must be unique across all of them.
        event_sinks: where count events are written as they happen.
        config: options.
        renderer: draws frames (default :class:`app.render.FrameRenderer`); used only when
            rendering is on.
        class_names: names for ``class_id`` when detections carry no ``data["class_name"]``.
        frame_sinks: outputs of the annotated frames (:class:`app.frame_sinks.FrameSink`), after
            the video file of ``config.video_output``; given sinks turn rendering on unless
            ``config.render`` says otherwise. The pipeline closes them at the end.

    Raises:
        PipelineConfigError: duplicate line/zone names or an invalid argument.
    """

    def __init__(
        self,
        source: FrameSource,
        detector: Detect,
        tracker: TrackerLike,
        counting: CountingConfig | Sequence[CountingConfig] = (),
        event_sinks: Sequence[EventSinkLike] = (),
        config: PipelineConfig | None = None,
        renderer: Any | None = None,
        class_names: Sequence[str] | Mapping[int, str] | None = None,
        frame_sinks: Sequence[FrameSink] = (),
    ) -> None:
        self.config = config if config is not None else PipelineConfig()
        if not callable(detector):
            raise PipelineConfigError(f"detector must be callable (image_bgr -> sv.Detections), got {detector!r}")
        if not callable(getattr(tracker, "update", None)):
            raise PipelineConfigError(f"tracker must have update(detections, timestamp_s), got {tracker!r}")
        try:
            self._counting = CountingEngine(
                counting, line_rules=self.config.line_rules, zone_rules=self.config.zone_rules,
                max_absent_s=self.config.max_absent_s, class_names=class_names,
            )
        except CountingSetupError as exc:
            raise PipelineConfigError(str(exc)) from exc
        self.source = source
        self.detector = detector
        self.tracker = tracker
        self._sinks = list(event_sinks)
        self._sink_state_list = [_SinkState(sink) for sink in self._sinks]
        self._class_names = class_names
        self._drop_oldest = source.is_live if self.config.drop_oldest is None else self.config.drop_oldest
        self._render = (
            self.config.render if self.config.render is not None
            else self.config.video_output is not None or bool(frame_sinks)
        )
        if self._render and renderer is None:
            renderer = FrameRenderer()
        self._renderer = renderer

        self._capture_q: queue.Queue = queue.Queue(maxsize=self.config.capture_queue_frames)
        self._result_q: queue.Queue = queue.Queue(maxsize=self.config.result_queue_frames)
        self._stop_event = threading.Event()  # stop reading; discard frames not yet inferred
        self._user_stop = threading.Event()
        self._abandon = threading.Event()  # shutdown gave up waiting: threads exit at once
        self._errors: list[BaseException] = []
        self._errors_lock = threading.Lock()
        self._counts_lock = threading.Lock()
        self._meters = {name: _Meter(name) for name in STAGES}
        self._latency = _LogHistogram()
        self._latency_lock = threading.Lock()
        self._out_done = deque(maxlen=64)
        self._clock = _MonotonicClock(source.fps)
        self._media_start_wall_s: float | None = self.config.start_wall_time_s or _source_start_wall_s(source)
        self._wall_offset_s: float | None = None  # wall time - media time, of the latest frame
        self._started_at: float | None = None
        self._ended_at: float | None = None
        self._frames_in = 0
        self._frames_inferred = 0
        self._frames_out = 0
        self._frames_dropped = 0
        self._frames_discarded = 0
        self._events_total = 0
        self._interrupted = False
        self._video = (VideoFileSink(self.config.video_output, self._video_fps, self.config.encoder)
                       if self.config.video_output is not None else None)
        self._frame_sinks: list[FrameSink] = [*([self._video] if self._video is not None else []), *frame_sinks]
        self._counting_sinks = [sink for sink in self._frame_sinks if draws_counting(sink)]
        self._tracks_only_sinks = [sink for sink in self._frame_sinks if not draws_counting(sink)]
        self._threads: list[threading.Thread] = []
        self._generator_started = False
        self.report: PipelineReport | None = None

    # ------------------------------------------------------------------ public
    @property
    def lines(self) -> tuple[CountingLine, ...]:
        """The counting lines (empty until the first frame fixed their pixel geometry)."""
        return self._counting.lines

    @property
    def zones(self) -> tuple[CountingZone, ...]:
        """The zones (empty until the first frame)."""
        return self._counting.zones

    @property
    def drops_frames(self) -> bool:
        """Whether the capture stage drops the oldest frame when inference falls behind."""
        return self._drop_oldest

    def set_counting(self, counting: CountingConfig | Sequence[CountingConfig] | None) -> None:
        """Replace the lines and zones from the next frame on (thread-safe, returns at once).

        The inference thread applies the new configuration right before it counts the next
        frame, so counters are only ever touched by that thread. What happens to the counts of
        edited, kept and removed lines and zones: :class:`app.counting.engine.CountingEngine`.

        Args:
            counting: the new lines and zones (``None`` or ``()``: none). Names must be unique.

        Raises:
            PipelineConfigError: duplicate names or an object that is not a CountingConfig.
        """
        try:
            self._counting.set_configs(counting)
        except CountingSetupError as exc:
            raise PipelineConfigError(str(exc)) from exc

    @property
    def counting_changes(self) -> int:
        """How many :meth:`set_counting` calls took effect so far."""
        return self._counting.changes

    def stop(self) -> None:
        """Ask the run to end (thread-safe; safe in a signal handler). Returns at once.

        Capture stops, the frame being inferred is finished, frames not yet inferred are
        discarded, and the output stage writes out what was inferred before the generator ends
        with status ``"stopped"``.
        """
        self._user_stop.set()
        self._stop_event.set()
        if self.source.is_live:  # unblock a capture thread waiting for the next frame
            self._close_source_quietly()

    def stats(self) -> PipelineStats:
        """Current statistics (thread-safe)."""
        now = time.perf_counter()
        start = self._started_at if self._started_at is not None else now
        end = self._ended_at if self._ended_at is not None else now
        source_stats = getattr(self.source, "stats", None)
        recent = list(self._out_done)
        fps = (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) >= 2 and recent[-1] > recent[0] else 0.0
        with self._latency_lock:
            p50 = 1e3 * self._latency.percentile_s(50) if self._latency.count else 0.0
            p95 = 1e3 * self._latency.percentile_s(95) if self._latency.count else 0.0
        return PipelineStats(
            elapsed_s=end - start,
            frames_in=self._frames_in,
            frames_inferred=self._frames_inferred,
            frames_out=self._frames_out,
            frames_dropped=self._frames_dropped,
            frames_discarded=self._frames_discarded,
            timestamp_repairs=self._clock.repairs + _source_timestamp_repairs(self.source),
            reconnects=int(getattr(source_stats, "reconnects", 0)),
            corrupt_frames=int(getattr(source_stats, "frames_corrupt", 0)),
            connection_state=str(getattr(source_stats, "connection_state", "")),
            capture_queue_depth=self._capture_q.qsize(),
            result_queue_depth=self._result_q.qsize(),
            fps=fps,
            latency_p50_ms=p50,
            latency_p95_ms=p95,
            stages=tuple(self._meters[name].snapshot() for name in STAGES),
        )

    def run(self, on_result: Callable[[FrameResult], None] | None = None) -> PipelineReport:
        """Run to the end, calling ``on_result`` for each frame; return the report.

        Raises:
            whatever a stage or ``on_result`` raised (the report is in :attr:`report`), and
            ``KeyboardInterrupt`` (status ``"interrupted"``).
        """
        results = self.results()
        try:
            for result in results:
                if on_result is not None:
                    on_result(result)
        except KeyboardInterrupt:
            self._interrupted = True
            raise
        finally:
            results.close()
        assert self.report is not None  # set by the generator's shutdown
        return self.report

    def results(self) -> Iterator[FrameResult]:
        """Start the stages and yield one :class:`FrameResult` per processed frame, in order.

        The output stage (sinks, drawing, encoding) runs inside this generator, in the
        iterating thread. Closing the generator early ends the run (status ``"stopped"``).

        Raises:
            PipelineError: the pipeline was already run.
            the first exception raised by the capture or inference stage, after the frames
            inferred before it have been output; exceptions of the output stage itself.
        """
        if self._generator_started:
            raise PipelineError("a Pipeline runs once; create a new one for another run")
        self._generator_started = True
        return self._generate()

    # ------------------------------------------------------------------ generator
    def _generate(self) -> Iterator[FrameResult]:
        self._start_threads()
        status, error, in_flight = STATUS_FINISHED, None, None
        try:
            while True:
                item = self._next_inferred()
                if item is None:
                    break
                yield self._output(item)
            thread_error = self._first_error()
            if thread_error is not None:
                raise thread_error
            if self._user_stop.is_set():
                status = STATUS_STOPPED
        except KeyboardInterrupt as exc:
            status, in_flight = STATUS_INTERRUPTED, exc
            raise
        except GeneratorExit as exc:
            status, in_flight = (STATUS_INTERRUPTED if self._interrupted else STATUS_STOPPED), exc
            raise
        except BaseException as exc:
            status, error, in_flight = STATUS_FAILED, exc, exc
            raise
        finally:
            self._shutdown(status, error, raise_failure=in_flight is None)

    def _start_threads(self) -> None:
        self._started_at = time.perf_counter()
        logger.info(
            "pipeline: %s (%s, %s), render %s, video %s",
            self.source.name, "live" if self.source.is_live else "file",
            "drop-oldest" if self._drop_oldest else "every frame", self._render,
            self.config.video_output,
        )
        self._threads = [
            threading.Thread(target=self._capture_loop, name="pipeline-capture", daemon=True),
            threading.Thread(target=self._inference_loop, name="pipeline-inference", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _next_inferred(self) -> _Inferred | None:
        """Next item from the inference stage; ``None`` once it has ended."""
        while True:
            try:
                item = self._result_q.get(timeout=self.config.poll_interval_s)
            except queue.Empty:
                if not self._threads[1].is_alive() and self._result_q.empty():
                    # The inference thread always ends with _END; this guards against a bug there.
                    return None
                continue
            return None if item is _END else item

    # ------------------------------------------------------------------ capture stage
    def _capture_loop(self) -> None:
        meter = self._meters["capture"]
        try:
            frames = iter(self.source)
            while not self._stop_event.is_set():
                t0 = time.perf_counter()
                try:
                    frame = next(frames)
                except StopIteration:
                    break
                t1 = time.perf_counter()
                meter.record(t1 - t0, t1)
                self._frames_in += 1
                self._enqueue_captured(_Captured(frame, t1, t1 - t0, time.time()))
                # With drop-oldest, max_frames counts inferred frames (see _inference_loop).
                if (not self._drop_oldest and self.config.max_frames is not None
                        and self._frames_in >= self.config.max_frames):
                    logger.info("pipeline: max_frames=%d reached", self.config.max_frames)
                    break
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer thread
            if self._stop_event.is_set() and self.source.is_live:
                logger.debug("capture ended by stop: %s: %s", type(exc).__name__, exc)
            else:
                self._record_error(exc, "capture")
        finally:
            # After a stop the inference stage discards the queue and needs no end marker.
            self._put_blocking(self._capture_q, _END, give_up_on_stop=True)

    def _enqueue_captured(self, item: _Captured) -> None:
        if not self._drop_oldest:
            if not self._put_blocking(self._capture_q, item, give_up_on_stop=True):
                self._count_discarded(1)
            return
        while True:
            try:
                self._capture_q.put_nowait(item)
                return
            except queue.Full:
                pass
            try:
                dropped = self._capture_q.get_nowait()
            except queue.Empty:
                continue
            self._note_drop(dropped)

    def _put_blocking(self, q: queue.Queue, item: object, give_up_on_stop: bool = False) -> bool:
        """Put with back-pressure; give up when shutdown abandons the threads (or, with
        ``give_up_on_stop``, once a stop is requested). Returns whether the item was put."""
        while not self._abandon.is_set() and not (give_up_on_stop and self._stop_event.is_set()):
            try:
                q.put(item, timeout=self.config.poll_interval_s)
                return True
            except queue.Full:
                continue
        return False

    # ------------------------------------------------------------------ inference stage
    def _inference_loop(self) -> None:
        try:
            while True:
                if self._stop_event.is_set():
                    self._discard_captured()
                    break
                try:
                    item = self._capture_q.get(timeout=self.config.poll_interval_s)
                except queue.Empty:
                    continue
                end_follows = False
                if self._drop_oldest and item is not _END:
                    item, end_follows = self._take_freshest(item)
                if item is _END:
                    break
                inferred = self._infer(item)
                self._frames_inferred += 1
                limit_reached = self._drop_oldest and self.config.max_frames is not None and (
                    self._frames_inferred >= self.config.max_frames)
                if limit_reached:  # drop-oldest: max_frames counts processed frames
                    logger.info("pipeline: max_frames=%d frames processed (%d captured, %d dropped)",
                                self.config.max_frames, self._frames_in, self._frames_dropped)
                    self._stop_event.set()  # capture stops; frames still queued are discarded
                    if self.source.is_live:
                        self._close_source_quietly()  # unblock a capture waiting for a frame
                if not self._put_blocking(self._result_q, inferred) or end_follows or limit_reached:
                    break
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer thread
            self._record_error(exc, "inference")
            self._stop_event.set()
        finally:
            self._put_blocking(self._result_q, _END)

    def _take_freshest(self, item: _Captured) -> tuple[_Captured, bool]:
        """Live sources: skip to the newest queued frame (the older ones count as dropped).
        Returns it and whether the end marker came after it."""
        while True:
            try:
                newer = self._capture_q.get_nowait()
            except queue.Empty:
                return item, False
            if newer is _END:
                return item, True
            self._note_drop(item)
            item = newer

    def _note_drop(self, item: _Captured) -> None:
        with self._counts_lock:  # the capture and the inference thread both drop
            self._frames_dropped += 1
            n = self._frames_dropped
        (logger.warning if n == 1 else logger.debug)(
            "pipeline: dropped frame %d of %s (inference behind the live source; %d drops so far)",
            item.frame.index, self.source.name, n,
        )

    def _discard_captured(self) -> None:
        """Empty the capture queue, counting the frames as discarded."""
        while True:
            try:
                item = self._capture_q.get_nowait()
            except queue.Empty:
                return
            if item is not _END:
                self._count_discarded(1)

    def _count_discarded(self, n: int) -> None:
        with self._counts_lock:  # incremented from the capture and the inference thread
            self._frames_discarded += n

    def _infer(self, captured: _Captured) -> _Inferred:
        frame = captured.frame
        timestamp_s, index = self._clock.next(frame)
        t0 = time.perf_counter()
        detections = _drop_degenerate(self.detector(frame.image))
        t1 = time.perf_counter()
        tracks = self.tracker.update(detections, timestamp_s=timestamp_s)
        t2 = time.perf_counter()
        height, width = frame.shape_hw
        self._wall_offset_s = self._wall_s(captured, timestamp_s) - timestamp_s
        events = self._stamped(self._counting.update(tracks, timestamp_s, index, (width, height)))
        t3 = time.perf_counter()
        lines, zones = self._counting.readouts()
        for event in events:
            _log_event("counted", event)
        for name, seconds, done in (("detect", t1 - t0, t1), ("track", t2 - t1, t2), ("count", t3 - t2, t3)):
            self._meters[name].record(seconds, done)
        return _Inferred(
            captured=captured,
            timestamp_s=timestamp_s,
            detections=detections,
            tracks=tracks,
            events=events,
            lines=lines,
            zones=zones,
            step_s={"capture": captured.capture_s, "detect": t1 - t0, "track": t2 - t1, "count": t3 - t2},
        )

    def _wall_s(self, captured: _Captured, timestamp_s: float) -> float:
        """Wall time of a frame: its arrival for a live source, start + media time for a file."""
        if self.source.is_live:
            return captured.arrived_wall_s
        if self._media_start_wall_s is None:  # the run's start stands for media time 0
            self._media_start_wall_s = captured.arrived_wall_s - timestamp_s
        return self._media_start_wall_s + timestamp_s

    def _stamped(self, events: Sequence[CountEvent]) -> tuple[CountEvent, ...]:
        """``events`` with the camera id and the wall time of their ``timestamp_s`` (media time
        shifted by the latest frame's wall - media offset)."""
        offset = self._wall_offset_s if self._wall_offset_s is not None else time.time()
        return tuple(dataclasses.replace(e, camera_id=self.config.camera_id,
                                         wall_time=wall_time_iso(offset + e.timestamp_s)) for e in events)

    # ------------------------------------------------------------------ output stage
    def _output(self, item: _Inferred) -> FrameResult:
        step_s = dict(item.step_s)
        t0 = time.perf_counter()
        self._write_events(item.events)
        t1 = time.perf_counter()
        annotated = tracks_only = None
        if self._render:
            image = item.captured.frame.image
            if self._tracks_only_sinks:  # drawn in two passes: the tracks, then lines and zones on top
                tracks_only = self._renderer.render(image, item.tracks)
                if self._counting_sinks:
                    annotated = self._renderer.render(tracks_only, _NO_TRACKS, item.lines, item.zones)
            else:
                annotated = self._renderer.render(image, item.tracks, item.lines, item.zones)
        t2 = time.perf_counter()
        for sink in self._counting_sinks:
            sink.write(annotated, item.captured.frame)
        for sink in self._tracks_only_sinks:
            sink.write(tracks_only, item.captured.frame)
        t3 = time.perf_counter()
        step_s.update(sink=t1 - t0, render=t2 - t1, encode=t3 - t2)
        for name in ("sink", "render", "encode"):
            self._meters[name].record(step_s[name], t3)
        latency_s = t3 - item.captured.arrived_at
        with self._latency_lock:
            self._latency.add(latency_s)
        self._out_done.append(t3)
        self._frames_out += 1
        return FrameResult(
            frame=item.captured.frame,
            detections=item.detections,
            tracks=item.tracks,
            events=item.events,
            lines=item.lines,
            zones=item.zones,
            annotated=annotated if annotated is not None else tracks_only,
            timestamp_s=item.timestamp_s,
            latency_s=latency_s,
            timings_ms={name: 1e3 * seconds for name, seconds in step_s.items()},
            stats=self.stats(),
        )

    def _write_events(self, events: Sequence[CountEvent]) -> None:
        """Write one frame's events to every healthy sink.

        Called for every output frame, with or without events: it first reads each sink's
        ``failure`` (an attribute read, no system call), so a sink that failed in its background
        thread is noticed within a frame. A failed sink is isolated (see :class:`EventSinkLike`):
        logged once, skipped from then on, its lost events counted.

        Raises:
            Exception: whatever a sink raises other than ``EventSinkError`` (a bug).
        """
        self._events_total += len(events)
        for state in self._sink_states():
            if state.error is None:
                failure = getattr(state.sink, "failure", None)
                if isinstance(failure, BaseException):
                    state.fail(failure)
            if state.error is not None:
                state.events_lost += len(events)
                continue
            if not events:
                continue
            written_before = getattr(state.sink, "events_written", None)
            try:
                state.sink.write_many(events)
            except EventSinkError as exc:
                written_after = getattr(state.sink, "events_written", None)
                delivered = (written_after - written_before
                             if isinstance(written_before, int) and isinstance(written_after, int) else 0)
                state.events_lost += len(events) - delivered
                state.fail(exc)

    def _sink_states(self) -> list[_SinkState]:
        """The event sinks with their health, one entry per sink."""
        return self._sink_state_list

    def _close_sinks(self, failures: list[BaseException]) -> None:
        """Close every event sink. A sink's ``EventSinkError`` is that sink's failure (reported
        in ``sink_errors``, not raised); any other exception goes to ``failures``."""
        for state in self._sink_states():
            try:
                state.sink.close()
            except EventSinkError as exc:
                if state.error is None:
                    state.fail(exc)
                else:  # the failure already reported, raised again by close()
                    logger.debug("closing the failed event sink %s: %s", state.name, exc)
            except Exception as exc:  # noqa: BLE001 - every resource gets closed; errors are reported
                failures.append(exc)
                logger.error("closing the event sink %s failed: %s: %s", state.name, type(exc).__name__, exc)

    def _video_fps(self) -> float:
        """Frame rate of the video: the configured one, the source's nominal one, or the
        fallback (with a warning)."""
        fps = self.config.output_fps or self.source.fps
        if not fps:
            fps = self.config.fallback_fps
            logger.warning("%s has no nominal frame rate; writing the video at %.3g fps", self.source.name, fps)
        return float(fps)

    # ------------------------------------------------------------------ shutdown
    def _shutdown(self, status: str, error: BaseException | None, raise_failure: bool) -> None:
        """Stop the threads, write out what was inferred, finalize sinks, video and source, and
        build the report. A failure here is raised only if ``raise_failure`` (no exception is in
        flight already; that one must not be hidden); it is in the report either way."""
        failures: list[BaseException] = []
        self._stop_event.set()
        if self.source.is_live:
            self._close_source_quietly()
        self._join_threads_draining(failures)
        if not any(thread.is_alive() for thread in self._threads):
            self._discard_captured()  # a frame the capture thread queued after inference stopped
        if not self._threads[1].is_alive():
            self._finish_zones(failures)
        self._close_sinks(failures)
        for sink in self._frame_sinks:  # the video is finalized and renamed, or kept partial
            _close_collecting(sink, failures, f"frame sink {getattr(sink, 'path', sink)!r}")
        _close_collecting(self.source, failures, "source")
        self._ended_at = time.perf_counter()

        if error is None and failures:
            status, error = STATUS_FAILED, failures[0]
        lines, zones = self._counting.readouts()
        video = self._video
        self.report = PipelineReport(
            status=status,
            source=self.source.name,
            stats=self.stats(),
            lines=lines,
            zones=zones,
            events_total=self._events_total,
            sink_errors=tuple(state.describe() for state in self._sink_states() if state.error is not None),
            video_output=(str(video.output_path) if video is not None and video.output_path is not None else None),
            video_frames=video.frames if video is not None else 0,
            video_error=video.error if video is not None else None,
            error=None if error is None else f"{type(error).__name__}: {error}",
        )
        (logger.error if status == STATUS_FAILED else logger.info)("pipeline %s", self.report.summary())
        if failures and raise_failure:
            raise failures[0]

    def _join_threads_draining(self, failures: list[BaseException]) -> None:
        """Wait for the stage threads while writing the events of frames still queued."""
        deadline = time.monotonic() + self.config.shutdown_timeout_s
        for thread in self._threads:
            while thread.is_alive() and time.monotonic() < deadline:
                self._drain_results(failures)
                thread.join(timeout=self.config.poll_interval_s)
        self._drain_results(failures)
        stuck = [thread.name for thread in self._threads if thread.is_alive()]
        if stuck:
            self._abandon.set()
            logger.error("pipeline: %s still running after %.1f s; left behind",
                         ", ".join(stuck), self.config.shutdown_timeout_s)

    def _drain_results(self, failures: list[BaseException]) -> None:
        """Events of inferred frames that will not be output still go to the sinks."""
        while True:
            try:
                item = self._result_q.get_nowait()
            except queue.Empty:
                return
            if item is _END:
                continue
            try:
                self._write_events(item.events)
            except Exception as exc:  # noqa: BLE001 - collected, reported after cleanup
                failures.append(exc)
                logger.error("writing events during shutdown failed: %s", exc)
                return

    def _finish_zones(self, failures: list[BaseException]) -> None:
        events = self._stamped(self._counting.finish())
        for event in events:
            _log_event("counted at end of stream", event)
        try:
            self._write_events(events)
        except Exception as exc:  # noqa: BLE001
            failures.append(exc)
            logger.error("writing the end-of-stream zone exits failed: %s", exc)

    def _record_error(self, exc: BaseException, stage: str) -> None:
        logger.debug("pipeline %s stage failed", stage, exc_info=exc)
        with self._errors_lock:
            self._errors.append(exc)

    def _first_error(self) -> BaseException | None:
        with self._errors_lock:
            if len(self._errors) > 1:
                for extra in self._errors[1:]:
                    logger.error("pipeline: a further error: %s: %s", type(extra).__name__, extra)
            return self._errors[0] if self._errors else None

    def _close_source_quietly(self) -> None:
        try:
            self.source.close()
        except Exception as exc:  # noqa: BLE001 - closing to unblock; closed again in shutdown
            logger.debug("closing %s: %s", self.source.name, exc)


def _source_timestamp_repairs(source: FrameSource) -> int:
    """Timestamp repairs the source made itself (``app.sources`` re-base times that fail to
    increase, and log each repair); 0 for a source without the counter."""
    repairs = getattr(source, "timestamp_repairs", 0)
    return repairs if isinstance(repairs, int) and not isinstance(repairs, bool) else 0


def _source_start_wall_s(source: FrameSource) -> float | None:
    """The wall time of a file's media time 0 when the source reports one, else ``None``."""
    start = getattr(source, "start_wall_time_s", None)
    return float(start) if isinstance(start, (int, float)) and not isinstance(start, bool) and start > 0 else None


def _close_collecting(resource: Any, failures: list[BaseException], what: str) -> None:
    try:
        resource.close()
    except Exception as exc:  # noqa: BLE001 - every resource gets closed; errors are reported
        failures.append(exc)
        logger.error("closing the %s failed: %s: %s", what, type(exc).__name__, exc)


def _log_event(what: str, event: CountEvent) -> None:
    """One DEBUG line per event, stamped by logging with the wall-clock time; the durability
    test compares these times with the time the process was killed."""
    logger.debug(
        "%s event zone=%s track_id=%d direction=%s frame_index=%d timestamp_s=%.6f class=%s",
        what, event.zone, event.track_id, event.direction.value, event.frame_index,
        event.timestamp_s, event.class_name,
    )
