"""YOLOv7 detector: architectures, checkpoint I/O, pre/post-processing and ``Detector``.

Public API::

    from detector import AVAILABLE_MODELS, create_model, load_model, save_model, Detector

    detector = Detector.from_weights(DEFAULT_MODEL)   # the bundled yolov7-tiny-traffic, offline
"""

from .architectures import AVAILABLE_MODELS
from .bundled import BUNDLED_MODELS, DEFAULT_MODEL
from .checkpoint import load_model, save_model
from .errors import (
    CheckpointError,
    DetectorError,
    DownloadError,
    UnknownArchitectureError,
    UnknownModelError,
    UnsafeCheckpointError,
    WeightsMismatchError,
)
from .inference import Detector, DetectorConfig, DetectorConfigError, DeviceUnavailableError
from .model import YOLOv7, create_model, to_deploy
from .preprocess import InvalidImageError

__all__ = [
    "AVAILABLE_MODELS",
    "BUNDLED_MODELS",
    "DEFAULT_MODEL",
    "CheckpointError",
    "Detector",
    "DetectorConfig",
    "DetectorConfigError",
    "DeviceUnavailableError",
    "DetectorError",
    "DownloadError",
    "InvalidImageError",
    "UnknownArchitectureError",
    "UnknownModelError",
    "UnsafeCheckpointError",
    "WeightsMismatchError",
    "YOLOv7",
    "create_model",
    "load_model",
    "save_model",
    "to_deploy",
]
