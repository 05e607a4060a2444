"""Detection data sources: YOLO txt layout, COCO JSON, the Kaggle car CSV, labelled clips.

Every source is a :class:`DetectionSource`: an indexable set of images with boxes in the
pixels of the original image. ``load(i)`` returns ``(image, annotations)``: ``image`` is
``(H, W, 3)`` uint8 **BGR** (OpenCV order), ``annotations`` an :class:`Annotations` with

* ``labels`` ``(n, 5)`` float32 rows ``class, x1, y1, x2, y2`` (pixels, x right, y down);
* ``ignore_xyxy`` ``(m, 4)`` float32 regions that evaluation ignores (COCO ``iscrowd``, MOT
  rows flagged "not considered"); training does not use them as targets.

A data YAML (:func:`load_data_config`) names the format, the class names and the train/val
splits. Malformed labels raise :class:`~training.errors.LabelFormatError` naming the file and
line; missing files raise :class:`~training.errors.DatasetError`.
"""

from __future__ import annotations

import abc
import csv
import json
import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

from .errors import DatasetError, LabelFormatError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
LABEL_CLASS, LABEL_X1, LABEL_Y1, LABEL_X2, LABEL_Y2 = 0, 1, 2, 3, 4
"""Columns of an ``Annotations.labels`` row."""

NORMALISED_TOLERANCE = 1e-3
"""How far outside [0, 1] a normalised YOLO coordinate may be (rounding in exporters)."""


def empty_labels() -> np.ndarray:
    return np.zeros((0, 5), dtype=np.float32)


@dataclass(frozen=True)
class Annotations:
    """Boxes of one image in its own pixels (see the module docstring for the layout)."""

    labels: np.ndarray = field(default_factory=empty_labels)
    ignore_xyxy: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), dtype=np.float32))

    def __post_init__(self) -> None:
        labels = np.asarray(self.labels, dtype=np.float32).reshape(-1, 5)
        ignore = np.asarray(self.ignore_xyxy, dtype=np.float32).reshape(-1, 4)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "ignore_xyxy", ignore)

    @property
    def class_ids(self) -> np.ndarray:
        return self.labels[:, LABEL_CLASS].astype(np.int64)

    @property
    def boxes_xyxy(self) -> np.ndarray:
        return self.labels[:, LABEL_X1:]


def read_image(path: Path) -> np.ndarray:
    """Decode an image file to ``(H, W, 3)`` uint8 BGR; :class:`DatasetError` when unreadable."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DatasetError(f"cannot read image {path}: missing, unreadable or not an image")
    return image


class DetectionSource(abc.ABC):
    """An indexable set of labelled images (see the module docstring)."""

    names: list[str]

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @abc.abstractmethod
    def image_id(self, index: int) -> str:
        """A stable, human-readable name of item ``index`` (file name, ``frame_000123``)."""

    @abc.abstractmethod
    def load_image(self, index: int) -> np.ndarray:
        """``(H, W, 3)`` uint8 BGR image of item ``index``."""

    @abc.abstractmethod
    def image_shape(self, index: int) -> tuple[int, int]:
        """``(height, width)`` of item ``index`` in pixels."""

    @abc.abstractmethod
    def annotations(self, index: int) -> Annotations:
        """Boxes of item ``index`` in its pixels."""

    def load(self, index: int) -> tuple[np.ndarray, Annotations]:
        image = self.load_image(index)
        return image, self.annotations(index)

    def unlabelled_classes(self, index: int) -> frozenset[int]:
        """Classes whose objects may be in item ``index`` without a box (a merged source that
        does not label them, :mod:`training.merge`); empty for a fully labelled source."""
        return frozenset()

    @property
    def class_groups(self) -> tuple[tuple[int, ...], ...]:
        """Coarse labels (:mod:`training.merge`): member classes of each class group; a box of
        class id ``num_classes + g`` is one of ``class_groups[g]``. Empty for most sources."""
        return ()

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def _check_index(self, index: int) -> int:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        return index % len(self)


class FileImageSource(DetectionSource):
    """Images from files; subclasses give the boxes. Image shapes are cached once read."""

    def __init__(self, image_paths: Sequence[Path], names: Sequence[str]) -> None:
        self.image_paths = [Path(p) for p in image_paths]
        self.names = list(names)
        self._shapes: dict[int, tuple[int, int]] = {}

    def __len__(self) -> int:
        return len(self.image_paths)

    def image_id(self, index: int) -> str:
        return self.image_paths[self._check_index(index)].name

    def load_image(self, index: int) -> np.ndarray:
        index = self._check_index(index)
        image = read_image(self.image_paths[index])
        self._shapes[index] = image.shape[:2]
        return image

    def image_shape(self, index: int) -> tuple[int, int]:
        index = self._check_index(index)
        if index not in self._shapes:
            self.load_image(index)
        return self._shapes[index]


class PixelBoxSource(FileImageSource):
    """Images with boxes already in pixels (COCO JSON, Kaggle CSV)."""

    def __init__(self, image_paths: Sequence[Path], annotations: Sequence[Annotations],
                 names: Sequence[str]) -> None:
        super().__init__(image_paths, names)
        if len(annotations) != len(self.image_paths):
            raise ValueError(f"{len(annotations)} annotations for {len(self.image_paths)} images")
        self._annotations = list(annotations)

    def annotations(self, index: int) -> Annotations:
        return self._annotations[self._check_index(index)]


class YoloSource(FileImageSource):
    """YOLO txt layout: ``.../images/x.jpg`` with ``.../labels/x.txt`` holding rows
    ``class cx cy w h`` normalised to [0, 1] by the image width/height. A missing label file
    means a background image (official behaviour). Every label file is parsed (and validated)
    at construction."""

    def __init__(self, image_paths: Sequence[Path], names: Sequence[str]) -> None:
        super().__init__(image_paths, names)
        self.label_paths = [label_path_for(p) for p in self.image_paths]
        self._normalised = [read_yolo_labels(p, len(self.names)) if p.is_file() else empty_labels()
                            for p in self.label_paths]

    def normalised_labels(self, index: int) -> np.ndarray:
        """``(n, 5)`` rows ``class, cx, cy, w, h`` normalised (as in the file)."""
        return self._normalised[self._check_index(index)]

    def annotations(self, index: int) -> Annotations:
        index = self._check_index(index)
        rows = self._normalised[index]
        if not len(rows):
            return Annotations()
        h, w = self.image_shape(index)
        return Annotations(normalised_cxcywh_to_pixel_labels(rows, w, h))


class Subset(DetectionSource):
    """The items ``indices`` of ``source``, in that order."""

    def __init__(self, source: DetectionSource, indices: Sequence[int]) -> None:
        self.source = source
        self.indices = [int(i) for i in indices]
        self.names = source.names

    def __len__(self) -> int:
        return len(self.indices)

    def _map(self, index: int) -> int:
        return self.indices[self._check_index(index)]

    def image_id(self, index: int) -> str:
        return self.source.image_id(self._map(index))

    def load_image(self, index: int) -> np.ndarray:
        return self.source.load_image(self._map(index))

    def image_shape(self, index: int) -> tuple[int, int]:
        return self.source.image_shape(self._map(index))

    def annotations(self, index: int) -> Annotations:
        return self.source.annotations(self._map(index))

    def unlabelled_classes(self, index: int) -> frozenset[int]:
        return self.source.unlabelled_classes(self._map(index))

    @property
    def class_groups(self) -> tuple[tuple[int, ...], ...]:
        return self.source.class_groups


# --------------------------------------------------------------------------- YOLO layout

def label_path_for(image_path: Path) -> Path:
    """``a/images/b/c.jpg`` -> ``a/labels/b/c.txt`` (the last ``images`` directory is replaced,
    as the official ``img2label_paths``)."""
    parts = list(image_path.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts).with_suffix(".txt")
    raise DatasetError(f"{image_path}: a YOLO image must lie under an 'images' directory "
                       "(its labels are looked for in the matching 'labels' directory)")


def read_yolo_labels(path: Path, num_classes: int) -> np.ndarray:
    """Parse a YOLO label file into ``(n, 5)`` float32 ``class, cx, cy, w, h`` (normalised).

    Raises:
        LabelFormatError: a row without 5 numbers, a class outside ``[0, num_classes)``, a
            coordinate outside [0, 1] or a non-positive width/height (file and line named).
    """
    rows = []
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelFormatError(path, None, f"cannot read label file: {exc}") from exc
    for line_number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 5:
            raise LabelFormatError(path, line_number, f"expected 5 values 'class cx cy w h', got "
                                   f"{len(fields)}: {line.strip()!r}")
        try:
            values = [float(v) for v in fields]
        except ValueError:
            raise LabelFormatError(path, line_number, f"non-numeric value in {line.strip()!r}") from None
        rows.append(_validated_yolo_row(values, num_classes, path, line_number))
    return np.asarray(rows, dtype=np.float32).reshape(-1, 5)


def _validated_yolo_row(values: list[float], num_classes: int, path: Path, line: int) -> list[float]:
    cls, cx, cy, w, h = values
    if not np.isfinite(values).all():
        raise LabelFormatError(path, line, f"non-finite value in {values}")
    if cls != int(cls) or not 0 <= cls < num_classes:
        raise LabelFormatError(path, line, f"class {cls:g} is not an integer in [0, {num_classes})"
                               " (check the data YAML's names)")
    lo, hi = -NORMALISED_TOLERANCE, 1 + NORMALISED_TOLERANCE
    if not all(lo <= v <= hi for v in (cx, cy, w, h)):
        raise LabelFormatError(path, line, f"coordinates {cx, cy, w, h} are not normalised to "
                               "[0, 1] (YOLO labels are cx cy w h divided by the image size)")
    if w <= 0 or h <= 0:
        raise LabelFormatError(path, line, f"box width/height must be > 0, got {w:g} x {h:g}")
    return values


def normalised_cxcywh_to_pixel_labels(rows: np.ndarray, width: int, height: int) -> np.ndarray:
    """``(n, 5)`` ``class, cx, cy, w, h`` normalised -> ``class, x1, y1, x2, y2`` pixels."""
    out = np.empty_like(rows, dtype=np.float32)
    out[:, 0] = rows[:, 0]
    out[:, 1] = (rows[:, 1] - rows[:, 3] / 2) * width
    out[:, 2] = (rows[:, 2] - rows[:, 4] / 2) * height
    out[:, 3] = (rows[:, 1] + rows[:, 3] / 2) * width
    out[:, 4] = (rows[:, 2] + rows[:, 4] / 2) * height
    return out


def list_images(spec: Path | Sequence[Path]) -> list[Path]:
    """Image files of a directory (recursive, sorted), of a ``.txt`` list file (one path per
    line, relative to the list's directory), or an explicit sequence."""
    if isinstance(spec, (list, tuple)):
        return [p for item in spec for p in list_images(Path(item))]
    path = Path(spec)
    if path.is_dir():
        images = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    elif path.is_file() and path.suffix == ".txt":
        images = [(path.parent / line.strip()).resolve() for line in path.read_text().splitlines()
                  if line.strip()]
    elif path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
        images = [path]
    else:
        raise DatasetError(f"image source {path} does not exist (expected a directory, a .txt "
                           "list or an image file)")
    if not images:
        raise DatasetError(f"no images found in {path}")
    return images


# ------------------------------------------------------------------------------ COCO JSON

def read_coco_json(json_path: Path, images_dir: Path,
                   names: Sequence[str] | None = None) -> PixelBoxSource:
    """A COCO ``instances`` JSON: every image of ``images`` (in file order) with its boxes.

    Categories map to contiguous class ids in ascending category-id order (their names become
    the class names unless ``names`` is given); ``iscrowd`` boxes become ignore regions.

    Raises:
        DatasetError: unreadable JSON, missing keys, an annotation of an unknown image or
            category, a non-positive box (the annotation id is named).
    """
    try:
        data = json.loads(Path(json_path).read_text())
        images = data["images"]
        categories = sorted(data["categories"], key=lambda c: c["id"])
        annotations = data.get("annotations", [])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"cannot read COCO annotations {json_path}: {exc}") from exc
    class_of = {c["id"]: i for i, c in enumerate(categories)}
    class_names = list(names) if names is not None else [c["name"] for c in categories]
    if len(class_names) != len(categories):
        raise DatasetError(f"{json_path}: {len(categories)} categories but {len(class_names)} names")
    position = {img["id"]: i for i, img in enumerate(images)}
    labels: list[list[list[float]]] = [[] for _ in images]
    ignore: list[list[list[float]]] = [[] for _ in images]
    for ann in annotations:
        where = f"annotation id {ann.get('id')}"
        if ann.get("image_id") not in position or ann.get("category_id") not in class_of:
            raise DatasetError(f"{json_path}: {where} refers to an unknown image or category")
        x, y, w, h = (float(v) for v in ann["bbox"])
        if w <= 0 or h <= 0:
            raise DatasetError(f"{json_path}: {where} has a non-positive box size {w} x {h}")
        i = position[ann["image_id"]]
        if ann.get("iscrowd", 0):
            ignore[i].append([x, y, x + w, y + h])
        else:
            labels[i].append([class_of[ann["category_id"]], x, y, x + w, y + h])
    paths = [Path(images_dir) / img["file_name"] for img in images]
    annots = [Annotations(np.asarray(lab, np.float32).reshape(-1, 5),
                          np.asarray(ign, np.float32).reshape(-1, 4))
              for lab, ign in zip(labels, ignore)]
    return PixelBoxSource(paths, annots, class_names)


# ------------------------------------------------------------------------- Kaggle car CSV

KAGGLE_CSV_COLUMNS = ("image", "xmin", "ymin", "xmax", "ymax")


def read_kaggle_csv(csv_path: Path) -> tuple[dict[str, np.ndarray], int]:
    """Read the Kaggle "Car Object Detection" CSV (``image,xmin,ymin,xmax,ymax`` per box).

    Returns:
        ``(boxes, rows)``: ``{image name: (n, 4) float32 x1, y1, x2, y2 pixels}`` with the
        names in first-appearance (row) order, and the number of box rows.

    Raises:
        LabelFormatError: wrong header, wrong number of fields, non-numeric or inverted box.
    """
    csv_path = Path(csv_path)
    boxes: dict[str, list[list[float]]] = {}
    try:
        handle = csv_path.open(newline="")
    except OSError as exc:
        raise DatasetError(f"cannot read {csv_path}: {exc}") from exc
    rows = 0
    with handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != KAGGLE_CSV_COLUMNS:
            raise LabelFormatError(csv_path, 1, f"expected header {','.join(KAGGLE_CSV_COLUMNS)}, "
                                   f"got {header}")
        for line_number, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != 5:
                raise LabelFormatError(csv_path, line_number, f"expected 5 fields, got {len(row)}")
            try:
                x1, y1, x2, y2 = (float(v) for v in row[1:])
            except ValueError:
                raise LabelFormatError(csv_path, line_number, f"non-numeric box {row[1:]}") from None
            if not (x2 > x1 and y2 > y1):
                raise LabelFormatError(csv_path, line_number, f"box {row[1:]} has xmax <= xmin or "
                                       "ymax <= ymin")
            boxes.setdefault(row[0].strip(), []).append([x1, y1, x2, y2])
            rows += 1
    return {k: np.asarray(v, np.float32) for k, v in boxes.items()}, rows


@dataclass(frozen=True)
class KaggleCarsSplit:
    """The article's split: ``file_names`` (annotated in CSV order, then background sorted),
    and the ``train``/``val`` name lists (``train`` in ``file_names`` order)."""

    file_names: list[str]
    train: list[str]
    val: list[str]
    annotated: frozenset[str]
    csv_rows: int


def kaggle_cars_split(csv_path: Path, images_dir: Path, *, background_images: int = 100,
                      val_fraction: float = 0.2, seed: int = 42) -> KaggleCarsSplit:
    """Reproduce the split of the YOLOv7 training article on the Kaggle car set.

    ``file_names`` = the unique image names in CSV row order, then the first
    ``background_images`` un-annotated images of ``images_dir`` in sorted order;
    ``random.seed(seed)``; ``val = random.sample(file_names, int(val_fraction * (csv_rows +
    background_images)))`` (the article counts CSV rows, not images: 559 + 100 -> 131 images);
    ``train`` = the others. With the published data: 131 val (99 annotated, 32 background) and
    324 train (256 annotated).

    Raises:
        DatasetError: fewer background images than requested, or annotated images missing.
    """
    boxes, rows = read_kaggle_csv(csv_path)
    images_dir = Path(images_dir)
    on_disk = {p.name for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    missing = [name for name in boxes if name not in on_disk]
    if missing:
        raise DatasetError(f"{len(missing)} images of {csv_path} are not in {images_dir}: {missing[:5]}")
    background = sorted(on_disk - set(boxes))
    if len(background) < background_images:
        raise DatasetError(f"{images_dir} holds {len(background)} un-annotated images, "
                           f"{background_images} requested as background")
    file_names = list(boxes) + background[:background_images]
    rng = random.Random(seed)  # same sequence as random.seed(seed); random.sample(...)
    val = rng.sample(file_names, int(val_fraction * (rows + background_images)))
    val_set = set(val)
    train = [name for name in file_names if name not in val_set]
    return KaggleCarsSplit(file_names, train, val, frozenset(boxes), rows)


def kaggle_cars_sources(csv_path: Path, images_dir: Path, names: Sequence[str] = ("car",),
                        **split_options: Any) -> tuple[PixelBoxSource, PixelBoxSource, KaggleCarsSplit]:
    """``(train, val, split)`` sources of the Kaggle car set (class 0 = car)."""
    boxes, _ = read_kaggle_csv(csv_path)
    split = kaggle_cars_split(csv_path, images_dir, **split_options)

    def source(file_names: list[str]) -> PixelBoxSource:
        annots = []
        for name in file_names:
            xyxy = boxes.get(name, np.zeros((0, 4), np.float32))
            annots.append(Annotations(np.concatenate([np.zeros((len(xyxy), 1), np.float32), xyxy], 1)))
        return PixelBoxSource([Path(images_dir) / n for n in file_names], annots, names)

    return source(split.train), source(split.val), split


# ------------------------------------------------------------------------------ data YAML

@dataclass
class DataConfig:
    """A loaded data YAML: class ``names``, ``train`` and ``val`` sources and a JSON-able
    ``description`` (format, paths, split) recorded with trained models."""

    names: list[str]
    train: DetectionSource
    val: DetectionSource
    description: dict[str, Any]

    @property
    def num_classes(self) -> int:
        return len(self.names)


def parse_names(value: Any, where: str) -> list[str]:
    """``names`` as a list or a ``{index: name}`` mapping with indices 0..n-1."""
    if isinstance(value, Mapping):
        keys = sorted(int(k) for k in value)
        if keys != list(range(len(keys))):
            raise DatasetError(f"{where}: names indices must be 0..n-1, got {keys[:10]}")
        return [str(value[k] if k in value else value[str(k)]) for k in keys]
    if isinstance(value, Sequence) and not isinstance(value, str) and value:
        return [str(v) for v in value]
    raise DatasetError(f"{where}: 'names' must be a non-empty list or an index->name mapping")


def load_data_config(path: str | Path) -> DataConfig:
    """Load a data YAML. Relative paths are resolved against ``path:`` (itself relative to the
    YAML's directory). Formats (key ``format``, default ``yolo``):

    * ``yolo``: ``train``/``val`` = image directory, ``.txt`` list or list of them; ``names``.
    * ``coco``: ``train``/``val`` = ``{images: DIR, annotations: JSON}``; ``names`` optional.
    * ``kaggle_cars``: ``csv``, ``images``, optional ``background_images`` (100),
      ``val_fraction`` (0.2), ``seed`` (42), ``names`` (``[car]``); see :func:`kaggle_cars_split`.
    * ``clip``: a video with per-frame labels split by time; see :func:`training.clips.clip_sources`.
    * ``merge``: several sources of any of these formats with class maps onto one class list
      and the classes each labels; see :mod:`training.merge`.

    Raises:
        DatasetError: unreadable YAML, unknown format, missing keys or files.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise DatasetError(f"cannot read data YAML {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise DatasetError(f"{path}: expected a mapping at the top level")
    root = (path.parent / str(raw.get("path", "."))).resolve()
    fmt = raw.get("format", "yolo")
    config = load_source_config(raw, root, str(path))
    # `path` as written (relative to the YAML), not the resolved root: trained models record
    # this description, and a machine-specific absolute path is meaningless elsewhere.
    config.description = {"data_yaml": str(path), "format": fmt, "path": str(raw.get("path", ".")),
                          **config.description}
    for split_name, source in (("train", config.train), ("val", config.val)):
        if len(source) == 0:
            raise DatasetError(f"{path}: the {split_name} split is empty")
    logger.info("data %s: %d classes, %d train / %d val images", path, len(config.names),
                len(config.train), len(config.val))
    return config


def load_source_config(raw: Mapping[str, Any], root: Path, where: str) -> DataConfig:
    """One data description (the mapping of a data YAML) with paths relative to ``root``.

    Raises:
        DatasetError: an unknown format, missing keys or files (``where`` names the culprit).
    """
    from .merge import load_merge

    loaders = {"yolo": _load_yolo, "coco": _load_coco, "kaggle_cars": _load_kaggle,
               "clip": _load_clip, "merge": load_merge}
    fmt = raw.get("format", "yolo")
    if fmt not in loaders:
        raise DatasetError(f"{where}: unknown format {fmt!r}; known: {', '.join(loaders)}")
    return loaders[fmt](dict(raw), root, where)


def _required(raw: dict, key: str, where: str) -> Any:
    if key not in raw:
        raise DatasetError(f"{where}: missing key {key!r}")
    return raw[key]


def _resolve(root: Path, value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_resolve(root, v) for v in value]
    return (root / str(value)).resolve()


def _load_yolo(raw: dict, root: Path, where: str) -> DataConfig:
    names = parse_names(_required(raw, "names", where), where)
    splits = {}
    for split_name in ("train", "val"):
        splits[split_name] = YoloSource(list_images(_resolve(root, _required(raw, split_name, where))),
                                        names)
    return DataConfig(names, splits["train"], splits["val"],
                      {"train": str(raw["train"]), "val": str(raw["val"])})


def _load_coco(raw: dict, root: Path, where: str) -> DataConfig:
    names = parse_names(raw["names"], where) if "names" in raw else None
    splits = {}
    for split_name in ("train", "val"):
        spec = _required(raw, split_name, where)
        if not isinstance(spec, dict) or "images" not in spec or "annotations" not in spec:
            raise DatasetError(f"{where}: {split_name} must be {{images: DIR, annotations: JSON}}")
        splits[split_name] = read_coco_json(_resolve(root, spec["annotations"]),
                                            _resolve(root, spec["images"]), names)
    names = splits["train"].names
    return DataConfig(names, splits["train"], splits["val"],
                      {"train": raw["train"], "val": raw["val"]})


def _load_kaggle(raw: dict, root: Path, where: str) -> DataConfig:
    names = parse_names(raw.get("names", ["car"]), where)
    if len(names) != 1:
        raise DatasetError(f"{where}: the Kaggle car set has one class, got names {names}")
    options = {"background_images": int(raw.get("background_images", 100)),
               "val_fraction": float(raw.get("val_fraction", 0.2)),
               "seed": int(raw.get("seed", 42))}
    train, val, split = kaggle_cars_sources(_resolve(root, _required(raw, "csv", where)),
                                            _resolve(root, _required(raw, "images", where)),
                                            names, **options)
    description = {"split": {**options, "csv_rows": split.csv_rows, "train_images": len(split.train),
                             "val_images": len(split.val),
                             "val_annotated": sum(n in split.annotated for n in split.val)}}
    return DataConfig(names, train, val, description)


def _load_clip(raw: dict, root: Path, where: str) -> DataConfig:
    from .clips import clip_sources

    return clip_sources(raw, root, where)
