"""Finite sources: video files (via PyAV/FFmpeg) and folders of images (via OpenCV)."""

from __future__ import annotations

import logging
import re
import struct
import threading
from pathlib import Path
from typing import Iterator

import av
import cv2
import numpy as np

from app.frames import Frame, SourceStats
from app.sources.config import SourceConfig, SourceError, SourceNotFoundError
from app.sources.decode import frame_to_bgr, nominal_fps, open_video_stream, stream_time
from app.sources.timestamps import BestEffortTimestamp, MonotonicClock

LOGGER = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# A file whose demuxer fails this many times in a row without yielding a packet is beyond
# repair; stop with an error instead of spinning.
MAX_CONSECUTIVE_DEMUX_ERRORS = 50
# Nominal interval used only when a file states no frame rate and a frame has no timestamp.
DEFAULT_FRAME_INTERVAL_S = 1.0 / 25.0


class VideoFileSource:
    """Every frame of a video file, decoded by FFmpeg through PyAV, in display order.

    Frames: ``(H, W, 3)`` uint8 **BGR**, C-contiguous. ``index`` counts every decoded frame
    from 0. ``timestamp_s`` is the frame's presentation time in seconds relative to the first
    frame (PTS × time base, with FFmpeg's best-effort choice between PTS and DTS; frames
    without a usable timestamp get the previous time plus ``1 / fps``), strictly increasing.

    A packet the decoder rejects (corrupt data) is logged, counted in
    ``stats.frames_corrupt`` and skipped; decoding goes on to the end of the file. Timestamps
    that fail to increase are repaired (see :class:`~app.sources.timestamps.MonotonicClock`),
    logged and counted in :attr:`timestamp_repairs`. Only the first video stream is read.
    Iterate once; ``close()`` (any thread) stops the iteration before the next packet and
    releases the file.

    Raises (from the constructor):
        SourceNotFoundError: the file does not exist.
        SourceError: FFmpeg cannot open it or it has no video stream. An MP4/MOV file that
            FFmpeg cannot open and that ends before its ``moov`` index (a recording that was
            never finished, a partial copy) is reported as truncated (see
            :func:`describe_truncated_mp4`).
    """

    is_live = False

    def __init__(self, path: str | Path, config: SourceConfig | None = None) -> None:
        self.config = config or SourceConfig()
        self.path = Path(path)
        self.name = str(path)
        self.stats = SourceStats()
        if not self.path.exists():
            raise SourceNotFoundError(f"video file not found: {self.path}")
        if self.path.is_dir():
            raise SourceError(f"{self.path} is a directory; open it as an image folder instead")
        try:
            self._container, self._stream = open_video_stream(str(self.path), self.name)
        except SourceError as error:
            truncation = describe_truncated_mp4(self.path)
            if truncation is None:
                raise
            raise SourceError(
                f"cannot open {self.name}: the file looks truncated or incomplete, like an "
                f"unfinished recording or a partial copy ({truncation}); record, copy or export "
                "it again"
            ) from error
        self._timestamps = MonotonicClock(self.name)
        self.fps: float | None = nominal_fps(self._stream)
        # Frames the container header announces (0 when it does not say); for progress bars.
        self.frame_count: int | None = int(self._stream.frames) or None
        self.stats.connection_state = "connected"
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._iterating = False
        self._iterated = False

    @property
    def timestamp_repairs(self) -> int:
        """Frames whose timestamp failed to increase and was re-based (each one logged)."""
        return self._timestamps.repairs

    def __iter__(self) -> Iterator[Frame]:
        with self._lock:
            if self._iterated:
                raise SourceError(f"{self.name}: a source can be iterated only once")
            self._iterated = True
            self._iterating = True
        try:
            yield from self._frames()
        finally:
            with self._lock:
                self._iterating = False
            self._release()

    def _frames(self) -> Iterator[Frame]:
        interval_s = 1.0 / self.fps if self.fps else DEFAULT_FRAME_INTERVAL_S
        best_effort = BestEffortTimestamp()
        clock = self._timestamps
        index = 0
        if self._closed.is_set():
            return
        for packet in self._packets():
            if self._closed.is_set():
                return
            try:
                decoded = packet.decode()
            except av.FFmpegError as error:
                self._count_corrupt(f"undecodable packet (pts={packet.pts}): {error}")
                continue
            for av_frame in decoded:
                fallback_s = 0.0 if clock.last_s is None else clock.last_s + interval_s
                chosen = best_effort(av_frame.pts, av_frame.dts)
                timestamp_s = clock.next(stream_time(chosen, av_frame, self._stream), fallback_s)
                image = frame_to_bgr(av_frame)
                self.stats.frames_read += 1
                yield Frame(index=index, timestamp_s=timestamp_s, image=image, source=self.name)
                index += 1

    def _packets(self) -> Iterator[av.Packet]:
        """Demux video packets to the end, resuming after demuxer errors (corrupt data)."""
        consecutive_errors = 0
        while not self._closed.is_set():
            demuxer = self._container.demux(self._stream)
            try:
                for packet in demuxer:
                    consecutive_errors = 0
                    yield packet
                return
            except av.FFmpegError as error:
                consecutive_errors += 1
                self._count_corrupt(f"demuxer error: {error}")
                if consecutive_errors >= MAX_CONSECUTIVE_DEMUX_ERRORS:
                    raise SourceError(
                        f"{self.name}: {consecutive_errors} demuxer errors in a row, giving up "
                        f"after {self.stats.frames_read} frames (last: {error})"
                    ) from error

    def _count_corrupt(self, what: str) -> None:
        self.stats.frames_corrupt += 1
        self.stats.last_error = what
        LOGGER.warning("%s: %s; skipped (%d so far)", self.name, what, self.stats.frames_corrupt)

    def close(self) -> None:
        """Stop iteration before the next packet and release the file. Safe from any thread."""
        self._closed.set()
        with self._lock:
            iterating = self._iterating
        if not iterating:
            self._release()

    def _release(self) -> None:
        with self._lock:
            if self._container is not None:
                self._container.close()
                self._container = None
            self.stats.connection_state = "closed"


class ImageFolderSource:
    """The images of a folder in natural name order (``img2`` before ``img10``), as frames.

    Reads files whose suffix is in :data:`IMAGE_EXTENSIONS` (case-insensitive), decoded by
    OpenCV to ``(H, W, 3)`` uint8 **BGR** (grey and alpha images are converted). Frame ``i``
    (0-based over the images that decode) has ``timestamp_s = i / config.folder_fps``; ``fps``
    is ``config.folder_fps``. An image that does not decode is logged (one warning per file,
    naming it), counted in ``stats.frames_corrupt`` and skipped. Images may differ in size.

    The constructor decodes images until one succeeds (that image is kept and becomes the first
    frame, so nothing is decoded twice): a folder in which no image decodes fails at once,
    before a model is loaded, instead of running to an empty result (issue 11).

    Raises (from the constructor):
        SourceNotFoundError: the folder does not exist.
        SourceError: it holds no image files, or none of them decodes (the message names the
            folder and the number of files).
    """

    is_live = False

    def __init__(self, folder: str | Path, config: SourceConfig | None = None) -> None:
        self.config = config or SourceConfig()
        self.folder = Path(folder)
        self.name = str(folder)
        self.stats = SourceStats()
        if not self.folder.is_dir():
            raise SourceNotFoundError(f"image folder not found: {self.folder}")
        self.paths = sorted(
            (path for path in self.folder.iterdir()
             if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS),
            key=natural_sort_key,
        )
        if not self.paths:
            raise SourceError(
                f"no images in folder {self.folder} (looked for {', '.join(IMAGE_EXTENSIONS)})"
            )
        self.fps: float | None = float(self.config.folder_fps)
        self.frame_count: int | None = len(self.paths)
        self._closed = threading.Event()
        # The first image that decodes: (its position in self.paths, the image).
        self._first: tuple[int, np.ndarray] | None = self._find_first_readable()
        self.stats.connection_state = "connected"

    def _find_first_readable(self) -> tuple[int, np.ndarray]:
        """The first image that decodes. The files skipped before it are warned about only once
        it is found: when none decodes, the one-line error says it all."""
        skipped: list[Path] = []
        for position, path in enumerate(self.paths):
            image = read_bgr_image(path)
            if image is not None:
                for bad in skipped:
                    self._note_corrupt(bad)
                return position, image
            skipped.append(path)
        self.stats.frames_corrupt = len(skipped)
        raise SourceError(
            f"no readable image in {self.folder}: {len(self.paths)} "
            f"file{'s' if len(self.paths) != 1 else ''}, all corrupt or not images "
            f"(first: {self.paths[0].name}); check the files or point to another folder"
        )

    def _read(self, path: Path) -> np.ndarray | None:
        """Decode one image; a failure is counted and logged (one warning per file)."""
        image = read_bgr_image(path)
        if image is None:
            self._note_corrupt(path)
        return image

    def _note_corrupt(self, path: Path) -> None:
        self.stats.frames_corrupt += 1
        self.stats.last_error = f"cannot decode image {path}"
        LOGGER.warning("%s: cannot decode image %s; skipped (%d so far)", self.name,
                       path.name, self.stats.frames_corrupt)

    @property
    def timestamp_repairs(self) -> int:
        """Always 0: folder times are ``index / fps`` by construction."""
        return 0

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        # The constructor's image serves the first pass; a later pass reads every file again.
        first, self._first = self._first, None
        start, first_image = first if first is not None else (0, None)
        try:
            for position in range(start, len(self.paths)):
                if self._closed.is_set():
                    return
                if first_image is not None:
                    image, first_image = first_image, None
                else:
                    image = self._read(self.paths[position])
                if image is None:
                    continue
                self.stats.frames_read += 1
                yield Frame(index=index, timestamp_s=index / self.fps, image=image,
                            source=self.name)
                index += 1
        finally:
            self.stats.connection_state = "closed"

    def close(self) -> None:
        """Stop iteration before the next image. Safe from any thread."""
        self._closed.set()
        self.stats.connection_state = "closed"


#: Top-level ISO base media (MP4/MOV) box types; a file starting with another type is not one.
_ISO_TOP_LEVEL_BOXES = frozenset(
    b"ftyp styp moov mdat moof mfra free skip wide uuid meta pdin sidx ssix prft emsg".split()
)


def describe_truncated_mp4(path: Path) -> str | None:
    """Why an ISO base media file (MP4, MOV, M4V, 3GP) looks cut short, or ``None``.

    Walks the top-level boxes (ISO/IEC 14496-12, section 4.2: a 32-bit big-endian size that
    includes the 8-byte header, a four-character type; size 1: a 64-bit size follows; size 0:
    the box runs to the end of the file). The file looks truncated when a box claims more bytes
    than the file has left, or when the walk ends without a ``moov`` box (the index of the
    samples, which most recorders write last, so an interrupted recording has none) and without
    ``moof`` fragments. Returns ``None`` for files that are not ISO media (the first box is not
    a known top-level type) or that look complete. Reads only the box headers.
    """
    try:
        size_bytes = path.stat().st_size
        with path.open("rb") as handle:
            offset, seen = 0, set()
            while offset + 8 <= size_bytes:
                handle.seek(offset)
                header = handle.read(16)
                box_size, box_type = struct.unpack(">I4s", header[:8])
                if offset == 0 and box_type not in _ISO_TOP_LEVEL_BOXES:
                    return None
                if box_size == 1:
                    if len(header) < 16:
                        break
                    box_size = struct.unpack(">Q", header[8:16])[0]
                elif box_size == 0:
                    box_size = size_bytes - offset
                if box_size < 8:
                    return None  # not a sane box: corrupt rather than cut short
                seen.add(box_type)
                if offset + box_size > size_bytes:
                    name = box_type.decode("latin-1")
                    missing = "" if b"moov" in seen else ", and no 'moov' index came before it"
                    return (f"its '{name}' box needs {box_size} bytes but only "
                            f"{size_bytes - offset} remain{missing}")
                offset += box_size
    except OSError as error:
        LOGGER.debug("%s: cannot check for truncation: %s", path, error)
        return None
    if not seen or b"moov" in seen or b"moof" in seen:
        return None
    return "no 'moov' index box"


def natural_sort_key(path: Path) -> tuple:
    """Sort key that orders digit runs by value: ``frame2.jpg`` < ``frame10.jpg``."""
    return tuple(
        (0, int(part), part) if part.isdigit() else (1, 0, part.lower())
        for part in re.split(r"(\d+)", path.name)
    )


def read_bgr_image(path: Path) -> np.ndarray | None:
    """Decode an image file to ``(H, W, 3)`` uint8 BGR, or ``None`` if it does not decode."""
    data = np.fromfile(path, dtype=np.uint8)
    if data.size == 0:
        return None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        return None
    return np.ascontiguousarray(image)
