"""Labelling mode: label a clip in the app, with the detector's proposals and the tracker's help.

Open a video (File > Label a clip… in the main window, or ``yolov7-track gui --label CLIP``).
The labels live in ``<clip>.labels/gt/gt.txt`` beside the video (MOT 1.1 with class and
visibility columns, ``labels.txt`` and a sidecar marking proposals and verified frames:
:mod:`app.labelling.formats`), the layout the training module reads.

- **Frames**: the scrubber, Right/Left (next/previous), Shift+Right/Shift+Left (±10), Space
  (play/pause).
- **Boxes** (:class:`~app.gui.label_canvas.LabelCanvas`): drag on an empty place draws a box of
  the current class; click selects; drag moves; drag a corner resizes; Delete deletes; A accepts
  a proposal as it is. The class combo sets the selected box's class (type a new name to add a
  class); the id box sets its track id from this frame on (an id switch), on this frame only, or
  for the whole track (merging it into an existing id).
- **Proposals**: "Propose tracks" runs the current detector and tracker over the next frames
  (:func:`app.labelling.propose_tracks`, in a worker thread); "Carry forward" follows the
  selected box over the next frames with the tracker (:func:`app.labelling.carry_forward`);
  "Interpolate" fills the selected track between its verified keyframes (linear in centre and
  size). Proposals are dashed and marked ``?``; what the user drew or corrected is solid and
  marked ✓, and propagation never overwrites it.
- **Verified frames**: V marks the frame verified (every object on it is labelled).
- **Undo/redo** (Ctrl+Z, Ctrl+Shift+Z), and the labels **autosave** a moment after each change
  (atomic writes).
- **Import**: CVAT "MOT 1.1" and "YOLO 1.1" exports, Label Studio video JSON. **Export**: YOLO
  per-frame files.

Threads: decoding frames for the scrubber (:class:`FrameLoader`) and running the detector
(:class:`_Jobs`) happen off the GUI thread; the store is only changed on the GUI thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import supervision as sv
from PyQt6.QtCore import QObject, Qt, QTimer, pyqtSignal
from PyQt6.QtGui import QAction, QCloseEvent, QImage, QKeySequence
from PyQt6.QtWidgets import (
    QComboBox,
    QDockWidget,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSlider,
    QSpinBox,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from app.gui.label_canvas import LabelCanvas
from app.gui.messages import open_error
from app.gui.worker import bgr_to_qimage, fit_within
from app.labelling import (
    CarryConfig,
    LabellingError,
    LabelStore,
    PrelabelConfig,
    TrackScope,
    apply_prelabels,
    carry_forward,
    export_yolo,
    interpolate_track,
    iter_clip_frames,
    load_store,
    propose_tracks,
    read_cvat_mot,
    read_cvat_yolo,
    read_label_studio_video,
)
from yolov7_track.errors import Yolov7TrackError

__all__ = ["DEFAULT_CLASSES", "FrameLoader", "LabelWindow", "labels_path_for"]

logger = logging.getLogger(__name__)

#: The classes of a new clip's labels: those of the bundled default model (a test keeps them equal).
DEFAULT_CLASSES = ("person", "bicycle", "car", "motorcycle", "bus", "truck")
#: Frames proposed or carried per click.
DEFAULT_SPAN_FRAMES = 20
#: Autosave this long after the last change, ms.
AUTOSAVE_DELAY_MS = 1500
#: The largest picture kept for the canvas, pixels (w, h).
VIEW_MAX_WH = (1600, 900)

Detect = Callable[[np.ndarray], sv.Detections]


def labels_path_for(video: str | Path) -> Path:
    """Where the labels of ``video`` live: ``<video>.labels/gt/gt.txt`` beside it."""
    video = Path(video)
    return video.parent / f"{video.name}.labels" / "gt" / "gt.txt"


# ------------------------------------------------------------------------------ frames
class FrameLoader(QObject):
    """Decodes the frames the scrubber asks for in a thread; the newest request wins.

    Uses :class:`training.clips.VideoFrames` (exact frame indices, sequential decoding with an
    LRU cache). ``frameLoaded(index, QImage, (w, h))``: the frame, reduced to at most
    :data:`VIEW_MAX_WH`, and its size in the source.
    """

    frameLoaded = pyqtSignal(int, object, object)
    failed = pyqtSignal(str)

    def __init__(self, video: Path, parent: QObject | None = None) -> None:
        super().__init__(parent)
        from training.clips import VideoFrames

        self.frames = VideoFrames(video, max_memory_frames=256)
        self.count = len(self.frames)
        self.fps = _video_fps(video)
        self._wanted: int | None = None
        self._wake = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="label-frames", daemon=True)
        self._thread.start()

    def request(self, index: int) -> None:
        with self._wake:
            self._wanted = index
            self._wake.notify()

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join(10)

    def _run(self) -> None:
        while True:
            with self._wake:
                while self._wanted is None and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                index, self._wanted = self._wanted, None
            try:
                image = self.frames.frame(index)
            except Exception as exc:  # noqa: BLE001 - shown in the status bar; the window stays usable
                logger.exception("cannot decode frame %d", index)
                self.failed.emit(f"frame {index}: {exc}")
                continue
            height, width = image.shape[:2]
            self.frameLoaded.emit(index, bgr_to_qimage(fit_within(image, VIEW_MAX_WH)), (width, height))


def _video_fps(video: Path) -> float:
    import cv2

    capture = cv2.VideoCapture(str(video))
    try:
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
    finally:
        capture.release()
    return fps if 1.0 <= fps <= 240.0 else 25.0


# ------------------------------------------------------------------------------ detector jobs
class _Jobs(QObject):
    """Runs the detector (and the tracker) over frame ranges in a thread, one job at a time.

    ``proposed(first, last, proposals)``: :func:`app.labelling.propose_tracks` output;
    ``detected(first, last, {frame: detections})``; ``progress(done, total)``; ``failed(str)``.
    """

    proposed = pyqtSignal(int, int, object)
    detected = pyqtSignal(int, int, object)
    progress = pyqtSignal(int, int)
    failed = pyqtSignal(str)

    def __init__(self, video: Path, detector_factory: Callable[[], Detect], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._video = video
        self._detector_factory = detector_factory
        self._detector: Detect | None = None
        self._thread: threading.Thread | None = None
        self._cancel = threading.Event()

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def propose(self, first: int, last: int, config: PrelabelConfig, first_track_id: int) -> None:
        self._start(self._propose, first, last, config, first_track_id)

    def detect(self, first: int, last: int) -> None:
        self._start(self._detect, first, last)

    def cancel_and_wait(self, timeout_s: float = 30.0) -> None:
        self._cancel.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _start(self, target: Callable[..., None], *args: Any) -> None:
        if self.busy:
            raise RuntimeError("a detector job is still running")
        self._cancel.clear()
        self._thread = threading.Thread(target=self._guarded, args=(target, *args), name="label-detector", daemon=True)
        self._thread.start()

    def _guarded(self, target: Callable[..., None], *args: Any) -> None:
        try:
            if self._detector is None:
                self._detector = self._detector_factory()
            target(*args)
        except Exception as exc:  # noqa: BLE001 - shown to the user; the labels are untouched
            logger.exception("detector job failed")
            self.failed.emit(f"{type(exc).__name__}: {exc}")

    def _frames(self, first: int, last: int):  # noqa: ANN202 - iterator of (index, image)
        total = last - first + 1
        for done, item in enumerate(iter_clip_frames(self._video, first, last), start=1):
            if self._cancel.is_set():
                return
            yield item
            self.progress.emit(done, total)

    def _propose(self, first: int, last: int, config: PrelabelConfig, first_track_id: int) -> None:
        assert self._detector is not None
        proposals = list(propose_tracks(self._frames(first, last), self._detector, config,
                                        first_track_id=first_track_id))
        if not self._cancel.is_set():
            self.proposed.emit(first, last, proposals)

    def _detect(self, first: int, last: int) -> None:
        assert self._detector is not None
        detections = {index: self._detector(image) for index, image in self._frames(first, last)}
        if not self._cancel.is_set():
            self.detected.emit(first, last, detections)


# ------------------------------------------------------------------------------ window
class LabelWindow(QMainWindow):
    """The labelling mode (module docstring).

    Args:
        detector_factory: ``() -> detector`` (``image_bgr -> sv.Detections`` with ``names``),
            called once in the worker thread at the first proposal; tests pass a stub.
        tracker: the tracker of the proposals (a :data:`tracker.registry.TRACKERS` name) and its
            parameters.
        base_weights: the model a finetune starts from (the app's current weights).

    Signals:
        modelChosen(str): a finetuned model's weights file, to use in the live view.
    """

    modelChosen = pyqtSignal(str)

    def __init__(self, detector_factory: Callable[[], Detect], tracker: tuple[str, dict[str, Any]] = ("bytetrack", {}),
                 base_weights: str = "yolov7-tiny-traffic", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("yolov7-track labelling")
        self._detector_factory = detector_factory
        self._tracker = tracker
        self.base_weights = base_weights
        self.finetune_dialog: Any | None = None
        self.video: Path | None = None
        self.store: LabelStore | None = None
        self.loader: FrameLoader | None = None
        self.jobs: _Jobs | None = None
        self.frame_index = 0
        self.frame_count = 0
        self.frames_shown = 0
        self.last_error: str | None = None
        self._detections: dict[int, sv.Detections] = {}  # the detector's output per frame, for carrying
        self._after_detect: Callable[[], None] | None = None
        self._unsubscribe: Callable[[], None] | None = None

        self.canvas = LabelCanvas()
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, 0)
        self.frame_label = QLabel("—")
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.addWidget(self.canvas, 1)
        row = QHBoxLayout()
        row.addWidget(self.slider, 1)
        row.addWidget(self.frame_label)
        layout.addLayout(row)
        self.setCentralWidget(central)
        self._build_panel()
        self._build_actions()
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(200)
        self.progress.hide()
        self.statusBar().addPermanentWidget(self.progress)

        self.slider.valueChanged.connect(self.go_to)
        self.canvas.boxDrawn.connect(self._on_box_drawn)
        self.canvas.boxEdited.connect(self._on_box_edited)
        self.canvas.selectionChanged.connect(self._on_selection)
        self._autosave = QTimer(self)
        self._autosave.setSingleShot(True)
        self._autosave.setInterval(AUTOSAVE_DELAY_MS)
        self._autosave.timeout.connect(self.save)
        self._play = QTimer(self)
        self._play.timeout.connect(lambda: self.step(1) if self.frame_index + 1 < self.frame_count else self.pause())
        self.resize(1280, 820)
        self._update_actions()

    # ------------------------------------------------------------------ building
    def _build_panel(self) -> None:
        panel = QWidget()
        form = QFormLayout(panel)
        self.class_combo = QComboBox()
        self.class_combo.setEditable(True)
        self.class_combo.setToolTip("class of new boxes and of the selected box (type a new name to add a class)")
        self.class_combo.activated.connect(lambda _i: self._on_class_chosen())
        self.class_combo.lineEdit().returnPressed.connect(self._on_class_chosen)
        self.track_spin = QSpinBox()
        self.track_spin.setRange(1, 10_000_000)
        self.track_spin.setToolTip("track id of the selected box; an id used elsewhere merges the tracks")
        self.id_scope = QComboBox()
        for text, scope in (("from this frame on", TrackScope.FORWARD), ("this frame", TrackScope.FRAME),
                            ("whole track (merge)", TrackScope.TRACK)):
            self.id_scope.addItem(text, scope)
        self.id_scope.setToolTip("which boxes of the selected track get the id: an id switch is fixed from "
                                 "its frame on; a track split in two is merged as a whole")
        set_id = QPushButton("Set id")
        set_id.clicked.connect(self._on_set_track_id)
        id_row = QHBoxLayout()
        id_row.addWidget(self.track_spin)
        id_row.addWidget(self.id_scope)
        id_row.addWidget(set_id)
        self.span_spin = QSpinBox()
        self.span_spin.setRange(1, 10_000)
        self.span_spin.setValue(DEFAULT_SPAN_FRAMES)
        self.span_spin.setToolTip("frames to propose or carry forward per click")
        self.selection_label = QLabel("no box selected")
        self.frame_state = QLabel("")
        form.addRow("class:", self.class_combo)
        form.addRow("track id:", id_row)
        form.addRow("frames:", self.span_spin)
        form.addRow(self.selection_label)
        form.addRow(self.frame_state)
        legend = QLabel("solid ✓ = verified (yours); dashed ? = proposal")
        legend.setWordWrap(True)
        form.addRow(legend)
        dock = QDockWidget("Labels", self)
        dock.setObjectName("dock_labels")
        dock.setWidget(panel)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)

    def _action(self, text: str, slot: Callable[[], object], shortcut: str | QKeySequence.StandardKey | None = None,
                tip: str = "") -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        if tip:
            action.setToolTip(tip)
            action.setStatusTip(tip)
        action.triggered.connect(lambda _checked=False: slot())
        self.addAction(action)
        return action

    def _build_actions(self) -> None:
        self.open_action = self._action("&Open clip…", self.ask_open, QKeySequence.StandardKey.Open)
        self.save_action = self._action("&Save", self.save, QKeySequence.StandardKey.Save, "labels are also autosaved")
        self.import_action = self._action("&Import labels…", self.ask_import, None,
                                          "CVAT MOT 1.1 / YOLO 1.1 export, Label Studio video JSON")
        self.export_action = self._action("&Export YOLO…", self.ask_export_yolo)
        self.undo_action = self._action("&Undo", self.undo, QKeySequence.StandardKey.Undo)
        self.redo_action = self._action("&Redo", self.redo, "Ctrl+Shift+Z")
        self.delete_action = self._action("&Delete box", self.delete_selected, QKeySequence.StandardKey.Delete)
        self.accept_action = self._action("&Accept box", self.accept_selected, "A", "accept the selected proposal as it is")
        self.verify_action = self._action("&Verify frame", self.toggle_frame_verified, "V",
                                          "every object on this frame is labelled")
        self.propose_action = self._action("&Propose tracks", self.propose, "P",
                                           "run the detector and tracker over the next frames")
        self.carry_action = self._action("&Carry forward", self.carry_forward, "C",
                                         "follow the selected box over the next frames with the tracker")
        self.interpolate_action = self._action("&Interpolate", self.interpolate, "I",
                                               "fill the selected track between its verified keyframes")
        self.finetune_action = self._action("&Finetune…", self.open_finetune, None,
                                            "train the model on the labelled frames (a separate process)")
        self.next_action = self._action("Next frame", lambda: self.step(1), "Right")
        self.prev_action = self._action("Previous frame", lambda: self.step(-1), "Left")
        self.next10_action = self._action("+10 frames", lambda: self.step(10), "Shift+Right")
        self.prev10_action = self._action("-10 frames", lambda: self.step(-10), "Shift+Left")
        self.play_action = self._action("Play/pause", self.toggle_play, "Space")
        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        for action in (self.open_action, self.save_action, self.import_action, self.export_action):
            file_menu.addAction(action)
        edit_menu = menu.addMenu("&Edit")
        for action in (self.undo_action, self.redo_action, self.delete_action, self.accept_action, self.verify_action):
            edit_menu.addAction(action)
        label_menu = menu.addMenu("&Propose")
        for action in (self.propose_action, self.carry_action, self.interpolate_action):
            label_menu.addAction(action)
        label_menu.addSeparator()
        label_menu.addAction(self.finetune_action)
        toolbar = QToolBar("Labelling", self)
        toolbar.setObjectName("toolbar_labelling")
        for action in (self.open_action, self.save_action, self.undo_action, self.redo_action, self.propose_action,
                       self.carry_action, self.interpolate_action, self.accept_action, self.verify_action,
                       self.play_action, self.finetune_action):
            toolbar.addAction(action)
        self.addToolBar(toolbar)

    # ------------------------------------------------------------------ clip
    def ask_open(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Label a clip", "", "Videos (*.mp4 *.avi *.mkv *.mov)")
        if path:
            self.open_clip(path)

    def open_clip(self, video: str | Path, labels: str | Path | None = None) -> bool:
        """Open ``video`` and its labels (``labels`` or :func:`labels_path_for`, created empty
        with :data:`DEFAULT_CLASSES` when absent). False, with a message, on failure."""
        video = Path(video)
        gt = Path(labels) if labels is not None else labels_path_for(video)
        if not video.is_file():
            self.show_error("Cannot open the clip", f"{video}: file not found")
            return False
        try:
            store = load_store(gt) if gt.is_file() else LabelStore(DEFAULT_CLASSES, path=gt)
            loader = FrameLoader(video, self)
        except (LabellingError, Yolov7TrackError, OSError) as exc:
            self.show_error("Cannot open the clip", str(exc))
            return False
        self._close_clip()
        self.video, self.store, self.loader = video, store, loader
        self.jobs = _Jobs(video, self._detector_factory, self)
        self.jobs.proposed.connect(self._on_proposed)
        self.jobs.detected.connect(self._on_detected)
        self.jobs.progress.connect(self._on_progress)
        self.jobs.failed.connect(self._on_job_failed)
        self._unsubscribe = store.subscribe(self._on_store_changed)
        loader.frameLoaded.connect(self._on_frame_loaded)
        loader.failed.connect(lambda message: self.statusBar().showMessage(message, 6000))
        self.frame_count = loader.count
        self._play.setInterval(round(1000 / loader.fps))
        self._detections.clear()
        self._refresh_classes()
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(0, self.frame_count - 1))
        self.slider.setValue(0)
        self.slider.blockSignals(False)
        self.frame_index = -1
        self.go_to(0)
        self._update_actions()
        self.statusBar().showMessage(f"{video.name}: {self.frame_count} frames; labels in {gt}", 8000)
        return True

    def _close_clip(self) -> None:
        if self.store is not None and self.store.is_dirty:
            self.save()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self.jobs is not None:
            self.jobs.cancel_and_wait()
        if self.loader is not None:
            self.loader.close()
        self.store = self.loader = self.jobs = None

    # ------------------------------------------------------------------ frames
    def go_to(self, index: int) -> None:
        if self.loader is None:
            return
        index = min(max(int(index), 0), max(0, self.frame_count - 1))
        if index == self.frame_index:
            return
        self.frame_index = index
        if self.slider.value() != index:
            self.slider.blockSignals(True)
            self.slider.setValue(index)
            self.slider.blockSignals(False)
        self._show_boxes()
        self.loader.request(index)

    def step(self, frames: int) -> None:
        self.go_to(self.frame_index + frames)

    def toggle_play(self) -> None:
        if self._play.isActive():
            self.pause()
        elif self.loader is not None:
            self._play.start()

    def pause(self) -> None:
        self._play.stop()

    def _on_frame_loaded(self, index: int, image: QImage, frame_wh: tuple[int, int]) -> None:
        if index != self.frame_index:
            return  # the user has moved on
        self.canvas.set_frame(image, frame_wh)
        self.frames_shown += 1

    def _show_boxes(self) -> None:
        store = self.store
        if store is None:
            return
        self.canvas.set_boxes(store.boxes(self.frame_index))
        verified = store.is_frame_verified(self.frame_index)
        proposals = sum(1 for b in store.boxes(self.frame_index) if not b.verified)
        self.frame_label.setText(f"frame {self.frame_index} / {max(0, self.frame_count - 1)}"
                                 + ("  ✓ verified" if verified else ""))
        self.frame_state.setText(f"{len(store.boxes(self.frame_index))} boxes, {proposals} proposals"
                                 + (", frame verified" if verified else ""))
        self._on_selection(self.canvas.selected)

    # ------------------------------------------------------------------ edits
    def _edit(self, what: str, edit: Callable[[], object]) -> bool:
        """Run one store edit; a refused edit is shown, never raised into Qt."""
        try:
            edit()
        except LabellingError as exc:
            self.statusBar().showMessage(f"{what}: {exc}", 8000)
            self.last_error = str(exc)
            return False
        return True

    def current_class(self) -> str:
        return self.class_combo.currentText().strip() or DEFAULT_CLASSES[0]

    def _on_box_drawn(self, xyxy: tuple[float, float, float, float]) -> None:
        store = self.store
        if store is None:
            return
        box: list[Any] = []
        if self._edit("add box", lambda: box.append(store.add_box(self.frame_index, xyxy, self.current_class()))):
            self.canvas.select(box[0].track_id)

    def _on_box_edited(self, track_id: int, xyxy: tuple[float, float, float, float]) -> None:
        if self.store is not None:
            self._edit("move box", lambda: self.store.move_box(self.frame_index, track_id, xyxy))

    def _on_selection(self, track_id: int) -> None:
        box = self.canvas.selected_box()
        if box is None:
            self.selection_label.setText("no box selected")
            return
        self.selection_label.setText(f"track {box.track_id}, {box.class_name}, "
                                     f"{'verified' if box.verified else 'proposal (' + box.origin.value + ')'}")
        self.track_spin.blockSignals(True)
        self.track_spin.setValue(box.track_id)
        self.track_spin.blockSignals(False)
        self.class_combo.setCurrentText(box.class_name)

    def _on_class_chosen(self) -> None:
        name, box, store = self.current_class(), self.canvas.selected_box(), self.store
        if store is None:
            return
        if box is None:
            self._edit("add class", lambda: store.add_class(name))
        elif box.class_name != name:
            self._edit("set class", lambda: store.set_class(self.frame_index, box.track_id, name))
        self._refresh_classes()

    def _on_set_track_id(self) -> None:
        box, store, new_id = self.canvas.selected_box(), self.store, self.track_spin.value()
        if box is None or store is None or new_id == box.track_id:
            return
        scope = self.id_scope.currentData()
        done = self._edit("set track id", lambda: store.set_track_id(self.frame_index, box.track_id, new_id, scope=scope))
        if done:
            self.canvas.select(new_id)

    def delete_selected(self) -> None:
        box, store = self.canvas.selected_box(), self.store
        if box is not None and store is not None:
            self._edit("delete box", lambda: store.delete_box(self.frame_index, box.track_id))

    def accept_selected(self) -> None:
        box, store = self.canvas.selected_box(), self.store
        if box is not None and store is not None:
            self._edit("accept box", lambda: store.set_verified(self.frame_index, box.track_id))

    def toggle_frame_verified(self) -> None:
        store = self.store
        if store is not None:
            verified = not store.is_frame_verified(self.frame_index)
            self._edit("verify frame", lambda: store.set_frame_verified(self.frame_index, verified))

    def undo(self) -> None:
        if self.store is not None and self.store.can_undo:
            self.statusBar().showMessage(f"undone: {self.store.undo()}", 3000)

    def redo(self) -> None:
        if self.store is not None and self.store.can_redo:
            self.statusBar().showMessage(f"redone: {self.store.redo()}", 3000)

    def _on_store_changed(self, frames: frozenset[int]) -> None:
        if not frames or self.frame_index in frames:
            self._show_boxes()
        self._refresh_classes()
        self._autosave.start()
        self._update_actions()

    def _refresh_classes(self) -> None:
        if self.store is None:
            return
        current = self.class_combo.currentText()
        names = list(self.store.classes)
        if [self.class_combo.itemText(i) for i in range(self.class_combo.count())] != names:
            self.class_combo.blockSignals(True)
            self.class_combo.clear()
            self.class_combo.addItems(names)
            self.class_combo.setCurrentText(current if current in names else (names[0] if names else ""))
            self.class_combo.blockSignals(False)

    def _update_actions(self) -> None:
        has_store = self.store is not None
        for action in (self.save_action, self.import_action, self.export_action, self.delete_action,
                       self.accept_action, self.verify_action, self.propose_action, self.carry_action,
                       self.interpolate_action, self.finetune_action):
            action.setEnabled(has_store)
        self.undo_action.setEnabled(has_store and self.store.can_undo)
        self.redo_action.setEnabled(has_store and self.store.can_redo)
        name = self.video.name if self.video is not None else "no clip"
        dirty = " *" if has_store and self.store.is_dirty else ""
        self.setWindowTitle(f"yolov7-track labelling — {name}{dirty}")

    # ------------------------------------------------------------------ proposals
    def _span(self) -> tuple[int, int]:
        last = min(self.frame_index + self.span_spin.value(), max(0, self.frame_count - 1))
        return self.frame_index, last

    def _job_running(self) -> bool:
        if self.jobs is not None and self.jobs.busy:
            self.statusBar().showMessage("the detector is still busy with the previous request", 4000)
            return True
        return False

    def propose(self) -> None:
        """Propose tracks from the current frame over the next ``frames`` (worker thread)."""
        if self.store is None or self.jobs is None or self._job_running():
            return
        first, last = self._span()
        name, params = self._tracker
        config = PrelabelConfig(tracker=name, tracker_params=params, frame_rate=self.loader.fps if self.loader else 25.0)
        self._start_progress(f"proposing tracks on frames {first}–{last}…")
        self.jobs.propose(first, last, config, self.store.next_track_id())

    def _on_proposed(self, first: int, last: int, proposals: list) -> None:
        self._stop_progress()
        store = self.store
        if store is None:
            return
        for frame in proposals:
            self._detections[frame.frame_index] = frame.detections
        result: list[Any] = []
        if self._edit("propose tracks", lambda: result.append(apply_prelabels(store, proposals))):
            done = result[0]
            self.statusBar().showMessage(f"frames {first}–{last}: {done.added} proposals added, {done.replaced} "
                                         f"replaced, {done.skipped_verified} kept as you verified them", 8000)

    def carry_forward(self) -> None:
        """Follow the selected box over the next ``frames`` with the tracker (detections from
        the cache, or from the detector in the worker first)."""
        box, store = self.canvas.selected_box(), self.store
        if box is None or store is None or self.jobs is None:
            self.statusBar().showMessage("select the box to carry forward", 4000)
            return
        first, last = self._span()
        missing = [i for i in range(first, last + 1) if i not in self._detections]
        frame, track_id = self.frame_index, box.track_id

        def carry() -> None:
            config = CarryConfig(num_frames=max(1, last - frame))
            result: list[Any] = []
            if self._edit("carry forward", lambda: result.append(
                    carry_forward(store, frame, track_id, self._detections.get, config, last_frame=last))):
                self.statusBar().showMessage(f"track {track_id} carried over frames {frame + 1}–{last}: "
                                             f"{result[0].added + result[0].replaced} proposals", 8000)

        if not missing:
            carry()
            return
        if self._job_running():
            return
        self._after_detect = carry
        self._start_progress(f"detecting on frames {min(missing)}–{max(missing)}…")
        self.jobs.detect(min(missing), max(missing))

    def _on_detected(self, first: int, last: int, detections: dict) -> None:
        self._stop_progress()
        self._detections.update(detections)
        after, self._after_detect = self._after_detect, None
        if after is not None:
            after()

    def interpolate(self) -> None:
        box, store = self.canvas.selected_box(), self.store
        if box is None or store is None:
            self.statusBar().showMessage("select a box of the track to interpolate", 4000)
            return
        result: list[Any] = []
        if self._edit("interpolate", lambda: result.append(interpolate_track(store, box.track_id))):
            self.statusBar().showMessage(f"track {box.track_id}: {result[0].added + result[0].replaced} "
                                         "interpolated boxes", 6000)

    def _start_progress(self, message: str) -> None:
        self.statusBar().showMessage(message)
        self.progress.setRange(0, 0)
        self.progress.show()

    def _stop_progress(self) -> None:
        self.progress.hide()
        self.statusBar().clearMessage()

    def _on_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, total)
        self.progress.setValue(done)

    def _on_job_failed(self, message: str) -> None:
        self._stop_progress()
        self._after_detect = None
        self.show_error("The detector failed", message)

    # ------------------------------------------------------------------ files
    def save(self) -> bool:
        """Write the labels now (atomic); also called by the autosave."""
        store = self.store
        if store is None:
            return False
        try:
            path = store.save()
        except (LabellingError, OSError) as exc:
            self.show_error("Cannot save the labels", str(exc))
            return False
        self._update_actions()
        self.statusBar().showMessage(f"saved {path}", 3000)
        return True

    def ask_import(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import labels", "",
                                              "CVAT export or Label Studio JSON (*.zip *.txt *.json)")
        if path:
            self.import_labels(path)

    def import_labels(self, path: str | Path, kind: str | None = None) -> bool:
        """Replace the labels by an import (one undo step). ``kind``: ``cvat-mot``,
        ``cvat-yolo`` or ``label-studio`` (default: by the file: ``.json`` Label Studio, a
        ``gt.txt`` or a MOT export CVAT MOT, else CVAT YOLO)."""
        store, path = self.store, Path(path)
        if store is None:
            return False
        kind = kind or _import_kind(path)
        frame_wh = self.canvas.frame_size_wh or (self.loader.frames.shape_hw[::-1] if self.loader else (1, 1))
        try:
            if kind == "label-studio":
                imported = read_label_studio_video(path, frame_wh)
            elif kind == "cvat-mot":
                imported = read_cvat_mot(path, class_names=list(store.classes))
            else:
                imported = read_cvat_yolo(path, frame_wh)
            store.replace_all(imported.boxes, imported.class_names, imported.verified_frames,
                              description=f"import {path.name}")
        except (LabellingError, OSError) as exc:
            self.show_error("Cannot import the labels", str(exc))
            return False
        self.statusBar().showMessage(f"imported {len(imported.boxes)} boxes from {path.name} (Ctrl+Z undoes it)", 8000)
        return True

    def ask_export_yolo(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export YOLO files into")
        if folder:
            self.export_yolo(folder)

    def export_yolo(self, folder: str | Path) -> Path | None:
        if self.store is None or self.loader is None:
            return None
        height, width = self.loader.frames.shape_hw
        try:
            out = export_yolo(self.store, folder, (width, height))
        except (LabellingError, OSError) as exc:
            self.show_error("Cannot export", str(exc))
            return None
        self.statusBar().showMessage(f"exported YOLO files to {out}", 6000)
        return out

    # ------------------------------------------------------------------ finetune
    def labelled_frames(self) -> tuple[int, int] | None:
        """The first and last frame with a box or a verified mark, ``None`` when nothing is labelled."""
        if self.store is None:
            return None
        frames = set(self.store.frame_indices()) | set(self.store.verified_frames)
        return (min(frames), max(frames)) if frames else None

    def open_finetune(self) -> Any | None:
        """Save the labels and open the finetune dialog (:mod:`app.gui.finetune`, non-modal)."""
        from app.gui.finetune import FinetuneDialog

        span = self.labelled_frames()
        if span is None or self.store is None or self.video is None or span[1] - span[0] < 1:
            self.show_error("Nothing to train on", "label at least two frames first")
            return None
        if not self.save():
            return None
        assert self.store.path is not None
        dialog = FinetuneDialog(self.video, self.store.path, tuple(self.store.classes), self.base_weights, span, self)
        dialog.modelChosen.connect(self.modelChosen)
        self.finetune_dialog = dialog
        dialog.show()
        return dialog

    # ------------------------------------------------------------------ closing
    def show_error(self, title: str, text: str) -> QMessageBox:
        """A window-modal message box that does not block the event loop (:func:`open_error`)."""
        self.last_error = text
        return open_error(self, title, text)

    def shutdown_after_event_loop(self, timeout_s: float = 15.0) -> bool:
        """Save and stop the threads once the event loop has ended (the process is exiting)."""
        self._close_clip()
        return True

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt override
        self._play.stop()
        self._autosave.stop()
        self._close_clip()  # saves unsaved labels, stops the threads
        event.accept()


def _import_kind(path: Path) -> str:
    if path.suffix.lower() == ".json":
        return "label-studio"
    if path.name == "gt.txt" or (path.is_dir() and (path / "gt" / "gt.txt").is_file()):
        return "cvat-mot"
    if path.suffix.lower() == ".zip":
        import zipfile

        with zipfile.ZipFile(path) as archive:
            return "cvat-mot" if any(n.endswith("gt/gt.txt") for n in archive.namelist()) else "cvat-yolo"
    return "cvat-yolo"
