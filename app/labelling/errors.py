"""Typed errors of the labelling core. Every message names the box (frame, track id), the file and
line, or the JSON path at fault, and what to do about it."""

from __future__ import annotations

from pathlib import Path

from yolov7_track.errors import Yolov7TrackError

__all__ = ["LabelFileError", "LabelValidationError", "LabellingError", "TrackIdConflictError", "UnknownBoxError"]


class LabellingError(Yolov7TrackError):
    """Base class of every error raised by :mod:`app.labelling`."""


class LabelValidationError(LabellingError, ValueError):
    """An edit that would make the labels invalid: a box with a non-finite coordinate or a
    non-positive size, a negative frame index, a track id below 1, an empty class name."""


class UnknownBoxError(LabellingError, KeyError):
    """An edit names a box (frame index, track id) that the store does not hold."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the sentence readable
        return str(self.args[0]) if self.args else ""


class TrackIdConflictError(LabelValidationError):
    """Setting or merging track ids would put two boxes of one track on the same frame."""


class LabelFileError(LabellingError, ValueError):
    """A malformed label file. ``path`` names the file; ``line`` (1-based) or ``json_path``
    (``$[0].annotations[0].result[2].value.sequence[1].x``) names the place, when known."""

    def __init__(self, path: str | Path, problem: str, *, line: int | None = None,
                 json_path: str | None = None) -> None:
        self.path = Path(path)
        self.line = line
        self.json_path = json_path
        self.problem = problem
        where = str(self.path)
        if line is not None:
            where += f":{line}"
        if json_path is not None:
            where += f" at {json_path}"
        super().__init__(f"{where}: {problem}")
