"""Training YOLOv7 models: data sources, augmentation, simOTA loss, trainer, evaluation.

Public API::

    from training import TrainConfig, Hyperparameters, Trainer, train, evaluate, load_data_config

Command line: ``yolov7-track train`` / ``yolov7-track val`` (:mod:`training.cli`).
"""

from .config import PRESETS, Hyperparameters, TrainConfig, load_hyperparameters
from .datasets import Annotations, DataConfig, DetectionSource, load_data_config
from .errors import ConfigError, DatasetError, LabelFormatError, ResumeError, TrainingError
from .evaluate import EvaluationResult, evaluate
from .loss import YOLOv7Loss
from .trainer import Trainer, TrainResult, train

__all__ = [
    "PRESETS",
    "Annotations",
    "ConfigError",
    "DataConfig",
    "DatasetError",
    "DetectionSource",
    "EvaluationResult",
    "Hyperparameters",
    "LabelFormatError",
    "ResumeError",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainingError",
    "YOLOv7Loss",
    "evaluate",
    "load_data_config",
    "load_hyperparameters",
    "train",
]
