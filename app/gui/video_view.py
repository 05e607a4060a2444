"""The live picture with an editor for counting lines and polygon zones on top.

The frame is drawn scaled to the widget with its aspect ratio kept (letterboxed, centred).
Lines and zones live in frame pixels (:class:`app.gui.shapes.CountingShapes`) and are drawn by
this widget, not burned into the frame, so they can be edited on the live or paused picture:

- **Draw line** mode: press, drag, release. The IN direction is shown by an arrow marked ``IN``
  (the convention of :func:`app.render.in_arrow`: a line drawn left to right counts upward
  crossings IN).
- **Draw zone** mode: click the vertices; double-click, Enter, a right click or a click on the
  first vertex closes the polygon (3 vertices or more); Esc cancels.
- **Select** mode: drag an endpoint or vertex to move it, drag a shape's body to move the
  shape; Delete removes the selected shape, F2 (or a double click) renames it, F flips a
  line's IN direction; a right click opens a menu with the same actions.

Every committed change emits :attr:`VideoView.shapesEdited` (once per drag, on release).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence

from PyQt6.QtCore import QPointF, QRectF, QSize, Qt, pyqtSignal
from PyQt6.QtGui import (
    QAction,
    QBrush,
    QColor,
    QFont,
    QFontMetricsF,
    QImage,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPainterPath,
    QPaintEvent,
    QPen,
    QPolygonF,
    QResizeEvent,
)
from PyQt6.QtWidgets import QInputDialog, QMenu, QSizePolicy, QWidget

from app.gui.shapes import CountingShapes, Hit, ShapeError, ShapeKind
from app.counting import LineCounts, ZoneCounts
from app.render import in_arrow

__all__ = ["EditMode", "VideoView"]

XY = tuple[float, float]

#: How close (widget pixels) the pointer must be to grab a handle or a line.
GRAB_TOLERANCE_PX = 9.0
#: Length of the IN arrow, widget pixels.
ARROW_LENGTH_PX = 44.0
HANDLE_RADIUS_PX = 5.0

LINE_COLOR = QColor(255, 214, 0)
ZONE_COLOR = QColor(0, 200, 255)
SELECTED_COLOR = QColor(255, 64, 160)
DRAFT_COLOR = QColor(120, 255, 120)


class EditMode(enum.Enum):
    SELECT = "select"
    DRAW_LINE = "draw_line"
    DRAW_ZONE = "draw_zone"


class VideoView(QWidget):
    """Shows frames and edits the counting shapes (see the module docstring).

    Signals:
        shapesEdited(): the lines or zones changed (added, moved, renamed, flipped, deleted).
        selectionChanged(str): the selected shape's name, or ``""`` for none.
        modeChanged(str): the :class:`EditMode` value after a change (drawing ends by itself).
        viewResized(int, int): the frame area's size in device pixels (frames larger than
            this can be reduced before they reach the GUI thread).
        message(str): a short note for the status bar (e.g. why an edit was refused).
    """

    shapesEdited = pyqtSignal()
    selectionChanged = pyqtSignal(str)
    modeChanged = pyqtSignal(str)
    viewResized = pyqtSignal(int, int)
    message = pyqtSignal(str)

    def __init__(self, shapes: CountingShapes | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.shapes = shapes if shapes is not None else CountingShapes()
        self._image: QImage | None = None
        self._frame_wh: tuple[int, int] | None = None
        self._line_counts: dict[str, LineCounts] = {}
        self._zone_counts: dict[str, ZoneCounts] = {}
        self._mode = EditMode.SELECT
        self._selected: str | None = None
        self._drag: _Drag | None = None
        self._draft: list[XY] = []          # vertices of the line or zone being drawn
        self._pointer: XY | None = None     # pointer position in frame pixels (draft preview)
        self._menu: QMenu | None = None
        self._rename_dialog: QInputDialog | None = None
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(320, 180)
        self.setAutoFillBackground(False)

    # ---------------------------------------------------------------- content
    def sizeHint(self) -> QSize:
        return QSize(960, 540)

    @property
    def frame_size_wh(self) -> tuple[int, int] | None:
        """Size of the frames shown, pixels; ``None`` before the first one."""
        return self._frame_wh

    @property
    def image(self) -> QImage | None:
        return self._image

    def set_frame(self, image: QImage, frame_size_wh: tuple[int, int]) -> None:
        """Show ``image`` (possibly reduced) of a frame that is ``frame_size_wh`` pixels."""
        self._image = image
        self._frame_wh = (int(frame_size_wh[0]), int(frame_size_wh[1]))
        self.update()

    def set_counts(self, lines: Sequence[LineCounts], zones: Sequence[ZoneCounts]) -> None:
        """Counts shown beside each line and zone (matched by name)."""
        self._line_counts = {line.name: line for line in lines}
        self._zone_counts = {zone.name: zone for zone in zones}
        self.update()

    def shapes_changed_externally(self) -> None:
        """Call after replacing :attr:`shapes`' content (e.g. a loaded zone file)."""
        if self._selected is not None and self._selected not in self.shapes.names:
            self._set_selected(None)
        self.update()

    # ---------------------------------------------------------------- modes and selection
    @property
    def mode(self) -> EditMode:
        return self._mode

    def set_mode(self, mode: EditMode) -> None:
        """Switch modes; drawing needs a frame (without one the view stays in SELECT and says
        why). :attr:`modeChanged` reports the resulting mode whenever it differs from the one
        before or from the one asked for, so toolbar buttons can follow."""
        requested = mode
        if mode != EditMode.SELECT and self._frame_wh is None:
            self.message.emit("open a source first: lines and zones are drawn on its picture")
            mode = EditMode.SELECT
        self._draft = []
        self._drag = None
        changed = mode != self._mode or mode != requested
        self._mode = mode
        self.setCursor(Qt.CursorShape.ArrowCursor if mode == EditMode.SELECT else Qt.CursorShape.CrossCursor)
        if changed:
            self.modeChanged.emit(mode.value)
        self.update()

    @property
    def selected(self) -> str | None:
        return self._selected

    def select(self, name: str | None) -> None:
        if name is not None:
            self.shapes.kind_of(name)  # raises ShapeError for an unknown name
        self._set_selected(name)

    def _set_selected(self, name: str | None) -> None:
        if name != self._selected:
            self._selected = name
            self.selectionChanged.emit(name or "")
            self.update()

    # ---------------------------------------------------------------- edit actions
    def delete_selected(self) -> None:
        if self._selected is None:
            return
        self.shapes.remove(self._selected)
        self._set_selected(None)
        self._edited()

    def flip_selected(self) -> None:
        if self._selected is None:
            return
        try:
            self.shapes.flip(self._selected)
        except ShapeError as exc:
            self.message.emit(str(exc))
            return
        self._edited()

    def rename_selected(self, new_name: str) -> bool:
        """Rename the selected shape; False (and a :attr:`message`) if the name is refused."""
        if self._selected is None:
            return False
        try:
            self.shapes.rename(self._selected, new_name)
        except ShapeError as exc:
            self.message.emit(str(exc))
            return False
        self._selected = new_name.strip()
        self.selectionChanged.emit(self._selected)
        self._edited()
        return True

    def request_rename(self) -> QInputDialog | None:
        """Open a (window-modal, non-blocking) dialog asking for the selected shape's new name."""
        if self._selected is None:
            return None
        dialog = QInputDialog(self)
        dialog.setWindowTitle("Rename")
        dialog.setLabelText(f"New name for {self.shapes.kind_of(self._selected)} {self._selected!r}:")
        dialog.setTextValue(self._selected)
        dialog.textValueSelected.connect(self.rename_selected)
        dialog.open()
        self._rename_dialog = dialog
        return dialog

    def _edited(self) -> None:
        self.update()
        self.shapesEdited.emit()

    # ---------------------------------------------------------------- geometry
    def image_rect(self) -> QRectF:
        """Where the frame is drawn in the widget: scaled to fit, aspect ratio kept, centred."""
        if self._frame_wh is None:
            return QRectF(self.rect())
        fw, fh = self._frame_wh
        scale = min(self.width() / fw, self.height() / fh)
        w, h = fw * scale, fh * scale
        return QRectF((self.width() - w) / 2, (self.height() - h) / 2, w, h)

    def _scale(self) -> float:
        if self._frame_wh is None:
            return 1.0
        return self.image_rect().width() / self._frame_wh[0]

    def to_widget(self, xy: XY) -> QPointF:
        """Frame pixels -> widget coordinates."""
        rect, scale = self.image_rect(), self._scale()
        return QPointF(rect.x() + xy[0] * scale, rect.y() + xy[1] * scale)

    def to_frame(self, point: QPointF) -> XY:
        """Widget coordinates -> frame pixels (clamped to the frame)."""
        rect, scale = self.image_rect(), self._scale()
        x = (point.x() - rect.x()) / scale
        y = (point.y() - rect.y()) / scale
        if self._frame_wh is not None:
            x = min(max(x, 0.0), float(self._frame_wh[0]))
            y = min(max(y, 0.0), float(self._frame_wh[1]))
        return (x, y)

    def _tolerance_frame_px(self) -> float:
        return GRAB_TOLERANCE_PX / self._scale()

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        ratio = self.devicePixelRatioF()
        self.viewResized.emit(max(1, round(self.width() * ratio)), max(1, round(self.height() * ratio)))

    # ---------------------------------------------------------------- mouse and keys
    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self._frame_wh is None:
            return
        xy = self.to_frame(event.position())
        button = event.button()
        if self._mode == EditMode.DRAW_LINE and button == Qt.MouseButton.LeftButton:
            self._draft = [xy]
            self._pointer = xy
        elif self._mode == EditMode.DRAW_ZONE:
            self._zone_click(xy, button)
        elif self._mode == EditMode.SELECT and button == Qt.MouseButton.LeftButton:
            hit = self.shapes.hit(xy, self._tolerance_frame_px())
            self._set_selected(hit.name if hit else None)
            self._drag = _Drag(hit, xy) if hit else None
        self.update()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self._frame_wh is None:
            return
        xy = self.to_frame(event.position())
        self._pointer = xy
        if self._drag is not None:
            self._drag.move_to(self.shapes, xy)
        elif self._mode == EditMode.SELECT:
            hit = self.shapes.hit(xy, self._tolerance_frame_px())
            cursor = Qt.CursorShape.ArrowCursor
            if hit is not None:
                cursor = Qt.CursorShape.SizeAllCursor if hit.handle is None else Qt.CursorShape.CrossCursor
            self.setCursor(cursor)
        self.update()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self._frame_wh is None or event.button() != Qt.MouseButton.LeftButton:
            return
        xy = self.to_frame(event.position())
        if self._mode == EditMode.DRAW_LINE and self._draft:
            start = self._draft[0]
            self._draft = []
            try:
                name = self.shapes.add_line(start, xy)
            except ShapeError as exc:
                self.message.emit(f"no line added: {exc}")
            else:
                self._set_selected(name)
                self.set_mode(EditMode.SELECT)
                self._edited()
        elif self._drag is not None:
            drag, self._drag = self._drag, None
            if drag.moved:
                self._edited()
        self.update()

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self._mode == EditMode.DRAW_ZONE:
            self._finish_zone()
        elif self._mode == EditMode.SELECT and self._frame_wh is not None:
            hit = self.shapes.hit(self.to_frame(event.position()), self._tolerance_frame_px())
            if hit is not None:
                self._set_selected(hit.name)
                self.request_rename()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        key = event.key()
        if key in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace) and self._mode == EditMode.SELECT:
            self.delete_selected()
        elif key == Qt.Key.Key_F2:
            self.request_rename()
        elif key == Qt.Key.Key_F and self._mode == EditMode.SELECT:
            self.flip_selected()
        elif key in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and self._mode == EditMode.DRAW_ZONE:
            self._finish_zone()
        elif key == Qt.Key.Key_Escape:
            if self._mode != EditMode.SELECT:
                self.set_mode(EditMode.SELECT)
            else:
                self._set_selected(None)
        else:
            super().keyPressEvent(event)

    def contextMenuEvent(self, event) -> None:  # noqa: N802, ANN001 - QContextMenuEvent
        if self._mode != EditMode.SELECT or self._frame_wh is None:
            return
        hit = self.shapes.hit(self.to_frame(QPointF(event.pos())), self._tolerance_frame_px())
        if hit is None:
            return
        self._set_selected(hit.name)
        menu = QMenu(self)
        menu.addAction(_action(menu, "Rename…", self.request_rename))
        if hit.kind == ShapeKind.LINE:
            menu.addAction(_action(menu, "Flip IN direction", self.flip_selected))
        menu.addAction(_action(menu, "Delete", self.delete_selected))
        self._menu = menu
        menu.popup(event.globalPos())  # not exec(): the event loop keeps running

    def _zone_click(self, xy: XY, button: Qt.MouseButton) -> None:
        if button == Qt.MouseButton.RightButton:
            self._finish_zone()
            return
        if button != Qt.MouseButton.LeftButton:
            return
        tolerance = self._tolerance_frame_px()
        if len(self._draft) >= 3 and math.dist(xy, self._draft[0]) <= tolerance:
            self._finish_zone()
            return
        if self._draft and math.dist(xy, self._draft[-1]) <= tolerance:
            return  # the second press of a double click, or a shaky click: not a new vertex
        self._draft.append(xy)

    def _finish_zone(self) -> None:
        draft, self._draft = self._draft, []
        if len(draft) < 3:
            self.message.emit("a zone needs at least 3 vertices; drawing cancelled")
            self.set_mode(EditMode.SELECT)
            return
        try:
            name = self.shapes.add_zone(draft)
        except ShapeError as exc:
            self.message.emit(f"no zone added: {exc}")
            self.set_mode(EditMode.SELECT)
            return
        self._set_selected(name)
        self.set_mode(EditMode.SELECT)
        self._edited()

    # ---------------------------------------------------------------- painting
    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(24, 24, 24))
        if self._image is None or self._frame_wh is None:
            painter.setPen(QColor(200, 200, 200))
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter,
                             "No source. Open a video file, stream or webcam (File ▸ Open source…)")
            painter.end()
            return
        target = self.image_rect()
        if abs(target.width() - self._image.width()) > 1:
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        painter.drawImage(target, self._image)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        for zone in self.shapes.zones:
            self._paint_zone(painter, zone.name, zone.polygon)
        for line in self.shapes.lines:
            self._paint_line(painter, line.name, line.start, line.end)
        self._paint_draft(painter)
        painter.end()

    def _paint_zone(self, painter: QPainter, name: str, polygon: Sequence[XY]) -> None:
        selected = name == self._selected
        color = SELECTED_COLOR if selected else ZONE_COLOR
        outline = QPolygonF([self.to_widget(p) for p in polygon])
        fill = QColor(color)
        fill.setAlpha(45)
        painter.setPen(QPen(color, 2.5 if selected else 2.0))
        painter.setBrush(QBrush(fill))
        painter.drawPolygon(outline)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        if selected:
            for point in outline:
                self._paint_handle(painter, point, color)
        counts = self._zone_counts.get(name)
        text = name if counts is None else (
            f"{name}: {counts.occupancy} inside · enter {counts.enter_count} · exit {counts.exit_count}")
        top = min(outline, key=lambda p: p.y())
        self._paint_label(painter, text, QPointF(top.x(), top.y() - 4), color)

    def _paint_line(self, painter: QPainter, name: str, start: XY, end: XY) -> None:
        selected = name == self._selected
        color = SELECTED_COLOR if selected else LINE_COLOR
        a, b = self.to_widget(start), self.to_widget(end)
        painter.setPen(QPen(QColor(0, 0, 0, 160), 5.0))
        painter.drawLine(a, b)
        painter.setPen(QPen(color, 3.0 if selected else 2.5))
        painter.drawLine(a, b)
        for point in (a, b):
            self._paint_handle(painter, point, color, radius=HANDLE_RADIUS_PX + (1.5 if selected else 0.0))
        if math.dist((a.x(), a.y()), (b.x(), b.y())) >= 1.0:
            tail, tip = in_arrow((a.x(), a.y()), (b.x(), b.y()), ARROW_LENGTH_PX)
            self._paint_arrow(painter, QPointF(*tail), QPointF(*tip), color)
            beyond = QPointF(tip[0] + (tip[0] - tail[0]) * 0.45, tip[1] + (tip[1] - tail[1]) * 0.45)
            self._paint_label(painter, "IN", beyond, color, centred=True)
        counts = self._line_counts.get(name)
        text = name if counts is None else f"{name}: in {counts.in_count} · out {counts.out_count}"
        at = QPointF(a.x() + 0.12 * (b.x() - a.x()), a.y() + 0.12 * (b.y() - a.y()) - 10)
        self._paint_label(painter, text, at, color)

    def _paint_draft(self, painter: QPainter) -> None:
        if not self._draft:
            return
        points = [self.to_widget(p) for p in self._draft]
        if self._pointer is not None:
            points.append(self.to_widget(self._pointer))
        pen = QPen(DRAFT_COLOR, 2.0, Qt.PenStyle.DashLine)
        painter.setPen(pen)
        path = QPainterPath(points[0])
        for point in points[1:]:
            path.lineTo(point)
        if self._mode == EditMode.DRAW_ZONE and len(points) >= 3:
            path.lineTo(points[0])
        painter.drawPath(path)
        for point in points[:len(self._draft)]:
            self._paint_handle(painter, point, DRAFT_COLOR)

    @staticmethod
    def _paint_handle(painter: QPainter, center: QPointF, color: QColor, radius: float = HANDLE_RADIUS_PX) -> None:
        painter.setPen(QPen(QColor(0, 0, 0), 1.5))
        painter.setBrush(QBrush(color))
        painter.drawEllipse(center, radius, radius)
        painter.setBrush(Qt.BrushStyle.NoBrush)

    @staticmethod
    def _paint_arrow(painter: QPainter, tail: QPointF, tip: QPointF, color: QColor) -> None:
        painter.setPen(QPen(color, 2.5))
        painter.drawLine(tail, tip)
        angle = math.atan2(tip.y() - tail.y(), tip.x() - tail.x())
        head = 11.0
        left = QPointF(tip.x() - head * math.cos(angle - 0.45), tip.y() - head * math.sin(angle - 0.45))
        right = QPointF(tip.x() - head * math.cos(angle + 0.45), tip.y() - head * math.sin(angle + 0.45))
        painter.setBrush(QBrush(color))
        painter.drawPolygon(QPolygonF([tip, left, right]))
        painter.setBrush(Qt.BrushStyle.NoBrush)

    def _paint_label(self, painter: QPainter, text: str, at: QPointF, color: QColor, centred: bool = False) -> None:
        font = QFont(self.font())
        font.setBold(True)
        painter.setFont(font)
        metrics = QFontMetricsF(font)
        pad = 3.0
        width, height = metrics.horizontalAdvance(text) + 2 * pad, metrics.height() + 2 * pad
        x = at.x() - width / 2 if centred else at.x()
        y = at.y() - height / 2 if centred else at.y() - height
        x = min(max(x, 0.0), max(self.width() - width, 0.0))
        y = min(max(y, 0.0), max(self.height() - height, 0.0))
        box = QRectF(x, y, width, height)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QBrush(QColor(0, 0, 0, 170)))
        painter.drawRoundedRect(box, 3, 3)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.setPen(color)
        painter.drawText(box, Qt.AlignmentFlag.AlignCenter, text)


class _Drag:
    """A press on a handle (move that point) or on a shape's body (move the whole shape)."""

    def __init__(self, hit: Hit, origin: XY) -> None:
        self.hit = hit
        self.last = origin
        self.moved = False

    def move_to(self, shapes: CountingShapes, xy: XY) -> None:
        try:
            if self.hit.handle is not None:
                shapes.move_handle(self.hit.name, self.hit.handle, xy)
            else:
                shapes.translate(self.hit.name, xy[0] - self.last[0], xy[1] - self.last[1])
        except ShapeError:
            return  # e.g. endpoints dragged onto each other: keep the last valid geometry
        self.last = xy
        self.moved = True


def _action(parent: QMenu, text: str, slot) -> QAction:  # noqa: ANN001 - any callable
    action = QAction(text, parent)
    action.triggered.connect(lambda _checked=False: slot())
    return action
