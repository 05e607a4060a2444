"""The camera grid: a cameras file (``yolov7-track serve``'s) as live views with their counts.

Open a cameras file (``yolov7-track gui --cameras FILE``, or File > Open cameras file… in the main
window) and every camera appears in a grid cell: its annotated live picture (tracks, lines,
zones and counts drawn by the pipeline), its state and frame rate, and its counts. Clicking a
cell opens an editor for that camera's lines and zones on its latest raw picture (the same
:class:`~app.gui.video_view.VideoView` editor as the main window); OK applies them to the
running camera at once (counts of unchanged lines are kept, as with a reload) and Save writes
them back into the same cameras file (:func:`app.cameras.save_camera_counting`: comments kept,
the file validated before it is replaced).

Threads: the cameras run in an :class:`app.service.Service`, built and stopped by
:class:`ServiceRunner` in a plain thread (loading the weights and joining the camera threads
take seconds); the pipelines hand their annotated frames to :class:`LiveBoard` through a
:class:`~app.frame_sinks.FrameSink` per camera, which reduces them to cell size in the camera's
own output thread and notifies the window by a queued signal. The GUI thread only paints the
latest picture of each camera and reads the service's status (a short lock) twice a second: it
never waits for a camera, the detector or a thread.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PyQt6.QtCore import QObject, QRectF, QSize, Qt, QTimer, pyqtSignal
from PyQt6.QtGui import QAction, QActionGroup, QCloseEvent, QImage, QKeySequence, QMouseEvent, QPainter, QPaintEvent
from PyQt6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFrame,
    QGridLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QScrollArea,
    QSizePolicy,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from app.cameras import CamerasFile, CamerasFileError, load_cameras_file, save_camera_counting
from app.counting import CountingConfig, ZoneConfigError
from app.frame_sinks import FrameSink
from app.frames import Frame
from app.gui.video_view import EditMode, VideoView
from app.gui.messages import open_error
from app.gui.worker import bgr_to_qimage, fit_within

__all__ = ["CameraGridWindow", "CameraEditorDialog", "LiveBoard", "ServiceRunner", "format_counts"]

logger = logging.getLogger(__name__)

#: The largest picture kept per camera for its grid cell, and for the editor, pixels (w, h).
CELL_MAX_WH = (640, 360)
EDITOR_MAX_WH = (1280, 720)
#: How often the cells' states, frame rates and counts are refreshed, ms.
STATUS_INTERVAL_MS = 500
CAMERAS_FILE_FILTER = "Cameras files (*.yaml *.yml *.json)"

ServiceFactory = Callable[[CamerasFile, Callable[[str], Sequence[FrameSink]]], Any]


def default_service_factory(cameras: CamerasFile, frame_sinks: Callable[[str], Sequence[FrameSink]]) -> Any:
    """:class:`app.service.Service` with the file's own detector section (weights loaded now)."""
    from app.service import Service

    return Service(cameras, frame_sinks=frame_sinks)


def format_counts(counts: dict[str, Any]) -> str:
    """A camera's counts (:meth:`app.service.Service.status`) as one short text:
    ``road: 5 in, 2 out · lot: 3 inside (7 entered)``; ``no lines or zones`` when it has none."""
    parts = [f"{name}: {c['in']} in, {c['out']} out" for name, c in counts.get("lines", {}).items()]
    parts += [f"{name}: {c['occupancy']} inside ({c['enter']} entered)" for name, c in counts.get("zones", {}).items()]
    return " · ".join(parts) if parts else "no lines or zones"


# ------------------------------------------------------------------------------ frames
@dataclass(frozen=True)
class CellFrame:
    """The latest pictures of one camera.

    Attributes:
        annotated: the pipeline's drawing (tracks, lines, zones, counts), at most
            :data:`CELL_MAX_WH`.
        raw: the frame as captured, at most :data:`EDITOR_MAX_WH` (the editor draws the shapes).
        frame_size_wh: the source frame's size, pixels (lines and zones use these pixels).
        frame_index: the frame's index in its source.
    """

    annotated: QImage
    raw: QImage
    frame_size_wh: tuple[int, int]
    frame_index: int


class LiveBoard(QObject):
    """The latest picture of every camera, written by the pipelines' output threads and read by
    the GUI thread. ``frameReady(camera_id)`` is emitted once per batch of new pictures: it is
    not emitted again for that camera until :meth:`take` has been called."""

    frameReady = pyqtSignal(str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._lock = threading.Lock()
        self._latest: dict[str, CellFrame] = {}
        self._pending: set[str] = set()

    def sink_for(self, camera_id: str) -> Sequence[FrameSink]:
        """The frame sinks of ``camera_id`` (the :class:`app.service.Service` ``frame_sinks``)."""
        return [_BoardSink(self, camera_id)]

    def put(self, camera_id: str, annotated_bgr: np.ndarray, frame: Frame) -> None:
        """Keep ``annotated_bgr`` and ``frame.image`` (``(H, W, 3)`` uint8 BGR) reduced to cell
        and editor size. Called from a pipeline thread."""
        height, width = frame.image.shape[:2]
        cell = CellFrame(bgr_to_qimage(fit_within(annotated_bgr, CELL_MAX_WH)),
                         bgr_to_qimage(fit_within(frame.image, EDITOR_MAX_WH)),
                         (width, height), frame.index)
        with self._lock:
            self._latest[camera_id] = cell
            notify = camera_id not in self._pending
            self._pending.add(camera_id)
        if notify:
            self.frameReady.emit(camera_id)

    def take(self, camera_id: str) -> CellFrame | None:
        """The latest pictures of ``camera_id`` (``None`` before its first frame)."""
        with self._lock:
            self._pending.discard(camera_id)
            return self._latest.get(camera_id)

    def latest(self, camera_id: str) -> CellFrame | None:
        """Like :meth:`take`, without acknowledging the notification."""
        with self._lock:
            return self._latest.get(camera_id)

    def forget(self) -> None:
        with self._lock:
            self._latest.clear()
            self._pending.clear()


class _BoardSink:
    """The :class:`~app.frame_sinks.FrameSink` of one camera's grid cell."""

    def __init__(self, board: LiveBoard, camera_id: str) -> None:
        self._board = board
        self._camera_id = camera_id

    def write(self, image_bgr: np.ndarray, frame: Frame) -> None:
        self._board.put(self._camera_id, image_bgr, frame)

    def close(self) -> None:
        """Nothing to finalize: the last picture stays on the board."""


# ------------------------------------------------------------------------------ service
class ServiceRunner(QObject):
    """Builds, starts and stops an :class:`app.service.Service` off the GUI thread.

    Signals:
        started(object): the running service.
        failed(str): building it failed (bad weights, an unknown class, an output that cannot
            open): one line for a message box.
        stopped(): every camera has stopped and the outputs are closed.
    """

    started = pyqtSignal(object)
    failed = pyqtSignal(str)
    stopped = pyqtSignal()

    def __init__(self, factory: ServiceFactory, board: LiveBoard, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._factory = factory
        self._board = board
        self._lock = threading.Lock()
        self._state = "idle"  # idle -> building -> running -> stopping -> idle
        self._builder: threading.Thread | None = None
        self._stopper: threading.Thread | None = None
        self.service: Any | None = None

    @property
    def busy(self) -> bool:
        """A service is being built, runs, or is stopping."""
        with self._lock:
            return self._state != "idle"

    def start(self, cameras: CamerasFile) -> None:
        """Build and start the service of ``cameras`` in a new thread (returns at once).

        Raises:
            RuntimeError: a service is still busy (stop it first).
        """
        with self._lock:
            if self._state != "idle":
                raise RuntimeError(f"the cameras service is {self._state}; stop it first")
            self._state = "building"
            self._builder = threading.Thread(target=self._build, args=(cameras,), name="camera-grid-service",
                                             daemon=True)
            self._builder.start()

    def stop(self) -> None:
        """Stop the service in a thread (returns at once); ``stopped`` follows. A second call
        while stopping does nothing."""
        with self._lock:
            if self._state in ("stopping", "idle"):
                return
            self._state = "stopping"
            builder = self._builder
        self._stopper = threading.Thread(target=self._stop, args=(builder,), name="camera-grid-stop", daemon=True)
        self._stopper.start()

    def stop_and_wait(self, timeout_s: float) -> bool:
        """Stop and wait, at most ``timeout_s`` per step; only once the event loop has ended.
        Returns whether nothing is left running."""
        builder, stopper = self._builder, self._stopper
        for thread in (builder, stopper):
            if thread is not None:
                thread.join(timeout_s)
        service, self.service = self.service, None
        if service is not None:
            service.stop(timeout_s)
        with self._lock:
            self._state = "idle"
        return not any(thread is not None and thread.is_alive() for thread in (builder, stopper))

    def _build(self, cameras: CamerasFile) -> None:
        try:
            service = self._factory(cameras, self._board.sink_for)
            service.start()
        except Exception as exc:  # noqa: BLE001 - shown to the user in a message box; the grid stays open
            logger.exception("cannot start the cameras of %s", cameras.path)
            with self._lock:
                stopping = self._state == "stopping"
                self._state = "idle" if not stopping else self._state
            if not stopping:
                self.failed.emit(_one_line(exc))
            return
        with self._lock:
            self.service = service
            if self._state != "building":
                return  # stop() was called meanwhile; _stop waits for this thread and stops it
            self._state = "running"
        self.started.emit(service)

    def _stop(self, builder: threading.Thread | None) -> None:
        if builder is not None:
            builder.join()
        service, self.service = self.service, None
        try:
            if service is not None:
                service.stop()
        finally:
            with self._lock:
                self._state = "idle"
            self.stopped.emit()


def _one_line(exc: BaseException) -> str:
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


# ------------------------------------------------------------------------------ widgets
class _Picture(QWidget):
    """A ``QImage`` scaled to the widget with its aspect ratio kept (centred)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.image: QImage | None = None
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(160, 90)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return QSize(400, 225)

    def set_image(self, image: QImage) -> None:
        self.image = image
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt override
        painter = QPainter(self)
        painter.fillRect(self.rect(), Qt.GlobalColor.black)
        if self.image is not None and not self.image.isNull():
            scale = min(self.width() / self.image.width(), self.height() / self.image.height())
            width, height = self.image.width() * scale, self.image.height() * scale
            target = QRectF((self.width() - width) / 2, (self.height() - height) / 2, width, height)
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
            painter.drawImage(target, self.image)
        painter.end()


class CameraCell(QFrame):
    """One camera in the grid: title (id, state, fps), live picture, counts. A click emits
    ``clicked(camera_id)``."""

    clicked = pyqtSignal(str)

    def __init__(self, camera_id: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.camera_id = camera_id
        self.setObjectName(f"camera_{camera_id}")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setToolTip(f"click to edit the lines and zones of {camera_id}")
        self.title = QLabel(camera_id)
        self.picture = _Picture()
        self.counts = QLabel("no lines or zones")
        self.counts.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.title)
        layout.addWidget(self.picture, 1)
        layout.addWidget(self.counts)
        self.frames_shown = 0

    def show_frame(self, frame: CellFrame) -> None:
        self.picture.set_image(frame.annotated)
        self.frames_shown += 1

    def show_status(self, status: dict[str, Any]) -> None:
        """One camera of :meth:`app.service.Service.status`."""
        state = status["state"] + (f" ({status['error']})" if status.get("error") else "")
        self.title.setText(f"<b>{self.camera_id}</b> — {state}, {status['fps']:.1f} fps")
        self.counts.setText(format_counts(status["counts"]))

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt override
        if event.button() == Qt.MouseButton.LeftButton:
            self.clicked.emit(self.camera_id)
        super().mouseReleaseEvent(event)


class CameraEditorDialog(QDialog):
    """The lines and zones of one camera, drawn on its latest raw picture (live).

    ``counting()`` gives the edited shapes, in source-frame pixels, once accepted.
    """

    def __init__(self, camera_id: str, counting: CountingConfig | None, board: LiveBoard,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.camera_id = camera_id
        self.setWindowTitle(f"Lines and zones of {camera_id}")
        self.setObjectName(f"editor_{camera_id}")
        self._board = board
        self.view = VideoView()
        frame = board.latest(camera_id)
        assert frame is not None  # the grid opens the editor only once the camera has a picture
        self.view.set_frame(frame.raw, frame.frame_size_wh)
        if counting is not None:
            self.view.shapes.load(counting, *frame.frame_size_wh)
            self.view.shapes_changed_externally()
        board.frameReady.connect(self._on_frame)

        toolbar = QToolBar(self)
        modes = QActionGroup(self)
        for text, mode, shortcut in (("Select", EditMode.SELECT, "Ctrl+1"), ("Draw line", EditMode.DRAW_LINE, "Ctrl+2"),
                                     ("Draw zone", EditMode.DRAW_ZONE, "Ctrl+3")):
            action = QAction(text, self)
            action.setCheckable(True)
            action.setShortcut(QKeySequence(shortcut))
            action.toggled.connect(lambda on, mode=mode: on and self.view.set_mode(mode))
            modes.addAction(action)
            toolbar.addAction(action)
            action.setChecked(mode is EditMode.SELECT)
        toolbar.addSeparator()
        delete = QAction("Delete", self)
        delete.triggered.connect(lambda _checked=False: self.view.delete_selected())
        toolbar.addAction(delete)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(toolbar)
        layout.addWidget(self.view, 1)
        layout.addWidget(buttons)
        self.resize(960, 620)

    def counting(self) -> CountingConfig | None:
        """The edited lines and zones in source-frame pixels, ``None`` when there are none."""
        return self.view.shapes.to_config()

    @property
    def frame_size_wh(self) -> tuple[int, int]:
        size = self.view.frame_size_wh
        assert size is not None
        return size

    def _on_frame(self, camera_id: str) -> None:
        if camera_id != self.camera_id:
            return
        frame = self._board.latest(camera_id)
        if frame is not None:
            self.view.set_frame(frame.raw, frame.frame_size_wh)

    def done(self, result: int) -> None:
        self._board.frameReady.disconnect(self._on_frame)
        super().done(result)


# ------------------------------------------------------------------------------ window
class CameraGridWindow(QMainWindow):
    """A cameras file as a grid of live views with per-camera counts (module docstring).

    Args:
        service_factory: ``(cameras_file, frame_sinks) -> service`` with ``start``, ``stop``,
            ``status`` and ``camera(id).set_counting``; default :func:`default_service_factory`
            (tests pass a service with a stub detector).
    """

    def __init__(self, service_factory: ServiceFactory = default_service_factory, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("yolov7-track cameras")
        self.board = LiveBoard(self)
        self.runner = ServiceRunner(service_factory, self.board, self)
        self.file: CamerasFile | None = None
        self.cells: dict[str, CameraCell] = {}
        self.editor: CameraEditorDialog | None = None
        #: camera id -> edited lines and zones (source pixels) and that source's frame size
        self.edits: dict[str, tuple[CountingConfig | None, tuple[int, int]]] = {}
        self.last_error: str | None = None
        self._close_requested = False
        self._next_path: Path | None = None

        grid_host = QWidget()
        self.grid = QGridLayout(grid_host)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(grid_host)
        self.setCentralWidget(scroll)
        self._build_actions()
        self.board.frameReady.connect(self._on_frame)
        self.runner.started.connect(self._on_started)
        self.runner.failed.connect(self._on_failed)
        self.runner.stopped.connect(self._on_stopped)
        self._status_timer = QTimer(self)
        self._status_timer.setInterval(STATUS_INTERVAL_MS)
        self._status_timer.timeout.connect(self.refresh_status)
        self.resize(1280, 800)

    def _build_actions(self) -> None:
        self.open_action = QAction("&Open cameras file…", self)
        self.open_action.setShortcut(QKeySequence(QKeySequence.StandardKey.Open))
        self.open_action.triggered.connect(lambda _checked=False: self.ask_open())
        self.save_action = QAction("&Save lines and zones", self)
        self.save_action.setShortcut(QKeySequence(QKeySequence.StandardKey.Save))
        self.save_action.setToolTip("write the edited lines and zones back into the cameras file")
        self.save_action.triggered.connect(lambda _checked=False: self.save())
        self.close_action = QAction("&Close", self)
        self.close_action.setShortcut(QKeySequence(QKeySequence.StandardKey.Close))
        self.close_action.triggered.connect(lambda _checked=False: self.close())
        menu = self.menuBar().addMenu("&File")
        toolbar = QToolBar("Cameras", self)
        toolbar.setObjectName("toolbar_cameras")
        for action in (self.open_action, self.save_action, self.close_action):
            menu.addAction(action)
            toolbar.addAction(action)
        self.addToolBar(toolbar)
        self._update_actions()

    def _update_actions(self) -> None:
        self.save_action.setEnabled(bool(self.edits) and self.file is not None)
        name = self.file.path.name if self.file is not None else "no cameras file"
        self.setWindowTitle(f"yolov7-track cameras — {name}{' *' if self.edits else ''}")

    # ------------------------------------------------------------------ opening
    def ask_open(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open cameras file", "", CAMERAS_FILE_FILTER)
        if path:
            self.open_cameras_file(path)

    def open_cameras_file(self, path: str | Path) -> bool:
        """Show and run the cameras of ``path`` (the running ones stop first). False, with a
        message box, when the file is invalid."""
        try:
            cameras = load_cameras_file(path)
        except CamerasFileError as exc:
            self.show_error("Cannot open the cameras file", str(exc))
            return False
        if self.runner.busy:
            self._next_path = Path(path)
            self.runner.stop()
            return True
        self.file = cameras
        self.edits.clear()
        self._build_cells(cameras)
        self.board.forget()
        self.runner.start(cameras)
        self.statusBar().showMessage(f"starting {len(cameras.cameras)} camera(s) of {cameras.path}…")
        self._update_actions()
        return True

    def _build_cells(self, cameras: CamerasFile) -> None:
        for cell in self.cells.values():
            self.grid.removeWidget(cell)
            cell.deleteLater()
        self.cells.clear()
        columns = max(1, math.ceil(math.sqrt(len(cameras.cameras))))
        for index, spec in enumerate(cameras.cameras):
            cell = CameraCell(spec.id)
            cell.clicked.connect(self.edit_camera)
            self.grid.addWidget(cell, index // columns, index % columns)
            self.cells[spec.id] = cell

    def _on_started(self, service: Any) -> None:
        self.statusBar().showMessage(f"running {len(self.cells)} camera(s)", 4000)
        self._status_timer.start()

    def _on_failed(self, message: str) -> None:
        self.show_error("Cannot start the cameras", message)

    def _on_stopped(self) -> None:
        self._status_timer.stop()
        if self._close_requested:
            self.close()
        elif self._next_path is not None:
            path, self._next_path = self._next_path, None
            self.open_cameras_file(path)

    def _on_frame(self, camera_id: str) -> None:
        frame = self.board.take(camera_id)
        cell = self.cells.get(camera_id)
        if frame is not None and cell is not None:
            cell.show_frame(frame)

    def refresh_status(self) -> None:
        """Every cell's state, fps and counts from the service."""
        service = self.runner.service
        if service is None:
            return
        for status in service.status()["cameras"]:
            cell = self.cells.get(status["id"])
            if cell is not None:
                cell.show_status(status)

    # ------------------------------------------------------------------ editing
    def edit_camera(self, camera_id: str) -> CameraEditorDialog | None:
        """Open the line and zone editor of ``camera_id`` (non-blocking); ``None`` when the
        camera has no picture yet."""
        if self.file is None or self.board.latest(camera_id) is None:
            self.statusBar().showMessage(f"no picture from {camera_id} yet", 4000)
            return None
        frame = self.board.latest(camera_id)
        assert frame is not None
        try:
            current = self._current_counting(camera_id, frame.frame_size_wh)
        except ZoneConfigError as exc:
            self.show_error("Cannot edit this camera", str(exc))
            return None
        self.editor = CameraEditorDialog(camera_id, current, self.board, self)
        self.editor.accepted.connect(lambda editor=self.editor: self.apply_edit(editor))
        self.editor.open()
        return self.editor

    def _current_counting(self, camera_id: str, frame_size_wh: tuple[int, int]) -> CountingConfig | None:
        if camera_id in self.edits:
            return self.edits[camera_id][0]
        assert self.file is not None
        return CountingConfig.merged(self.file.camera(camera_id).counting, *frame_size_wh)

    def apply_edit(self, editor: CameraEditorDialog) -> None:
        """The editor's shapes go to the running camera now, and wait for Save."""
        config = editor.counting()
        self.edits[editor.camera_id] = (config, editor.frame_size_wh)
        service = self.runner.service
        if service is not None:
            service.camera(editor.camera_id).set_counting(() if config is None else (config,))
        self.statusBar().showMessage(f"{editor.camera_id}: lines and zones applied; Save writes them to the file", 6000)
        self._update_actions()

    def save(self) -> bool:
        """Write the edited lines and zones back into the cameras file (normalized where every
        point lies in the frame, so they fit any resolution; in pixels otherwise)."""
        if self.file is None or not self.edits:
            return False
        counting: dict[str, CountingConfig | None] = {}
        for camera_id, (config, (width, height)) in self.edits.items():
            if config is None:
                counting[camera_id] = None
                continue
            try:
                counting[camera_id] = config.to_normalized(width, height)
            except ValueError:
                counting[camera_id] = config  # a point outside the picture: kept in pixels
        try:
            notes = save_camera_counting(self.file.path, counting)
            self.file = load_cameras_file(self.file.path)
        except (CamerasFileError, OSError) as exc:
            self.show_error("Cannot save the cameras file", str(exc))
            return False
        self.edits.clear()
        self._update_actions()
        self.statusBar().showMessage(f"saved to {self.file.path}" + (f"; {'; '.join(notes)}" if notes else ""), 10000)
        return True

    # ------------------------------------------------------------------ closing
    def show_error(self, title: str, text: str) -> QMessageBox:
        """A window-modal message box that does not block the event loop (:func:`open_error`)."""
        self.last_error = text
        return open_error(self, title, text)

    def shutdown_after_event_loop(self, timeout_s: float = 15.0) -> bool:
        """Stop the cameras once the event loop has ended (the process is exiting)."""
        return self.runner.stop_and_wait(timeout_s)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt override
        if self.runner.busy:
            # Never wait here: stop the cameras and close once they have stopped.
            self._close_requested = True
            self.runner.stop()
            self.statusBar().showMessage("stopping the cameras…")
            event.ignore()
            return
        event.accept()
