"""Turning decoder timestamps into strictly increasing frame times in seconds."""

from __future__ import annotations

import logging
from fractions import Fraction

LOGGER = logging.getLogger(__name__)


class BestEffortTimestamp:
    """Pick each decoded frame's presentation time from its PTS or, when the PTS is unreliable,
    from its packet DTS.

    Some containers carry PTS values that are wrong after B-frame reordering (our PETS09 AVI:
    the decoder returns frames in display order but labelled PTS 1, 4, 3, 5, 2, ...), while the
    DTS of the packets behind those frames still increases. The rule is FFmpeg's
    ``guess_correct_pts`` (``libavcodec/decode.c``, used for ``best_effort_timestamp``): count
    how often each of PTS and DTS failed to increase and trust the one that failed less often,
    PTS on a tie. One deviation: when DTS is the trusted one but missing (the frames flushed out
    of the decoder at the end of a file), the result is ``None`` rather than the untrusted PTS,
    so the caller's nominal frame interval places the frame.
    """

    def __init__(self) -> None:
        self._faulty_pts = 0
        self._faulty_dts = 0
        self._last_pts: int | None = None
        self._last_dts: int | None = None

    def __call__(self, pts: int | None, dts: int | None) -> int | None:
        """Return the chosen timestamp (stream time base), or ``None`` if there is none."""
        if dts is not None:
            if self._last_dts is not None and dts <= self._last_dts:
                self._faulty_dts += 1
            self._last_dts = dts
        if pts is not None:
            if self._last_pts is not None and pts <= self._last_pts:
                self._faulty_pts += 1
            self._last_pts = pts
        if self._faulty_pts <= self._faulty_dts:
            return pts if pts is not None else dts
        return dts


class MonotonicClock:
    """Map per-frame stream times to strictly increasing source times (seconds).

    A segment (a file, or one connection of a live stream) starts with :meth:`start_segment`.
    Inside a segment a frame's time is ``stream_time + offset``, where the offset is fixed by
    the segment's first timed frame so that this frame lands on the caller's ``fallback_s``
    (0 for the first frame of a file: times are then relative to the first frame). A frame
    without a stream time gets ``fallback_s``. When a stream time fails to increase (PTS reset,
    duplicate or out-of-order timestamps) the offset is re-based so that frame lands on
    ``fallback_s``; such repairs are counted in :attr:`repairs` and logged.

    The caller guarantees ``fallback_s`` is greater than the previous returned time (files:
    previous + nominal frame interval; live sources: ``max(wall clock, previous + interval)``).
    """

    def __init__(self, source_name: str) -> None:
        self._source_name = source_name
        # (stream time, source time) of the frame that fixed the current offset. Differences
        # of stream times are taken exactly (Fractions) so a file's times are exactly
        # PTS x time base minus the first frame's.
        self._anchor: tuple[Fraction, float] | None = None
        self.last_s: float | None = None
        self.repairs = 0

    def start_segment(self) -> None:
        """Forget the offset: the next timed frame is placed at its ``fallback_s``."""
        self._anchor = None

    def next(self, stream_time: Fraction | float | None, fallback_s: float) -> float:
        """Return the source time (seconds) of the next frame.

        ``stream_time``: the frame's stream time in seconds (exact ``Fraction`` preferred), or
        ``None`` when the frame has none.
        """
        if stream_time is None:
            return self._emit(fallback_s)
        stream_time = Fraction(stream_time)
        if self._anchor is None:
            self._anchor = (stream_time, fallback_s)
        anchor_stream, anchor_source_s = self._anchor
        time_s = anchor_source_s + float(stream_time - anchor_stream)
        if self.last_s is not None and time_s <= self.last_s:
            self.repairs += 1
            log = LOGGER.warning if self.repairs == 1 else LOGGER.debug
            log("%s: frame time %.6f s does not increase after %.6f s; re-basing timestamps "
                "(repair %d)", self._source_name, time_s, self.last_s, self.repairs)
            self._anchor = (stream_time, fallback_s)
            time_s = fallback_s
        return self._emit(time_s)

    def _emit(self, time_s: float) -> float:
        self.last_s = time_s
        return time_s
