"""Live sources (network streams, webcams): a reader thread that reconnects with backoff."""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import av

from app.frames import Frame, SourceStats
from app.sources.config import SourceConfig, SourceError, SourceNotFoundError
from app.sources.decode import (
    describe_error,
    frame_to_bgr,
    nominal_fps,
    open_video_stream,
    stream_time,
)
from app.sources.spec import mask_credentials, password_of, stream_options
from app.sources.timestamps import BestEffortTimestamp, MonotonicClock

LOGGER = logging.getLogger(__name__)

# How often a waiting consumer or a reader blocked on a full buffer looks at the closed flag.
_POLL_S = 0.05
# Nominal interval used only when a stream states no frame rate.
_DEFAULT_FRAME_INTERVAL_S = 1.0 / 25.0
# A read (or an open) that fails after at least this fraction of the read timeout failed
# because the timeout expired, whatever FFmpeg calls the error: an RTSP server that accepts the
# connection and then sends nothing makes FFmpeg report "Invalid data found when processing
# input" (AVERROR_INVALIDDATA) once its socket timeout ends the wait (measured at open with
# PyAV 18.1 / libavformat 62.12; tests/reliability/test_counting_sources.py).
_TIMED_OUT_FRACTION = 0.9
_TIMEOUT_ERRORS = (av.error.ExitError, av.error.TimeoutError, av.error.InvalidDataError)

Opener = Callable[[], "tuple[Any, Any]"]


@dataclass(frozen=True)
class _End:
    """Queue item that ends iteration: ``error`` is raised to the consumer when not None."""

    error: SourceError | None = None


class LiveSource:
    """A camera or stream read by a background thread, reopened whenever it ends or stalls.

    Frames: ``(H, W, 3)`` uint8 **BGR**, C-contiguous. ``index`` counts every decoded frame
    since the source was opened, across reconnects. ``timestamp_s`` (seconds) is 0 for the
    first frame; within one connection it follows the stream's PTS; the first frame after a
    reconnect is placed at the wall-clock time since the first frame (or just after the
    previous frame if that is later), so times keep increasing across reconnects and stay
    close to real elapsed time, which downstream tracking and dwell times rely on. Timestamps
    re-based because they failed to increase are logged and counted in
    :attr:`timestamp_repairs`.

    The first connection is made in the constructor (so a bad URL fails at once). Iterating
    starts the reader thread. The reader declares the connection lost when the stream ends,
    when a read fails, or when no new frame has arrived for ``config.timeout_s`` seconds (each
    blocking read is bounded by ``config.read_timeout_s`` through FFmpeg's socket timeout and
    PyAV's interrupt callback, so a frozen camera cannot hang the thread). It then reconnects
    after ``config.backoff_delay_s(attempt)`` seconds, logging each attempt and updating
    ``stats`` (``connection_state`` "reconnecting" then "connected", ``reconnect_attempt``,
    ``reconnects`` = successful reconnects, ``last_error``). Packets the decoder rejects are
    logged and counted in ``stats.frames_corrupt``.

    ``close()`` may be called from any thread: iteration stops within about 50 ms even while
    the reader is blocked in a read or a backoff sleep; the reader thread itself exits when its
    blocking call returns (within ``read_timeout_s`` for streams), see :meth:`join`. Breaking
    out of the iteration closes the source too. Iterate once.

    Raises:
        SourceError: from the constructor when the first connection fails; from iteration when
            ``config.max_reconnect_attempts`` consecutive reconnects failed, or when the reader
            thread hit an unexpected error.
    """

    is_live = True

    def __init__(self, name: str, opener: Opener, config: SourceConfig, *,
                 raw_target: str = "", secret: str | None = None) -> None:
        """``opener()`` returns ``(container, video stream)`` or raises :class:`SourceError`;
        ``raw_target`` (the unmasked URL) and ``secret`` (its password) are scrubbed from
        error messages."""
        self.name = name
        self._raw_target = raw_target or name
        self._secret = secret
        self.config = config
        self.stats = SourceStats()
        self.frame_count: int | None = None
        self._opener = opener
        self._closed = threading.Event()
        self._buffer: queue.Queue[Frame | _End] = queue.Queue(maxsize=config.live_buffer_frames)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # guards _thread, _iterated and _pending
        self._iterated = False
        self._clock = MonotonicClock(name)
        self._first_frame_monotonic_s: float | None = None
        self._next_index = 0
        container, stream = self._opener()
        self.fps: float | None = nominal_fps(stream)
        self._interval_s = 1.0 / self.fps if self.fps else _DEFAULT_FRAME_INTERVAL_S
        self._pending: tuple[Any, Any] | None = (container, stream)
        self.stats.connection_state = "connected"
        LOGGER.info("%s: connected (%s fps)", self.name,
                    f"{self.fps:.2f}" if self.fps else "unknown")

    @property
    def timestamp_repairs(self) -> int:
        """Frames whose stream time failed to increase and was re-based (each one logged)."""
        return self._clock.repairs

    # ---- consumer side ------------------------------------------------------------------

    def __iter__(self) -> Iterator[Frame]:
        with self._lock:
            if self._iterated:
                raise SourceError(f"{self.name}: a source can be iterated only once")
            self._iterated = True
            if self._closed.is_set():
                return
            connection, self._pending = self._pending, None
            self._thread = threading.Thread(target=self._reader_main, args=(connection,),
                                            name=f"source:{self.name}", daemon=True)
            self._thread.start()
        try:
            while not self._closed.is_set():
                try:
                    item = self._buffer.get(timeout=_POLL_S)
                except queue.Empty:
                    continue
                if isinstance(item, _End):
                    if item.error is not None:
                        raise item.error
                    return
                yield item
        finally:
            self.close()

    def close(self) -> None:
        """Stop iteration promptly and make the reader thread exit. Safe from any thread."""
        self._closed.set()
        self.stats.connection_state = "closed"
        with self._lock:
            # Never iterated: the first connection is still ours to release.
            pending, self._pending = self._pending, None
        if pending is not None:
            pending[0].close()

    def join(self, timeout_s: float | None = None) -> bool:
        """Wait for the reader thread to exit (after :meth:`close`); True if it has."""
        with self._lock:
            thread = self._thread
        if thread is None:
            return True
        thread.join(timeout_s)
        return not thread.is_alive()

    # ---- reader thread ------------------------------------------------------------------

    def _reader_main(self, connection: tuple[Any, Any] | None) -> None:
        try:
            attempt = 0
            while connection is not None and not self._closed.is_set():
                container, stream = connection
                try:
                    frames, reason = self._pump(container, stream)
                finally:
                    container.close()
                if self._closed.is_set():
                    return
                if frames > 0:
                    attempt = 0
                self._connection_lost(reason)
                connection, attempt = self._reconnect(attempt)
        except BaseException as error:  # a bug in the reader must reach the consumer
            LOGGER.exception("%s: reader thread failed", self.name)
            self._hand_over(_End(SourceError(f"{self.name}: reader thread failed: {error!r}")))
        finally:
            if self._closed.is_set():
                self.stats.connection_state = "closed"

    def _pump(self, container: Any, stream: Any) -> tuple[int, str]:
        """Decode and hand over frames until the connection fails; return (frames, reason).

        A read that times out (after ``config.read_timeout_s``, half of ``timeout_s``) is
        retried on the same connection until no *fresh* frame has arrived for ``timeout_s``;
        then the stream counts as stalled. A frame is fresh when the read of its packet
        returned before the read timeout: a packet that only comes out when the timeout
        interrupts the read was already buffered (FFmpeg's RTP depacketizer holds the last
        access unit until the next one starts), so it is delivered but does not prove the
        camera is alive. Stall detection thus takes ``timeout_s`` plus up to about 0.1 s
        (FFmpeg polls its interrupt callback every 100 ms).
        """
        best_effort = BestEffortTimestamp()
        self._clock.start_segment()
        frames = 0
        last_fresh_frame_s = time.monotonic()
        interrupted_read_s = 0.9 * self.config.read_timeout_s

        def stalled() -> bool:
            return time.monotonic() - last_fresh_frame_s >= self.config.timeout_s

        while True:
            try:
                read_started_s = time.monotonic()
                for packet in container.demux(stream):
                    fresh = time.monotonic() - read_started_s < interrupted_read_s
                    if self._closed.is_set():
                        return frames, "closed"
                    for av_frame in self._decode(packet):
                        frame = self._make_frame(av_frame, stream, best_effort)
                        if not self._hand_over(frame):
                            return frames, "closed"
                        frames += 1
                        if fresh:
                            last_fresh_frame_s = time.monotonic()
                        self.stats.connection_state = "connected"
                        self.stats.reconnect_attempt = 0
                    if stalled():
                        # Packets arrive (buffered leftovers, other streams) but no new picture.
                        return frames, (f"the stream stalled: no new video frame for "
                                        f"{self.config.timeout_s:g} s")
                    read_started_s = time.monotonic()
                return frames, "stream ended"
            except _TIMEOUT_ERRORS as error:
                read_s = time.monotonic() - read_started_s
                if (isinstance(error, av.error.InvalidDataError)
                        and read_s < _TIMED_OUT_FRACTION * self.config.read_timeout_s):
                    return frames, self._describe(error)  # really bad data, not a wait
                LOGGER.debug("%s: read timed out %.2f s after the last fresh frame: %s",
                             self.name, time.monotonic() - last_fresh_frame_s,
                             self._describe(error))
                if self._closed.is_set():
                    return frames, "closed"
                if stalled():
                    return frames, (f"the stream stalled: no new video frame for "
                                    f"{self.config.timeout_s:g} s ({self._describe(error)})")
            except (av.FFmpegError, OSError) as error:
                return frames, self._describe(error)

    def _decode(self, packet: Any) -> list[Any]:
        """Frames decoded from ``packet``; a packet the decoder rejects is counted and skipped."""
        try:
            return packet.decode()
        except av.FFmpegError as error:
            self._count_corrupt(error)
            return []

    def _make_frame(self, av_frame: Any, stream: Any, best_effort: BestEffortTimestamp) -> Frame:
        now_s = time.monotonic()
        if self._first_frame_monotonic_s is None:
            self._first_frame_monotonic_s = now_s
        if self._clock.last_s is None:
            fallback_s = 0.0
        else:
            wall_s = now_s - self._first_frame_monotonic_s
            fallback_s = max(wall_s, self._clock.last_s + self._interval_s)
        chosen = best_effort(av_frame.pts, av_frame.dts)
        timestamp_s = self._clock.next(stream_time(chosen, av_frame, stream), fallback_s)
        frame = Frame(index=self._next_index, timestamp_s=timestamp_s,
                      image=frame_to_bgr(av_frame), source=self.name)
        self._next_index += 1
        self.stats.frames_read += 1
        return frame

    def _hand_over(self, item: Frame | _End) -> bool:
        """Put ``item`` in the buffer, waiting while it is full; False if closed meanwhile."""
        while not self._closed.is_set():
            try:
                self._buffer.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _connection_lost(self, reason: str) -> None:
        self.stats.connection_state = "reconnecting"
        self.stats.last_error = reason
        LOGGER.warning("%s: connection lost after frame %d: %s", self.name,
                       self._next_index - 1, reason)

    def _reconnect(self, attempt: int) -> tuple[tuple[Any, Any] | None, int]:
        """Retry with exponential backoff; return (connection, attempt).

        The connection is ``None`` when the source was closed or gave up (the consumer then
        gets a :class:`SourceError`)."""
        limit = self.config.max_reconnect_attempts
        while not self._closed.is_set():
            attempt += 1
            if limit is not None and attempt > limit:
                message = (f"{self.name}: gave up after {limit} reconnect attempts; "
                           f"last error: {self.stats.last_error}")
                LOGGER.error("%s", message)
                self.stats.connection_state = "closed"
                self._hand_over(_End(SourceError(message)))
                return None, attempt
            delay_s = self.config.backoff_delay_s(attempt)
            self.stats.connection_state = "reconnecting"
            self.stats.reconnect_attempt = attempt
            LOGGER.warning("%s: reconnect attempt %d%s in %.2f s", self.name, attempt,
                           f"/{limit}" if limit is not None else "", delay_s)
            if self._closed.wait(delay_s):
                return None, attempt
            try:
                connection = self._opener()
            except SourceError as error:
                self.stats.last_error = str(error)
                LOGGER.warning("%s: reconnect attempt %d failed: %s", self.name, attempt, error)
                continue
            if self._closed.is_set():
                connection[0].close()
                return None, attempt
            self.stats.reconnects += 1
            self.stats.connection_state = "connected"
            LOGGER.info("%s: reconnected (attempt %d, %d reconnects so far)", self.name, attempt,
                        self.stats.reconnects)
            return connection, attempt
        return None, attempt

    def _count_corrupt(self, error: BaseException) -> None:
        self.stats.frames_corrupt += 1
        LOGGER.warning("%s: undecodable packet skipped (%d so far): %s", self.name,
                       self.stats.frames_corrupt, self._describe(error))

    def _describe(self, error: BaseException) -> str:
        return describe_error(error, self._raw_target, self.name, self._secret)


def open_stream(url: str, config: SourceConfig) -> LiveSource:
    """A live network stream (RTSP/RTMP/HTTP/UDP/TCP URL); see :class:`LiveSource`.

    FFmpeg options from :func:`app.sources.spec.stream_options` (TCP for RTSP, socket timeout
    ``config.read_timeout_s``) plus PyAV's open/read timeout. The source's ``name`` is the URL
    with any password masked.

    An open that fails only once the read timeout has expired is reported as a stall ("no data
    from URL for N s"), whatever FFmpeg called it: a server that accepts the connection and
    never answers makes FFmpeg's RTSP client report "Invalid data found when processing input".
    """
    name = mask_credentials(url)
    secret = password_of(url)
    options = stream_options(url, config)

    def opener() -> tuple[Any, Any]:
        started_s = time.monotonic()
        try:
            return open_video_stream(url, name, options=options,
                                     timeout_s=(config.timeout_s, config.read_timeout_s),
                                     scrub=secret)
        except SourceError as error:
            waited_s = time.monotonic() - started_s
            if (not isinstance(error.__cause__, _TIMEOUT_ERRORS)
                    or waited_s < _TIMED_OUT_FRACTION * config.read_timeout_s):
                raise
            raise SourceError(
                f"cannot open {name}: no data from the stream for {waited_s:.1f} s: it stalled, "
                "or the server accepted the connection and never answered; check that the "
                "camera or server is running and not overloaded"
            ) from error

    return LiveSource(name, opener, config, raw_target=url, secret=secret)


def open_webcam(index: int, config: SourceConfig) -> LiveSource:
    """Webcam number ``index``: ``/dev/video<index>`` via V4L2 on Linux, AVFoundation on macOS.

    Requests ``config.webcam_video_size``, ``webcam_fps`` and ``webcam_input_format`` when set.
    The source's ``name`` is ``webcam:<index>``. Limitation: a V4L2 read waits inside the
    kernel, where FFmpeg's interrupt callback cannot end it, so a camera that freezes without
    an error keeps the reader thread waiting (iteration still stops on ``close()``); an
    unplugged camera fails the read and is reopened with backoff like a stream.

    Raises:
        SourceNotFoundError: the device does not exist (Linux).
        SourceError: the platform has no index-based capture, or the device cannot be opened.
    """
    name = f"webcam:{index}"
    options: dict[str, str] = {}
    if config.webcam_video_size is not None:
        width, height = config.webcam_video_size
        options["video_size"] = f"{int(width)}x{int(height)}"
    if config.webcam_fps is not None:
        options["framerate"] = f"{config.webcam_fps:g}"
    if sys.platform.startswith("linux"):
        device = Path(f"/dev/video{index}")
        if not device.exists():
            raise SourceNotFoundError(
                f"webcam {index} not found: {device} does not exist (list cameras with "
                "`ls /dev/video*`; in a container, pass the device through)"
            )
        target, capture_format = str(device), "v4l2"
        if config.webcam_input_format is not None:
            options["input_format"] = config.webcam_input_format
    elif sys.platform == "darwin":
        target, capture_format = str(index), "avfoundation"
    else:
        raise SourceError(
            f"webcams by index are supported on Linux (V4L2) and macOS (AVFoundation), not on "
            f"{sys.platform}; open the camera through a stream URL instead"
        )

    def opener() -> tuple[Any, Any]:
        return open_video_stream(target, name, format=capture_format, options=options,
                                 timeout_s=(config.timeout_s, config.read_timeout_s))

    return LiveSource(name, opener, config, raw_target=target)
