"""Issue 11: counting defaults and source messages, each failure reproduced first.

- the library's lines and zones default to the robust rules (the MOT15 figure is checked in
  ``tests/test_counting_mot15.py``);
- a folder whose images are all corrupt fails at open, naming the folder, with one warning per
  corrupt file;
- the report counts the timestamp repairs the source logged;
- a stalled RTSP server, a truncated MP4 and a bow-tie zone get messages that say so;
- a line or zone outside the frame, and a self-intersecting zone, are warned about;
- with a live source ``max_frames`` counts processed frames, not captured ones.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import supervision as sv
from shared_data import shared_path

from app.cli import main
from app.counting import (
    CountingConfig,
    CountingLine,
    CountingZone,
    LineRules,
    LineSpec,
    ZoneConfigError,
    ZoneRules,
    ZoneSpec,
    parse_counting_config,
)
from app.frames import Frame, SourceStats
from app.pipeline import Pipeline, PipelineConfig
from app.sources import ImageFolderSource, SourceConfig, SourceError, open_source
from tracker import ByteTrack


# ------------------------------------------------------------------------------ helpers
class _FakeLiveSource:
    """A live FrameSource producing 96x128 frames at ``fps`` in real time until closed."""

    is_live = True

    def __init__(self, fps: float, n_frames: int = 10_000) -> None:
        self.name, self.fps, self.n_frames = "fake-live", fps, n_frames
        self.stats = SourceStats()
        self.closed = threading.Event()

    def __iter__(self) -> Iterator[Frame]:
        start = time.perf_counter()
        for i in range(self.n_frames):
            delay = start + i / self.fps - time.perf_counter()
            if self.closed.is_set() or (delay > 0 and self.closed.wait(delay)):
                return
            self.stats.frames_read += 1
            yield Frame(i, i / self.fps, np.full((96, 128, 3), i % 251, np.uint8), self.name)

    def close(self) -> None:
        self.closed.set()


def _one_box(delay_s: float = 0.0):
    def detect(image: np.ndarray) -> sv.Detections:
        if delay_s:
            time.sleep(delay_s)
        return sv.Detections(
            xyxy=np.array([[10.0, 10.0, 30.0, 50.0]], np.float32),
            confidence=np.array([0.9], np.float32),
            class_id=np.array([0]),
        )

    return detect


def _write_ts_segment(path: Path, n_frames: int, fps: int = 10) -> None:
    """A short MPEG-TS clip whose timestamps start at 0 (so two in a row make a PTS reset)."""
    with av.open(str(path), "w", format="mpegts") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(n_frames):
            image = np.full((48, 64, 3), (i * 20) % 255, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


# ------------------------------------------------------------------- 12: robust defaults
def test_library_lines_and_zones_default_to_the_robust_rules() -> None:
    line = CountingLine((0, 100), (200, 100), "road")
    zone = CountingZone([(0, 0), (100, 0), (100, 100)], "queue")
    assert line.rules == LineRules.robust() and zone.rules == ZoneRules.robust()
    lines, zones = CountingConfig(
        lines=(LineSpec("road", (0, 100), (200, 100)),),
        zones=(ZoneSpec("queue", ((0, 0), (100, 0), (100, 100))),),
    ).build(640, 480)
    assert lines[0].rules == LineRules.robust() and zones[0].rules == ZoneRules.robust()
    # The exact rules stay one argument away.
    assert CountingLine((0, 100), (200, 100), "road", rules="exact").rules == LineRules.exact()
    assert CountingZone([(0, 0), (100, 0), (100, 100)], "q", rules="exact").rules == ZoneRules()


def test_default_line_does_not_count_jitter_about_the_line() -> None:
    line = CountingLine((0, 100), (200, 100), "road")
    for i, y in enumerate((150, 120, 101, 99, 102, 98, 101, 99, 130, 150)):
        box = np.array([[95, y - 20, 105, y]], np.float32)
        line.update(sv.Detections(xyxy=box, tracker_id=np.array([1])), i / 10)
    assert (line.in_count, line.out_count) == (0, 0)


# ------------------------------------------------------------- 9: all-corrupt image folder
def test_folder_of_corrupt_images_fails_at_open_naming_the_folder(tmp_path: Path, caplog) -> None:
    for i in range(12):
        (tmp_path / f"img{i:02d}.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg " + bytes([i]))
    with caplog.at_level(logging.WARNING, logger="app.sources"):
        with pytest.raises(SourceError) as info:
            open_source(tmp_path)
    message = str(info.value)
    assert f"no readable image in {tmp_path}: 12 files, all corrupt or not images" in message
    # the one-line error says it all: no warning per file before it
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


def test_corrupt_images_before_a_good_one_are_warned_about_by_name(tmp_path: Path, caplog) -> None:
    for i in range(3):
        (tmp_path / f"img{i:02d}.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg " + bytes([i]))
    cv2.imwrite(str(tmp_path / "img03.png"), np.full((8, 8, 3), 127, np.uint8))
    with caplog.at_level(logging.WARNING, logger="app.sources"):
        source = open_source(tmp_path)
    source.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3 and all(f"img{i:02d}.jpg" in warnings[i] for i in range(3))
    assert source.stats.frames_corrupt == 3


def test_cli_on_a_corrupt_folder_exits_non_zero_with_one_line(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.png").write_bytes(b"not a png")
    status = main([str(folder), "--line", "10,10,100,10"])
    err = capsys.readouterr().err
    assert status == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"yolov7-track: error: no readable image in {folder}: 3 files")
    assert "Traceback" not in err and "no lines" not in err


def test_folder_with_a_readable_image_after_corrupt_ones_decodes_each_file_once(
    tmp_path: Path, caplog
) -> None:
    (tmp_path / "a1.png").write_bytes(b"corrupt")
    (tmp_path / "a2.png").write_bytes(b"corrupt")
    cv2.imwrite(str(tmp_path / "a3.png"), np.full((8, 8, 3), 7, np.uint8))
    cv2.imwrite(str(tmp_path / "a4.png"), np.full((8, 8, 3), 9, np.uint8))
    with caplog.at_level(logging.WARNING, logger="app.sources"):
        source = ImageFolderSource(tmp_path)
        frames = list(source)
    assert [int(f.image[0, 0, 0]) for f in frames] == [7, 9]
    assert [f.index for f in frames] == [0, 1]
    assert source.stats.frames_corrupt == 2 and source.stats.frames_read == 2
    assert caplog.text.count("cannot decode image") == 2


# ------------------------------------------------------------------ timestamp repairs
def test_report_counts_the_timestamp_repair_the_source_logged(tmp_path: Path, caplog) -> None:
    first, second = tmp_path / "a.ts", tmp_path / "b.ts"
    _write_ts_segment(first, 10)
    _write_ts_segment(second, 10)
    joined = tmp_path / "joined.ts"  # the second half restarts at PTS 0
    joined.write_bytes(first.read_bytes() + second.read_bytes())

    source = open_source(joined)
    with caplog.at_level(logging.DEBUG, logger="app"):
        pipeline = Pipeline(source, _one_box(), ByteTrack(frame_rate=10))
        results = list(pipeline.results())
    logged = [r for r in caplog.records if "repair" in r.getMessage() and r.name.startswith("app.sources")]
    assert len(results) == 20
    assert np.all(np.diff([r.timestamp_s for r in results]) > 0)
    assert len(logged) == 1
    assert pipeline.report.stats.timestamp_repairs == len(logged) == 1
    assert "1 timestamp repairs" in pipeline.report.summary()


# ------------------------------------------------------------------- source messages
def test_stalled_rtsp_server_is_reported_as_a_stall_naming_the_url() -> None:
    # A server that accepts TCP connections (the kernel's backlog) and never answers.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        url = f"rtsp://viewer:s3cr3t@127.0.0.1:{server.getsockname()[1]}/stream"
        with pytest.raises(SourceError) as info:
            open_source(url, SourceConfig(timeout_s=1.0))
    message = str(info.value)
    assert message.startswith("cannot open rtsp://viewer:***@127.0.0.1:")
    assert "no data from the stream for" in message and "stalled" in message
    assert "Invalid data" not in message and "s3cr3t" not in message


def test_truncated_mp4_is_reported_as_truncated(tmp_path: Path) -> None:
    clip = shared_path("data", "videos", "traffic_street_fixedcam.mp4")  # moov after mdat
    truncated = tmp_path / "recording.mp4"
    truncated.write_bytes(clip.read_bytes()[:1_000_000])  # recording stopped mid-way
    with pytest.raises(SourceError) as info:
        open_source(truncated)
    message = str(info.value)
    assert message.startswith(f"cannot open {truncated}: the file looks truncated or incomplete")
    assert "unfinished recording" in message and "'moov'" in message


def test_not_a_video_is_not_called_truncated(tmp_path: Path) -> None:
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is not a video\n")
    with pytest.raises(SourceError, match="cannot open .*notes.mp4") as info:
        open_source(fake)
    assert "truncated" not in str(info.value)


def test_bow_tie_zone_is_called_self_intersecting_and_named() -> None:
    data = {"zones": [{"name": "entrance", "polygon": [[0, 0], [100, 100], [100, 0], [0, 100]]}]}
    with pytest.raises(ZoneConfigError) as info:
        parse_counting_config(data, source="zones.yaml")
    message = str(info.value)
    assert message.startswith("zones.yaml: zones[0].polygon: zone 'entrance': polygon is self-intersecting")
    assert "collinear" not in message
    with pytest.raises(ValueError, match="zone 'entrance': polygon is self-intersecting"):
        CountingZone([(0, 0), (100, 100), (100, 0), (0, 100)], "entrance")


def test_self_intersecting_zone_with_area_is_warned_about(caplog) -> None:
    config = CountingConfig(zones=(ZoneSpec("z8", ((0, 0), (200, 0), (200, 200), (100, -100), (0, 200))),))
    with caplog.at_level(logging.WARNING, logger="app.counting"):
        config.build(640, 480)
    assert "zone 'z8': polygon is self-intersecting" in caplog.text


@pytest.mark.parametrize(
    ("config", "outside"),
    [
        (CountingConfig(lines=(LineSpec("far", (700, 10), (900, 400)),)), "line 'far'"),
        (CountingConfig(lines=(LineSpec("above", (-50, -10), (700, -1)),)), "line 'above'"),
        (CountingConfig(zones=(ZoneSpec("east", ((650, 0), (900, 0), (900, 100))),)), "zone 'east'"),
    ],
)
def test_line_or_zone_outside_the_frame_is_warned_about(config, outside: str, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="app.counting"):
        config.build(640, 480)
    assert f"{outside}" in caplog.text and "entirely outside the 640x480 frame" in caplog.text


@pytest.mark.parametrize(
    "config",
    [
        CountingConfig(lines=(LineSpec("across", (-100, 240), (800, 240)),)),  # ends outside
        CountingConfig(zones=(ZoneSpec("all", ((-10, -10), (900, -10), (900, 900), (-10, 900))),)),
        CountingConfig(lines=(LineSpec("edge", (0, 0), (0, 480)),)),  # on the border
    ],
)
def test_line_or_zone_meeting_the_frame_is_not_warned_about(config, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="app.counting"):
        config.build(640, 480)
    assert "outside" not in caplog.text


def test_pipeline_warns_about_a_line_outside_the_first_frame(caplog) -> None:
    source = _FakeLiveSource(fps=100.0, n_frames=3)
    counting = CountingConfig(lines=(LineSpec("door", (400, 10), (500, 10)),))  # frame is 128x96
    with caplog.at_level(logging.WARNING, logger="app.counting"):
        list(Pipeline(source, _one_box(), ByteTrack(frame_rate=100), counting=counting).results())
    assert "line 'door' ((400, 10) -> (500, 10) px) lies entirely outside the 128x96 frame" in caplog.text


# ----------------------------------------------------------------- max_frames, live
def test_live_max_frames_counts_processed_frames_not_captured_ones() -> None:
    source = _FakeLiveSource(fps=200.0)  # a frame every 5 ms
    pipeline = Pipeline(source, _one_box(delay_s=0.03), ByteTrack(frame_rate=200),
                        config=PipelineConfig(max_frames=10, capture_queue_frames=4))
    results = list(pipeline.results())
    stats = pipeline.report.stats
    assert len(results) == 10 and stats.frames_out == 10 and stats.frames_inferred == 10
    assert stats.frames_dropped > 0  # inference (30 ms) is slower than the camera (5 ms)
    assert stats.frames_in == stats.frames_out + stats.frames_dropped + stats.frames_discarded
    assert pipeline.report.status == "finished"
    assert source.closed.is_set()
