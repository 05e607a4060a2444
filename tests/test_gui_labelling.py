"""The labelling mode of the GUI (issue 14): draw, propagate, correct, save; proposals; imports.

Real frames of the PETS clip; the detector is the MOT15 ground truth replayed by frame content
(tests/gui_support.py), so proposals and propagation are real tracker work on known boxes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from gui_support import HashReplay, drag, pets_ground_truth, pets_video
from PyQt6.QtCore import QPoint, Qt

from app.gui.label_window import DEFAULT_CLASSES, LabelWindow, labels_path_for
from app.labelling import load_store


@pytest.fixture(scope="module")
def replay() -> HashReplay:
    return HashReplay()


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    """The PETS clip, linked into the test's folder (its labels are written beside it)."""
    link = tmp_path / "pets.avi"
    link.symlink_to(pets_video())
    return link


@pytest.fixture
def window(qtbot, replay: HashReplay, clip: Path):  # noqa: ANN001, ANN201
    win = LabelWindow(lambda: replay)
    qtbot.addWidget(win)
    win.show()
    assert win.open_clip(clip)
    qtbot.waitUntil(lambda: win.frames_shown > 0, timeout=20_000)
    yield win
    win.close()


def _iou(a, b) -> float:  # noqa: ANN001
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _gt_rows(path: Path) -> list[list[float]]:
    return [[float(v) for v in line.split(",")] for line in path.read_text().splitlines() if line.strip()]


def _widget(window: LabelWindow, xy) -> QPoint:  # noqa: ANN001
    return window.canvas.to_widget(xy).toPoint()


def _person_track(start: int, frames: int) -> list[np.ndarray]:
    """One ground-truth person visible on frames start..start+frames, by IoU from frame to frame."""
    truth = pets_ground_truth()
    box = max(truth[start].xyxy, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
    track = [box]
    for index in range(start + 1, start + frames + 1):
        candidates = truth[index].xyxy
        best = max(candidates, key=lambda b: _iou(track[-1], b))
        assert _iou(track[-1], best) > 0.5
        track.append(best)
    return track


def test_draw_propagate_20_frames_correct_one_and_save(qtbot, window: LabelWindow, clip: Path):  # noqa: ANN001
    truth = _person_track(0, 20)
    x1, y1, x2, y2 = (float(v) for v in truth[0])
    window.class_combo.setCurrentText("person")
    drag(qtbot, window.canvas, _widget(window, (x1, y1)), _widget(window, (x2, y2)))
    (drawn,) = window.store.boxes(0)
    assert drawn.verified and drawn.class_name == "person" and _iou(drawn.xyxy, truth[0]) > 0.9
    assert window.canvas.selected == drawn.track_id

    window.span_spin.setValue(20)
    window.carry_forward()                        # detections come from the worker first
    qtbot.waitUntil(lambda: len(window.store.track(drawn.track_id)) == 21, timeout=30_000)
    carried = window.store.track(drawn.track_id)
    for index in range(1, 21):
        assert not carried[index].verified         # proposals until the user says otherwise
        assert _iou(carried[index].xyxy, truth[index]) > 0.8, index

    window.go_to(10)                              # correct frame 10: move its box 6 px right
    qtbot.waitUntil(lambda: window.canvas.frame_size_wh is not None and window.frame_index == 10)
    window.canvas.select(drawn.track_id)
    before = carried[10].xyxy
    centre = ((before[0] + before[2]) / 2, (before[1] + before[3]) / 2)
    drag(qtbot, window.canvas, _widget(window, centre), _widget(window, (centre[0] + 6 / 1, centre[1])))
    corrected = window.store.box(10, drawn.track_id)
    assert corrected.verified and corrected.xyxy[0] > before[0] + 3

    assert window.save()
    rows = _gt_rows(labels_path_for(clip))
    assert [int(r[0]) for r in rows] == list(range(1, 22))       # MOT frames 1..21, one row each
    assert {int(r[1]) for r in rows} == {drawn.track_id}
    by_frame = {int(r[0]) - 1: r for r in rows}
    for index, expected in ((0, drawn.xyxy), (10, corrected.xyxy)):
        left, top, width, height = by_frame[index][2:6]
        assert (left, top, left + width, top + height) == pytest.approx(expected, abs=0.01)
    assert all(int(r[7]) == DEFAULT_CLASSES.index("person") + 1 for r in rows)  # 1-based class column
    reloaded = load_store(labels_path_for(clip))  # proposals and verified boxes survive the round trip
    assert {i for i, b in reloaded.track(drawn.track_id).items() if b.verified} == {0, 10}


def test_proposals_never_overwrite_what_the_user_verified(qtbot, window: LabelWindow):  # noqa: ANN001
    truth = pets_ground_truth()
    window.span_spin.setValue(5)
    window.propose()
    qtbot.waitUntil(lambda: len(window.store.boxes(5)) > 0, timeout=30_000)
    for index in range(6):
        boxes = window.store.boxes(index)
        assert len(boxes) == len(truth[index].xyxy) and not any(b.verified for b in boxes)
    first = window.store.boxes(0)[0]
    window.canvas.select(first.track_id)
    window.accept_selected()                       # A: accepted as it is
    window.store.move_box(1, first.track_id, (10, 10, 40, 80))  # and a correction elsewhere
    window.propose()                               # again, over the same frames
    qtbot.waitUntil(lambda: not window.jobs.busy and window.store.can_undo
                    and window.store.undo_description == "pre-label", timeout=30_000)
    assert window.store.box(0, first.track_id).verified
    assert window.store.box(1, first.track_id).xyxy == (10.0, 10.0, 40.0, 80.0)
    window.undo()
    assert window.store.undo_description == "move box"


def test_an_id_switch_is_fixed_from_its_frame_on_and_a_split_track_is_merged(qtbot, window: LabelWindow):  # noqa: ANN001
    store = window.store
    for frame in range(6):  # one person: track 1 on frames 0-2, the tracker gave it 2 from frame 3
        store.add_box(frame, (10 + frame, 10, 40 + frame, 80), "person", track_id=1 if frame < 3 else 2)
    store.add_box(4, (200, 10, 230, 80), "person", track_id=3)
    window.go_to(4)
    window.canvas.select(2)
    window.track_spin.setValue(3)                      # id 3 is taken on frame 4: refused, nothing changes
    window._on_set_track_id()
    assert "track 3 already has a box on frame 4" in window.last_error and store.track_ids() == [1, 2, 3]
    window.track_spin.setValue(1)                      # "from this frame on" (the default): frames 4-5
    window._on_set_track_id()
    assert sorted(store.track(1)) == [0, 1, 2, 4, 5] and sorted(store.track(2)) == [3]
    window.go_to(3)
    window.canvas.select(2)
    window.track_spin.setValue(1)
    window.id_scope.setCurrentIndex(2)                 # whole track: merged into 1
    window._on_set_track_id()
    assert sorted(store.track(1)) == [0, 1, 2, 3, 4, 5] and store.track_ids() == [1, 3]
    assert window.canvas.selected == 1


def test_keys_move_through_frames_and_verify_them(qtbot, window: LabelWindow):  # noqa: ANN001
    qtbot.keyClick(window, Qt.Key.Key_Right)
    qtbot.keyClick(window, Qt.Key.Key_Right, Qt.KeyboardModifier.ShiftModifier)
    assert window.frame_index == 11
    qtbot.keyClick(window, Qt.Key.Key_Left)
    assert window.frame_index == 10 and window.slider.value() == 10
    qtbot.keyClick(window, Qt.Key.Key_V)
    assert window.store.is_frame_verified(10)
    qtbot.keyClick(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert not window.store.is_frame_verified(10)


def test_import_a_cvat_mot_export_and_a_label_studio_json(qtbot, window: LabelWindow, tmp_path: Path):  # noqa: ANN001
    export = tmp_path / "cvat" / "gt"
    export.mkdir(parents=True)
    (export / "gt.txt").write_text("1,1,10,20,30,40,1,1,1.0\n2,1,12,20,30,40,1,1,1.0\n3,2,100,50,20,60,1,2,0.5\n")
    (export / "labels.txt").write_text("person\ncar\n")
    assert window.import_labels(tmp_path / "cvat")
    assert [(b.frame_index, b.track_id, b.class_name) for b in window.store.all_boxes()] == \
        [(0, 1, "person"), (1, 1, "person"), (2, 2, "car")]
    assert window.store.box(1, 1).xyxy == (12.0, 20.0, 42.0, 60.0)

    studio = tmp_path / "project.json"
    studio.write_text(json.dumps([{"id": 7, "annotations": [{"result": [{
        "type": "videorectangle", "id": "a1", "from_name": "box", "to_name": "video",
        "value": {"labels": ["car"], "framesCount": 795, "sequence": [
            {"frame": 1, "enabled": True, "x": 10.0, "y": 20.0, "width": 25.0, "height": 50.0, "rotation": 0},
            {"frame": 3, "enabled": False, "x": 20.0, "y": 20.0, "width": 25.0, "height": 50.0, "rotation": 0},
        ]}}]}]}]))
    assert window.import_labels(studio)
    boxes = window.store.all_boxes()
    assert {b.class_name for b in boxes} == {"car"} and min(b.frame_index for b in boxes) == 0
    assert boxes[0].xyxy == pytest.approx((48.0, 72.0, 168.0, 252.0))  # percent of 480x360
    window.undo()                                                         # the import is one undo step
    assert {b.class_name for b in window.store.all_boxes()} == {"person", "car"}

    (tmp_path / "broken.json").write_text("[{\"annotations\": 3}]")
    assert not window.import_labels(tmp_path / "broken.json")
    assert "broken.json" in window.last_error


def test_default_classes_are_the_default_models():
    from detector.bundled import DEFAULT_MODEL, bundled_model_path
    from detector.weights_format import read_weights_metadata

    assert tuple(read_weights_metadata(bundled_model_path(DEFAULT_MODEL))["names"]) == DEFAULT_CLASSES


# ------------------------------------------------------------------------------ finetune
def _label_first_frames(clip: Path, frames: int) -> Path:
    """The MOT15 ground truth of the first ``frames`` frames as the clip's saved labels."""
    from app.labelling import LabelBox, LabelStore
    from shared_data import shared_path

    rows = np.loadtxt(shared_path("data", "mot", "MOT15", "train", "PETS09-S2L1", "gt", "gt.txt"), delimiter=",")
    rows = rows[(rows[:, 6] == 1) & (rows[:, 0] <= frames)]  # MOT15: x, y, z world columns, no class
    store = LabelStore(DEFAULT_CLASSES, path=labels_path_for(clip))
    store.replace_all([LabelBox(int(r[0]) - 1, int(r[1]), "person",
                                tuple(0.625 * np.array([r[2], r[3], r[2] + r[4], r[3] + r[5]])), verified=True)
                       for r in rows])
    for index in range(frames):
        store.set_frame_verified(index)
    return store.save()


class LoopDelays:
    """The GUI event loop's lateness: a 20 ms timer's overshoot, ms."""

    def __init__(self) -> None:
        import time

        from PyQt6.QtCore import QTimer

        self._clock = time.perf_counter
        self.delays: list[float] = []
        self._last = self._clock()
        self.timer = QTimer()
        self.timer.setInterval(20)
        self.timer.timeout.connect(self._tick)
        self.timer.start()

    def _tick(self) -> None:
        now = self._clock()
        self.delays.append(max(0.0, (now - self._last) * 1e3 - 20.0))
        self._last = now

    def p95_ms(self) -> float:
        return float(np.percentile(self.delays, 95))


def test_finetune_one_epoch_progress_model_in_the_live_view_cancel_and_a_responsive_app(
        qtbot, replay: HashReplay, clip: Path, tmp_path: Path):  # noqa: ANN001
    from app.gui.main_window import MainWindow

    _label_first_frames(clip, 30)
    main = MainWindow(settings_path=tmp_path / "settings.json")
    qtbot.addWidget(main)
    labelling = main.open_label_window(clip)
    qtbot.waitUntil(lambda: labelling.frames_shown > 0, timeout=20_000)
    dialog = labelling.open_finetune()
    assert dialog is not None and labelling.labelled_frames() == (0, 29)
    dialog.epochs.setValue(1)
    dialog.img_size.setValue(128)
    dialog.precision.setCurrentText("fp32")
    assert (dialog.train_first.value(), dialog.train_last.value(), dialog.val_first.value(), dialog.val_last.value()) \
        == (0, 23, 24, 29)

    loop = LoopDelays()
    epochs: list[int] = []
    assert dialog.start()
    dialog.run.epochDone.connect(lambda rows: epochs.append(len(rows)))
    assert dialog.command.text().startswith("yolov7-track train --data ") and "--epochs 1" in dialog.command.text()
    qtbot.waitUntil(lambda: dialog.comparison.text().startswith("held-out mAP@0.5: base"), timeout=300_000)
    loop.timer.stop()
    assert epochs == [1] and dialog.progress.value() == 1       # progress arrived
    assert dialog.run.exit_code == 0 and dialog.run.best_weights.is_file()
    assert loop.p95_ms() < 50, f"event loop p95 delay {loop.p95_ms():.1f} ms"

    dialog.use_model()                                             # into the live view
    assert main.settings.weights == str(dialog.run.best_weights)
    main.open_source(str(clip))
    qtbot.waitUntil(lambda: main.frames_shown > 3, timeout=60_000)
    assert main.worker.status().stats.frames_out > 3
    main.stop()
    qtbot.waitUntil(lambda: not main.is_busy(), timeout=30_000)

    dialog.epochs.setValue(50)                                     # a long run, cancelled
    assert dialog.start()
    qtbot.waitUntil(lambda: len(dialog.run.rows) >= 1, timeout=300_000)
    dialog.cancel()
    qtbot.waitUntil(lambda: not dialog.run.running, timeout=60_000)
    assert dialog.run.cancelled and dialog.run.exit_code == 130
    assert dialog.resume_button.isEnabled() and (dialog.run.request.train_dir / "last.ckpt").is_file()
    labelling.close()
