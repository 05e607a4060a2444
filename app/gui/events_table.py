"""The count events of the session in a table, newest at the bottom, exportable to CSV.

The columns are the sinks' (:data:`app.counting.EVENT_FIELDS`), and the export is written by
:class:`app.sinks.CsvEventSink`, so an exported file reads back with :func:`app.sinks.read_events`
like the CLI's ``--events`` files.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from PyQt6.QtCore import QAbstractTableModel, QModelIndex, Qt, pyqtSignal
from PyQt6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app.counting import EVENT_FIELDS, CountEvent

__all__ = ["EventsModel", "EventsPanel", "export_events_csv"]


def export_events_csv(events: Iterable[CountEvent], path: str | Path) -> int:
    """Write ``events`` to a new CSV file at ``path`` (header :data:`EVENT_FIELDS`); returns how
    many were written.

    Raises:
        app.sinks.UnsupportedEventFileError: ``path`` does not end in ``.csv``.
        app.sinks.EventSinkError: the file cannot be written.
    """
    from app.sinks import UnsupportedEventFileError, open_event_sink

    path = Path(path)
    if path.suffix.lower() != ".csv":
        raise UnsupportedEventFileError(f"{path}: export writes CSV; use a file name ending in .csv")
    events = list(events)
    # The user picked the file in a save dialog, which asked before replacing it.
    with open_event_sink(path, mode="overwrite") as sink:
        sink.write_many(events)
    return len(events)


class EventsModel(QAbstractTableModel):
    """Read-only table of :class:`CountEvent` rows; :meth:`append` adds at the bottom."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._events: list[CountEvent] = []

    @property
    def events(self) -> Sequence[CountEvent]:
        return tuple(self._events)

    def append(self, events: Sequence[CountEvent]) -> None:
        if not events:
            return
        first = len(self._events)
        self.beginInsertRows(QModelIndex(), first, first + len(events) - 1)
        self._events.extend(events)
        self.endInsertRows()

    def clear(self) -> None:
        self.beginResetModel()
        self._events.clear()
        self.endResetModel()

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: N802 - Qt override
        return 0 if parent.isValid() else len(self._events)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(EVENT_FIELDS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole):  # noqa: N802, ANN201
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return EVENT_FIELDS[section]
        return None

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole):  # noqa: ANN201
        if not index.isValid() or role not in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.TextAlignmentRole):
            return None
        field = EVENT_FIELDS[index.column()]
        if role == Qt.ItemDataRole.TextAlignmentRole:
            numeric = field in ("timestamp_s", "frame_index", "track_id", "dwell_s")
            return int((Qt.AlignmentFlag.AlignRight if numeric else Qt.AlignmentFlag.AlignLeft)
                       | Qt.AlignmentFlag.AlignVCenter)
        value = self._events[index.row()].as_dict()[field]
        if value is None:
            return ""
        if isinstance(value, float):
            return f"{value:.2f}"
        return str(value)


class EventsPanel(QWidget):
    """The events table with a count and an "Export CSV…" button.

    Signals:
        exported(str, int): a file was written (path, events).
        exportFailed(str): writing it failed (message).
    """

    exported = pyqtSignal(str, int)
    exportFailed = pyqtSignal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = EventsModel(self)
        self.view = QTableView(self)
        self.view.setModel(self.model)
        self.view.verticalHeader().setVisible(False)
        self.view.verticalHeader().setDefaultSectionSize(20)
        self.view.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.view.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        self.view.setEditTriggers(QTableView.EditTrigger.NoEditTriggers)
        self.count_label = QLabel("0 events", self)
        self.export_button = QPushButton("Export CSV…", self)
        self.export_button.clicked.connect(self.ask_export)
        self.clear_button = QPushButton("Clear", self)
        self.clear_button.clicked.connect(self.clear)
        bar = QHBoxLayout()
        bar.addWidget(self.count_label)
        bar.addStretch(1)
        bar.addWidget(self.clear_button)
        bar.addWidget(self.export_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(bar)
        layout.addWidget(self.view)

    def add_events(self, events: Sequence[CountEvent]) -> None:
        if not events:
            return
        at_bottom = self.view.verticalScrollBar().value() >= self.view.verticalScrollBar().maximum() - 2
        self.model.append(events)
        self.count_label.setText(f"{self.model.rowCount()} events")
        if at_bottom:
            self.view.scrollToBottom()

    def clear(self) -> None:
        self.model.clear()
        self.count_label.setText("0 events")

    def ask_export(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export events", "events.csv", "CSV files (*.csv)")
        if path:
            if not path.lower().endswith(".csv"):
                path += ".csv"
            self.export_to(path)

    def export_to(self, path: str | Path) -> bool:
        """Export every event to ``path``; emits :attr:`exported` or :attr:`exportFailed`."""
        from app.sinks import EventSinkError, UnsupportedEventFileError

        try:
            written = export_events_csv(self.model.events, path)
        except (EventSinkError, UnsupportedEventFileError, OSError) as exc:
            self.exportFailed.emit(f"cannot export events to {path}: {exc}")
            return False
        self.exported.emit(str(path), written)
        return True
