"""What kind of source a spec names, printable names without passwords, FFmpeg stream options."""

from __future__ import annotations

import enum
import re
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from app.sources.config import SourceConfig, SourceError

# URL schemes read as live streams, and the FFmpeg options that bound every blocking socket
# operation for each. Units: FFmpeg's ``timeout``/``rw_timeout`` are microseconds here.
# Pitfall: for ``rtmp`` the ``timeout`` option is a *listen* timeout in seconds and turns on
# listen (server) mode (FFmpeg ``libavformat/rtmpproto.c``), so RTMP gets ``rw_timeout`` only.
LIVE_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp")
_SCHEME_PATTERN = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


class SourceKind(enum.Enum):
    """The four kinds of source :func:`app.sources.open_source` understands."""

    WEBCAM = "webcam"
    IMAGE_FOLDER = "image_folder"
    STREAM = "stream"
    VIDEO_FILE = "video_file"


def classify_source(spec: str | int | Path) -> SourceKind:
    """Decide what ``spec`` names, without touching the file system beyond ``is_dir``.

    * ``int`` or a string of digits (``0``, ``"1"``): webcam by index (a file literally named
      ``0`` is reached as ``./0`` or a :class:`~pathlib.Path`).
    * a string ``scheme://...`` with a scheme in :data:`LIVE_SCHEMES`: live stream.
    * an existing directory: image folder.
    * anything else: a video file (anything FFmpeg reads).

    Raises:
        SourceError: a URL with a scheme we do not read (``ftp://``, ``file://``...).
    """
    if isinstance(spec, bool):
        raise SourceError(f"source must be a path, URL or webcam index, got {spec!r}")
    if isinstance(spec, int):
        if spec < 0:
            raise SourceError(f"webcam index must be >= 0, got {spec}")
        return SourceKind.WEBCAM
    if isinstance(spec, str):
        if spec.strip().isdigit():
            return SourceKind.WEBCAM
        match = _SCHEME_PATTERN.match(spec)
        if match:
            scheme = match.group(1).lower()
            if scheme in LIVE_SCHEMES:
                return SourceKind.STREAM
            raise SourceError(
                f"unsupported URL scheme {scheme!r} in source {mask_credentials(spec)!r}; "
                f"live streams use one of {', '.join(s + '://' for s in LIVE_SCHEMES)}; "
                "for a local file pass its path"
            )
    if Path(spec).is_dir():
        return SourceKind.IMAGE_FOLDER
    return SourceKind.VIDEO_FILE


def url_scheme(url: str) -> str:
    """The lower-case scheme of ``url`` (``"rtsp"`` for ``rtsp://...``)."""
    match = _SCHEME_PATTERN.match(url)
    if not match:
        raise SourceError(f"not a URL: {mask_credentials(url)!r}")
    return match.group(1).lower()


def mask_credentials(url: str) -> str:
    """``url`` with its password replaced by ``***`` (``rtsp://admin:***@cam/stream``).

    Used for every name, log line and error message so a camera password never leaks.
    Strings that are not URLs with a password come back unchanged.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def password_of(url: str) -> str | None:
    """The password in ``url``, or ``None`` (for scrubbing it out of FFmpeg's messages)."""
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def stream_options(url: str, config: SourceConfig) -> dict[str, str]:
    """FFmpeg options for a live URL: a socket timeout always, TCP transport for RTSP.

    The socket timeout is ``config.read_timeout_s`` (half of ``timeout_s``; see there why).

    Returns:
        option name -> value (strings, as FFmpeg takes them); timeouts in microseconds.
    """
    scheme = url_scheme(url)
    timeout_us = str(int(round(config.read_timeout_s * 1e6)))
    if scheme in ("rtsp", "rtsps"):
        # FFmpeg >= 5: RTSP ``timeout`` is the socket I/O timeout (the old ``stimeout``).
        return {"rtsp_transport": config.rtsp_transport, "timeout": timeout_us}
    if scheme in ("rtmp", "rtmps"):
        return {"rw_timeout": timeout_us}
    if scheme in ("http", "https"):
        return {"timeout": timeout_us, "rw_timeout": timeout_us}
    if scheme in ("udp", "tcp"):
        return {"timeout": timeout_us}
    raise SourceError(f"no stream options for URL scheme {scheme!r}")
