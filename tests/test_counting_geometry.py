"""Geometry of the counting engine: anchors, signed distances, crossings, polygon depth."""

from __future__ import annotations

import numpy as np
import pytest

from app.counting import Anchor
from app.counting.geometry import (
    anchor_points,
    crossing_offset_px,
    polygon_area_px2,
    polygon_meets_rect,
    polygon_self_intersection,
    polygon_signed_depth_px,
    segment_meets_rect,
    signed_distance_px,
)

BOX = np.array([[10.0, 20.0, 30.0, 60.0]], dtype=np.float32)


@pytest.mark.parametrize(
    ("anchor", "expected"),
    [
        (Anchor.CENTER, (20, 40)),
        (Anchor.CENTER_LEFT, (10, 40)),
        (Anchor.CENTER_RIGHT, (30, 40)),
        (Anchor.TOP_CENTER, (20, 20)),
        (Anchor.TOP_LEFT, (10, 20)),
        (Anchor.TOP_RIGHT, (30, 20)),
        (Anchor.BOTTOM_LEFT, (10, 60)),
        (Anchor.BOTTOM_CENTER, (20, 60)),
        (Anchor.BOTTOM_RIGHT, (30, 60)),
    ],
)
def test_anchor_points(anchor: Anchor, expected: tuple[float, float]) -> None:
    points = anchor_points(BOX, anchor)
    assert points.dtype == np.float64 and points.shape == (1, 2)
    assert tuple(points[0]) == expected


def test_anchor_points_of_no_boxes_and_bad_shape() -> None:
    assert anchor_points(np.zeros((0, 4), np.float32), Anchor.CENTER).shape == (0, 2)
    with pytest.raises(ValueError, match=r"\(n, 4\)"):
        anchor_points(np.zeros((3,)), Anchor.CENTER)


@pytest.mark.parametrize("text", ["bottom_center", "BOTTOM_CENTER", " Bottom_Center "])
def test_anchor_parse(text: str) -> None:
    assert Anchor.parse(text) is Anchor.BOTTOM_CENTER


@pytest.mark.parametrize(
    ("start", "end", "point", "expected"),
    [
        # The examples of the geometry module docstring (issue 4's sign convention).
        ((0, 0), (10, 0), (5, 3), 3.0),  # below a left-to-right line: positive
        ((0, 0), (10, 0), (5, -3), -3.0),
        ((0, 0), (0, 10), (-2, 5), 2.0),  # left of a downward line: positive
        ((10, 0), (0, 0), (5, 3), -3.0),  # reversing the line flips the sign
        ((0, 0), (3, 4), (4, -3), -5.0),  # distance in pixels, not the raw cross product
        ((0, 0), (10, 0), (20, 0), 0.0),  # on the infinite line
    ],
)
def test_signed_distance_sign_convention(start, end, point, expected) -> None:
    assert signed_distance_px([point], start, end)[0] == pytest.approx(expected)


def test_signed_distance_of_a_degenerate_line() -> None:
    with pytest.raises(ValueError, match="coincide"):
        signed_distance_px([(1, 1)], (2, 2), (2, 2))


@pytest.mark.parametrize(
    ("p", "q", "expected"),
    [
        ((5, 10), (5, -10), 5.0),
        ((0, 10), (10, -10), 5.0),  # meets y=0 halfway
        ((-4, 1), (-4, -1), -4.0),  # beyond the start
        ((14, 1), (14, -3), 14.0),  # beyond the end
    ],
)
def test_crossing_offset(p, q, expected) -> None:
    start, end = (0.0, 0.0), (10.0, 0.0)
    dp, dq = signed_distance_px([p, q], start, end)
    assert crossing_offset_px(p, q, dp, dq, start, end) == pytest.approx(expected)


def test_polygon_depth_and_area() -> None:
    square = [(0, 0), (10, 0), (10, 10), (0, 10)]
    depth = polygon_signed_depth_px([(5, 5), (1, 5), (-3, 5), (10, 5), (13, 14)], square)
    np.testing.assert_allclose(depth, [5.0, 1.0, -3.0, 0.0, -5.0])
    assert polygon_area_px2(square) == 100.0
    assert polygon_area_px2(square[::-1]) == 100.0


@pytest.mark.parametrize(
    ("polygon", "expected"),
    [
        ([(0, 0), (10, 0), (10, 10), (0, 10)], None),  # square
        ([(0, 0), (10, 0), (10, 10), (5, 3), (0, 10)], None),  # concave, simple
        ([(0, 0), (10, 10), (10, 0), (0, 10)], (0, 2)),  # bow-tie
        ([(0, 0), (10, 0), (10, 10), (5, -5), (0, 10)], (0, 2)),  # spike through the bottom
        ([(0, 0), (10, 0), (5, 0), (5, 10)], (0, 2)),  # edge 2-3 starts on edge 0-1 (touch)
        ([(0, 0), (10, 0), (5, 8)], None),  # triangles are always simple
    ],
)
def test_polygon_self_intersection(polygon, expected) -> None:
    assert polygon_self_intersection(polygon) == expected


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        ((10, 10), (20, 20), True),  # inside
        ((-50, 50), (150, 50), True),  # crosses, both ends outside
        ((150, -10), (-10, 150), True),  # crosses a corner region
        ((0, 0), (0, 100), True),  # on the border
        ((110, 10), (200, 20), False),  # right of the frame
        ((-10, -10), (-5, 200), False),  # left of the frame
        ((-60, 20), (20, -60), False),  # passes beyond the corner (0, 0)
    ],
)
def test_segment_meets_rect(start, end, expected: bool) -> None:
    assert segment_meets_rect(start, end, 100, 100) is expected


@pytest.mark.parametrize(
    ("polygon", "expected"),
    [
        ([(-10, -10), (200, -10), (200, 200), (-10, 200)], True),  # covers the frame
        ([(50, 50), (60, 50), (60, 60)], True),  # inside
        ([(200, 200), (300, 200), (300, 300)], False),
        ([(-50, 20), (20, -50), (-50, -50)], False),  # beyond the corner (0, 0)
    ],
)
def test_polygon_meets_rect(polygon, expected: bool) -> None:
    assert polygon_meets_rect(polygon, 100, 100) is expected
