"""Plane geometry for the counting engine: box anchors, signed distances, segment crossings.

Coordinates are image pixels, x to the right and y downwards, as ``float64`` (boxes arrive as
``float32`` ``xyxy``; every computation here widens them first so that the sign of a distance is
never decided by ``float32`` rounding of an intermediate product).

Sign convention (issue 4): for a line from ``start`` to ``end`` the *side value* of a point ``p`` is
the 2-D cross product ``cross(end - start, p - start)``; divided by the line length it is the
signed perpendicular distance in pixels. With y pointing down, positive is the right-hand side of
the arrow ``start -> end`` as seen on screen. Examples: line ``(0, 0) -> (10, 0)`` (drawn left to
right): ``p = (5, 3)``, below it, has value ``+30``; line ``(0, 0) -> (0, 10)`` (drawn downwards):
``p = (-2, 5)``, left of it on screen, has value ``+20``. A crossing from positive to negative is
IN, the reverse OUT.
"""

from __future__ import annotations

from enum import Enum

import numpy as np
import numpy.typing as npt

__all__ = [
    "Anchor",
    "anchor_points",
    "signed_distance_px",
    "crossing_offset_px",
    "polygon_signed_depth_px",
    "polygon_area_px2",
    "polygon_self_intersection",
    "segment_meets_rect",
    "polygon_meets_rect",
]

Point = tuple[float, float]


class Anchor(str, Enum):
    """Which point of a box stands for the object (names follow ``supervision.Position``).

    ``BOTTOM_CENTER`` is the default for counting: for people and vehicles seen from an elevated
    camera it is the ground contact point, so an object is counted when its feet/wheels cross the
    line, not when its box first touches it.
    """

    CENTER = "center"
    CENTER_LEFT = "center_left"
    CENTER_RIGHT = "center_right"
    TOP_CENTER = "top_center"
    TOP_LEFT = "top_left"
    TOP_RIGHT = "top_right"
    BOTTOM_LEFT = "bottom_left"
    BOTTOM_CENTER = "bottom_center"
    BOTTOM_RIGHT = "bottom_right"

    @classmethod
    def parse(cls, value: "Anchor | str") -> "Anchor":
        """Return the anchor for an :class:`Anchor`, a value (``"bottom_center"``) or a name.

        Raises:
            ValueError: the string names no anchor; the message lists the valid values.
        """
        if isinstance(value, Anchor):
            return value
        if isinstance(value, str):
            key = value.strip().lower()
            for member in cls:
                if key in (member.value, member.name.lower()):
                    return member
        valid = ", ".join(member.value for member in cls)
        raise ValueError(f"unknown anchor {value!r}; expected one of: {valid}")


# Fraction of the box width / height at which each anchor sits, measured from (x1, y1).
_ANCHOR_FRACTIONS: dict[Anchor, tuple[float, float]] = {
    Anchor.CENTER: (0.5, 0.5),
    Anchor.CENTER_LEFT: (0.0, 0.5),
    Anchor.CENTER_RIGHT: (1.0, 0.5),
    Anchor.TOP_CENTER: (0.5, 0.0),
    Anchor.TOP_LEFT: (0.0, 0.0),
    Anchor.TOP_RIGHT: (1.0, 0.0),
    Anchor.BOTTOM_LEFT: (0.0, 1.0),
    Anchor.BOTTOM_CENTER: (0.5, 1.0),
    Anchor.BOTTOM_RIGHT: (1.0, 1.0),
}


def anchor_points(xyxy: npt.ArrayLike, anchor: Anchor) -> npt.NDArray[np.float64]:
    """Return the anchor point of each box.

    Args:
        xyxy: boxes, shape ``(n, 4)``, ``(x1, y1, x2, y2)`` pixels, any float dtype.
        anchor: which point of the box.

    Returns:
        ``(n, 2)`` ``float64`` array of ``(x, y)`` pixels. Centres are computed as
        ``(x1 + x2) / 2`` in ``float64``.

    Raises:
        ValueError: ``xyxy`` is not ``(n, 4)``.
    """
    boxes = np.asarray(xyxy, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"xyxy must have shape (n, 4), got {boxes.shape}")
    fx, fy = _ANCHOR_FRACTIONS[anchor]
    # (1 - f) * a + f * b is exact for f in {0, 1} and equals (a + b) / 2 for f = 0.5.
    x = boxes[:, 0] if fx == 0.0 else boxes[:, 2] if fx == 1.0 else (boxes[:, 0] + boxes[:, 2]) / 2
    y = boxes[:, 1] if fy == 0.0 else boxes[:, 3] if fy == 1.0 else (boxes[:, 1] + boxes[:, 3]) / 2
    return np.stack([x, y], axis=1)


def signed_distance_px(
    points: npt.ArrayLike, start: Point, end: Point
) -> npt.NDArray[np.float64]:
    """Signed perpendicular distance of points from the infinite line through ``start``/``end``.

    ``cross(end - start, p - start) / |end - start|``; the sign convention is in the module
    docstring. Shape ``(n, 2)`` in, ``(n,)`` ``float64`` pixels out.

    Raises:
        ValueError: ``start == end`` (the line has no direction).
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    dx, dy = end[0] - start[0], end[1] - start[1]
    length = float(np.hypot(dx, dy))
    if length == 0.0:
        raise ValueError(f"line start and end coincide at {start}; a line needs two points")
    return (dx * (pts[:, 1] - start[1]) - dy * (pts[:, 0] - start[0])) / length


def crossing_offset_px(
    p: Point, q: Point, distance_p: float, distance_q: float, start: Point, end: Point
) -> float:
    """Where the segment ``p -> q`` meets the line, as a distance along it from ``start``.

    ``p`` and ``q`` must lie strictly on opposite sides (``distance_p * distance_q < 0``; the
    distances come from :func:`signed_distance_px`). The intersection is
    ``X = p + t (q - p)`` with ``t = d_p / (d_p - d_q)`` in ``(0, 1)``; the result is the
    projection ``(X - start) . (end - start) / |end - start|``, so ``0`` is ``start`` and the line
    length is ``end``. A value outside ``[0, length]`` means the segment passes beyond an end.
    """
    t = distance_p / (distance_p - distance_q)
    x = p[0] + t * (q[0] - p[0])
    y = p[1] + t * (q[1] - p[1])
    dx, dy = end[0] - start[0], end[1] - start[1]
    return ((x - start[0]) * dx + (y - start[1]) * dy) / float(np.hypot(dx, dy))


def polygon_area_px2(polygon: npt.ArrayLike) -> float:
    """Absolute area of a simple polygon, shoelace formula. ``(m, 2)`` pixels in, px² out."""
    poly = np.asarray(polygon, dtype=np.float64)
    x, y = poly[:, 0], poly[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2.0)


def polygon_signed_depth_px(
    points: npt.ArrayLike, polygon: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """Signed distance of points to a polygon's boundary: positive inside, negative outside.

    Inside/outside is the even-odd (ray casting) rule, so self-intersecting polygons behave like
    ``cv2.pointPolygonTest``; a point exactly on the boundary has depth ``0``. The magnitude is
    the distance to the nearest edge.

    Args:
        points: ``(n, 2)`` pixels.
        polygon: ``(m, 2)`` vertices in order, ``m >= 3``, pixels; closed implicitly.

    Returns:
        ``(n,)`` ``float64`` pixels.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    poly = np.asarray(polygon, dtype=np.float64)
    a = poly  # (m, 2) edge starts
    b = np.roll(poly, -1, axis=0)  # (m, 2) edge ends
    px = pts[:, None, 0]
    py = pts[:, None, 1]

    # Distance to each edge segment (n, m).
    ab = b - a
    ab_len2 = np.maximum((ab**2).sum(axis=1), np.finfo(np.float64).tiny)
    t = ((px - a[:, 0]) * ab[:, 0] + (py - a[:, 1]) * ab[:, 1]) / ab_len2
    t = np.clip(t, 0.0, 1.0)
    nearest_x = a[:, 0] + t * ab[:, 0]
    nearest_y = a[:, 1] + t * ab[:, 1]
    distance = np.sqrt((px - nearest_x) ** 2 + (py - nearest_y) ** 2).min(axis=1)

    # Even-odd rule: count edges that straddle the horizontal ray to the right of the point.
    straddles = (a[:, 1] > py) != (b[:, 1] > py)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_at_py = a[:, 0] + (py - a[:, 1]) * ab[:, 0] / ab[:, 1]
    crossings = (straddles & (px < x_at_py)).sum(axis=1)
    inside = (crossings % 2) == 1
    return np.where(inside, distance, -distance)


def _orientation(
    ax: npt.ArrayLike, ay: npt.ArrayLike, bx: npt.ArrayLike, by: npt.ArrayLike,
    px: npt.ArrayLike, py: npt.ArrayLike,
) -> np.ndarray:
    """Sign (-1, 0, +1) of ``cross(b - a, p - a)``, element-wise (the orientation test)."""
    return np.sign((np.asarray(bx) - ax) * (np.asarray(py) - ay)
                   - (np.asarray(by) - ay) * (np.asarray(px) - ax))


def polygon_self_intersection(polygon: npt.ArrayLike) -> tuple[int, int] | None:
    """The first pair of non-adjacent edges of a polygon that meet, or ``None`` if it is simple.

    Edge ``k`` joins vertex ``k`` to vertex ``k + 1`` (the last edge closes the polygon). Two
    edges meet when they cross or touch (an end of one lies on the other), decided by the
    orientation tests of the classic segment-intersection predicate (Cormen et al.,
    *Introduction to Algorithms*, 3rd ed., section 33.1, SEGMENTS-INTERSECT), all pairs at once.
    Edges sharing a vertex are not compared. A "bow-tie" such as ``(0, 0), (10, 10), (10, 0),
    (0, 10)`` returns ``(0, 2)``.

    Args:
        polygon: ``(m, 2)`` vertices in order, pixels.

    Returns:
        ``(i, j)`` with ``i < j``, the first such pair in row-major order; ``None`` if none.
    """
    poly = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    m = len(poly)
    if m < 4:
        return None
    ax, ay = poly[:, 0], poly[:, 1]
    bx, by = np.roll(ax, -1), np.roll(ay, -1)
    # (m, m) arrays: row i is edge i, column j edge j.
    a_i = (ax[:, None], ay[:, None], bx[:, None], by[:, None])
    d1 = _orientation(*a_i, ax[None, :], ay[None, :])  # start of edge j against edge i
    d2 = _orientation(*a_i, bx[None, :], by[None, :])  # end of edge j against edge i
    d3 = _orientation(ax[None, :], ay[None, :], bx[None, :], by[None, :],
                      ax[:, None], ay[:, None])  # start of edge i against edge j
    d4 = _orientation(ax[None, :], ay[None, :], bx[None, :], by[None, :],
                      bx[:, None], by[:, None])  # end of edge i against edge j
    proper = (d1 * d2 < 0) & (d3 * d4 < 0)

    def within(px: np.ndarray, py: np.ndarray, x0, y0, x1, y1) -> np.ndarray:
        return ((np.minimum(x0, x1) <= px) & (px <= np.maximum(x0, x1))
                & (np.minimum(y0, y1) <= py) & (py <= np.maximum(y0, y1)))

    touch = (
        ((d1 == 0) & within(ax[None, :], ay[None, :], *a_i))
        | ((d2 == 0) & within(bx[None, :], by[None, :], *a_i))
        | ((d3 == 0) & within(ax[:, None], ay[:, None], ax[None, :], ay[None, :], bx[None, :], by[None, :]))
        | ((d4 == 0) & within(bx[:, None], by[:, None], ax[None, :], ay[None, :], bx[None, :], by[None, :]))
    )
    i, j = np.indices((m, m))
    non_adjacent = (j > i + 1) & ~((i == 0) & (j == m - 1))
    hits = np.argwhere((proper | touch) & non_adjacent)
    if len(hits) == 0:
        return None
    return int(hits[0, 0]), int(hits[0, 1])


def segment_meets_rect(start: Point, end: Point, width: float, height: float) -> bool:
    """Whether the segment ``start``-``end`` has a point in the frame ``[0, width] x [0, height]``.

    Liang-Barsky clipping (Liang and Barsky, "A new concept and method for line clipping",
    ACM Transactions on Graphics 3(1), 1984): the parameter interval ``[0, 1]`` of the segment
    is narrowed by each of the four half-planes; it meets the frame if the interval stays
    non-empty. Pixels, x right, y down.
    """
    x0, y0 = float(start[0]), float(start[1])
    dx, dy = float(end[0]) - x0, float(end[1]) - y0
    t0, t1 = 0.0, 1.0
    for p, q in ((-dx, x0), (dx, width - x0), (-dy, y0), (dy, height - y0)):
        if p == 0.0:
            if q < 0.0:
                return False  # parallel to this edge and outside it
            continue
        t = q / p
        if p < 0.0:
            t0 = max(t0, t)
        else:
            t1 = min(t1, t)
        if t0 > t1:
            return False
    return True


def polygon_meets_rect(polygon: npt.ArrayLike, width: float, height: float) -> bool:
    """Whether a polygon (even-odd interior and boundary) overlaps the frame ``[0, W] x [0, H]``.

    True when an edge meets the frame (:func:`segment_meets_rect`); otherwise the frame lies
    wholly inside or wholly outside the polygon, and the frame's centre decides which.
    """
    poly = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    for a, b in zip(poly, np.roll(poly, -1, axis=0)):
        if segment_meets_rect((a[0], a[1]), (b[0], b[1]), width, height):
            return True
    centre = np.array([[width / 2.0, height / 2.0]])
    return bool(polygon_signed_depth_px(centre, poly)[0] > 0)
