"""The one way the GUI's windows show an error: a window-modal message box that never blocks
the event loop (``open()``, not ``exec()``), logged, and echoed in the window's status bar."""

from __future__ import annotations

import logging

from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import QMainWindow, QMessageBox

__all__ = ["open_error"]

logger = logging.getLogger(__name__)


def open_error(window: QMainWindow, title: str, text: str) -> QMessageBox:
    """Show ``text`` under ``title`` over ``window`` and return the (open) box."""
    logger.error("%s: %s", title, text)
    box = QMessageBox(QMessageBox.Icon.Critical, title, text, QMessageBox.StandardButton.Ok, window)
    box.setWindowModality(Qt.WindowModality.WindowModal)
    box.open()
    window.statusBar().showMessage(f"{title}: {text.splitlines()[0] if text else ''}", 10000)
    return box
