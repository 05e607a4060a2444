"""The counting lines and zones being edited in the GUI, free of Qt (the view only draws them).

Coordinates are pixels of the video frame (x right, y down). A line's IN direction follows the
counting engine's convention (:mod:`app.counting.geometry`, drawn by :func:`app.render.in_arrow`):
an object crossing from the side where ``cross(end - start, p - start) > 0`` to the other side
counts IN, so flipping the direction swaps the endpoints.

Handles: a line has two (0 = start, 1 = end), a zone one per vertex.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from app.counting import Anchor, CountingConfig, LineSpec, ZoneSpec
from app.counting.geometry import polygon_area_px2

from yolov7_track.errors import Yolov7TrackError

__all__ = ["MIN_LINE_LENGTH_PX", "CountingShapes", "Hit", "ShapeError", "ShapeKind"]

XY = tuple[float, float]

#: Shortest line the editor accepts, frame pixels: shorter drags are treated as clicks.
MIN_LINE_LENGTH_PX = 8.0


class ShapeError(Yolov7TrackError, ValueError):
    """An edit that would make the lines and zones invalid (duplicate or empty name, unknown
    shape, a zone with fewer than 3 vertices, a line shorter than :data:`MIN_LINE_LENGTH_PX`)."""


class ShapeKind:
    LINE = "line"
    ZONE = "zone"


@dataclass(frozen=True)
class Hit:
    """What lies under a point: a shape, and the handle (vertex) index or ``None`` for the body."""

    name: str
    kind: str
    handle: int | None


class CountingShapes:
    """An ordered, editable set of named lines and polygon zones (names unique across both).

    Every method that changes the set validates first and raises :class:`ShapeError`, leaving
    the set unchanged.
    """

    def __init__(self) -> None:
        self._lines: dict[str, LineSpec] = {}
        self._zones: dict[str, ZoneSpec] = {}

    # ---------------------------------------------------------------- reading
    @property
    def lines(self) -> tuple[LineSpec, ...]:
        return tuple(self._lines.values())

    @property
    def zones(self) -> tuple[ZoneSpec, ...]:
        return tuple(self._zones.values())

    @property
    def names(self) -> tuple[str, ...]:
        return (*self._lines, *self._zones)

    def __len__(self) -> int:
        return len(self._lines) + len(self._zones)

    def kind_of(self, name: str) -> str:
        if name in self._lines:
            return ShapeKind.LINE
        if name in self._zones:
            return ShapeKind.ZONE
        raise ShapeError(f"no line or zone named {name!r}")

    def handles(self, name: str) -> tuple[XY, ...]:
        """The draggable points of a shape (line: start, end; zone: its vertices)."""
        if self.kind_of(name) == ShapeKind.LINE:
            line = self._lines[name]
            return (line.start, line.end)
        return self._zones[name].polygon

    def to_config(self) -> CountingConfig | None:
        """The shapes as a pixel :class:`CountingConfig`, or ``None`` when there are none."""
        if not len(self):
            return None
        return CountingConfig(lines=self.lines, zones=self.zones, normalized=False)

    # ---------------------------------------------------------------- whole set
    def clear(self) -> None:
        self._lines.clear()
        self._zones.clear()

    def load(self, config: CountingConfig, frame_width: int, frame_height: int) -> None:
        """Replace the shapes by ``config`` (a normalized one is scaled to the frame size)."""
        pixels = config.to_pixels(frame_width, frame_height)
        self._lines = {spec.name: spec for spec in pixels.lines}
        self._zones = {spec.name: spec for spec in pixels.zones}

    def next_name(self, prefix: str) -> str:
        """``prefix1``, ``prefix2``, ...: the first not yet used."""
        i = 1
        while f"{prefix}{i}" in self._lines or f"{prefix}{i}" in self._zones:
            i += 1
        return f"{prefix}{i}"

    # ---------------------------------------------------------------- edits
    def add_line(self, start: XY, end: XY, name: str | None = None,
                 anchor: Anchor = Anchor.BOTTOM_CENTER) -> str:
        """Add a line; returns its name (``lineN`` when none is given)."""
        name = self.next_name("line") if name is None else self._check_new_name(name)
        self._lines[name] = self._checked_line(LineSpec(name, _xy(start), _xy(end), anchor))
        return name

    def add_zone(self, polygon: Sequence[XY], name: str | None = None,
                 anchor: Anchor = Anchor.BOTTOM_CENTER) -> str:
        """Add a polygon zone (>= 3 vertices, non-zero area); returns its name."""
        name = self.next_name("zone") if name is None else self._check_new_name(name)
        self._zones[name] = self._checked_zone(ZoneSpec(name, tuple(_xy(p) for p in polygon), anchor))
        return name

    def remove(self, name: str) -> None:
        kind = self.kind_of(name)
        del (self._lines if kind == ShapeKind.LINE else self._zones)[name]

    def rename(self, name: str, new_name: str) -> None:
        """Rename a shape, keeping its place in the order."""
        kind = self.kind_of(name)
        new_name = new_name.strip()
        if new_name == name:
            return
        self._check_new_name(new_name)
        table = self._lines if kind == ShapeKind.LINE else self._zones
        renamed = {(new_name if key == name else key): (replace(spec, name=new_name) if key == name else spec)
                   for key, spec in table.items()}
        if kind == ShapeKind.LINE:
            self._lines = renamed
        else:
            self._zones = renamed

    def flip(self, name: str) -> None:
        """Reverse a line's IN direction (swaps its endpoints)."""
        if self.kind_of(name) != ShapeKind.LINE:
            raise ShapeError(f"{name!r} is a zone; only lines have an IN direction")
        line = self._lines[name]
        self._lines[name] = replace(line, start=line.end, end=line.start)

    def move_handle(self, name: str, handle: int, xy: XY) -> None:
        """Move endpoint / vertex ``handle`` of a shape to ``xy``."""
        points = list(self.handles(name))
        if not 0 <= handle < len(points):
            raise ShapeError(f"{name!r} has no handle {handle} (it has {len(points)})")
        points[handle] = _xy(xy)
        self._set_points(name, points)

    def translate(self, name: str, dx: float, dy: float) -> None:
        """Move a whole shape by ``(dx, dy)`` pixels."""
        self._set_points(name, [(x + dx, y + dy) for x, y in self.handles(name)])

    def _set_points(self, name: str, points: Sequence[XY]) -> None:
        if self.kind_of(name) == ShapeKind.LINE:
            self._lines[name] = self._checked_line(replace(self._lines[name], start=points[0], end=points[1]))
        else:
            self._zones[name] = self._checked_zone(replace(self._zones[name], polygon=tuple(points)))

    # ---------------------------------------------------------------- hit testing
    def hit(self, xy: XY, tolerance_px: float) -> Hit | None:
        """The shape under ``xy``: handles first (nearest within ``tolerance_px``), then line
        segments within ``tolerance_px``, then zone interiors; later shapes win ties (they are
        drawn on top)."""
        best: tuple[float, Hit] | None = None
        for name in reversed(self.names):
            kind = self.kind_of(name)
            for i, point in enumerate(self.handles(name)):
                d = math.dist(point, xy)
                if d <= tolerance_px and (best is None or d < best[0]):
                    best = (d, Hit(name, kind, i))
        if best is not None:
            return best[1]
        for name in reversed(self.names):
            kind = self.kind_of(name)
            points = self.handles(name)
            if kind == ShapeKind.LINE:
                if _segment_distance(xy, points[0], points[1]) <= tolerance_px:
                    return Hit(name, kind, None)
            elif _inside_polygon(xy, points) or any(
                _segment_distance(xy, points[i], points[(i + 1) % len(points)]) <= tolerance_px
                for i in range(len(points))
            ):
                return Hit(name, kind, None)
        return None

    # ---------------------------------------------------------------- validation
    def _check_new_name(self, name: str) -> str:
        if not isinstance(name, str) or not name.strip():
            raise ShapeError("a line or zone needs a non-empty name")
        name = name.strip()
        if name in self._lines or name in self._zones:
            raise ShapeError(f"the name {name!r} is already used; names of lines and zones must be unique")
        return name

    @staticmethod
    def _checked_line(line: LineSpec) -> LineSpec:
        length = math.dist(line.start, line.end)
        if length < MIN_LINE_LENGTH_PX:
            raise ShapeError(f"line {line.name!r} is {length:.1f} px long; lines need at least "
                             f"{MIN_LINE_LENGTH_PX:g} px")
        return line

    @staticmethod
    def _checked_zone(zone: ZoneSpec) -> ZoneSpec:
        if len(zone.polygon) < 3:
            raise ShapeError(f"zone {zone.name!r} needs at least 3 vertices, got {len(zone.polygon)}")
        if polygon_area_px2(zone.polygon) == 0.0:
            raise ShapeError(f"zone {zone.name!r} has zero area (its vertices lie on one line)")
        return zone


def _xy(point: Sequence[float]) -> XY:
    x, y = float(point[0]), float(point[1])
    if not (math.isfinite(x) and math.isfinite(y)):
        raise ShapeError(f"coordinates must be finite, got {tuple(point)!r}")
    return (x, y)


def _segment_distance(p: XY, a: XY, b: XY) -> float:
    """Distance from ``p`` to the segment ``a``-``b``, pixels."""
    vx, vy = b[0] - a[0], b[1] - a[1]
    length2 = vx * vx + vy * vy
    t = 0.0 if length2 == 0 else max(0.0, min(1.0, ((p[0] - a[0]) * vx + (p[1] - a[1]) * vy) / length2))
    return math.dist(p, (a[0] + t * vx, a[1] + t * vy))


def _inside_polygon(p: XY, polygon: Sequence[XY]) -> bool:
    """Even-odd rule (ray casting to +x)."""
    inside = False
    n = len(polygon)
    for i in range(n):
        (x1, y1), (x2, y2) = polygon[i], polygon[(i + 1) % n]
        if (y1 > p[1]) != (y2 > p[1]):
            x_cross = x1 + (p[1] - y1) * (x2 - x1) / (y2 - y1)
            if p[0] < x_cross:
                inside = not inside
    return inside

