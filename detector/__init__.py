"""YOLOv7 detector: architectures, checkpoint I/O, pre/post-processing and ``Detector``.

Public API::

    from detector import AVAILABLE_MODELS, create_model, load_model, save_model, Detector
"""

from .architectures import AVAILABLE_MODELS
from .checkpoint import load_model, save_model
from .errors import (
    CheckpointError,
    DetectorError,
    DownloadError,
    UnknownModelError,
    UnsafeCheckpointError,
    WeightsMismatchError,
)
from .inference import Detector, DetectorConfig, DetectorConfigError, DeviceUnavailableError
from .model import YOLOv7, create_model, to_deploy
from .preprocess import InvalidImageError

__all__ = [
    "AVAILABLE_MODELS",
    "CheckpointError",
    "Detector",
    "DetectorConfig",
    "DetectorConfigError",
    "DeviceUnavailableError",
    "DetectorError",
    "DownloadError",
    "InvalidImageError",
    "UnknownModelError",
    "UnsafeCheckpointError",
    "WeightsMismatchError",
    "YOLOv7",
    "create_model",
    "load_model",
    "save_model",
    "to_deploy",
]
