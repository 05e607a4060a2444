"""The main window: live view with the line/zone editor, counts, events, controls, status bar.

Threads: the pipeline runs in a :class:`~app.gui.worker.PipelineWorker` in its own ``QThread``.
This window only reacts to the worker's signals and calls its non-blocking methods, so the GUI
thread never runs detector or pipeline work and never waits for another thread: stopping is a
request, and the window learns that the run has ended from ``finished``. Closing the window
while a run is active stops it first and closes once the worker thread has ended.

States: idle (nothing running; Start runs the current source again) -> starting (opening the
source, loading weights) -> running <-> paused -> stopping -> idle. A failed run shows its
error in a message box and returns to idle, ready to start again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from PyQt6.QtCore import QSettings, Qt, QTimer
from PyQt6.QtGui import QAction, QActionGroup, QCloseEvent, QKeySequence
from PyQt6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QToolBar,
    QWidget,
)

from app.counting import CountingConfig, ZoneConfigError, load_counting_config, save_counting_config
from app.gui.counts_panel import CountsPanel
from app.gui.events_table import EventsPanel
from app.gui.settings import (
    GuiSettings,
    SettingsError,
    default_settings_path,
    load_settings,
    save_settings,
    window_state_path,
)
from app.gui.settings_dialog import SettingsDialog
from app.gui.source_dialog import SourceDialog
from app.gui.video_view import EditMode, VideoView
from app.gui.messages import open_error
from app.gui.worker import (
    STATE_PAUSED,
    STATE_STARTING,
    STATE_STOPPING,
    DetectorCache,
    DetectorFactory,
    PipelineWorker,
    RunRequest,
    SourceOpener,
    WorkerStatus,
    open_gui_source,
    recording_path,
    start_in_thread,
)
from app.pipeline import PipelineConfig, PipelineReport

__all__ = ["MainWindow", "format_connection"]

logger = logging.getLogger(__name__)

WINDOW_TITLE = "yolov7-track"
#: How often the status bar is refreshed while a run is active, ms.
STATUS_INTERVAL_MS = 250
ZONE_FILE_FILTER = "Zone files (*.json *.yaml *.yml)"


def format_connection(status: WorkerStatus) -> str:
    """The status bar's connection text: ``connected``, ``reconnecting… (attempt 3)``, ..."""
    state = status.connection_state or "—"
    if state == "reconnecting":
        return f"reconnecting… (attempt {status.reconnect_attempt})" if status.reconnect_attempt else "reconnecting…"
    if state == "connecting":
        return "connecting…"
    return state


class MainWindow(QMainWindow):
    """The application window.

    Args:
        settings_path: the settings file (default :func:`~app.gui.settings.default_settings_path`);
            the window geometry goes to a ``QSettings`` INI file beside it.
        detector_factory: settings -> detector; default loads (and caches) the configured
            weights. Tests pass a stub here.
        source_opener, pipeline_config: see :class:`~app.gui.worker.PipelineWorker`.
    """

    def __init__(
        self,
        settings_path: Path | None = None,
        detector_factory: DetectorFactory | None = None,
        source_opener: SourceOpener = open_gui_source,
        pipeline_config: PipelineConfig | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle(WINDOW_TITLE)
        self.settings_path = Path(settings_path) if settings_path is not None else default_settings_path()
        self.settings, settings_problem = self._read_settings()
        self._window_state = QSettings(str(window_state_path(self.settings_path)), QSettings.Format.IniFormat)
        self._detector_factory = detector_factory if detector_factory is not None else DetectorCache()
        self._source_opener = source_opener
        self._pipeline_config = pipeline_config
        self.source_spec: str | None = None
        self.worker: PipelineWorker | None = None
        self._thread = None
        self._next_spec: str | None = None
        self._close_requested = False
        self._pending_zone_config: CountingConfig | None = None
        self.last_report: PipelineReport | None = None
        self.grids: list[QMainWindow] = []  # camera grid windows opened from here
        self._grid_poll = QTimer(self)
        self._grid_poll.setInterval(100)
        self._grid_poll.timeout.connect(self._close_when_grids_stopped)
        self.last_error: str | None = None
        self.message_box: QMessageBox | None = None
        self._dialog = None
        self.frames_shown = 0
        #: the events file of the current (or last) run, written as events happen
        self.events_output: Path | None = None

        self.view = VideoView(parent=self)
        self.setCentralWidget(self.view)
        self.counts_panel = CountsPanel()
        self.events_panel = EventsPanel()
        counts_dock = self._add_dock("Counts", "counts", self.counts_panel, Qt.DockWidgetArea.RightDockWidgetArea)
        events_dock = self._add_dock("Events", "events", self.events_panel, Qt.DockWidgetArea.BottomDockWidgetArea)
        self.resizeDocks([counts_dock], [360], Qt.Orientation.Horizontal)
        self.resizeDocks([events_dock], [190], Qt.Orientation.Vertical)
        self._build_actions()
        self._build_status_bar()
        self.view.shapesEdited.connect(self._on_shapes_edited)
        self.view.modeChanged.connect(self._on_mode_changed)
        self.view.message.connect(lambda text: self.statusBar().showMessage(text, 6000))
        self.view.viewResized.connect(self._on_view_resized)
        self.events_panel.exported.connect(
            lambda path, n: self.statusBar().showMessage(f"exported {n} events to {path}", 6000))
        self.events_panel.exportFailed.connect(lambda text: self.show_error("Export failed", text))
        self._status_timer = QTimer(self)
        self._status_timer.setInterval(STATUS_INTERVAL_MS)
        self._status_timer.timeout.connect(self._refresh_status)

        self.resize(1280, 800)
        geometry = self._window_state.value("geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        state = self._window_state.value("window_state")
        if state is not None:
            self.restoreState(state)
        self._restore_zone_file()
        self._update_actions()
        if settings_problem:
            QTimer.singleShot(0, lambda: self.show_error("Settings not loaded", settings_problem))

    # ---------------------------------------------------------------- construction
    def _read_settings(self) -> tuple[GuiSettings, str | None]:
        try:
            return load_settings(self.settings_path), None
        except SettingsError as exc:
            logger.error("%s", exc)
            return GuiSettings(), f"{exc}\n\nThe defaults are used; saving settings will replace the file."

    def _add_dock(self, title: str, name: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock_{name}")
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _action(self, text: str, slot: Callable[[], object], shortcut: str | QKeySequence.StandardKey | None = None,
                tip: str = "", checkable: bool = False) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        if tip:
            action.setToolTip(tip)
            action.setStatusTip(tip)
        action.setCheckable(checkable)
        if checkable:
            action.toggled.connect(slot)
        else:
            action.triggered.connect(lambda _checked=False: slot())
        return action

    def _build_actions(self) -> None:
        self.open_action = self._action("&Open source…", self.ask_open_source, QKeySequence.StandardKey.Open,
                                        "open a video file, stream URL or webcam")
        self.start_action = self._action("&Start", self.start, "F5", "run the current source")
        self.pause_action = self._action("&Pause", self._on_pause_toggled, "Space",
                                         "pause / resume the live view", checkable=True)
        self.stop_action = self._action("S&top", self.stop, "Shift+F5", "stop the run")
        self.record_action = self._action("&Record", self._on_record_toggled, None,
                                          "record the annotated video of the next runs", checkable=True)
        self.record_action.setChecked(self.settings.record_output)
        self.select_action = self._action("Select", lambda on: on and self.view.set_mode(EditMode.SELECT),
                                          "Ctrl+1", "select, move, rename, flip or delete lines and zones",
                                          checkable=True)
        self.line_action = self._action("Draw &line", lambda on: on and self.view.set_mode(EditMode.DRAW_LINE),
                                        "Ctrl+2", "press, drag and release to draw a counting line", checkable=True)
        self.zone_action = self._action("Draw &zone", lambda on: on and self.view.set_mode(EditMode.DRAW_ZONE),
                                        "Ctrl+3", "click the vertices; double-click or Enter closes the zone",
                                        checkable=True)
        modes = QActionGroup(self)
        for action in (self.select_action, self.line_action, self.zone_action):
            modes.addAction(action)
        self.select_action.setChecked(True)
        self.rename_action = self._action("&Rename…", self.view.request_rename, "F2")
        self.flip_action = self._action("&Flip IN direction", self.view.flip_selected, "F")
        self.delete_action = self._action("&Delete", self.view.delete_selected, QKeySequence.StandardKey.Delete)
        for action in (self.rename_action, self.flip_action, self.delete_action):
            action.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)  # the view handles its keys
        self.cameras_action = self._action("Open &cameras file…", self.ask_open_cameras, "Ctrl+Shift+O",
                                           "open a cameras file (yolov7-track serve's) as a grid of live views")
        self.label_action = self._action("&Label a clip…", self.ask_label_clip, "Ctrl+Shift+L",
                                         "label a video with the detector's proposals, for finetuning")
        self.load_zones_action = self._action("&Load lines and zones…", self.ask_load_zones, "Ctrl+L")
        self.save_zones_action = self._action("&Save lines and zones…", self.ask_save_zones, QKeySequence.StandardKey.Save)
        self.export_action = self._action("&Export events CSV…", self.events_panel.ask_export, "Ctrl+E")
        self.settings_action = self._action("Se&ttings…", self.ask_settings, QKeySequence.StandardKey.Preferences)
        self.quit_action = self._action("&Quit", self.close, QKeySequence.StandardKey.Quit)

        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        file_menu.addAction(self.open_action)
        self.recent_menu = file_menu.addMenu("Open &recent")
        file_menu.addAction(self.cameras_action)
        file_menu.addAction(self.label_action)
        file_menu.addSeparator()
        file_menu.addAction(self.load_zones_action)
        file_menu.addAction(self.save_zones_action)
        file_menu.addAction(self.export_action)
        file_menu.addSeparator()
        file_menu.addAction(self.settings_action)
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)
        run_menu = menu.addMenu("&Run")
        for action in (self.start_action, self.pause_action, self.stop_action, self.record_action):
            run_menu.addAction(action)
        edit_menu = menu.addMenu("&Edit")
        for action in (self.select_action, self.line_action, self.zone_action):
            edit_menu.addAction(action)
        edit_menu.addSeparator()
        for action in (self.rename_action, self.flip_action, self.delete_action):
            edit_menu.addAction(action)
        self._rebuild_recent_menu()

        toolbar = QToolBar("Main", self)
        toolbar.setObjectName("toolbar_main")
        toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        for action in (self.open_action, self.start_action, self.pause_action, self.stop_action, self.record_action):
            toolbar.addAction(action)
        toolbar.addSeparator()
        for action in (self.select_action, self.line_action, self.zone_action):
            toolbar.addAction(action)
        toolbar.addSeparator()
        for action in (self.load_zones_action, self.save_zones_action, self.settings_action):
            toolbar.addAction(action)
        self.addToolBar(toolbar)

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.state_label = QLabel("idle")
        self.fps_label = QLabel("— fps")
        self.latency_label = QLabel("latency —")
        self.dropped_label = QLabel("dropped 0")
        self.connection_label = QLabel("—")
        for label in (self.state_label, self.fps_label, self.latency_label, self.dropped_label,
                      self.connection_label):
            label.setMinimumWidth(70)
            bar.addPermanentWidget(label)

    def _rebuild_recent_menu(self) -> None:
        self.recent_menu.clear()
        for spec in self.settings.recent_sources:
            action = self.recent_menu.addAction(spec)
            action.triggered.connect(lambda _checked=False, s=spec: self.open_source(s))
        self.recent_menu.setEnabled(bool(self.settings.recent_sources))

    # ---------------------------------------------------------------- state
    def is_busy(self) -> bool:
        """A worker thread exists (starting, running, paused or stopping)."""
        return self._thread is not None

    def _update_actions(self) -> None:
        busy = self.is_busy()
        state = self.worker.status().state if busy and self.worker is not None else "idle"
        self.start_action.setEnabled(not busy and self.source_spec is not None)
        self.stop_action.setEnabled(busy and state != STATE_STOPPING)
        self.pause_action.setEnabled(busy and state != STATE_STOPPING)
        if not busy and self.pause_action.isChecked():
            self._set_pause_checked(False)
        self.state_label.setText(state)
        title = WINDOW_TITLE if self.source_spec is None else f"{self.source_spec} — {WINDOW_TITLE}"
        self.setWindowTitle(title)

    # ---------------------------------------------------------------- sources and runs
    def ask_open_source(self) -> SourceDialog:
        """Show the source dialog (window-modal, non-blocking); opening follows on accept."""
        dialog = SourceDialog(self.settings.recent_sources, self)
        dialog.accepted.connect(lambda: self.open_source(dialog.spec()))
        dialog.open()
        self._dialog = dialog
        return dialog

    def open_source(self, spec: str) -> None:
        """Make ``spec`` the current source and start it (stopping a run in progress first)."""
        spec = str(spec).strip()
        self._update_settings(self.settings.with_recent_source(spec))
        self._rebuild_recent_menu()
        if self.is_busy():
            self._next_spec = spec
            self.stop()
            return
        self.source_spec = spec
        self.start()

    def start(self) -> None:
        """Run the current source with the current settings, lines and zones."""
        if self.is_busy() or self.source_spec is None:
            return
        video_output = None
        if self.settings.record_output:
            video_output = recording_path(self.settings, self.source_spec)
            try:
                video_output.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                self.show_error("Cannot record", f"cannot create {video_output.parent}: {exc}")
                return
        events_output = recording_path(self.settings, self.source_spec, suffix=".events.csv")
        try:
            events_output.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self.show_error("Cannot save events", f"cannot create {events_output.parent}: {exc}")
            return
        self.events_output = events_output
        request = RunRequest(self.source_spec, self.settings, self.view.shapes.to_config(), video_output, events_output)
        worker = PipelineWorker(request, self._detector_factory, self._source_opener,
                                self._pipeline_config)
        worker.frameReady.connect(self._on_frame_ready)
        worker.runStarted.connect(self._on_run_started)
        worker.failed.connect(self._on_failed)
        worker.finished.connect(self._on_finished)
        size = self.view.size() * self.view.devicePixelRatioF()
        worker.set_view_size(size.width(), size.height())
        self.worker = worker
        self.last_error = None
        self.counts_panel.show_counts((), ())
        self.view.set_counts((), ())
        self._thread = start_in_thread(worker, self)
        self._thread.finished.connect(self._on_thread_finished)
        self._status_timer.start()
        self.statusBar().showMessage(f"opening {self.source_spec}…")
        self._update_actions()

    def stop(self) -> None:
        """Ask the run to stop; returns at once (the status shows "stopping" until it ends)."""
        if self.worker is not None and self.is_busy():
            self.worker.stop()
        self._update_actions()

    def pause(self) -> None:
        self.pause_action.setChecked(True)

    def resume(self) -> None:
        self.pause_action.setChecked(False)

    def _on_pause_toggled(self, paused: bool) -> None:
        if self.worker is None or not self.is_busy():
            self._set_pause_checked(False)  # nothing to pause
            return
        if paused:
            self.worker.pause()
        else:
            self.worker.resume()
        self.pause_action.setText("Resume" if paused else "Pause")
        self._update_actions()

    def _set_pause_checked(self, paused: bool) -> None:
        """Set the Pause button without acting on it."""
        self.pause_action.blockSignals(True)
        self.pause_action.setChecked(paused)
        self.pause_action.setText("Resume" if paused else "Pause")
        self.pause_action.blockSignals(False)

    def _on_record_toggled(self, on: bool) -> None:
        from dataclasses import replace

        self._update_settings(replace(self.settings, record_output=on))
        if self.is_busy():
            self.statusBar().showMessage("recording applies from the next start", 6000)

    # ---------------------------------------------------------------- worker signals
    def _on_run_started(self, source_name: str) -> None:
        self.statusBar().showMessage(f"running {source_name}", 4000)
        self._update_actions()

    def _on_frame_ready(self) -> None:
        worker = self.worker
        update = worker.take_update() if worker is not None else None
        if update is None:
            return
        first = self.view.frame_size_wh is None
        self.view.set_frame(update.image, update.frame_size_wh)
        if first and self._pending_zone_config is not None:
            self._apply_zone_config(self._pending_zone_config)
        self.view.set_counts(update.lines, update.zones)
        self.counts_panel.show_counts(update.lines, update.zones)
        self.events_panel.add_events(update.events)
        self.latency_label.setText(f"latency {1e3 * update.latency_s:.0f} ms")
        self.frames_shown += 1

    def _on_failed(self, message: str) -> None:
        self.last_error = message
        self.show_error("Run failed", message)

    def _on_finished(self, report: PipelineReport | None) -> None:
        self._on_frame_ready()  # the last frame and events, if not taken yet
        self.last_report = report
        if report is not None:
            self.statusBar().showMessage(
                f"{report.status}: {report.stats.frames_out} frames, {report.events_total} events"
                + (f" in {self.events_output}" if self.events_output is not None else "")
                + (f", video {report.video_output}" if report.video_output else ""), 10000)
            for problem in report.sink_errors:  # the run counted on; the events file did not get everything
                self.show_error("Saving events failed", problem)
            if report.video_error:  # the run counted to its end without the recording
                self.show_error("Recording failed", report.video_error)
        self._refresh_status()

    def _on_thread_finished(self) -> None:
        self._thread = None
        self._status_timer.stop()
        self._update_actions()
        if self._close_requested:
            self.close()
        elif self._next_spec is not None:
            spec, self._next_spec = self._next_spec, None
            self.open_source(spec)

    def _refresh_status(self) -> None:
        if self.worker is None:
            return
        status = self.worker.status()
        self.state_label.setText(status.state if self.is_busy() else "idle")
        self.connection_label.setText(format_connection(status))
        if status.stats is not None:
            stats = status.stats
            self.fps_label.setText(f"{stats.fps:.1f} fps")
            self.dropped_label.setText(f"dropped {stats.frames_dropped}")
            if stats.frames_out:
                self.latency_label.setText(f"latency {stats.latency_p50_ms:.0f} ms (p95 {stats.latency_p95_ms:.0f})")
        if status.state == STATE_STARTING:
            self.fps_label.setText("— fps")
        elif status.state == STATE_PAUSED:
            self.fps_label.setText("paused")

    def _on_view_resized(self, width_px: int, height_px: int) -> None:
        if self.worker is not None:
            self.worker.set_view_size(width_px, height_px)

    def ask_open_cameras(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open cameras file", "", "Cameras files (*.yaml *.yml *.json)")
        if path:
            self.open_cameras_file(path)

    def open_cameras_file(self, path: str | Path, service_factory: Callable[..., object] | None = None) -> QMainWindow:
        """Open ``path`` in a new camera grid window (:mod:`app.gui.camera_grid`; its default
        service unless ``service_factory`` is given). Closing this window stops its cameras first."""
        from app.gui.camera_grid import CameraGridWindow, default_service_factory

        grid = CameraGridWindow(service_factory or default_service_factory, parent=self)
        grid.setWindowFlag(Qt.WindowType.Window)  # its own top-level window, owned by this one
        grid.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.grids.append(grid)
        grid.destroyed.connect(lambda _obj=None, grid=grid: self.grids.remove(grid) if grid in self.grids else None)
        grid.show()
        grid.open_cameras_file(path)
        return grid

    def ask_label_clip(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Label a clip", "", "Videos (*.mp4 *.avi *.mkv *.mov)")
        if path:
            self.open_label_window(path)

    def open_label_window(self, video: str | Path) -> QMainWindow:
        """Open ``video`` in a new labelling window (:mod:`app.gui.label_window`) whose
        proposals come from this window's detector and tracker settings."""
        from app.gui.label_window import LabelWindow

        settings = self.settings
        window = LabelWindow(lambda: self._detector_factory(settings), (settings.tracker.kind, settings.tracker.params()),
                             base_weights=settings.weights, parent=self)
        window.modelChosen.connect(self.use_weights)
        window.setWindowFlag(Qt.WindowType.Window)
        window.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        window.show()
        window.open_clip(video)
        return window

    def use_weights(self, weights: str) -> None:
        """Run the next starts with ``weights`` (a finetuned model from the labelling window)."""
        from dataclasses import replace

        self._update_settings(replace(self.settings, weights=str(weights)))
        self.statusBar().showMessage(f"detector: {weights} (from the next start)", 8000)

    # ---------------------------------------------------------------- lines and zones
    def _on_shapes_edited(self) -> None:
        if self.worker is not None and self.is_busy():
            self.worker.set_counting(self.view.shapes.to_config())

    def _on_mode_changed(self, mode: str) -> None:
        action = {EditMode.SELECT.value: self.select_action, EditMode.DRAW_LINE.value: self.line_action,
                  EditMode.DRAW_ZONE.value: self.zone_action}[mode]
        if not action.isChecked():
            action.setChecked(True)

    def load_zones(self, path: str | Path) -> bool:
        """Replace the lines and zones by those of a zone file (the CLI's ``--zones`` format)."""
        try:
            config = load_counting_config(path)
        except ZoneConfigError as exc:
            self.show_error("Cannot load lines and zones", str(exc))
            return False
        if config.normalized and self.view.frame_size_wh is None:
            self._pending_zone_config = config  # fractions of a frame we have not seen yet
            self.statusBar().showMessage(f"{path}: normalized coordinates; placed on the first frame", 6000)
        else:
            self._apply_zone_config(config)
        from dataclasses import replace

        self._update_settings(replace(self.settings, zone_file=str(path)))
        return True

    def _apply_zone_config(self, config: CountingConfig) -> None:
        width, height = self.view.frame_size_wh or (1, 1)
        self.view.shapes.load(config, width, height)
        self._pending_zone_config = None
        self.view.shapes_changed_externally()
        self._on_shapes_edited()

    def save_zones(self, path: str | Path) -> bool:
        """Write the lines and zones to a zone file (JSON or YAML by extension)."""
        config = self.view.shapes.to_config()
        if config is None:
            self.show_error("Nothing to save", "draw a line or a zone first")
            return False
        try:
            save_counting_config(config, path)
        except (ZoneConfigError, OSError) as exc:
            self.show_error("Cannot save lines and zones", str(exc))
            return False
        from dataclasses import replace

        self._update_settings(replace(self.settings, zone_file=str(path)))
        self.statusBar().showMessage(f"saved {len(self.view.shapes)} lines and zones to {path}", 6000)
        return True

    def ask_load_zones(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load lines and zones", self.settings.zone_file, ZONE_FILE_FILTER)
        if path:
            self.load_zones(path)

    def ask_save_zones(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save lines and zones", self.settings.zone_file or "zones.json",
                                              ZONE_FILE_FILTER)
        if path:
            self.save_zones(path)

    def _restore_zone_file(self) -> None:
        path = self.settings.zone_file
        if not path:
            return
        if not Path(path).exists():
            self.statusBar().showMessage(f"last zone file {path} no longer exists", 6000)
            return
        try:
            config = load_counting_config(path)
        except ZoneConfigError as exc:
            self.statusBar().showMessage(f"last zone file not loaded: {exc}", 10000)
            return
        if config.normalized:
            self._pending_zone_config = config
        else:
            self._apply_zone_config(config)

    # ---------------------------------------------------------------- settings
    def ask_settings(self) -> SettingsDialog:
        dialog = SettingsDialog(self.settings, self)
        dialog.accepted.connect(lambda: self._on_settings_accepted(dialog.settings()))
        dialog.open()
        self._dialog = dialog
        return dialog

    def _on_settings_accepted(self, settings: GuiSettings) -> None:
        self._update_settings(settings)
        self.record_action.blockSignals(True)
        self.record_action.setChecked(settings.record_output)
        self.record_action.blockSignals(False)
        if self.is_busy():
            self.statusBar().showMessage("settings apply from the next start", 6000)

    def _update_settings(self, settings: GuiSettings) -> None:
        self.settings = settings
        try:
            save_settings(settings, self.settings_path)
        except OSError as exc:
            self.show_error("Cannot save settings", f"{self.settings_path}: {exc}")

    # ---------------------------------------------------------------- messages and closing
    def show_error(self, title: str, text: str) -> QMessageBox:
        """A window-modal message box that does not block the event loop (:func:`open_error`)."""
        self.message_box = open_error(self, title, text)
        return self.message_box

    def shutdown_after_event_loop(self, timeout_s: float = 15.0) -> bool:
        """Stop a run still active once the event loop has ended (the process is exiting) and
        wait, at most ``timeout_s``, for its thread: a ``QThread`` destroyed while running aborts
        the process. Only call this after ``QApplication.exec()`` returned; while the GUI runs,
        closing goes through :meth:`closeEvent`, which never waits. Returns whether no worker
        thread is left."""
        for grid in self.grids:
            grid.shutdown_after_event_loop(timeout_s)
        thread = self._thread
        if thread is None:
            return True
        if self.worker is not None:
            self.worker.stop()
        thread.quit()  # the worker's finished -> quit connection needs the event loop we left
        finished = thread.wait(round(timeout_s * 1000))
        if not finished:
            logger.error("the pipeline did not stop within %.0f s", timeout_s)
        return finished

    def _close_when_grids_stopped(self) -> None:
        # Polled, not signalled: a grid deletes itself once closed, and a queued signal from
        # its runner may be dropped with it.
        if not any(grid.runner.busy for grid in self.grids):
            self._grid_poll.stop()
            self.close()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt override
        busy_grids = [grid for grid in self.grids if grid.runner.busy]
        if busy_grids:
            # The camera grids stop their cameras first (their outputs are finalized), then we close.
            self._close_requested = True
            for grid in busy_grids:
                grid.close()
            self._grid_poll.start()
            event.ignore()
            return
        if self.is_busy():
            # Never wait here: ask the run to stop and close when its thread has ended.
            self._close_requested = True
            self.stop()
            self.statusBar().showMessage("stopping…")
            event.ignore()
            return
        self._window_state.setValue("geometry", self.saveGeometry())
        self._window_state.setValue("window_state", self.saveState())
        self._window_state.sync()
        event.accept()
