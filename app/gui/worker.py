"""The pipeline in a worker thread, talking to the GUI through Qt signals only.

The shape follows superqt's generator workers: :meth:`PipelineWorker.run` runs in its own
``QThread``, builds the pipeline there (opening a camera and loading weights can take seconds),
iterates :meth:`app.pipeline.Pipeline.results` and

- emits :attr:`~PipelineWorker.frameReady` when a new frame is waiting. At most one such
  notification is pending at a time: a newer frame replaces an older one not yet taken, so a
  slow GUI skips frames instead of queueing them; the count events of skipped frames are kept
  and handed over with the next frame (:meth:`~PipelineWorker.take_update`), so none is lost;
- emits :attr:`~PipelineWorker.failed` with a one-line message when building or running fails;
- always emits :attr:`~PipelineWorker.finished` last, with the pipeline's report (``None`` when
  the pipeline could not even be built).

The GUI thread never waits for the worker: :meth:`~PipelineWorker.stop`,
:meth:`~PipelineWorker.pause`, :meth:`~PipelineWorker.resume` and
:meth:`~PipelineWorker.set_counting` set flags and return at once (stop is cooperative, never
``QThread.terminate()``); :meth:`~PipelineWorker.status` is a snapshot of thread-safe counters.

Pausing stops taking results: a file is then held by the pipeline's back-pressure, a live source
keeps being read and its frames are dropped (the freshest wins), as a paused live view should.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import supervision as sv
from PyQt6.QtCore import QCoreApplication, QObject, QThread, pyqtSignal, pyqtSlot
from PyQt6.QtGui import QImage

from app.counting import CountEvent, CountingConfig, LineCounts, ZoneCounts
from app.frames import Frame, FrameSource
from app.gui.settings import GuiSettings, TrackerSettings
from app.assembly import TrackerChoice, build_pipeline
from app.pipeline import FrameResult, Pipeline, PipelineConfig, PipelineReport, PipelineStats
from app.paths import RunOutput, check_run_paths

__all__ = [
    "DetectorCache",
    "FrameUpdate",
    "PipelineWorker",
    "RunRequest",
    "ViewSink",
    "WorkerStatus",
    "bgr_to_qimage",
    "fit_within",
    "tracker_choice",
    "open_gui_source",
    "recording_path",
    "start_in_thread",
]

logger = logging.getLogger(__name__)

Detect = Callable[[np.ndarray], sv.Detections]
DetectorFactory = Callable[[GuiSettings], Detect]
SourceOpener = Callable[[str], FrameSource]

STATE_STARTING, STATE_RUNNING, STATE_PAUSED, STATE_STOPPING, STATE_FINISHED = (
    "starting", "running", "paused", "stopping", "finished",
)


# ------------------------------------------------------------------------------ data
@dataclass(frozen=True)
class RunRequest:
    """What one run processes.

    Attributes:
        source: a file or folder path, stream URL, or webcam index as text (``"0"``).
        settings: detector, tracker and recording options.
        counting: the lines and zones at the start (changed later with ``set_counting``).
        video_output: write the annotated video here, or ``None``.
        events_output: write the count events here as they happen (CSV, JSONL or SQLite by
            extension), or ``None``.
    """

    source: str
    settings: GuiSettings
    counting: CountingConfig | None = None
    video_output: Path | None = None
    events_output: Path | None = None


@dataclass(frozen=True)
class FrameUpdate:
    """The newest frame for the view, and everything that happened since the previous update.

    Attributes:
        image: the frame with tracks drawn, RGB-ordered ``QImage`` (``Format_BGR888`` holding
            the BGR pixels), possibly reduced to the view's size.
        frame_size_wh: size of the source frame in pixels (lines and zones use these pixels).
        frame_index: the frame's index in its source.
        lines, zones: counts after this frame.
        events: the count events of this frame and of every frame skipped since the last update.
        latency_s: seconds from the frame's arrival from the source to the end of its output.
        stats: pipeline statistics after this frame.
        frames: frames published since the previous update (> 1 when the GUI skipped some).
    """

    image: QImage
    frame_size_wh: tuple[int, int]
    frame_index: int
    lines: tuple[LineCounts, ...]
    zones: tuple[ZoneCounts, ...]
    events: tuple[CountEvent, ...]
    latency_s: float
    stats: PipelineStats
    frames: int


@dataclass(frozen=True)
class WorkerStatus:
    """A snapshot for the status bar.

    Attributes:
        state: ``starting`` (opening the source, loading weights), ``running``, ``paused``,
            ``stopping`` or ``finished``.
        stats: the pipeline's statistics, ``None`` before it exists.
        connection_state: the source's state (``connecting``, ``connected``, ``reconnecting``,
            ``closed``).
        reconnect_attempt: the current reconnect attempt of a live source (0 when connected).
    """

    state: str
    stats: PipelineStats | None
    connection_state: str
    reconnect_attempt: int


# ------------------------------------------------------------------------------ parts
def bgr_to_qimage(image_bgr: np.ndarray) -> QImage:
    """A deep-copied ``QImage`` of a ``(H, W, 3)`` uint8 **BGR** array (``Format_BGR888``).

    Safe off the GUI thread (``QImage``, unlike ``QPixmap``, is not tied to it).
    """
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 BGR image, got {image_bgr.shape} {image_bgr.dtype}")
    image = np.ascontiguousarray(image_bgr)
    height, width = image.shape[:2]
    return QImage(image.data, width, height, image.strides[0], QImage.Format.Format_BGR888).copy()


class ViewSink:
    """The live view as a :class:`app.frame_sinks.FrameSink`: the frame with the tracks only
    (``draws_counting = False``), since the view draws the lines and zones itself, where the user
    edits them. The recorded video, another sink of the same pipeline, gets lines, zones and
    counts drawn on it.

    The pipeline writes to its sinks in the thread that iterates it, right before yielding the
    frame's result, so :meth:`image_for` of the result just yielded finds its frame here.
    """

    draws_counting = False

    def __init__(self) -> None:
        self._latest: tuple[np.ndarray, Frame] | None = None

    def write(self, image_bgr: np.ndarray, frame: Frame) -> None:
        self._latest = (image_bgr, frame)

    def close(self) -> None:
        """Nothing to finalize."""

    def image_for(self, result: FrameResult) -> np.ndarray:
        """The tracks-only image of ``result``, ``(H, W, 3)`` uint8 BGR (its raw frame if this
        sink did not see it)."""
        latest = self._latest
        if latest is not None and latest[1] is result.frame:
            return latest[0]
        return result.frame.image


def tracker_choice(settings: TrackerSettings) -> TrackerChoice:
    """The registered tracker and parameters of the settings (built by
    :func:`app.assembly.build_pipeline` at the source's frame rate)."""
    return TrackerChoice(settings.kind, settings.params())


def open_gui_source(spec: str) -> FrameSource:
    """:func:`app.sources.open_source` with the GUI's policy: live sources retry forever (the
    status bar shows the attempts; the user stops when they want)."""
    from app.sources import SourceConfig, open_source

    return open_source(spec, SourceConfig(max_reconnect_attempts=None))


class DetectorCache:
    """Loads the detector the settings describe, reusing the last one while they are unchanged
    (loading weights takes seconds). Thread-safe; call it from the worker thread.

    Raises (from ``__call__``):
        app.assembly.ClassFilterError: a class in the class filter that the model does not have.
        the errors of :func:`detector.load_model` and :class:`detector.Detector`.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple | None = None
        self._detector: Any = None

    def __call__(self, settings: GuiSettings) -> Detect:
        key = (settings.weights, settings.img_size, settings.conf_thres, settings.iou_thres,
               settings.classes, settings.device, settings.precision, settings.backend)
        with self._lock:
            if key != self._key:
                self._detector, self._key = None, None  # free the old model before loading
                self._detector = load_detector(settings)
                self._key = key
            return self._detector


def load_detector(settings: GuiSettings) -> Detect:
    """A :class:`detector.Detector` for the settings (weights, size, thresholds, classes, device,
    precision, backend), through the CLI's assembly path (:func:`app.assembly.build_detector`)."""
    from app.assembly import build_detector
    from detector import DetectorConfig

    config = DetectorConfig(img_size=settings.img_size, conf_thres=settings.conf_thres,
                            iou_thres=settings.iou_thres, device=settings.device,
                            precision=settings.precision, backend=settings.backend)
    return build_detector(settings.weights, config, lambda names: class_ids(settings.classes, names))


def _run_label(source_name: str, detector: Any) -> str:
    """``"NAME (torch bf16)"``: the status bar says which precision ``auto`` picked."""
    backend, precision = getattr(detector, "backend", None), getattr(detector, "precision", None)
    return f"{source_name} ({backend} {precision})" if backend and precision else source_name


def class_ids(tokens: Sequence[str], names: Sequence[str]) -> tuple[int, ...] | None:
    """Class ids of the settings' class filter (:func:`app.assembly.resolve_classes`); ``None``
    keeps all.

    Raises:
        app.assembly.ClassFilterError: a name or id the model does not have (the message lists
            its classes).
    """
    from app.assembly import resolve_classes

    return resolve_classes(tokens, names, "class filter")


def recording_path(settings: GuiSettings, source_name: str, now: datetime | None = None,
                   suffix: str = ".mp4") -> Path:
    """``<recording dir>/<source stem>_<YYYYmmdd-HHMMSS><suffix>`` for a run's annotated video
    (``.mp4``) or events file (``.events.csv``)."""
    stem = Path(source_name.split("?")[0].rstrip("/")).stem or "stream"
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in stem)[:40]
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    return settings.recording_dir() / f"{stem}_{stamp}{suffix}"


# ------------------------------------------------------------------------------ the worker
class PipelineWorker(QObject):
    """Runs one :class:`RunRequest` in the thread it is moved to (see the module docstring).

    Args:
        request: what to run.
        detector_factory: settings -> detector callable (``image_bgr -> sv.Detections``); the
            seam tests use to inject a stub detector.
        source_opener: spec -> :class:`app.frames.FrameSource`.
        pipeline_config: options of the pipeline; ``render`` and ``video_output`` are set from
            the request.
    """

    frameReady = pyqtSignal()
    runStarted = pyqtSignal(str)
    failed = pyqtSignal(str)
    finished = pyqtSignal(object)

    def __init__(
        self,
        request: RunRequest,
        detector_factory: DetectorFactory,
        source_opener: SourceOpener = open_gui_source,
        pipeline_config: PipelineConfig | None = None,
    ) -> None:
        super().__init__()
        self.request = request
        self._detector_factory = detector_factory
        self._source_opener = source_opener
        self._pipeline_config = pipeline_config or PipelineConfig()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._resume = threading.Event()
        self._resume.set()
        self._pipeline: Pipeline | None = None
        self._pending_counting: CountingConfig | None = request.counting
        self._counting_changed = False
        self._state = STATE_STARTING
        self._latest: FrameUpdate | None = None
        self._events: list[CountEvent] = []
        self._frames_since_take = 0
        self._notify_pending = False
        self._view_size_wh: tuple[int, int] | None = None
        self._view_sink: ViewSink | None = None
        self.report: PipelineReport | None = None

    # ---------------------------------------------------------------- GUI-thread API
    def stop(self) -> None:
        """Ask the run to end; returns at once. ``finished`` follows."""
        with self._lock:
            if self._state not in (STATE_FINISHED,):
                self._state = STATE_STOPPING
            pipeline = self._pipeline
        self._stop.set()
        self._resume.set()
        if pipeline is not None:
            pipeline.stop()

    def pause(self) -> None:
        """Stop taking frames until :meth:`resume` (the current frame stays on screen)."""
        with self._lock:
            if self._state in (STATE_RUNNING, STATE_STARTING):
                self._resume.clear()
                if self._state == STATE_RUNNING:
                    self._state = STATE_PAUSED

    def resume(self) -> None:
        with self._lock:
            if self._state == STATE_PAUSED:
                self._state = STATE_RUNNING
        self._resume.set()

    @property
    def paused(self) -> bool:
        return not self._resume.is_set()

    def set_counting(self, counting: CountingConfig | None) -> None:
        """New lines and zones; applied from the next frame (see
        :meth:`~app.pipeline.Pipeline.set_counting`)."""
        with self._lock:
            pipeline = self._pipeline
            self._pending_counting = counting
        if pipeline is not None:
            pipeline.set_counting(counting)

    def set_view_size(self, width_px: int, height_px: int) -> None:
        """The view's size in device pixels: larger frames are reduced to it in this worker, so
        the GUI thread only draws an image of about its own size."""
        with self._lock:
            self._view_size_wh = (max(1, int(width_px)), max(1, int(height_px)))

    def take_update(self) -> FrameUpdate | None:
        """The newest frame and the events since the last call (``None`` if nothing new);
        re-arms :attr:`frameReady`."""
        with self._lock:
            update, self._latest = self._latest, None
            self._notify_pending = False
            if update is None:
                return None
            events, self._events = tuple(self._events), []
            frames, self._frames_since_take = self._frames_since_take, 0
        return replace(update, events=events, frames=frames)

    def status(self) -> WorkerStatus:
        """A snapshot of the run's state and counters (cheap, never blocks for long)."""
        with self._lock:
            state, pipeline = self._state, self._pipeline
        if pipeline is None:
            return WorkerStatus(state, None, "connecting" if state == STATE_STARTING else "closed", 0)
        source_stats = getattr(pipeline.source, "stats", None)
        return WorkerStatus(
            state,
            pipeline.stats(),
            str(getattr(source_stats, "connection_state", "")),
            int(getattr(source_stats, "reconnect_attempt", 0)),
        )

    # ---------------------------------------------------------------- worker thread
    @pyqtSlot()
    def run(self) -> None:
        """Build and run the pipeline; emits ``failed`` on error and always ``finished``."""
        try:
            pipeline = self._build()
            if pipeline is not None:
                self._iterate(pipeline)
        except Exception as exc:  # noqa: BLE001 - every failure reaches the GUI as a message
            logger.error("run of %s failed: %s: %s", self.request.source, type(exc).__name__, exc,
                         exc_info=logger.isEnabledFor(logging.DEBUG))
            self.failed.emit(_one_line(exc))
        finally:
            with self._lock:
                self._state = STATE_FINISHED
            # Back to the GUI thread (only the owning thread may push an object away), so the
            # worker can be garbage-collected there once its thread has ended.
            app = QCoreApplication.instance()
            if app is not None:
                self.moveToThread(app.thread())
            self.finished.emit(self.report)

    def _build(self) -> Pipeline | None:
        request = self.request
        outputs = ([RunOutput("video output", request.video_output, replaced=True)] if request.video_output else []) + (
            [RunOutput("events file", request.events_output)] if request.events_output else [])
        if outputs:  # the same rule as the CLI: never write over the input or another output
            source_path = Path(request.source)
            check_run_paths(source_path if source_path.exists() else None, outputs)
        detector = self._detector_factory(request.settings)
        if self._stop.is_set():
            return None
        source = self._source_opener(request.source)
        sinks: list[Any] = []
        try:
            if self._stop.is_set():
                return None
            if request.events_output is not None:  # events reach the file as they happen
                from app.sinks import open_event_sink

                sinks.append(open_event_sink(request.events_output))
            view_sink = ViewSink()
            config = _with_output(self._pipeline_config, request.video_output)
            with self._lock:
                counting = self._pending_counting
            pipeline = build_pipeline(
                source, detector, tracker_choice(request.settings.tracker),
                counting=counting if counting is not None else (),
                config=config, class_names=getattr(detector, "names", None),
                event_sinks=sinks, frame_sinks=[view_sink],
            )
        except BaseException:
            for resource in (*sinks, source):
                resource.close()
            raise
        with self._lock:
            self._pipeline = pipeline
            self._view_sink = view_sink
            if self._pending_counting is not counting:  # edited while we were building
                pipeline.set_counting(self._pending_counting)
            if self._state == STATE_STARTING:
                self._state = STATE_RUNNING if self._resume.is_set() else STATE_PAUSED
        if self._stop.is_set():
            pipeline.stop()
        self.runStarted.emit(_run_label(source.name, detector))
        return pipeline

    def _iterate(self, pipeline: Pipeline) -> None:
        pace = self.request.settings.pace_files and not pipeline.source.is_live
        clock: tuple[float, float] | None = None  # (wall time, media time) of the pacing origin
        results = pipeline.results()
        try:
            for result in results:
                self._publish(result)
                if self._stop.is_set():
                    continue  # the pipeline writes out what it has inferred, then ends
                if not self._resume.is_set():
                    self._resume.wait()
                    clock = None  # a pause moves the pacing origin
                if pace:
                    clock = self._pace(result.timestamp_s, clock)
        finally:
            results.close()
            self.report = pipeline.report

    def _pace(self, media_s: float, clock: tuple[float, float] | None) -> tuple[float, float]:
        """Wait until ``media_s`` is due on the wall clock (interrupted by stop)."""
        now = time.perf_counter()
        if clock is None:
            return (now, media_s)
        due = clock[0] + (media_s - clock[1])
        if due > now:
            self._stop.wait(due - now)
        return clock

    def _publish(self, result: FrameResult) -> None:
        assert self._view_sink is not None  # set by _build
        image = self._view_sink.image_for(result)
        height, width = image.shape[:2]
        with self._lock:
            view_wh = self._view_size_wh
        image = fit_within(image, view_wh)
        update = FrameUpdate(bgr_to_qimage(image), (width, height), result.frame.index, result.lines,
                             result.zones, (), result.latency_s, result.stats, 1)
        with self._lock:
            self._latest = update
            self._events.extend(result.events)
            self._frames_since_take += 1
            notify = not self._notify_pending
            self._notify_pending = True
        if notify:
            self.frameReady.emit()


def fit_within(image: np.ndarray, view_wh: tuple[int, int] | None) -> np.ndarray:
    """Reduce ``image`` (``(H, W, 3)`` uint8) to fit ``view_wh`` (w, h pixels; aspect kept,
    INTER_AREA) when it is larger; never enlarge; ``None`` keeps it as it is."""
    if view_wh is None:
        return image
    height, width = image.shape[:2]
    scale = min(view_wh[0] / width, view_wh[1] / height)
    if scale >= 1.0:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _with_output(config: PipelineConfig, video_output: Path | None) -> PipelineConfig:
    return replace(config, render=True, video_output=video_output)


def _one_line(exc: BaseException) -> str:
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def start_in_thread(worker: PipelineWorker, parent: QObject) -> QThread:
    """Move ``worker`` to a new ``QThread`` (a child of ``parent``, so Qt, not Python's garbage
    collector, owns it) and start it. The thread quits when the worker finishes and deletes
    itself once it has ended; do not use it after its ``finished`` signal. The worker moves
    back to the GUI thread when its run ends."""
    thread = QThread(parent)
    thread.setObjectName("pipeline-worker")
    worker.moveToThread(thread)
    thread.started.connect(worker.run)
    worker.finished.connect(thread.quit)
    thread.finished.connect(thread.deleteLater)
    thread.start()
    return thread
