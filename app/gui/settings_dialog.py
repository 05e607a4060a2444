"""Editing :class:`app.gui.settings.GuiSettings`: detector, tracker, device and recording.

The tracker part is built from :mod:`tracker.registry`: one entry of the tracker box per
registered tracker (its ``summary`` as tooltip) and one page of fields per tracker, one field per
parameter of :func:`tracker.registry.tracker_parameters`, so a registered tracker appears here
with no change to this module.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from PyQt6.QtCore import Qt
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
    GuiSettings,
    SettingsError,
    TrackerSettings,
)
from tracker.registry import TRACKERS, tracker_parameters

__all__ = ["SettingsDialog"]

#: Bound of the spin boxes of tracker parameters. The boxes only keep the typing sane (no
#: negative values unless the value or default is negative); the tracker configs own the real
#: ranges and refuse a value out of them when the dialog is accepted, with their message.
PARAM_SPIN_LIMIT = 1_000_000
#: Decimals shown by the spin boxes of float tracker parameters.
PARAM_DECIMALS = 4
_QT_INT_MAX = 2**31 - 1


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

        # Tracker: one combo entry and one page of fields per registered tracker
        tracker = settings.tracker
        self.tracker_kind = QComboBox()
        self.tracker_pages = QStackedWidget()
        #: tracker name -> parameter name -> its field (see _param_field)
        self.tracker_fields: dict[str, dict[str, QWidget]] = {}
        for index, (name, entry) in enumerate(TRACKERS.items()):
            self.tracker_kind.addItem(name)
            self.tracker_kind.setItemData(index, entry.summary, Qt.ItemDataRole.ToolTipRole)
            page = QWidget()
            page_form = QFormLayout(page)
            values = tracker.params_by_kind.get(name, {})
            param_fields: dict[str, QWidget] = {}
            for param, (kind, default) in tracker_parameters(name).items():
                param_fields[param] = _param_field(kind, values.get(param, default), default)
                page_form.addRow(f"{param}:", param_fields[param])
            self.tracker_fields[name] = param_fields
            self.tracker_pages.addWidget(page)
        self.tracker_kind.currentIndexChanged.connect(self._show_tracker)
        self.tracker_kind.setCurrentIndex(list(TRACKERS).index(tracker.kind))
        self._show_tracker(self.tracker_kind.currentIndex())
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
            params_by_kind={name: {param: _param_value(widget) for param, widget in fields.items()}
                            for name, fields in self.tracker_fields.items()},
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

    def _show_tracker(self, index: int) -> None:
        """Show the page of the tracker at ``index`` and its summary as the box's tooltip."""
        self.tracker_pages.setCurrentIndex(index)
        self.tracker_kind.setToolTip(self.tracker_kind.itemData(index, Qt.ItemDataRole.ToolTipRole) or "")

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


def _param_field(kind: type, value: Any, default: Any) -> QWidget:
    """The field of one tracker parameter of type ``kind``, showing ``value``: bool -> QCheckBox,
    int -> QSpinBox, float -> QDoubleSpinBox (:data:`PARAM_DECIMALS` decimals), anything else a
    QLineEdit whose text is the value (a str parameter)."""
    widget: QWidget
    if kind is bool:
        check = QCheckBox()
        check.setChecked(bool(value))
        widget = check
    elif kind is int:
        spin = QSpinBox()
        spin.setRange(*_spin_range(value, default))
        spin.setValue(int(value))
        widget = spin
    elif kind is float:
        double = QDoubleSpinBox()
        double.setDecimals(PARAM_DECIMALS)
        double.setRange(*_spin_range(value, default))
        double.setSingleStep(0.05)
        double.setValue(float(value))
        widget = double
    else:
        widget = QLineEdit(str(value))
    widget.setToolTip(f"{getattr(kind, '__name__', kind)}, default {default!r}")
    return widget


def _spin_range(value: Any, default: Any) -> tuple[int, int]:
    """``[0, PARAM_SPIN_LIMIT]``, widened to hold ``value`` and ``default`` (within the 32-bit
    range of a QSpinBox)."""
    numbers = [v for v in (value, default) if isinstance(v, (int, float)) and not isinstance(v, bool)]
    low = 0 if min(numbers, default=0) >= 0 else -max(PARAM_SPIN_LIMIT, -int(min(numbers)) + 1)
    high = max(PARAM_SPIN_LIMIT, int(max(numbers, default=0)) + 1)
    return max(low, -_QT_INT_MAX), min(high, _QT_INT_MAX)


def _param_value(widget: QWidget) -> Any:
    """The value a field of :func:`_param_field` holds."""
    if isinstance(widget, QCheckBox):
        return widget.isChecked()
    if isinstance(widget, (QSpinBox, QDoubleSpinBox)):
        return widget.value()
    return widget.text()
