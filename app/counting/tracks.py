"""Per-track bookkeeping shared by lines and zones: frame clock, class votes, eviction."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import supervision as sv

from app.counting.geometry import Anchor, anchor_points

__all__ = [
    "ClassNames",
    "FrameClock",
    "ClassVotes",
    "TrackPresence",
    "validate_absence_limits",
    "tracker_ids_of",
    "class_names_of",
    "checked_anchor_points",
]

#: How class IDs map to names: a sequence indexed by class ID or a mapping.
ClassNames = Sequence[str] | Mapping[int, str]

#: ``Detections.data`` key holding per-row class names (supervision's convention).
CLASS_NAME_DATA_KEY = "class_name"
#: Name used for rows that carry neither a class name nor a class ID.
UNKNOWN_CLASS_NAME = "object"


class FrameClock:
    """Checks that frames arrive in order and supplies a frame index when the caller has none."""

    def __init__(self) -> None:
        self.timestamp_s: float | None = None
        self.frame_index: int | None = None

    def advance(self, timestamp_s: float, frame_index: int | None) -> int:
        """Record a new frame and return its index.

        Raises:
            ValueError: the timestamp is not finite or goes backwards, or the frame index does not
                increase.
        """
        timestamp_s = float(timestamp_s)
        if not math.isfinite(timestamp_s):
            raise ValueError(f"timestamp_s must be finite, got {timestamp_s}")
        if self.timestamp_s is not None and timestamp_s < self.timestamp_s:
            raise ValueError(
                f"timestamp_s went backwards: {timestamp_s} after {self.timestamp_s}; "
                "feed frames in order or call reset() when the source restarts"
            )
        if frame_index is None:
            frame_index = 0 if self.frame_index is None else self.frame_index + 1
        frame_index = int(frame_index)
        if self.frame_index is not None and frame_index <= self.frame_index:
            raise ValueError(
                f"frame_index must increase: got {frame_index} after {self.frame_index}"
            )
        self.timestamp_s = timestamp_s
        self.frame_index = frame_index
        return frame_index


@dataclass(slots=True)
class ClassVotes:
    """Running class histogram of one track; :attr:`majority` is the most frequent class so far.

    Ties go to the class seen first, so a track whose class flickers keeps a stable label.
    """

    counts: dict[str, int] = field(default_factory=dict)

    def add(self, class_name: str) -> None:
        self.counts[class_name] = self.counts.get(class_name, 0) + 1

    @property
    def majority(self) -> str:
        # max() returns the first maximal key in insertion (first-seen) order.
        return max(self.counts, key=self.counts.__getitem__)


@dataclass(slots=True)
class TrackPresence:
    """When a track was last seen; used for eviction."""

    last_seen_s: float
    last_seen_frame: int

    def see(self, timestamp_s: float, frame_index: int) -> None:
        self.last_seen_s = timestamp_s
        self.last_seen_frame = frame_index

    def expired(
        self,
        timestamp_s: float,
        frame_index: int,
        max_absent_s: float | None,
        max_absent_frames: int | None,
    ) -> bool:
        """True once the track has been absent longer than either limit that is set.

        Absent time is ``timestamp_s - last_seen_s``; absent frames are the frames between the
        last sighting and ``frame_index`` (``frame_index - last_seen_frame - 1``), so with
        ``max_absent_frames = 3`` a track may miss 3 frames in a row and keep its state.
        """
        if max_absent_s is not None and timestamp_s - self.last_seen_s > max_absent_s:
            return True
        return (
            max_absent_frames is not None
            and frame_index - self.last_seen_frame - 1 > max_absent_frames
        )


def validate_absence_limits(max_absent_s: float | None, max_absent_frames: int | None) -> None:
    """Raise ``ValueError`` unless the limits are non-negative and at least one is set."""
    if max_absent_s is None and max_absent_frames is None:
        raise ValueError(
            "set max_absent_s or max_absent_frames: without a limit per-track state grows forever"
        )
    if max_absent_s is not None and not (max_absent_s >= 0 and math.isfinite(max_absent_s)):
        raise ValueError(f"max_absent_s must be a finite number >= 0, got {max_absent_s}")
    if max_absent_frames is not None and max_absent_frames < 0:
        raise ValueError(f"max_absent_frames must be >= 0, got {max_absent_frames}")


def tracker_ids_of(detections: sv.Detections, owner: str) -> npt.NDArray[np.int64]:
    """Return ``detections.tracker_id`` as ``int64``.

    Raises:
        ValueError: the detections carry no tracker IDs (they were not tracked), or an ID repeats
            within the frame.
    """
    if len(detections) == 0:
        return np.empty(0, dtype=np.int64)
    if detections.tracker_id is None:
        raise ValueError(
            f"{owner} needs tracked detections but tracker_id is None; run a tracker "
            "(tracker.SORT or tracker.ByteTrack) before counting"
        )
    ids = np.asarray(detections.tracker_id).astype(np.int64)
    unique, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"{owner}: tracker_id repeats within one frame: {unique[counts > 1].tolist()}")
    return ids


def class_names_of(detections: sv.Detections, class_names: ClassNames | None) -> list[str]:
    """Class name of each row.

    Order of precedence: ``detections.data["class_name"]``; ``class_names[class_id]``; the class
    ID as a string; ``"object"`` when there is no class ID.

    Raises:
        ValueError: a class ID has no entry in ``class_names``.
    """
    n = len(detections)
    if CLASS_NAME_DATA_KEY in detections.data:
        return [str(name) for name in detections.data[CLASS_NAME_DATA_KEY]]
    if detections.class_id is None:
        return [UNKNOWN_CLASS_NAME] * n
    ids = np.asarray(detections.class_id).astype(np.int64).tolist()
    if class_names is None:
        return [str(class_id) for class_id in ids]
    names: list[str] = []
    for class_id in ids:
        if class_id < 0 and not isinstance(class_names, Mapping):
            raise ValueError(f"class_id {class_id} is negative; class_names is a sequence")
        try:
            names.append(str(class_names[class_id]))
        except (IndexError, KeyError):
            raise ValueError(
                f"class_id {class_id} has no name in class_names ({len(class_names)} entries)"
            ) from None
    return names


def checked_anchor_points(
    detections: sv.Detections, anchor: Anchor, owner: str
) -> npt.NDArray[np.float64]:
    """:func:`~app.counting.geometry.anchor_points` of the rows, refusing non-finite boxes.

    Raises:
        ValueError: a box has NaN or infinite coordinates; the message lists the rows.
    """
    points = anchor_points(detections.xyxy, anchor)
    bad = ~np.isfinite(points).all(axis=1)
    if bad.any():
        raise ValueError(f"{owner}: non-finite box coordinates in rows {np.flatnonzero(bad).tolist()}")
    return points
