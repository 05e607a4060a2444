"""Typed errors of the training package. Every message names the file (and line) or option at
fault and what to do about it."""

from __future__ import annotations

from pathlib import Path

from yolov7_track.errors import Yolov7TrackError


class TrainingError(Yolov7TrackError):
    """Base class of every error raised by :mod:`training`."""


class DatasetError(TrainingError, ValueError):
    """A data set that cannot be used: missing files, an empty split, an unknown format."""


class LabelFormatError(DatasetError):
    """A malformed label row; ``path`` and ``line`` (1-based, or None) name the culprit."""

    def __init__(self, path: str | Path, line: int | None, problem: str) -> None:
        self.path = Path(path)
        self.line = line
        where = f"{self.path}:{line}" if line is not None else str(self.path)
        super().__init__(f"{where}: {problem}")


class ConfigError(TrainingError, ValueError):
    """An invalid training option or hyper-parameter."""


class ResumeError(TrainingError):
    """A training checkpoint that cannot be resumed (missing, unreadable, other run)."""
