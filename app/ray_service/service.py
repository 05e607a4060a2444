"""The driver of the Ray service: starts the actors, watches them, answers ``/status``.

Layout (see :mod:`app.ray_service`): one hub actor on the driver's node (the shared outputs
and the durable record), ``detector_actors`` detector actors spread over the nodes, and one
camera actor per camera, placed by node affinity on the node of its home detector (cameras are
dealt to the detectors in turn), so that frames go through that node's object store and not
over the network. The node affinity is soft: a camera whose node is full goes elsewhere, and
its frames then do cross the network.

The driver runs each camera actor's ``run`` and watches the calls (a supervisor thread). A
camera actor that dies (its process killed, its node lost) is restarted by Ray, up to
``camera_max_restarts`` times; the driver logs it and calls ``run`` again, which resumes from the
hub's record (:mod:`app.ray_service.camera_actor`). A detector actor that dies is restarted by
Ray too; the cameras meanwhile send their frames to the other detector actors.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from app.cameras import CameraSpec, CamerasFile
from app.ray_service._ray import RayServiceError, require_ray
from app.ray_service.camera_actor import CameraWorker
from app.ray_service.config import RayServiceConfig
from app.ray_service.detector_actor import DetectorWorker
from app.ray_service.hub import Hub, durable_event_count
from app.ray_service.metrics import ClusterMetrics, Part

__all__ = ["RayService"]

logger = logging.getLogger(__name__)

#: Longest the driver waits for the first detector actor to load its model, seconds.
DETECTOR_START_TIMEOUT_S = 600.0
#: How soon the driver asks a restarting camera actor again to run, seconds.
RUN_RETRY_DELAY_S = 0.5
#: How many times in a row the driver asks a camera actor that is away to run (a minute).
RUN_RETRIES = 120


@dataclass
class _Entry:
    """The driver's view of one camera."""

    spec: CameraSpec
    actor: Any = None
    home: str = ""
    run_ref: Any = None
    state: str = "starting"
    error: str | None = None
    failures: int = 0
    retry_at: float | None = None
    submitted_at: float = 0.0
    last_status: dict[str, Any] = field(default_factory=dict)


class RayService:
    """The cameras of a cameras file on a Ray cluster; the methods of :class:`app.service.Service`
    that ``yolov7-track serve`` uses (``start``, ``wait``, ``stop``, ``reload``, ``status``,
    ``file``, ``metrics_server``).

    Args:
        cameras: a validated cameras file.
        detector_factory: ``() -> detector`` (``detect_batch`` and ``names``), called in each
            detector actor; ``None`` builds the file's ``detector`` section there. It must be
            picklable by Ray (a function or object of an importable module, or a closure).
        source_config: :class:`app.sources.SourceConfig` of every camera (``None``: defaults).
        config: the layout on the cluster (:class:`RayServiceConfig`).

    Raises:
        RayUnavailableError: Ray is not installed (one line: what to install).
        RayServiceError: the cluster cannot be joined, or a part did not start.
        app.assembly.ClassFilterError: a camera names a class the detector does not have.
        the errors of opening the outputs (raised by the hub) and of building the detector.
    """

    def __init__(self, cameras: CamerasFile, detector_factory: Callable[[], Any] | None = None,
                 source_config: Any | None = None, config: RayServiceConfig | None = None) -> None:
        self.file = cameras
        self.config = config if config is not None else RayServiceConfig()
        self.source_config = source_config
        self._detector_factory = detector_factory
        self._ray = require_ray()
        self._owns_ray = False
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._detectors: list[tuple[str, Any]] = []
        self._detector_nodes: dict[str, str] = {}
        self._hub: Any = None
        self.metrics: ClusterMetrics | None = None
        self.metrics_server: Any = None
        self._stopping = threading.Event()
        self._closed = False
        self._final_status: dict[str, Any] = {"cameras": []}
        self._supervisor: threading.Thread | None = None
        try:
            self._connect()
            self.driver_node_id = self._ray.get_runtime_context().get_node_id()
            self._start_hub()
            self.add_detectors(self.config.detector_actors, timeout_s=DETECTOR_START_TIMEOUT_S)
            self.names = self._ray.get(self._detectors[0][1].names.remote(), timeout=self.config.call_timeout_s)
            from app.assembly import resolve_classes

            for spec in cameras.cameras:  # refuse an unknown class before anything runs
                resolve_classes(spec.classes, self.names, f"{cameras.path}: camera {spec.id!r}: classes")
            self._open_metrics()
        except BaseException:
            self._teardown()
            raise

    # ------------------------------------------------------------------ public
    def start(self) -> None:
        """Start every camera actor and its run (returns at once)."""
        with self._lock:
            for index, spec in enumerate(self.file.cameras):
                self._entries[spec.id] = self._start_camera(spec, index)
        self._supervisor = threading.Thread(target=self._supervise, name="ray-service-supervisor", daemon=True)
        self._supervisor.start()

    def wait(self, timeout_s: float | None = None) -> bool:
        """Wait until every camera has ended (files finished, cameras failed for good, or
        :meth:`stop`); True if so."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            supervisor = self._supervisor
            if supervisor is None or not supervisor.is_alive():
                return True
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            supervisor.join(0.2 if remaining is None else min(0.2, remaining))

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop every camera (each writes out what it has inferred), close the outputs, end the
        actors, and shut Ray down if this service started it. Idempotent."""
        if self._closed:
            return
        self._stopping.set()
        with self._lock:
            entries = list(self._entries.values())
        for entry in entries:
            if entry.run_ref is not None:
                entry.actor.stop.remote()
        if self._supervisor is not None:
            self._supervisor.join(timeout_s)
            if self._supervisor.is_alive():
                logger.error("cameras still running %.0f s after the stop; their actors are ended", timeout_s)
        self._final_status = self.status()
        self._teardown()

    def reload(self, cameras: CamerasFile | None = None) -> dict[str, list[str]]:
        """Apply a new version of the cameras file, as far as Ray supports it yet: a larger
        ``ray.detectors`` grows the detector pool (the cameras get the new actors at once);
        changes to the cameras themselves need a restart of the service (logged).

        Returns:
            ``{"kept": [...], ..., "detectors_added": [...]}`` (camera ids; detector names).

        Raises:
            CamerasFileError: the new file is invalid; nothing changes then.
        """
        from app.cameras import load_cameras_file
        from app.ray_service.config import config_from_file

        new = cameras if cameras is not None else load_cameras_file(self.file.path)
        wanted = config_from_file(new.ray).detector_actors
        added = self.add_detectors(wanted - len(self._detectors)) if wanted > len(self._detectors) else []
        if new.cameras != self.file.cameras:
            logger.warning("%s: camera changes are not applied with --ray yet; restart the service", new.path)
        if added:
            logger.info("reloaded %s: detector pool grown by %s", new.path, ", ".join(added))
        return {"kept": [camera.id for camera in self.file.cameras], "recounted": [], "restarted": [],
                "removed": [], "added": [], "detectors_added": added}

    def add_detectors(self, n: int = 1, timeout_s: float | None = None) -> list[str]:
        """Grow the detector pool by ``n`` actors (spread over the nodes); the cameras get them as
        fallbacks at once. Returns their names.

        Raises:
            RayServiceError: an actor did not start within ``timeout_s`` (default
                ``call_timeout_s``).
        """
        ray = self._ray
        from ray.exceptions import GetTimeoutError, RayActorError

        actor_class = ray.remote(DetectorWorker).options(
            num_cpus=self.config.detector_num_cpus, num_gpus=self.config.detector_num_gpus,
            max_restarts=self.config.detector_max_restarts, max_task_retries=0,
            max_concurrency=self.config.detector_max_concurrency, scheduling_strategy="SPREAD")
        new = []
        for _ in range(n):
            name = f"detector-{len(self._detectors) + len(new)}"
            new.append((name, actor_class.remote(name, self.file, self._detector_factory, self._hub)))
        try:
            nodes = ray.get([handle.ping.remote() for _, handle in new],
                            timeout=timeout_s if timeout_s is not None else self.config.call_timeout_s)
        except (GetTimeoutError, RayActorError) as exc:
            for _, handle in new:
                ray.kill(handle, no_restart=True)
            raise RayServiceError(f"detector actors did not start: {type(exc).__name__}: {exc}") from exc
        with self._lock:
            for (name, handle), node in zip(new, nodes):
                self._detectors.append((name, handle))
                self._detector_nodes[name] = node
                logger.info("%s on node %s", name, node[:12])
            entries = list(self._entries.values())
        for entry in entries:
            entry.actor.set_detectors.remote(self._detector_order(entry.home))
        return [name for name, _ in new]

    def camera_actor(self, camera_id: str) -> Any:
        """The Ray actor handle of a camera (``ray.kill`` it to test a restart).

        Raises:
            KeyError: no such camera (or :meth:`start` not called yet).
        """
        with self._lock:
            return self._entries[camera_id].actor

    def detector_actors(self) -> dict[str, Any]:
        """``{name: actor handle}`` of the detector pool."""
        with self._lock:
            return dict(self._detectors)

    def status(self) -> dict[str, Any]:
        """What ``/status`` shows: every camera (state, node, counts, restarts, retries), the
        detector actors (node, batching), the hub (restarts, failed outputs). After
        :meth:`stop`: the last status taken before the actors ended."""
        if self._closed:
            return dict(self._final_status)
        with self._lock:
            entries = list(self._entries.values())
            detectors = list(self._detectors)
        asked = {entry.spec.id: entry.actor.status.remote() for entry in entries
                 if entry.run_ref is not None or not entry.last_status}
        answers = self._answers(asked)
        cameras = []
        for entry in entries:
            status = answers.get(entry.spec.id)
            if status is not None:
                entry.last_status = status
            status = dict(entry.last_status) if entry.last_status else {"id": entry.spec.id, "frames": 0, "events": 0,
                                                                         "counts": {"lines": {}, "zones": {}}}
            if entry.state in ("restarting", "failed", "stopped") or "state" not in status:
                status["state"] = entry.state  # the driver knows better than the last answer
            if entry.error:
                status["error"] = entry.error
            cameras.append(status)
        infos = self._answers({name: handle.info.remote() for name, handle in detectors})
        detector_status = [infos.get(name, {"name": name, "node_id": self._detector_nodes.get(name),
                                            "state": "not answering"}) for name, _ in detectors]
        hub = self._answers({"restarts": self._hub.restarts.remote(), "sink_errors": self._hub.sink_errors.remote()})
        return {"cameras": cameras, "detectors": detector_status, "restarts": hub.get("restarts"),
                "sink_errors": hub.get("sink_errors"), "driver_node_id": self.driver_node_id}

    # ------------------------------------------------------------------ starting
    def _connect(self) -> None:
        ray = self._ray
        if ray.is_initialized():
            return
        kwargs = {"include_dashboard": False, **dict(self.config.init_kwargs)}
        try:
            ray.init(address=self.config.address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise RayServiceError(f"cannot join the Ray cluster at {self.config.address or 'the default address'}: "
                                  f"{exc}") from exc
        self._owns_ray = True

    def _start_hub(self) -> None:
        from ray.exceptions import GetTimeoutError, RayActorError
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        ray = self._ray
        baseline = durable_event_count(self.file.outputs.events)
        self._hub = ray.remote(Hub).options(
            num_cpus=self.config.hub_num_cpus, max_restarts=-1, max_task_retries=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(self.driver_node_id, soft=False),
        ).remote(self.file, baseline)
        try:
            ray.get(self._hub.sink_errors.remote(), timeout=max(60.0, self.config.call_timeout_s))
        except (GetTimeoutError, RayActorError) as exc:
            raise RayServiceError(f"the hub (outputs {self.file.outputs.events}) did not start: {exc}") from exc

    def _start_camera(self, spec: CameraSpec, index: int) -> _Entry:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        home = self._detectors[index % len(self._detectors)][0]
        placement = (NodeAffinitySchedulingStrategy(self._detector_nodes[home], soft=True) if self.config.colocate_cameras
                     else "SPREAD")  # the file asked for it: frames may cross the network
        actor = self._ray.remote(CameraWorker).options(
            num_cpus=self.config.camera_num_cpus, max_restarts=self.config.camera_max_restarts, max_task_retries=0,
            max_concurrency=4, scheduling_strategy=placement,
        ).remote(spec, self.file, self.names, self._hub, self._detector_order(home), self.config, self.source_config)
        entry = _Entry(spec, actor, home, actor.run.remote(), "running", submitted_at=time.monotonic())
        if self.config.colocate_cameras:
            logger.info("camera %s: actor placed beside %s (node %s)", spec.id, home, self._detector_nodes[home][:12])
        else:
            logger.info("camera %s: actor spread over the cluster (home detector %s)", spec.id, home)
        return entry

    def _detector_order(self, home: str) -> list[tuple[str, Any]]:
        """The pool as ``home`` sees it: itself, then the others on its node, then the rest."""
        node = self._detector_nodes.get(home)
        return sorted(self._detectors, key=lambda d: (d[0] != home, self._detector_nodes.get(d[0]) != node))

    def _open_metrics(self) -> None:
        options = self.file.outputs.metrics
        if options is None:
            return
        from app.metrics import MetricsServer

        self.metrics = ClusterMetrics(self._metrics_parts, self._restart_counts)
        self.metrics_server = MetricsServer(self.metrics, self.status, host=options.get("host", "127.0.0.1"),  # type: ignore[arg-type]
                                            port=int(options.get("port", 9108)))
        logger.info("metrics at %s/metrics, status at %s/status", self.metrics_server.url, self.metrics_server.url)

    # ------------------------------------------------------------------ supervising
    def _supervise(self) -> None:
        """Watch every camera's run until all have ended (see the module docstring)."""
        ray = self._ray
        from ray.exceptions import RayActorError

        while True:
            now = time.monotonic()
            with self._lock:
                for entry in self._entries.values():
                    if entry.retry_at is not None and now >= entry.retry_at:
                        entry.retry_at, entry.run_ref, entry.submitted_at = None, entry.actor.run.remote(), now
                    elif entry.state == "restarting" and entry.run_ref is not None and now - entry.submitted_at >= 1.0:
                        entry.state, entry.failures = "running", 0  # the restarted actor took the run
                running = {entry.run_ref: entry for entry in self._entries.values() if entry.run_ref is not None}
                waiting = any(entry.retry_at is not None for entry in self._entries.values())
            if not running and not waiting:
                return
            if not running:
                time.sleep(0.1)
                continue
            ready, _ = ray.wait(list(running), num_returns=len(running), timeout=0.5)
            for ref in ready:
                entry = running[ref]
                try:
                    final = ray.get(ref)
                except RayActorError as exc:
                    self._run_lost(entry, exc)
                except Exception as exc:  # noqa: BLE001 - the camera's run raised: that camera failed, others go on
                    entry.run_ref, entry.state = None, "failed"
                    entry.error = f"{type(exc).__name__}: {exc}"
                    logger.error("camera %s failed: %s", entry.spec.id, entry.error)
                else:
                    entry.run_ref, entry.last_status = None, final
                    entry.state = final.get("state", "finished")
                    logger.info("camera %s: %s, %s frames, %s events", entry.spec.id, entry.state,
                                final.get("frames"), final.get("events"))

    def _run_lost(self, entry: _Entry, exc: BaseException) -> None:
        """A camera's run call failed because its actor died or is restarting: ask again shortly
        (Ray restarts the actor; the run resumes from the hub's record), unless the service is
        stopping, Ray gave up on the actor, or it does not come back within
        ``RUN_RETRIES * RUN_RETRY_DELAY_S``."""
        from ray.exceptions import ActorDiedError

        entry.run_ref = None
        if self._stopping.is_set():
            entry.state = "stopped"
            return
        restarts = (self._restart_counts() or {}).get("camera", {}).get(entry.spec.id, 0)
        entry.failures += 1
        if isinstance(exc, ActorDiedError) and restarts >= self.config.camera_max_restarts or entry.failures > RUN_RETRIES:
            entry.state = "failed"
            entry.error = f"its actor died and did not come back ({restarts} restarts): {type(exc).__name__}"
            logger.error("camera %s: %s", entry.spec.id, entry.error)
            return
        if entry.state != "restarting":
            logger.warning("camera %s: its actor died (%s); Ray restarts it (%d restarts so far, at most %d) and "
                           "the camera resumes from its recorded events", entry.spec.id, type(exc).__name__, restarts,
                           self.config.camera_max_restarts)
        entry.state = "restarting"
        entry.retry_at = time.monotonic() + RUN_RETRY_DELAY_S

    # ------------------------------------------------------------------ helpers
    def _answers(self, refs: Mapping[str, Any]) -> dict[str, Any]:
        """The answers that came within ``call_timeout_s``; actors that died or did not answer
        are left out (logged at debug level)."""
        if not refs:
            return {}
        ray = self._ray
        from ray.exceptions import RayError

        ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=self.config.call_timeout_s)
        ready_set = set(ready)
        out = {}
        for key, ref in refs.items():
            if ref not in ready_set:
                continue
            try:
                out[key] = ray.get(ref)
            except RayError as exc:
                logger.debug("%s did not answer: %s", key, exc)
        return out

    def _metrics_parts(self) -> list[Part]:
        with self._lock:
            cameras = {entry.spec.id: entry.actor for entry in self._entries.values()}
            detectors = list(self._detectors)
        refs: dict[str, Any] = {f"camera:{cid}": actor.metrics_text.remote() for cid, actor in cameras.items()}
        refs.update({f"detector:{name}": handle.metrics_text.remote() for name, handle in detectors})
        answers = self._answers(refs)
        return [Part({"detector": key.split(":", 1)[1]}, answers.get(key)) if key.startswith("detector:")
                else Part({}, answers.get(key), required_label="camera") for key in refs]

    def _restart_counts(self) -> dict[str, dict[str, int]] | None:
        return self._answers({"r": self._hub.restarts.remote()}).get("r")

    def _teardown(self) -> None:
        """Close the outputs, end the actors, stop serving metrics, shut Ray down if ours."""
        if self._closed:
            return
        self._closed = True
        ray = self._ray
        from ray.exceptions import RayError

        if self.metrics_server is not None:
            self.metrics_server.close()
        with self._lock:
            entries = list(self._entries.values())
            detectors = list(self._detectors)
        for entry in entries:  # still running after the stop: ended before the outputs close
            if entry.run_ref is not None:
                ray.kill(entry.actor, no_restart=True)
        if self._hub is not None:
            try:
                errors = ray.get(self._hub.close.remote(), timeout=max(30.0, self.config.call_timeout_s))
            except RayError as exc:
                logger.error("closing the outputs failed: %s: %s", type(exc).__name__, exc)
            else:
                for line in errors:
                    logger.error("output failed during the run: %s", line)
        for entry in entries:
            if entry.actor is not None:
                ray.kill(entry.actor, no_restart=True)
        for _, handle in detectors:
            ray.kill(handle, no_restart=True)
        if self._hub is not None:
            ray.kill(self._hub, no_restart=True)
        if self._owns_ray:
            ray.shutdown()
