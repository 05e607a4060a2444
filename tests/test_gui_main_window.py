"""The main window offscreen (pytest-qt): open a clip, draw with the mouse, watch counts, pause,
resume, stop, start again, bad URLs, zone files, events export, recording, closing.

Detections come from a replay of the PETS09-S2L1 ground truth on the real PETS clip (see
``gui_support``), so lines drawn with the mouse get real crossings.
"""

from __future__ import annotations

import os

import socket
import threading
import time
from pathlib import Path

import av
import pytest
from PyQt6.QtCore import QPoint, Qt, QTimer
from gui_support import drag, pets_detector_factory, pets_video, widget_point

from app.counting import CountingConfig, LineSpec, load_counting_config, save_counting_config
from app.gui.main_window import MainWindow, format_connection
from app.gui.settings import GuiSettings, load_settings, save_settings
from app.gui.source_dialog import SourceDialog
from app.gui.settings_dialog import SettingsDialog
from app.gui.video_view import EditMode
from app.gui.worker import WorkerStatus
from app.sinks import read_events
from app.sources import SourceConfig, open_source


@pytest.fixture
def make_window(qtbot, tmp_path: Path):  # noqa: ANN001, ANN201
    def stop_and_wait(window: MainWindow) -> None:
        """pytest-qt closes and deletes the window after the test; its worker thread (a child
        of the window) must have ended by then."""
        window.stop()
        qtbot.waitUntil(lambda: not window.is_busy(), timeout=20_000)

    def make(**kwargs) -> MainWindow:
        kwargs.setdefault("settings_path", tmp_path / "config" / "settings.json")
        kwargs.setdefault("detector_factory", pets_detector_factory())
        window = MainWindow(**kwargs)
        qtbot.addWidget(window, before_close_func=stop_and_wait)
        window.resize(1100, 750)
        window.show()
        qtbot.waitExposed(window)
        return window

    return make


def open_paused(qtbot, window: MainWindow, source: Path | str) -> None:  # noqa: ANN001
    window.open_source(str(source))
    qtbot.waitUntil(lambda: window.frames_shown > 0, timeout=15_000)
    window.pause()
    qtbot.waitUntil(lambda: window.worker.status().state == "paused", timeout=5_000)


def draw_line(qtbot, window: MainWindow, start, end) -> None:  # noqa: ANN001
    window.line_action.trigger()
    assert window.view.mode is EditMode.DRAW_LINE
    drag(qtbot, window.view, widget_point(window.view, start), widget_point(window.view, end))


def total(window: MainWindow, name: str) -> int:
    in_count, out_count, _ = window.counts_panel.totals().get(name, ("0", "0", ""))
    return int(in_count) + int(out_count)


def wait_stopped(qtbot, window: MainWindow) -> None:  # noqa: ANN001
    qtbot.waitUntil(lambda: not window.is_busy(), timeout=20_000)


def test_open_clip_draw_line_with_the_mouse_and_counts_update(qtbot, make_window) -> None:  # noqa: ANN001
    window = make_window()
    open_paused(qtbot, window, pets_video())
    assert window.view.frame_size_wh == (480, 360)

    draw_line(qtbot, window, (20, 180), (460, 180))
    (line,) = window.view.shapes.lines
    assert line.name == "line1"
    assert line.start == pytest.approx((20, 180), abs=2) and line.end == pytest.approx((460, 180), abs=2)
    assert window.view.mode is EditMode.SELECT and window.select_action.isChecked()
    assert window.view.selected == "line1"

    window.resume()
    qtbot.waitUntil(lambda: total(window, "line1") >= 3, timeout=30_000)
    assert window.events_panel.model.rowCount() >= 3
    # the run's events file is written while it runs (not only on export)
    saved = window.events_output
    assert saved.parent == Path(os.environ["YOLOV7_TRACK_OUTPUT_DIR"]) and saved.name.endswith(".events.csv")
    qtbot.waitUntil(lambda: len(read_events(saved)) >= 3, timeout=10_000)
    window.stop()
    wait_stopped(qtbot, window)

    report = window.last_report
    assert report.status == "stopped" and window.last_error is None
    (final,) = report.lines
    assert window.counts_panel.totals()["line1"] == (str(final.in_count), str(final.out_count), "")
    events = window.events_panel.model.events
    assert len(events) == report.events_total == final.in_count + final.out_count
    assert {e.zone for e in events} == {"line1"}
    assert read_events(saved) == list(events)
    assert str(saved) in window.statusBar().currentMessage()


def test_pause_resume_stop_and_start_again(qtbot, make_window) -> None:  # noqa: ANN001
    window = make_window()
    open_paused(qtbot, window, pets_video())
    assert window.state_label.text() == "paused" or window.worker.status().state == "paused"
    qtbot.wait(150)
    frames_out = window.worker.status().stats.frames_out
    shown = window.frames_shown
    qtbot.wait(400)
    assert window.worker.status().stats.frames_out == frames_out
    assert window.frames_shown <= shown + 1

    window.resume()
    qtbot.waitUntil(lambda: window.frames_shown > shown + 5, timeout=10_000)
    assert window.stop_action.isEnabled() and not window.start_action.isEnabled()
    window.stop_action.trigger()
    wait_stopped(qtbot, window)
    assert window.last_report.status == "stopped"
    assert window.start_action.isEnabled() and not window.stop_action.isEnabled()
    assert not window.pause_action.isChecked()

    shown = window.frames_shown
    window.start_action.trigger()
    qtbot.waitUntil(lambda: window.frames_shown > shown + 5, timeout=15_000)
    window.stop()
    wait_stopped(qtbot, window)
    assert window.last_report.status == "stopped"


class EventLoopProbe:
    """Largest gap between ticks of a 20 ms timer: how long the GUI thread was unavailable."""

    def __init__(self) -> None:
        self.ticks: list[float] = []
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.timeout.connect(lambda: self.ticks.append(time.perf_counter()))
        self.timer.start(20)

    def max_gap_s(self) -> float:
        self.timer.stop()
        return max(b - a for a, b in zip(self.ticks, self.ticks[1:]))


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_bad_url_shows_a_message_and_the_window_stays_usable(qtbot, make_window) -> None:  # noqa: ANN001
    window = make_window()
    url = f"rtsp://127.0.0.1:{closed_port()}/x"
    window.open_source(url)
    qtbot.waitUntil(lambda: window.message_box is not None and window.message_box.isVisible(), timeout=15_000)
    assert "Connection refused" in window.message_box.text() and url in window.message_box.text()
    wait_stopped(qtbot, window)
    assert window.last_error is not None and window.start_action.isEnabled()
    window.message_box.accept()

    window.open_source(str(pets_video()))  # the user can start again
    qtbot.waitUntil(lambda: window.frames_shown > 3, timeout=15_000)
    assert window.settings.recent_sources[:2] == (str(pets_video()), url)


def test_unresponsive_camera_times_out_in_the_worker_not_the_gui(qtbot, make_window) -> None:  # noqa: ANN001
    """A server that accepts the connection and never answers: connecting blocks (timeout_s)
    in the worker thread while the GUI keeps handling events."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        window = make_window(source_opener=lambda spec: open_source(spec, SourceConfig(timeout_s=1.0)))
        probe = EventLoopProbe()
        started = time.perf_counter()
        window.open_source(f"rtsp://127.0.0.1:{port}/stream")
        qtbot.waitUntil(lambda: window.worker.status().state == "starting", timeout=2_000)
        assert window.connection_label.text() in ("—", "connecting…")
        qtbot.waitUntil(lambda: window.message_box is not None and window.message_box.isVisible(), timeout=15_000)
        waited_s = time.perf_counter() - started
        assert waited_s >= 0.5  # the connection attempt did block somewhere: in the worker
        assert probe.max_gap_s() < 0.25
        wait_stopped(qtbot, window)


def test_draw_zone_rename_flip_delete_and_zone_file_round_trip(qtbot, make_window, tmp_path: Path) -> None:  # noqa: ANN001
    window = make_window()
    open_paused(qtbot, window, pets_video())
    view = window.view
    draw_line(qtbot, window, (40, 100), (440, 100))

    window.zone_action.trigger()
    for xy in ((100, 150), (380, 150), (380, 300), (100, 300)):
        qtbot.mouseClick(view, Qt.MouseButton.LeftButton, pos=widget_point(view, xy))
    qtbot.keyClick(view, Qt.Key.Key_Return)
    assert [z.name for z in view.shapes.zones] == ["zone1"]
    assert len(view.shapes.zones[0].polygon) == 4 and view.mode is EditMode.SELECT

    # rename the zone: select it by clicking inside, F2, type the name
    qtbot.mouseClick(view, Qt.MouseButton.LeftButton, pos=widget_point(view, (240, 220)))
    assert view.selected == "zone1"
    qtbot.keyClick(view, Qt.Key.Key_F2)
    dialog = view._rename_dialog
    assert dialog is not None and dialog.isVisible()
    dialog.setTextValue("door")
    dialog.accept()
    assert [z.name for z in view.shapes.zones] == ["door"]

    # drag the line's end, then flip it with F
    drag(qtbot, view, widget_point(view, (440, 100)), widget_point(view, (440, 60)))
    (line,) = view.shapes.lines
    assert line.end == pytest.approx((440, 60), abs=2) and line.start == pytest.approx((40, 100), abs=2)
    qtbot.keyClick(view, Qt.Key.Key_F)
    (flipped,) = view.shapes.lines
    assert (flipped.start, flipped.end) == (line.end, line.start)

    zone_file = tmp_path / "zones.yaml"
    assert window.save_zones(zone_file)
    saved = load_counting_config(zone_file)  # the CLI's --zones reader
    assert saved == view.shapes.to_config()

    # delete the line with the Delete key; loading the file brings it back
    qtbot.mouseClick(view, Qt.MouseButton.LeftButton, pos=widget_point(view, (240, 80)))
    assert view.selected == "line1"
    qtbot.keyClick(view, Qt.Key.Key_Delete)
    assert [s.name for s in view.shapes.lines] == []
    assert window.load_zones(zone_file)
    assert view.shapes.to_config() == saved
    assert load_settings(window.settings_path).zone_file == str(zone_file)

    # the running pipeline counts with the edited shapes
    window.resume()
    qtbot.waitUntil(lambda: set(window.counts_panel.totals()) == {"line1", "door"}, timeout=15_000)
    qtbot.waitUntil(lambda: int(window.counts_panel.totals()["door"][0]) >= 1, timeout=30_000)


def test_zone_file_with_normalized_lines_is_placed_on_the_first_frame(qtbot, make_window, tmp_path: Path) -> None:  # noqa: ANN001
    zone_file = tmp_path / "zones.json"
    save_counting_config(CountingConfig(lines=(LineSpec("mid", (0.0, 0.5), (1.0, 0.5)),), normalized=True), zone_file)
    window = make_window()
    assert window.load_zones(zone_file)
    assert len(window.view.shapes) == 0  # no frame yet
    open_paused(qtbot, window, pets_video())
    assert window.view.shapes.lines == (LineSpec("mid", (0.0, 180.0), (480.0, 180.0)),)


def test_bad_zone_file_shows_a_message(make_window, tmp_path: Path) -> None:  # noqa: ANN001
    window = make_window()
    bad = tmp_path / "zones.json"
    bad.write_text('{"lines": [{"name": "a", "start": [0, 0]}]}')
    assert not window.load_zones(bad)
    assert "lines[0].end" in window.message_box.text()


def test_events_export_to_csv(qtbot, make_window, tmp_path: Path) -> None:  # noqa: ANN001
    window = make_window()
    open_paused(qtbot, window, pets_video())
    draw_line(qtbot, window, (20, 180), (460, 180))
    window.resume()
    qtbot.waitUntil(lambda: window.events_panel.model.rowCount() >= 2, timeout=30_000)
    window.stop()
    wait_stopped(qtbot, window)
    path = tmp_path / "events.csv"
    with qtbot.waitSignal(window.events_panel.exported):
        assert window.events_panel.export_to(path)
    assert read_events(path) == list(window.events_panel.model.events)
    assert not window.events_panel.export_to(tmp_path / "events.txt")
    assert "CSV" in window.message_box.text()


def test_recording_writes_the_annotated_video_and_settings_persist(qtbot, make_window, tmp_path: Path) -> None:  # noqa: ANN001
    settings_path = tmp_path / "config" / "settings.json"
    save_settings(GuiSettings(output_dir=str(tmp_path / "recordings")), settings_path)
    window = make_window(settings_path=settings_path)
    window.record_action.trigger()
    assert load_settings(settings_path).record_output
    window.open_source(str(pets_video()))
    qtbot.waitUntil(lambda: window.frames_shown >= 20, timeout=15_000)
    window.stop()
    wait_stopped(qtbot, window)
    video = Path(window.last_report.video_output)
    assert video.parent == tmp_path / "recordings" and video.suffix == ".mp4"
    with av.open(str(video)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames == window.last_report.video_frames >= 20

    again = make_window(settings_path=settings_path)
    assert again.record_action.isChecked()
    assert again.settings.recent_sources == (str(pets_video()),)


def test_closing_while_running_stops_first_then_closes(qtbot, make_window) -> None:  # noqa: ANN001
    window = make_window()
    window.open_source(str(pets_video()))
    qtbot.waitUntil(lambda: window.frames_shown > 0, timeout=15_000)
    window.close()
    assert window.isVisible()  # not yet: the run is stopping
    wait_stopped(qtbot, window)
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=5_000)
    assert window.last_report.status == "stopped"


def test_status_bar_shows_fps_dropped_and_connection(qtbot, make_window) -> None:  # noqa: ANN001
    window = make_window()
    window.open_source(str(pets_video()))
    qtbot.waitUntil(lambda: window.fps_label.text().endswith(" fps") and window.fps_label.text() != "— fps",
                    timeout=15_000)
    assert window.dropped_label.text() == "dropped 0"
    assert window.connection_label.text() == "connected"
    assert window.latency_label.text().startswith("latency ")


@pytest.mark.parametrize(
    ("state", "attempt", "text"),
    [
        ("connected", 0, "connected"),
        ("connecting", 0, "connecting…"),
        ("reconnecting", 3, "reconnecting… (attempt 3)"),
        ("reconnecting", 0, "reconnecting…"),
        ("closed", 0, "closed"),
    ],
)
def test_connection_text(state: str, attempt: int, text: str) -> None:
    assert format_connection(WorkerStatus("running", None, state, attempt)) == text


def test_source_dialog_checks_what_was_entered(qtbot, tmp_path: Path) -> None:  # noqa: ANN001
    dialog = SourceDialog(recent=("rtsp://cam/live", str(pets_video())))
    qtbot.addWidget(dialog)
    assert dialog.tabs.currentIndex() == 1 and dialog.url_edit.currentText() == "rtsp://cam/live"
    dialog.url_edit.setCurrentText("ftp://cam/live")
    dialog.accept()
    assert dialog.spec() == "" and "unsupported URL scheme 'ftp'" in dialog.error_label.text()
    dialog.tabs.setCurrentIndex(0)
    dialog.file_edit.setCurrentText(str(tmp_path / "nothing.mp4"))
    dialog.accept()
    assert "no file or folder" in dialog.error_label.text()
    dialog.file_edit.setCurrentText(str(pets_video()))
    dialog.accept()
    assert dialog.spec() == str(pets_video())

    webcam = SourceDialog()
    qtbot.addWidget(webcam)
    webcam.tabs.setCurrentIndex(2)
    webcam.webcam_index.setValue(1)
    webcam.accept()
    assert webcam.spec() == "1"


def test_settings_dialog_reads_and_validates_the_form(qtbot) -> None:  # noqa: ANN001
    dialog = SettingsDialog(GuiSettings())
    qtbot.addWidget(dialog)
    dialog.weights.setText("yolov7")
    dialog.conf.setValue(0.4)
    dialog.classes.setText("person, 2")
    dialog.tracker_kind.setCurrentText("sort")
    dialog.tracker_fields["sort"]["max_age"].setValue(5)
    dialog.accept()
    settings = dialog.settings()
    assert (settings.weights, settings.conf_thres, settings.classes) == ("yolov7", 0.4, ("person", "2"))
    assert settings.tracker.kind == "sort" and settings.tracker.params()["max_age"] == 5
    assert dialog.tracker_pages.currentIndex() == 1

    invalid = SettingsDialog(GuiSettings())
    qtbot.addWidget(invalid)
    invalid.img_size.setValue(100)
    invalid.accept()
    assert "multiple of 32" in invalid.error_label.text() and invalid.settings() == GuiSettings()


def test_drawing_needs_a_frame(make_window) -> None:  # noqa: ANN001
    window = make_window()
    window.line_action.trigger()
    assert window.view.mode is EditMode.SELECT and window.select_action.isChecked()
    assert "open a source first" in window.statusBar().currentMessage()


def test_main_returns_a_usage_status() -> None:
    from app.gui import main

    assert main(["--no-such-option"]) == 2
    assert main(["--help"]) == 0


def test_view_keeps_the_aspect_ratio(qtbot, make_window) -> None:  # noqa: ANN001
    window = make_window()
    open_paused(qtbot, window, pets_video())
    view = window.view
    rect = view.image_rect()
    assert rect.width() / rect.height() == pytest.approx(480 / 360, rel=1e-3)
    assert rect.width() <= view.width() + 0.5 and rect.height() <= view.height() + 0.5
    assert min(view.width() - rect.width(), view.height() - rect.height()) == pytest.approx(0, abs=0.5)
    assert view.to_frame(view.to_widget((123.0, 45.0))) == pytest.approx((123.0, 45.0))
    # clicks on the letterbox margins map to the frame's corners
    assert view.to_frame(QPoint(0, 0).toPointF()) == pytest.approx((0.0, 0.0), abs=1e-6)
    assert view.to_frame(QPoint(view.width(), view.height()).toPointF()) == pytest.approx((480.0, 360.0), abs=1e-6)


class FlakyCamera:
    """A live FrameSource: ``frames`` real PETS frames at 50 fps, then the connection drops and
    it keeps "reconnecting" (attempt 2) until closed."""

    is_live = True

    def __init__(self, frames: int = 40) -> None:
        from app.frames import SourceStats

        self.name = "rtsp://camera/flaky"
        self.fps = 50.0
        self.stats = SourceStats(connection_state="connected")
        self._frames = frames
        self._closed = threading.Event()

    def __iter__(self):  # noqa: ANN204
        inner = open_source(pets_video())
        try:
            for frame in inner:
                if self._closed.wait(1 / self.fps) or frame.index >= self._frames:
                    break
                yield frame
        finally:
            inner.close()
        self.stats.connection_state, self.stats.reconnect_attempt = "reconnecting", 2
        self._closed.wait()

    def close(self) -> None:
        self.stats.connection_state = "closed"
        self._closed.set()


def test_live_source_shows_drops_and_reconnect_attempts_and_stops_promptly(qtbot, make_window) -> None:  # noqa: ANN001
    camera = FlakyCamera()
    window = make_window(source_opener=lambda spec: camera,
                         detector_factory=pets_detector_factory(delay_s=0.05))  # slower than the camera
    window.open_source(camera.name)
    qtbot.waitUntil(lambda: window.connection_label.text() == "reconnecting… (attempt 2)", timeout=15_000)
    assert window.frames_shown > 0
    dropped = int(window.dropped_label.text().removeprefix("dropped "))
    assert dropped > 0  # inference (20 fps) behind the camera (50 fps): the freshest frame wins
    started = time.perf_counter()
    window.stop()
    wait_stopped(qtbot, window)
    assert time.perf_counter() - started < 2.0
    assert window.last_report.status == "stopped" and window.last_report.stats.frames_dropped >= dropped


def test_invalid_settings_file_is_reported_and_defaults_are_used(qtbot, make_window, tmp_path: Path) -> None:  # noqa: ANN001
    settings_path = tmp_path / "config" / "settings.json"
    settings_path.parent.mkdir(parents=True)
    settings_path.write_text('{"version": 1, "settings": {"conf": 0.3}}')
    window = make_window(settings_path=settings_path)
    qtbot.waitUntil(lambda: window.message_box is not None and window.message_box.isVisible(), timeout=5_000)
    assert "unknown setting 'conf'" in window.message_box.text() and str(settings_path) in window.message_box.text()
    assert window.settings == GuiSettings()


def test_main_opens_the_window_with_a_zone_file_and_returns_when_it_closes(qtbot, tmp_path: Path) -> None:  # noqa: ANN001
    from PyQt6.QtWidgets import QApplication

    from app.gui import main

    zone_file = tmp_path / "zones.json"
    save_counting_config(CountingConfig(lines=(LineSpec("road", (0.0, 100.0), (400.0, 100.0)),)), zone_file)
    seen = {}

    def close_main_window() -> None:
        for widget in QApplication.topLevelWidgets():
            if isinstance(widget, MainWindow) and widget.isVisible():
                seen["lines"] = [line.name for line in widget.view.shapes.lines]
                seen["settings"] = widget.settings_path
                widget.close()

    QTimer.singleShot(300, close_main_window)
    status = main(["--settings", str(tmp_path / "settings.json"), "--zones", str(zone_file)])
    assert status == 0
    assert seen == {"lines": ["road"], "settings": tmp_path / "settings.json"}


def test_shutdown_after_the_event_loop_waits_for_the_worker(qtbot, make_window) -> None:  # noqa: ANN001
    window = make_window()
    window.open_source(str(pets_video()))
    qtbot.waitUntil(lambda: window.frames_shown > 0, timeout=15_000)
    thread = window._thread
    assert window.shutdown_after_event_loop(timeout_s=10)  # no event loop runs during this call
    assert thread.isFinished()
    wait_stopped(qtbot, window)
    assert window.last_report.status == "stopped"


def test_ctrl_c_stops_the_run_closes_the_window_and_exits_130(qtbot, tmp_path: Path,  # noqa: ANN001
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import signal

    from PyQt6.QtWidgets import QApplication

    import app.gui.main_window as main_window_module
    from app.gui import main

    monkeypatch.setattr(main_window_module, "DetectorCache", pets_detector_factory)
    seen = {}

    def interrupt_once_playing() -> None:
        windows = [w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()]
        if windows and windows[0].frames_shown > 3 and not seen:
            seen["window"] = windows[0]
            os.kill(os.getpid(), signal.SIGINT)

    poll = QTimer()
    poll.timeout.connect(interrupt_once_playing)
    poll.start(50)
    previous = signal.getsignal(signal.SIGINT)
    status = main(["--settings", str(tmp_path / "settings.json"), str(pets_video())])
    poll.stop()
    assert status == 130
    window = seen["window"]
    assert not window.isVisible() and not window._thread
    assert window.last_report.status == "stopped"
    assert signal.getsignal(signal.SIGINT) is previous
