"""Frame stride: process every N-th frame of any source (``--vid-stride N``).

Detection is the costly stage on a CPU; a fixed camera that watches slow traffic or walkers
rarely needs every frame of a 25-30 fps feed. :class:`StridedSource` passes on frames 0, N, 2N...
of the source it wraps, **with their original index and timestamp**, so the tracker (whose
Kalman prediction and ``max_age`` run on the real time line), the counting engine (dwell times,
event timestamps) and the events file see true times and true frame numbers. Its ``fps`` is the
source's divided by N: the rate at which frames now arrive, which the tracker's frame-based
buffers and the annotated video's frame rate need.

What the stride costs: an object must be observed on each side of a line often enough for the
counting rules (the robust line rule wants 4 observations on the new side): at stride N a
crossing must take ``4 * N`` source frames. The frames in between are still decoded (inter-frame
codecs need them), just not detected.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from app.frames import Frame, FrameSource

__all__ = ["FpsCappedSource", "StridedSource", "MAX_VID_STRIDE"]

#: Largest stride accepted: beyond a few seconds between processed frames nothing can be tracked.
MAX_VID_STRIDE = 1000


class _WrappedSource:
    """What a source that passes on some of another source's frames shares with it: name,
    live-ness, statistics, timestamp repairs and ``close()``."""

    def __init__(self, source: FrameSource) -> None:
        self.source = source
        self.name = source.name
        self.is_live = source.is_live

    @property
    def stats(self):  # noqa: ANN201 - the wrapped source's SourceStats
        return self.source.stats

    @property
    def timestamp_repairs(self) -> int:
        return int(getattr(self.source, "timestamp_repairs", 0))

    def close(self) -> None:
        self.source.close()


class StridedSource(_WrappedSource):
    """Every ``stride``-th frame ``source`` delivers (the 1st, the ``stride + 1``-th, ...), index
    and timestamp unchanged.

    Counting delivered frames, not indices, keeps the spacing even where a source's indices skip
    (a corrupt frame of a file, a reconnect of a stream). ``close()``, ``stats``, ``is_live``
    and the name are the wrapped source's.

    Args:
        source: any :class:`app.frames.FrameSource`.
        stride: ``N >= 1`` (1 passes every frame).

    Raises:
        ValueError: ``stride`` is not an integer in ``[1, MAX_VID_STRIDE]``.
    """

    def __init__(self, source: FrameSource, stride: int) -> None:
        if isinstance(stride, bool) or not isinstance(stride, int) or not 1 <= stride <= MAX_VID_STRIDE:
            raise ValueError(f"vid_stride must be an integer in [1, {MAX_VID_STRIDE}], got {stride!r}")
        super().__init__(source)
        self.stride = stride
        self.fps: float | None = source.fps / stride if source.fps else None
        count = getattr(source, "frame_count", None)
        self.frame_count: int | None = math.ceil(count / stride) if count is not None else None

    def __iter__(self) -> Iterator[Frame]:
        for delivered, frame in enumerate(self.source):
            if delivered % self.stride == 0:
                yield frame

    def __repr__(self) -> str:
        return f"StridedSource({self.source!r}, stride={self.stride})"


class FpsCappedSource(_WrappedSource):
    """At most ``fps_cap`` frames per second of media time from ``source``: a frame is passed on
    only when at least ``1 / fps_cap`` seconds of its timestamps lie since the last one passed
    (index and timestamp unchanged, as :class:`StridedSource`). For a camera that sends 30 fps
    when 5 are enough to count, this spares the detector the rest.

    Args:
        source: any :class:`app.frames.FrameSource`.
        fps_cap: frames per second, > 0.

    Raises:
        ValueError: ``fps_cap`` is not a finite number > 0.
    """

    def __init__(self, source: FrameSource, fps_cap: float) -> None:
        if isinstance(fps_cap, bool) or not isinstance(fps_cap, (int, float)) or not math.isfinite(fps_cap) or fps_cap <= 0:
            raise ValueError(f"fps_cap must be a number > 0, got {fps_cap!r}")
        super().__init__(source)
        self.fps_cap = float(fps_cap)
        self.fps: float | None = min(source.fps, self.fps_cap) if source.fps else self.fps_cap

    def __iter__(self) -> Iterator[Frame]:
        # a small tolerance keeps a 10 fps stream capped at 10 fps from losing frames to jitter
        period_s = 0.98 / self.fps_cap
        last_s: float | None = None
        for frame in self.source:
            if last_s is None or frame.timestamp_s - last_s >= period_s or frame.timestamp_s < last_s:
                last_s = frame.timestamp_s
                yield frame
