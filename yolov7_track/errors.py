"""The root of every error yolov7-track raises on purpose.

Each package keeps its own error classes, close to the code that raises them
(:class:`detector.DetectorError`, :class:`tracker.TrackerError`, :class:`app.sources.SourceError`,
:class:`app.sinks.EventSinkError`, :class:`training.errors.TrainingError`, ...); all of them
derive from :class:`Yolov7TrackError`, so a front end catches the project's errors in one
``except`` and reports them in one line, while anything else (a bug) keeps its traceback.
Most also derive from the built-in class that fits (``ValueError`` for bad values,
``FileNotFoundError`` for a missing source), so ``except ValueError`` keeps working.
"""

from __future__ import annotations

__all__ = ["Yolov7TrackError"]


class Yolov7TrackError(Exception):
    """An error yolov7-track raises on purpose: bad input, a failed device, file or stream.

    Its message names the thing (file, option, camera, field) and what to do.
    """
