"""Choosing what to watch: a video file or image folder, a stream URL, or a webcam.

The dialog returns a source spec in the form :func:`app.sources.open_source` takes (a path, a
``rtsp://``/``http://``... URL, or a webcam index as text). It only checks the spec's form
(file exists, URL scheme is one we read); connecting happens in the worker thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PyQt6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.sources import SourceError, SourceKind, classify_source

__all__ = ["SourceDialog", "check_source_spec", "VIDEO_FILE_FILTER"]

VIDEO_FILE_FILTER = "Videos (*.mp4 *.avi *.mkv *.mov *.webm *.m4v *.ts *.mpg *.mpeg);;All files (*)"
TAB_FILE, TAB_URL, TAB_WEBCAM = 0, 1, 2


def check_source_spec(spec: str, expected: SourceKind | None = None) -> str:
    """Validate the form of a source spec; returns it stripped.

    Raises:
        SourceError: empty, an unsupported URL scheme, a file or folder that does not exist, or
            not of the ``expected`` kind; the message says what to enter instead.
    """
    spec = spec.strip()
    if not spec:
        raise SourceError("enter a file path, a stream URL or a webcam index")
    kind = classify_source(spec)
    if expected is not None and kind is not expected and not (
            expected is SourceKind.VIDEO_FILE and kind is SourceKind.IMAGE_FOLDER):
        wanted = {SourceKind.STREAM: "a URL such as rtsp://camera/stream",
                  SourceKind.VIDEO_FILE: "a video file or image folder",
                  SourceKind.WEBCAM: "a webcam index"}[expected]
        raise SourceError(f"{spec!r} is not {wanted}")
    if kind in (SourceKind.VIDEO_FILE, SourceKind.IMAGE_FOLDER) and not Path(spec).exists():
        raise SourceError(f"no file or folder at {spec}")
    return spec


class SourceDialog(QDialog):
    """Tabs for a file, a stream URL (with the recent URLs) and a webcam index.

    Args:
        recent: recent source specs, newest first; files go to the file tab's list, URLs to
            the URL tab's.
    """

    def __init__(self, recent: Sequence[str] = (), parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Open source")
        self.setMinimumWidth(520)
        self._spec = ""
        recent_urls = [s for s in recent if _kind_or_none(s) is SourceKind.STREAM]
        recent_files = [s for s in recent if _kind_or_none(s) in (SourceKind.VIDEO_FILE, SourceKind.IMAGE_FOLDER)]

        self.tabs = QTabWidget(self)
        # File
        file_tab = QWidget()
        self.file_edit = QComboBox(file_tab)
        self.file_edit.setEditable(True)
        self.file_edit.addItems(recent_files)
        self.file_edit.setCurrentText(recent_files[0] if recent_files else "")
        browse = QPushButton("Browse…", file_tab)
        browse.clicked.connect(self._browse)
        row = QHBoxLayout(file_tab)
        row.addWidget(self.file_edit, 1)
        row.addWidget(browse)
        self.tabs.addTab(file_tab, "File")
        # URL
        url_tab = QWidget()
        self.url_edit = QComboBox(url_tab)
        self.url_edit.setEditable(True)
        self.url_edit.addItems(recent_urls)
        self.url_edit.setCurrentText(recent_urls[0] if recent_urls else "")
        self.url_edit.lineEdit().setPlaceholderText("rtsp://user:password@camera:554/stream")
        url_form = QFormLayout(url_tab)
        url_form.addRow("URL:", self.url_edit)
        url_form.addRow(QLabel("RTSP, RTMP, HTTP(S), UDP or TCP. Recent URLs are in the list.", url_tab))
        self.tabs.addTab(url_tab, "Stream URL")
        # Webcam
        webcam_tab = QWidget()
        self.webcam_index = QSpinBox(webcam_tab)
        self.webcam_index.setRange(0, 63)
        webcam_form = QFormLayout(webcam_tab)
        webcam_form.addRow("Webcam index:", self.webcam_index)
        webcam_form.addRow(QLabel("0 is the first camera (/dev/video0 on Linux).", webcam_tab))
        self.tabs.addTab(webcam_tab, "Webcam")

        self.error_label = QLabel("", self)
        self.error_label.setStyleSheet("color: #c0392b")
        self.error_label.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Open | QDialogButtonBox.StandardButton.Cancel, self)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs)
        layout.addWidget(self.error_label)
        layout.addWidget(buttons)
        if recent and _kind_or_none(recent[0]) is SourceKind.STREAM:
            self.tabs.setCurrentIndex(TAB_URL)

    def spec(self) -> str:
        """The accepted source spec (empty before :meth:`accept` succeeded)."""
        return self._spec

    def current_spec(self) -> str:
        """The spec the current tab holds, unchecked."""
        index = self.tabs.currentIndex()
        if index == TAB_FILE:
            return self.file_edit.currentText().strip()
        if index == TAB_URL:
            return self.url_edit.currentText().strip()
        return str(self.webcam_index.value())

    def accept(self) -> None:
        expected = {TAB_FILE: SourceKind.VIDEO_FILE, TAB_URL: SourceKind.STREAM, TAB_WEBCAM: SourceKind.WEBCAM}
        try:
            self._spec = check_source_spec(self.current_spec(), expected[self.tabs.currentIndex()])
        except SourceError as exc:
            self.error_label.setText(str(exc))
            return
        super().accept()

    def _browse(self) -> None:
        start = str(Path(self.file_edit.currentText()).parent) if self.file_edit.currentText() else ""
        path, _ = QFileDialog.getOpenFileName(self, "Open video", start, VIDEO_FILE_FILTER)
        if path:
            self.file_edit.setCurrentText(path)


def _kind_or_none(spec: str) -> SourceKind | None:
    try:
        return classify_source(spec)
    except SourceError:
        return None
