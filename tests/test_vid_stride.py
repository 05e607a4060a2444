"""``--vid-stride N`` (issue #12, item 3): every N-th frame is detected, the tracker and the
counting engine see the true timestamps and frame numbers, and where crossings are slow the counts
equal those from every frame.

The clip is generated: white squares on black that move slowly up or down across the middle of a
160x96 frame, written with our VideoWriter and read back by the real file source. The "detector"
finds the squares by thresholding (real frames, decoded, compressed), so the test exercises the
source, the stride, the tracker and the counting rules, not a model.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import supervision as sv

from app.cli import _open_source
from app.counting import CountingConfig, LineSpec
from app.frames import Frame, SourceStats
from app.pipeline import Pipeline, PipelineConfig
from app.sources import open_source
from app.sources.stride import StridedSource
from app.video_writer import VideoWriter
from tracker import ByteTrack

WIDTH, HEIGHT, FPS, FRAMES = 160, 96, 25.0, 150
SIDE = 10
#: (x, first frame, y at first frame, pixels per frame); + moves down (IN across the line below)
SQUARES = ((20, 0, 5.0, 1.0), (60, 0, 85.0, -1.5), (100, 30, 0.0, 0.8), (135, 10, 80.0, -0.9))
MIDDLE = CountingConfig(lines=(LineSpec("middle", (0.0, 48.0), (float(WIDTH), 48.0)),))


def _square_y(square: tuple[int, int, float, float], frame: int) -> float | None:
    x, first, y0, speed = square
    if frame < first:
        return None
    y = y0 + speed * (frame - first)
    return y if 0 <= y <= HEIGHT - SIDE else None


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("stride") / "squares.mkv"
    with VideoWriter(path, FPS, (WIDTH, HEIGHT)) as writer:
        for i in range(FRAMES):
            image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
            for square in SQUARES:
                y = _square_y(square, i)
                if y is not None:
                    top = int(round(y))
                    image[top:top + SIDE, square[0]:square[0] + SIDE] = 255
            writer.write(image)
    return path


def _detect_squares(image: np.ndarray) -> sv.Detections:
    mask = (cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) > 128).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask)
    boxes = [(x, y, x + w, y + h) for x, y, w, h, area in stats[1:n] if area >= 20]
    if not boxes:
        return sv.Detections.empty()
    return sv.Detections(xyxy=np.asarray(boxes, np.float32), confidence=np.full(len(boxes), 0.9, np.float32),
                         class_id=np.zeros(len(boxes), int), data={"class_name": np.array(["box"] * len(boxes))})


def _run(source) -> tuple[Pipeline, list]:
    pipeline = Pipeline(source, _detect_squares, ByteTrack(frame_rate=source.fps), counting=MIDDLE,
                        config=PipelineConfig())
    events = []
    for result in pipeline.results():
        events.extend(result.events)
    return pipeline, events


def test_true_crossings_of_the_generated_clip() -> None:
    downs = sum(1 for s in SQUARES if s[3] > 0)
    assert (downs, len(SQUARES) - downs) == (2, 2)


@pytest.mark.parametrize("stride", [2, 3, 4])
def test_counts_with_a_stride_equal_the_counts_from_every_frame(clip: Path, stride: int) -> None:
    full, full_events = _run(open_source(clip))
    strided, strided_events = _run(StridedSource(open_source(clip), stride))
    (line_full,), (line_strided,) = full.report.lines, strided.report.lines
    assert (line_full.in_count, line_full.out_count) == (2, 2)  # the squares' true crossings
    assert (line_strided.in_count, line_strided.out_count) == (line_full.in_count, line_full.out_count)
    assert strided.report.stats.frames_out == -(-FRAMES // stride)
    # true frame numbers and times: every event lies on a processed frame, at its real time
    for event in strided_events:
        assert event.frame_index % stride == 0
        assert event.timestamp_s == pytest.approx(event.frame_index / FPS, abs=1e-3)
    assert len(strided_events) == len(full_events)


class _Listed:
    """A source over given frames (index, timestamp), for the stride's bookkeeping."""

    def __init__(self, frames: list[tuple[int, float]], fps: float | None = 30.0) -> None:
        self.frames, self.fps, self.name, self.is_live = frames, fps, "listed", False
        self.stats, self.frame_count, self.closed = SourceStats(), len(frames), False

    def __iter__(self):
        for index, ts in self.frames:
            yield Frame(index, ts, np.zeros((4, 4, 3), np.uint8), self.name)

    def close(self) -> None:
        self.closed = True


def test_stride_keeps_indices_and_timestamps_and_divides_the_rate() -> None:
    inner = _Listed([(i, i / 30) for i in range(10)])
    strided = StridedSource(inner, 3)
    frames = list(strided)
    assert [(f.index, f.timestamp_s) for f in frames] == [(0, 0.0), (3, 0.1), (6, 0.2), (9, 0.3)]
    assert strided.fps == 10.0 and strided.frame_count == 4 and strided.stats is inner.stats
    strided.close()
    assert inner.closed
    # delivered frames are counted, not indices: a gap in the source's indices keeps the spacing
    gappy = StridedSource(_Listed([(0, 0.0), (1, 0.1), (5, 0.5), (6, 0.6), (7, 0.7)], fps=None), 2)
    assert [f.index for f in gappy] == [0, 5, 7] and gappy.fps is None


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, 1001])
def test_bad_stride_is_refused(bad) -> None:
    with pytest.raises(ValueError, match="vid_stride"):
        StridedSource(_Listed([]), bad)


def test_cli_wraps_the_source(clip: Path) -> None:
    source = _open_source(str(clip), 5)
    try:
        assert isinstance(source, StridedSource) and source.fps == pytest.approx(FPS / 5)
    finally:
        source.close()
    plain = _open_source(str(clip))
    plain.close()
    assert not isinstance(plain, StridedSource)
