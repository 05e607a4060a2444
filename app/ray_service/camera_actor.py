"""Camera actors: one camera's pipeline (capture, tracker, counters, its events) in an actor.

The pipeline is built and run by the in-process service's own code: a :class:`_CameraHost`
(the :class:`app.service.CameraHost` of one camera, building its pipeline with
:func:`app.service.build_camera_pipeline`) gives :class:`app.service.CameraRunner` its
detector, its event sinks and its metrics, and
``CameraRunner`` does the rest as in one process (states, restarts of a live source with backoff,
counts, metrics per frame). What differs:

- **Detection** goes to the pool of detector actors (:class:`RemoteDetectorPool`): each frame is
  put once into the node's object store and its reference sent to the camera's home detector
  (the one on its node); a detector actor that dies or does not answer within
  ``detect_timeout_s`` gets the same reference again on another actor; after
  ``detect_attempts_per_detector`` tries on every one the frame fails with
  :class:`DetectorUnavailableError` (the camera fails as it would with a failing detector in one
  process), so a camera never blocks forever.
- **Events** go to the hub actor (:class:`HubSink`), numbered in the order the camera produces
  them, so the hub writes each once (:meth:`app.ray_service.hub.Hub.write`).
- **Resuming.** Each :meth:`CameraWorker.run` asks the hub where the camera stands
  (:class:`app.ray_service.hub.ResumePoint`). A *live* source resumes from now: new events are
  numbered after the recorded ones and the counts shown add the recorded totals. A *file*
  resumes after the last event the hub has: the file is read again from its start and through
  the same tracker and counters, whose state at the resume point only a replay rebuilds
  exactly (track ids, tracks mid-crossing); the first ``events`` events of the replay are the
  recorded ones and are not sent again (the last of them is checked against the record, and a
  mismatch logged); the events after them are stamped with the first run's wall clock. The
  counts at the end equal an uninterrupted run's. The price: the frames before the resume point
  are detected again.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import supervision as sv

from app.batching import CameraDetector
from app.cameras import CameraSpec, CamerasFile
from app.counting import CountEvent
from app.counting.events import wall_time_iso
from app.metrics import ServiceMetrics
from app.ray_service._ray import DetectorUnavailableError, require_ray, was_restarted
from app.ray_service.config import RayServiceConfig
from app.ray_service.hub import ResumePoint, event_key
from app.service import CameraRunner, build_camera_pipeline
from app.sinks import EventSinkError

__all__ = ["CameraWorker", "HubSink", "RemoteDetectorPool"]

logger = logging.getLogger(__name__)


def is_live_source(source: str) -> bool:
    """A camera or stream (resumes from now) rather than a file or folder (resumes by replay);
    the rule of :class:`app.service.CameraRunner`."""
    return source.isdigit() or "://" in source


# ------------------------------------------------------------------------------ detection
class RemoteDetectorPool:
    """The detector actors as one camera sees them: ``for_camera(classes)`` and ``detect`` of
    an :class:`app.batching.BatchingDetector` (see the module docstring for the retries).

    Args:
        camera_id: for messages.
        detectors: ``(name, actor handle)`` pairs, the camera's home detector first.
        config: ``detect_timeout_s``, ``detect_attempts_per_detector``, ``detector_cooldown_s``.
        on_retry: called with the detector's name each time a frame is sent again elsewhere.
    """

    def __init__(self, camera_id: str, detectors: Sequence[tuple[str, Any]], config: RayServiceConfig,
                 on_retry: Callable[[str], None] | None = None) -> None:
        self.camera_id = camera_id
        self._config = config
        self._on_retry = on_retry
        self._lock = threading.Lock()
        self._detectors = list(detectors)
        self._suspect_until: dict[str, float] = {}
        self.retries = 0

    def set_detectors(self, detectors: Sequence[tuple[str, Any]]) -> None:
        """Replace the pool (it grew); the home detector first."""
        with self._lock:
            self._detectors = list(detectors)

    def for_camera(self, classes: Sequence[int] | None = None) -> CameraDetector:
        """The per-camera callable a pipeline calls (``image_bgr -> sv.Detections``)."""
        return CameraDetector(self, None if classes is None else tuple(int(c) for c in classes))  # type: ignore[arg-type]

    def detect(self, image_bgr: np.ndarray) -> sv.Detections:
        """Detections of one frame from a detector actor, with retries on the others.

        Raises:
            DetectorUnavailableError: every try failed (actors dead or too slow).
            whatever the detector itself raised for the frame (not retried: it would fail again).
        """
        ray = require_ray()
        from ray.exceptions import GetTimeoutError, RayActorError

        ref = ray.put(image_bgr)  # once: every retry sends the same object
        with self._lock:
            tries = self._config.detect_attempts_per_detector * len(self._detectors)
        last: BaseException | None = None
        for attempt in range(tries):
            name, handle, wait_s = self._pick()
            if wait_s > 0:
                time.sleep(wait_s)
            try:
                return ray.get(handle.detect.remote(ref), timeout=self._config.detect_timeout_s)
            except (RayActorError, GetTimeoutError) as exc:
                last = exc
                with self._lock:
                    self.retries += 1
                    self._suspect_until[name] = time.monotonic() + self._config.detector_cooldown_s
                logger.warning("camera %s: detector %s did not answer a frame (%s); sending it again (try %d of %d)",
                               self.camera_id, name, type(exc).__name__, attempt + 2, tries)
                if self._on_retry is not None:
                    self._on_retry(name)
        raise DetectorUnavailableError(
            f"camera {self.camera_id}: no detector actor answered a frame in {tries} tries of "
            f"{self._config.detect_timeout_s:g} s each; last: {type(last).__name__}: {last}")

    def _pick(self) -> tuple[str, Any, float]:
        """The first detector (home first) not suspect; else the one suspect the shortest,
        with how long to wait for it."""
        now = time.monotonic()
        with self._lock:
            for name, handle in self._detectors:
                if self._suspect_until.get(name, 0.0) <= now:
                    return name, handle, 0.0
            name, handle = min(self._detectors, key=lambda item: self._suspect_until.get(item[0], 0.0))
            return name, handle, min(1.0, max(0.0, self._suspect_until.get(name, 0.0) - now))


# ------------------------------------------------------------------------------ events
class HubSink:
    """A pipeline event sink that hands events to the hub (see the module docstring).

    Args:
        hub: the hub actor.
        camera_id: the camera.
        resume: the hub's record of the camera when this run started.
        replay: the run reads a file from its start again: its first ``resume.events`` events
            are the recorded ones and are not sent (a live run numbers its events after them).
        timeout_s: longest a write keeps trying while the hub is away (restarting).

    ``write_many`` raises :class:`app.sinks.EventSinkError` when the hub did not take the events
    within ``timeout_s``; the pipeline then isolates this sink (and reports the events lost).
    """

    def __init__(self, hub: Any, camera_id: str, resume: ResumePoint, replay: bool, timeout_s: float) -> None:
        self._hub = hub
        self._camera_id = camera_id
        self._resume = resume
        self._skip = resume.events if replay else 0
        self._seq = 0 if replay else resume.events  # sequence number of the next event produced
        self._wall_start_s = resume.wall_start_s if replay and resume.events else None
        self._timeout_s = timeout_s
        self.path = f"hub (camera {camera_id})"
        self.events_written = 0
        self.replayed = 0
        self.replay_mismatch: str | None = None

    def write_many(self, events: Sequence[CountEvent]) -> None:
        first_seq = self._seq
        self._seq += len(events)
        skipped = max(0, min(len(events), self._skip - first_seq))
        if skipped:
            self.replayed += skipped
            if first_seq + skipped == self._skip:
                self._check_replay(events[skipped - 1])
        fresh = list(events[skipped:])
        if not fresh:
            return
        if self._wall_start_s is not None:
            fresh = [dataclasses.replace(e, wall_time=wall_time_iso(self._wall_start_s + e.timestamp_s)) for e in fresh]
        self._send(first_seq + skipped, fresh)
        self.events_written += len(fresh)

    def close(self) -> None:
        """Nothing to close: the hub owns the outputs."""

    def _check_replay(self, event: CountEvent) -> None:
        expected = self._resume.last_event
        if expected is not None and event_key(event) != tuple(expected):
            self.replay_mismatch = f"replayed event {self._skip} is {event_key(event)}, the record has {tuple(expected)}"
            logger.error("camera %s: the replay does not reproduce the recorded events (%s): the detector is "
                         "not deterministic; counts after the resume may differ by the events in flight",
                         self._camera_id, self.replay_mismatch)
        else:
            logger.warning("camera %s: replay reached the last recorded event (%d events, frame %s); "
                           "new events from here", self._camera_id, self._skip, self._resume.last_frame_index)

    def _send(self, first_seq: int, events: list[CountEvent]) -> None:
        ray = require_ray()
        from ray.exceptions import GetTimeoutError, RayActorError

        deadline = time.monotonic() + self._timeout_s
        delay_s = 0.1
        while True:
            remaining = deadline - time.monotonic()
            try:
                ray.get(self._hub.write.remote(self._camera_id, first_seq, events), timeout=max(0.1, remaining))
                return
            except (RayActorError, GetTimeoutError) as exc:
                if time.monotonic() >= deadline:
                    raise EventSinkError(f"camera {self._camera_id}: the hub did not take {len(events)} event(s) "
                                         f"within {self._timeout_s:g} s: {type(exc).__name__}: {exc}") from exc
                logger.warning("camera %s: the hub is away (%s); trying again", self._camera_id, type(exc).__name__)
                time.sleep(min(delay_s, max(0.0, deadline - time.monotonic())))
                delay_s = min(2 * delay_s, 2.0)


class _HubCounts:
    """What :class:`app.service.CameraRunner` needs of an MQTT publisher: ``publish_counts``, sent
    to the hub without waiting."""

    def __init__(self, hub: Any) -> None:
        self._hub = hub

    def publish_counts(self, camera_id: str, counts: Mapping[str, Any]) -> None:
        self._hub.publish_counts.remote(camera_id, dict(counts))


class _CameraHost:
    """The :class:`app.service.CameraHost` of a camera actor: its detector is the remote pool,
    its event sink the hub, its MQTT counts go to the hub; the pipeline is built by
    :func:`app.service.build_camera_pipeline`, as in one process."""

    def __init__(self, cameras: CamerasFile, names: Sequence[str], pool: RemoteDetectorPool,  # noqa: D107
                 sinks: Sequence[Any], mqtt: Any | None, source_config: Any | None) -> None:
        self.file = cameras
        self.names = list(names)
        self.pool = pool
        self.sinks = list(sinks)
        self.source_config = source_config
        self.metrics = ServiceMetrics()
        self.mqtt = mqtt

    def build_camera_pipeline(self, spec: CameraSpec) -> Any:
        from app.assembly import resolve_classes

        classes = resolve_classes(spec.classes, self.names, f"{self.file.path}: camera {spec.id!r}: classes")
        return build_camera_pipeline(spec, self.pool.for_camera(classes), event_sinks=self.sinks,
                                     class_names=self.names, source_config=self.source_config)


# ------------------------------------------------------------------------------ the actor
class CameraWorker:
    """One camera actor (plain class; :class:`app.ray_service.RayService` makes it an actor
    with ``max_restarts`` and a few threads, so ``status`` answers while ``run`` runs).

    Args:
        spec: the camera.
        cameras: the cameras file (paths, detector section for the class filter).
        names: the detector's class names.
        hub: the hub actor.
        detectors: ``(name, handle)`` of the detector actors, this camera's home first.
        config: the service's options.
        source_config: :class:`app.sources.SourceConfig` (``None``: defaults).

    Raises:
        RayUnavailableError: Ray is missing in the worker.
    """

    def __init__(self, spec: CameraSpec, cameras: CamerasFile, names: Sequence[str], hub: Any,
                 detectors: Sequence[tuple[str, Any]], config: RayServiceConfig, source_config: Any | None = None) -> None:
        ray = require_ray()
        context = ray.get_runtime_context()
        self.spec = spec
        self.file = cameras
        self.names = list(names)
        self.hub = hub
        self.config = config
        self.source_config = source_config
        self.node_id = context.get_node_id()
        self.restarted = was_restarted(context)
        self.pool = RemoteDetectorPool(spec.id, detectors, config, on_retry=self._on_retry)
        self._camera: CameraRunner | None = None
        self._host: _CameraHost | None = None
        self._sink: HubSink | None = None
        self._resume: ResumePoint | None = None
        self._live = is_live_source(spec.source)
        self._stop = threading.Event()
        self.restarts = int(ray.get(hub.note_start.remote("camera", spec.id, self.node_id, self.restarted),
                                    timeout=config.hub_timeout_s))
        self._retries_counter = None
        logger.info("camera actor %s on node %s (pid %d)%s", spec.id, self.node_id[:12], os.getpid(),
                    f", restart {self.restarts}" if self.restarted else "")

    def run(self) -> dict[str, Any]:
        """Run the camera to the end of its file, or until :meth:`stop` (a live source); from
        where the hub's record says after a restart (module docstring). Returns the final
        :meth:`status`.

        Raises:
            whatever building the camera's host raised (the pipeline's own failures are states).
        """
        ray = require_ray()
        resume = ray.get(self.hub.resume_point.remote(self.spec.id), timeout=self.config.hub_timeout_s)
        self._resume = resume
        if resume.events:
            logger.warning("camera %s: resuming after %d recorded events (last at frame %s) %s",
                           self.spec.id, resume.events, resume.last_frame_index,
                           "from now (live source)" if self._live else "by replaying the file from its start")
        self._sink = HubSink(self.hub, self.spec.id, resume, replay=not self._live, timeout_s=self.config.hub_timeout_s)
        mqtt = _HubCounts(self.hub) if self.file.outputs.mqtt is not None else None
        self._host = _CameraHost(self.file, self.names, self.pool, [self._sink], mqtt, self.source_config)
        self._register_retry_metric(self._host.metrics)
        self._camera = CameraRunner(self.spec, self._host)
        if self._stop.is_set():
            return self.status()
        self._camera.start()
        while self._camera.thread.is_alive():
            self._camera.join(0.5)
        return self.status()

    def stop(self) -> None:
        """Stop the camera (cooperative: it writes out what it has inferred); returns at once."""
        self._stop.set()
        if self._camera is not None:
            self._camera.stop()

    def set_detectors(self, detectors: Sequence[tuple[str, Any]]) -> None:
        """The detector pool changed (grew); the home detector first."""
        self.pool.set_detectors(detectors)

    def status(self) -> dict[str, Any]:
        """The in-process camera status (state, frames, fps, events, counts) plus the node,
        restarts, detector retries and what the resume did."""
        from app.sources import mask_credentials

        if self._camera is None:
            status: dict[str, Any] = {"id": self.spec.id, "source": mask_credentials(self.spec.source),
                                      "state": "starting", "error": None, "restarts": 0, "frames": 0, "fps": 0.0,
                                      "events": 0, "counts": {"lines": {}, "zones": {}}}
        else:
            status = self._camera.status()
        if self._live and self._resume is not None and self._resume.events:
            status["counts"] = _add_totals(status["counts"], self._resume.totals)
            status["events"] += self._resume.events
        status.update(node_id=self.node_id, actor_restarts=self.restarts, detect_retries=self.pool.retries,
                      resumed_after_events=self._resume.events if self._resume is not None else 0,
                      replay_mismatch=self._sink.replay_mismatch if self._sink is not None else None)
        return status

    def metrics_text(self) -> bytes:
        """This camera's metrics (those of the in-process service) in the Prometheus format."""
        return self._host.metrics.exposition() if self._host is not None else b""

    def ping(self) -> str:
        """The node id (answers once the actor is up)."""
        return self.node_id

    # ------------------------------------------------------------------ helpers
    def _register_retry_metric(self, metrics: ServiceMetrics) -> None:
        from prometheus_client import Counter

        self._retries_counter = Counter("yolov7_track_detect_retries", "Frames sent again to another detector actor.",
                                        ["camera", "detector"], registry=metrics.registry)

    def _on_retry(self, detector: str) -> None:
        if self._retries_counter is not None:
            self._retries_counter.labels(camera=self.spec.id, detector=detector).inc()


def _add_totals(counts: Mapping[str, Any], totals: Mapping[tuple[str, str, str], int]) -> dict[str, Any]:
    """``counts`` (``CameraRunner.counts()`` shape) plus recorded event totals
    (``(zone, class_name, direction) -> n``): line in/out and zone enter/exit, by class too."""
    lines = {name: {"in": c["in"], "out": c["out"], "by_class": {k: dict(v) for k, v in c["by_class"].items()}}
             for name, c in counts.get("lines", {}).items()}
    zones = {name: dict(c) for name, c in counts.get("zones", {}).items()}
    for (zone, class_name, direction), n in totals.items():
        if direction in ("in", "out"):
            line = lines.setdefault(zone, {"in": 0, "out": 0, "by_class": {}})
            line[direction] += n
            by_class = line["by_class"].setdefault(class_name, {"in": 0, "out": 0})
            by_class[direction] += n
        else:
            zone_counts = zones.setdefault(zone, {"occupancy": 0, "enter": 0, "exit": 0})
            zone_counts[direction] = zone_counts.get(direction, 0) + n
    return {"lines": lines, "zones": zones}
