"""Rendering (tracks, lines with IN arrow and counts, zones) and the annotated-video writer."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import supervision as sv

from app.counting.geometry import signed_distance_px
from app.pipeline import LineCounts, ZoneCounts
from app.render import FrameRenderer, RenderStyle, in_arrow
from app.video_writer import VideoWriter, VideoWriterConfig, VideoWriterError, preferred_codec


def _tracks(with_ids: bool = True) -> sv.Detections:
    return sv.Detections(
        xyxy=np.array([[20, 20, 60, 80], [100, 30, 140, 90]], dtype=np.float32),
        confidence=np.array([0.91, 0.5], dtype=np.float32),
        class_id=np.array([0, 2]),
        tracker_id=np.array([7, 12]) if with_ids else None,
        data={"class_name": np.array(["person", "car"])},
    )


def _line(start=(0.0, 120.0), end=(200.0, 120.0), n_in=3, n_out=1) -> LineCounts:
    return LineCounts("road", start, end, n_in, n_out, {"car": (n_in, n_out)})


def _zone() -> ZoneCounts:
    return ZoneCounts("lot", ((150.0, 10.0), (190.0, 10.0), (190.0, 60.0), (150.0, 60.0)), 1, 4, 3,
                      {"car": 1}, {"car": 4}, {"car": 3})


# ------------------------------------------------------------------------------ IN arrow
@pytest.mark.parametrize(
    ("start", "end", "direction"),
    [
        ((0, 100), (200, 100), (0, -1)),   # drawn left to right: IN points up
        ((200, 100), (0, 100), (0, 1)),    # right to left: down
        ((100, 0), (100, 200), (1, 0)),    # downwards: right
        ((100, 200), (100, 0), (-1, 0)),   # upwards: left
        ((0, 0), (100, 100), (1, -1)),     # diagonal down-right: up-right
    ],
)
def test_in_arrow_points_the_way_of_an_in_crossing(start, end, direction) -> None:
    tail, tip = in_arrow(start, end, length_px=40)
    vector = np.subtract(tip, tail)
    assert np.sign(vector).tolist() == list(direction)
    # ...which is the counting engine's IN: from cross(...) > 0 to cross(...) < 0
    d_tail, d_tip = signed_distance_px(np.array([tail, tip], dtype=np.float64), start, end)
    assert d_tail > 0 > d_tip
    midpoint = np.add(start, end) / 2
    assert np.allclose(np.add(tail, tip) / 2, midpoint, atol=1)


def test_in_arrow_of_a_degenerate_line_is_refused() -> None:
    with pytest.raises(ValueError, match="coincide"):
        in_arrow((5, 5), (5, 5), 40)


# ------------------------------------------------------------------------------ renderer
def test_render_draws_on_a_copy_boxes_lines_and_zones() -> None:
    image = np.zeros((160, 200, 3), dtype=np.uint8)
    out = FrameRenderer().render(image, _tracks(), [_line()], [_zone()])
    assert out.shape == image.shape and out.dtype == np.uint8
    assert not image.any()  # input untouched
    changed = out.any(axis=2)
    assert changed[20:80, 20].any() and changed[30:90, 140].any()  # box edges
    assert changed[120, 10:190].mean() > 0.5                      # the counting line
    assert changed[10:60, 190].any()                              # zone outline


def test_render_shows_counts_which_change_the_picture() -> None:
    image = np.zeros((160, 200, 3), dtype=np.uint8)
    renderer = FrameRenderer()
    a = renderer.render(image, sv.Detections.empty(), [_line(n_in=3)], [])
    b = renderer.render(image, sv.Detections.empty(), [_line(n_in=4)], [])
    assert not np.array_equal(a, b)


def test_labels_carry_id_class_and_confidence() -> None:
    renderer = FrameRenderer()
    assert renderer.labels(_tracks()) == ["#7 person 0.91", "#12 car 0.50"]
    assert renderer.labels(_tracks(with_ids=False)) == ["person 0.91", "car 0.50"]
    assert FrameRenderer(RenderStyle(show_confidence=False)).labels(_tracks()) == ["#7 person", "#12 car"]


@pytest.mark.parametrize("tracks", [sv.Detections.empty(), _tracks(with_ids=False)])
def test_render_accepts_empty_frames_and_untracked_detections(tracks) -> None:
    out = FrameRenderer().render(np.zeros((100, 160, 3), np.uint8), tracks)
    assert out.shape == (100, 160, 3)


def test_traces_follow_tracks_and_reset_forgets_them() -> None:
    renderer = FrameRenderer(RenderStyle(trace_length_frames=10))
    no_traces = FrameRenderer(RenderStyle(trace_length_frames=0))
    image = np.zeros((160, 200, 3), dtype=np.uint8)
    for dx in range(0, 40, 4):
        moved = _tracks()
        moved.xyxy = moved.xyxy + np.float32([dx, 0, dx, 0])
        out = renderer.render(image, moved)
    difference = (out != no_traces.render(image, moved)).any(axis=2)
    ys, xs = np.nonzero(difference)
    # bottom centres went from (40, 80) to (76, 80) and from (120, 90) to (156, 90): the paths
    assert difference.sum() > 40 and xs.min() <= 44
    assert set(np.unique(ys).tolist()) <= set(range(78, 83)) | set(range(88, 93))
    renderer.reset()
    assert np.array_equal(renderer.render(image, _tracks()), no_traces.render(image, _tracks()))


@pytest.mark.parametrize(
    ("options", "field"),
    [({"box_thickness_px": 0}, "box_thickness_px"), ({"text_scale": -1.0}, "text_scale"),
     ({"zone_fill_opacity": 1.5}, "zone_fill_opacity"), ({"trace_length_frames": -1}, "trace_length_frames")],
)
def test_invalid_style_is_refused(options, field) -> None:
    with pytest.raises(ValueError, match=field):
        RenderStyle(**options)


# ------------------------------------------------------------------------------ video writer
def _read_back(path: Path) -> tuple[int, Fraction, str, tuple[int, int], list[np.ndarray]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(stream)]
        return len(frames), stream.average_rate, stream.codec_context.name, (stream.width, stream.height), frames


def test_writer_encodes_every_frame_at_the_source_rate(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "out.mp4"
    rate = 113125 / 4711  # the traffic clip's 24.01 fps
    with VideoWriter(path, rate, (64, 48)) as writer:
        for i in range(30):
            writer.write(np.full((48, 64, 3), 8 * i, dtype=np.uint8))
    n, fps, codec, size, frames = _read_back(path)
    assert (n, size) == (30, (64, 48)) and writer.frames_written == 30
    assert fps == Fraction(113125, 4711)
    assert codec == ("h264" if preferred_codec() == "libx264" else "mpeg4")
    assert abs(int(frames[20].mean()) - 160) <= 3  # grey levels survive lossy coding


def test_writer_pads_odd_sizes_and_keeps_pixels(tmp_path: Path) -> None:
    path = tmp_path / "odd.mp4"
    with VideoWriter(path, 10.0, (33, 21), VideoWriterConfig(crf=0)) as writer:
        for _ in range(3):
            writer.write(np.full((21, 33, 3), 200, dtype=np.uint8))
    n, _, _, size, frames = _read_back(path)
    assert n == 3 and size == (34, 22)
    assert abs(int(frames[0][:20, :32].mean()) - 200) <= 5  # BGR -> YUV 4:2:0 -> BGR rounding
    assert frames[0][21, :32].mean() < 120 and frames[0][:20, 33].mean() < 120  # black padding


def test_writer_is_finalized_when_the_block_raises(tmp_path: Path) -> None:
    path = tmp_path / "crash.mp4"
    with pytest.raises(RuntimeError, match="boom"):
        with VideoWriter(path, 25.0, (32, 32)) as writer:
            for _ in range(12):
                writer.write(np.zeros((32, 32, 3), dtype=np.uint8))
            raise RuntimeError("boom")
    assert writer.closed
    assert _read_back(path)[0] == 12


@pytest.mark.parametrize(
    "image",
    [np.zeros((32, 30, 3), np.uint8), np.zeros((32, 32), np.uint8), np.zeros((32, 32, 3), np.float32)],
)
def test_writer_refuses_frames_of_the_wrong_shape_or_type(tmp_path: Path, image) -> None:
    with VideoWriter(tmp_path / "x.mp4", 25.0, (32, 32)) as writer:
        with pytest.raises(ValueError, match=r"\(32, 32, 3\) uint8"):
            writer.write(image)


def test_writer_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(VideoWriterError, match="nope"):
        VideoWriter(tmp_path / "x.mp4", 25.0, (32, 32), VideoWriterConfig(codec="nope"))
    writer = VideoWriter(tmp_path / "y.mp4", 25.0, (32, 32))
    writer.close()
    with pytest.raises(VideoWriterError, match="after close"):
        writer.write(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="fps"):
        VideoWriter(tmp_path / "z.mp4", 0.0, (32, 32))
