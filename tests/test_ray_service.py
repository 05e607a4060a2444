"""The counting service on a local Ray cluster (issue 15): same counts as in one process,
camera and detector actors that die mid-run, and no Ray without ``--ray``.

The detectors are the deterministic fakes of the in-process tests (tests/gui_support.py's
HashReplay: the PETS09 ground truth found by each frame's pixels; tests/test_service.py's
BallDetector: the white ball of the RTSP test pattern), so that the counts of
two runs can be compared event by event. Ray runs with the machine's 2 CPUs, one instance for
the whole module; every actor asks for a fraction of a CPU so that all of them fit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import supervision as sv
from gui_support import HashReplay, _digest
from test_service import FRAMES, H_LINE, V_LINE, BallDetector, _first_frames, _key, _separate_run

from app.cameras import parse_cameras
from app.ray_service import INSTALL_HINT, RayService, RayServiceConfig, RayServiceConfigError
from app.ray_service.metrics import Part, merge_expositions
from app.service import Service
from app.sinks import read_events

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent

# Every actor fits on 2 CPUs: the hub takes none, detectors and cameras a quarter each.
CONFIG = dict(detector_num_cpus=0.25, camera_num_cpus=0.25, detect_timeout_s=5.0, detector_cooldown_s=1.0,
              hub_timeout_s=20.0, call_timeout_s=5.0)


class PetsAndBall:
    """``detect_batch`` for PETS frames (their ground truth, by content) and for the RTSP test
    pattern (the ball); every box is class 0. ``delay_s`` per batch stands for the forward pass."""

    names = ["person"]

    def __init__(self, replay: HashReplay, delay_s: float = 0.0) -> None:
        self._boxes = replay._boxes
        self._ball = BallDetector()
        self.delay_s = delay_s

    def detect_batch(self, images):  # noqa: ANN001, ANN201
        if self.delay_s:
            time.sleep(self.delay_s)
        out = []
        for image in images:
            boxes = self._boxes.get(_digest(image))
            out.append(boxes if boxes is not None else self._ball.detect_batch([image])[0])
        return out


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray instance with 2 CPUs; workers import the test modules (the fake detectors
    are pickled by reference to them)."""
    import ray

    path = os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING",
             runtime_env={"env_vars": {"PYTHONPATH": path}})
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def replay() -> HashReplay:
    return HashReplay()


@pytest.fixture(scope="module")
def pets_folder(tmp_path_factory) -> Path:
    return _first_frames(tmp_path_factory.mktemp("pets"))


def _file_cameras(source: Path) -> list[dict]:
    """Camera a: line h, ByteTrack; camera b: line v, SORT; both on the PETS frames."""
    return [
        {"id": "a", "source": str(source), "lines": [H_LINE], "normalized": False},
        {"id": "b", "source": str(source), "lines": [V_LINE], "normalized": False,
         "tracker": {"name": "sort", "max_age": 3}},
    ]


def _expected(source: Path, replay: HashReplay) -> dict[str, list]:
    return {"a": [_key(e) for e in _separate_run(source, H_LINE, "bytetrack", {}, replay)],
            "b": [_key(e) for e in _separate_run(source, V_LINE, "sort", {"max_age": 3}, replay)]}


def _keys(events_file: Path, camera_id: str) -> list:
    return [_key(e) for e in read_events(events_file) if e.camera_id == camera_id]


def _wait_for(predicate, timeout_s: float, poll_s: float = 0.2) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll_s)
    return bool(predicate())


def _camera(status: dict, camera_id: str) -> dict:
    return next(c for c in status["cameras"] if c["id"] == camera_id)


# ------------------------------------------------------------------------------ acceptance
def test_two_files_and_an_rtsp_camera_count_as_the_in_process_service(ray_cluster, replay, pets_folder, tmp_path):
    """The same cameras file, run at the same time in one process and on Ray: the file cameras'
    events are identical; the RTSP camera, which both runs watch on one server (the same frames
    at the same moments), gives the same crossings at the same wall times, over the time both
    watched it."""
    from app.counting.events import wall_time_epoch_s
    from app.sources import SourceConfig
    from rtsp_server import RtspTestServer

    server = RtspTestServer(width=160, height=120, fps=10)
    live_lines = [{"name": f"x{x}", "start": [x, 0], "end": [x, 1]} for x in (0.3, 0.5, 0.8)] + [
        {"name": f"y{y}", "start": [0, y], "end": [1, y]} for y in (0.4, 0.62)]
    source_config = SourceConfig(timeout_s=3.0, reconnect_initial_s=0.2, reconnect_max_s=1.0)
    try:
        server.start()

        def cameras(name: str) -> object:
            data = {"detector": {"max_batch": 4, "max_wait_ms": 5},
                    "outputs": {"events": str(tmp_path / f"{name}.sqlite"), **({"metrics": {"port": 0}} if name == "ray" else {})},
                    "cameras": _file_cameras(pets_folder) + [{"id": "live", "source": server.url, "lines": live_lines}]}
            return parse_cameras(data, tmp_path / f"{name}.yaml")

        detector = PetsAndBall(replay)
        local = Service(cameras("local"), detector=detector, source_config=source_config)
        on_ray = RayService(cameras("ray"), detector_factory=lambda: detector, source_config=source_config,
                            config=RayServiceConfig(**CONFIG))
        try:
            local.start()
            on_ray.start()

            def live_frames() -> tuple[int, int]:
                return _camera(local.status(), "live")["frames"], _camera(on_ray.status(), "live")["frames"]

            assert _wait_for(lambda: min(live_frames()) >= 1, 30), live_frames()
            both_from_s = time.time()
            assert _wait_for(lambda: all(_camera(s.status(), c)["state"] == "finished"
                                         for s in (local, on_ray) for c in ("a", "b")), 60)
            time.sleep(max(0.0, both_from_s + 14.0 - time.time()))  # 14 s of the ball on both
            status = on_ray.status()
            metrics = urllib.request.urlopen(f"{on_ray.metrics_server.url}/metrics", timeout=10).read().decode()
            served = json.loads(urllib.request.urlopen(f"{on_ray.metrics_server.url}/status", timeout=10).read())
            both_to_s = time.time()
        finally:
            local.stop()
            on_ray.stop()
    finally:
        server.kill()

    for camera_id in ("a", "b"):
        local_keys = _keys(tmp_path / "local.sqlite", camera_id)
        assert len(local_keys) >= 3
        assert _keys(tmp_path / "ray.sqlite", camera_id) == local_keys
        assert _camera(status, camera_id)["state"] == "finished" and _camera(status, camera_id)["frames"] == FRAMES
    # The live camera: every crossing one run saw while both watched, the other saw too, at the
    # same wall time (to within the two clients' decoding jitter and a frame or two).
    live = {name: [(e.zone, e.direction.value, wall_time_epoch_s(e.wall_time))
                   for e in read_events(tmp_path / f"{name}.sqlite") if e.camera_id == "live"]
            for name in ("local", "ray")}
    window = (both_from_s + 2.0, both_to_s - 2.0)
    for mine, theirs in (("local", "ray"), ("ray", "local")):
        inside = [e for e in live[mine] if window[0] <= e[2] <= window[1]]
        assert len(inside) >= 2, live
        for zone, direction, wall_s in inside:
            matches = [e for e in live[theirs] if e[:2] == (zone, direction) and abs(e[2] - wall_s) <= 0.5]
            assert len(matches) == 1, f"{mine} counted {zone} {direction} at {wall_s:.2f}; {theirs}: {live[theirs]}"
    # /status: every camera with its node and state; /metrics: the actors' series, merged.
    node = status["driver_node_id"]
    assert {c["id"]: c["node_id"] for c in served["cameras"]} == {"a": node, "b": node, "live": node}
    assert {c["id"]: c["state"] for c in served["cameras"]} == {"a": "finished", "b": "finished", "live": "running"}
    assert f'yolov7_track_frames_total{{camera="a"}} {float(FRAMES)}' in metrics
    assert 'yolov7_track_detector_batch_size_count{detector="detector-0"}' in metrics
    assert 'yolov7_track_actor_restarts_total{kind="camera",name="live"} 0.0' in metrics


def test_a_camera_actor_killed_mid_file_resumes_without_losing_or_repeating_events(
        ray_cluster, replay, pets_folder, tmp_path):
    events_file = tmp_path / "events.sqlite"
    data = {"detector": {"max_batch": 4, "max_wait_ms": 5}, "outputs": {"events": str(events_file), "metrics": {"port": 0}},
            "cameras": _file_cameras(pets_folder)}
    service = RayService(parse_cameras(data, tmp_path / "cams.yaml"),
                         detector_factory=lambda: PetsAndBall(replay, delay_s=0.01),
                         config=RayServiceConfig(**CONFIG))
    try:
        service.start()
        killed_at: dict = {}

        def mid_file() -> bool:
            camera = _camera(service.status(), "a")
            if camera["events"] >= 3:
                killed_at.update(camera)
                return True
            return False

        assert _wait_for(mid_file, 60, poll_s=0.1), service.status()
        assert killed_at["frames"] < FRAMES - 20, "the camera finished before it could be killed"
        ray_cluster.kill(service.camera_actor("a"), no_restart=False)
        assert service.wait(timeout_s=90), service.status()
        status = service.status()
        metrics = urllib.request.urlopen(f"{service.metrics_server.url}/metrics", timeout=10).read().decode()
    finally:
        service.stop()

    expected = _expected(pets_folder, replay)
    for camera_id in ("a", "b"):
        written = _keys(events_file, camera_id)
        assert len(set(written)) == len(written), f"camera {camera_id}: an event was written twice"
        assert written == expected[camera_id], f"camera {camera_id}: events differ from an uninterrupted run"
    a = _camera(status, "a")
    assert (a["state"], a["frames"], a["actor_restarts"]) == ("finished", FRAMES, 1), status
    assert a["resumed_after_events"] >= 3 and a["replay_mismatch"] is None
    lines = a["counts"]["lines"]["h"]
    assert lines["in"] + lines["out"] == len(expected["a"])  # the counts of an uninterrupted run
    assert status["restarts"]["camera"] == {"a": 1, "b": 0}
    assert 'yolov7_track_actor_restarts_total{kind="camera",name="a"} 1.0' in metrics


def test_a_detector_actor_killed_mid_run_the_cameras_go_on(ray_cluster, replay, pets_folder, tmp_path):
    events_file = tmp_path / "events.sqlite"
    data = {"detector": {"max_batch": 4, "max_wait_ms": 5}, "outputs": {"events": str(events_file)},
            "cameras": _file_cameras(pets_folder)}
    service = RayService(parse_cameras(data, tmp_path / "cams.yaml"),
                         detector_factory=lambda: PetsAndBall(replay, delay_s=0.01),
                         config=RayServiceConfig(detector_actors=1, **CONFIG))
    try:
        # the pool grows when the file asks for more detectors (SIGHUP)
        changes = service.reload(parse_cameras({**data, "ray": {"detectors": 2}}, tmp_path / "cams.yaml"))
        assert changes["detectors_added"] == ["detector-1"] and sorted(service.detector_actors()) == \
            ["detector-0", "detector-1"]
        service.start()
        assert _wait_for(lambda: _camera(service.status(), "a")["frames"] >= 40, 60), service.status()
        ray_cluster.kill(service.detector_actors()["detector-0"], no_restart=False)  # camera a's home
        assert service.wait(timeout_s=90), service.status()
        status = service.status()
    finally:
        service.stop()
    expected = _expected(pets_folder, replay)
    for camera_id in ("a", "b"):
        camera = _camera(status, camera_id)
        assert camera["state"] == "finished" and camera["frames"] == FRAMES, camera
        assert _keys(events_file, camera_id) == expected[camera_id]
    assert _camera(status, "a")["detect_retries"] >= 1  # its frame in flight went to detector-1
    assert status["restarts"]["detector"] == {"detector-0": 1, "detector-1": 0}
    assert {d["name"]: d["restarted"] for d in status["detectors"]} == {"detector-0": True, "detector-1": False}


# ------------------------------------------------------------------------------ no Ray without --ray
_NO_RAY_SCRIPT = """
import sys, tempfile
from pathlib import Path
import numpy as np, cv2, supervision as sv
import app.serve_cmd
from app.cameras import parse_cameras
from app.service import Service

class Empty:
    names = ["person"]
    def detect_batch(self, images):
        return [sv.Detections.empty() for _ in images]

folder = Path(tempfile.mkdtemp()) / "frames"
folder.mkdir()
for i in range(5):
    cv2.imwrite(str(folder / f"{i:03d}.png"), np.full((64, 64, 3), i, np.uint8))
cams = parse_cameras({"cameras": [{"id": "a", "source": str(folder)}]}, folder.parent / "cams.yaml")
service = Service(cams, detector=Empty())
service.start()
assert service.wait(timeout_s=30)
service.stop()
assert service.status()["cameras"][0]["frames"] == 5
app.serve_cmd._parser().parse_args(["cams.yaml"])
print(sorted(name for name in sys.modules if name == "ray" or name.startswith(("ray.", "app.ray_service"))))
"""


def test_without_ray_nothing_of_ray_is_imported():
    out = subprocess.run([sys.executable, "-c", _NO_RAY_SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_serve_ray_without_the_extra_says_what_to_install(tmp_path):
    cams = tmp_path / "cams.yaml"
    cams.write_text(json.dumps({"cameras": [{"id": "a", "source": str(tmp_path)}]}))
    script = ("import sys; sys.modules['ray'] = None  # as if the extra were not installed\n"
              "from app.cli import main; sys.exit(main(sys.argv[1:]))")
    out = subprocess.run([sys.executable, "-c", script, "serve", str(cams), "--ray"], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1] == f"yolov7-track serve: error: {INSTALL_HINT}"


# ------------------------------------------------------------------------------ pieces
def test_the_ray_section_of_the_cameras_file_is_checked_and_read(tmp_path):
    from app.cameras import CamerasFileError
    from app.ray_service.config import config_from_file

    base = {"cameras": [{"id": "a", "source": "0"}]}
    cams = parse_cameras({**base, "ray": {"detectors": 3, "detector_num_gpus": 0.5}}, tmp_path / "cams.yaml")
    config = config_from_file(cams.ray, "auto")
    assert (config.detector_actors, config.detector_num_gpus, config.address) == (3, 0.5, "auto")
    with pytest.raises(CamerasFileError, match=r"cams.yaml: ray.detectors: must be an integer >= 1, got 0"):
        parse_cameras({**base, "ray": {"detectors": 0}}, tmp_path / "cams.yaml")
    assert config_from_file({"colocate_cameras": False}).colocate_cameras is False
    with pytest.raises(CamerasFileError, match=r"ray.colocate_cameras: must be true or false"):
        parse_cameras({**base, "ray": {"colocate_cameras": "no"}}, tmp_path / "cams.yaml")
    with pytest.raises(CamerasFileError, match=r"ray: unknown key\(s\) gpus"):
        parse_cameras({**base, "ray": {"gpus": 1}}, tmp_path / "cams.yaml")


@pytest.mark.parametrize(("options", "message"), [
    ({"detector_actors": 0}, "detector_actors"), ({"detect_timeout_s": 0}, "detect_timeout_s"),
    ({"camera_num_cpus": -1}, "camera_num_cpus"), ({"camera_max_restarts": True}, "camera_max_restarts"),
    ({"address": ""}, "address")])
def test_config_is_checked(options, message):
    with pytest.raises(RayServiceConfigError, match=message):
        RayServiceConfig(**options)


def test_merged_metrics_keep_every_actor_series_apart():
    from app.metrics import ServiceMetrics

    cameras, detectors = ServiceMetrics(), [ServiceMetrics(), ServiceMetrics()]
    cameras.frame_processed("a", 0.02)
    cameras.frame_processed("b", 0.03)
    detectors[0].observe_batch(2)
    detectors[1].observe_batch(3)
    families = {f.name: f for f in merge_expositions(
        [Part({}, cameras.exposition(), required_label="camera")]
        + [Part({"detector": f"d{i}"}, m.exposition()) for i, m in enumerate(detectors)])}
    frames = {s.labels["camera"]: s.value for s in families["yolov7_track_frames"].samples if s.name.endswith("_total")}
    assert frames == {"a": 1.0, "b": 1.0}
    sums = {s.labels["detector"]: s.value for s in families["yolov7_track_detector_batch_size"].samples
            if s.name.endswith("_sum")}
    assert sums == {"d0": 2.0, "d1": 3.0}  # and not the cameras' registry's empty histogram


def test_detections_cross_the_object_store_unchanged(ray_cluster):
    """A frame sent as an object reference reaches the detector actor as the same pixels, and
    its detections come back whole (boxes, scores, classes, data)."""
    from app.cameras import CamerasFile, DetectorSpec, OutputsSpec
    from app.ray_service.camera_actor import RemoteDetectorPool
    from app.ray_service.detector_actor import DetectorWorker

    class Echo:
        names = ["x"]

        def detect_batch(self, images):  # noqa: ANN001, ANN202
            return [sv.Detections(xyxy=np.array([[0, 0, float(image.sum() % 97) + 1, 2]], np.float32),
                                  confidence=np.array([0.5], np.float32), class_id=np.array([0]),
                                  data={"class_name": np.array(["x"])}) for image in images]

    file = CamerasFile(Path("/x.yaml"), DetectorSpec(max_batch=2, max_wait_ms=1), OutputsSpec(), ())
    actor = ray_cluster.remote(DetectorWorker).options(num_cpus=0.25, max_concurrency=4).remote("d", file, Echo)
    pool = RemoteDetectorPool("cam", [("d", actor)], RayServiceConfig(**CONFIG))
    image = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    got = pool.detect(image)
    ray_cluster.kill(actor)
    want = Echo().detect_batch([image])[0]
    assert np.array_equal(got.xyxy, want.xyxy) and got.data["class_name"].tolist() == ["x"]
    assert pool.retries == 0
