"""The desktop GUI of yolov7-track (PyQt6): live feeds, lines and zones drawn with the mouse, counts.

Run it with ``yolov7-track gui [SOURCE] [--zones FILE]`` or ``python main.py``;
``yolov7-track gui --cameras CAMERAS.yaml`` opens a cameras file as a grid of live views
(:mod:`~app.gui.camera_grid`).

Modules: :mod:`~app.gui.main_window` (the window), :mod:`~app.gui.video_view` (live view and
line/zone editor), :mod:`~app.gui.worker` (the pipeline in a worker thread),
:mod:`~app.gui.shapes`
(the edited lines and zones, no Qt), :mod:`~app.gui.settings` (typed settings file, no Qt),
:mod:`~app.gui.counts_panel`, :mod:`~app.gui.events_table`, :mod:`~app.gui.source_dialog`,
:mod:`~app.gui.settings_dialog`.

Qt is imported only when :func:`main` runs, so ``import app.gui`` works without a display.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["main"]

PROG = "yolov7-track gui"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Open the desktop window: pick a video file, stream or webcam, draw counting "
        "lines and zones with the mouse and watch the counts.",
    )
    parser.add_argument("source", nargs="?", help="start with this video file, folder, URL or webcam index")
    parser.add_argument("--zones", type=Path, metavar="FILE", help="lines and zones from a JSON or YAML file")
    parser.add_argument("--label", type=Path, metavar="CLIP",
                        help="label a video clip (detector proposals, tracker propagation) for finetuning")
    parser.add_argument("--cameras", type=Path, metavar="FILE",
                        help="open a cameras file (yolov7-track serve's) as a grid of live views with their counts")
    parser.add_argument("--settings", type=Path, metavar="FILE",
                        help="settings file (default: <user config dir>/yolov7-track/settings.json)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Open the main window and run the Qt event loop; returns the exit status (0 when the
    window was closed normally, 1 when no display can be reached, 2 on a usage error)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2): as a status, not an exit
        return int(exc.code or 0)
    if args.label is not None and (args.source or args.zones is not None or args.cameras is not None):
        print(f"{PROG}: error: --label opens the labelling window; give no SOURCE, --zones or --cameras with it",
              file=sys.stderr)
        return EXIT_USAGE
    if args.cameras is not None and (args.source or args.zones is not None):
        print(f"{PROG}: error: --cameras opens the camera grid; give no SOURCE or --zones with it "
              "(each camera's lines and zones are in the cameras file)", file=sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from app.display import display_problem

    problem = display_problem(for_qt=True)
    if problem is not None:  # Qt would abort the process (SIGABRT) without a word of ours
        print(f"{PROG}: error: cannot open a window: {problem}; run it on a desktop session "
              "(or over ssh -X), or use the command line: yolov7-track SOURCE --output OUT.mp4",
              file=sys.stderr)
        return EXIT_FAILURE

    from PyQt6.QtWidgets import QApplication

    from app.gui.main_window import MainWindow

    app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else PROG])
    app.setApplicationName("yolov7-track")
    if args.label is not None:
        owner = MainWindow(settings_path=args.settings)  # hidden: its settings give the detector and tracker
        window = owner.open_label_window(args.label)
    elif args.cameras is not None:
        from app.gui.camera_grid import CameraGridWindow

        window = CameraGridWindow()
        window.show()
        window.open_cameras_file(args.cameras)
    else:
        window = MainWindow(settings_path=args.settings)
        if args.zones is not None:
            window.load_zones(args.zones)
        window.show()
        if args.source:
            window.open_source(args.source)
    interrupted = _close_on_ctrl_c(app, window)
    try:
        status = int(app.exec())
    finally:
        window.shutdown_after_event_loop()
    return EXIT_INTERRUPTED if interrupted() else status


EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _close_on_ctrl_c(app, window) -> Callable[[], bool]:  # noqa: ANN001 - Qt objects
    """In the main thread: the first Ctrl-C closes the window the cooperative way (the run
    stops, then the window closes), a second one quits the event loop at once. Returns a
    function telling whether Ctrl-C was pressed."""
    import signal
    import threading

    from PyQt6.QtCore import QTimer

    pressed = []
    if threading.current_thread() is not threading.main_thread():
        return lambda: False

    def on_sigint(signum: int, frame: object) -> None:
        pressed.append(signum)
        if len(pressed) == 1:
            window.close()
        else:
            app.quit()

    previous = signal.signal(signal.SIGINT, on_sigint)
    app.aboutToQuit.connect(lambda: signal.signal(signal.SIGINT, previous))
    # Python runs signal handlers only between bytecodes; wake it up while Qt waits for events.
    wake = QTimer(window)
    wake.timeout.connect(lambda: None)
    wake.start(200)
    return lambda: bool(pressed)
