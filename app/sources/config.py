"""Settings and errors shared by every frame source."""

from __future__ import annotations

from dataclasses import dataclass

from yolov7_track.checks import require_positive
from yolov7_track.errors import Yolov7TrackError

RTSP_TRANSPORTS = ("tcp", "udp", "udp_multicast", "http", "https")


class SourceError(Yolov7TrackError):
    """A source cannot be opened or read (bad spec, unreadable file, unreachable stream, gave up).

    The message names the source (path, or URL with the password masked) and what went wrong.
    """


class SourceNotFoundError(SourceError, FileNotFoundError):
    """The video file, image folder or webcam device does not exist (message names the path)."""


@dataclass(frozen=True)
class SourceConfig:
    """How sources are opened and how live sources recover. Validated at construction.

    Attributes:
        timeout_s: seconds without a frame after which a live source is declared stalled and
            reconnected; also the bound on opening it. Blocking reads are bounded by
            :attr:`read_timeout_s` (FFmpeg socket ``timeout``/``rw_timeout`` and PyAV's
            interrupt-callback timeout), so a stalled camera is detected within this time.
        reconnect_initial_s: delay before the first reconnect attempt after a live source ends,
            stalls or errors; each further consecutive attempt doubles it (exponential backoff).
        reconnect_max_s: upper bound of that delay.
        max_reconnect_attempts: consecutive failed reconnect attempts after which a live source
            gives up and its iteration raises :class:`SourceError`; ``None`` = retry forever.
            The count resets once a reconnected stream delivers a frame.
        rtsp_transport: FFmpeg ``rtsp_transport``; TCP by default (no packet loss, passes NAT).
        folder_fps: nominal frame rate of an image folder; frame ``i`` gets timestamp
            ``i / folder_fps`` seconds.
        live_buffer_frames: frames a live source's reader thread may hold ahead of the consumer
            (the reader waits when it is full; the pipeline applies its own drop policy).
        webcam_video_size: ``(width, height)`` in pixels to request from a webcam, or ``None``
            for the device default.
        webcam_fps: frame rate to request from a webcam, or ``None`` for the device default.
        webcam_input_format: pixel/stream format to request from a V4L2 webcam (for example
            ``"mjpeg"`` for higher resolutions over USB 2), or ``None`` for the default.

    Raises:
        ValueError: a field is out of range; the message names the field.
    """

    timeout_s: float = 5.0
    reconnect_initial_s: float = 0.5
    reconnect_max_s: float = 30.0
    max_reconnect_attempts: int | None = None
    rtsp_transport: str = "tcp"
    folder_fps: float = 25.0
    live_buffer_frames: int = 2
    webcam_video_size: tuple[int, int] | None = None
    webcam_fps: float | None = None
    webcam_input_format: str | None = None

    def __post_init__(self) -> None:
        _require_positive("timeout_s", self.timeout_s)
        _require_positive("reconnect_initial_s", self.reconnect_initial_s)
        _require_positive("reconnect_max_s", self.reconnect_max_s)
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ValueError(
                f"SourceConfig.reconnect_max_s ({self.reconnect_max_s}) must be >= "
                f"reconnect_initial_s ({self.reconnect_initial_s})"
            )
        if self.max_reconnect_attempts is not None and (
            not isinstance(self.max_reconnect_attempts, int) or self.max_reconnect_attempts < 0
        ):
            raise ValueError(
                "SourceConfig.max_reconnect_attempts must be None (retry forever) or an int >= 0, "
                f"got {self.max_reconnect_attempts!r}"
            )
        if self.rtsp_transport not in RTSP_TRANSPORTS:
            raise ValueError(
                f"SourceConfig.rtsp_transport must be one of {RTSP_TRANSPORTS}, "
                f"got {self.rtsp_transport!r}"
            )
        _require_positive("folder_fps", self.folder_fps)
        if not isinstance(self.live_buffer_frames, int) or self.live_buffer_frames < 1:
            raise ValueError(
                "SourceConfig.live_buffer_frames must be an int >= 1, "
                f"got {self.live_buffer_frames!r}"
            )
        if self.webcam_video_size is not None:
            width, height = self.webcam_video_size
            if not (int(width) > 0 and int(height) > 0):
                raise ValueError(
                    "SourceConfig.webcam_video_size must be (width, height) in pixels, both > 0, "
                    f"got {self.webcam_video_size!r}"
                )
        if self.webcam_fps is not None:
            _require_positive("webcam_fps", self.webcam_fps)

    @property
    def read_timeout_s(self) -> float:
        """Bound on one blocking read of a live source: ``timeout_s / 2`` seconds.

        Half, because a timed-out RTSP read does not always fail at once: with FFmpeg 8 the
        first expiry may return a partial packet, or the demuxer waits a second socket timeout
        before the error surfaces (measured: socket ``timeout`` 3 s -> error after 6 s). Two
        half-length waits fit in ``timeout_s``; the reader retries a timed-out read on the same
        connection until no frame has come for the full ``timeout_s``.
        """
        return self.timeout_s / 2.0

    def backoff_delay_s(self, attempt: int) -> float:
        """Delay before reconnect attempt ``attempt`` (1-based): ``initial * 2**(attempt-1)``,
        capped at ``reconnect_max_s``."""
        if attempt < 1:
            raise ValueError(f"reconnect attempt numbers start at 1, got {attempt}")
        # Cap the exponent first so a long outage cannot overflow the float.
        exponent = min(attempt - 1, 64)
        return min(self.reconnect_initial_s * 2.0**exponent, self.reconnect_max_s)


def _require_positive(field_name: str, value: float) -> None:
    require_positive(value, f"SourceConfig.{field_name}")
