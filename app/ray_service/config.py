"""Options of :class:`app.ray_service.RayService`: where the actors go and how long they wait."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from app.ray_service._ray import RayServiceError
from yolov7_track.checks import require_int, require_non_negative, require_positive

__all__ = ["RayServiceConfig", "RayServiceConfigError", "config_from_file"]


class RayServiceConfigError(RayServiceError, ValueError):
    """An invalid option of the Ray service (the message names it)."""


@dataclass(frozen=True)
class RayServiceConfig:
    """How the cameras file is laid out on the Ray cluster.

    Attributes:
        address: the cluster: ``None`` lets ``ray.init()`` choose (``$RAY_ADDRESS``, else a new
            local instance); ``"auto"`` joins the cluster that ``ray start`` runs on this machine;
            ``"HOST:PORT"`` or ``"ray://HOST:PORT"`` joins that one. Ignored when Ray is already
            initialized in this process (the caller's instance is used and left running).
        init_kwargs: more arguments of ``ray.init`` (``num_cpus``, ``runtime_env``, ...).
        detector_actors: detector actors in the pool (>= 1), spread over the nodes.
        detector_num_cpus, detector_num_gpus: resources each detector actor asks for (GPU
            fractions allowed: 0.5 puts two detectors on one GPU).
        detector_max_concurrency: frames a detector actor holds at once (>= 1); at least the
            number of cameras it serves, so that all their frames can join one batch.
        camera_num_cpus: resources each camera actor asks for (decode, tracking, counting).
        colocate_cameras: place each camera actor on its home detector's node (soft node
            affinity), so frames go through that node's object store, never the network; ``False``
            spreads the cameras over the cluster (frames then cross the network to the detectors).
        hub_num_cpus: resources of the hub actor (shared outputs, durable record).
        camera_max_restarts: times Ray restarts a dead camera actor (>= 0).
        detector_max_restarts: times Ray restarts a dead detector actor (>= 0).
        detect_timeout_s: longest one detector actor may take to answer one frame before the
            camera tries another one, seconds (> 0).
        detect_attempts_per_detector: a frame is tried at most this many times on each detector
            actor before the camera gives up (:class:`DetectorUnavailableError`) (>= 1).
        detector_cooldown_s: how long a detector actor that failed a camera is tried last by
            that camera, seconds (>= 0).
        hub_timeout_s: longest a camera keeps trying to hand its events to the hub (which may be
            restarting) before that output counts as failed, seconds (> 0).
        call_timeout_s: longest a status or metrics request waits for one actor, seconds (> 0).
    """

    address: str | None = None
    init_kwargs: Mapping[str, Any] = field(default_factory=dict)
    detector_actors: int = 1
    detector_num_cpus: float = 1.0
    detector_num_gpus: float = 0.0
    detector_max_concurrency: int = 64
    camera_num_cpus: float = 0.25
    colocate_cameras: bool = True
    hub_num_cpus: float = 0.0
    camera_max_restarts: int = 3
    detector_max_restarts: int = 3
    detect_timeout_s: float = 30.0
    detect_attempts_per_detector: int = 2
    detector_cooldown_s: float = 2.0
    hub_timeout_s: float = 60.0
    call_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if self.address is not None and (not isinstance(self.address, str) or not self.address.strip()):
            raise RayServiceConfigError(f"address must be None, 'auto' or HOST:PORT, got {self.address!r}")
        for name, minimum in (("detector_actors", 1), ("detector_max_concurrency", 1), ("camera_max_restarts", 0),
                              ("detector_max_restarts", 0), ("detect_attempts_per_detector", 1)):
            require_int(getattr(self, name), name, minimum, RayServiceConfigError)
        if not isinstance(self.colocate_cameras, bool):
            raise RayServiceConfigError(f"colocate_cameras must be true or false, got {self.colocate_cameras!r}")
        for name in ("detector_num_cpus", "detector_num_gpus", "camera_num_cpus", "hub_num_cpus",
                     "detector_cooldown_s"):
            require_non_negative(getattr(self, name), name, RayServiceConfigError)
        for name in ("detect_timeout_s", "hub_timeout_s", "call_timeout_s"):
            require_positive(getattr(self, name), name, RayServiceConfigError)


def config_from_file(section: Mapping[str, Any], address: str | None = None) -> RayServiceConfig:
    """The :class:`RayServiceConfig` of a cameras file's ``ray`` section
    (:data:`app.cameras.RAY_KEYS`) and the ``--ray`` address.

    Raises:
        RayServiceConfigError: an invalid value.
    """
    from app.cameras import RAY_KEYS

    return RayServiceConfig(address=address, **{RAY_KEYS[key]: value for key, value in section.items()})
