"""How long an unmatched track is kept: counted in updates, or in seconds when timestamps are given.

The reference trackers count missed frames: after the association of update ``f`` a track last
matched at update ``e`` is dropped when ``f - e > max_missed`` (SORT: ``time_since_update >
max_age``; ByteTrack: ``frame_id - end_frame > max_time_lost``). So a track can still be matched
at ``f = e + max_missed + 1``, after ``max_missed`` missed frames.

With timestamps the same rule is applied to time, with ``max_missed`` frames at the nominal
``frame_rate`` as the lifetime ``lifetime_s = max_missed / frame_rate``:

* after association, an unmatched track is dropped when ``now_s - last_seen_s > lifetime_s``;
* before association, a track whose lifetime ran out during a gap in the stream (dropped frames,
  a stall) is dropped when ``now_s - last_seen_s > lifetime_s + 1 / frame_rate``, so it cannot
  be matched late.

On evenly spaced timestamps at ``frame_rate`` both modes give the same tracks; with dropped or
irregular frames the seconds mode keeps a track for the same wall-clock time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tracker._io import FrameClock

# Slack for comparing sums of float timestamps (e.g. k / 7 s) against a lifetime.
TIME_COMPARISON_SLACK_S = 1e-6


@dataclass(frozen=True)
class MissedLifetime:
    """Lifetime of an unmatched track: ``max_missed_frames`` missed updates at ``frame_rate``."""

    max_missed_frames: int
    frame_rate: float

    @property
    def lifetime_s(self) -> float:
        return self.max_missed_frames / self.frame_rate

    def expired_after_association(
        self, clock: FrameClock, last_seen_frame: np.ndarray, last_seen_s: np.ndarray
    ) -> np.ndarray:
        """bool (n,): tracks to drop after this update's association (see module docstring)."""
        if clock.uses_timestamps:
            return clock.now_s - last_seen_s > self.lifetime_s + TIME_COMPARISON_SLACK_S
        return clock.frame_index - last_seen_frame > self.max_missed_frames

    def expired_before_association(self, clock: FrameClock, last_seen_s: np.ndarray) -> np.ndarray | None:
        """bool (n,): tracks whose lifetime ran out during a gap, or None in frames mode."""
        if not clock.uses_timestamps:
            return None
        limit_s = self.lifetime_s + 1.0 / self.frame_rate + TIME_COMPARISON_SLACK_S
        return clock.now_s - last_seen_s > limit_s
