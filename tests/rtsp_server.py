"""A local RTSP test server (GStreamer ``gst-rtsp-server``) and a launcher for it.

Two halves in one file:

* Run as a script with the **system** Python (``/usr/bin/python3``, which has Debian's
  ``python3-gi``), it serves a live H.264 test pattern at ``rtsp://127.0.0.1:PORT/test`` and
  prints ``READY <port>`` on stdout once it listens. ``--port 0`` lets the OS pick a free port.
* Imported by the tests (any Python, no ``gi`` needed), :class:`RtspTestServer` starts that
  script as a subprocess, waits for ``READY``, and can kill (SIGKILL), stop (SIGSTOP), continue
  (SIGCONT) and restart it on the same port. Running the server in its own process is what
  makes "the camera died" and "the camera froze" real: the kernel closes or stops the sockets.

The stream: ``videotestsrc is-live=true`` (moving ball), ``WIDTHxHEIGHT`` at ``FPS`` frames per
second, encoded with ``x264enc`` (zero-latency tune, a key frame every ``FPS // 2`` frames so a
(re)connecting client gets a picture within half a second), packed by ``rtph264pay``.

Debian packages needed (CI installs them): ``python3-gi`` (the ``gi`` module),
``gir1.2-gst-rtsp-server-1.0`` (RTSP server + its introspection data),
``gstreamer1.0-plugins-base`` (``videotestsrc``, ``videoconvert``),
``gstreamer1.0-plugins-good`` (``rtph264pay``), ``gstreamer1.0-plugins-ugly`` (``x264enc``).
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

SYSTEM_PYTHON = "/usr/bin/python3"
MOUNT_PATH = "/test"
REQUIRED_PACKAGES = (
    "python3-gi",
    "gir1.2-gst-rtsp-server-1.0",
    "gstreamer1.0-plugins-base",
    "gstreamer1.0-plugins-good",
    "gstreamer1.0-plugins-ugly",
)
# GStreamer element -> Debian package that provides it.
ELEMENT_PACKAGES = {
    "videotestsrc": "gstreamer1.0-plugins-base",
    "videoconvert": "gstreamer1.0-plugins-base",
    "x264enc": "gstreamer1.0-plugins-ugly",
    "rtph264pay": "gstreamer1.0-plugins-good",
}
INSTALL_HINT = "apt-get install -y " + " ".join(REQUIRED_PACKAGES)


class RtspServerUnavailableError(RuntimeError):
    """The GStreamer RTSP server cannot run here; the message names the package to install."""


# --------------------------------------------------------------------------------------------
# Server side: runs under the system Python with gi.
# --------------------------------------------------------------------------------------------


def _missing_dependency_message() -> str | None:
    """Return what is missing to serve the stream (with the package to install), or None."""
    try:
        import gi
    except ImportError:
        return f"python3-gi is not installed (needed by {SYSTEM_PYTHON}); run: {INSTALL_HINT}"
    try:
        gi.require_version("Gst", "1.0")
        gi.require_version("GstRtspServer", "1.0")
        from gi.repository import Gst, GstRtspServer  # noqa: F401
    except (ValueError, ImportError) as error:
        return (f"GStreamer RTSP server bindings missing ({error}); install "
                f"gir1.2-gst-rtsp-server-1.0 (all needed: {INSTALL_HINT})")
    Gst.init(None)
    for element, package in ELEMENT_PACKAGES.items():
        if Gst.ElementFactory.find(element) is None:
            return (f"GStreamer element {element!r} missing; install {package} "
                    f"(all needed: {INSTALL_HINT})")
    return None


def _launch_description(width: int, height: int, fps: int) -> str:
    keyframe_interval = max(1, fps // 2)
    return (
        f"( videotestsrc is-live=true pattern=ball "
        f"! video/x-raw,width={width},height={height},framerate={fps}/1 "
        f"! videoconvert "
        f"! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={keyframe_interval} "
        f"! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )


def serve(port: int, width: int, height: int, fps: int) -> int:
    """Serve until killed; print ``READY <port>`` when listening. Returns an exit status."""
    problem = _missing_dependency_message()
    if problem is not None:
        print(f"MISSING {problem}", flush=True)
        return 3
    from gi.repository import GLib, GstRtspServer

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(_launch_description(width, height, fps))
    factory.set_shared(True)
    server.get_mount_points().add_factory(MOUNT_PATH, factory)
    if server.attach(None) == 0:
        print(f"ERROR cannot listen on 127.0.0.1:{port}", flush=True)
        return 4
    print(f"READY {server.get_bound_port()}", flush=True)
    GLib.MainLoop().run()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1; 0 = any free")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--check", action="store_true", help="only check the dependencies")
    args = parser.parse_args(argv)
    if args.check:
        problem = _missing_dependency_message()
        print(f"MISSING {problem}" if problem else "OK", flush=True)
        return 3 if problem else 0
    return serve(args.port, args.width, args.height, args.fps)


# --------------------------------------------------------------------------------------------
# Test side: any Python; starts the server above as a subprocess.
# --------------------------------------------------------------------------------------------


class RtspTestServer:
    """The RTSP test server in a subprocess of the system Python.

    ``url`` is ``rtsp://127.0.0.1:<port>/test``; the port is chosen by the OS on the first
    :meth:`start` and reused by later starts so a client can reconnect to the same URL.
    Always call :meth:`kill` (e.g. in a fixture finalizer).

    Raises:
        RtspServerUnavailableError: the system Python or a GStreamer package is missing (the
            message names the Debian package to install), or the server did not come up.
    """

    def __init__(self, width: int = 320, height: int = 240, fps: int = 25,
                 ready_timeout_s: float = 10.0) -> None:
        self.width, self.height, self.fps = width, height, fps
        self.ready_timeout_s = ready_timeout_s
        self.port = 0
        self.process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}{MOUNT_PATH}"

    def start(self) -> None:
        """Start the server (on the port of the previous start, if any) and wait until ready."""
        if not Path(SYSTEM_PYTHON).exists():
            raise RtspServerUnavailableError(
                f"{SYSTEM_PYTHON} not found: the RTSP test server runs under the system Python "
                f"with Debian's python3-gi; run: {INSTALL_HINT}"
            )
        self.kill()
        command = [SYSTEM_PYTHON, str(Path(__file__).resolve()), "--port", str(self.port),
                   "--width", str(self.width), "--height", str(self.height),
                   "--fps", str(self.fps)]
        # The system Python must not pick up our interpreter's site-packages.
        env = {key: value for key, value in os.environ.items()
               if key not in ("PYTHONPATH", "PYTHONHOME")}
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True, env=env)
        line = self._read_line(self.ready_timeout_s)
        if line.startswith("READY "):
            self.port = int(line.split()[1])
            return
        self.kill()
        if line.startswith("MISSING "):
            raise RtspServerUnavailableError(line[len("MISSING "):])
        raise RtspServerUnavailableError(
            f"RTSP test server did not start within {self.ready_timeout_s} s "
            f"(first output line: {line!r})"
        )

    def _read_line(self, timeout_s: float) -> str:
        assert self.process is not None and self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout_s)
        return self.process.stdout.readline().strip() if ready else ""

    def kill(self) -> None:
        """SIGKILL the server (continuing it first if stopped) and reap it; no-op if not running."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
        self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.process = None

    def stop(self) -> None:
        """SIGSTOP the server: its sockets stay open but nothing is sent (a frozen camera)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def cont(self) -> None:
        """SIGCONT a stopped server."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def __enter__(self) -> "RtspTestServer":
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.kill()


def wait_until(predicate, timeout_s: float, poll_s: float = 0.02) -> bool:
    """Poll ``predicate()`` until true or ``timeout_s`` passes; return its last value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll_s)
    return bool(predicate())


if __name__ == "__main__":
    sys.exit(main())
