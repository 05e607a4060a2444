"""PyAV helpers shared by file and live sources: opening, frame rate, timestamps, BGR frames."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import av
import numpy as np

from app.sources.config import SourceError

# ``AVFMT_FLAG_GENPTS`` from FFmpeg's libavformat/avformat.h (stable ABI value; PyAV's enum
# for it changed names across versions).
AVFMT_FLAG_GENPTS = 0x0001


def open_video_stream(
    target: str,
    name: str,
    *,
    format: str | None = None,
    options: dict[str, str] | None = None,
    timeout_s: float | tuple[float, float] | None = None,
    scrub: str | None = None,
) -> tuple[Any, Any]:
    """Open ``target`` with FFmpeg and return ``(container, first video stream)``.

    ``timeout_s`` bounds the open and every later read through PyAV's interrupt callback
    (``av.open(timeout=...)``: seconds, or ``(open, read)`` seconds); ``None`` = unbounded
    (local files). ``name`` is the printable source name used in messages; ``scrub``, when
    given, is a secret (a URL password) removed from FFmpeg's messages.

    Raises:
        SourceError: FFmpeg cannot open ``target`` or it has no video stream.
    """
    try:
        container = av.open(target, mode="r", format=format, options=options or {},
                            timeout=timeout_s)
    except (av.FFmpegError, OSError) as error:
        reason = describe_error(error, target, name, scrub)
        raise SourceError(f"cannot open {name}: {reason}") from error
    if not container.streams.video:
        container.close()
        raise SourceError(f"{name} has no video stream")
    # PyAV turns on FFmpeg's GENPTS, which invents packet PTS where the container has none
    # (AVI): after B-frame reordering those guesses label frames out of order. Without it such
    # frames carry only their DTS, which BestEffortTimestamp then uses.
    container.flags = container.flags & ~AVFMT_FLAG_GENPTS
    return container, container.streams.video[0]


def describe_error(error: BaseException, target: str, name: str, scrub: str | None = None) -> str:
    """``"ErrorType: message"`` with the raw target replaced by ``name`` and ``scrub`` masked."""
    text = f"{type(error).__name__}: {error}".replace(target, name)
    if scrub:
        text = text.replace(scrub, "***")
    return text


def nominal_fps(stream: Any) -> float | None:
    """The stream's average frame rate (or FFmpeg's guess) in frames per second, or ``None``."""
    for rate in (stream.average_rate, stream.guessed_rate):
        if rate is not None and rate > 0:
            return float(rate)
    return None


def stream_time(timestamp: int | None, av_frame: Any, stream: Any) -> Fraction | None:
    """``timestamp`` (in the frame's time base, else the stream's) as exact seconds, or None."""
    if timestamp is None:
        return None
    time_base: Fraction | None = av_frame.time_base or stream.time_base
    if time_base is None:
        return None
    return timestamp * Fraction(time_base)


def frame_to_bgr(av_frame: Any) -> np.ndarray:
    """Decoded video frame -> ``(H, W, 3)`` uint8 BGR, C-contiguous (a copy FFmpeg cannot reuse)."""
    return np.ascontiguousarray(av_frame.to_ndarray(format="bgr24"))
