"""The value checks every typed config of the project shares (pipeline, sources, outputs,
cameras file, zone files): one definition of "an integer", "a finite number" and "positive",
and one wording of the messages.

A bool is never a number here (``True`` is an ``int`` to Python, never a frame count to a user).
Each ``require_*`` raises the caller's error type (a :class:`yolov7_track.errors.Yolov7TrackError`
subclass, usually), so the front ends show it as that config's error.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["is_int", "is_number", "kind", "require_int", "require_non_negative", "require_positive"]


def is_int(value: Any) -> bool:
    """An integer (Python or numpy), not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_number(value: Any) -> bool:
    """A finite real number (int or float, Python or numpy), not a bool."""
    return (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
            and math.isfinite(value))


def kind(value: Any) -> str:
    """What a value is, for messages: ``nothing`` for ``None``, else its type name."""
    return "nothing" if value is None else type(value).__name__


def require_int(value: Any, name: str, minimum: int, error: type[Exception] = ValueError) -> None:
    """Raise ``error("<name> must be an integer >= <minimum>, got <value>")`` unless ``value`` is
    an integer of at least ``minimum``."""
    if not is_int(value) or value < minimum:
        raise error(f"{name} must be an integer >= {minimum}, got {value!r}")


def require_positive(value: Any, name: str, error: type[Exception] = ValueError) -> None:
    """Raise ``error("<name> must be a finite number > 0, got <value>")`` unless ``value`` is a
    finite number above zero."""
    if not is_number(value) or value <= 0:
        raise error(f"{name} must be a finite number > 0, got {value!r}")


def require_non_negative(value: Any, name: str, error: type[Exception] = ValueError) -> None:
    """Raise ``error("<name> must be a finite number >= 0, got <value>")`` unless ``value`` is a
    finite number of at least zero."""
    if not is_number(value) or value < 0:
        raise error(f"{name} must be a finite number >= 0, got {value!r}")
