"""Finetune from the app: train on the labelled frames of a clip in a separate process.

The labelling window's Finetune… dialog picks the base model, the labelled frame ranges for
training and for held-out evaluation, epochs, image size and precision. It writes a ``format:
clip`` data YAML (:func:`app.labelling.write_clip_data_yaml`) and runs ``yolov7-track train``
in a child process (``QProcess``: the GUI thread never waits; the training's CPU work never
holds the GUI's interpreter). The dialog shows the command, so the run can be reproduced in a
shell, and follows the run's ``metrics.csv``: a live loss and mAP@0.5 chart per epoch.

- **Cancel** sends SIGINT: the trainer stops and keeps ``last.ckpt``; **Resume** continues it
  exactly (``yolov7-track train --resume RUN``).
- At the end both the base model and the new one are evaluated on the held-out frames
  (``yolov7-track val``, pycocotools mAP@0.5), side by side.
- **Use this model** hands the new ``best.safetensors`` (with its training metadata) to the app:
  the live view's detector becomes it.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shlex
import signal
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from PyQt6.QtCore import QObject, QPointF, QProcess, QSize, QTimer, pyqtSignal
from PyQt6.QtGui import QColor, QPainter, QPaintEvent, QPen
from PyQt6.QtWidgets import (
    QComboBox,
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.labelling import write_clip_data_yaml
from yolov7_track.errors import Yolov7TrackError

__all__ = ["FinetuneDialog", "FinetuneError", "FinetuneRequest", "TrainingRun", "read_metrics"]

logger = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
#: How often the run's metrics.csv is read, ms.
POLL_INTERVAL_MS = 500


class FinetuneError(Yolov7TrackError, ValueError):
    """Invalid finetune options (frame ranges, image size, epochs)."""


@dataclass(frozen=True)
class FinetuneRequest:
    """One finetune run.

    Attributes:
        video: the clip.
        labels: its saved ``gt.txt``.
        class_names: the labels' classes, in order (the new model's classes).
        base_weights: the model to start from (a bundled or registry name, or a file).
        train_frames, val_frames: ``(first, last)`` inclusive **video frame indices** (0-based)
            for training and for held-out evaluation; disjoint.
        epochs: training epochs, >= 1.
        img_size: training and evaluation size, pixels, a multiple of 32.
        precision: ``auto``, ``fp32``, ``bf16`` or ``fp16``.
        run_dir: the run's folder (data YAML, ``train/`` with checkpoints and weights, logs).

    Raises:
        FinetuneError: an invalid field.
    """

    video: Path
    labels: Path
    class_names: tuple[str, ...]
    base_weights: str
    train_frames: tuple[int, int]
    val_frames: tuple[int, int]
    epochs: int = 10
    img_size: int = 640
    precision: str = "auto"
    run_dir: Path = Path("finetune")

    def __post_init__(self) -> None:
        for name in ("train_frames", "val_frames"):
            first, last = getattr(self, name)
            if first < 0 or last < first:
                raise FinetuneError(f"{name}: expected first <= last, both >= 0, got {first}..{last}")
        (a, b), (c, d) = self.train_frames, self.val_frames
        if a <= d and c <= b:
            raise FinetuneError(f"train frames {a}..{b} and held-out frames {c}..{d} overlap; the held-out "
                                "frames must never be trained on")
        if self.epochs < 1:
            raise FinetuneError(f"epochs must be >= 1, got {self.epochs}")
        if self.img_size < 32 or self.img_size % 32:
            raise FinetuneError(f"img_size must be a positive multiple of 32 (the model's stride), got {self.img_size}")
        if self.precision not in PRECISIONS:
            raise FinetuneError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if not self.class_names:
            raise FinetuneError("the labels have no classes")

    @property
    def data_yaml(self) -> Path:
        return self.run_dir / "data.yaml"

    @property
    def train_dir(self) -> Path:
        return self.run_dir / "train"

    def write_data(self) -> Path:
        """Write the data YAML (MOT frame numbers = video index + 1)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        return write_clip_data_yaml(self.data_yaml, video=self.video.resolve(), gt_path=self.labels.resolve(),
                                    class_names=self.class_names,
                                    train_frames=(self.train_frames[0] + 1, self.train_frames[1] + 1),
                                    val_frames=(self.val_frames[0] + 1, self.val_frames[1] + 1))

    def train_args(self) -> list[str]:
        """The arguments of ``yolov7-track`` for this run."""
        return ["train", "--data", str(self.data_yaml), "--weights", self.base_weights, "--epochs", str(self.epochs),
                "--img-size", str(self.img_size), "--precision", self.precision, "--out", str(self.train_dir),
                "--workers", "0", "--no-progress"]

    def command_line(self) -> str:
        """What to type in a shell to run the same training."""
        return shlex.join(["yolov7-track", *self.train_args()])

    def val_args(self, weights: str | Path, json_path: Path) -> list[str]:
        return ["val", "--data", str(self.data_yaml), "--weights", str(weights), "--img-size", str(self.img_size),
                "--json", str(json_path), "--no-progress"]


def read_metrics(path: Path) -> list[dict[str, float]]:
    """The rows of a run's ``metrics.csv`` (empty values as NaN); ``[]`` while it does not exist."""
    try:
        with path.open(newline="", encoding="utf-8") as file:
            rows = list(csv.DictReader(file))
    except FileNotFoundError:
        return []
    return [{key: float(value) if value not in ("", None) else float("nan") for key, value in row.items()}
            for row in rows]


class TrainingRun(QObject):
    """``yolov7-track train`` (then ``val`` of both models) in child processes.

    Signals:
        epochDone(object): the ``metrics.csv`` rows so far (list of dicts), at each new row.
        finished(int, str): exit status of the training (0: done, 130: cancelled) and a message.
        compared(float, float): held-out mAP@0.5 of the base and of the new model.
        log(str): a line of the children's output.
    """

    epochDone = pyqtSignal(object)
    finished = pyqtSignal(int, str)
    compared = pyqtSignal(float, float)
    log = pyqtSignal(str)

    def __init__(self, request: FinetuneRequest, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.request = request
        self.process: QProcess | None = None
        self.rows: list[dict[str, float]] = []
        self.exit_code: int | None = None
        self.cancelled = False
        self._poll = QTimer(self)
        self._poll.setInterval(POLL_INTERVAL_MS)
        self._poll.timeout.connect(self._read_metrics)
        self._val_queue: list[tuple[str, Path]] = []
        self._val_results: dict[str, float] = {}

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.state() != QProcess.ProcessState.NotRunning

    @property
    def best_weights(self) -> Path:
        return self.request.train_dir / "best.safetensors"

    def start(self) -> None:
        """Write the data YAML and start training (returns at once)."""
        self.request.write_data()
        self._launch(self.request.train_args(), self._on_train_finished)

    def resume(self) -> None:
        """Continue a cancelled run from its last checkpoint."""
        self._launch(["train", "--resume", str(self.request.train_dir), "--no-progress", "--workers", "0"],
                     self._on_train_finished)

    def cancel(self) -> None:
        """SIGINT to the training: it stops, keeping its last checkpoint (``finished`` follows)."""
        if self.running and self.process is not None:
            self.cancelled = True
            os.kill(int(self.process.processId()), signal.SIGINT)

    def kill_and_wait(self, timeout_ms: int = 10_000) -> None:
        """Stop every child now (the window is closing)."""
        if self.process is not None and self.running:
            self.cancel()
            if not self.process.waitForFinished(timeout_ms):
                self.process.kill()
                self.process.waitForFinished(timeout_ms)

    def _launch(self, args: list[str], on_finished) -> None:  # noqa: ANN001 - slot
        process = QProcess(self)
        process.setProgram(sys.executable)
        process.setArguments(["-m", "app.cli", *args])
        process.setWorkingDirectory(str(Path(__file__).resolve().parents[2]))
        process.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
        process.readyReadStandardOutput.connect(lambda: self._forward(process))
        process.finished.connect(lambda code, _status: on_finished(code))
        self.process = process
        self.cancelled = False
        logger.info("starting: %s", shlex.join(["yolov7-track", *args]))
        process.start()
        if args[0] == "train":
            self._poll.start()

    def _forward(self, process: QProcess) -> None:
        text = bytes(process.readAllStandardOutput()).decode("utf-8", "replace")
        for line in text.splitlines():
            if line.strip():
                self.log.emit(line)

    def _read_metrics(self) -> None:
        rows = read_metrics(self.request.train_dir / "metrics.csv")
        if len(rows) > len(self.rows):
            self.rows = rows
            self.epochDone.emit(rows)

    def _on_train_finished(self, code: int) -> None:
        self._poll.stop()
        self._read_metrics()
        self.exit_code = code
        if code == 0:
            message = f"trained {len(self.rows)} epoch(s); weights {self.best_weights}"
        elif self.cancelled:
            message = f"cancelled after {len(self.rows)} epoch(s); Resume continues from the last checkpoint"
        else:
            message = f"training failed (exit status {code}); see the log"
        self.finished.emit(code, message)
        if code == 0 and self.best_weights.is_file():
            self._val_queue = [("base", Path(self.request.base_weights)), ("new", self.best_weights)]
            self._next_val()

    def _next_val(self) -> None:
        if not self._val_queue:
            self.compared.emit(self._val_results.get("base", float("nan")), self._val_results.get("new", float("nan")))
            return
        name, weights = self._val_queue.pop(0)
        json_path = self.request.run_dir / f"val_{name}.json"
        weights_arg = self.request.base_weights if name == "base" else str(weights)
        self._launch(self.request.val_args(weights_arg, json_path),
                     lambda code, name=name, json_path=json_path: self._on_val_finished(name, json_path, code))

    def _on_val_finished(self, name: str, json_path: Path, code: int) -> None:
        if code == 0 and json_path.is_file():
            self._val_results[name] = float(json.loads(json_path.read_text())["map50"])
        else:
            self.log.emit(f"evaluation of the {name} model failed (exit status {code})")
        self._next_val()


class MetricsChart(QWidget):
    """Training loss and held-out mAP@0.5 per epoch, two polylines on their own scales."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.rows: list[dict[str, float]] = []
        self.setMinimumHeight(160)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return QSize(480, 200)

    def set_rows(self, rows: list[dict[str, float]]) -> None:
        self.rows = list(rows)
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt override
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(30, 30, 30))
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        margin = 24.0
        width, height = self.width() - 2 * margin, self.height() - 2 * margin
        painter.setPen(QColor(200, 200, 200))
        painter.drawText(int(margin), 16, "train loss (orange), held-out mAP@0.5 (cyan), per epoch")
        for key, color in (("train_loss", QColor(255, 160, 0)), ("map50", QColor(0, 220, 255))):
            values = [(i, row.get(key, float("nan"))) for i, row in enumerate(self.rows)]
            values = [(i, v) for i, v in values if v == v]  # NaN: not measured that epoch
            if not values:
                continue
            top = max(v for _, v in values) or 1.0
            count = max(1, len(self.rows) - 1)
            points = [QPointF(margin + width * i / count, margin + height * (1 - v / top)) for i, v in values]
            painter.setPen(QPen(color, 2.0))
            for a, b in zip(points, points[1:]):
                painter.drawLine(a, b)
            for point in points:
                painter.drawEllipse(point, 3.0, 3.0)
        painter.end()


class FinetuneDialog(QDialog):
    """Pick the options, run, follow, compare, use (module docstring).

    Signals:
        modelChosen(str): the new model's weights file, on "Use this model".
    """

    modelChosen = pyqtSignal(str)

    def __init__(self, video: Path, labels: Path, class_names: tuple[str, ...], base_weights: str,
                 labelled_frames: tuple[int, int], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Finetune on the labelled frames")
        self.video, self.labels, self.class_names = video, labels, class_names
        self.run: TrainingRun | None = None
        first, last = labelled_frames
        split = first + max(1, int((last - first + 1) * 0.8)) - 1
        self.base = QLineEdit(base_weights)
        self.train_first, self.train_last = _frame_spin(first), _frame_spin(min(split, last))
        self.val_first, self.val_last = _frame_spin(min(split + 1, last)), _frame_spin(last)
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 1000)
        self.epochs.setValue(10)
        self.img_size = QSpinBox()
        self.img_size.setRange(32, 1920)
        self.img_size.setSingleStep(32)
        self.img_size.setValue(640)
        self.precision = QComboBox()
        self.precision.addItems(PRECISIONS)
        self.command = QLineEdit()
        self.command.setReadOnly(True)
        self.command.setToolTip("the same run from a shell")
        self.progress = QProgressBar()
        self.chart = MetricsChart()
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.comparison = QLabel("")
        self.start_button = QPushButton("Start")
        self.cancel_button = QPushButton("Cancel")
        self.resume_button = QPushButton("Resume")
        self.use_button = QPushButton("Use this model")
        self.close_button = QPushButton("Close")
        self.start_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.resume_button.clicked.connect(self.resume)
        self.use_button.clicked.connect(self.use_model)
        self.close_button.clicked.connect(self.close)

        form = QFormLayout()
        form.addRow("base model:", self.base)
        form.addRow("train frames:", _pair(self.train_first, self.train_last))
        form.addRow("held-out frames:", _pair(self.val_first, self.val_last))
        form.addRow("epochs:", self.epochs)
        form.addRow("image size:", self.img_size)
        form.addRow("precision:", self.precision)
        form.addRow("command:", self.command)
        buttons = QHBoxLayout()
        for button in (self.start_button, self.cancel_button, self.resume_button, self.use_button, self.close_button):
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.progress)
        layout.addWidget(self.chart, 1)
        layout.addWidget(self.status)
        layout.addWidget(self.comparison)
        layout.addLayout(buttons)
        self._update_buttons()

    def request(self) -> FinetuneRequest:
        """The options as a request (``FinetuneError`` when invalid)."""
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        return FinetuneRequest(
            video=self.video, labels=self.labels, class_names=self.class_names, base_weights=self.base.text().strip(),
            train_frames=(self.train_first.value(), self.train_last.value()),
            val_frames=(self.val_first.value(), self.val_last.value()), epochs=self.epochs.value(),
            img_size=self.img_size.value(), precision=self.precision.currentText(),
            run_dir=self.labels.parent.parent / "finetune" / stamp)

    def start(self) -> bool:
        try:
            request = self.request()
        except FinetuneError as exc:
            self.status.setText(str(exc))
            return False
        self.run = TrainingRun(request, self)
        self.run.epochDone.connect(self._on_epoch)
        self.run.finished.connect(self._on_finished)
        self.run.compared.connect(self._on_compared)
        self.run.log.connect(self._on_log)
        self.command.setText(request.command_line())
        self.progress.setRange(0, request.epochs)
        self.progress.setValue(0)
        self.chart.set_rows([])
        self.comparison.setText("")
        self.run.start()
        self.status.setText(f"training in {request.run_dir}…")
        self._update_buttons()
        return True

    def cancel(self) -> None:
        if self.run is not None:
            self.run.cancel()
            self.status.setText("stopping after the current step…")

    def resume(self) -> None:
        if self.run is not None and not self.run.running:
            self.run.resume()
            self.status.setText("resuming…")
            self._update_buttons()

    def use_model(self) -> None:
        if self.run is not None and self.run.best_weights.is_file():
            self.modelChosen.emit(str(self.run.best_weights))
            self.status.setText(f"the live view now uses {self.run.best_weights}")

    def _on_epoch(self, rows: list[dict[str, float]]) -> None:
        self.progress.setValue(len(rows))
        self.chart.set_rows(rows)
        last = rows[-1]
        self.status.setText(f"epoch {len(rows)}: train loss {last.get('train_loss', float('nan')):.4f}, "
                            f"held-out mAP@0.5 {last.get('map50', float('nan')):.3f}")

    def _on_finished(self, code: int, message: str) -> None:
        self.status.setText(message)
        if code == 0:
            self.comparison.setText("evaluating the base and the new model on the held-out frames…")
        self._update_buttons()

    def _on_compared(self, base: float, new: float) -> None:
        self.comparison.setText(f"held-out mAP@0.5: base {base:.3f}, new {new:.3f} ({new - base:+.3f})")

    def _on_log(self, line: str) -> None:
        logger.info("train: %s", line)

    def _update_buttons(self) -> None:
        running = self.run is not None and self.run.running
        self.start_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self.resume_button.setEnabled(self.run is not None and not running and self.run.cancelled)
        self.use_button.setEnabled(self.run is not None and not running and self.run.exit_code == 0)

    def closeEvent(self, event) -> None:  # noqa: ANN001, N802 - Qt override
        # Never wait here: a running training is cancelled (it keeps its last checkpoint) and
        # ends on its own; the dialog is hidden, not deleted, until then.
        if self.run is not None:
            self.run.cancel()
        super().closeEvent(event)


def _frame_spin(value: int) -> QSpinBox:
    spin = QSpinBox()
    spin.setRange(0, 10_000_000)
    spin.setValue(value)
    return spin


def _pair(first: QSpinBox, last: QSpinBox) -> QWidget:
    widget = QWidget()
    row = QHBoxLayout(widget)
    row.setContentsMargins(0, 0, 0, 0)
    row.addWidget(first)
    row.addWidget(QLabel("to"))
    row.addWidget(last)
    return widget
