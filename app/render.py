"""Drawing a frame's tracks, counting lines and zones (supervision annotators + OpenCV).

Kept apart from the counting logic (``app.counting``) as supervision keeps ``LineZone`` apart from
``LineZoneAnnotator``: the renderer only reads the per-frame read-outs the pipeline produces
(:class:`app.pipeline.LineCounts`, :class:`app.pipeline.ZoneCounts`).

What is drawn:

- each track: box and label ``#<id> <class> <confidence>`` (``sv.BoxAnnotator``,
  ``sv.LabelAnnotator``) coloured by track ID, and its recent path (``sv.TraceAnnotator``) at the
  bottom-centre anchor that the counting engine uses by default;
- each line: the segment, an arrow marked ``IN`` pointing the way an object travels to be counted
  IN (from the side where ``cross(end - start, p - start) > 0`` to the side where it is ``< 0``,
  the convention of :mod:`app.counting.geometry`), and its name with IN/OUT counts;
- each zone: its polygon, lightly filled, with name, occupancy and enter/exit counts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import supervision as sv

from app.counting.engine import LineCounts, ZoneCounts

__all__ = ["FrameRenderer", "RenderStyle", "in_arrow"]


@dataclass(frozen=True)
class RenderStyle:
    """How frames are drawn, validated at construction.

    Attributes:
        box_thickness_px: box outline width, pixels (>= 1).
        text_scale: OpenCV font scale of labels and counts (> 0).
        text_thickness_px: stroke width of text, pixels (>= 1).
        trace_length_frames: points kept per track path; ``0`` draws no paths.
        show_confidence: append the detection confidence to each label.
        line_thickness_px: counting-line width, pixels (>= 1).
        arrow_length_px: length of the IN arrow, pixels (>= 1).
        zone_fill_opacity: opacity of the zone fill in [0, 1] (``0``: outline only).
        line_color: colour of counting lines (``sv.Color`` is RGB; drawn as BGR).
        zone_color: colour of zones.
    """

    box_thickness_px: int = 2
    text_scale: float = 0.5
    text_thickness_px: int = 1
    trace_length_frames: int = 30
    show_confidence: bool = True
    line_thickness_px: int = 2
    arrow_length_px: int = 40
    zone_fill_opacity: float = 0.15
    line_color: sv.Color = sv.Color.WHITE
    zone_color: sv.Color = sv.Color(r=0, g=200, b=255)

    def __post_init__(self) -> None:
        for name in ("box_thickness_px", "text_thickness_px", "line_thickness_px", "arrow_length_px"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if isinstance(self.trace_length_frames, bool) or not isinstance(self.trace_length_frames, int) \
                or self.trace_length_frames < 0:
            raise ValueError(f"trace_length_frames must be an integer >= 0, got {self.trace_length_frames!r}")
        if not (math.isfinite(self.text_scale) and self.text_scale > 0):
            raise ValueError(f"text_scale must be a number > 0, got {self.text_scale!r}")
        if not 0.0 <= self.zone_fill_opacity <= 1.0:
            raise ValueError(f"zone_fill_opacity must lie in [0, 1], got {self.zone_fill_opacity!r}")


def in_arrow(
    start: tuple[float, float], end: tuple[float, float], length_px: float
) -> tuple[tuple[int, int], tuple[int, int]]:
    """Tail and tip of the IN arrow of a line, centred on the line's midpoint.

    With ``v = end - start`` (x right, y down), the side where ``cross(v, p - start) > 0`` lies
    along the normal ``(-v_y, v_x)``; an IN crossing goes from that side to the other, so the
    arrow points along ``(v_y, -v_x)``. Example: a line drawn left to right has its IN arrow
    pointing up.

    Returns:
        ``((tail_x, tail_y), (tip_x, tip_y))`` in integer pixels.
    """
    vx, vy = end[0] - start[0], end[1] - start[1]
    norm = math.hypot(vx, vy)
    if norm == 0.0:
        raise ValueError(f"line start and end coincide at {start}")
    ux, uy = vy / norm, -vx / norm
    mx, my = (start[0] + end[0]) / 2, (start[1] + end[1]) / 2
    half = length_px / 2
    tail = (round(mx - ux * half), round(my - uy * half))
    tip = (round(mx + ux * half), round(my + uy * half))
    return tail, tip


class FrameRenderer:
    """Draws tracks, lines and zones on a copy of a frame.

    Stateful only through the track paths (``sv.TraceAnnotator`` remembers recent positions by
    track ID); call :meth:`reset` when a new stream starts. Use from one thread.

    Args:
        style: drawing options.
    """

    def __init__(self, style: RenderStyle | None = None) -> None:
        self.style = style if style is not None else RenderStyle()
        s = self.style
        self._boxes = sv.BoxAnnotator(thickness=s.box_thickness_px, color_lookup=sv.ColorLookup.TRACK)
        self._labels = sv.LabelAnnotator(
            color_lookup=sv.ColorLookup.TRACK,
            text_scale=s.text_scale,
            text_thickness=s.text_thickness_px,
            text_padding=4,
        )
        self.reset()

    def reset(self) -> None:
        """Forget the track paths (new stream)."""
        s = self.style
        self._traces = (
            sv.TraceAnnotator(
                position=sv.Position.BOTTOM_CENTER,
                trace_length=s.trace_length_frames,
                thickness=s.box_thickness_px,
                color_lookup=sv.ColorLookup.TRACK,
            )
            if s.trace_length_frames > 0
            else None
        )

    def render(
        self,
        image_bgr: np.ndarray,
        tracks: sv.Detections,
        lines: Sequence[LineCounts] = (),
        zones: Sequence[ZoneCounts] = (),
    ) -> np.ndarray:
        """Return an annotated copy of ``image_bgr``.

        Args:
            image_bgr: ``(H, W, 3)`` uint8 **BGR** frame; not modified.
            tracks: the frame's tracks (``xyxy`` pixels of this frame; ``tracker_id`` colours
                and labels them; rows without IDs — plain detections — are coloured by class).
            lines: read-outs of the counting lines (geometry and counts).
            zones: read-outs of the zones.

        Returns:
            ``(H, W, 3)`` uint8 BGR, a new array.
        """
        scene = image_bgr.copy()
        for zone in zones:
            self._draw_zone(scene, zone)
        if len(tracks):
            lookup = _color_lookup(tracks)
            if self._traces is not None and tracks.tracker_id is not None:
                scene = self._traces.annotate(scene, tracks, custom_color_lookup=lookup)
            scene = self._boxes.annotate(scene, tracks, custom_color_lookup=lookup)
            scene = self._labels.annotate(
                scene, tracks, labels=self.labels(tracks), custom_color_lookup=lookup
            )
        for line in lines:
            self._draw_line(scene, line)
        return scene

    def labels(self, tracks: sv.Detections) -> list[str]:
        """``"#<id> <class> <conf>"`` per row (parts that the detections lack are left out)."""
        n = len(tracks)
        names = tracks.data.get("class_name") if tracks.data else None
        labels = []
        for i in range(n):
            parts = []
            if tracks.tracker_id is not None:
                parts.append(f"#{int(tracks.tracker_id[i])}")
            if names is not None:
                parts.append(str(names[i]))
            elif tracks.class_id is not None:
                parts.append(f"class {int(tracks.class_id[i])}")
            if self.style.show_confidence and tracks.confidence is not None:
                parts.append(f"{float(tracks.confidence[i]):.2f}")
            labels.append(" ".join(parts))
        return labels

    def _draw_line(self, scene: np.ndarray, line: LineCounts) -> None:
        s = self.style
        color = s.line_color.as_bgr()
        start = (round(line.start[0]), round(line.start[1]))
        end = (round(line.end[0]), round(line.end[1]))
        cv2.line(scene, start, end, color, s.line_thickness_px, cv2.LINE_AA)
        for point in (start, end):
            cv2.circle(scene, point, s.line_thickness_px + 3, color, -1, cv2.LINE_AA)
        tail, tip = in_arrow(line.start, line.end, s.arrow_length_px)
        cv2.arrowedLine(scene, tail, tip, color, s.line_thickness_px, cv2.LINE_AA, tipLength=0.35)
        # "IN" just beyond the arrow's tip, clear of the line and of the count label.
        beyond = (2 * tip[0] - tail[0], 2 * tip[1] - tail[1])
        label_in = ((tip[0] + beyond[0]) // 2, (tip[1] + beyond[1]) // 2)
        self._text(scene, "IN", label_in, background=sv.Color.BLACK, color=s.line_color)
        label_at = (round(line.start[0] + 0.15 * (line.end[0] - line.start[0])),
                    round(line.start[1] + 0.15 * (line.end[1] - line.start[1])))
        self._text(scene, f"{line.name}  in {line.in_count}  out {line.out_count}", label_at,
                   background=s.line_color, color=sv.Color.BLACK)

    def _draw_zone(self, scene: np.ndarray, zone: ZoneCounts) -> None:
        s = self.style
        polygon = np.round(np.asarray(zone.polygon, dtype=np.float64)).astype(np.int64)
        if s.zone_fill_opacity > 0:
            sv.draw_filled_polygon(scene, polygon, s.zone_color, opacity=s.zone_fill_opacity)
        sv.draw_polygon(scene, polygon, s.zone_color, thickness=s.line_thickness_px)
        # Label at the topmost vertex: the middle of the zone is where the objects are.
        top = polygon[int(np.argmin(polygon[:, 1]))]
        text = f"{zone.name}  {zone.occupancy} inside  enter {zone.enter_count}  exit {zone.exit_count}"
        self._text(scene, text, (int(top[0]), int(top[1]) + 12), background=s.zone_color,
                   color=sv.Color.BLACK)

    def _text(
        self, scene: np.ndarray, text: str, at: tuple[int, int], background: sv.Color, color: sv.Color
    ) -> None:
        """Text box centred on ``at``, moved inside the frame if it would stick out."""
        s = self.style
        (w, h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, s.text_scale, s.text_thickness_px)
        pad = 4
        height, width = scene.shape[:2]
        x = min(max(at[0], w // 2 + pad), max(width - w // 2 - pad, w // 2 + pad))
        y = min(max(at[1], h // 2 + pad), max(height - h // 2 - pad, h // 2 + pad))
        sv.draw_text(
            scene, text, sv.Point(x, y), text_color=color, text_scale=s.text_scale,
            text_thickness=s.text_thickness_px, text_padding=pad, background_color=background,
        )


def _color_lookup(tracks: sv.Detections) -> np.ndarray:
    """Palette index per row: the track ID, else the class ID, else the row."""
    if tracks.tracker_id is not None:
        return np.asarray(tracks.tracker_id, dtype=np.int64)
    if tracks.class_id is not None:
        return np.asarray(tracks.class_id, dtype=np.int64)
    return np.arange(len(tracks), dtype=np.int64)
