"""Count events: what a line or zone reports when a track crosses, enters or leaves it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Any

__all__ = ["Direction", "CountEvent", "EVENT_FIELDS"]


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
    """

    timestamp_s: float
    frame_index: int
    zone: str
    track_id: int
    class_name: str
    direction: Direction
    dwell_s: float | None = None

    def __post_init__(self) -> None:
        if not math.isfinite(self.timestamp_s):
            raise ValueError(f"CountEvent.timestamp_s must be finite, got {self.timestamp_s}")
        object.__setattr__(self, "direction", Direction(self.direction))

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
        }

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> "CountEvent":
        """Inverse of :meth:`as_dict`; accepts the strings a CSV reader returns."""
        dwell = row.get("dwell_s")
        return cls(
            timestamp_s=float(row["timestamp_s"]),
            frame_index=int(row["frame_index"]),
            zone=str(row["zone"]),
            track_id=int(row["track_id"]),
            class_name=str(row["class_name"]),
            direction=Direction(row["direction"]),
            dwell_s=None if dwell in (None, "") else float(dwell),
        )


#: Column order used by every sink.
EVENT_FIELDS: tuple[str, ...] = (
    "timestamp_s",
    "frame_index",
    "zone",
    "track_id",
    "class_name",
    "direction",
    "dwell_s",
)
