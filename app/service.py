"""``yolov7-track serve CAMERAS.yaml``: many cameras in one process, sharing one detector.

Each camera runs its own :class:`app.pipeline.Pipeline` (capture thread, drop-oldest queue for
live sources, tracker, counting engine) in a thread of its own; their detectors are views of one
:class:`app.batching.BatchingDetector`, which batches the frames of all cameras into one forward
pass (``max_batch`` frames, or what arrived within ``max_wait_ms``).

- A live camera that drops reconnects on its own (:mod:`app.sources.live`); one that gives up
  or fails is started again after ``restart_delay_s`` (doubling up to a minute), and never stops
  the others. A file camera ends at the end of its file.
- Events get the camera's id and their wall time (:class:`app.pipeline.PipelineConfig`) and go,
  as they happen, to the events file (one for all cameras), MQTT and the webhook (both spooled
  on disk while their peer is down). Counts go to MQTT (retained) and to ``/status``; metrics to
  ``/metrics`` (:mod:`app.metrics`).
- :meth:`Service.reload` (SIGHUP) reads the file again: unchanged cameras go on untouched;
  cameras whose lines or zones changed get them at their next frame, and keep the counts of the
  unchanged ones (:class:`app.counting.CountingEngine`); other changes restart the camera;
  removed cameras stop; new ones start. A changed ``detector`` or ``outputs`` section needs a
  restart (logged).
- :meth:`Service.stop` (SIGTERM, Ctrl-C) stops every camera; each writes out what it has
  inferred and finalizes its outputs; then the shared outputs are closed.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from app.batching import BatchingDetector
from app.cameras import CameraSpec, CamerasFile, DetectorSpec, OutputsSpec, load_cameras_file
from app.counting import CountEvent
from app.frame_sinks import FrameSink
from app.pipeline import FrameResult, Pipeline, PipelineConfig
from yolov7_track.errors import Yolov7TrackError

__all__ = [
    "CameraHost",
    "CameraRunner",
    "Service",
    "ServiceError",
    "ServiceOutputs",
    "SharedSink",
    "build_camera_pipeline",
    "build_service_detector",
]

logger = logging.getLogger(__name__)

#: First wait before a failed live camera is started again; doubles up to MAX_RESTART_DELAY_S.
RESTART_DELAY_S = 2.0
MAX_RESTART_DELAY_S = 60.0
#: Seconds between two count messages of one camera to MQTT (counts change with every event).
COUNTS_PUBLISH_INTERVAL_S = 1.0


class ServiceError(Yolov7TrackError):
    """The service cannot start (detector, outputs) or was misused."""


class SharedSink:
    """One camera's handle on an output every camera writes to: writes pass through, ``close``
    does nothing (the service closes the output once every camera is done)."""

    def __init__(self, write_many: Callable[[Sequence[CountEvent]], None], name: str,
                 failure: Callable[[], BaseException | None] = lambda: None) -> None:
        self._write_many = write_many
        self.path = name
        self._failure = failure

    def write_many(self, events: Sequence[CountEvent]) -> None:
        if events:
            self._write_many(events)

    @property
    def failure(self) -> BaseException | None:
        return self._failure()

    def close(self) -> None:
        pass


class CameraHost(Protocol):
    """What a :class:`CameraRunner` needs of the service that runs it (the in-process
    :class:`Service`, or a Ray camera actor's host in :mod:`app.ray_service`).

    ``build_camera_pipeline(spec)`` builds the camera's pipeline (each start and restart);
    ``metrics`` (an :class:`app.metrics.ServiceMetrics` or ``None``) and ``mqtt`` (something
    with ``publish_counts(camera_id, counts)``, or ``None``) receive its figures.
    """

    metrics: Any
    mqtt: Any

    def build_camera_pipeline(self, spec: CameraSpec) -> Pipeline: ...


class CameraRunner:
    """One camera: its spec, its current pipeline and the thread that runs (and restarts) it.

    Args:
        spec: the camera.
        service: its :class:`CameraHost`.
    """

    def __init__(self, spec: CameraSpec, service: CameraHost) -> None:
        self.spec = spec
        self.service = service
        self.pipeline: Pipeline | None = None
        self.state = "starting"
        self.error: str | None = None
        self.restarts = 0
        self.frames = 0
        self.events = 0
        self.fps = 0.0
        self.lines: tuple = ()
        self.zones: tuple = ()
        self._stop = threading.Event()
        self._last_counts_s = 0.0
        self._reconnects_seen = 0
        self._dropped_seen = 0
        self.thread = threading.Thread(target=self._run, name=f"camera-{spec.id}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        pipeline = self.pipeline
        if pipeline is not None:
            pipeline.stop()

    def join(self, timeout_s: float) -> None:
        self.thread.join(timeout_s)

    def set_counting(self, counting: Sequence[Any]) -> None:
        self.spec = dataclasses.replace(self.spec, counting=tuple(counting))
        if self.pipeline is not None:
            self.pipeline.set_counting(self.spec.counting)

    # ------------------------------------------------------------------ thread
    def _run(self) -> None:
        delay_s = RESTART_DELAY_S
        while not self._stop.is_set():
            self._set_state("connecting")
            try:
                pipeline = self.service.build_camera_pipeline(self.spec)
            except Exception as exc:  # noqa: BLE001 - recorded and shown in /status; others go on
                live = self.spec.source.isdigit() or "://" in self.spec.source
                self._fail(exc)
                if not live:
                    return
            else:
                self.pipeline = pipeline
                if self._stop.is_set():
                    pipeline.stop()
                self._set_state("running")
                try:
                    report = pipeline.run(on_result=self._on_result)
                except BaseException as exc:  # noqa: BLE001 - one camera's failure never stops the others
                    self._fail(exc)
                    live = pipeline.source.is_live
                else:
                    self.lines, self.zones = report.lines, report.zones
                    if report.status == "failed":
                        self._fail(RuntimeError(report.error or "failed"))
                    else:
                        self._set_state("stopped" if self._stop.is_set() else "finished")
                    live = pipeline.source.is_live
                    if not live or self._stop.is_set():
                        return
                    if report.status != "failed":  # a live source ended on its own: it gave up
                        self._fail(RuntimeError(f"{report.source} ended"))
                if not live:
                    return
            if self._stop.wait(delay_s):
                return
            delay_s = min(2 * delay_s, MAX_RESTART_DELAY_S)
            self.restarts += 1
            logger.warning("camera %s: starting again (restart %d)", self.spec.id, self.restarts)

    def _fail(self, exc: BaseException) -> None:
        self.error = f"{type(exc).__name__}: {exc}"
        self._set_state("failed")
        logger.error("camera %s failed: %s", self.spec.id, self.error)

    def _set_state(self, state: str) -> None:
        self.state = state
        if self.service.metrics is not None:
            self.service.metrics.set_camera_state(self.spec.id, state)

    def _on_result(self, result: FrameResult) -> None:
        self.frames += 1
        self.events += len(result.events)
        self.lines, self.zones = result.lines, result.zones
        self.fps = result.stats.fps
        metrics = self.service.metrics
        if metrics is not None:
            camera = self.spec.id
            metrics.frame_processed(camera, result.latency_s)
            metrics.set_fps(camera, result.stats.fps)
            for event in result.events:
                metrics.count_event(camera, event.zone, event.class_name, event.direction.value)
            dropped = result.stats.frames_dropped
            if dropped > self._dropped_seen:
                metrics.frame_dropped(camera, dropped - self._dropped_seen)
                self._dropped_seen = dropped
            reconnects = result.stats.reconnects
            for _ in range(reconnects - self._reconnects_seen):
                metrics.reconnect(camera)
            self._reconnects_seen = max(self._reconnects_seen, reconnects)
        now = time.monotonic()
        if self.service.mqtt is not None and (result.events or now - self._last_counts_s >= COUNTS_PUBLISH_INTERVAL_S):
            self._last_counts_s = now
            self.service.mqtt.publish_counts(self.spec.id, self.counts())

    def counts(self) -> dict[str, Any]:
        """Counts so far, by line and zone (JSON-ready)."""
        return {
            "lines": {line.name: {"in": line.in_count, "out": line.out_count,
                                  "by_class": {k: {"in": v[0], "out": v[1]} for k, v in line.by_class.items()}}
                      for line in self.lines},
            "zones": {zone.name: {"occupancy": zone.occupancy, "enter": zone.enter_count, "exit": zone.exit_count}
                      for zone in self.zones},
        }

    def status(self) -> dict[str, Any]:
        from app.sources import mask_credentials

        return {"id": self.spec.id, "source": mask_credentials(self.spec.source), "state": self.state,
                "error": self.error, "restarts": self.restarts, "frames": self.frames, "fps": round(self.fps, 2),
                "events": self.events, "counts": self.counts()}


class Service:
    """The cameras of a cameras file, one shared detector and the outputs (module docstring).

    Args:
        cameras: a validated cameras file (:func:`app.cameras.load_cameras_file`).
        detector: ``detect_batch(frames_bgr) -> [sv.Detections]`` plus ``names`` (e.g. a
            :class:`detector.Detector`); ``None`` builds one from the file's ``detector``
            section through :func:`app.assembly.build_detector`.
        source_config: how every camera opens, times out and reconnects
            (:class:`app.sources.SourceConfig`; ``None``: its defaults).
        frame_sinks: camera id -> the :class:`app.frame_sinks.FrameSink` outputs of that camera's
            annotated frames (the GUI's camera grid); called at every (re)start of the camera, and
            the pipeline closes what it returns. ``None``: no frame outputs besides
            ``video_output``.

    Raises:
        ServiceError, and the errors of the detector, the events file and the outputs.
    """

    def __init__(self, cameras: CamerasFile, detector: Any | None = None, source_config: Any | None = None,
                 frame_sinks: Callable[[str], Sequence[FrameSink]] | None = None) -> None:
        self.file = cameras
        self.source_config = source_config
        self._frame_sinks = frame_sinks
        self._lock = threading.Lock()
        self._cameras: dict[str, CameraRunner] = {}
        self._closers: list[Callable[[], None]] = []
        self.outputs = ServiceOutputs()
        self._stopped = threading.Event()
        try:
            self.detector = detector if detector is not None else self._build_detector()
            self.names = [str(n) for n in self.detector.names]
            spec = cameras.detector
            self.batcher = BatchingDetector(self.detector.detect_batch, spec.max_batch, spec.max_wait_ms,
                                            on_batch=self._on_batch, workers=spec.workers)
            self._closers.append(self.batcher.close)
            for camera in cameras.cameras:
                self._class_ids(camera)  # refuse an unknown class before anything runs
            self.outputs = ServiceOutputs.open(cameras.outputs, status=self.status)
            self._closers.append(self.outputs.close)
        except BaseException:
            self._close()
            raise

    @property
    def metrics(self) -> Any:
        """The :class:`app.metrics.ServiceMetrics` of ``/metrics``, or ``None``."""
        return self.outputs.metrics

    @property
    def mqtt(self) -> Any:
        """The :class:`app.mqtt_out.MqttPublisher`, or ``None``."""
        return self.outputs.mqtt

    @property
    def metrics_server(self) -> Any:
        """The :class:`app.metrics.MetricsServer` (``/metrics``, ``/status``), or ``None``."""
        return self.outputs.metrics_server

    # ------------------------------------------------------------------ public
    def start(self) -> None:
        """Start every camera (returns at once)."""
        with self._lock:
            for spec in self.file.cameras:
                self._start_camera(spec)

    def wait(self, timeout_s: float | None = None) -> bool:
        """Wait until every camera has ended (files finished, or :meth:`stop`); True if so."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            with self._lock:
                threads = [camera.thread for camera in self._cameras.values()]
            if not any(thread.is_alive() for thread in threads):
                return True
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            for thread in threads:
                thread.join(0.2 if remaining is None else min(0.2, remaining))

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop every camera, wait for them to write out their frames, close the outputs."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        with self._lock:
            cameras = list(self._cameras.values())
        for camera in cameras:
            camera.stop()
        for camera in cameras:
            camera.join(timeout_s)
        self._close()

    def reload(self, cameras: CamerasFile | None = None) -> dict[str, list[str]]:
        """Apply a new version of the cameras file (read again from disk when ``None``).

        Returns:
            ``{"kept": [...], "recounted": [...], "restarted": [...], "removed": [...], "added": [...]}``
            camera ids.

        Raises:
            CamerasFileError: the new file is invalid; nothing changes then.
        """
        new = cameras if cameras is not None else load_cameras_file(self.file.path)
        for camera in new.cameras:
            self._class_ids(camera)
        if new.detector != self.file.detector or new.outputs != self.file.outputs:
            logger.warning("%s: changes to 'detector' or 'outputs' take effect at the next start", new.path)
        changes: dict[str, list[str]] = {"kept": [], "recounted": [], "restarted": [], "removed": [], "added": []}
        with self._lock:
            new_ids = {spec.id for spec in new.cameras}
            for camera_id in [i for i in self._cameras if i not in new_ids]:
                self._remove_camera(camera_id)
                changes["removed"].append(camera_id)
            for spec in new.cameras:
                current = self._cameras.get(spec.id)
                if current is None:
                    self._start_camera(spec)
                    changes["added"].append(spec.id)
                elif current.spec == spec:
                    changes["kept"].append(spec.id)
                elif dataclasses.replace(current.spec, counting=spec.counting) == spec:
                    current.set_counting(spec.counting)
                    changes["recounted"].append(spec.id)
                else:
                    self._remove_camera(spec.id)
                    self._start_camera(spec)
                    changes["restarted"].append(spec.id)
            self.file = dataclasses.replace(self.file, cameras=new.cameras)
        logger.info("reloaded %s: %s", new.path, {k: v for k, v in changes.items() if v})
        return changes

    def status(self) -> dict[str, Any]:
        """What ``/status`` shows: every camera's state, fps and counts, and the batching."""
        with self._lock:
            cameras = [camera.status() for camera in self._cameras.values()]
        return {"cameras": cameras, "detector": {"batches": self.batcher.batches, "frames": self.batcher.frames,
                                                 "mean_batch": round(self.batcher.mean_batch, 3)}}

    def camera(self, camera_id: str) -> CameraRunner:
        return self._cameras[camera_id]

    # ------------------------------------------------------------------ building
    def _build_detector(self) -> Any:
        return build_service_detector(self.file.detector)

    def _class_ids(self, spec: CameraSpec) -> tuple[int, ...] | None:
        from app.assembly import resolve_classes

        return resolve_classes(spec.classes, self.names, f"{self.file.path}: camera {spec.id!r}: classes")

    def build_camera_pipeline(self, spec: CameraSpec) -> Pipeline:
        """The pipeline of camera ``spec`` on the shared detector and outputs (:class:`CameraHost`)."""
        return build_camera_pipeline(
            spec, self.batcher.for_camera(self._class_ids(spec)), event_sinks=self.outputs.sinks,
            class_names=self.names, source_config=self.source_config,
            frame_sinks=(lambda: self._frame_sinks(spec.id)) if self._frame_sinks is not None else None)

    def _start_camera(self, spec: CameraSpec) -> None:
        camera = CameraRunner(spec, self)
        self._cameras[spec.id] = camera
        camera.start()

    def _remove_camera(self, camera_id: str) -> None:
        camera = self._cameras.pop(camera_id)
        camera.stop()
        camera.join(30.0)
        if self.metrics is not None:
            self.metrics.camera_removed(camera_id)

    def _on_batch(self, size: int, seconds: float) -> None:
        if self.metrics is not None:
            self.metrics.observe_batch(size)

    def _close(self) -> None:
        """Close the batcher, then the outputs; every one is closed, errors are logged."""
        closers, self._closers = self._closers, []
        for close in reversed(closers):
            _close_logged(close)


# ------------------------------------------------------------------------------ parts
def build_service_detector(spec: DetectorSpec) -> Any:
    """The shared detector of a cameras file's ``detector`` section, through the one assembly
    path (:func:`app.assembly.build_detector`).

    Raises:
        the errors of :func:`app.assembly.build_detector`.
    """
    from app.assembly import build_detector
    from detector import DetectorConfig

    config = DetectorConfig(img_size=spec.img_size, conf_thres=spec.conf, iou_thres=spec.iou, device=spec.device,
                            precision=spec.precision, backend=spec.backend, num_threads=spec.threads)
    detector = build_detector(spec.weights, config)
    logger.info("shared detector: %s on %s, %s %s, batches of up to %d frames within %g ms",
                spec.weights, detector.device, detector.backend, detector.precision, spec.max_batch, spec.max_wait_ms)
    return detector


def build_camera_pipeline(spec: CameraSpec, detect: Any, *, event_sinks: Sequence[Any], class_names: Sequence[str],
                          source_config: Any | None = None,
                          frame_sinks: Callable[[], Sequence[FrameSink]] | None = None) -> Pipeline:
    """One camera's pipeline (:func:`app.assembly.build_pipeline`): its source opened and paced
    (``vid_stride``, ``fps_cap``), its tracker, lines and zones, its share of the event sinks.

    Args:
        spec: the camera.
        detect: its detector (a view of a batching detector, with the camera's class filter).
        event_sinks: the shared event outputs (:class:`SharedSink`; the pipeline's ``close`` of
            them does nothing).
        class_names: the detector's class names.
        source_config: :class:`app.sources.SourceConfig` (``None``: defaults).
        frame_sinks: ``() -> frame sinks`` of this camera (called once per build), or ``None``.

    Raises:
        the errors of opening the source and of :func:`app.assembly.build_pipeline`; what was
        opened is closed first.
    """
    from app.assembly import TrackerChoice, build_pipeline, pace_source
    from app.sources import open_source

    source = pace_source(open_source(spec.source, source_config), spec.vid_stride, spec.fps_cap)
    sinks: list[FrameSink] = []
    try:
        sinks = list(frame_sinks()) if frame_sinks is not None else []
        config = PipelineConfig(camera_id=spec.id, video_output=spec.video_output,
                                render=spec.video_output is not None or bool(sinks))
        return build_pipeline(source, detect, TrackerChoice(spec.tracker, spec.tracker_params), counting=spec.counting,
                              event_sinks=event_sinks, config=config, class_names=class_names, frame_sinks=sinks)
    except BaseException:
        for resource in (*sinks, source):
            resource.close()
        raise


class ServiceOutputs:
    """The outputs every camera shares: the events file, MQTT, the webhook and the metrics
    server (``/metrics``, ``/status``), opened from a cameras file's ``outputs`` section.

    Attributes:
        sinks: the event outputs as :class:`SharedSink` (give them to every camera's pipeline).
        mqtt: the :class:`app.mqtt_out.MqttPublisher`, or ``None``.
        metrics: the :class:`app.metrics.ServiceMetrics`, or ``None``.
        metrics_server: the :class:`app.metrics.MetricsServer`, or ``None``.
    """

    def __init__(self) -> None:
        self.sinks: list[SharedSink] = []
        self.mqtt: Any | None = None
        self.metrics: Any | None = None
        self.metrics_server: Any | None = None
        self._closers: list[Callable[[], None]] = []

    @classmethod
    def open(cls, outputs: OutputsSpec, status: Callable[[], dict[str, Any]] | None = None) -> ServiceOutputs:
        """Open what ``outputs`` asks for; the metrics server only with a ``status`` callable
        (what ``/status`` shows).

        Raises:
            the errors of the outputs; those already open are closed first.
        """
        self = cls()
        try:
            self._open(outputs, status)
        except BaseException:
            self.close()
            raise
        return self

    def _open(self, outputs: OutputsSpec, status: Callable[[], dict[str, Any]] | None) -> None:
        if outputs.events is not None:
            from app.sinks import open_event_sink

            sink = open_event_sink(outputs.events)
            self._closers.append(sink.close)
            self.sinks.append(SharedSink(sink.write_many, str(outputs.events), lambda: sink.failure))
        spool_dir = outputs.spool_dir
        if spool_dir is None:
            from detector.hub import cache_dir

            spool_dir = cache_dir() / "spool"
        if outputs.mqtt is not None:
            from app.mqtt_out import MqttConfig, MqttPublisher

            mqtt = self.mqtt = MqttPublisher(MqttConfig(spool_dir=spool_dir, **dict(outputs.mqtt)))
            self._closers.append(mqtt.close)
            self.sinks.append(SharedSink(
                lambda events: [mqtt.publish_event(e.camera_id or "", e.as_dict()) for e in events], "mqtt",
                lambda: mqtt.failure))
        if outputs.webhook is not None:
            from app.webhook_out import WebhookConfig, WebhookPoster

            poster = WebhookPoster(WebhookConfig(spool_dir=spool_dir, **dict(outputs.webhook)))
            self._closers.append(poster.close)
            self.sinks.append(SharedSink(
                lambda events: [poster.post_event(e.camera_id or "", e.as_dict()) for e in events],
                str(outputs.webhook.get("url"))))
        if outputs.metrics is not None and status is not None:
            from app.metrics import MetricsServer, ServiceMetrics

            self.metrics = ServiceMetrics()
            options = dict(outputs.metrics)
            self.metrics_server = MetricsServer(self.metrics, status, host=options.get("host", "127.0.0.1"),
                                                port=int(options.get("port", 9108)))
            self._closers.append(self.metrics_server.close)
            logger.info("metrics at %s/metrics, status at %s/status", self.metrics_server.url, self.metrics_server.url)

    def close(self) -> None:
        """Close in reverse order of opening; every one is closed, errors are logged."""
        closers, self._closers = self._closers, []
        for close in reversed(closers):
            _close_logged(close)


def _close_logged(close: Callable[[], None]) -> None:
    try:
        close()
    except Exception as exc:  # noqa: BLE001 - every output gets closed; reported
        logger.error("closing an output failed: %s: %s", type(exc).__name__, exc)
