"""The pipeline worker: one pending frame at most, no lost events, finished always, errors as
messages, cooperative stop and pause."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PyQt6.QtCore import QObject, QTimer
from gui_support import ReplayDetector, pets_detector_factory, pets_ground_truth, pets_video

from app.counting import CountingConfig, LineSpec
from app.gui.settings import GuiSettings, TrackerSettings
from app.gui.worker import PipelineWorker, RunRequest, bgr_to_qimage, recording_path, start_in_thread
from app.pipeline import PipelineConfig

LINES = CountingConfig(lines=(LineSpec("h", (0.0, 180.0), (480.0, 180.0)),))


class Collector:
    """Records the worker's signals in the GUI thread."""

    def __init__(self, worker: PipelineWorker) -> None:
        self.worker = worker
        self.signals: list[str] = []
        self.failures: list[str] = []
        self.report = "not finished"
        worker.failed.connect(self._failed)
        worker.finished.connect(self._finished)
        worker.runStarted.connect(lambda name: self.signals.append("runStarted"))

    def _failed(self, message: str) -> None:
        self.signals.append("failed")
        self.failures.append(message)

    def _finished(self, report) -> None:  # noqa: ANN001
        self.signals.append("finished")
        self.report = report


@pytest.fixture
def run_worker(qtbot):  # noqa: ANN001, ANN201
    """Start a worker in its thread; wait for its thread to end at teardown."""
    parent = QObject()
    threads = []

    def start(worker: PipelineWorker) -> Collector:
        collector = Collector(worker)
        thread = start_in_thread(worker, parent)
        state = {"done": False}
        thread.finished.connect(lambda: state.update(done=True))
        threads.append(state)
        collector.thread_state = state
        return collector

    yield start
    qtbot.waitUntil(lambda: all(state["done"] for state in threads), timeout=20_000)


def request(source: Path | str, **settings) -> RunRequest:
    return RunRequest(str(source), GuiSettings(**settings), LINES)


def test_slow_gui_gets_at_most_one_pending_frame_and_every_event(qtbot, run_worker) -> None:  # noqa: ANN001
    worker = PipelineWorker(request(pets_video()), pets_detector_factory(),
                            pipeline_config=PipelineConfig(max_frames=300))
    notifications_since_take = [0]
    most_pending = [0]
    taken = []

    def on_ready() -> None:
        notifications_since_take[0] += 1
        most_pending[0] = max(most_pending[0], notifications_since_take[0])

    def take() -> None:  # a GUI that looks only every 60 ms
        update = worker.take_update()
        notifications_since_take[0] = 0
        if update is not None:
            taken.append(update)

    worker.frameReady.connect(on_ready)
    timer = QTimer()
    timer.timeout.connect(take)
    timer.start(60)
    collector = run_worker(worker)
    qtbot.waitUntil(lambda: collector.report != "not finished", timeout=30_000)
    timer.stop()
    take()

    report = collector.report
    assert collector.failures == [] and report.status == "finished"
    assert most_pending[0] == 1
    assert sum(u.frames for u in taken) == report.stats.frames_out == 300
    assert len(taken) < 300  # frames were skipped, not queued
    events = [e for u in taken for e in u.events]
    assert report.events_total >= 3 and len(events) == report.events_total
    assert [u.frame_index for u in taken] == sorted({u.frame_index for u in taken})
    assert taken[-1].frame_index == 299 and taken[-1].frame_size_wh == (480, 360)
    assert (taken[-1].lines[0].in_count + taken[-1].lines[0].out_count) == len(events)


def test_failure_while_building_is_a_message_then_finished(qtbot, run_worker, tmp_path: Path) -> None:  # noqa: ANN001
    worker = PipelineWorker(request(tmp_path / "missing.mp4"), pets_detector_factory())
    collector = run_worker(worker)
    qtbot.waitUntil(lambda: "finished" in collector.signals, timeout=10_000)
    assert collector.signals == ["failed", "finished"]
    assert "missing.mp4" in collector.failures[0] and "\n" not in collector.failures[0]
    assert collector.report is None


def test_detector_error_mid_run_fails_with_a_report(qtbot, run_worker) -> None:  # noqa: ANN001
    replay = ReplayDetector(pets_ground_truth())

    def broken(image: np.ndarray):  # noqa: ANN202
        if replay._calls == 20:
            raise RuntimeError("GPU fell off the bus")
        return replay(image)

    worker = PipelineWorker(request(pets_video()), lambda settings: broken)
    collector = run_worker(worker)
    qtbot.waitUntil(lambda: "finished" in collector.signals, timeout=10_000)
    assert collector.signals == ["runStarted", "failed", "finished"]
    assert collector.failures == ["RuntimeError: GPU fell off the bus"]
    assert collector.report.status == "failed" and collector.report.stats.frames_out == 20


def test_stop_while_loading_weights_ends_without_running(qtbot, run_worker) -> None:  # noqa: ANN001
    loading = threading.Event()

    def slow_factory(settings):  # noqa: ANN001, ANN202
        loading.set()
        time.sleep(0.3)
        return ReplayDetector({})

    worker = PipelineWorker(request(pets_video()), slow_factory)
    collector = run_worker(worker)
    assert loading.wait(5)
    assert worker.status().state == "starting"
    worker.stop()
    assert worker.status().state == "stopping"
    qtbot.waitUntil(lambda: "finished" in collector.signals, timeout=10_000)
    assert collector.signals == ["finished"] and collector.report is None


def test_pause_holds_a_file_and_stop_while_paused_finishes(qtbot, run_worker) -> None:  # noqa: ANN001
    worker = PipelineWorker(request(pets_video()), pets_detector_factory())
    shown = []
    worker.frameReady.connect(lambda: shown.append(worker.take_update()))
    collector = run_worker(worker)
    qtbot.waitUntil(lambda: len(shown) >= 3, timeout=10_000)
    worker.pause()
    qtbot.waitUntil(lambda: worker.status().state == "paused", timeout=5_000)
    qtbot.wait(150)  # a frame published before the pause may still arrive
    frames_out = worker.status().stats.frames_out
    qtbot.wait(400)
    assert worker.status().stats.frames_out == frames_out  # held by back-pressure
    worker.resume()
    qtbot.waitUntil(lambda: worker.status().stats.frames_out > frames_out + 5, timeout=10_000)
    worker.pause()
    worker.stop()
    qtbot.waitUntil(lambda: "finished" in collector.signals, timeout=10_000)
    assert collector.report.status == "stopped" and collector.failures == []


def test_large_frames_are_reduced_to_the_view_in_the_worker() -> None:
    from app.gui.worker import fit_within as _fit

    image = np.zeros((720, 1280, 3), np.uint8)
    assert _fit(image, (640, 640)).shape == (360, 640, 3)
    assert _fit(image, (2000, 2000)) is image
    assert _fit(image, None) is image


def test_bgr_to_qimage_keeps_colours() -> None:
    image = np.zeros((2, 3, 3), np.uint8)
    image[0, 0] = (255, 0, 0)  # blue in BGR
    qimage = bgr_to_qimage(image)
    del image
    colour = qimage.pixelColor(0, 0)
    assert (colour.red(), colour.green(), colour.blue()) == (0, 0, 255)
    with pytest.raises(ValueError, match="uint8 BGR"):
        bgr_to_qimage(np.zeros((2, 3), np.uint8))


def test_recording_path_is_named_after_the_source() -> None:
    from datetime import datetime

    settings = GuiSettings(output_dir="/rec")
    when = datetime(2024, 5, 6, 7, 8, 9)
    assert recording_path(settings, "/videos/road cam.mp4", when) == Path("/rec/road_cam_20240506-070809.mp4")
    assert recording_path(settings, "rtsp://cam:554/live/main", when).name == "main_20240506-070809.mp4"


def test_files_play_at_their_frame_rate_when_paced(qtbot, run_worker) -> None:  # noqa: ANN001
    frames = 8  # the PETS clip is 10 fps: 7 frame periods = 0.7 s
    durations = {}
    for pace in (False, True):
        worker = PipelineWorker(request(pets_video(), pace_files=pace), pets_detector_factory(),
                                pipeline_config=PipelineConfig(max_frames=frames))
        worker.frameReady.connect(worker.take_update)
        started = time.perf_counter()
        collector = run_worker(worker)
        qtbot.waitUntil(lambda c=collector: "finished" in c.signals, timeout=10_000)
        durations[pace] = time.perf_counter() - started
        assert collector.report.stats.frames_out == frames
    assert durations[True] >= 0.65 and durations[False] < durations[True]


def test_class_filter_resolution() -> None:
    """The GUI uses the CLI's rule (app.assembly.resolve_classes), with its own label."""
    from app.assembly import ClassFilterError
    from app.gui.worker import class_ids

    names = ["person", "bicycle", "car"]
    assert class_ids((), names) is None
    assert class_ids(("Person", "2", "car"), names) == (0, 2)
    with pytest.raises(ClassFilterError, match="class filter: unknown class 'truck'.*person, bicycle, car"):
        class_ids(("truck",), names)
    with pytest.raises(ClassFilterError, match="class filter: id 7 does not exist"):
        class_ids(("7",), names)


def test_detector_cache_reloads_only_when_detector_settings_change(monkeypatch: pytest.MonkeyPatch) -> None:
    import app.gui.worker as worker_module

    loads = []
    monkeypatch.setattr(worker_module, "load_detector", lambda settings: loads.append(settings) or object())
    cache = worker_module.DetectorCache()
    first = cache(GuiSettings())
    assert cache(GuiSettings(record_output=True, pace_files=True)) is first  # not a detector setting
    second = cache(GuiSettings(conf_thres=0.5))
    assert second is not first and len(loads) == 2


def test_load_detector_applies_the_settings() -> None:
    from shared_data import shared_path

    from app.gui.worker import load_detector

    weights = shared_path("fixtures", "yolov7", "yolov7-tiny.official-format.pt")
    detector = load_detector(GuiSettings(weights=str(weights), img_size=160, conf_thres=0.4, iou_thres=0.5,
                                         classes=("person", "2"), device="cpu"))
    assert (detector.config.img_size, detector.config.conf_thres, detector.config.iou_thres) == (160, 0.4, 0.5)
    assert detector.config.classes == (0, 2) and detector.names[:3] == ["person", "bicycle", "car"]
    detections = detector(np.zeros((120, 200, 3), np.uint8))
    assert set(detections.class_id.tolist()) <= {0, 2}


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (TrackerSettings(), ("ByteTrack", {"track_thresh": 0.5, "match_thresh": 0.8, "track_buffer": 30})),
        (TrackerSettings(kind="sort", params_by_kind={"sort": {"max_age": 4, "min_hits": 2, "iou_threshold": 0.2}}),
         ("SORT", {"max_age": 4, "min_hits": 2, "iou_threshold": 0.2})),
    ],
)
def test_make_tracker_from_settings(settings, expected) -> None:  # noqa: ANN001
    from app.assembly import build_tracker
    from app.gui.worker import tracker_choice

    tracker = build_tracker(tracker_choice(settings), source_fps=None)
    kind, params = expected
    assert type(tracker).__name__ == kind
    for name, value in params.items():
        assert getattr(tracker.config, name) == value
    assert tracker.config.frame_rate == 30.0
