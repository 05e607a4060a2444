"""The one place that imports Ray, and the errors of the Ray service.

Ray is an optional extra (``pip install 'yolov7-track[ray]'``). Nothing in ``app`` imports it
unless ``yolov7-track serve --ray`` (or :class:`app.ray_service.RayService`) is used; then
:func:`require_ray` imports it, or raises :class:`RayUnavailableError` with one line saying what
to install.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from yolov7_track.errors import Yolov7TrackError

__all__ = [
    "INSTALL_HINT",
    "DetectorUnavailableError",
    "RayServiceError",
    "RayUnavailableError",
    "require_ray",
    "was_restarted",
]

#: The one line a user without the extra gets.
INSTALL_HINT = "install the ray extra: pip install 'yolov7-track[ray]'"


class RayServiceError(Yolov7TrackError):
    """The Ray service cannot start, was misused, or lost a part it cannot do without."""


class RayUnavailableError(RayServiceError, ImportError):
    """Ray is not installed (the message is :data:`INSTALL_HINT`)."""


class DetectorUnavailableError(RayServiceError, TimeoutError):
    """No detector actor answered a camera's frame in time, after trying every one of them."""


def require_ray() -> ModuleType:
    """The ``ray`` module.

    Raises:
        RayUnavailableError: Ray cannot be imported; the message is :data:`INSTALL_HINT`.
    """
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailableError(INSTALL_HINT) from exc
    return ray


def was_restarted(context: Any) -> bool:
    """Whether the actor of Ray runtime ``context`` is a restart of an earlier one.

    Ray 2.60 warns (``RayDeprecationWarning``) from inside this property about an API it uses
    itself; that warning is silenced here only, not process-wide.
    """
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return bool(context.was_current_actor_reconstructed)
