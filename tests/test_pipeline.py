"""The capture -> infer -> output pipeline: results, back-pressure, drop-oldest, shutdown paths,
errors crossing threads, statistics, and equivalence with the stages run one after another."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import numpy as np
import pytest
import supervision as sv

from app.counting import CountEvent, CountingConfig, CountingLine, LineRules, LineSpec, ZoneSpec
from app.frames import Frame, SourceStats
from app.pipeline import (
    STAGES,
    Pipeline,
    PipelineConfig,
    PipelineConfigError,
    PipelineError,
)
from app.sinks import open_event_sink, read_events
from app.sources import open_source
from shared_data import shared_path
from tracker import ByteTrack

FRAME_HW = (96, 128)


# ------------------------------------------------------------------------------ fakes
class FakeSource:
    """A FrameSource over synthetic frames; live sources pace frames at ``fps``.

    Every image is distinct and remembered by ``id`` so that a stub detector can tell which
    frame it got (the pipeline hands the detector ``frame.image`` itself).
    """

    def __init__(
        self,
        n_frames: int,
        fps: float | None = 25.0,
        is_live: bool = False,
        timestamps_s: list[float] | None = None,
        fail_at: int | None = None,
    ) -> None:
        self.name = "fake-live" if is_live else "fake-file"
        self.is_live = is_live
        self.fps = fps
        self.stats = SourceStats()
        self.n_frames = n_frames
        self.timestamps_s = timestamps_s
        self.fail_at = fail_at
        self.index_of_image: dict[int, int] = {}
        self.closed = threading.Event()
        self.close_calls = 0

    def __iter__(self) -> Iterator[Frame]:
        period_s = 1.0 / self.fps if self.fps else 0.0
        start = time.perf_counter()
        for i in range(self.n_frames):
            if self.closed.is_set():
                return
            if self.fail_at == i:
                raise OSError(f"{self.name}: read failed at frame {i}")
            if self.is_live:  # real time: frame i is due at start + i / fps
                delay = start + i * period_s - time.perf_counter()
                if delay > 0 and self.closed.wait(delay):
                    return
            image = np.full((*FRAME_HW, 3), i % 251, dtype=np.uint8)
            self.index_of_image[id(image)] = i
            ts = self.timestamps_s[i] if self.timestamps_s is not None else i * (period_s or 0.04)
            self.stats.frames_read += 1
            yield Frame(index=i, timestamp_s=ts, image=image, source=self.name)

    def close(self) -> None:
        self.close_calls += 1
        self.closed.set()


def moving_box_detector(
    source: FakeSource, delay_s: float = 0.0, fail_at: int | None = None
) -> Callable[[np.ndarray], sv.Detections]:
    """One 'person' moving left to right by 4 px per frame: crosses a vertical line at x=64."""

    def detect(image: np.ndarray) -> sv.Detections:
        index = source.index_of_image[id(image)]
        if delay_s:
            time.sleep(delay_s)
        if index == fail_at:
            raise RuntimeError(f"detector failed on frame {index}")
        x = 4.0 * index
        return sv.Detections(
            xyxy=np.array([[x, 30.0, x + 12.0, 60.0]], dtype=np.float32),
            confidence=np.array([0.9], dtype=np.float32),
            class_id=np.array([0]),
            data={"class_name": np.array(["person"])},
        )

    return detect


VERTICAL_LINE = CountingConfig(lines=(LineSpec("v", (64.0, 0.0), (64.0, 96.0)),))


def make_pipeline(source: FakeSource, detector=None, **config) -> Pipeline:
    detector = detector or moving_box_detector(source)
    return Pipeline(source, detector, ByteTrack(frame_rate=25), counting=VERTICAL_LINE,
                    config=PipelineConfig(**config))


# ------------------------------------------------------------------------------ golden run
def _pets_gt_detections() -> dict[int, sv.Detections]:
    """MOT15 PETS09-S2L1 ground-truth boxes (flag 1) as detections of the 480x360 video:
    MOT frame N is video frame N-1, coordinates times 0.625 (shared/README.md)."""
    rows = np.loadtxt(shared_path("data", "mot", "MOT15", "train", "PETS09-S2L1", "gt", "gt.txt"), delimiter=",")
    rows = rows[rows[:, 6] == 1]
    per_frame: dict[int, sv.Detections] = {}
    for frame in np.unique(rows[:, 0]).astype(int):
        r = rows[rows[:, 0] == frame]
        xyxy = np.column_stack([r[:, 2], r[:, 3], r[:, 2] + r[:, 4], r[:, 3] + r[:, 5]]) * 0.625
        per_frame[frame - 1] = sv.Detections(
            xyxy=xyxy.astype(np.float32),
            confidence=np.full(len(r), 0.9, dtype=np.float32),
            class_id=np.zeros(len(r), dtype=np.int64),
            data={"class_name": np.array(["person"] * len(r))},
        )
    return per_frame


def _empty() -> sv.Detections:
    return sv.Detections(
        xyxy=np.zeros((0, 4), np.float32), confidence=np.zeros(0, np.float32),
        class_id=np.zeros(0, np.int64), data={"class_name": np.array([], dtype="<U6")},
    )


PETS_COUNTING = CountingConfig(
    lines=(LineSpec("v", (0.5, 0.0), (0.5, 1.0)), LineSpec("h", (0.0, 0.5), (1.0, 0.5))), normalized=True
)


def test_pets_clip_through_the_pipeline_equals_the_stages_run_in_sequence(tmp_path: Path) -> None:
    """Real frames (PETS09-S2L1 video through app.sources), ground-truth boxes as detections:
    the pipeline's events, counts and events file equal a plain loop over the same stages."""
    video = shared_path("data", "videos", "vtest_PETS09-S2L1_480x360.avi")
    gt = _pets_gt_detections()
    source = open_source(video)
    index_of_image: dict[int, int] = {}

    class Recording:
        def __init__(self, inner):
            self.inner, self.name, self.is_live, self.fps, self.stats = inner, inner.name, inner.is_live, inner.fps, inner.stats

        def __iter__(self):
            for frame in self.inner:
                index_of_image[id(frame.image)] = frame.index
                yield frame

        def close(self):
            self.inner.close()

    def detect(image: np.ndarray) -> sv.Detections:
        return gt.get(index_of_image.pop(id(image)), _empty())

    events_path = tmp_path / "events.jsonl"
    pipeline = Pipeline(Recording(source), detect, ByteTrack(frame_rate=source.fps), counting=PETS_COUNTING,
                        event_sinks=[open_event_sink(events_path)],
                        config=PipelineConfig(video_output=tmp_path / "out.mp4"))
    yielded: list[CountEvent] = []
    indices: list[int] = []
    for result in pipeline.results():
        yielded.extend(result.events)
        indices.append(result.frame.index)
        assert result.annotated is not None and result.annotated.shape == (360, 480, 3)
    report = pipeline.report

    # Reference: the same stages, one after another, without threads.
    tracker = ByteTrack(frame_rate=source.fps)
    lines = [CountingLine((240.0, 0.0), (240.0, 360.0), "v", rules=LineRules.robust()),
             CountingLine((0.0, 180.0), (480.0, 180.0), "h", rules=LineRules.robust())]
    expected: list[CountEvent] = []
    reference_source = open_source(video)
    try:
        for frame in reference_source:
            tracks = tracker.update(gt.get(frame.index, _empty()), timestamp_s=frame.timestamp_s)
            for line in lines:
                expected.extend(line.update(tracks, frame.timestamp_s, frame.index))
    finally:
        reference_source.close()

    assert report.status == "finished" and report.error is None
    assert indices == list(range(795))
    assert report.stats.frames_in == report.stats.frames_out == report.video_frames == 795
    assert len(expected) >= 10  # pedestrians do cross the centre lines
    assert [dataclasses.replace(e, wall_time=None) for e in yielded] == expected  # the loop has no clock
    assert read_events(events_path) == yielded
    assert [(c.name, c.in_count, c.out_count) for c in report.lines] == [
        (line.name, line.in_count, line.out_count) for line in lines
    ]
    assert _decoded_frames(tmp_path / "out.mp4") == 795


def _decoded_frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


# ------------------------------------------------------------------------------ file mode
def test_file_source_every_frame_in_order_with_back_pressure() -> None:
    source = FakeSource(60)
    slow = moving_box_detector(source, delay_s=0.01)
    config = dict(capture_queue_frames=2, result_queue_frames=2)
    pipeline = make_pipeline(source, slow, **config)
    ahead = []
    indices = []
    for result in pipeline.results():
        indices.append(result.frame.index)
        # frames read but not yet output: at most the two queues plus one frame in each stage
        ahead.append(result.stats.frames_in - result.stats.frames_out)
    assert indices == list(range(60))
    assert max(ahead) <= 2 + 2 + 3
    stats = pipeline.report.stats
    assert (stats.frames_in, stats.frames_inferred, stats.frames_out, stats.frames_dropped) == (60, 60, 60, 0)


def test_counts_and_events_reach_results_and_report() -> None:
    source = FakeSource(40)
    pipeline = make_pipeline(source)
    events = [event for result in pipeline.results() for event in result.events]
    # The anchor (4i + 6, 60) passes x = 64 between frames 14 and 15, left to right: from the
    # side where cross(end - start, p - start) > 0 (left of a downward line) to < 0: IN.
    assert [(e.zone, e.direction.value, e.class_name) for e in events] == [("v", "in", "person")]
    (line,) = pipeline.report.lines
    assert (line.in_count, line.out_count, dict(line.by_class)) == (1, 0, {"person": (1, 0)})
    assert pipeline.report.events_total == 1


def test_events_carry_the_camera_id_and_the_wall_time_of_their_frame(tmp_path: Path) -> None:
    """Files: wall time = the given start + the event's media time (also for the exits reported
    at the end of the stream); live sources: the time the frame arrived."""
    from app.counting.events import wall_time_epoch_s

    start = 1_765_000_000.0  # 2025-12-06T05:46:40Z
    source = FakeSource(40)
    zones = CountingConfig(zones=(ZoneSpec("all", ((0, 0), (128, 0), (128, 96), (0, 96))),))
    path = tmp_path / "events.jsonl"
    pipeline = Pipeline(source, moving_box_detector(source), ByteTrack(frame_rate=25),
                        counting=[VERTICAL_LINE, zones], event_sinks=[open_event_sink(path)],
                        config=PipelineConfig(camera_id="gate-3", start_wall_time_s=start))
    pipeline.run()
    written = read_events(path)
    assert [e.direction.value for e in written] == ["enter", "in", "exit"]
    assert {e.camera_id for e in written} == {"gate-3"}
    for event in written:
        assert wall_time_epoch_s(event.wall_time) == pytest.approx(start + event.timestamp_s, abs=1e-3)

    live = FakeSource(30, fps=50.0, is_live=True)
    before = time.time()
    events = [e for r in make_pipeline(live, camera_id="door").results() for e in r.events]
    assert [e.camera_id for e in events] == ["door"]
    assert before <= wall_time_epoch_s(events[0].wall_time) <= time.time()


def test_max_frames_stops_reading() -> None:
    source = FakeSource(50)
    pipeline = make_pipeline(source, max_frames=7)
    assert [r.frame.index for r in pipeline.results()] == list(range(7))
    assert pipeline.report.status == "finished" and pipeline.report.stats.frames_in == 7


def test_zero_area_boxes_are_removed_before_the_tracker() -> None:
    source = FakeSource(5)

    def detect(image: np.ndarray) -> sv.Detections:
        return sv.Detections(
            xyxy=np.array([[10, 10, 30, 40], [50, 95, 70, 95], [5, 5, 5, 9]], dtype=np.float32),
            confidence=np.array([0.9, 0.8, 0.7], dtype=np.float32), class_id=np.array([0, 0, 0]),
            data={"class_name": np.array(["a", "b", "c"])},
        )

    results = list(make_pipeline(source, detect).results())
    assert [list(r.detections.data["class_name"]) for r in results] == [["a"]] * 5


def test_timestamps_going_backwards_are_repaired_and_counted() -> None:
    timestamps = [0.0, 0.1, 0.3, 0.2, 0.4, 0.4, 0.5]  # a step back, then a repeat
    source = FakeSource(len(timestamps), fps=10.0, timestamps_s=timestamps)
    results = list(make_pipeline(source).results())
    used = [r.timestamp_s for r in results]
    # 0.2 -> 0.3 + 1/fps, and later frames keep their spacing shifted by the same 0.2 s;
    # the repeated 0.4 (now 0.6) moves one period on again.
    assert used == pytest.approx([0.0, 0.1, 0.3, 0.4, 0.6, 0.7, 0.8])
    assert results[-1].stats.timestamp_repairs == 2


def test_zone_exits_at_end_of_stream_reach_the_sink(tmp_path: Path) -> None:
    source = FakeSource(10)
    zones = CountingConfig(zones=(ZoneSpec("all", ((0, 0), (128, 0), (128, 96), (0, 96))),))
    path = tmp_path / "z.jsonl"
    pipeline = Pipeline(source, moving_box_detector(source), ByteTrack(frame_rate=25), counting=zones,
                        event_sinks=[open_event_sink(path)])
    yielded = [e for r in pipeline.results() for e in r.events]
    written = read_events(path)
    assert [e.direction.value for e in yielded] == ["enter"]
    assert [e.direction.value for e in written] == ["enter", "exit"]  # exit added by finish()
    assert written[1].dwell_s == pytest.approx(written[1].timestamp_s - written[0].timestamp_s)
    assert pipeline.report.events_total == 2


# ------------------------------------------------------------------------------ live mode
def test_live_source_drops_oldest_frames_when_inference_is_slow() -> None:
    source = FakeSource(80, fps=200.0, is_live=True)  # a frame every 5 ms
    slow = moving_box_detector(source, delay_s=0.03)   # inference takes 30 ms
    pipeline = make_pipeline(source, slow, capture_queue_frames=8)
    assert pipeline.drops_frames
    staleness = []
    indices = []
    for result in pipeline.results():
        indices.append(result.frame.index)
        staleness.append(result.stats.frames_in - 1 - result.frame.index)
    stats = pipeline.report.stats
    assert stats.frames_dropped > 20
    assert stats.frames_in == stats.frames_out + stats.frames_dropped + stats.frames_discarded
    assert indices == sorted(indices) and len(indices) == stats.frames_out
    # Freshest frame wins: inference takes the newest queued frame, so when a result comes out
    # it lags the newest captured frame by about the frames that arrived during its inference
    # (30 ms / 5 ms = 6), not by the queue's 8 slots on top.
    assert np.median(staleness) <= 6 + 4


def test_file_policy_can_be_forced_on_a_live_source() -> None:
    source = FakeSource(30, fps=500.0, is_live=True)
    pipeline = make_pipeline(source, moving_box_detector(source, delay_s=0.005), drop_oldest=False)
    assert [r.frame.index for r in pipeline.results()] == list(range(30))
    assert pipeline.report.stats.frames_dropped == 0


# ------------------------------------------------------------------------------ shutdown
def test_stop_from_another_thread_finalizes_video_and_reports(tmp_path: Path) -> None:
    source = FakeSource(10_000)
    events_path = tmp_path / "e.sqlite"
    pipeline = Pipeline(source, moving_box_detector(source, delay_s=0.002), ByteTrack(frame_rate=25),
                        counting=VERTICAL_LINE, event_sinks=[open_event_sink(events_path)],
                        config=PipelineConfig(video_output=tmp_path / "out.mp4"))
    seen = 0
    for result in pipeline.results():
        seen += 1
        if seen == 30:
            threading.Thread(target=pipeline.stop).start()
    report = pipeline.report
    assert report.status == "stopped" and report.error is None
    assert 30 <= report.stats.frames_out < 10_000
    assert report.stats.frames_in == report.stats.frames_out + report.stats.frames_discarded
    assert _decoded_frames(tmp_path / "out.mp4") == report.video_frames == report.stats.frames_out
    assert len(read_events(events_path)) == report.events_total == 1
    assert source.close_calls >= 1


def test_sigint_while_waiting_for_results_interrupts_cleanly(tmp_path: Path) -> None:
    source = FakeSource(10_000)
    pipeline = Pipeline(source, moving_box_detector(source, delay_s=0.02), ByteTrack(frame_rate=25),
                        counting=VERTICAL_LINE, config=PipelineConfig(video_output=tmp_path / "out.mp4"))
    timer = threading.Timer(0.8, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            pipeline.run()
    finally:
        timer.cancel()
    report = pipeline.report
    assert report.status == "interrupted"
    assert report.stats.frames_out > 0
    assert _decoded_frames(tmp_path / "out.mp4") == report.video_frames == report.stats.frames_out
    assert not any(t.is_alive() for t in threading.enumerate() if t.name.startswith("pipeline-"))


def test_keyboard_interrupt_in_the_callback_interrupts_cleanly() -> None:
    source = FakeSource(1_000)
    pipeline = make_pipeline(source)

    def on_result(result):
        if result.frame.index == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pipeline.run(on_result)
    assert pipeline.report.status == "interrupted" and pipeline.report.stats.frames_out == 6


def test_closing_the_generator_early_stops_the_run() -> None:
    source = FakeSource(1_000)
    pipeline = make_pipeline(source)
    results = pipeline.results()
    for result in results:
        if result.frame.index == 3:
            break
    results.close()
    assert pipeline.report.status == "stopped"
    assert not any(t.is_alive() for t in threading.enumerate() if t.name.startswith("pipeline-"))


# ------------------------------------------------------------------------------ errors
def test_detector_error_reaches_the_caller_after_earlier_frames_are_output(tmp_path: Path) -> None:
    source = FakeSource(100)
    pipeline = Pipeline(source, moving_box_detector(source, fail_at=20), ByteTrack(frame_rate=25),
                        counting=VERTICAL_LINE, event_sinks=[open_event_sink(tmp_path / "e.csv")],
                        config=PipelineConfig(video_output=tmp_path / "out.mp4"))
    out = []
    with pytest.raises(RuntimeError, match="detector failed on frame 20"):
        for result in pipeline.results():
            out.append(result.frame.index)
    assert out == list(range(20))
    report = pipeline.report
    assert report.status == "failed" and "detector failed on frame 20" in report.error
    assert _decoded_frames(tmp_path / "out.mp4") == 20
    assert len(read_events(tmp_path / "e.csv")) == 1  # the crossing at frame 15 was written


def test_source_error_reaches_the_caller_after_queued_frames_are_output() -> None:
    source = FakeSource(100, fail_at=12)
    pipeline = make_pipeline(source)
    out = []
    with pytest.raises(OSError, match="read failed at frame 12"):
        for result in pipeline.results():
            out.append(result.frame.index)
    assert out == list(range(12))
    assert pipeline.report.status == "failed"


def test_output_stage_error_stops_the_other_threads(tmp_path: Path) -> None:
    source = FakeSource(10_000)

    class BrokenSink:
        closed = False

        def write_many(self, events):
            raise OSError("disk full")

        def close(self):
            self.closed = True

    sink = BrokenSink()
    pipeline = Pipeline(source, moving_box_detector(source), ByteTrack(frame_rate=25), counting=VERTICAL_LINE,
                        event_sinks=[sink])
    started = time.monotonic()
    with pytest.raises(OSError, match="disk full"):
        pipeline.run()
    assert time.monotonic() - started < 10
    assert sink.closed and pipeline.report.status == "failed"
    assert not any(t.is_alive() for t in threading.enumerate() if t.name.startswith("pipeline-"))


def test_a_pipeline_runs_once() -> None:
    pipeline = make_pipeline(FakeSource(3))
    pipeline.run()
    with pytest.raises(PipelineError, match="runs once"):
        pipeline.results()


# ------------------------------------------------------------------------------ stats and report
def test_stats_can_be_polled_from_another_thread_while_running() -> None:
    source = FakeSource(200)
    pipeline = make_pipeline(source, moving_box_detector(source, delay_s=0.002))
    snapshots = []
    done = threading.Event()

    def poll():
        while not done.is_set():
            snapshots.append(pipeline.stats())
            time.sleep(0.005)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        report = pipeline.run()
    finally:
        done.set()
        poller.join()
    assert len(snapshots) > 5
    assert all(a.frames_out <= b.frames_out for a, b in zip(snapshots, snapshots[1:]))
    assert [s.name for s in report.stats.stages] == list(STAGES)
    detect = report.stats.stage("detect")
    assert detect.frames == 200 and 2.0 <= detect.p50_ms <= detect.p95_ms and detect.fps > 0
    assert 0 < report.stats.latency_p50_ms <= report.stats.latency_p95_ms
    json.dumps(report.to_dict())  # JSON-ready
    assert "200 frames in, 200 out" in report.summary()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"capture_queue_frames": 0}, "capture_queue_frames"),
        ({"result_queue_frames": 1.5}, "result_queue_frames"),
        ({"max_frames": 0}, "max_frames"),
        ({"drop_oldest": "yes"}, "drop_oldest"),
        ({"output_fps": -1.0}, "output_fps"),
        ({"fallback_fps": float("nan")}, "fallback_fps"),
        ({"shutdown_timeout_s": 0}, "shutdown_timeout_s"),
        ({"line_rules": "robust"}, "line_rules"),
    ],
)
def test_invalid_config_is_refused(options: dict, message: str) -> None:
    with pytest.raises(PipelineConfigError, match=message):
        PipelineConfig(**options)


def test_duplicate_line_names_across_configs_are_refused() -> None:
    a = CountingConfig(lines=(LineSpec("door", (0, 0), (10, 0)),))
    b = CountingConfig(zones=(ZoneSpec("door", ((0, 0), (1, 0), (1, 1))),), normalized=True)
    with pytest.raises(PipelineConfigError, match="'door' is used twice"):
        Pipeline(FakeSource(1), lambda image: _empty(), ByteTrack(), counting=[a, b])


# ------------------------------------------------------------------------------ a real live stream
def test_rtsp_stream_killed_and_restarted_reconnects_and_keeps_counting() -> None:
    """A local RTSP camera (tests/rtsp_server.py) dies mid-stream and comes back: the pipeline
    keeps running, the source reconnects, and the counts continue from where they were."""
    from app.sources import SourceConfig
    from rtsp_server import RtspTestServer

    server = RtspTestServer(width=320, height=240, fps=25)
    server.start()  # raises, naming the Debian package, when the server cannot run here
    try:
        source = open_source(server.url, SourceConfig(timeout_s=2.0, reconnect_initial_s=0.2, reconnect_max_s=1.0))
        calls = {"n": 0}

        def sweeping_box(image: np.ndarray) -> sv.Detections:
            # One box sweeping left to right, 8 px per frame, across x = 160 every 40 frames.
            calls["n"] += 1
            x = 8.0 * (calls["n"] % 40)
            return sv.Detections(xyxy=np.array([[x, 100, x + 20, 150]], np.float32),
                                 confidence=np.array([0.9], np.float32), class_id=np.array([0]),
                                 data={"class_name": np.array(["ball"])})

        counting = CountingConfig(lines=(LineSpec("v", (160.0, 0.0), (160.0, 240.0)),))
        pipeline = Pipeline(source, sweeping_box, ByteTrack(frame_rate=25), counting=counting)
        watchdog = threading.Timer(90.0, pipeline.stop)
        watchdog.start()
        phase, counts_at_kill, in_counts = "before", 0, []
        restart = threading.Timer(1.0, server.start)
        try:
            for result in pipeline.results():
                in_counts.append(result.lines[0].in_count)
                if phase == "before" and in_counts[-1] >= 2:
                    phase, counts_at_kill = "killed", in_counts[-1]
                    server.kill()
                    restart.start()
                elif phase == "killed" and result.stats.reconnects >= 1 and in_counts[-1] >= counts_at_kill + 2:
                    pipeline.stop()
                    phase = "done"
        finally:
            watchdog.cancel()
            restart.cancel()
            if restart.is_alive():
                restart.join()
        report = pipeline.report
        assert phase == "done", f"stopped in phase {phase!r}: {report.summary()}"
        assert report.status == "stopped" and report.stats.reconnects >= 1
        assert in_counts == sorted(in_counts) and report.lines[0].in_count >= counts_at_kill + 2
    finally:
        server.kill()


# ------------------------------------------------------------------------------ frame sinks
class RecordingSink:
    """A frame sink keeping copies of what it was given."""

    def __init__(self, draws_counting: bool | None = None) -> None:
        if draws_counting is not None:
            self.draws_counting = draws_counting
        self.images: list[np.ndarray] = []
        self.closed = False

    def write(self, image_bgr: np.ndarray, frame: Frame) -> None:
        assert image_bgr.shape == frame.image.shape
        self.images.append(image_bgr.copy())

    def close(self) -> None:
        self.closed = True


def test_a_tracks_only_sink_gets_no_lines_while_the_others_get_them_drawn():
    """The GUI view asks for the tracks only (it draws lines itself); the video gets lines and
    counts. One pipeline feeds both, each frame drawn once per kind."""
    from app.render import FrameRenderer

    source = FakeSource(20)
    plain, counting, default = RecordingSink(False), RecordingSink(True), RecordingSink()
    pipeline = Pipeline(source, moving_box_detector(source), ByteTrack(frame_rate=25), counting=VERTICAL_LINE,
                        frame_sinks=[plain, counting, default])
    results = list(pipeline.results())
    assert len(plain.images) == len(counting.images) == len(default.images) == 20
    assert plain.closed and counting.closed and default.closed
    last = results[-1]
    np.testing.assert_array_equal(counting.images[-1], default.images[-1])
    # the counting sinks' frame is the tracks-only frame with lines, zones and counts drawn on top
    lines_on_top = FrameRenderer().render(plain.images[-1], sv.Detections.empty(), last.lines, last.zones)
    np.testing.assert_array_equal(counting.images[-1], lines_on_top)
    assert not np.array_equal(plain.images[-1], counting.images[-1])  # the line and its counts
    np.testing.assert_array_equal(last.annotated, counting.images[-1])
