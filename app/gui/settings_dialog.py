"""Editing :class:`app.gui.settings.GuiSettings`: detector, tracker, device and recording."""

from __future__ import annotations

from dataclasses import replace

from PyQt6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app.gui.settings import (
    BACKEND_CHOICES,
    PRECISION_CHOICES,
    TRACKER_KINDS,
    GuiSettings,
    SettingsError,
    TrackerSettings,
)

__all__ = ["SettingsDialog"]


class SettingsDialog(QDialog):
    """A form over every setting; :meth:`settings` returns the validated result.

    Changes take effect at the next start (a running pipeline keeps its detector and tracker).
    """

    def __init__(self, settings: GuiSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self._base = settings
        self._result = settings

        # Detector
        self.weights = QLineEdit(settings.weights)
        self.weights.setToolTip("a bundled model (yolov7-tiny-traffic, the default; offline), an official name "
                                "(yolov7-tiny, yolov7, ...; downloaded once) or a .pt / .safetensors file")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse_weights)
        weights_row = QHBoxLayout()
        weights_row.addWidget(self.weights, 1)
        weights_row.addWidget(browse)
        self.img_size = QSpinBox()
        self.img_size.setRange(0, 2560)
        self.img_size.setSingleStep(32)
        self.img_size.setSpecialValueText("model default")
        self.img_size.setValue(settings.img_size or 0)
        self.conf = _unit_spin(settings.conf_thres)
        self.iou = _unit_spin(settings.iou_thres)
        self.classes = QLineEdit(", ".join(settings.classes))
        self.classes.setPlaceholderText("all classes (or e.g. person, car or 0, 2)")
        self.device = QComboBox()
        self.device.setEditable(True)
        self.device.addItems(["auto", "cpu", "cuda", "cuda:0", "cuda:1"])
        self.device.setCurrentText(settings.device)
        self.precision = QComboBox()
        self.precision.addItems(list(PRECISION_CHOICES))
        self.precision.setCurrentText(settings.precision)
        self.precision.setToolTip("auto: the fastest precision proven accurate on this hardware "
                                  "(bf16 on CPUs with AVX512-BF16/AMX, fp16 on CUDA, else fp32)")
        self.backend = QComboBox()
        self.backend.addItems(list(BACKEND_CHOICES))
        self.backend.setCurrentText(settings.backend)
        self.backend.setToolTip("onnxruntime and openvino are optional extras: "
                                "pip install 'yolov7-track[onnx]' or 'yolov7-track[openvino]'")
        detector_box = QGroupBox("Detector")
        form = QFormLayout(detector_box)
        form.addRow("Weights:", weights_row)
        form.addRow("Input size (px):", self.img_size)
        form.addRow("Confidence threshold:", self.conf)
        form.addRow("NMS IoU threshold:", self.iou)
        form.addRow("Classes:", self.classes)
        form.addRow("Device:", self.device)
        form.addRow("Precision:", self.precision)
        form.addRow("Runtime:", self.backend)

        # Tracker
        tracker = settings.tracker
        self.tracker_kind = QComboBox()
        self.tracker_kind.addItems(list(TRACKER_KINDS))
        self.tracker_kind.setCurrentText(tracker.kind)
        self.track_thresh = _unit_spin(tracker.track_thresh)
        self.match_thresh = _unit_spin(tracker.match_thresh)
        self.track_buffer = _int_spin(tracker.track_buffer_frames, 1, 10_000)
        self.max_age = _int_spin(tracker.max_age_frames, 1, 10_000)
        self.min_hits = _int_spin(tracker.min_hits, 1, 1_000)
        self.sort_iou = _unit_spin(tracker.iou_threshold)
        byte_page, sort_page = QWidget(), QWidget()
        byte_form = QFormLayout(byte_page)
        byte_form.addRow("track_thresh:", self.track_thresh)
        byte_form.addRow("match_thresh:", self.match_thresh)
        byte_form.addRow("track_buffer (frames):", self.track_buffer)
        sort_form = QFormLayout(sort_page)
        sort_form.addRow("max_age (frames):", self.max_age)
        sort_form.addRow("min_hits:", self.min_hits)
        sort_form.addRow("IoU threshold:", self.sort_iou)
        self.tracker_pages = QStackedWidget()
        self.tracker_pages.addWidget(byte_page)
        self.tracker_pages.addWidget(sort_page)
        self.tracker_kind.currentIndexChanged.connect(self.tracker_pages.setCurrentIndex)
        self.tracker_pages.setCurrentIndex(TRACKER_KINDS.index(tracker.kind))
        tracker_box = QGroupBox("Tracker")
        tracker_layout = QFormLayout(tracker_box)
        tracker_layout.addRow("Tracker:", self.tracker_kind)
        tracker_layout.addRow(self.tracker_pages)

        # Output and playback
        self.record = QCheckBox("Record the annotated video of each run")
        self.record.setChecked(settings.record_output)
        self.output_dir = QLineEdit(settings.output_dir)
        self.output_dir.setPlaceholderText(str(GuiSettings().recording_dir()))
        self.pace = QCheckBox("Play video files at their frame rate (otherwise as fast as processed)")
        self.pace.setChecked(settings.pace_files)
        output_box = QGroupBox("Output and playback")
        output_form = QFormLayout(output_box)
        output_form.addRow(self.record)
        output_form.addRow("Recordings folder:", self.output_dir)
        output_form.addRow(self.pace)

        self.error_label = QLabel("")
        self.error_label.setStyleSheet("color: #c0392b")
        self.error_label.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(detector_box)
        layout.addWidget(tracker_box)
        layout.addWidget(output_box)
        layout.addWidget(QLabel("Changes apply from the next start."))
        layout.addWidget(self.error_label)
        layout.addWidget(buttons)

    def settings(self) -> GuiSettings:
        """The accepted settings (the initial ones until :meth:`accept` succeeded)."""
        return self._result

    def read_form(self) -> GuiSettings:
        """The settings the form holds now.

        Raises:
            SettingsError: a value is invalid (the message names it).
        """
        tracker = TrackerSettings(
            kind=self.tracker_kind.currentText(),
            track_thresh=self.track_thresh.value(),
            match_thresh=self.match_thresh.value(),
            track_buffer_frames=self.track_buffer.value(),
            max_age_frames=self.max_age.value(),
            min_hits=self.min_hits.value(),
            iou_threshold=self.sort_iou.value(),
        )
        classes = tuple(t.strip() for t in self.classes.text().split(",") if t.strip())
        return replace(
            self._base,
            weights=self.weights.text().strip(),
            img_size=self.img_size.value() or None,
            conf_thres=self.conf.value(),
            iou_thres=self.iou.value(),
            classes=classes,
            device=self.device.currentText().strip(),
            precision=self.precision.currentText(),
            backend=self.backend.currentText(),
            tracker=tracker,
            record_output=self.record.isChecked(),
            output_dir=self.output_dir.text().strip(),
            pace_files=self.pace.isChecked(),
        )

    def accept(self) -> None:
        try:
            self._result = self.read_form()
        except SettingsError as exc:
            self.error_label.setText(str(exc))
            return
        super().accept()

    def _browse_weights(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Weights", "", "Weights (*.pt *.safetensors);;All files (*)")
        if path:
            self.weights.setText(path)


def _unit_spin(value: float) -> QDoubleSpinBox:
    spin = QDoubleSpinBox()
    spin.setRange(0.0, 1.0)
    spin.setDecimals(2)
    spin.setSingleStep(0.05)
    spin.setValue(value)
    return spin


def _int_spin(value: int, low: int, high: int) -> QSpinBox:
    spin = QSpinBox()
    spin.setRange(low, high)
    spin.setValue(value)
    return spin
