"""Typed errors of the tracker package. Each message names the offending row or value and what
to do about it."""

from __future__ import annotations

from yolov7_track.errors import Yolov7TrackError


class TrackerError(Yolov7TrackError):
    """Base class of every error raised by :mod:`tracker`."""


class InvalidDetectionsError(TrackerError, ValueError):
    """Detections that cannot be tracked: a NaN/inf coordinate or score, a box whose width or
    height is not positive, a missing field the tracker needs, or mismatched array lengths."""


class InvalidTimestampError(TrackerError, ValueError):
    """A ``timestamp_s`` that is not finite, does not increase, or switches between given and
    omitted within one stream."""


class InvalidTrackerConfigError(TrackerError, ValueError):
    """A tracker parameter outside its valid range."""
