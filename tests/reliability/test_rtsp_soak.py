"""Issue #11: the RTSP soak as a test. The CLI counts a live RTSP stream while its server is
killed three times and frozen (SIGSTOP) three times; at the end every event it counted is in both
event files and the annotated MP4 plays to its last frame.

The server is the local GStreamer RTSP server of ``tests/rtsp_server.py``; the detector is the
official-format yolov7-tiny fixture at ``--img-size 160`` (junk detections still make tracks that
enter and leave a whole-frame zone, which is all the event path needs).
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
from pathlib import Path

import av
import pytest
from rtsp_server import RtspServerUnavailableError, RtspTestServer, wait_until

from app.sinks import read_events
from shared_data import shared_path

REPO_ROOT = Path(__file__).resolve().parents[2]
KILLS = STALLS = 3
_EVENT = re.compile(r"counted (?:at end of stream )?event zone=(\S+) track_id=(\d+) direction=(\w+) frame_index=(\d+)")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


class _Cli:
    """The CLI in a child process; the count events it logs are collected as they come."""

    def __init__(self, args: list[str]) -> None:
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen([sys.executable, "-m", "app.cli", *args, "--no-progress", "-v"],
                                     cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.events: list[tuple[str, int, str, int]] = []
        self.tail: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.tail = [*self.tail[-30:], line]
            match = _EVENT.search(line)
            if match and "DEBUG app.pipeline" in line:
                self.events.append((match[1], int(match[2]), match[3], int(match[4])))

    def alive(self) -> bool:
        return self.proc.poll() is None


def _keys(path: Path) -> list[tuple[str, int, str, int]]:
    return [(e.zone, e.track_id, e.direction.value, e.frame_index) for e in read_events(path)]


def _frame_count(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def test_rtsp_soak_three_kills_three_stalls_loses_nothing(tmp_path: Path) -> None:
    server = RtspTestServer(width=320, height=240, fps=15)
    try:
        server.start()
    except RtspServerUnavailableError as error:
        server.kill()
        pytest.fail(f"RTSP test server unavailable: {error}", pytrace=False)
    zones = tmp_path / "zones.json"
    zones.write_text(json.dumps({"zones": [{"name": "all", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]]}]}))
    sqlite_path, jsonl_path = tmp_path / "events.sqlite", tmp_path / "events.jsonl"
    video, report_path = tmp_path / "soak.mp4", tmp_path / "report.json"
    weights = str(shared_path("fixtures", "yolov7", "yolov7-tiny.official-format.pt"))
    cli = _Cli([server.url, "--weights", weights, "--img-size", "160", "--device", "cpu", "--tracker", "sort",
                "--zones", str(zones), "--events", str(sqlite_path), "--events", str(jsonl_path),
                "--output", str(video), "--report", str(report_path)])
    try:
        assert wait_until(lambda: len(cli.events) >= 3 or not cli.alive(), 90), "".join(cli.tail)
        for _ in range(KILLS):
            server.kill()
            time.sleep(1.5)
            server.start()
            before = len(cli.events)
            assert wait_until(lambda: len(cli.events) > before or not cli.alive(), 60), "".join(cli.tail)
        for _ in range(STALLS):
            server.stop()
            time.sleep(6.0)  # past the 5 s stall timeout
            server.cont()
            before = len(cli.events)
            assert wait_until(lambda: len(cli.events) > before or not cli.alive(), 60), "".join(cli.tail)
        assert cli.alive(), "".join(cli.tail)
        cli.proc.send_signal(signal.SIGTERM)
        cli.proc.wait(timeout=60)  # not communicate(): the reader thread owns stderr
    finally:
        if cli.alive():
            cli.proc.kill()
        server.kill()
    cli._reader.join(timeout=5)
    assert cli.proc.returncode == 128 + signal.SIGTERM, "".join(cli.tail)
    report = json.loads(report_path.read_text())
    assert report["stats"]["reconnects"] >= KILLS + STALLS
    assert report["events_total"] == len(cli.events) > 0
    for path in (sqlite_path, jsonl_path):
        assert _keys(path) == cli.events, f"{path.name} differs from the events counted"
    assert _frame_count(video) == report["video_frames"] > 0
