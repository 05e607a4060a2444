"""Is there a display to open a window on? Asked before OpenCV or Qt try, because both abort
the whole process (SIGABRT) when the display they are given cannot be reached.

Linux and other X11/Wayland systems only; on Windows and macOS a display is assumed. The check
connects to the display server's socket, exactly as a client library would, and closes it:

- Wayland: ``$WAYLAND_DISPLAY`` names a socket in ``$XDG_RUNTIME_DIR`` (or is an absolute path).
- X11: ``$DISPLAY`` is ``[host]:N[.screen]``; a local display (empty host or ``unix``) is the
  socket ``/tmp/.X11-unix/XN`` (also in Linux's abstract namespace), a remote one is TCP port
  ``6000 + N`` of ``host`` (X Window System protocol, "Connection Setup").

Qt platforms that need no display (``QT_QPA_PLATFORM=offscreen``, ``minimal``, ``vnc``...) make the
check pass for the GUI.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import sys

__all__ = ["display_problem", "NO_DISPLAY_QT_PLATFORMS", "WindowProcess"]

logger = logging.getLogger(__name__)

#: Qt platform plugins that draw without a display server.
NO_DISPLAY_QT_PLATFORMS = ("offscreen", "minimal", "vnc", "eglfs", "linuxfb", "minimalegl")
_X11_DISPLAY = re.compile(r"^(?P<host>[^:]*):(?P<number>\d+)(?:\.\d+)?$")
_CONNECT_TIMEOUT_S = 1.0


def _can_connect(family: int, address: object) -> bool:
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(_CONNECT_TIMEOUT_S)
        try:
            sock.connect(address)
        except OSError:
            return False
    return True


def _wayland_reachable(name: str) -> bool:
    path = name if os.path.isabs(name) else os.path.join(os.environ.get("XDG_RUNTIME_DIR", ""), name)
    return _can_connect(socket.AF_UNIX, path)


def _x11_problem(display: str) -> str | None:
    match = _X11_DISPLAY.match(display)
    if match is None:
        return f"DISPLAY={display!r} is not of the form [host]:N"
    host, number = match["host"], int(match["number"])
    if host in ("", "unix"):
        path = f"/tmp/.X11-unix/X{number}"
        if _can_connect(socket.AF_UNIX, path) or (
            sys.platform.startswith("linux") and _can_connect(socket.AF_UNIX, "\0" + path)
        ):
            return None
        return f"no X server answers on DISPLAY={display} ({path})"
    if _can_connect(socket.AF_INET, (host, 6000 + number)):
        return None
    return f"no X server answers on DISPLAY={display} ({host}, port {6000 + number})"


def display_problem(*, for_qt: bool = False) -> str | None:
    """Why no window can be opened, or ``None`` if a display server answers.

    Args:
        for_qt: the window is Qt's (the GUI): a display-less ``QT_QPA_PLATFORM`` is fine.

    Returns:
        A short reason naming the variable and its value, for a one-line error.
    """
    if not (sys.platform.startswith("linux") or "bsd" in sys.platform):
        return None
    if for_qt and os.environ.get("QT_QPA_PLATFORM", "").split(":")[0] in NO_DISPLAY_QT_PLATFORMS:
        return None
    wayland, x11 = os.environ.get("WAYLAND_DISPLAY"), os.environ.get("DISPLAY")
    if wayland and _wayland_reachable(wayland):
        return None
    if x11:
        return _x11_problem(x11)
    if wayland:
        return f"no Wayland compositor answers on WAYLAND_DISPLAY={wayland}"
    return "neither DISPLAY nor WAYLAND_DISPLAY is set"


class WindowProcess:
    """An OpenCV window in a child process, fed with BGR frames.

    OpenCV's window toolkit ends the whole process when its display goes away mid-run (the X
    server or the ssh tunnel dies: a segfault or an abort, which Python cannot catch). In a child
    process that costs only the window: :meth:`show` notices the child is gone, logs one warning
    and the run goes on writing its video and events. Frames are handed over through a queue of
    two; when the window is slower than the pipeline the newest frame wins (a display, not a
    recording). ``q`` or Esc in the window sets :attr:`stop_requested`.

    Args:
        title: window title.
    """

    QUEUE_FRAMES = 2

    def __init__(self, title: str) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")  # no fork of a process with threads
        self._frames = context.Queue(maxsize=self.QUEUE_FRAMES)
        self._stop = context.Event()
        self._process = context.Process(target=_window_loop, args=(self._frames, self._stop, title),
                                        name="yolov7-track-window", daemon=True)
        self._process.start()
        self.lost = False

    @property
    def stop_requested(self) -> bool:
        """The user pressed q or Esc in the window."""
        return self._stop.is_set()

    def show(self, image_bgr) -> bool:  # noqa: ANN001 - (H, W, 3) uint8 BGR
        """Hand one frame to the window; ``False`` once the window is gone (display lost)."""
        import queue

        if not self._process.is_alive():
            if not self.lost:
                self.lost = True
                logger.warning("the --show window is gone (display lost? exit status %s); the run "
                               "goes on without it", self._process.exitcode)
            return False
        try:
            self._frames.put_nowait(image_bgr)
        except queue.Full:  # the window lags: drop this frame for the display only
            pass
        return True

    def close(self, timeout_s: float = 2.0) -> None:
        """Close the window and reap the child (terminated if it does not end in time)."""
        import queue

        if self._process.is_alive():
            try:
                self._frames.put(None, timeout=timeout_s)
            except queue.Full:
                pass
            self._process.join(timeout_s)
            if self._process.is_alive():
                self._process.terminate()
                self._process.join(timeout_s)
        self._frames.close()
        self._frames.cancel_join_thread()  # frames still queued for a dead window are dropped


def _window_loop(frames, stop, title: str) -> None:  # noqa: ANN001 - multiprocessing objects
    """The child: show frames until ``None``; q/Esc sets ``stop``."""
    import queue

    import cv2

    while True:
        try:
            image = frames.get(timeout=0.05)
        except queue.Empty:
            image = ...
        if image is None:
            break
        if image is not ...:
            cv2.imshow(title, image)
        if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
            stop.set()
    cv2.destroyAllWindows()
