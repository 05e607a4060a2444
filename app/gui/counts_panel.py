"""Live counts per line and zone, with one row per class under each.

Columns: name, class, IN (zones: enter), OUT (zones: exit), inside (zones: occupancy now).
"""

from __future__ import annotations

from collections.abc import Sequence

from PyQt6.QtWidgets import QHeaderView, QTreeWidget, QTreeWidgetItem, QWidget

from app.counting import LineCounts, ZoneCounts

__all__ = ["CountsPanel", "count_rows"]

COLUMNS = ("name", "class", "in / enter", "out / exit", "inside")

Row = tuple[str, str, str, str, str]


def count_rows(lines: Sequence[LineCounts], zones: Sequence[ZoneCounts]) -> list[tuple[Row, list[Row]]]:
    """The panel's content: per line and zone a totals row and its per-class rows (sorted by
    class name). Lines leave "inside" empty."""
    table: list[tuple[Row, list[Row]]] = []
    for line in lines:
        total: Row = (line.name, "all", str(line.in_count), str(line.out_count), "")
        per_class = [(line.name, name, str(n_in), str(n_out), "")
                     for name, (n_in, n_out) in sorted(line.by_class.items())]
        table.append((total, per_class))
    for zone in zones:
        total = (zone.name, "all", str(zone.enter_count), str(zone.exit_count), str(zone.occupancy))
        classes = sorted(set(zone.enter_by_class) | set(zone.exit_by_class) | set(zone.occupancy_by_class))
        per_class = [(zone.name, name, str(zone.enter_by_class.get(name, 0)), str(zone.exit_by_class.get(name, 0)),
                      str(zone.occupancy_by_class.get(name, 0))) for name in classes]
        table.append((total, per_class))
    return table


class CountsPanel(QTreeWidget):
    """A tree of counts, refreshed with :meth:`show_counts` (cheap when nothing changed)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setColumnCount(len(COLUMNS))
        self.setHeaderLabels(list(COLUMNS))
        self.setRootIsDecorated(True)
        self.setUniformRowHeights(True)
        self.setAlternatingRowColors(True)
        header = self.header()
        header.setStretchLastSection(False)
        for column in range(len(COLUMNS)):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.setMinimumWidth(330)
        self._shown: list[tuple[Row, list[Row]]] = []

    def show_counts(self, lines: Sequence[LineCounts], zones: Sequence[ZoneCounts]) -> None:
        table = count_rows(lines, zones)
        if table == self._shown:
            return
        same_layout = [(t[0], [r[1] for r in c]) for t, c in table] == [
            (t[0], [r[1] for r in c]) for t, c in self._shown]
        if same_layout:
            for i, (total, per_class) in enumerate(table):
                item = self.topLevelItem(i)
                _set_texts(item, total)
                for j, row in enumerate(per_class):
                    _set_texts(item.child(j), row)
        else:
            self.clear()
            for total, per_class in table:
                item = QTreeWidgetItem(self, list(total))
                for row in per_class:
                    QTreeWidgetItem(item, ["", *row[1:]])
                item.setExpanded(True)
        self._shown = table

    def totals(self) -> dict[str, tuple[str, str, str]]:
        """``{name: (in/enter, out/exit, inside)}`` as shown (for tests and the status line)."""
        return {total[0]: total[2:] for total, _ in self._shown}


def _set_texts(item: QTreeWidgetItem, row: Row) -> None:
    for column, text in enumerate(row):
        if column == 0 and item.parent() is not None:
            continue  # class rows leave the name column empty
        if item.text(column) != text:
            item.setText(column, text)
