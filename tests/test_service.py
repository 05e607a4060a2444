"""Many cameras in one process (issue 13): the batching detector, the cameras file, the service.

Real frames with real crossings: the PETS09-S2L1 clip with its MOT15 ground truth as
detections. A batched detector sees frames of several cameras in one call, so the replay here
finds each frame's boxes by the frame's content (a hash of its pixels), not by call order.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import supervision as sv
import yaml
from gui_support import HashReplay, pets_video

from app.batching import BatchingDetector, BatchingError
from app.cameras import CamerasFileError, parse_cameras
from app.counting import CountingConfig, LineSpec
from app.counting.events import wall_time_epoch_s
from app.pipeline import Pipeline, PipelineConfig
from app.service import Service
from app.sinks import read_events
from app.sources import open_source
from tracker.registry import make_tracker

FRAMES = 200  # of the PETS clip (795): people cross both lines in these
EMPTY = sv.Detections.empty()


@pytest.fixture(scope="module")
def replay() -> HashReplay:
    return HashReplay()


def _first_frames(tmp_path: Path, n: int = FRAMES) -> Path:
    """The first ``n`` PETS frames as a PNG folder (a file source that ends early)."""
    import cv2

    folder = tmp_path / f"pets{n}"
    folder.mkdir()
    for frame in open_source(pets_video()):
        if frame.index >= n:
            break
        cv2.imwrite(str(folder / f"{frame.index:04d}.png"), frame.image)
    return folder


H_LINE = {"name": "h", "start": [0, 180], "end": [480, 180]}
V_LINE = {"name": "v", "start": [240, 0], "end": [240, 360]}


def _cameras(tmp_path: Path, source: Path, **outputs) -> dict:
    """Cameras a (line h, ByteTrack) and b (line v, SORT) on ``source``, with ``outputs``."""
    return {
        "detector": {"max_batch": 4, "max_wait_ms": 20},
        "outputs": outputs,
        "cameras": [
            {"id": "a", "source": str(source), "lines": [H_LINE], "normalized": False},
            {"id": "b", "source": str(source), "lines": [V_LINE], "normalized": False,
             "tracker": {"name": "sort", "max_age": 3}},
        ],
    }


def _separate_run(source: Path, line: dict, tracker: str, params: dict, replay: HashReplay) -> list:
    src = open_source(str(source))
    spec = LineSpec(line["name"], tuple(line["start"]), tuple(line["end"]))
    pipeline = Pipeline(src, replay, make_tracker(tracker, params, frame_rate=src.fps or 25.0),
                        counting=CountingConfig(lines=(spec,)), config=PipelineConfig(), class_names=["person"])
    return [e for result in pipeline.results() for e in result.events]


def _key(event):  # noqa: ANN001, ANN202 - what must match between the service and a separate run
    return (event.timestamp_s, event.frame_index, event.zone, event.track_id, event.direction.value)


# ------------------------------------------------------------------------------ batching
@pytest.mark.parametrize("workers", [1, 2])
def test_frames_of_several_cameras_share_forward_passes(workers):
    sizes: list[int] = []

    def detect_batch(images):  # noqa: ANN001, ANN202
        sizes.append(len(images))
        time.sleep(0.03)
        return [sv.Detections(xyxy=np.array([[0, 0, 1, float(image[0, 0, 0]) + 1]], dtype=np.float32),
                              confidence=np.array([0.9], dtype=np.float32), class_id=np.array([int(image[0, 0, 1])]))
                for image in images]

    batcher = BatchingDetector(detect_batch, max_batch=4, max_wait_ms=20, workers=workers)
    got: dict[int, list[float]] = {}

    def camera(cam: int) -> None:
        view = batcher.for_camera(classes=[1] if cam == 0 else None)  # camera 0 counts class 1 only
        got[cam] = []
        for i in range(6):
            image = np.full((8, 8, 3), i, dtype=np.uint8)
            image[0, 0, 1] = 0  # every box is class 0
            detections = view(image)
            got[cam].append(float(detections.xyxy[0, 3]) if len(detections) else -1.0)

    threads = [threading.Thread(target=camera, args=(cam,)) for cam in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    batcher.close()
    assert sum(sizes) == 24 and max(sizes) <= 4 and max(sizes) > 1
    assert batcher.mean_batch > (1.5 if workers == 1 else 1.0)
    assert got[0] == [-1.0] * 6                    # its class filter applies to its frames only
    assert got[1] == got[2] == got[3] == [1, 2, 3, 4, 5, 6]  # each camera gets its own frame's boxes


def test_a_failed_batch_fails_only_its_frames():
    calls = [0]

    def detect_batch(images):  # noqa: ANN001, ANN202
        calls[0] += 1
        if calls[0] == 1:
            raise RuntimeError("out of memory")
        return [EMPTY for _ in images]

    batcher = BatchingDetector(detect_batch, max_batch=1, max_wait_ms=0)
    with pytest.raises(RuntimeError, match="out of memory"):
        batcher.detect(np.zeros((4, 4, 3), np.uint8))
    assert len(batcher.detect(np.zeros((4, 4, 3), np.uint8))) == 0
    batcher.close()
    with pytest.raises(BatchingError, match="closed"):
        batcher.detect(np.zeros((4, 4, 3), np.uint8))


@pytest.mark.parametrize(("options", "message"), [
    ({"max_batch": 0}, "max_batch"), ({"max_wait_ms": -1}, "max_wait_ms"), ({"workers": 0}, "workers")])
def test_batching_options_are_checked(options, message):
    with pytest.raises(BatchingError, match=message):
        BatchingDetector(lambda images: [], **options)


# ------------------------------------------------------------------------------ cameras file
def _camera(**fields) -> dict:
    return {"cameras": [{"id": "gate", "source": "rtsp://10.0.0.5/s", "lines": [H_LINE], **fields}]}


@pytest.mark.parametrize(("data", "message"), [
    ({"cameras": []}, "cameras: expected a non-empty list"),
    ({"cameras": [{"id": "gate west", "source": "x.mp4"}]}, r"cameras\[0\]\.id: expected 1-64 letters"),
    (_camera(tracker={"name": "sort", "track_thresh": 0.5}), "camera 'gate': tracker: .*track_thresh"),
    (_camera(tracker="deepsort"), "camera 'gate': tracker: expected one of bytetrack, sort"),
    (_camera(fps=5), "camera 'gate': unknown key.*fps"),
    (_camera(vid_stride=0), "camera 'gate': vid_stride: expected an integer"),
    (_camera(lines=[{"name": "h", "start": [0, 0]}]), r"camera 'gate'.*lines\[0\]"),
    ({"detector": {"max_batch": 0}, **_camera()}, "detector.max_batch: expected an integer >= 1"),
    ({"detector": {"precision": "int8"}, **_camera()}, "detector.precision"),
    ({"outputs": {"webhook": {}}, **_camera()}, "outputs.webhook.url"),
    ({"cameras": [{"id": "a", "source": "a.mp4"}, {"id": "a", "source": "b.mp4"}]}, "camera id 'a' is used twice"),
])
def test_cameras_file_errors_name_the_file_camera_and_field(data, message):
    with pytest.raises(CamerasFileError, match=message) as raised:
        parse_cameras(data, Path("/etc/cams.yaml"))
    assert str(raised.value).startswith("/etc/cams.yaml: ")


def test_cameras_file_resolves_relative_paths_and_keeps_urls(tmp_path: Path):
    zones = tmp_path / "gate-zones.yaml"
    zones.write_text(yaml.safe_dump({"zones": [{"name": "q", "polygon": [[0, 0], [1, 0], [1, 1]]}]}))
    parsed = parse_cameras({"outputs": {"events": "ev.sqlite"}, "cameras": [
        {"id": "gate", "source": "rtsp://u:p@10.0.0.5/s", "lines": [H_LINE], "zone_file": "gate-zones.yaml",
         "classes": ["person", 2]},
        {"id": "file", "source": "clips/a.mp4"}]}, tmp_path / "cams.yaml")
    gate, file = parsed.cameras
    assert gate.source == "rtsp://u:p@10.0.0.5/s" and file.source == str(tmp_path / "clips" / "a.mp4")
    assert [c.lines[0].name if c.lines else c.zones[0].name for c in gate.counting] == ["h", "q"]
    assert gate.classes == ("person", "2") and parsed.outputs.events == tmp_path / "ev.sqlite"


# ------------------------------------------------------------------------------ the service
def test_two_cameras_on_one_batched_detector_count_as_separate_runs(tmp_path: Path, replay: HashReplay):
    source = _first_frames(tmp_path)
    data = _cameras(tmp_path, source, events=str(tmp_path / "events.sqlite"), metrics={"port": 0})
    service = Service(parse_cameras(data, tmp_path / "cams.yaml"), detector=replay)
    replay.batch_sizes.clear()
    started = time.time()
    service.start()
    try:
        assert service.wait(timeout_s=120)
        metrics_text = urllib.request.urlopen(f"{service.metrics_server.url}/metrics", timeout=5).read().decode()
        status = json.loads(urllib.request.urlopen(f"{service.metrics_server.url}/status", timeout=5).read())
    finally:
        service.stop()
    written = read_events(tmp_path / "events.sqlite")
    expected = {"a": _separate_run(source, H_LINE, "bytetrack", {}, replay),
                "b": _separate_run(source, V_LINE, "sort", {"max_age": 3}, replay)}
    assert len(expected["a"]) >= 3 and len(expected["b"]) >= 3  # people do cross both lines
    for camera_id, events in expected.items():
        mine = [e for e in written if e.camera_id == camera_id]
        assert [_key(e) for e in mine] == [_key(e) for e in events]
        assert all(started - 1 <= wall_time_epoch_s(e.wall_time) <= time.time() + 60 for e in mine)
    assert max(replay.batch_sizes) > 1  # the two cameras shared forward passes
    from prometheus_client.parser import text_string_to_metric_families

    families = {f.name: f for f in text_string_to_metric_families(metrics_text)}
    frames = {s.labels["camera"]: s.value for s in families["yolov7_track_frames"].samples if s.name.endswith("_total")}
    assert frames == {"a": FRAMES, "b": FRAMES}
    assert {c["id"]: c["state"] for c in status["cameras"]} == {"a": "finished", "b": "finished"}
    assert status["cameras"][0]["counts"]["lines"]["h"]["in"] + status["cameras"][0]["counts"]["lines"]["h"]["out"] \
        == len(expected["a"])


def test_a_camera_that_cannot_open_does_not_stop_the_others(tmp_path: Path, replay: HashReplay):
    source = _first_frames(tmp_path, 40)
    data = _cameras(tmp_path, source)
    data["cameras"].append({"id": "gone", "source": str(tmp_path / "missing.mp4")})
    service = Service(parse_cameras(data, tmp_path / "cams.yaml"), detector=replay)
    service.start()
    assert service.wait(timeout_s=60)
    service.stop()
    states = {c["id"]: (c["state"], c["frames"]) for c in service.status()["cameras"]}
    assert states == {"a": ("finished", 40), "b": ("finished", 40), "gone": ("failed", 0)}
    assert "missing.mp4" in service.camera("gone").error


def test_reload_keeps_recounts_restarts_removes_and_adds_cameras(tmp_path: Path):
    source = _first_frames(tmp_path, 120)
    slow = HashReplay(delay_s=0.05)  # about 6 s per camera: the reload lands mid-run
    data = _cameras(tmp_path, source)
    data["cameras"].append({"id": "c", "source": str(source), "lines": [H_LINE], "normalized": False})
    service = Service(parse_cameras(data, tmp_path / "cams.yaml"), detector=slow)
    service.start()
    try:
        time.sleep(1.0)
        pipeline_a = service.camera("a").pipeline
        new = json.loads(json.dumps(data))
        new["cameras"][0]["lines"] = [H_LINE, {"name": "v2", "start": [200, 0], "end": [200, 360]}]  # a: lines
        new["cameras"][1]["tracker"] = {"name": "bytetrack"}                                          # b: restart
        new["cameras"][2] = {"id": "d", "source": str(source), "lines": [V_LINE], "normalized": False}  # c -> d
        changes = service.reload(parse_cameras(new, tmp_path / "cams.yaml"))
        assert changes == {"kept": [], "recounted": ["a"], "restarted": ["b"], "removed": ["c"], "added": ["d"]}
        assert service.camera("a").pipeline is pipeline_a  # not restarted
        with pytest.raises(CamerasFileError):
            service.reload(parse_cameras({"cameras": "oops"}, tmp_path / "cams.yaml"))
        assert service.wait(timeout_s=120)
    finally:
        service.stop()
    status = {c["id"]: c for c in service.status()["cameras"]}
    assert set(status) == {"a", "b", "d"}
    assert set(status["a"]["counts"]["lines"]) == {"h", "v2"}
    assert status["a"]["frames"] == 120 and status["d"]["state"] == "finished"


def test_sigterm_stops_serve_cleanly_and_finalizes_the_events_file(tmp_path: Path):
    """The real command with the bundled model: SIGTERM mid-run exits 0 and leaves a readable
    events file with every camera's id."""
    clip = Path(__file__).resolve().parents[1] / "assets" / "samples" / "traffic_street_fixedcam.mp4"
    cams = tmp_path / "cams.yaml"
    cams.write_text(yaml.safe_dump({
        "detector": {"img_size": 160, "device": "cpu", "threads": 1},
        "outputs": {"events": "events.jsonl"},
        "cameras": [{"id": f"cam{i}", "source": str(clip), "lines": [{"name": "road", "start": [0, 0.3], "end": [1, 0.3]}]}
                    for i in range(2)]}))
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", str(cams)], cwd=Path(__file__).resolve().parents[1],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert "camera(s) from" in proc.stdout.readline()
        time.sleep(4.0)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-2000:]
    assert "cam0: stopped" in out and "cam1: stopped" in out
    events = read_events(tmp_path / "events.jsonl")
    assert {e.camera_id for e in events} <= {"cam0", "cam1"}


# ------------------------------------------------------------------------------ live cameras
class BallDetector:
    """Finds the white ball of GStreamer's ``videotestsrc pattern=ball`` (a real detection on
    real decoded frames): the box around the bright pixels, class 0."""

    names = ["ball"]

    def detect_batch(self, images):  # noqa: ANN001, ANN201
        out = []
        for image in images:
            ys, xs = np.nonzero(image[:, :, 1] > 200)
            if len(xs) < 4:
                out.append(EMPTY)
                continue
            out.append(sv.Detections(xyxy=np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32),
                                     confidence=np.array([0.9], np.float32), class_id=np.array([0])))
        return out


def _frames(service: Service) -> dict[str, int]:
    return {c["id"]: c["frames"] for c in service.status()["cameras"]}


def test_four_rtsp_cameras_and_two_files_one_camera_dies_and_comes_back(tmp_path: Path):
    """Four local RTSP cameras and two files in one service: every camera's events carry its
    id and wall time; one RTSP server killed mid-run leaves the others at their frame rate, and
    its camera reconnects when the server returns."""
    from app.sources import SourceConfig
    from rtsp_server import RtspTestServer

    servers = [RtspTestServer(width=160, height=120, fps=10) for _ in range(4)]
    folder = _first_frames(tmp_path, 30)
    try:
        for server in servers:
            server.start()  # raises, naming the Debian package, when the server cannot run here
        line = {"name": "v", "start": [0.5, 0], "end": [0.5, 1]}
        data = {"detector": {"max_batch": 8, "max_wait_ms": 20},
                "outputs": {"events": str(tmp_path / "events.jsonl"), "metrics": {"port": 0}},
                "cameras": [{"id": f"rtsp{i}", "source": s.url, "lines": [line]} for i, s in enumerate(servers)]
                + [{"id": f"file{i}", "source": str(folder), "lines": [line]} for i in range(2)]}
        service = Service(parse_cameras(data, tmp_path / "cams.yaml"), detector=BallDetector(),
                          source_config=SourceConfig(timeout_s=2.0, reconnect_initial_s=0.2, reconnect_max_s=1.0))
        service.start()
        try:
            def events_of_rtsp() -> list[int]:
                return [c["events"] for c in service.status()["cameras"] if c["id"].startswith("rtsp")]

            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and min(events_of_rtsp()) < 1:  # the ball crossed on every camera
                time.sleep(0.5)
            before = _frames(service)
            assert min(events_of_rtsp()) >= 1, service.status()
            servers[0].kill()
            time.sleep(3.0)
            during = _frames(service)
            for i in (1, 2, 3):  # about 30 frames in 3 s at 10 fps; allow for a loaded machine
                assert during[f"rtsp{i}"] - before[f"rtsp{i}"] >= 15, (before, during)
            servers[0].start()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and _frames(service)["rtsp0"] < during["rtsp0"] + 20:
                time.sleep(0.5)
            assert _frames(service)["rtsp0"] >= during["rtsp0"] + 20, "rtsp0 did not come back"
            metrics = urllib.request.urlopen(f"{service.metrics_server.url}/metrics", timeout=5).read().decode()
        finally:
            service.stop()
        assert 'yolov7_track_reconnects_total{camera="rtsp0"}' in metrics
        reconnects = [line for line in metrics.splitlines() if line.startswith('yolov7_track_reconnects_total{camera="rtsp0"}')]
        assert float(reconnects[0].split()[-1]) >= 1
        events = read_events(tmp_path / "events.jsonl")
        assert {f"rtsp{i}" for i in range(4)} <= {e.camera_id for e in events}
        assert all(e.wall_time is not None for e in events)
        status = {c["id"]: c for c in service.status()["cameras"]}
        assert status["file0"]["frames"] == status["file1"]["frames"] == 30
    finally:
        for server in servers:
            server.kill()


# ------------------------------------------------------------------------------ MQTT
def test_events_reach_mqtt_in_order_through_a_broker_outage(tmp_path: Path):
    """Two cameras publish to a real Mosquitto; the broker goes down for 2 s mid-run (SIGTERM,
    with persistence, as a restarted broker service does) and comes back: every event of the
    events file reaches the subscriber, in order per camera, and the spool is empty."""
    from mqtt_broker import MosquittoBroker, Subscriber, wait_until

    broker = MosquittoBroker(tmp_path / "broker", persistence=True)
    broker.start()
    subscriber = Subscriber(broker.port, ["yt/+/events", "yt/+/counts"], persistent=True)
    source = _first_frames(tmp_path, 150)
    data = _cameras(tmp_path, source, events=str(tmp_path / "events.jsonl"),
                    mqtt={"host": "127.0.0.1", "port": broker.port, "topic_prefix": "yt",
                          "reconnect_min_delay_s": 0.2, "reconnect_max_delay_s": 1.0},
                    spool_dir=str(tmp_path / "spool"))
    service = Service(parse_cameras(data, tmp_path / "cams.yaml"), detector=HashReplay(delay_s=0.03))
    try:
        service.start()
        assert wait_until(lambda: sum(c["events"] for c in service.status()["cameras"]) >= 2, 60)
        broker.stop()
        time.sleep(2.0)
        broker.start()
        assert service.wait(timeout_s=120)
        assert service.mqtt.flush(20), f"{service.mqtt.pending} event(s) still spooled"
        written = read_events(tmp_path / "events.jsonl")
        expected = {cam: [_event_id(e.as_dict()) for e in written if e.camera_id == cam] for cam in ("a", "b")}
        assert all(len(ids) >= 3 for ids in expected.values())

        def received(cam: str) -> list:
            return [_event_id(json.loads(m.payload)) for m in subscriber.snapshot() if m.topic == f"yt/{cam}/events"]

        assert wait_until(lambda: all(set(received(c)) >= set(expected[c]) for c in expected), 15)
        for cam, ids in expected.items():
            first = list(dict.fromkeys(received(cam)))  # at-least-once: duplicates allowed, order kept
            assert first == ids
        counts = [m for m in subscriber.snapshot() if m.topic == "yt/a/counts"]
        assert counts and "lines" in json.loads(counts[-1].payload)
        assert service.mqtt.pending == 0
    finally:
        service.stop()
        subscriber.close()
        broker.kill()


def _event_id(event: dict) -> tuple:
    return (event["camera_id"], event["frame_index"], event["zone"], event["track_id"], event["direction"])


def test_a_bad_frame_fails_its_camera_only_and_a_failing_callback_stops_nothing():
    from detector import InvalidImageError

    def on_batch(size: int, seconds: float) -> None:
        raise RuntimeError("metrics backend down")

    batcher = BatchingDetector(lambda images: [EMPTY for _ in images], max_batch=4, max_wait_ms=5, on_batch=on_batch)
    view = batcher.for_camera()
    with pytest.raises(InvalidImageError):
        view(np.zeros((4, 4), np.uint8))  # refused before it joins a batch
    for _ in range(3):
        assert len(view(np.zeros((4, 4, 3), np.uint8))) == 0
    batcher.close()
