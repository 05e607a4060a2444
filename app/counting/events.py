"""Count events: what a line or zone reports when a track crosses, enters or leaves it.

Wall-clock times (:attr:`CountEvent.wall_time`) are ISO 8601 strings in UTC with milliseconds,
``2026-12-06T13:05:01.250Z`` (``+00:00`` is accepted in place of ``Z`` and normalized to ``Z``):
sortable as text, readable in a spreadsheet, and exact to the millisecond in every sink.
:func:`wall_time_iso` makes one from epoch seconds (``time.time()``), :func:`wall_time_epoch_s`
reads one back.
"""

from __future__ import annotations

import calendar
import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Any

__all__ = [
    "Direction",
    "CountEvent",
    "EVENT_FIELDS",
    "LEGACY_EVENT_FIELDS",
    "wall_time_iso",
    "wall_time_epoch_s",
    "wall_time_epoch_ms",
]

_WALL_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\.(\d{3})(Z|\+00:00)", re.ASCII
)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def wall_time_iso(epoch_s: float) -> str:
    """``epoch_s`` (seconds since 1970-01-01 UTC, as ``time.time()`` returns) as a wall time,
    ``YYYY-MM-DDTHH:MM:SS.mmmZ``, rounded to the nearest millisecond.

    Raises:
        ValueError: ``epoch_s`` is not finite or lies outside the years 1-9999.
    """
    if not math.isfinite(epoch_s):
        raise ValueError(f"wall time: epoch seconds must be finite, got {epoch_s}")
    epoch_ms = round(epoch_s * 1000)
    try:
        when = _EPOCH + timedelta(milliseconds=epoch_ms)
    except OverflowError:
        raise ValueError(f"wall time: {epoch_s} s since 1970 is outside the years 1-9999") from None
    return (
        f"{when.year:04d}-{when.month:02d}-{when.day:02d}T{when.hour:02d}:{when.minute:02d}:"
        f"{when.second:02d}.{epoch_ms % 1000:03d}Z"
    )


def wall_time_epoch_ms(wall_time: str) -> int:
    """Milliseconds since 1970-01-01 UTC of a wall time (``YYYY-MM-DDTHH:MM:SS.mmmZ`` or
    ``...+00:00``), exact.

    Raises:
        ValueError: not in that form, or not a real date and time (message shows the text).
    """
    match = _WALL_TIME.fullmatch(wall_time) if isinstance(wall_time, str) else None
    if match is None:
        raise ValueError(
            f"wall time {wall_time!r} is not ISO 8601 UTC with milliseconds "
            "(YYYY-MM-DDTHH:MM:SS.mmmZ, e.g. 2026-12-06T13:05:01.250Z)"
        )
    year, month, day, hour, minute, second, millis = (int(g) for g in match.groups()[:7])
    try:
        when = datetime(year, month, day, hour, minute, second)
    except ValueError as exc:
        raise ValueError(f"wall time {wall_time!r} is not a real date and time: {exc}") from None
    return calendar.timegm(when.timetuple()) * 1000 + millis


def wall_time_epoch_s(wall_time: str) -> float:
    """Inverse of :func:`wall_time_iso`: seconds since 1970-01-01 UTC (millisecond resolution).

    Raises:
        ValueError: see :func:`wall_time_epoch_ms`.
    """
    return wall_time_epoch_ms(wall_time) / 1000.0


class Direction(str, Enum):
    """Direction of an event. Lines report ``IN``/``OUT``, zones ``ENTER``/``EXIT``.

    A ``str`` enum: ``Direction.IN == "in"`` holds and sinks write the value (``"in"``).
    """

    IN = "in"
    OUT = "out"
    ENTER = "enter"
    EXIT = "exit"


@dataclass(frozen=True, slots=True)
class CountEvent:
    """One crossing of a line or one entry/exit of a zone by one track.

    Attributes:
        timestamp_s: media time of the frame in which the event was observed, seconds (for a zone
            exit caused by the track disappearing: the time it was last seen).
        frame_index: index of that frame (0-based, as given to ``update``).
        zone: name of the line or zone.
        track_id: tracker ID of the object.
        class_name: the track's majority class at the time of the event.
        direction: ``"in"``/``"out"`` for lines, ``"enter"``/``"exit"`` for zones.
        dwell_s: zone exits only: seconds between the enter and the exit; ``None`` otherwise.
        camera_id: the camera that saw the event (a non-empty string); ``None`` when the
            producer runs one unnamed source (the counting engine leaves it ``None``; the
            pipeline that owns the cameras stamps it).
        wall_time: UTC wall-clock time at which the frame was captured, ISO 8601 with
            milliseconds (``2026-12-06T13:05:01.250Z``; a ``+00:00`` suffix is normalized to
            ``Z``); ``None`` when unknown (a video file). Stamped by the pipeline, like
            ``camera_id``. ``timestamp_s`` stays the media time either way.

    Raises:
        ValueError: ``timestamp_s`` is not finite, ``direction`` is not a :class:`Direction`
            value, ``camera_id`` is empty or not a string, or ``wall_time`` is not in the form
            above.
    """

    timestamp_s: float
    frame_index: int
    zone: str
    track_id: int
    class_name: str
    direction: Direction
    dwell_s: float | None = None
    camera_id: str | None = None
    wall_time: str | None = None

    def __post_init__(self) -> None:
        if not math.isfinite(self.timestamp_s):
            raise ValueError(f"CountEvent.timestamp_s must be finite, got {self.timestamp_s}")
        object.__setattr__(self, "direction", Direction(self.direction))
        if self.camera_id is not None and (not isinstance(self.camera_id, str) or not self.camera_id):
            raise ValueError(
                f"CountEvent.camera_id must be a non-empty string or None, got {self.camera_id!r}"
            )
        if self.wall_time is not None:
            wall_time_epoch_ms(self.wall_time)  # raises ValueError with the text
            if self.wall_time.endswith("+00:00"):
                object.__setattr__(self, "wall_time", self.wall_time[: -len("+00:00")] + "Z")

    def as_dict(self) -> dict[str, Any]:
        """Plain ``dict`` with JSON-ready values (direction as its string value)."""
        return {
            "timestamp_s": float(self.timestamp_s),
            "frame_index": int(self.frame_index),
            "zone": self.zone,
            "track_id": int(self.track_id),
            "class_name": self.class_name,
            "direction": self.direction.value,
            "dwell_s": None if self.dwell_s is None else float(self.dwell_s),
            "camera_id": self.camera_id,
            "wall_time": self.wall_time,
        }

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> "CountEvent":
        """Inverse of :meth:`as_dict`; accepts the strings a CSV reader returns. ``camera_id``
        and ``wall_time`` may be missing (rows written before they existed) or empty: ``None``.

        Raises:
            KeyError: a required field is missing.
            ValueError: a field has a bad value (see the class).
        """
        dwell = row.get("dwell_s")
        camera_id = row.get("camera_id")
        wall_time = row.get("wall_time")
        return cls(
            timestamp_s=float(row["timestamp_s"]),
            frame_index=int(row["frame_index"]),
            zone=str(row["zone"]),
            track_id=int(row["track_id"]),
            class_name=str(row["class_name"]),
            direction=Direction(row["direction"]),
            dwell_s=None if dwell in (None, "") else float(dwell),
            camera_id=None if camera_id in (None, "") else str(camera_id),
            wall_time=None if wall_time in (None, "") else str(wall_time),
        )


#: Columns of the files written before ``camera_id`` and ``wall_time`` existed (still read, and
#: appended to in that layout; see :mod:`app.sinks`).
LEGACY_EVENT_FIELDS: tuple[str, ...] = (
    "timestamp_s",
    "frame_index",
    "zone",
    "track_id",
    "class_name",
    "direction",
    "dwell_s",
)
#: Column order used by every sink: the legacy columns, then the two added at the end.
EVENT_FIELDS: tuple[str, ...] = (*LEGACY_EVENT_FIELDS, "camera_id", "wall_time")
