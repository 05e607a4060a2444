"""The trackers by name, with their typed parameters: the one place a tracker is registered.

The command line (``--tracker NAME --tracker-param KEY=VALUE``), the GUI settings and the
cameras file of the service all build trackers with :func:`make_tracker`. Adding a tracker
means adding one :class:`TrackerEntry` to :data:`TRACKERS` here.

Parameters are the fields of each tracker's frozen config dataclass (:class:`ByteTrackConfig`,
:class:`SortConfig`) except ``frame_rate``, which comes from the source. Their values are
checked by those configs (:class:`InvalidTrackerConfigError` names the parameter and the range).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tracker.byte_track import ByteTrack, ByteTrackConfig
from tracker.errors import InvalidTrackerConfigError
from tracker.sort import SORT, SortConfig

__all__ = ["TRACKERS", "TrackerEntry", "make_tracker", "parse_tracker_params", "tracker_parameters"]

#: What a front end sets per tracker; ``frame_rate`` is the source's.
_FROM_SOURCE = ("frame_rate",)


@dataclass(frozen=True)
class TrackerEntry:
    """A tracker: its config dataclass and its constructor (keyword arguments = config fields)."""

    name: str
    config_type: type
    build: Callable[..., Any]
    summary: str


TRACKERS: dict[str, TrackerEntry] = {
    "bytetrack": TrackerEntry(
        "bytetrack", ByteTrackConfig, ByteTrack,
        "ByteTrack (Zhang et al., ECCV 2022): associates low-score boxes too; the default"),
    "sort": TrackerEntry(
        "sort", SortConfig, SORT,
        "SORT (Bewley et al., ICIP 2016): Kalman filter + Hungarian IoU matching"),
}


def _entry(name: str) -> TrackerEntry:
    try:
        return TRACKERS[name]
    except KeyError:
        raise InvalidTrackerConfigError(
            f"unknown tracker {name!r}; choose one of {', '.join(sorted(TRACKERS))}") from None


def tracker_parameters(name: str) -> dict[str, tuple[type, Any]]:
    """Parameter name -> (type, default) of tracker ``name`` (``frame_rate`` excluded).

    Raises:
        InvalidTrackerConfigError: unknown tracker.
    """
    config_type = _entry(name).config_type
    hints = typing.get_type_hints(config_type)
    return {f.name: (hints[f.name], f.default) for f in dataclasses.fields(config_type) if f.name not in _FROM_SOURCE}


def parse_tracker_params(name: str, items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["track_thresh=0.6", "class_aware=true"]`` -> typed values for tracker ``name``.

    Raises:
        InvalidTrackerConfigError: unknown tracker or parameter, no ``=``, or a value that is
            not of the parameter's type (the message lists the tracker's parameters).
    """
    known = tracker_parameters(name)
    values: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or key not in known:
            raise InvalidTrackerConfigError(
                f"tracker parameter {item!r}: expected KEY=VALUE with KEY one of {', '.join(known)} ({name})")
        values[key] = _parse_value(key, text.strip(), known[key][0])
    return values


def _parse_value(key: str, text: str, kind: type) -> Any:
    if kind is bool:
        lowered = text.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise InvalidTrackerConfigError(f"tracker parameter {key} must be true or false, got {text!r}")
    try:
        return kind(text)
    except ValueError:
        raise InvalidTrackerConfigError(f"tracker parameter {key} must be {kind.__name__}, got {text!r}") from None


def make_tracker(name: str, params: Mapping[str, Any] | None = None, frame_rate: float = 30.0) -> Any:
    """A fresh tracker ``name`` with ``params`` (the others at their defaults).

    Args:
        name: a key of :data:`TRACKERS`.
        params: parameter values (see :func:`tracker_parameters`).
        frame_rate: the source's frames per second (scales frame-counted lifetimes).

    Raises:
        InvalidTrackerConfigError: unknown tracker or parameter, or a value out of range.
    """
    entry = _entry(name)
    params = dict(params or {})
    unknown = sorted(set(params) - set(tracker_parameters(name)))
    if unknown:
        raise InvalidTrackerConfigError(
            f"tracker {name!r} has no parameter {', '.join(unknown)}; "
            f"its parameters: {', '.join(tracker_parameters(name))}")
    return entry.build(frame_rate=frame_rate, **params)
