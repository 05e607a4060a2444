"""The annotated video never becomes a corrupt file, and a video failure does not stop counting
(issue #11 item 5).

Each scenario reproduces a failure seen with the old writer, which wrote straight to the requested
path as a plain MP4 (``moov`` atom at the end) and let an encode error end the run:

- a full disk (``ENOSPC``, faked by a file object, and a real ``EFBIG`` from ``RLIMIT_FSIZE``)
  while encoding or finalizing: ``VideoWriterError``, nothing corrupt at the requested path, an
  older file there untouched, the partial file kept only if it plays;
- the same in a pipeline run: counting goes on to the end, every event is written, the report
  names the video error;
- SIGKILL mid-write: the partial file plays up to its last fragment;
- a clean close (end of video, ``stop()``) renames onto the path; the older file survives until
  then; a partial file left by a killed run is removed when the next run opens the writer.

Frames are 64x48 (writer tests) or 128x96 (pipeline tests) so every case takes well under a
second of encoding.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest
import supervision as sv

import app.video_writer as video_writer
from app.pipeline import Pipeline, PipelineConfig
from app.sinks import open_event_sink, read_events
from app.video_writer import (
    VideoWriter,
    VideoWriterConfig,
    VideoWriterError,
    partial_path_for,
)
from fault_injection import FullDisk
from test_pipeline import VERTICAL_LINE, FakeSource
from tracker import ByteTrack

REPO_ROOT = Path(__file__).resolve().parents[2]
SIZE_WH = (64, 48)
OLD_BYTES = b"an older video that must survive until the new one is complete"
#: One encoder thread: identical bytes from run to run, so size-based limits are stable.
ONE_THREAD = VideoWriterConfig(encoder_threads=1)


# ------------------------------------------------------------------------------ helpers
def noise_frames(n: int, seed: int = 0) -> list[np.ndarray]:
    """Noise compresses badly: a few KB per frame, so fragments reach the disk limit fast."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (SIZE_WH[1], SIZE_WH[0], 3), dtype=np.uint8) for _ in range(n)]


def decoded_frames(path: Path) -> int:
    """Frames PyAV decodes from ``path``, stopping quietly at a truncated end (as a player does)."""
    count = 0
    with av.open(str(path)) as container:
        try:
            for _ in container.decode(video=0):
                count += 1
        except av.FFmpegError:
            pass  # the end of a truncated file: the frames before it played
    return count


@pytest.fixture
def full_disk(monkeypatch):
    """``full_disk(limit_bytes)``: from then on every VideoWriter writes through a FullDisk."""
    opened: list[FullDisk] = []

    def install(limit_bytes: int) -> list[FullDisk]:
        def open_output(path: Path, container_options: dict[str, str]):
            disk = FullDisk(path, limit_bytes)
            opened.append(disk)
            return av.open(disk, mode="w", format="mp4", container_options=container_options)

        monkeypatch.setattr(video_writer, "_open_output", open_output)
        return opened

    yield install
    for disk in opened:
        disk.close()


def reference_size(tmp_path: Path, frames: list[np.ndarray], config: VideoWriterConfig) -> int:
    """Size of the complete video of ``frames`` (written without a limit)."""
    path = tmp_path / "reference" / "ref.mp4"
    with VideoWriter(path, 10.0, SIZE_WH, config) as writer:
        for image in frames:
            writer.write(image)
    return path.stat().st_size


# ------------------------------------------------------------------------------ full disk: writer
def test_full_disk_before_anything_plays_leaves_no_file_and_the_old_one_intact(tmp_path, full_disk) -> None:
    path = tmp_path / "out.mp4"
    path.write_bytes(OLD_BYTES)
    full_disk(limit_bytes=1_500)  # the header fits, the first fragment does not
    writer = VideoWriter(path, 10.0, SIZE_WH, ONE_THREAD)
    with pytest.raises(VideoWriterError) as raised:
        for image in noise_frames(100):
            writer.write(image)
    message = str(raised.value)
    assert "No space left on device" in message and str(path) in message
    assert "nothing playable was written" in message and "run again" in message
    assert writer.closed and writer.error == message and writer.output_path is None
    assert writer.frames_written < 100
    assert path.read_bytes() == OLD_BYTES  # untouched: no corrupt video over it
    assert not partial_path_for(path).exists()  # nothing playable: removed
    writer.close()  # idempotent, does not raise the reported failure again
    with pytest.raises(VideoWriterError, match="write after close.*failed earlier"):
        writer.write(noise_frames(1)[0])


def test_full_disk_mid_video_keeps_the_playable_part_under_the_partial_name(tmp_path, full_disk) -> None:
    frames = noise_frames(200)
    config = VideoWriterConfig(encoder_threads=1, keyframe_interval_s=1.0)  # a fragment per 10 frames
    limit_bytes = reference_size(tmp_path, frames, config) // 2
    path = tmp_path / "out.mp4"
    path.write_bytes(OLD_BYTES)
    full_disk(limit_bytes)
    writer = VideoWriter(path, 10.0, SIZE_WH, config)
    with pytest.raises(VideoWriterError, match="No space left on device") as raised:
        for image in frames:
            writer.write(image)
    partial = partial_path_for(path)
    assert f"the video up to the failure is in {partial}" in str(raised.value)
    assert writer.output_path == partial
    assert path.read_bytes() == OLD_BYTES
    played = decoded_frames(partial)
    assert 10 <= played <= writer.frames_written < 200, (played, writer.frames_written)


def test_full_disk_while_finalizing_raises_from_close(tmp_path, full_disk) -> None:
    path = tmp_path / "out.mp4"
    full_disk(limit_bytes=1_500)  # all 5 frames are still in the first fragment when close() writes it
    writer = VideoWriter(path, 10.0, SIZE_WH, ONE_THREAD)
    for image in noise_frames(5):
        writer.write(image)
    with pytest.raises(VideoWriterError, match="No space left on device"):
        writer.close()
    assert writer.closed and writer.output_path is None
    assert not path.exists() and not partial_path_for(path).exists()


def test_real_file_size_limit_in_a_subprocess(tmp_path) -> None:
    """The OS refuses the write (RLIMIT_FSIZE -> EFBIG) under FFmpeg's own file I/O."""
    frames = noise_frames(200)
    config = VideoWriterConfig(encoder_threads=1, keyframe_interval_s=1.0)
    limit_bytes = reference_size(tmp_path, frames, config) // 2
    np.save(tmp_path / "frames.npy", np.stack(frames))
    path = tmp_path / "out.mp4"
    script = f"""
import json, resource, signal, sys
import numpy as np
from app.video_writer import VideoWriter, VideoWriterConfig, VideoWriterError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write instead of a killed process
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit_bytes}, {limit_bytes}))
writer = VideoWriter(sys.argv[1], 10.0, {SIZE_WH}, VideoWriterConfig(encoder_threads=1, keyframe_interval_s=1.0))
error = None
try:
    for image in np.load(sys.argv[2]):
        writer.write(image)
    writer.close()
except VideoWriterError as exc:
    error = str(exc)
print(json.dumps({{"error": error, "output_path": str(writer.output_path), "frames": writer.frames_written}}))
"""
    done = _run_python(script, path, tmp_path / "frames.npy")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["error"] is not None and "File too large" in result["error"], result
    assert not path.exists()
    assert result["output_path"] == str(partial_path_for(path))
    assert 10 <= decoded_frames(partial_path_for(path)) <= result["frames"] < 200


# ------------------------------------------------------------------------------ full disk: pipeline
def back_and_forth_detector(source: FakeSource):
    """One person walking across the vertical line at x=64 and back, every 40 frames."""

    def detect(image: np.ndarray) -> sv.Detections:
        index = source.index_of_image[id(image)]
        phase = index % 80
        x = 8.0 + 2.0 * (phase if phase < 40 else 80 - phase)  # 8 .. 88 .. 8 px
        return sv.Detections(
            xyxy=np.array([[x, 30.0, x + 12.0, 60.0]], dtype=np.float32),
            confidence=np.array([0.9], dtype=np.float32),
            class_id=np.array([0]),
            data={"class_name": np.array(["person"])},
        )

    return detect


def counting_run(tmp_path: Path, name: str, video_output: Path | None):
    source = FakeSource(240)
    events_path = tmp_path / f"{name}.jsonl"
    pipeline = Pipeline(source, back_and_forth_detector(source), ByteTrack(frame_rate=25),
                        counting=VERTICAL_LINE, event_sinks=[open_event_sink(events_path)],
                        config=PipelineConfig(video_output=video_output, render=True, encoder=ONE_THREAD))
    report = pipeline.run()
    return report, [(e.frame_index, e.track_id, e.direction) for e in read_events(events_path)]


def test_full_disk_in_a_pipeline_run_keeps_counting_to_the_end(tmp_path, full_disk, caplog) -> None:
    reference, reference_events = counting_run(tmp_path, "reference", None)
    assert len(reference_events) >= 4 and reference.error is None

    path = tmp_path / "out.mp4"
    disks = full_disk(limit_bytes=0)  # nothing fits: fails at the first packet
    with caplog.at_level(logging.ERROR):
        report, events = counting_run(tmp_path, "events", path)

    assert report.status == "finished" and report.error is None
    assert report.stats.frames_out == 240
    assert events == reference_events  # every event, also those long after the video failed
    assert report.events_total == reference.events_total == len(events)
    assert report.lines == reference.lines
    assert report.video_frames < events[0][0]  # the video failed before the first event
    assert report.video_error is not None and "No space left on device" in report.video_error
    assert str(path) in report.video_error and "nothing playable" in report.video_error
    assert report.video_output is None
    assert report.to_dict()["video_error"] == report.video_error
    assert f"video error: {report.video_error}" in report.summary()
    assert not path.exists() and not partial_path_for(path).exists()
    assert sum(disk.failed_writes for disk in disks) >= 1 and len(disks) == 1  # not reopened
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and r.name == "app.frame_sinks"]
    assert len(errors) == 1 and "counting goes on" in errors[0].getMessage()


def test_full_disk_mid_run_reports_the_kept_partial_file(tmp_path, full_disk) -> None:
    path = tmp_path / "out.mp4"
    full_disk(limit_bytes=40_000)  # some fragments (2 s at 25 fps) fit
    report, events = counting_run(tmp_path, "events", path)
    partial = partial_path_for(path)
    assert report.status == "finished" and report.stats.frames_out == 240 and len(events) >= 4
    assert report.video_error is not None and str(partial) in report.video_error
    assert report.video_output == str(partial) and not path.exists()
    assert 50 <= decoded_frames(partial) <= report.video_frames < 240


# ------------------------------------------------------------------------------ SIGKILL
KILLED_WRITER = """
import os, signal, sys
import numpy as np
from app.video_writer import VideoWriter, VideoWriterConfig
codec = sys.argv[2] if len(sys.argv) > 2 else "auto"
writer = VideoWriter(sys.argv[1], 10.0, (64, 48), VideoWriterConfig(codec=codec))  # keyframe every 20 frames
for i in range(60):
    writer.write(np.full((48, 64, 3), 4 * i, dtype=np.uint8))
sys.stdout.write("written\\n")
sys.stdout.flush()
os.kill(os.getpid(), signal.SIGKILL)
"""


def _run_python(script: str, *args: Path | str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([sys.executable, "-c", script, *map(str, args)], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("suffix", "codec"), [(".mp4", "auto"), (".mov", "auto"), (".mkv", "auto"), (".mp4", "mpeg4")])
def test_sigkill_mid_write_leaves_a_playable_partial_file_and_the_old_file(tmp_path, suffix, codec) -> None:
    path = tmp_path / f"out{suffix}"
    path.write_bytes(OLD_BYTES)
    done = _run_python(KILLED_WRITER, path, codec)
    assert done.returncode == -signal.SIGKILL and "written" in done.stdout, done.stderr
    assert path.read_bytes() == OLD_BYTES  # nothing corrupt over the requested path
    played = decoded_frames(partial_path_for(path))
    # At most the last 2 s (20 frames) plus the encoder's look-ahead are lost.
    assert played >= 30, played


def test_a_rerun_replaces_the_partial_file_of_a_killed_run(tmp_path, caplog) -> None:
    path = tmp_path / "out.mp4"
    assert _run_python(KILLED_WRITER, path).returncode == -signal.SIGKILL
    assert partial_path_for(path).exists()
    with caplog.at_level(logging.WARNING, logger="app.video_writer"):
        with VideoWriter(path, 10.0, SIZE_WH) as writer:
            assert not partial_path_for(path).exists()  # never mistaken for this run's video
            for image in noise_frames(7):
                writer.write(image)
    assert any("left by an earlier run" in r.getMessage() for r in caplog.records)
    assert decoded_frames(path) == 7 and not partial_path_for(path).exists()


# ------------------------------------------------------------------------------ clean close
def test_clean_close_renames_onto_the_path_and_the_old_file_survives_until_then(tmp_path) -> None:
    path = tmp_path / "out.mp4"
    path.write_bytes(OLD_BYTES)
    writer = VideoWriter(path, 10.0, SIZE_WH)
    for image in noise_frames(25):
        writer.write(image)
    assert path.read_bytes() == OLD_BYTES and partial_path_for(path).exists()
    assert writer.output_path is None
    writer.close()
    assert writer.output_path == path and writer.error is None
    assert decoded_frames(path) == 25 and not partial_path_for(path).exists()


def test_stop_mid_run_gives_a_playable_file_at_the_path(tmp_path) -> None:
    path = tmp_path / "out.mp4"
    path.write_bytes(OLD_BYTES)
    source = FakeSource(10_000)
    pipeline = Pipeline(source, back_and_forth_detector(source), ByteTrack(frame_rate=25),
                        counting=VERTICAL_LINE, config=PipelineConfig(video_output=path, encoder=ONE_THREAD))
    for seen, _ in enumerate(pipeline.results(), start=1):
        if seen == 30:
            threading.Thread(target=pipeline.stop).start()
        if seen < 30:
            time.sleep(0.001)
    report = pipeline.report
    assert report.status == "stopped" and report.error is None and report.video_error is None
    assert report.video_output == str(path)
    assert decoded_frames(path) == report.video_frames == report.stats.frames_out >= 30
    assert not partial_path_for(path).exists()


def test_partial_path_keeps_the_extension() -> None:
    assert partial_path_for("/videos/out.mp4") == Path("/videos/out.partial.mp4")
    assert partial_path_for("run.1.MKV") == Path("run.1.partial.MKV")
