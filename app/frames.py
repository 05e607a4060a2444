"""The frame type that flows out of every source, and the source interface.

Sources (``app.sources``) yield :class:`Frame` objects; the pipeline (``app.pipeline``) consumes
any object that follows :class:`FrameSource`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class Frame:
    """One decoded frame.

    Attributes:
        index: 0-based index of the frame in its source, counting every frame the source
            produced (frames later dropped by the pipeline keep their index, so gaps show drops).
        timestamp_s: presentation time in seconds since the start of the source: the stream's
            PTS times its time base for files and streams that carry one; wall-clock seconds
            since the source was opened otherwise (webcams, image folders at a nominal rate).
        image: ``(H, W, 3)`` uint8, **BGR** (OpenCV order), C-contiguous.
        source: a printable name of the source (path, URL without credentials, ``webcam:0``).
    """

    index: int
    timestamp_s: float
    image: np.ndarray = field(repr=False)
    source: str = ""

    @property
    def shape_hw(self) -> tuple[int, int]:
        return int(self.image.shape[0]), int(self.image.shape[1])


@dataclass
class SourceStats:
    """Counters a source keeps while it runs (read by the pipeline for its report)."""

    frames_read: int = 0
    frames_corrupt: int = 0
    reconnects: int = 0
    connection_state: str = "connecting"  # "connecting" | "connected" | "reconnecting" | "closed"
    reconnect_attempt: int = 0
    last_error: str = ""


@runtime_checkable
class FrameSource(Protocol):
    """What the pipeline needs from a source.

    ``is_live``: frames arrive in real time (camera, stream) and may be dropped when the
    consumer is slow; ``False`` for files and folders (every frame is processed, back-pressure).
    ``fps``: nominal frame rate or ``None`` when unknown. Iteration ends at the end of a file;
    a live source reconnects on its own and ends only when closed or when it gives up.
    ``close()`` may be called from another thread and makes iteration stop promptly.
    """

    name: str
    is_live: bool
    fps: float | None
    stats: SourceStats

    def __iter__(self) -> Iterator[Frame]: ...

    def close(self) -> None: ...
