"""Multi-object trackers of yolov7-track: SORT and ByteTrack over ``supervision.Detections``.

Both share one interface::

    from tracker import SORT, ByteTrack

    tracker = ByteTrack(track_thresh=0.6, match_thresh=0.9, track_buffer=30, frame_rate=25)
    tracked = tracker.update(detections, timestamp_s=None)   # -> sv.Detections with tracker_id
    tracker.reset()

Depends only on numpy, filterpy and lap (and supervision for the ``Detections`` type); it never
imports torch.
"""

from tracker.byte_track import ByteTrack, ByteTrackConfig
from tracker.errors import (
    InvalidDetectionsError,
    InvalidTimestampError,
    InvalidTrackerConfigError,
    TrackerError,
)
from tracker.sort import SORT, SortConfig

__all__ = [
    "SORT",
    "ByteTrack",
    "SortConfig",
    "ByteTrackConfig",
    "TrackerError",
    "InvalidDetectionsError",
    "InvalidTimestampError",
    "InvalidTrackerConfigError",
]
