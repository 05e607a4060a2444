"""Frame sources: video files, image folders, live streams and webcams behind one call.

>>> from app.sources import open_source, SourceConfig
>>> source = open_source("video.mp4")            # or 0, "rtsp://cam/stream", "frames/"
>>> for frame in source:                          # app.frames.Frame: index, timestamp_s, BGR image
...     ...
>>> source.close()

Every source follows :class:`app.frames.FrameSource`; frames are ``(H, W, 3)`` uint8 BGR with
a 0-based ``index`` and a strictly increasing ``timestamp_s`` in seconds. Files and folders
also give ``frame_count`` (``None`` when unknown) for progress bars. Every source also has
``timestamp_repairs``: frames whose timestamp failed to increase and was re-based (each logged;
the pipeline adds them to its report).
"""

from __future__ import annotations

from pathlib import Path

from app.frames import FrameSource
from app.sources.config import SourceConfig, SourceError, SourceNotFoundError
from app.sources.files import ImageFolderSource, VideoFileSource
from app.sources.live import LiveSource, open_stream, open_webcam
from app.sources.spec import SourceKind, classify_source, mask_credentials

__all__ = [
    "ImageFolderSource",
    "LiveSource",
    "SourceConfig",
    "SourceError",
    "SourceKind",
    "SourceNotFoundError",
    "VideoFileSource",
    "classify_source",
    "mask_credentials",
    "open_source",
]


def open_source(spec: str | int | Path, config: SourceConfig | None = None) -> FrameSource:
    """Open the source ``spec`` names (see :func:`classify_source` for the rules).

    * webcam index (``0``, ``"0"``) -> :class:`LiveSource` over ``/dev/video0`` (V4L2);
    * ``rtsp://``, ``rtsps://``, ``rtmp://``, ``rtmps://``, ``http(s)://``, ``udp://``,
      ``tcp://`` URL -> :class:`LiveSource` (reconnects with backoff; an HTTP URL is read as a
      live stream, so download remote files first);
    * directory -> :class:`ImageFolderSource` (nominal ``config.folder_fps``);
    * anything else -> :class:`VideoFileSource` (anything FFmpeg reads).

    Live sources connect here, so an unreachable camera fails now, within
    ``config.timeout_s`` seconds.

    Raises:
        SourceNotFoundError: a file, folder or webcam device that does not exist (names it).
        SourceError: an unsupported URL scheme, a file FFmpeg cannot read (a truncated MP4 is
            called truncated), a stream that does not answer or stalls, a folder with no
            image or with no image that decodes. Messages never contain a URL password.
    """
    config = config or SourceConfig()
    kind = classify_source(spec)
    if kind is SourceKind.WEBCAM:
        return open_webcam(int(spec), config)
    if kind is SourceKind.STREAM:
        return open_stream(str(spec), config)
    if kind is SourceKind.IMAGE_FOLDER:
        return ImageFolderSource(spec, config)
    return VideoFileSource(spec, config)
