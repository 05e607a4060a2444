"""``yolov7-track SOURCE ...``: every shared clip end to end, bad input in one line, a clean
Ctrl-C, and events surviving SIGKILL.

The detector is the official-format yolov7-tiny fixture (deterministic random weights: real
inference, junk detections) at ``--img-size 160`` so that all four clips run in about a minute
and a half on two CPU cores. Junk detections still give tracks, so a zone over the whole frame
gets enter/exit events — enough to exercise the event path from counting to the files.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import av
import pytest
import torch

from app.assembly import ClassFilterError
from app.cli import UserInputError, main, parse_line_spec, resolve_classes
from app.sinks import read_events
from shared_data import shared_path

REPO_ROOT = Path(__file__).resolve().parents[1]
CLIPS = (
    "vtest_PETS09-S2L1_480x360.avi",
    "traffic_street_fixedcam.mp4",
    "pedestrians_overhead_walking.mp4",
    "pedestrians_shopping_street.mp4",
)
IMG_SIZE = "160"
WHOLE_FRAME_ZONE = {"zones": [{"name": "all", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]]}]}


@pytest.fixture(scope="module")
def weights() -> str:
    return str(shared_path("fixtures", "yolov7", "yolov7-tiny.official-format.pt"))


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the machine's cores are shared
    yield
    torch.set_num_threads(before)


@pytest.fixture
def zones_file(tmp_path: Path) -> Path:
    path = tmp_path / "zones.json"
    path.write_text(json.dumps(WHOLE_FRAME_ZONE), encoding="utf-8")
    return path


def _frame_count(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


# ------------------------------------------------------------------------------ every clip
@pytest.mark.parametrize(
    ("clip", "tracker", "events_ext"),
    [
        (CLIPS[0], "bytetrack", "sqlite"),
        (CLIPS[1], "sort", "csv"),
        (CLIPS[2], "sort", "jsonl"),
        (CLIPS[3], "sort", "sqlite"),
    ],
)
def test_cli_writes_annotated_video_with_every_frame_and_events(
    clip: str, tracker: str, events_ext: str, weights: str, zones_file: Path, tmp_path: Path, capsys
) -> None:
    video = shared_path("data", "videos", clip)
    output, events, report_path = tmp_path / "out.mp4", tmp_path / f"events.{events_ext}", tmp_path / "report.json"
    status = main([
        str(video), "--weights", weights, "--img-size", IMG_SIZE, "--device", "cpu",
        "--tracker", tracker, "--line", "0,0.5,1,0.5,middle", "--zones", str(zones_file),
        "--output", str(output), "--events", str(events), "--report", str(report_path), "--no-progress",
    ])
    stdout = capsys.readouterr().out
    assert status == 0
    assert _frame_count(output) == _frame_count(video)
    report = json.loads(report_path.read_text())
    assert report["status"] == "finished"
    assert report["stats"]["frames_in"] == report["stats"]["frames_out"] == report["video_frames"] == _frame_count(video)
    written = read_events(events)
    assert len(written) == report["events_total"] > 0
    assert {e.zone for e in written} <= {"middle", "all"}
    # the counts table, then the summary
    assert re.search(r"^name\s+class\s+in\s+out$", stdout, re.M)
    assert re.search(r"^middle\s+all\s+\d+\s+\d+$", stdout, re.M)
    assert re.search(r"^all\s+all\s+\d+\s+\d+\s+\d+$", stdout, re.M)
    enters = sum(e.direction.value == "enter" for e in written)
    assert re.search(rf"^all\s+all\s+{enters}\s+", stdout, re.M)
    assert "finished:" in stdout


# ------------------------------------------------------------------------------ bad input
def _bad_zone_file(tmp_path: Path) -> str:
    path = tmp_path / "bad.yaml"
    path.write_text("lines:\n  - name: a\n    start: [0, 0]\n    end: oops\n", encoding="utf-8")
    return str(path)


def _text_file(tmp_path: Path) -> str:
    path = tmp_path / "weights.pt"
    path.write_text("not a checkpoint", encoding="utf-8")
    return str(path)


BAD_INPUT = [
    # (id, argv builder, exit status, words the message must contain)
    ("missing-file", lambda t, w, v: [str(t / "nope.mp4"), "--weights", w], 1, ["nope.mp4"]),
    ("unreachable-url", lambda t, w, v: ["rtsp://127.0.0.1:9/stream", "--weights", w], 1, ["127.0.0.1:9"]),
    ("malformed-line", lambda t, w, v: [v, "--line", "10,20,30"], 2, ["--line", "x1,y1,x2,y2"]),
    ("line-not-numbers", lambda t, w, v: [v, "--line", "a,b,c,d"], 2, ["--line", "numbers"]),
    ("unreadable-weights", lambda t, w, v: [v, "--weights", _text_file(t)], 1, ["weights.pt"]),
    ("missing-weights", lambda t, w, v: [v, "--weights", str(t / "missing.pt")], 1, ["missing.pt"]),
    ("bad-zone-file", lambda t, w, v: [v, "--weights", w, "--zones", _bad_zone_file(t)], 1, ["lines[0].end"]),
    ("bad-events-ext", lambda t, w, v: [v, "--weights", w, "--events", str(t / "e.txt")], 1, ["e.txt", ".jsonl"]),
    ("unknown-class", lambda t, w, v: [v, "--weights", w, "--classes", "unicorn"], 1, ["unicorn", "person"]),
    ("bad-img-size", lambda t, w, v: [v, "--weights", w, "--img-size", "100"], 1, ["img_size", "128"]),
    ("bad-conf", lambda t, w, v: [v, "--conf", "2"], 2, ["--conf"]),
    ("bad-output", lambda t, w, v: [v, "--weights", w, "--output", str(t / "out.txt")], 1, ["out.txt", ".mp4"]),
    ("unknown-tracker", lambda t, w, v: [v, "--weights", w, "--tracker", "deepsort"], 1, ["deepsort", "bytetrack, sort"]),
    ("bad-tracker-param", lambda t, w, v: [v, "--weights", w, "--tracker", "sort", "--tracker-param", "max_age=-1"],
     1, ["max_age", ">= 0"]),
]


@pytest.mark.parametrize(("argv", "status", "words"), [b[1:] for b in BAD_INPUT], ids=[b[0] for b in BAD_INPUT])
def test_bad_input_is_one_line_without_traceback(argv, status, words, weights, tmp_path: Path, capsys) -> None:
    video = str(shared_path("data", "videos", CLIPS[0]))
    with pytest.raises(SystemExit) if status == 2 else _no_raise() as raised:
        result = main(argv(tmp_path, weights, video))
    result = raised.value.code if status == 2 else result
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert result == status
    assert len(lines) == 1, err
    assert lines[0].startswith("yolov7-track: error: ") and "Traceback" not in err
    for word in words:
        assert word in lines[0]


class _no_raise:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_offline_registry_name_tells_to_pass_weights(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("YOLOV7_TRACK_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("YOLOV7_TRACK_WEIGHTS_URL", "http://127.0.0.1:9")
    video = str(shared_path("data", "videos", CLIPS[0]))
    assert main([video, "--weights", "yolov7-tiny"]) == 1  # official name, not cached, no network
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and "--weights" in lines[0]


# ------------------------------------------------------------------------------ --line, --classes
@pytest.mark.parametrize(
    ("text", "start", "end", "name", "normalized"),
    [
        ("0,300,640,300,road", (0, 300), (640, 300), "road", False),
        ("0, 0.5, 1, 0.5", (0, 0.5), (1, 0.5), "line3", True),
        ("0.5,0,0.5,1,door", (0.5, 0), (0.5, 1), "door", True),
        ("0,0,1,2", (0, 0), (1, 2), "line3", False),  # 2 > 1: pixels
        ("10.5,20,30,40.25,a b", (10.5, 20), (30, 40.25), "a b", False),
    ],
)
def test_line_specs(text, start, end, name, normalized) -> None:
    spec, is_normalized = parse_line_spec(text, "line3")
    assert (spec.start, spec.end, spec.name, is_normalized) == (start, end, name, normalized)


@pytest.mark.parametrize(
    ("text", "message"),
    [("1,2,3", "x1,y1,x2,y2"), ("1,2,3,4,5,6", "x1,y1,x2,y2"), ("a,2,3,4", "numbers"),
     ("1,2,3,inf", "finite"), ("5,5,5,5", "same point"), ("-1,0,10,10", ">= 0"), ("0,0,1,1,", "name")],
)
def test_malformed_line_specs(text, message) -> None:
    with pytest.raises(UserInputError, match=re.escape(message)):
        parse_line_spec(text, "line1")


def test_classes_by_name_or_id() -> None:
    names = ["person", "bicycle", "car", "motorcycle"]
    assert resolve_classes(None, names) is None
    assert resolve_classes(["Person", "car"], names) == (0, 2)
    assert resolve_classes(["3,0", "car", "0"], names) == (3, 0, 2)
    with pytest.raises(ClassFilterError, match="--classes: id 9"):
        resolve_classes(["9"], names)


# ------------------------------------------------------------------------------ subprocesses
_EVENT_LINE = re.compile(
    r"^(?P<when>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) DEBUG app\.pipeline: counted event "
    r"zone=(?P<zone>\S+) track_id=(?P<track>\d+) direction=(?P<direction>\w+) frame_index=(?P<frame>\d+)"
)


class _CliProcess:
    """The CLI in a child process; stderr is read continuously and each count event it logs is
    kept with the wall-clock time at which it was counted (the log record's time)."""

    def __init__(self, args: list[str]) -> None:
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", *args, "--no-progress", "-v"],
            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.events: list[tuple[float, tuple[str, int, str, int]]] = []
        self.stderr_lines: list[str] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            match = _EVENT_LINE.match(line)
            with self._lock:
                self.stderr_lines.append(line)
                if match:
                    when = datetime.strptime(match["when"], "%Y-%m-%d %H:%M:%S,%f").timestamp()
                    key = (match["zone"], int(match["track"]), match["direction"], int(match["frame"]))
                    self.events.append((when, key))

    def events_counted_before(self, wall_time: float) -> list[tuple[str, int, str, int]]:
        with self._lock:
            return [key for when, key in self.events if when <= wall_time]

    def wait_until(self, condition, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if self.proc.poll() is not None:
                pytest.fail(f"the CLI ended early (status {self.proc.returncode}):\n{''.join(self.stderr_lines[-20:])}")
            if time.monotonic() > deadline:
                self.proc.kill()
                pytest.fail(f"condition not reached in {timeout_s} s:\n{''.join(self.stderr_lines[-20:])}")
            time.sleep(0.05)

    def finish(self, timeout_s: float = 60) -> tuple[int, str]:
        stdout, _ = self.proc.communicate(timeout=timeout_s)
        self._reader.join(timeout=5)
        return self.proc.returncode, stdout


def _keys(path: Path) -> set[tuple[str, int, str, int]]:
    return {(e.zone, e.track_id, e.direction.value, e.frame_index) for e in read_events(path)}


def test_sigkill_mid_run_keeps_every_event_older_than_one_second(weights: str, zones_file: Path, tmp_path: Path) -> None:
    """The process is killed with SIGKILL while it counts; every event it had counted more
    than one second before the kill is in both the SQLite and the JSONL file."""
    sqlite_path, jsonl_path = tmp_path / "events.sqlite", tmp_path / "events.jsonl"
    cli = _CliProcess([
        str(shared_path("data", "videos", CLIPS[0])), "--weights", weights, "--img-size", IMG_SIZE,
        "--device", "cpu", "--tracker", "sort", "--zones", str(zones_file),
        "--events", str(sqlite_path), "--events", str(jsonl_path),
    ])
    # Run until a good number of events are more than 1.5 s old, then kill.
    cli.wait_until(lambda: len(cli.events_counted_before(time.time() - 1.5)) >= 10, timeout_s=180)
    killed_at = time.time()
    cli.proc.send_signal(signal.SIGKILL)
    status, stdout = cli.finish()
    assert status == -signal.SIGKILL
    assert "finished:" not in stdout  # really killed mid-run

    must_have = set(cli.events_counted_before(killed_at - 1.0))
    assert len(must_have) >= 10
    for path in (sqlite_path, jsonl_path):
        missing = must_have - _keys(path)
        assert not missing, f"{path.name} lacks {len(missing)} events counted > 1 s before SIGKILL: {sorted(missing)[:5]}"


def test_ctrl_c_stops_cleanly_with_finalized_files_and_counts(weights: str, zones_file: Path, tmp_path: Path) -> None:
    output, events, report_path = tmp_path / "out.mp4", tmp_path / "events.sqlite", tmp_path / "report.json"
    cli = _CliProcess([
        str(shared_path("data", "videos", CLIPS[0])), "--weights", weights, "--img-size", IMG_SIZE,
        "--device", "cpu", "--tracker", "sort", "--zones", str(zones_file), "--line", "0,0.5,1,0.5,middle",
        "--output", str(output), "--events", str(events), "--report", str(report_path),
    ])
    cli.wait_until(lambda: len(cli.events) >= 5, timeout_s=180)
    cli.proc.send_signal(signal.SIGINT)
    status, stdout = cli.finish()
    assert status == 130
    report = json.loads(report_path.read_text())
    assert report["status"] == "stopped" and report["error"] is None
    assert 0 < report["stats"]["frames_out"] < 795
    assert _frame_count(output) == report["video_frames"] == report["stats"]["frames_out"]
    assert len(read_events(events)) == report["events_total"] > 0
    assert re.search(r"^middle\s+all\s+\d+\s+\d+$", stdout, re.M) and "stopped:" in stdout


def test_show_without_a_display_is_one_line(weights: str, capsys, monkeypatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    video = str(shared_path("data", "videos", CLIPS[0]))
    assert main([video, "--weights", weights, "--show"]) == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and "--show cannot open a window" in lines[0]


def test_bundled_sample_is_the_shared_clip_with_its_licence_and_runs(weights: str, tmp_path: Path, capsys) -> None:
    sample = REPO_ROOT / "assets" / "samples" / "traffic_street_fixedcam.mp4"
    assert sample.read_bytes() == shared_path("data", "videos", "traffic_street_fixedcam.mp4").read_bytes()
    notice = (REPO_ROOT / "assets" / "samples" / "NOTICE.md").read_text(encoding="utf-8")
    assert "MIT License" in notice and "ahmetozlu/vehicle_counting_tensorflow" in notice
    # the command the notice suggests (with the fixture weights and 24 frames)
    status = main([str(sample), "--weights", weights, "--img-size", IMG_SIZE, "--line", "640,230,150,230,road",
                   "--classes", "car", "truck", "bus", "motorcycle", "--output", str(tmp_path / "t.mp4"),
                   "--events", str(tmp_path / "t.csv"), "--max-frames", "24", "--no-progress"])
    assert status == 0 and _frame_count(tmp_path / "t.mp4") == 24
    assert re.search(r"^road\s+all\s+\d+\s+\d+$", capsys.readouterr().out, re.M)
