"""The labelling canvas: one frame with its boxes, drawn and edited with the mouse.

The frame is drawn scaled to the widget with its aspect ratio kept (centred). Boxes are in
frame pixels (:class:`app.labelling.LabelBox`); this widget never edits a store: it emits what
the user did and the labelling window applies it to the store (one undo step each).

- Drag on an empty place: a new box (:attr:`LabelCanvas.boxDrawn`).
- Click a box: select it (:attr:`LabelCanvas.selectionChanged`, its track id; 0 for none).
- Drag inside the selected box: move it; drag one of its corners: resize it
  (:attr:`LabelCanvas.boxEdited` on release).

Verified boxes (drawn or corrected by the user) are solid and thick; proposals (detector,
tracker, interpolation) are dashed and thin, so the two are told apart at a glance. Each track
has its own colour.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

from PyQt6.QtCore import QPointF, QRectF, QSize, Qt, pyqtSignal
from PyQt6.QtGui import QColor, QFont, QImage, QMouseEvent, QPainter, QPaintEvent, QPen
from PyQt6.QtWidgets import QSizePolicy, QWidget

from app.labelling import LabelBox

__all__ = ["LabelCanvas", "track_color"]

XYXY = tuple[float, float, float, float]

#: How close (widget pixels) the pointer must be to grab a corner.
GRAB_TOLERANCE_PX = 8.0
#: A drag shorter than this (widget pixels) is a click.
CLICK_TOLERANCE_PX = 4.0
#: The smallest box a drag draws, frame pixels.
MIN_BOX_PX = 2.0


def track_color(track_id: int) -> QColor:
    """A colour per track id (golden-angle hues: neighbouring ids look different)."""
    return QColor.fromHsv(int(track_id * 137.508) % 360, 200, 255)


class _Drag(enum.Enum):
    DRAW = "draw"
    MOVE = "move"
    RESIZE = "resize"


class LabelCanvas(QWidget):
    """See the module docstring.

    Signals:
        boxDrawn(object): ``(x1, y1, x2, y2)`` of a new box, frame pixels.
        boxEdited(int, object): track id and its new ``(x1, y1, x2, y2)``.
        selectionChanged(int): the selected track id, 0 for none.
    """

    boxDrawn = pyqtSignal(object)
    boxEdited = pyqtSignal(int, object)
    selectionChanged = pyqtSignal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(320, 200)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMouseTracking(True)
        self._image: QImage | None = None
        self._frame_wh: tuple[int, int] | None = None
        self.boxes: list[LabelBox] = []
        self.selected: int = 0
        self._drag: _Drag | None = None
        self._press_frame: tuple[float, float] | None = None
        self._press_widget: QPointF | None = None
        self._corner = 0
        self._draft: XYXY | None = None

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return QSize(960, 540)

    # ------------------------------------------------------------------ content
    @property
    def frame_size_wh(self) -> tuple[int, int] | None:
        return self._frame_wh

    def set_frame(self, image: QImage, frame_size_wh: tuple[int, int]) -> None:
        """Show ``image`` (possibly reduced) of a frame of ``frame_size_wh`` pixels."""
        self._image = image
        self._frame_wh = frame_size_wh
        self.update()

    def set_boxes(self, boxes: Sequence[LabelBox]) -> None:
        """The boxes of the shown frame; a selection whose track has no box here is dropped."""
        self.boxes = list(boxes)
        if self.selected and not any(b.track_id == self.selected for b in self.boxes):
            self.select(0)
        self.update()

    def select(self, track_id: int) -> None:
        if track_id != self.selected:
            self.selected = track_id
            self.selectionChanged.emit(track_id)
            self.update()

    def selected_box(self) -> LabelBox | None:
        return next((b for b in self.boxes if b.track_id == self.selected), None)

    # ------------------------------------------------------------------ geometry
    def image_rect(self) -> QRectF:
        if self._frame_wh is None:
            return QRectF(self.rect())
        width, height = self._frame_wh
        scale = min(self.width() / width, self.height() / height)
        return QRectF((self.width() - width * scale) / 2, (self.height() - height * scale) / 2,
                      width * scale, height * scale)

    def _scale(self) -> float:
        if self._frame_wh is None:
            return 1.0
        return self.image_rect().width() / self._frame_wh[0]

    def to_widget(self, xy: tuple[float, float]) -> QPointF:
        rect = self.image_rect()
        scale = self._scale()
        return QPointF(rect.left() + xy[0] * scale, rect.top() + xy[1] * scale)

    def to_frame(self, point: QPointF) -> tuple[float, float]:
        """Widget point -> frame pixels, clamped to the frame."""
        rect = self.image_rect()
        scale = self._scale()
        width, height = self._frame_wh or (1, 1)
        x = min(max((point.x() - rect.left()) / scale, 0.0), float(width))
        y = min(max((point.y() - rect.top()) / scale, 0.0), float(height))
        return x, y

    def _box_at(self, xy: tuple[float, float]) -> LabelBox | None:
        """The smallest box containing ``xy`` (the innermost of nested boxes)."""
        inside = [b for b in self.boxes if b.xyxy[0] <= xy[0] <= b.xyxy[2] and b.xyxy[1] <= xy[1] <= b.xyxy[3]]
        return min(inside, key=lambda b: (b.xyxy[2] - b.xyxy[0]) * (b.xyxy[3] - b.xyxy[1]), default=None)

    def _corner_at(self, box: LabelBox, point: QPointF) -> int:
        """1..4 for the corner of ``box`` under ``point`` (x1y1, x2y1, x2y2, x1y2), else 0."""
        x1, y1, x2, y2 = box.xyxy
        for number, xy in enumerate(((x1, y1), (x2, y1), (x2, y2), (x1, y2)), start=1):
            corner = self.to_widget(xy)
            if abs(corner.x() - point.x()) <= GRAB_TOLERANCE_PX and abs(corner.y() - point.y()) <= GRAB_TOLERANCE_PX:
                return number
        return 0

    # ------------------------------------------------------------------ mouse
    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt override
        if event.button() != Qt.MouseButton.LeftButton or self._frame_wh is None:
            return
        point = event.position()
        xy = self.to_frame(point)
        self._press_frame, self._press_widget = xy, point
        selected = self.selected_box()
        corner = self._corner_at(selected, point) if selected is not None else 0
        if corner:
            self._drag, self._corner = _Drag.RESIZE, corner
            self._draft = selected.xyxy
            return
        hit = self._box_at(xy)
        if hit is not None:
            self.select(hit.track_id)
            self._drag, self._draft = _Drag.MOVE, hit.xyxy
            return
        self.select(0)
        self._drag, self._draft = _Drag.DRAW, None

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt override
        if self._drag is None or self._press_frame is None:
            return
        x, y = self.to_frame(event.position())
        px, py = self._press_frame
        if self._drag is _Drag.DRAW:
            self._draft = (min(px, x), min(py, y), max(px, x), max(py, y))
        elif self._drag is _Drag.MOVE:
            box = self.selected_box()
            if box is not None:
                x1, y1, x2, y2 = box.xyxy
                self._draft = _clamped_move((x1, y1, x2, y2), x - px, y - py, self._frame_wh or (1, 1))
        else:
            box = self.selected_box()
            if box is not None:
                self._draft = _resized(box.xyxy, self._corner, (x, y))
        self.update()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt override
        if event.button() != Qt.MouseButton.LeftButton or self._drag is None:
            return
        drag, draft = self._drag, self._draft
        moved = self._press_widget is not None and (
            (event.position() - self._press_widget).manhattanLength() > CLICK_TOLERANCE_PX)
        self._drag = self._draft = self._press_frame = self._press_widget = None
        self.update()
        if not moved or draft is None:
            return
        if draft[2] - draft[0] < MIN_BOX_PX or draft[3] - draft[1] < MIN_BOX_PX:
            return
        if drag is _Drag.DRAW:
            self.boxDrawn.emit(draft)
        elif self.selected:
            self.boxEdited.emit(self.selected, draft)

    # ------------------------------------------------------------------ painting
    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt override
        painter = QPainter(self)
        painter.fillRect(self.rect(), Qt.GlobalColor.black)
        if self._image is not None:
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
            painter.drawImage(self.image_rect(), self._image)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        font = QFont(painter.font())
        font.setPointSizeF(9)
        painter.setFont(font)
        for box in self.boxes:
            dragged = self._draft if (self._drag in (_Drag.MOVE, _Drag.RESIZE) and box.track_id == self.selected) else None
            self._paint_box(painter, box, dragged or box.xyxy)
        if self._drag is _Drag.DRAW and self._draft is not None:
            pen = QPen(QColor(255, 255, 255), 1.5, Qt.PenStyle.DashLine)
            painter.setPen(pen)
            painter.drawRect(self._rect(self._draft))
        painter.end()

    def _rect(self, xyxy: XYXY) -> QRectF:
        top_left, bottom_right = self.to_widget(xyxy[:2]), self.to_widget(xyxy[2:])
        return QRectF(top_left, bottom_right)

    def _paint_box(self, painter: QPainter, box: LabelBox, xyxy: XYXY) -> None:
        color = track_color(box.track_id)
        selected = box.track_id == self.selected
        width = (3.0 if box.verified else 1.5) + (1.0 if selected else 0.0)
        pen = QPen(color, width, Qt.PenStyle.SolidLine if box.verified else Qt.PenStyle.DashLine)
        painter.setPen(pen)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        rect = self._rect(xyxy)
        painter.drawRect(rect)
        text = f"{box.track_id} {box.class_name}" + (" ✓" if box.verified else " ?")
        metrics = painter.fontMetrics()
        label = QRectF(rect.left(), rect.top() - metrics.height() - 2, metrics.horizontalAdvance(text) + 6,
                       metrics.height() + 2)
        painter.fillRect(label, color if box.verified else QColor(40, 40, 40, 200))
        painter.setPen(QColor(0, 0, 0) if box.verified else color)
        painter.drawText(label, Qt.AlignmentFlag.AlignCenter, text)
        if selected:
            painter.setPen(QPen(QColor(255, 255, 255), 1.0))
            painter.setBrush(color)
            x1, y1, x2, y2 = xyxy
            for xy in ((x1, y1), (x2, y1), (x2, y2), (x1, y2)):
                painter.drawEllipse(self.to_widget(xy), 4.0, 4.0)
            painter.setBrush(Qt.BrushStyle.NoBrush)


def _clamped_move(xyxy: XYXY, dx: float, dy: float, frame_wh: tuple[int, int]) -> XYXY:
    """``xyxy`` moved by ``dx, dy`` and kept inside the frame."""
    x1, y1, x2, y2 = xyxy
    dx = min(max(dx, -x1), frame_wh[0] - x2)
    dy = min(max(dy, -y1), frame_wh[1] - y2)
    return (x1 + dx, y1 + dy, x2 + dx, y2 + dy)


def _resized(xyxy: XYXY, corner: int, xy: tuple[float, float]) -> XYXY:
    """``xyxy`` with ``corner`` (1..4: x1y1, x2y1, x2y2, x1y2) moved to ``xy``, normalized."""
    x1, y1, x2, y2 = xyxy
    if corner == 1:
        x1, y1 = xy
    elif corner == 2:
        x2, y1 = xy
    elif corner == 3:
        x2, y2 = xy
    else:
        x1, y2 = xy
    return (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))
