"""Screenshot of the real window on an X server (Xvfb): a clip playing, a line and a zone drawn
with the mouse, counts shown.

The test runs this file as a child process under ``xvfb-run -a`` with ``QT_QPA_PLATFORM=xcb``
(the test session itself is offscreen), saves the PNG in the test's tmp dir and, when
``YOLOV7_TRACK_SCREENSHOT_DIR`` is set, copies it there. Needs the Debian packages ``xvfb`` and
``xauth`` and Qt's xcb libraries (see :data:`APT_PACKAGES`); fails with that list when
``xvfb-run`` is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

SCREENSHOT_DIR_ENV = "YOLOV7_TRACK_SCREENSHOT_DIR"
SCREENSHOT_NAME = "gui_screenshot.png"
WINDOW_SIZE = (1280, 800)
APT_PACKAGES = (
    "xvfb xauth libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 "
    "libxcb-randr0 libxcb-shape0 libxcb-xinerama0 libxcb-xkb1 libxkbcommon-x11-0 libegl1 libgl1 "
    "libfontconfig1 libdbus-1-3 fonts-dejavu-core"
)


def test_screenshot_of_the_window_under_xvfb(tmp_path: Path) -> None:
    xvfb_run = shutil.which("xvfb-run")
    if xvfb_run is None:
        pytest.fail(f"xvfb-run not found: the screenshot test needs an X server. Install the Debian packages: "
                    f"apt-get install -y --no-install-recommends {APT_PACKAGES}")
    png, info = tmp_path / SCREENSHOT_NAME, tmp_path / "screenshot.json"
    env = {**os.environ, "QT_QPA_PLATFORM": "xcb"}
    env.pop("WAYLAND_DISPLAY", None)
    command = [xvfb_run, "-a", "-s", f"-screen 0 {WINDOW_SIZE[0] + 200}x{WINDOW_SIZE[1] + 200}x24",
               sys.executable, str(Path(__file__).resolve()), "--child", str(png), str(info)]
    child = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    output = (child.stdout + child.stderr)[-4000:]
    assert child.returncode == 0, f"the window under Xvfb failed (exit {child.returncode}):\n{output}"

    facts = json.loads(info.read_text())
    assert facts["platform"] == "xcb", facts
    assert facts["busy"], "the clip was no longer playing when the screenshot was taken"
    line_in, line_out, _ = facts["counts"]["line1"]
    assert int(line_in) + int(line_out) >= 3, facts
    assert int(facts["counts"]["zone1"][0]) >= 1, facts

    from PyQt6.QtGui import QImage

    image = QImage(str(png))
    assert (image.width(), image.height()) == tuple(facts["window_size"]), "not a picture of the window"
    pixels = _rgb_pixels(image)
    assert len({tuple(p) for p in pixels[::97]}) > 500, "the screenshot is (almost) one colour"
    assert _has_colour(pixels, (255, 214, 0)), "no counting line (yellow) in the screenshot"
    assert _has_colour(pixels, (0, 200, 255)), "no zone (cyan) in the screenshot"

    target_dir = os.environ.get(SCREENSHOT_DIR_ENV)
    if target_dir:
        Path(target_dir).mkdir(parents=True, exist_ok=True)
        shutil.copy2(png, Path(target_dir) / SCREENSHOT_NAME)


def _rgb_pixels(image):  # noqa: ANN001, ANN202
    import numpy as np
    from PyQt6.QtGui import QImage

    rgb = image.convertToFormat(QImage.Format.Format_RGB888)
    buffer = np.frombuffer(rgb.constBits().asstring(rgb.sizeInBytes()), dtype=np.uint8)
    rows = buffer.reshape(rgb.height(), rgb.bytesPerLine())[:, : rgb.width() * 3]
    return rows.reshape(-1, 3)


def _has_colour(pixels, rgb, tolerance: int = 12, at_least: int = 50) -> bool:  # noqa: ANN001
    import numpy as np

    close = np.all(np.abs(pixels.astype(np.int16) - np.array(rgb, dtype=np.int16)) <= tolerance, axis=1)
    return int(close.sum()) >= at_least


# ------------------------------------------------------------------------------ the child
def _wait_until(condition, timeout_s: float) -> None:  # noqa: ANN001
    from PyQt6.QtTest import QTest

    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout_s} s")
        QTest.qWait(20)


def _child(png: Path, info: Path) -> int:
    from PyQt6.QtCore import QPoint, Qt
    from PyQt6.QtTest import QTest
    from PyQt6.QtWidgets import QApplication
    from gui_support import pets_detector_factory, pets_video, widget_point

    from app.gui.main_window import MainWindow

    app = QApplication([sys.argv[0]])
    with tempfile.TemporaryDirectory() as config_dir:
        window = MainWindow(settings_path=Path(config_dir) / "settings.json", detector_factory=pets_detector_factory())
        window.resize(*WINDOW_SIZE)
        window.show()
        window.open_source(str(pets_video()))
        _wait_until(lambda: window.frames_shown > 0, 30)
        window.pause()
        _wait_until(lambda: window.worker.status().state == "paused", 10)

        view = window.view
        window.line_action.trigger()
        start, end = widget_point(view, (20, 180)), widget_point(view, (460, 180))
        QTest.mousePress(view, Qt.MouseButton.LeftButton, pos=start)
        for i in range(1, 7):
            QTest.mouseMove(view, QPoint(start.x() + (end.x() - start.x()) * i // 6, start.y()))
        QTest.mouseRelease(view, Qt.MouseButton.LeftButton, pos=end)
        window.zone_action.trigger()
        for xy in ((110, 230), (370, 230), (400, 340), (80, 340)):
            QTest.mouseClick(view, Qt.MouseButton.LeftButton, pos=widget_point(view, xy))
        QTest.keyClick(view, Qt.Key.Key_Return)
        view.select(None)
        window.resume()

        def counted() -> bool:
            totals = window.counts_panel.totals()
            return ("line1" in totals and int(totals["line1"][0]) + int(totals["line1"][1]) >= 4
                    and "zone1" in totals and int(totals["zone1"][2]) >= 2)

        _wait_until(counted, 60)
        QTest.qWait(300)  # let the last frame and panels paint
        window.grab().save(str(png))
        facts = {
            "platform": app.platformName(),
            "busy": window.is_busy(),
            "frames_shown": window.frames_shown,
            "counts": window.counts_panel.totals(),
            "events": window.events_panel.model.rowCount(),
            "window_size": [window.grab().width(), window.grab().height()],
        }
        info.write_text(json.dumps(facts))
        window.stop()
        _wait_until(lambda: not window.is_busy(), 30)
        window.close()
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for app/
        sys.exit(_child(Path(sys.argv[2]), Path(sys.argv[3])))
    sys.exit("usage: test_gui_screenshot.py --child OUT.png OUT.json (run by the test)")
