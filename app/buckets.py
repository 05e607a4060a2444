"""Time buckets for counts: which bucket an event falls in, on which clock.

An event is placed on the **wall clock** when it carries a :attr:`~app.counting.CountEvent.wall_time`
(UTC): buckets are aligned on the UTC epoch, so a 15-minute bucket starts at ``:00``, ``:15``,
``:30`` or ``:45`` and a 1-day bucket at UTC midnight. An event without a wall time (a video file)
falls back to the **media clock**: buckets of its ``timestamp_s`` counted from the start of the
media (``[0, 900)``, ``[900, 1800)``, ...). The two clocks are never mixed in one bucket.

Shared by the SQLite sink (its ``counts`` table, :data:`COUNTS_BUCKET_S` granularity) and by
:mod:`app.report`. Pure functions; thread-safe.
"""

from __future__ import annotations

import math
from enum import Enum

from app.counting.events import CountEvent, wall_time_epoch_ms

__all__ = ["Clock", "COUNTS_BUCKET_S", "event_bucket", "floor_bucket"]

#: Granularity of the SQLite ``counts`` table, seconds: the finest bucket the report offers
#: (5 min); coarser buckets (15 min, 1 h, 1 d) are sums of whole 5-minute buckets.
COUNTS_BUCKET_S = 300


class Clock(str, Enum):
    """The clock a bucket start is measured on (``str`` enum: the value is what files hold)."""

    WALL = "wall"  #: UTC epoch seconds (from the event's ``wall_time``)
    MEDIA = "media"  #: seconds of media time (the event's ``timestamp_s``)


def floor_bucket(start_s: float, bucket_s: int) -> int:
    """Start of the ``bucket_s``-second bucket holding ``start_s`` (floor; also for negative
    times), seconds.

    Raises:
        ValueError: ``bucket_s`` is not a positive integer, or ``start_s`` is not finite.
    """
    if not isinstance(bucket_s, int) or bucket_s <= 0:
        raise ValueError(f"bucket_s must be a positive integer number of seconds, got {bucket_s!r}")
    if not math.isfinite(start_s):
        raise ValueError(f"bucket start must be finite, got {start_s}")
    if isinstance(start_s, int):
        return start_s // bucket_s * bucket_s
    return math.floor(start_s / bucket_s) * bucket_s


def event_bucket(event: CountEvent, bucket_s: int) -> tuple[Clock, int]:
    """The clock and the start (whole seconds on that clock) of the ``bucket_s``-second bucket
    that ``event`` falls in (see the module docstring).

    Raises:
        ValueError: ``bucket_s`` is not a positive integer.
    """
    if event.wall_time is not None:
        epoch_ms = wall_time_epoch_ms(event.wall_time)
        return Clock.WALL, floor_bucket(epoch_ms // 1000, bucket_s)  # whole seconds: exact floor
    return Clock.MEDIA, floor_bucket(event.timestamp_s, bucket_s)
