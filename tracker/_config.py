"""Validation helpers shared by the tracker configurations."""

from __future__ import annotations

import math

import numpy as np

from tracker.errors import InvalidTrackerConfigError


def require_int(value: object, name: str, minimum: int) -> None:
    """Raise :class:`InvalidTrackerConfigError` unless ``value`` is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InvalidTrackerConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")


def require_frame_rate(frame_rate: object) -> None:
    """Raise :class:`InvalidTrackerConfigError` unless ``frame_rate`` is a finite number > 0."""
    if (
        isinstance(frame_rate, bool)
        or not isinstance(frame_rate, (int, float, np.number))
        or not math.isfinite(frame_rate)
        or frame_rate <= 0
    ):
        raise InvalidTrackerConfigError(
            f"frame_rate must be a finite number of frames per second > 0, got {frame_rate!r}"
        )


def require_number_in(value: object, name: str, low: float, high: float, *, low_open: bool = False) -> None:
    """Raise :class:`InvalidTrackerConfigError` unless ``value`` is a real number in
    ``[low, high]`` (``(low, high]`` with ``low_open``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not math.isfinite(value):
        raise InvalidTrackerConfigError(f"{name} must be a number, got {value!r}")
    too_low = value <= low if low_open else value < low
    if too_low or value > high:
        interval = f"{'(' if low_open else '['}{low}, {high}]"
        raise InvalidTrackerConfigError(f"{name} must lie in {interval}, got {value!r}")


def require_bool(value: object, name: str) -> None:
    """Raise :class:`InvalidTrackerConfigError` unless ``value`` is a bool."""
    if not isinstance(value, (bool, np.bool_)):
        raise InvalidTrackerConfigError(f"{name} must be True or False, got {value!r}")
