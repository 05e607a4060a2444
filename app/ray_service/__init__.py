"""``yolov7-track serve CAMERAS.yaml --ray``: the cameras file on a Ray cluster (issue 15).

The same cameras file and the same per-camera code as the in-process service
(:mod:`app.service`), laid out as Ray actors::

    driver (RayService)            hub actor (driver's node)         detector actors (pool)
    start, supervise, /status  ->  events file, MQTT, webhook,  <-   BatchingDetector each,
    /metrics (merged)              durable record per camera         SPREAD over the nodes
                                          ^                               ^
                                          | events (numbered)             | frames (object refs)
                                   camera actors, one per camera, beside their home detector:
                                   capture -> tracker -> counters (app.pipeline via app.service)

- :mod:`.camera_actor`: one camera's pipeline; frames go to the detector pool with retries on
  another actor and a timeout; events go to the hub; a restarted camera resumes from the hub's
  record (a file by replay, exactly; a live source from now).
- :mod:`.detector_actor`: the in-process dynamic batching, one per actor.
- :mod:`.hub`: the shared outputs (opened by the in-process service's code) and the record.
- :mod:`.service`: the driver (:class:`RayService`).
- :mod:`.metrics`: one ``/metrics`` with every actor's series.

Ray itself is imported only by :func:`require_ray`, when a :class:`RayService` is created (or an
actor starts); ``app.serve_cmd`` imports this package only for ``--ray``. Without the extra,
:class:`RayUnavailableError` says in one line what to install.
"""

from __future__ import annotations

from app.ray_service._ray import (
    INSTALL_HINT,
    DetectorUnavailableError,
    RayServiceError,
    RayUnavailableError,
    require_ray,
)
from app.ray_service.config import RayServiceConfig, RayServiceConfigError
from app.ray_service.service import RayService

__all__ = [
    "INSTALL_HINT",
    "DetectorUnavailableError",
    "RayService",
    "RayServiceConfig",
    "RayServiceConfigError",
    "RayServiceError",
    "RayUnavailableError",
    "require_ray",
]
