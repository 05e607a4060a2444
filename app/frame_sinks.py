"""Where annotated frames go: one small protocol for every output of frames.

The pipeline's output stage draws each frame once and hands it to every :class:`FrameSink` it
was given, in order: the video file (:class:`VideoFileSink`, from ``--output`` or
``PipelineConfig.video_output``), the ``--show`` window (:class:`app.cli`), or any other. The
pipeline does not know which sinks exist; each is opened by whoever builds the run and closed by
the pipeline when the run ends (it takes ownership, as of event sinks).

A sink that cannot go on should record its failure and skip later frames rather than raise: an
exception from ``write`` is treated as a bug and ends the run (the frames and events already
produced are still written out).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from app.frames import Frame
from app.video_writer import VideoWriter, VideoWriterConfig, VideoWriterError

__all__ = ["FrameSink", "VideoFileSink", "draws_counting"]

logger = logging.getLogger(__name__)


@runtime_checkable
class FrameSink(Protocol):
    """An output of annotated frames.

    ``write(image_bgr, frame)``: ``image_bgr`` is the drawn frame, ``(H, W, 3)`` uint8 **BGR**,
    the size of ``frame.image``; ``frame`` carries the index and timestamp. Called from the
    pipeline's output stage (one thread), in frame order. ``close()`` finalizes the output; it
    may raise to report a failure.

    Optional attribute ``draws_counting`` (default ``True`` when absent): ``False`` asks for the
    frame with the tracks only, without lines, zones and counts. The GUI's live view sets it:
    it draws the lines and zones itself, where the user edits them.
    """

    def write(self, image_bgr: np.ndarray, frame: Frame) -> None: ...

    def close(self) -> None: ...


def draws_counting(sink: FrameSink) -> bool:
    """Whether ``sink`` gets lines, zones and counts drawn on its frames (see :class:`FrameSink`)."""
    return bool(getattr(sink, "draws_counting", True))


class VideoFileSink:
    """Annotated frames into a video file (:class:`app.video_writer.VideoWriter`: H.264 MP4
    written as ``OUT.partial.mp4`` and renamed when complete).

    The file is opened at the first frame, at that frame's size; a later frame of another size
    is resized to it (logged once). A video failure (the file cannot be created, the disk is
    full) is logged once and kept in :attr:`error`; later frames are skipped, so counting and the
    event sinks go on to the end of the run.

    Args:
        path: the video file.
        fps: called at the first frame: the frame rate of the video, frames per second.
        encoder: encoder settings.
    """

    def __init__(self, path: Path, fps: Callable[[], float], encoder: VideoWriterConfig | None = None) -> None:
        self.path = Path(path)
        self._fps = fps
        self._encoder = encoder if encoder is not None else VideoWriterConfig()
        self._writer: VideoWriter | None = None
        self._resized = 0
        #: the failure that stopped the video, or ``None``
        self.error: str | None = None

    @property
    def frames(self) -> int:
        """Frames written so far."""
        return self._writer.frames_written if self._writer is not None else 0

    @property
    def output_path(self) -> Path | None:
        """The finished file, or the kept partial file, once closed; ``None`` if there is none."""
        return self._writer.output_path if self._writer is not None else None

    def write(self, image_bgr: np.ndarray, frame: Frame) -> None:
        if self.error is not None:
            return
        try:
            if self._writer is None:
                self._writer = VideoWriter(self.path, float(self._fps()), (image_bgr.shape[1], image_bgr.shape[0]),
                                           self._encoder)
            expected_wh = self._writer.frame_size_wh
            if (image_bgr.shape[1], image_bgr.shape[0]) != expected_wh:
                (logger.debug if self._resized else logger.warning)(
                    "frame size changed to %dx%d; resizing to the video's %dx%d",
                    image_bgr.shape[1], image_bgr.shape[0], *expected_wh)
                self._resized += 1
                image_bgr = cv2.resize(image_bgr, expected_wh, interpolation=cv2.INTER_AREA)
            self._writer.write(image_bgr)
        except VideoWriterError as exc:
            self.error = str(exc)
            logger.error("video output failed; counting goes on without the video: %s", exc)

    def close(self) -> None:
        """Finalize the file (renamed onto :attr:`path`, or kept partial). A failure is kept in
        :attr:`error` and logged, not raised: a video failure does not fail the run."""
        if self._writer is None:
            return
        try:
            self._writer.close()
        except VideoWriterError as exc:
            self.error = str(exc)
            logger.error("video output failed: %s", exc)
