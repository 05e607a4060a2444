"""Frame sources: video files, image folders, spec parsing, timestamps, live reconnect logic.

The live reconnect logic is exercised here without a network by a :class:`LiveSource` whose
"camera" is a local clip (every end of the clip is a dropped connection); the RTSP tests in
``test_rtsp.py`` do the same against a real server.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
from shared_data import shared_path

from app.frames import Frame, FrameSource
from app.sources import (
    ImageFolderSource,
    LiveSource,
    SourceConfig,
    SourceError,
    SourceKind,
    SourceNotFoundError,
    VideoFileSource,
    classify_source,
    mask_credentials,
    open_source,
)
from app.sources.decode import open_video_stream
from app.sources.files import natural_sort_key
from app.sources.spec import stream_options
from app.sources.timestamps import BestEffortTimestamp, MonotonicClock

# name -> (frames, height, width, nominal fps); from ../shared/README.md.
CLIPS = {
    "vtest_PETS09-S2L1_480x360.avi": (795, 360, 480, 10.0),
    "traffic_street_fixedcam.mp4": (905, 352, 640, 24.013),
    "pedestrians_overhead_walking.mp4": (341, 720, 1280, 25.0),
    "pedestrians_shopping_street.mp4": (332, 480, 854, 25.0),
}


def clip_path(name: str) -> Path:
    return shared_path("data", "videos", name)


# ---- video files --------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CLIPS))
def test_clip_decodes_every_frame_with_increasing_timestamps(name: str) -> None:
    expected_frames, height, width, fps = CLIPS[name]
    source = open_source(clip_path(name))
    assert isinstance(source, VideoFileSource) and isinstance(source, FrameSource)
    assert source.is_live is False
    assert source.fps == pytest.approx(fps, rel=1e-3)
    assert source.frame_count == expected_frames

    indexes, timestamps = [], []
    first: Frame | None = None
    for frame in source:
        if first is None:
            first = frame
        indexes.append(frame.index)
        timestamps.append(frame.timestamp_s)

    assert indexes == list(range(expected_frames))
    assert timestamps[0] == 0.0
    assert np.all(np.diff(timestamps) > 0), "timestamps must strictly increase"
    # Constant-rate clips: the last frame sits at (n - 1) / fps, within one frame.
    assert timestamps[-1] == pytest.approx((expected_frames - 1) / fps, abs=1.0 / fps)
    assert first is not None and first.source == str(clip_path(name))
    assert first.image.shape == (height, width, 3)
    assert first.image.dtype == np.uint8 and first.image.flags["C_CONTIGUOUS"]
    assert 20.0 < float(first.image.mean()) < 235.0  # a picture, not a blank or garbage frame
    assert source.stats.frames_read == expected_frames
    assert source.stats.frames_corrupt == 0
    assert source.stats.connection_state == "closed"


def test_avi_with_b_frames_gets_display_order_times() -> None:
    """The PETS AVI has no real PTS; FFmpeg's guessed ones are out of order after B-frame
    reordering (1, 4, 3, 5, 2, ...). Frame i must still be at exactly i / 10 s."""
    source = open_source(clip_path("vtest_PETS09-S2L1_480x360.avi"))
    timestamps = [frame.timestamp_s for frame in source]
    np.testing.assert_allclose(timestamps, np.arange(795) / 10.0, atol=1e-9)


def test_frames_are_bgr() -> None:
    """The traffic clip: a street under a sky; check the colour order on the decoded frame by
    comparing with OpenCV's own decode of the same frame (both BGR)."""
    path = clip_path("traffic_street_fixedcam.mp4")
    ours = next(iter(open_source(path))).image
    capture = cv2.VideoCapture(str(path))
    ok, reference = capture.read()
    capture.release()
    assert ok
    # Decoders may differ by rounding; a swapped channel order would differ by tens.
    channel_means_ours = ours.reshape(-1, 3).mean(axis=0)
    channel_means_ref = reference.reshape(-1, 3).mean(axis=0)
    np.testing.assert_allclose(channel_means_ours, channel_means_ref, atol=2.0)
    assert abs(channel_means_ours[0] - channel_means_ours[2]) > 5.0  # the test can tell B from R


def test_corrupt_packets_are_counted_and_decoding_goes_on(tmp_path: Path, caplog) -> None:
    data = bytearray(clip_path("traffic_street_fixedcam.mp4").read_bytes())
    rng = np.random.default_rng(0)
    for start in (len(data) // 3, len(data) // 2, 2 * len(data) // 3):
        data[start:start + 20_000] = rng.integers(0, 256, 20_000, dtype=np.uint8).tobytes()
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(bytes(data))

    with caplog.at_level(logging.WARNING, logger="app.sources"):
        source = open_source(broken)
        frames = [(frame.index, frame.timestamp_s) for frame in source]

    assert source.stats.frames_corrupt >= 1
    assert "skipped" in caplog.text
    assert 850 <= len(frames) < 905  # most frames survive; a few packets are lost
    indexes, timestamps = zip(*frames)
    assert list(indexes) == list(range(len(frames)))
    assert np.all(np.diff(timestamps) > 0)
    assert timestamps[-1] == pytest.approx(37.646, abs=0.1)  # decoded to the end of the file


def test_close_from_another_thread_stops_a_file() -> None:
    source = open_source(clip_path("traffic_street_fixedcam.mp4"))
    seen = []
    for frame in source:
        seen.append(frame.index)
        if frame.index == 9:
            closer = threading.Thread(target=source.close)
            closer.start()
            closer.join()
    assert len(seen) == 10
    assert source.stats.connection_state == "closed"


def test_a_source_iterates_once() -> None:
    source = open_source(clip_path("pedestrians_shopping_street.mp4"))
    for _ in source:
        break
    with pytest.raises(SourceError, match="only once"):
        next(iter(source))


def test_missing_file_error_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "clip.mp4"
    with pytest.raises(SourceNotFoundError, match="clip.mp4") as info:
        open_source(missing)
    assert isinstance(info.value, FileNotFoundError)
    assert str(missing) in str(info.value)


def test_unreadable_file_is_a_source_error(tmp_path: Path) -> None:
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is not a video\n")
    with pytest.raises(SourceError, match="cannot open .*notes.mp4"):
        open_source(fake)


# ---- image folders ----------------------------------------------------------------------


def _frame_image(value: int) -> np.ndarray:
    image = np.zeros((24, 32, 3), np.uint8)
    image[:, :, 0] = value  # blue
    image[:8, :, 2] = 255 - value  # a red band, so channel order matters
    return image


def test_image_folder_in_natural_order_with_a_corrupt_file(tmp_path: Path, caplog) -> None:
    for number in (1, 2, 10):
        cv2.imwrite(str(tmp_path / f"frame{number}.png"), _frame_image(number * 10))
    (tmp_path / "frame3.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (tmp_path / "notes.txt").write_text("ignored: not an image suffix")
    (tmp_path / "sub").mkdir()

    with caplog.at_level(logging.WARNING, logger="app.sources"):
        source = open_source(tmp_path, SourceConfig(folder_fps=10.0))
        frames = list(source)

    assert isinstance(source, ImageFolderSource)
    assert source.fps == 10.0 and source.frame_count == 4 and not source.is_live
    assert [frame.index for frame in frames] == [0, 1, 2]
    assert [frame.timestamp_s for frame in frames] == [0.0, 0.1, 0.2]
    for frame, number in zip(frames, (1, 2, 10)):  # frame3.jpg is corrupt, skipped
        np.testing.assert_array_equal(frame.image, _frame_image(number * 10))
    assert source.stats.frames_corrupt == 1 and source.stats.frames_read == 3
    assert "frame3.jpg" in caplog.text


def test_empty_image_folder_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "readme.md").write_text("no images")
    with pytest.raises(SourceError, match="no images in folder"):
        open_source(tmp_path)


def test_natural_sort_key_orders_numbers_by_value() -> None:
    names = ["img10.png", "img2.png", "IMG1.png", "img2b.png", "a.png"]
    assert sorted(names, key=lambda n: natural_sort_key(Path(n))) == [
        "a.png", "IMG1.png", "img2.png", "img2b.png", "img10.png"]


# ---- spec parsing, names, options, config ------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "kind"),
    [
        (0, SourceKind.WEBCAM),
        (3, SourceKind.WEBCAM),
        ("1", SourceKind.WEBCAM),
        ("rtsp://10.0.0.5:554/stream1", SourceKind.STREAM),
        ("RTSP://cam/stream", SourceKind.STREAM),
        ("rtsps://cam/stream", SourceKind.STREAM),
        ("rtmp://live.example/app/key", SourceKind.STREAM),
        ("http://cam/mjpeg", SourceKind.STREAM),
        ("https://example.com/live.m3u8", SourceKind.STREAM),
        ("udp://239.0.0.1:1234", SourceKind.STREAM),
        ("tcp://127.0.0.1:9000", SourceKind.STREAM),
        ("video.mp4", SourceKind.VIDEO_FILE),
        ("dir/clip.avi", SourceKind.VIDEO_FILE),
        (Path("0"), SourceKind.VIDEO_FILE),  # a Path is a path even if it looks like an index
        ("./0", SourceKind.VIDEO_FILE),
    ],
)
def test_classify_source(spec, kind: SourceKind) -> None:
    assert classify_source(spec) is kind


def test_classify_existing_directory_as_image_folder(tmp_path: Path) -> None:
    assert classify_source(tmp_path) is SourceKind.IMAGE_FOLDER
    assert classify_source(str(tmp_path)) is SourceKind.IMAGE_FOLDER


@pytest.mark.parametrize(("spec", "message"), [
    ("ftp://host/clip.mp4", "unsupported URL scheme 'ftp'"),
    ("file:///tmp/clip.mp4", "unsupported URL scheme 'file'"),
    (-1, "webcam index must be >= 0"),
    (True, "must be a path, URL or webcam index"),
])
def test_classify_rejects(spec, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        classify_source(spec)


@pytest.mark.parametrize(("url", "masked"), [
    ("rtsp://admin:hunter2@10.0.0.5:554/stream1", "rtsp://admin:***@10.0.0.5:554/stream1"),
    ("rtsp://:only-pass@cam/s", "rtsp://:***@cam/s"),
    ("rtsp://user@cam/s", "rtsp://user@cam/s"),
    ("http://u:p%40ss@[::1]:8080/x?y=1", "http://u:***@[::1]:8080/x?y=1"),
    ("rtsp://cam/stream", "rtsp://cam/stream"),
    ("/videos/clip.mp4", "/videos/clip.mp4"),
])
def test_mask_credentials(url: str, masked: str) -> None:
    assert mask_credentials(url) == masked


@pytest.mark.parametrize(("url", "expected"), [
    ("rtsp://cam/s", {"rtsp_transport": "tcp", "timeout": "2500000"}),
    ("rtsps://cam/s", {"rtsp_transport": "tcp", "timeout": "2500000"}),
    # RTMP's own ``timeout`` would switch FFmpeg into listen mode: only rw_timeout.
    ("rtmp://host/app/key", {"rw_timeout": "2500000"}),
    ("http://cam/mjpeg", {"timeout": "2500000", "rw_timeout": "2500000"}),
    ("udp://239.0.0.1:1234", {"timeout": "2500000"}),
    ("tcp://127.0.0.1:9000", {"timeout": "2500000"}),
])
def test_stream_options_always_bound_reads(url: str, expected: dict) -> None:
    assert stream_options(url, SourceConfig(timeout_s=5.0)) == expected


@pytest.mark.parametrize(("field", "value"), [
    ("timeout_s", 0.0),
    ("timeout_s", float("nan")),
    ("reconnect_initial_s", -1.0),
    ("reconnect_max_s", 0.1),  # below reconnect_initial_s
    ("max_reconnect_attempts", -1),
    ("rtsp_transport", "quic"),
    ("folder_fps", 0),
    ("live_buffer_frames", 0),
    ("webcam_video_size", (0, 480)),
    ("webcam_fps", -5.0),
])
def test_config_validation_names_the_field(field: str, value) -> None:
    with pytest.raises(ValueError, match=field):
        SourceConfig(**{field: value})


def test_backoff_doubles_up_to_the_cap() -> None:
    config = SourceConfig(reconnect_initial_s=0.5, reconnect_max_s=4.0)
    assert [config.backoff_delay_s(a) for a in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert config.backoff_delay_s(10_000) == 4.0
    assert config.read_timeout_s == 2.5


def test_missing_webcam_names_the_device() -> None:
    with pytest.raises(SourceNotFoundError, match="/dev/video97"):
        open_source(97)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_stream_fails_fast_without_leaking_the_password(caplog) -> None:
    url = f"rtsp://admin:s3cr3t@127.0.0.1:{_free_port()}/stream"
    started = time.monotonic()
    with caplog.at_level(logging.DEBUG, logger="app.sources"):
        masked = r"cannot open rtsp://admin:\*\*\*@127\.0\.0\.1"
        with pytest.raises(SourceError, match=masked) as info:
            open_source(url, SourceConfig(timeout_s=2.0))
    assert time.monotonic() - started < 2.5
    assert "s3cr3t" not in str(info.value) and "s3cr3t" not in caplog.text


# ---- timestamp rules -----------------------------------------------------------------------


@pytest.mark.parametrize(("pairs", "chosen"), [
    # Well-formed stream with B-frames: PTS increase in display order, trust PTS.
    ([(0, -2), (1, -1), (2, 0), (3, 1)], [0, 1, 2, 3]),
    # PETS-like AVI: PTS scrambled by reordering, DTS increasing -> DTS once PTS faulted.
    ([(1, 2), (4, 3), (3, 4), (5, 5), (2, 6), (8, 7)], [1, 4, 4, 5, 6, 7]),
    # No timestamps at all (first RTSP frame, raw elementary streams).
    ([(None, None), (None, None)], [None, None]),
    # Only DTS (AVI without generated PTS).
    ([(None, 2), (None, 3)], [2, 3]),
])
def test_best_effort_timestamp(pairs, chosen) -> None:
    pick = BestEffortTimestamp()
    assert [pick(pts, dts) for pts, dts in pairs] == chosen


def test_monotonic_clock_rebases_on_a_timestamp_reset(caplog) -> None:
    clock = MonotonicClock("cam")
    interval = 0.5
    out = []
    with caplog.at_level(logging.WARNING, logger="app.sources"):
        for stream_time in [Fraction(10), Fraction(21, 2), None, Fraction(3), Fraction(7, 2)]:
            fallback = 0.0 if clock.last_s is None else clock.last_s + interval
            out.append(clock.next(stream_time, fallback))
    # 10 -> 0 (first frame), 10.5 -> 0.5, missing -> +interval, reset to 3 -> re-based.
    assert out == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert clock.repairs == 1 and "re-basing" in caplog.text


# ---- live-source logic over a local clip ----------------------------------------------------


class _ClipCamera:
    """An opener for LiveSource: each connection plays a short clip to its end (a "drop").

    ``fail_after`` connections, every further open fails (the camera is gone).
    """

    def __init__(self, path: Path, fail_after: int | None = None) -> None:
        self.path, self.fail_after, self.opens = path, fail_after, 0

    def __call__(self):
        self.opens += 1
        if self.fail_after is not None and self.opens > self.fail_after:
            raise SourceError(f"cannot open fake camera (open #{self.opens})")
        return open_video_stream(str(self.path), "fake camera", timeout_s=(2.0, 1.0))


def _collect(source: LiveSource, count: int, timeout_s: float = 20.0) -> list[Frame]:
    frames: list[Frame] = []
    deadline = time.monotonic() + timeout_s
    for frame in source:
        frames.append(frame)
        if len(frames) >= count or time.monotonic() > deadline:
            break
    return frames


def test_live_source_reconnects_and_keeps_index_and_time_increasing() -> None:
    clip = clip_path("pedestrians_shopping_street.mp4")  # 332 frames
    camera = _ClipCamera(clip)
    config = SourceConfig(reconnect_initial_s=0.05, reconnect_max_s=0.1)
    source = LiveSource("fake camera", camera, config)
    assert source.is_live and source.fps == 25.0 and isinstance(source, FrameSource)

    frames = _collect(source, 332 * 2 + 10)  # two full "connections" and the start of a third

    assert [frame.index for frame in frames] == list(range(len(frames)))
    timestamps = np.array([frame.timestamp_s for frame in frames])
    assert np.all(np.diff(timestamps) > 0)
    # Within a connection the clip's own PTS spacing is kept (1/25 s).
    np.testing.assert_allclose(np.diff(timestamps[:332]), 0.04, atol=1e-9)
    assert source.stats.reconnects == 2 and camera.opens == 3
    assert source.stats.last_error == "stream ended"
    assert source.stats.connection_state == "closed"  # breaking out of the loop closed it
    assert source.join(timeout_s=5.0)


def test_live_source_gives_up_after_max_attempts(caplog) -> None:
    camera = _ClipCamera(clip_path("pedestrians_shopping_street.mp4"), fail_after=1)
    config = SourceConfig(reconnect_initial_s=0.01, reconnect_max_s=0.02, max_reconnect_attempts=3)
    source = LiveSource("fake camera", camera, config)
    frames = []
    with caplog.at_level(logging.WARNING, logger="app.sources"):
        with pytest.raises(SourceError, match="gave up after 3 reconnect attempts"):
            for frame in source:
                frames.append(frame)
    assert len(frames) == 332 and camera.opens == 4  # first connection + 3 failed attempts
    assert source.stats.connection_state == "closed" and source.stats.reconnect_attempt == 3
    assert caplog.text.count("reconnect attempt") >= 3


def test_live_close_interrupts_a_backoff_sleep() -> None:
    camera = _ClipCamera(clip_path("pedestrians_shopping_street.mp4"), fail_after=1)
    config = SourceConfig(reconnect_initial_s=30.0, reconnect_max_s=30.0)
    source = LiveSource("fake camera", camera, config)
    done = threading.Event()
    frames = []

    def consume() -> None:
        for frame in source:
            frames.append(frame)
        done.set()

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    deadline = time.monotonic() + 20.0
    while source.stats.connection_state != "reconnecting" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert source.stats.connection_state == "reconnecting"  # now sleeping 30 s before retrying
    started = time.monotonic()
    source.close()
    assert done.wait(1.0), "iteration did not stop after close()"
    assert source.join(timeout_s=1.0), "reader thread still sleeping after close()"
    assert time.monotonic() - started < 1.0
    assert len(frames) == 332


def test_closing_an_unread_live_source_releases_it() -> None:
    source = LiveSource("fake camera", _ClipCamera(clip_path("pedestrians_shopping_street.mp4")),
                        SourceConfig())
    source.close()
    assert list(source) == [] and source.stats.connection_state == "closed"
