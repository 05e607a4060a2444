"""Labelled clips: a video file plus per-frame boxes, frames decoded on demand and cached.

Labels come either as a MOTChallenge ``gt.txt`` (``frame, id, left, top, width, height,
flag, ...``; 1-based frames; MOT16+ files carry a class in column 8) or as one YOLO txt file
per frame (CVAT's "YOLO 1.1" export, ``frame_000123.txt``). Label frame numbers map to video
frame indices by ``video_index = label_frame + frame_offset`` (MOT: ``-1``; MOT frame 1 is the
first decoded frame). Boxes may be given at another resolution than the video: every
coordinate is multiplied by ``scale`` (PETS09-S2L1: MOT ground truth at 768x576, video at
480x360, ``scale = 0.625``).

Splits are contiguous time ranges of label frames (``train_frames: [1, 400]``,
``val_frames: [401, 795]``), never interleaved frames, so that near-identical neighbouring
frames do not leak between training and validation.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .datasets import (
    Annotations,
    DataConfig,
    DatasetError,
    DetectionSource,
    LabelFormatError,
    normalised_cxcywh_to_pixel_labels,
    parse_names,
    read_yolo_labels,
)

logger = logging.getLogger(__name__)

MOT_FRAME, MOT_ID, MOT_LEFT, MOT_TOP, MOT_WIDTH, MOT_HEIGHT, MOT_FLAG = range(7)
"""Columns of a MOTChallenge text row (0-based). ``MOT_FLAG`` is "consider this row" (1) or
"ignore" (0) in ground truth (MOT15 calls it conf; MOT16+ "considered for evaluation")."""
MOT16_CLASS_COLUMN = 7


class VideoFrames:
    """Random access to the frames of a video, decoded on demand and cached.

    Decoding is sequential (seeking in inter-coded video such as H.264 is not frame exact):
    a request behind the decoder's position re-opens the file and decodes forward; every frame
    passed on the way is cached, so one shuffled epoch decodes the video about once. Frames are
    kept in an in-memory LRU of ``max_memory_frames`` and, when ``cache_dir`` is given, as
    lossless PNG files there (shared by DataLoader workers and later runs).

    ``frame(i)`` returns a read-only ``(H, W, 3)`` uint8 BGR array.

    Raises:
        DatasetError: the video cannot be opened, or has no frame ``i``.
    """

    def __init__(self, path: str | Path, *, cache_dir: str | Path | None = None,
                 max_memory_frames: int = 1024) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise DatasetError(f"video {self.path} not found")
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        if self.cache_dir is not None:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.max_memory_frames = max_memory_frames
        capture = self._open()
        self.frame_count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        self.width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        capture.release()
        self._capture: cv2.VideoCapture | None = None
        self._next_index = 0
        self._memory: OrderedDict[int, np.ndarray] = OrderedDict()
        self.decoded_frames = 0
        """Frames decoded so far by this object (diagnostics and tests)."""

    def _open(self) -> cv2.VideoCapture:
        capture = cv2.VideoCapture(str(self.path))
        if not capture.isOpened():
            raise DatasetError(f"cannot open video {self.path}")
        return capture

    def __len__(self) -> int:
        return self.frame_count

    @property
    def shape_hw(self) -> tuple[int, int]:
        return self.height, self.width

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_capture"] = None  # re-opened on demand in the worker
        state["_next_index"] = 0
        state["_memory"] = OrderedDict()
        return state

    def frame(self, index: int) -> np.ndarray:
        if not 0 <= index < self.frame_count:
            raise DatasetError(f"{self.path}: frame index {index} outside [0, {self.frame_count})")
        cached = self._memory.get(index)
        if cached is not None:
            self._memory.move_to_end(index)
            return cached
        image = self._read_disk(index)
        if image is None:
            image = self._decode_until(index)
        self._remember(index, image)
        return image

    def _disk_path(self, index: int) -> Path:
        assert self.cache_dir is not None
        return self.cache_dir / f"{self.path.stem}_{index:06d}.png"

    def _read_disk(self, index: int) -> np.ndarray | None:
        if self.cache_dir is None:
            return None
        path = self._disk_path(index)
        if not path.is_file():
            return None
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise DatasetError(f"frame cache file {path} is unreadable; delete it to re-decode")
        image.flags.writeable = False
        return image

    def _write_disk(self, index: int, image: np.ndarray) -> None:
        if self.cache_dir is None or self._disk_path(index).is_file():
            return
        handle, tmp = tempfile.mkstemp(suffix=".png", dir=self.cache_dir)
        os.close(handle)
        try:
            if not cv2.imwrite(tmp, image, [cv2.IMWRITE_PNG_COMPRESSION, 1]):
                raise DatasetError(f"cannot write frame cache file in {self.cache_dir}")
            os.replace(tmp, self._disk_path(index))
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def _remember(self, index: int, image: np.ndarray) -> None:
        self._memory[index] = image
        self._memory.move_to_end(index)
        while len(self._memory) > self.max_memory_frames:
            self._memory.popitem(last=False)

    def _decode_until(self, index: int) -> np.ndarray:
        if self._capture is None or index < self._next_index:
            if self._capture is not None:
                self._capture.release()
            self._capture = self._open()
            self._next_index = 0
        while True:
            ok, image = self._capture.read()
            if not ok:
                raise DatasetError(f"{self.path}: decoding stopped at frame {self._next_index}, "
                                   f"frame {index} was requested (the file may be truncated)")
            current = self._next_index
            self._next_index += 1
            self.decoded_frames += 1
            image.flags.writeable = False
            if current == index:
                self._write_disk(current, image)
                return image
            if current not in self._memory:
                self._write_disk(current, image)
                self._remember(current, image)


# ------------------------------------------------------------------------------- labels

@dataclass(frozen=True)
class MotLabelFormat:
    """How to read a MOT text file.

    Attributes:
        scale: factor applied to every coordinate (label pixels -> video pixels).
        class_column: 0-based column holding the class (MOT16+: 7); ``None`` = every row is
            class 0 (MOT15 has no class column).
        class_map: MOT class -> our class id; rows of other classes are dropped. Only with
            ``class_column``; ``None`` keeps every class as ``class - 1`` (MOT classes are 1-based).
        flag_column: column whose value 0 marks a row to ignore (becomes an evaluation ignore
            region); ``None`` = use every row.
    """

    scale: float = 1.0
    class_column: int | None = None
    class_map: Mapping[int, int] | None = None
    flag_column: int | None = MOT_FLAG


def read_mot_labels(path: str | Path, fmt: MotLabelFormat = MotLabelFormat(),
                    num_classes: int = 1) -> dict[int, Annotations]:
    """Parse a MOT ``gt.txt`` into ``{label frame: Annotations}`` (video pixels after ``scale``).

    Raises:
        LabelFormatError: fewer than 6 numeric fields, a non-integer frame, a non-positive box
            size, a class outside ``[0, num_classes)`` (file and line named).
    """
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read MOT labels {path}: {exc}") from exc
    labels: dict[int, list[list[float]]] = {}
    ignore: dict[int, list[list[float]]] = {}
    for line_number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        row = _parse_mot_row(line, path, line_number)
        frame = _integer(row[MOT_FRAME], path, line_number, "frame")
        left, top, width, height = (v * fmt.scale for v in row[MOT_LEFT:MOT_HEIGHT + 1])
        if width <= 0 or height <= 0:
            raise LabelFormatError(path, line_number, f"box size {width:g} x {height:g} must be > 0")
        box = [left, top, left + width, top + height]
        if fmt.flag_column is not None and _column(row, fmt.flag_column, path, line_number) == 0:
            ignore.setdefault(frame, []).append(box)
            continue
        cls = _mot_class(row, fmt, path, line_number)
        if cls is None:
            continue
        if not 0 <= cls < num_classes:
            raise LabelFormatError(path, line_number, f"class {cls} outside [0, {num_classes}); "
                                   "set class_map in the data YAML")
        labels.setdefault(frame, []).append([cls, *box])
    frames = set(labels) | set(ignore)
    return {f: Annotations(np.asarray(labels.get(f, []), np.float32).reshape(-1, 5),
                           np.asarray(ignore.get(f, []), np.float32).reshape(-1, 4))
            for f in sorted(frames)}


def _parse_mot_row(line: str, path: Path, line_number: int) -> list[float]:
    fields = [f for f in re.split(r"[,\s]+", line.strip()) if f]
    if len(fields) < 6:
        raise LabelFormatError(path, line_number, f"expected at least 6 comma-separated values "
                               f"'frame,id,left,top,width,height,...', got {line.strip()!r}")
    try:
        return [float(f) for f in fields]
    except ValueError:
        raise LabelFormatError(path, line_number, f"non-numeric value in {line.strip()!r}") from None


def _integer(value: float, path: Path, line_number: int, what: str) -> int:
    if value != int(value):
        raise LabelFormatError(path, line_number, f"{what} {value:g} is not an integer")
    return int(value)


def _column(row: list[float], column: int, path: Path, line_number: int) -> float:
    if column >= len(row):
        raise LabelFormatError(path, line_number, f"column {column + 1} missing ({len(row)} values)")
    return row[column]


def _mot_class(row: list[float], fmt: MotLabelFormat, path: Path, line_number: int) -> int | None:
    if fmt.class_column is None:
        return 0
    mot_class = _integer(_column(row, fmt.class_column, path, line_number), path, line_number, "class")
    if fmt.class_map is None:
        return mot_class - 1
    return fmt.class_map.get(mot_class)


def read_yolo_frame_labels(directory: str | Path, num_classes: int, width: int, height: int,
                           scale: float = 1.0) -> dict[int, Annotations]:
    """One YOLO txt per frame (CVAT export): ``{frame number: Annotations}`` in pixels of a
    ``width x height`` video. The frame number is the last run of digits in the file name."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DatasetError(f"per-frame label directory {directory} not found")
    out = {}
    for path in sorted(directory.glob("*.txt")):
        digits = re.findall(r"\d+", path.stem)
        if not digits:
            raise LabelFormatError(path, None, "no frame number in the file name (expected e.g. "
                                   "frame_000123.txt)")
        frame = int(digits[-1])
        if frame in out:
            raise LabelFormatError(path, None, f"a second label file for frame {frame}")
        rows = read_yolo_labels(path, num_classes)
        pixels = normalised_cxcywh_to_pixel_labels(rows, width, height)
        pixels[:, 1:] *= scale
        out[frame] = Annotations(pixels)
    if not out:
        raise DatasetError(f"no .txt label files in {directory}")
    return out


# ------------------------------------------------------------------------------ sources

class ClipSource(DetectionSource):
    """Frames ``label_frames`` of a labelled clip. Frames without label rows are background
    (a MOT ground truth lists every object of every frame)."""

    def __init__(self, video: VideoFrames, labels: Mapping[int, Annotations],
                 label_frames: Sequence[int], names: Sequence[str], frame_offset: int = 0) -> None:
        self.video = video
        self.labels = dict(labels)
        self.label_frames = [int(f) for f in label_frames]
        self.names = list(names)
        self.frame_offset = frame_offset
        bad = [f for f in self.label_frames if not 0 <= f + frame_offset < video.frame_count]
        if bad:
            raise DatasetError(f"label frames {bad[:3]}... map to video indices outside "
                               f"[0, {video.frame_count}) of {video.path} (frame_offset {frame_offset})")

    def __len__(self) -> int:
        return len(self.label_frames)

    def image_id(self, index: int) -> str:
        return f"{self.video.path.stem}_frame{self.label_frames[self._check_index(index)]:06d}"

    def load_image(self, index: int) -> np.ndarray:
        return self.video.frame(self.label_frames[self._check_index(index)] + self.frame_offset)

    def image_shape(self, index: int) -> tuple[int, int]:
        return self.video.shape_hw

    def annotations(self, index: int) -> Annotations:
        return self.labels.get(self.label_frames[self._check_index(index)], Annotations())


def frame_range(value: Any, where: str, key: str) -> range:
    """``[first, last]`` (inclusive) -> ``range(first, last + 1)``."""
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(v, int) for v in value) or value[1] < value[0]):
        raise DatasetError(f"{where}: {key} must be [first, last] label frame numbers, got {value!r}")
    return range(value[0], value[1] + 1)


def clip_sources(raw: Mapping[str, Any], root: Path, where: str) -> DataConfig:
    """Train/val :class:`ClipSource` from a ``format: clip`` data YAML mapping.

    Keys: ``video``; ``labels`` (a MOT file or a per-frame directory); ``label_format``
    (``mot`` | ``yolo_frames``, default ``mot``); ``names``; ``scale`` (1.0);
    ``frame_offset`` (``-1`` for MOT, ``0`` otherwise); ``train_frames`` and ``val_frames``
    ``[first, last]`` in label frame numbers (must not overlap); MOT only: ``class_column``,
    ``class_map``, ``flag_column``; ``cache_dir`` (PNG frame cache), ``max_memory_frames``.
    """
    names = parse_names(raw.get("names", ["person"]), where)
    for key in ("video", "labels", "train_frames", "val_frames"):
        if key not in raw:
            raise DatasetError(f"{where}: missing key {key!r}")
    cache_dir = raw.get("cache_dir")
    video = VideoFrames((root / str(raw["video"])).resolve(),
                        cache_dir=None if cache_dir is None else (root / str(cache_dir)).resolve(),
                        max_memory_frames=int(raw.get("max_memory_frames", 1024)))
    label_format = raw.get("label_format", "mot")
    scale = float(raw.get("scale", 1.0))
    labels_path = (root / str(raw["labels"])).resolve()
    if label_format == "mot":
        fmt = MotLabelFormat(scale=scale, class_column=raw.get("class_column"),
                             class_map={int(k): int(v) for k, v in raw["class_map"].items()}
                             if raw.get("class_map") else None,
                             flag_column=raw.get("flag_column", MOT_FLAG))
        labels = read_mot_labels(labels_path, fmt, len(names))
        default_offset = -1
    elif label_format == "yolo_frames":
        labels = read_yolo_frame_labels(labels_path, len(names), video.width, video.height, scale)
        default_offset = 0
    else:
        raise DatasetError(f"{where}: unknown label_format {label_format!r} (mot, yolo_frames)")
    offset = int(raw.get("frame_offset", default_offset))
    train = frame_range(raw["train_frames"], where, "train_frames")
    val = frame_range(raw["val_frames"], where, "val_frames")
    overlap = set(train) & set(val)
    if overlap:
        raise DatasetError(f"{where}: train_frames and val_frames overlap ({min(overlap)}..."
                           f"{max(overlap)}); clips are split by disjoint time ranges")
    # the paths as written in the YAML (relative to its `path`): trained models record this
    description = {"video": str(raw["video"]), "labels": str(raw["labels"]),
                   "label_format": label_format, "scale": scale, "frame_offset": offset,
                   "split": {"train_frames": [train[0], train[-1]], "val_frames": [val[0], val[-1]]}}
    return DataConfig(names, ClipSource(video, labels, train, names, offset),
                      ClipSource(video, labels, val, names, offset), description)
