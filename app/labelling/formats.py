"""Label files in and out: MOT 1.1 ``gt.txt`` (our save format), YOLO per-frame export, and
imports from CVAT ("MOT 1.1", "YOLO 1.1") and Label Studio (video JSON).

**MOT 1.1 as saved** (the layout of CVAT's "MOT 1.1" export and of MOT16+ ground truth; the
training module reads it with ``format: clip``, ``label_format: mot``, ``class_column: 7``,
``frame_offset: -1``, see :func:`clip_data_yaml`)::

    gt.txt         frame, track_id, left, top, width, height, not_ignored, class, visibility
                   1-based frame (= video frame index + 1), pixels, not_ignored 1 (0 = ignore
                   region), class 1-based into labels.txt, visibility in [0, 1]
    labels.txt     one class name per line (line 1 = class 1)
    gt.labelling.json   sidecar: verified frames and which boxes are proposals (absent -> every
                   box is verified); other tools ignore it

**YOLO export** (CVAT "YOLO 1.1" layout, also the training module's ``label_format:
yolo_frames``)::

    obj.names, obj.data, train.txt
    obj_train_data/frame_000123.txt   class cx cy w h, normalised by the frame size;
                                      000123 = 0-based video frame index

**Label Studio** video export: a list of tasks, each with ``annotations[i].result``; a
``videorectangle`` result holds ``value.sequence``: keyframes ``{frame (1-based), enabled, x, y,
width, height (percent of the frame), rotation, time}`` and ``value.labels``. Between a keyframe
with ``enabled: true`` and the next keyframe the box is interpolated linearly (Label Studio's
own rule); after a keyframe with ``enabled: false`` the object is absent until the next keyframe;
the last keyframe ends the track (as Label Studio's converter interpolates, to the last key).

Every reader raises :class:`LabelFileError` naming the file and the line (text files) or the
JSON path of a malformed entry. Sources: CVAT documentation "MOT" and "YOLO" format pages;
Label Studio ``VideoRectangle`` tag documentation; MOT16 class ids from Milan et al., "MOT16: A
Benchmark for Multi-Object Tracking", 2016.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lap
import numpy as np

from app.labelling.errors import LabelFileError, LabelValidationError
from app.labelling.propagate import interpolate_xyxy
from app.labelling.store import BoxOrigin, LabelBox, LabelStore
from tracker.geometry import iou_matrix

__all__ = [
    "CLASS_LIST_NAME",
    "MOT16_CLASS_NAMES",
    "ImportedLabels",
    "class_list_path",
    "clip_data_yaml",
    "export_yolo",
    "load_store",
    "read_cvat_mot",
    "read_cvat_yolo",
    "read_label_studio_video",
    "read_mot",
    "save_mot",
    "sidecar_path",
    "write_clip_data_yaml",
]

logger = logging.getLogger(__name__)

CLASS_LIST_NAME = "labels.txt"
"""The class list beside ``gt.txt`` (CVAT's name in its MOT 1.1 export)."""
SIDECAR_SUFFIX = ".labelling.json"
SIDECAR_FORMAT = "yolov7-track-labelling"
SIDECAR_VERSION = 1

MOT_FRAME, MOT_ID, MOT_LEFT, MOT_TOP, MOT_WIDTH, MOT_HEIGHT, MOT_NOT_IGNORED, MOT_CLASS, MOT_VISIBILITY = range(9)
"""0-based columns of a MOT 1.1 row."""
MOT_CLASS_COLUMN_FOR_TRAINING = MOT_CLASS
MOT_UNSET = -1.0
"""MOT15 files carry -1 in columns 8-10 (world coordinates): read as "no class / visibility"."""

MOT16_CLASS_NAMES = (
    "pedestrian", "person on vehicle", "car", "bicycle", "motorbike", "non motorized vehicle",
    "static person", "distractor", "occluder", "occluder on the ground", "occluder full", "reflection",
)
"""MOT16's classes 1..12 (Milan et al. 2016): CVAT's labels when ``labels.txt`` is absent."""

YOLO_DATA_DIR = "obj_train_data"
YOLO_NAMES = "obj.names"
YOLO_FRAME_NAME = "frame_{:06d}.txt"
LS_PERCENT = 100.0
FORBIDDEN_LINK_COST = 2.0  # above every accepted cost 1 - IoU


@dataclass
class ImportedLabels:
    """Boxes read from a file, ready for :meth:`LabelStore.replace_all` or :meth:`to_store`.

    Attributes:
        boxes: the boxes (frame index 0-based, pixels of the original frame).
        class_names: the file's class list, in its order.
        verified_frames: frames marked verified (our own sidecar only).
        source: the file read, for messages.
    """

    boxes: list[LabelBox]
    class_names: list[str]
    verified_frames: list[int] = field(default_factory=list)
    source: str = ""

    def to_store(self, path: str | Path | None = None) -> LabelStore:
        """A clean new store holding these labels (``path`` = where it will save)."""
        store = LabelStore(self.class_names, path=path)
        store.replace_all(self.boxes, self.class_names, self.verified_frames)
        store.clear_history()  # the import is the starting point, not an undoable step
        store.mark_clean()
        return store


# --------------------------------------------------------------------------- file access

@dataclass(frozen=True)
class _Text:
    """A text file read from disk or from a zip archive; ``name`` is what messages show."""

    name: str
    text: str


def _read_text(path: Path) -> _Text:
    try:
        return _Text(str(path), path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise LabelFileError(path, "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelFileError(path, f"cannot read: {exc}") from None


def _zip_members(path: Path) -> dict[str, _Text]:
    try:
        with zipfile.ZipFile(path) as archive:
            out = {}
            for info in archive.infolist():
                if info.is_dir():
                    continue
                try:
                    text = archive.read(info).decode("utf-8-sig")
                except UnicodeDecodeError:
                    continue  # images and other binary members
                out[info.filename] = _Text(f"{path}!{info.filename}", text)
            return out
    except (OSError, zipfile.BadZipFile) as exc:
        raise LabelFileError(path, f"cannot read the zip archive: {exc}") from None


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same directory and a rename,
    so that a crash leaves either the old or the new file, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _number(value: float) -> str:
    """A coordinate with at most 3 decimals, trailing zeros dropped (``12.5``, ``100``)."""
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


# --------------------------------------------------------------------------- MOT 1.1

def class_list_path(gt_path: str | Path) -> Path:
    """The class list beside ``gt_path``: ``<dir>/labels.txt``."""
    return Path(gt_path).with_name(CLASS_LIST_NAME)


def sidecar_path(gt_path: str | Path) -> Path:
    """The sidecar beside ``gt_path``: ``<dir>/<stem>.labelling.json``."""
    gt_path = Path(gt_path)
    return gt_path.with_name(gt_path.stem + SIDECAR_SUFFIX)


def mot_rows(store: LabelStore) -> list[str]:
    """The ``gt.txt`` lines of ``store`` (no line ends), by frame then track id."""
    lines = []
    for box in store.all_boxes():
        x1, y1, x2, y2 = box.xyxy
        fields = (str(box.frame_index + 1), str(box.track_id), _number(x1), _number(y1), _number(x2 - x1),
                  _number(y2 - y1), "0" if box.ignored else "1", str(store.class_id(box.class_name) + 1),
                  _number(box.visibility))
        lines.append(",".join(fields))
    return lines


def save_mot(store: LabelStore, gt_path: str | Path) -> None:
    """Write ``gt.txt``, ``labels.txt`` and the sidecar of ``store`` (layout in the module
    docstring), each atomically; the class list and sidecar are written before ``gt.txt``.

    Raises:
        OSError: a file cannot be written (files already replaced stay valid on their own).
    """
    gt_path = Path(gt_path)
    _write_atomic(class_list_path(gt_path), "".join(f"{name}\n" for name in store.classes))
    proposals = [[b.frame_index, b.track_id, b.origin.value] for b in store.all_boxes() if not b.verified]
    sidecar = {"format": SIDECAR_FORMAT, "version": SIDECAR_VERSION, "gt": gt_path.name,
               "verified_frames": sorted(store.verified_frames), "proposals": proposals}
    _write_atomic(sidecar_path(gt_path), json.dumps(sidecar, indent=1) + "\n")
    _write_atomic(gt_path, "".join(f"{line}\n" for line in mot_rows(store)))


def _parse_class_list(text: _Text) -> list[str]:
    names = []
    for number, line in enumerate(text.text.splitlines(), start=1):
        name = line.strip()
        if not name:
            continue
        if name in names:
            raise LabelFileError(text.name, f"class {name!r} listed twice", line=number)
        names.append(name)
    if not names:
        raise LabelFileError(text.name, "the class list is empty")
    return names


def _find_mot_files(path: Path) -> tuple[_Text, _Text | None]:
    """``(gt.txt, labels.txt or None)`` from a file, a directory or a zip archive."""
    if path.suffix.lower() == ".zip":
        members = _zip_members(path)
        for gt_name in ("gt/gt.txt", "gt.txt"):
            if gt_name in members:
                labels = members.get(gt_name.replace("gt.txt", CLASS_LIST_NAME)) or members.get(CLASS_LIST_NAME)
                return members[gt_name], labels
        raise LabelFileError(path, "no gt/gt.txt or gt.txt in the archive (a CVAT MOT 1.1 export)")
    if path.is_dir():
        for candidate in (path / "gt" / "gt.txt", path / "gt.txt"):
            if candidate.is_file():
                path = candidate
                break
        else:
            raise LabelFileError(path, "no gt/gt.txt or gt.txt in this directory")
    labels_path = class_list_path(path)
    return _read_text(path), _read_text(labels_path) if labels_path.is_file() else None


def read_mot(path: str | Path, *, class_names: Sequence[str] | None = None, scale: float = 1.0,
             verified: bool = True) -> ImportedLabels:
    """Read a MOT 1.1 ``gt.txt`` (ours or CVAT's "MOT 1.1" export): a file, a directory
    holding ``gt/gt.txt`` or ``gt.txt``, or the export's ``.zip``.

    Args:
        path: see above.
        class_names: the class list when no ``labels.txt`` lies beside ``gt.txt`` (default:
            MOT16's 12 classes, as CVAT assumes).
        scale: multiplies every coordinate (labels at another resolution than the video).
        verified: flag given to every box (our sidecar is read by :func:`load_store`).

    Returns:
        :class:`ImportedLabels`. Frame N becomes video frame index N - 1. A file whose ids
        start at 0 is shifted by +1 (MOT ids are positive). Rows with ``not_ignored`` 0 become
        ``ignored`` boxes. A missing or -1 class column gives the first class; a missing or -1
        visibility gives 1.0 (MOT15 rows carry -1 there).

    Raises:
        LabelFileError: fewer than 6 values, a non-number, a non-integer or non-positive frame,
            a negative id, a non-positive size, a class outside the class list, a visibility
            outside [0, 1], two rows of one track on one frame (file and line named).
    """
    gt, labels = _find_mot_files(Path(path))
    names = _parse_class_list(labels) if labels is not None else list(class_names or MOT16_CLASS_NAMES)
    rows: list[tuple[int, list[float]]] = []
    for number, line in enumerate(gt.text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = [f for f in re.split(r"[,\s]+", line.strip()) if f]
        if len(fields) < 6:
            raise LabelFileError(gt.name, f"expected at least 6 values 'frame,id,left,top,width,height,...', "
                                 f"got {len(fields)}: {line.strip()!r}", line=number)
        try:
            values = [float(v) for v in fields]
        except ValueError:
            raise LabelFileError(gt.name, f"non-numeric value in {line.strip()!r}", line=number) from None
        if not np.isfinite(values).all():
            raise LabelFileError(gt.name, f"non-finite value in {line.strip()!r}", line=number)
        rows.append((number, values))
    id_shift = 1 if any(v[MOT_ID] == 0 for _, v in rows) else 0
    if id_shift:
        logger.info("%s: track ids start at 0; shifted by +1 (MOT ids are positive)", gt.name)
    boxes: list[LabelBox] = []
    seen: dict[tuple[int, int], int] = {}
    for number, values in rows:
        def fail(problem: str, number: int = number) -> LabelFileError:
            return LabelFileError(gt.name, problem, line=number)

        frame, track = values[MOT_FRAME], values[MOT_ID]
        if frame != int(frame) or frame < 1:
            raise fail(f"frame {frame:g} must be an integer >= 1 (MOT frames are 1-based)")
        if track != int(track) or track < 0:
            raise fail(f"track id {track:g} must be an integer >= 0")
        left, top, width, height = (v * scale for v in values[MOT_LEFT:MOT_HEIGHT + 1])
        if width <= 0 or height <= 0:
            raise fail(f"box size {width:g} x {height:g} must be > 0")
        ignored = len(values) > MOT_NOT_IGNORED and values[MOT_NOT_IGNORED] == 0
        class_index = 0
        if len(values) > MOT_CLASS and values[MOT_CLASS] != MOT_UNSET:
            mot_class = values[MOT_CLASS]
            if mot_class != int(mot_class) or not 1 <= mot_class <= len(names):
                raise fail(f"class {mot_class:g} outside 1..{len(names)} (the class list has {len(names)} "
                           f"names{'' if labels is not None else '; put a labels.txt beside gt.txt'})")
            class_index = int(mot_class) - 1
        visibility = 1.0
        if len(values) > MOT_VISIBILITY and values[MOT_VISIBILITY] != MOT_UNSET:
            visibility = values[MOT_VISIBILITY]
            if not 0.0 <= visibility <= 1.0:
                raise fail(f"visibility {visibility:g} must be in [0, 1]")
        key = (int(frame) - 1, int(track) + id_shift)
        if key in seen:
            raise fail(f"track {int(track)} has a second box on frame {int(frame)} (first on line {seen[key]})")
        seen[key] = number
        boxes.append(LabelBox(key[0], key[1], names[class_index], (left, top, left + width, top + height),
                              verified=verified, visibility=visibility, ignored=ignored,
                              origin=BoxOrigin.IMPORTED))
    return ImportedLabels(boxes, names, [], gt.name)


def read_cvat_mot(path: str | Path, *, class_names: Sequence[str] | None = None) -> ImportedLabels:
    """CVAT "MOT 1.1" export (the ``.zip``, its folder or its ``gt/gt.txt``); see :func:`read_mot`."""
    return read_mot(path, class_names=class_names)


def load_store(gt_path: str | Path) -> LabelStore:
    """A clean :class:`LabelStore` from a ``gt.txt`` saved by :meth:`LabelStore.save` (with its
    ``labels.txt`` and sidecar; without the sidecar every box is verified). Its ``path`` is set.

    Raises:
        LabelFileError: a malformed ``gt.txt``, class list or sidecar (file and line or JSON path).
    """
    gt_path = Path(gt_path)
    imported = read_mot(gt_path)
    side = sidecar_path(gt_path)
    if side.is_file():
        proposals, verified_frames = _read_sidecar(_read_text(side))
        boxes = []
        for box in imported.boxes:
            origin = proposals.get(box.key)
            boxes.append(box.replace(verified=origin is None, origin=origin or BoxOrigin.MANUAL))
        imported = ImportedLabels(boxes, imported.class_names, verified_frames, imported.source)
    return imported.to_store(gt_path)


def _read_sidecar(text: _Text) -> tuple[dict[tuple[int, int], BoxOrigin], list[int]]:
    data = _load_json(text)
    if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT:
        raise LabelFileError(text.name, f"not a {SIDECAR_FORMAT} sidecar", json_path="$.format")
    if data.get("version") != SIDECAR_VERSION:
        raise LabelFileError(text.name, f"version {data.get('version')!r} is not {SIDECAR_VERSION}",
                             json_path="$.version")
    frames = data.get("verified_frames", [])
    if not isinstance(frames, list) or not all(_is_index(f) for f in frames):
        raise LabelFileError(text.name, "must be a list of frame indices >= 0", json_path="$.verified_frames")
    proposals: dict[tuple[int, int], BoxOrigin] = {}
    for i, entry in enumerate(data.get("proposals", [])):
        where = f"$.proposals[{i}]"
        if not (isinstance(entry, list) and len(entry) == 3 and _is_index(entry[0]) and _is_index(entry[1])):
            raise LabelFileError(text.name, "must be [frame_index, track_id, origin]", json_path=where)
        try:
            proposals[(entry[0], entry[1])] = BoxOrigin(entry[2])
        except ValueError:
            raise LabelFileError(text.name, f"unknown origin {entry[2]!r}", json_path=f"{where}[2]") from None
    return proposals, frames


def _is_index(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def clip_data_yaml(video: str | Path, gt_path: str | Path, class_names: Sequence[str],
                   train_frames: tuple[int, int], val_frames: tuple[int, int]) -> dict[str, Any]:
    """The ``format: clip`` data YAML mapping with which the training module
    (:func:`training.clips.clip_sources`) reads a saved ``gt.txt``.

    Args:
        video: the clip's video file.
        gt_path: the saved ``gt.txt``.
        class_names: the store's classes (``store.classes``).
        train_frames, val_frames: ``(first, last)`` inclusive **MOT frame numbers** (video
            frame index + 1), disjoint.
    """
    return {"format": "clip", "video": str(video), "labels": str(gt_path), "label_format": "mot",
            "class_column": MOT_CLASS_COLUMN_FOR_TRAINING, "flag_column": MOT_NOT_IGNORED, "frame_offset": -1,
            "names": list(class_names), "train_frames": list(train_frames), "val_frames": list(val_frames)}


def write_clip_data_yaml(path: str | Path, **kwargs: Any) -> Path:
    """Write :func:`clip_data_yaml` (same keyword arguments) to ``path`` atomically."""
    import yaml

    path = Path(path)
    _write_atomic(path, yaml.safe_dump(clip_data_yaml(**kwargs), sort_keys=False))
    return path


# --------------------------------------------------------------------------- YOLO

def export_yolo(store: LabelStore, directory: str | Path, image_size_wh: tuple[int, int], *,
                frames: Iterable[int] | None = None) -> Path:
    """Export per-frame YOLO files in CVAT's "YOLO 1.1" layout (module docstring).

    One ``frame_XXXXXX.txt`` per frame that has a box or is verified (an empty file = a frame
    with no object), restricted to ``frames`` when given. Rows ``class cx cy w h``, class
    0-based into ``obj.names``, normalised by ``image_size_wh``; boxes are clipped to the frame
    first, and ignored boxes and boxes wholly outside the frame are left out.

    Returns:
        The ``obj_train_data`` directory (the training module's ``yolo_frames`` labels).
    """
    width, height = image_size_wh
    if width <= 0 or height <= 0:
        raise LabelValidationError(f"image_size_wh must be positive, got {image_size_wh}")
    directory = Path(directory)
    data_dir = directory / YOLO_DATA_DIR
    data_dir.mkdir(parents=True, exist_ok=True)
    wanted = set(store.frame_indices()) | set(store.verified_frames)
    if frames is not None:
        wanted &= set(frames)
    dropped = 0
    for frame in sorted(wanted):
        lines = []
        for box in store.boxes(frame):
            x1, y1, x2, y2 = np.clip(box.xyxy_array, 0, [width, height, width, height])
            if box.ignored or x2 <= x1 or y2 <= y1:
                dropped += not box.ignored
                continue
            cx, cy = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height
            w, h = (x2 - x1) / width, (y2 - y1) / height
            lines.append(f"{store.class_id(box.class_name)} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n")
        _write_atomic(data_dir / YOLO_FRAME_NAME.format(frame), "".join(lines))
    if dropped:
        logger.warning("YOLO export: %d box(es) wholly outside the %dx%d frame left out", dropped, width, height)
    _write_atomic(directory / YOLO_NAMES, "".join(f"{name}\n" for name in store.classes))
    _write_atomic(directory / "obj.data", f"classes = {len(store.classes)}\nnames = {YOLO_NAMES}\n"
                  "train = train.txt\n")
    _write_atomic(directory / "train.txt", "".join(
        f"{YOLO_DATA_DIR}/{Path(YOLO_FRAME_NAME.format(f)).with_suffix('.jpg')}\n" for f in sorted(wanted)))
    return data_dir


def read_cvat_yolo(path: str | Path, image_size_wh: tuple[int, int], *,
                   link_iou: float | None = 0.5) -> ImportedLabels:
    """CVAT "YOLO 1.1" export (a directory or the ``.zip``): ``obj.names`` and
    ``obj_<subset>_data/<name>.txt``, the frame index being the last run of digits in the name.

    YOLO files carry no track ids: with ``link_iou`` boxes of the same class on consecutive
    frames are linked into tracks by the assignment of largest total IoU (LAPJV, Jonker &
    Volgenant 1987) when their IoU is at least ``link_iou``; with ``None`` every box is its own
    track.

    Raises:
        LabelFileError: no ``obj.names``; a row without 5 numbers, a class outside the list,
            a coordinate outside [0, 1], a non-positive size; a name without a frame number;
            two files for one frame (file and line named).
    """
    path = Path(path)
    width, height = image_size_wh
    if path.suffix.lower() == ".zip":
        members = _zip_members(path)
    elif path.is_dir():
        members = {p.relative_to(path).as_posix(): _read_text(p) for p in sorted(path.rglob("*"))
                   if p.is_file() and p.suffix in (".txt", ".names", ".data")}
    else:
        raise LabelFileError(path, "expected a CVAT YOLO 1.1 export directory or .zip")
    names_member = next((m for m in members if Path(m).name == YOLO_NAMES), None)
    if names_member is None:
        raise LabelFileError(path, f"no {YOLO_NAMES} (the class list of a YOLO 1.1 export)")
    names = _parse_class_list(members[names_member])
    per_frame: dict[int, list[tuple[int, np.ndarray]]] = {}
    frame_file: dict[int, str] = {}
    for member, text in sorted(members.items()):
        parent = Path(member).parent.name
        if not (parent.startswith("obj_") and parent.endswith("_data")) or not member.endswith(".txt"):
            continue
        digits = re.findall(r"\d+", Path(member).stem)
        if not digits:
            raise LabelFileError(text.name, "no frame number in the file name (expected frame_000123.txt)")
        frame = int(digits[-1])
        if frame in frame_file:
            raise LabelFileError(text.name, f"a second label file for frame {frame} (first: {frame_file[frame]})")
        frame_file[frame] = text.name
        per_frame[frame] = _parse_yolo_rows(text, len(names), width, height)
    track_ids = _link_tracks(per_frame, link_iou)
    boxes = [LabelBox(frame, track_ids[frame][i], names[cls], tuple(xyxy), verified=True, origin=BoxOrigin.IMPORTED)
             for frame in sorted(per_frame) for i, (cls, xyxy) in enumerate(per_frame[frame])]
    return ImportedLabels(boxes, names, [], str(path))


def _parse_yolo_rows(text: _Text, num_classes: int, width: int, height: int) -> list[tuple[int, np.ndarray]]:
    rows = []
    for number, line in enumerate(text.text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 5:
            raise LabelFileError(text.name, f"expected 5 values 'class cx cy w h', got {len(fields)}: "
                                 f"{line.strip()!r}", line=number)
        try:
            cls, cx, cy, w, h = (float(v) for v in fields)
        except ValueError:
            raise LabelFileError(text.name, f"non-numeric value in {line.strip()!r}", line=number) from None
        if cls != int(cls) or not 0 <= cls < num_classes:
            raise LabelFileError(text.name, f"class {cls:g} is not an integer in [0, {num_classes})", line=number)
        if not all(np.isfinite(v) and -1e-3 <= v <= 1 + 1e-3 for v in (cx, cy, w, h)):
            raise LabelFileError(text.name, f"coordinates {cx, cy, w, h} are not normalised to [0, 1]", line=number)
        if w <= 0 or h <= 0:
            raise LabelFileError(text.name, f"box width/height must be > 0, got {w:g} x {h:g}", line=number)
        xyxy = np.array([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height])
        rows.append((int(cls), xyxy))
    return rows


def _link_tracks(per_frame: Mapping[int, list[tuple[int, np.ndarray]]], link_iou: float | None) -> dict[int, list[int]]:
    """Track id of every box: linked to the previous frame's box of the same class by maximum
    total IoU (``>= link_iou``), else a new id."""
    next_id = 1
    ids: dict[int, list[int]] = {}
    for frame in sorted(per_frame):
        rows = per_frame[frame]
        frame_ids = [0] * len(rows)
        previous = per_frame.get(frame - 1)
        if link_iou is not None and previous and rows:
            prev_boxes = np.stack([b for _, b in previous])
            boxes = np.stack([b for _, b in rows])
            iou = iou_matrix(prev_boxes, boxes)
            same_class = np.array([c for c, _ in previous])[:, None] == np.array([c for c, _ in rows])[None, :]
            cost = np.where(same_class & (iou >= link_iou), 1.0 - iou, FORBIDDEN_LINK_COST)
            _, _, prev_of_row = lap.lapjv(cost, extend_cost=True, cost_limit=1.0 - link_iou + 1e-9)
            for i, j in enumerate(prev_of_row):
                if j >= 0:
                    frame_ids[i] = ids[frame - 1][j]
        for i in range(len(rows)):
            if frame_ids[i] == 0:
                frame_ids[i], next_id = next_id, next_id + 1
        ids[frame] = frame_ids
    return ids


# --------------------------------------------------------------------------- Label Studio

def _load_json(text: _Text) -> Any:
    try:
        return json.loads(text.text)
    except json.JSONDecodeError as exc:
        raise LabelFileError(text.name, f"invalid JSON: {exc.msg} (column {exc.colno})", line=exc.lineno) from None


def read_label_studio_video(path: str | Path, image_size_wh: tuple[int, int], *, task_index: int | None = None,
                            annotation_index: int = 0, interpolated_as_proposals: bool = True,
                            default_class: str = "object") -> ImportedLabels:
    """Label Studio's JSON export of a video object-tracking project (module docstring).

    Args:
        path: the exported ``.json`` (a list of tasks, or one task object).
        image_size_wh: the video's frame size in pixels (the export stores percentages).
        task_index: which task (``None``: the file must hold exactly one).
        annotation_index: which annotation of the task (0: the first).
        interpolated_as_proposals: keyframes become verified boxes; boxes Label Studio
            interpolates between them become proposals (True) or verified (False).
        default_class: the class of a region without ``labels``.

    Returns:
        One track per ``videorectangle`` region (ids 1, 2, ... in file order); frame N is video
        frame index N - 1.

    Raises:
        LabelFileError: invalid JSON (line named), or a missing or malformed field, a rotated
            box, two keyframes on one frame (JSON path named, e.g.
            ``$[0].annotations[0].result[1].value.sequence[2].x``).
    """
    width, height = image_size_wh
    text = _read_text(Path(path))
    data = _load_json(text)

    def fail(json_path: str, problem: str) -> LabelFileError:
        return LabelFileError(text.name, problem, json_path=json_path)

    if isinstance(data, dict):
        tasks, root = [data], "$"
    elif isinstance(data, list):
        tasks, root = data, "$"
    else:
        raise fail("$", "expected a list of tasks or one task object")
    if task_index is None:
        if len(tasks) != 1:
            raise fail("$", f"the file holds {len(tasks)} tasks; choose one with task_index")
        task_index = 0
    if not 0 <= task_index < len(tasks):
        raise fail("$", f"task_index {task_index} outside the {len(tasks)} task(s)")
    task_path = f"{root}[{task_index}]" if isinstance(data, list) else root
    task = tasks[task_index]
    annotations = task.get("annotations") if isinstance(task, dict) else None
    if not isinstance(annotations, list) or not annotations:
        raise fail(f"{task_path}.annotations", "missing or empty (export the annotations, not only the tasks)")
    if not 0 <= annotation_index < len(annotations):
        raise fail(f"{task_path}.annotations", f"annotation_index {annotation_index} outside the "
                   f"{len(annotations)} annotation(s)")
    ann_path = f"{task_path}.annotations[{annotation_index}]"
    results = annotations[annotation_index].get("result") if isinstance(annotations[annotation_index], dict) else None
    if not isinstance(results, list):
        raise fail(f"{ann_path}.result", "missing or not a list")
    names: list[str] = []
    boxes: list[LabelBox] = []
    track_id = 0
    for r, result in enumerate(results):
        result_path = f"{ann_path}.result[{r}]"
        if not isinstance(result, dict):
            raise fail(result_path, "must be an object")
        if result.get("type") != "videorectangle":
            continue
        value = result.get("value")
        if not isinstance(value, dict):
            raise fail(f"{result_path}.value", "missing or not an object")
        labels = value.get("labels", [])
        if not isinstance(labels, list) or not all(isinstance(n, str) and n.strip() for n in labels):
            raise fail(f"{result_path}.value.labels", "must be a list of class names")
        class_name = labels[0] if labels else default_class
        if class_name not in names:
            names.append(class_name)
        sequence = value.get("sequence")
        if not isinstance(sequence, list) or not sequence:
            raise fail(f"{result_path}.value.sequence", "missing or empty (a videorectangle needs keyframes)")
        keys = []
        for k, key in enumerate(sequence):
            key_path = f"{result_path}.value.sequence[{k}]"
            if not isinstance(key, dict):
                raise fail(key_path, "must be an object")
            frame = key.get("frame")
            if not (isinstance(frame, int) and not isinstance(frame, bool)) or frame < 1:
                raise fail(f"{key_path}.frame", f"must be an integer >= 1 (1-based), got {frame!r}")
            numbers = []
            for name in ("x", "y", "width", "height"):
                v = key.get(name)
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
                    raise fail(f"{key_path}.{name}", f"must be a number (percent of the frame), got {v!r}")
                numbers.append(float(v))
            if numbers[2] <= 0 or numbers[3] <= 0:
                raise fail(f"{key_path}.width", f"box size {numbers[2]:g}% x {numbers[3]:g}% must be > 0")
            rotation = key.get("rotation", 0) or 0
            if not isinstance(rotation, (int, float)) or rotation % 360:
                raise fail(f"{key_path}.rotation", f"rotated boxes ({rotation!r} degrees) are not supported")
            enabled = key.get("enabled", True)
            if not isinstance(enabled, bool):
                raise fail(f"{key_path}.enabled", f"must be true or false, got {enabled!r}")
            x, y, w, h = numbers
            xyxy = np.array([x, y, x + w, y + h]) / LS_PERCENT * [width, height, width, height]
            keys.append((frame, xyxy, enabled, key_path))
        keys.sort(key=lambda item: item[0])
        for (f0, _, _, _), (f1, _, _, p1) in zip(keys, keys[1:]):
            if f0 == f1:
                raise fail(f"{p1}.frame", f"a second keyframe on frame {f1}")
        track_id += 1
        for (f0, box0, enabled, _), following in zip(keys, [*keys[1:], None]):
            boxes.append(LabelBox(f0 - 1, track_id, class_name, tuple(box0), verified=True, origin=BoxOrigin.IMPORTED))
            if not enabled or following is None:
                continue
            f1, box1 = following[0], following[1]
            for frame, xyxy in zip(range(f0 + 1, f1), interpolate_xyxy(box0, f0, box1, f1, range(f0 + 1, f1))):
                boxes.append(LabelBox(frame - 1, track_id, class_name, tuple(xyxy), verified=not interpolated_as_proposals,
                                      origin=BoxOrigin.INTERPOLATED))
    if track_id == 0:
        raise fail(f"{ann_path}.result", "no videorectangle region (is this a video object-tracking project?)")
    return ImportedLabels(boxes, names, [], text.name)
