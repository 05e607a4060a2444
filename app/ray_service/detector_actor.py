"""Detector actors: the in-process service's dynamic batching, one instance per actor.

Each actor holds one detector and an :class:`app.batching.BatchingDetector` over it. Ray runs
the actor's :meth:`DetectorWorker.detect` calls on up to ``detector_max_concurrency`` threads
at once, so the frames that cameras send meanwhile wait in the batcher's queue and go through
one forward pass together (``max_batch`` frames, or what arrived within ``max_wait_ms``), as
they do in one process. Frames arrive as object-store references, which Ray resolves to
read-only numpy views without a copy when the camera is on the same node.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import supervision as sv

from app.batching import BatchingDetector
from app.cameras import CamerasFile
from app.metrics import ServiceMetrics
from app.service import build_service_detector

__all__ = ["DetectorWorker"]

logger = logging.getLogger(__name__)


class DetectorWorker:
    """One detector actor (plain class; :class:`app.ray_service.RayService` makes it an actor).

    Args:
        name: the actor's name in logs, metrics and ``/status`` (``detector-0``, ...).
        cameras: the cameras file (its ``detector`` section).
        detector_factory: ``() -> detector`` (``detect_batch(frames_bgr) -> [sv.Detections]``
            and ``names``), called once per (re)start; ``None`` builds the file's detector.
        hub: the hub actor, told of each (re)start; ``None`` in tests of this class alone.

    Raises:
        the errors of building the detector, and :class:`app.batching.BatchingError`.
    """

    def __init__(self, name: str, cameras: CamerasFile, detector_factory: Callable[[], Any] | None = None,
                 hub: Any | None = None) -> None:
        from app.ray_service._ray import require_ray, was_restarted

        ray = require_ray()
        context = ray.get_runtime_context()
        self.name = name
        self.node_id = context.get_node_id()
        self.restarted = was_restarted(context)
        self.detector = detector_factory() if detector_factory is not None else build_service_detector(cameras.detector)
        self.metrics = ServiceMetrics()
        spec = cameras.detector
        self.batcher = BatchingDetector(self.detector.detect_batch, spec.max_batch, spec.max_wait_ms,
                                        on_batch=lambda size, _s: self.metrics.observe_batch(size), workers=spec.workers)
        if hub is not None:
            hub.note_start.remote("detector", name, self.node_id, self.restarted)
        logger.info("detector actor %s on node %s (pid %d)%s", name, self.node_id[:12], os.getpid(),
                    ", restarted" if self.restarted else "")

    def detect(self, image_bgr: np.ndarray) -> sv.Detections:
        """Detections of one frame (``(H, W, 3)`` uint8 BGR), batched with the frames of the
        other cameras that arrive meanwhile.

        Raises:
            app.batching.BatchingError: the batcher is closed; whatever the detector raised.
        """
        return self.batcher.detect(image_bgr)

    def names(self) -> list[str]:
        """The detector's class names (id = position)."""
        return [str(n) for n in self.detector.names]

    def info(self) -> dict[str, Any]:
        """Name, node, pid, whether this is a restarted actor, and the batching so far."""
        return {"name": self.name, "node_id": self.node_id, "pid": os.getpid(), "restarted": self.restarted,
                "batches": self.batcher.batches, "frames": self.batcher.frames,
                "mean_batch": round(self.batcher.mean_batch, 3)}

    def metrics_text(self) -> bytes:
        """This actor's metrics (the batch-size histogram) in the Prometheus text format."""
        return self.metrics.exposition()

    def ping(self) -> str:
        """The node id (answers once the actor is up)."""
        return self.node_id
