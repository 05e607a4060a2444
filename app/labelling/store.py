"""The labels of one clip: per-frame boxes with track ids and classes, edits with undo and redo,
and an atomic save.

Model (no Qt; a view observes it with :meth:`LabelStore.subscribe`):

* A box is identified by ``(frame_index, track_id)``: a track has at most one box per frame
  (the MOT convention). ``frame_index`` is the 0-based index of the decoded video frame (as
  :class:`app.frames.Frame` counts them; MOT frame N is index N - 1). ``xyxy`` are float pixels of
  the original frame, ``x2 > x1``, ``y2 > y1``.
* ``verified`` marks a box the user drew or corrected (a keyframe); ``verified=False`` is a
  *proposal* from the detector, the tracker or interpolation. Propagation replaces proposals
  and never touches a verified box (:meth:`LabelStore.apply_proposals`).
* A frame can be marked verified: the user checked every object on it. Marking a frame
  verifies its boxes, and propagation adds no proposal to a verified frame.
* Classes are an ordered list of names (the order is the class id of the saved files); a new
  name given to a box is appended.

Edits follow the command pattern: each public edit records the primitive changes it made
(``box before -> after``, ``frame verified before -> after``, ``class appended``) as one command;
:meth:`LabelStore.undo` replays them backwards, :meth:`LabelStore.redo` forwards. The history is
unlimited for the session. :meth:`LabelStore.transaction` groups several edits into one step.

Not thread-safe: edit the store from one thread (the GUI thread); run detectors and trackers
elsewhere and hand their proposals to :meth:`LabelStore.apply_proposals` there.
"""

from __future__ import annotations

import dataclasses
import enum
import itertools
import logging
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.labelling.errors import LabellingError, LabelValidationError, TrackIdConflictError, UnknownBoxError

__all__ = ["BoxOrigin", "LabelBox", "LabelStore", "ProposalResult", "TrackScope"]

logger = logging.getLogger(__name__)


class BoxOrigin(enum.Enum):
    """Where a box came from (shown by the GUI; proposals keep it in the save's sidecar)."""

    MANUAL = "manual"
    DETECTOR = "detector"
    TRACKER = "tracker"
    INTERPOLATED = "interpolated"
    IMPORTED = "imported"


class TrackScope(enum.Enum):
    """Which boxes of a track an edit applies to, relative to the frame it is made on."""

    FRAME = "frame"  # only the box on this frame
    FORWARD = "forward"  # this frame and every later one
    TRACK = "track"  # every frame of the track


@dataclass(frozen=True)
class LabelBox:
    """One box of one track on one frame.

    Attributes:
        frame_index: 0-based video frame index (MOT frame number - 1).
        track_id: track id, an integer >= 1 (MOT ids are positive).
        class_name: the object class, a non-empty name without line breaks.
        xyxy: ``(x1, y1, x2, y2)`` float pixels of the original frame, ``x2 > x1``, ``y2 > y1``.
        verified: True for a box the user drew or corrected; False for a proposal.
        visibility: visible fraction of the object in [0, 1] (MOT 1.1 column 9).
        ignored: True for a MOT "ignore" row (column 7 = 0): an evaluation ignore region for
            the training module, not an object.
        origin: where the box came from (:class:`BoxOrigin`).

    Raises:
        LabelValidationError: any field out of its range.
    """

    frame_index: int
    track_id: int
    class_name: str
    xyxy: tuple[float, float, float, float]
    verified: bool = False
    visibility: float = 1.0
    ignored: bool = False
    origin: BoxOrigin = BoxOrigin.MANUAL

    def __post_init__(self) -> None:
        where = f"box (frame {self.frame_index}, track {self.track_id})"
        if not _is_int(self.frame_index) or self.frame_index < 0:
            raise LabelValidationError(f"{where}: frame_index must be an integer >= 0")
        if not _is_int(self.track_id) or self.track_id < 1:
            raise LabelValidationError(f"{where}: track_id must be an integer >= 1 (MOT ids are positive)")
        object.__setattr__(self, "frame_index", int(self.frame_index))
        object.__setattr__(self, "track_id", int(self.track_id))
        _check_class_name(self.class_name, where)
        object.__setattr__(self, "xyxy", _checked_xyxy(self.xyxy, where))
        visibility = float(self.visibility)
        if not 0.0 <= visibility <= 1.0:
            raise LabelValidationError(f"{where}: visibility {self.visibility!r} must be in [0, 1]")
        object.__setattr__(self, "visibility", visibility)
        if not isinstance(self.origin, BoxOrigin):
            raise LabelValidationError(f"{where}: origin must be a BoxOrigin, got {self.origin!r}")

    @property
    def key(self) -> tuple[int, int]:
        """``(frame_index, track_id)``, the box's identity in a store."""
        return self.frame_index, self.track_id

    @property
    def xyxy_array(self) -> np.ndarray:
        """The box as a float64 ``(4,)`` array ``x1, y1, x2, y2`` in pixels."""
        return np.asarray(self.xyxy, dtype=np.float64)

    def replace(self, **changes: object) -> LabelBox:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class ProposalResult:
    """What :meth:`LabelStore.apply_proposals` did, in boxes."""

    added: int = 0
    replaced: int = 0
    removed: int = 0
    skipped_verified: int = 0


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_class_name(name: object, where: str) -> None:
    if not isinstance(name, str) or not name.strip() or any(c in name for c in "\r\n"):
        raise LabelValidationError(f"{where}: class name must be a non-empty string on one line, got {name!r}")


def _checked_xyxy(xyxy: object, where: str) -> tuple[float, float, float, float]:
    try:
        values = tuple(float(v) for v in np.asarray(xyxy, dtype=np.float64).reshape(-1))
    except (TypeError, ValueError):
        raise LabelValidationError(f"{where}: xyxy must be 4 numbers, got {xyxy!r}") from None
    if len(values) != 4:
        raise LabelValidationError(f"{where}: xyxy must be 4 numbers (x1, y1, x2, y2), got {len(values)}")
    if not all(math.isfinite(v) for v in values):
        raise LabelValidationError(f"{where}: xyxy {values} has a NaN or infinite coordinate")
    x1, y1, x2, y2 = values
    if not (x2 > x1 and y2 > y1):
        raise LabelValidationError(f"{where}: xyxy {values} must have x2 > x1 and y2 > y1 (a positive size)")
    return values  # type: ignore[return-value]


# --------------------------------------------------------------------------- commands

@dataclass(frozen=True)
class _BoxChange:
    key: tuple[int, int]
    before: LabelBox | None
    after: LabelBox | None


@dataclass(frozen=True)
class _FrameChange:
    frame_index: int
    before: bool
    after: bool


@dataclass(frozen=True)
class _ClassAppend:
    name: str


_Change = _BoxChange | _FrameChange | _ClassAppend


@dataclass(frozen=True)
class _Command:
    description: str
    changes: tuple[_Change, ...]
    serial: int


_serials = itertools.count(1)


class LabelStore:
    """Boxes of one clip with undo/redo; see the module docstring for the model.

    Args:
        class_names: the initial class list (e.g. the model's ``names``); order = class id.
        path: where :meth:`save` writes the MOT ``gt.txt`` (the class list and the sidecar go
            beside it, see :func:`app.labelling.formats.save_mot`); may be given to save later.

    Raises:
        LabelValidationError: an invalid or duplicated class name.
    """

    def __init__(self, class_names: Sequence[str] = (), *, path: str | Path | None = None) -> None:
        self._classes: list[str] = []
        for name in class_names:
            _check_class_name(name, "class list")
            if name in self._classes:
                raise LabelValidationError(f"class list: {name!r} appears twice")
            self._classes.append(name)
        self.path: Path | None = Path(path) if path is not None else None
        self._frames: dict[int, dict[int, LabelBox]] = {}
        self._verified_frames: set[int] = set()
        self._undo: list[_Command] = []
        self._redo: list[_Command] = []
        self._pending: list[_Change] | None = None
        self._pending_description = ""
        self._depth = 0
        self._saved_serial = 0
        self._listeners: list[Callable[[frozenset[int]], None]] = []

    # ----------------------------------------------------------------------- queries

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names in class-id order."""
        return tuple(self._classes)

    def class_id(self, name: str) -> int:
        """The 0-based id of class ``name``.

        Raises:
            LabelValidationError: an unknown class.
        """
        try:
            return self._classes.index(name)
        except ValueError:
            raise LabelValidationError(f"unknown class {name!r}; classes: {', '.join(self._classes)}") from None

    def __len__(self) -> int:
        return sum(len(boxes) for boxes in self._frames.values())

    def boxes(self, frame_index: int) -> list[LabelBox]:
        """The boxes of one frame, by ascending track id (empty for an unlabelled frame)."""
        boxes = self._frames.get(frame_index, {})
        return [boxes[t] for t in sorted(boxes)]

    def get(self, frame_index: int, track_id: int) -> LabelBox | None:
        """The box of track ``track_id`` on frame ``frame_index``, or ``None``."""
        return self._frames.get(frame_index, {}).get(track_id)

    def box(self, frame_index: int, track_id: int) -> LabelBox:
        """Like :meth:`get`, but raises :class:`UnknownBoxError` when there is no such box."""
        found = self.get(frame_index, track_id)
        if found is None:
            raise UnknownBoxError(f"no box of track {track_id} on frame {frame_index}")
        return found

    def all_boxes(self) -> list[LabelBox]:
        """Every box, by frame then track id."""
        return [box for frame in sorted(self._frames) for box in self.boxes(frame)]

    def frame_indices(self) -> list[int]:
        """Frames that hold at least one box, ascending."""
        return sorted(self._frames)

    def track_ids(self) -> list[int]:
        """Every track id in use, ascending."""
        return sorted({t for boxes in self._frames.values() for t in boxes})

    def track(self, track_id: int) -> dict[int, LabelBox]:
        """``{frame_index: box}`` of one track, by ascending frame."""
        return {f: self._frames[f][track_id] for f in sorted(self._frames) if track_id in self._frames[f]}

    def next_track_id(self) -> int:
        """The smallest id above every id in use (1 for an empty store)."""
        ids = self.track_ids()
        return ids[-1] + 1 if ids else 1

    @property
    def verified_frames(self) -> frozenset[int]:
        """Frames the user marked verified."""
        return frozenset(self._verified_frames)

    def is_frame_verified(self, frame_index: int) -> bool:
        return frame_index in self._verified_frames

    # ----------------------------------------------------------------------- observers

    def subscribe(self, callback: Callable[[frozenset[int]], None]) -> Callable[[], None]:
        """Call ``callback(changed_frame_indices)`` after every edit, undo and redo (a class
        appended alone reports an empty set). Returns a function that unsubscribes."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback) if callback in self._listeners else None

    def _notify(self, changes: Iterable[_Change]) -> None:
        frames = frozenset(c.key[0] if isinstance(c, _BoxChange) else c.frame_index
                           for c in changes if not isinstance(c, _ClassAppend))
        for callback in list(self._listeners):
            callback(frames)

    # ----------------------------------------------------------------------- history

    @contextmanager
    def transaction(self, description: str) -> Iterator[None]:
        """Group every edit made inside the ``with`` block into one undo step.

        If the block raises, its edits are rolled back and the exception propagates.
        Transactions nest; the outermost one records the command.
        """
        outermost = self._depth == 0
        if outermost:
            self._pending = []
            self._pending_description = description
        self._depth += 1
        mark = len(self._pending)  # type: ignore[arg-type]
        try:
            yield
        except BaseException:
            staged = self._pending[mark:]  # type: ignore[index]
            for change in reversed(staged):
                self._apply(change, forward=False)
            del self._pending[mark:]  # type: ignore[index]
            raise
        finally:
            self._depth -= 1
            if outermost:
                changes, self._pending = tuple(self._pending or ()), None
        if outermost and changes:
            self._undo.append(_Command(self._pending_description, changes, next(_serials)))
            self._redo.clear()
            self._notify(changes)

    def _stage(self, change: _Change) -> None:
        if self._pending is None:
            raise RuntimeError("edits are staged inside a transaction")  # a bug in this module
        self._apply(change, forward=True)
        self._pending.append(change)

    def _set_box(self, key: tuple[int, int], after: LabelBox | None) -> None:
        before = self.get(*key)
        if before != after:
            self._stage(_BoxChange(key, before, after))

    def _apply(self, change: _Change, *, forward: bool) -> None:
        if isinstance(change, _BoxChange):
            value = change.after if forward else change.before
            frame, track = change.key
            boxes = self._frames.setdefault(frame, {})
            if value is None:
                boxes.pop(track, None)
                if not boxes:
                    del self._frames[frame]
            else:
                boxes[track] = value
        elif isinstance(change, _FrameChange):
            value = change.after if forward else change.before
            if value:
                self._verified_frames.add(change.frame_index)
            else:
                self._verified_frames.discard(change.frame_index)
        else:
            if forward:
                self._classes.append(change.name)
            else:
                self._classes.remove(change.name)

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    @property
    def undo_description(self) -> str | None:
        """What :meth:`undo` would undo ("move box", ...), or ``None``."""
        return self._undo[-1].description if self._undo else None

    @property
    def redo_description(self) -> str | None:
        return self._redo[-1].description if self._redo else None

    def undo(self) -> str | None:
        """Undo the last command; returns its description, or ``None`` when there is none."""
        if self._depth:
            raise LabellingError("cannot undo inside a transaction")
        if not self._undo:
            return None
        command = self._undo.pop()
        for change in reversed(command.changes):
            self._apply(change, forward=False)
        self._redo.append(command)
        self._notify(command.changes)
        return command.description

    def redo(self) -> str | None:
        """Redo the last undone command; returns its description, or ``None``."""
        if self._depth:
            raise LabellingError("cannot redo inside a transaction")
        if not self._redo:
            return None
        command = self._redo.pop()
        for change in command.changes:
            self._apply(change, forward=True)
        self._undo.append(command)
        self._notify(command.changes)
        return command.description

    # ----------------------------------------------------------------------- dirty / save

    @property
    def _serial(self) -> int:
        return self._undo[-1].serial if self._undo else 0

    @property
    def is_dirty(self) -> bool:
        """True when the labels differ from the last :meth:`save` or load (undoing back to the
        saved state makes the store clean again)."""
        return self._serial != self._saved_serial

    def clear_history(self) -> None:
        """Forget every undo and redo step (e.g. after an import that starts a session)."""
        if self._depth:
            raise LabellingError("cannot clear the history inside a transaction")
        self._undo.clear()
        self._redo.clear()

    def mark_clean(self) -> None:
        """Declare the current state saved (used after loading)."""
        self._saved_serial = self._serial

    def save(self, path: str | Path | None = None) -> Path:
        """Write the labels as MOT 1.1 ``gt.txt`` + class list + sidecar, each atomically
        (temporary file + rename, :func:`app.labelling.formats.save_mot`), and mark the store clean.

        Args:
            path: the ``gt.txt`` to write; default :attr:`path` (``path`` becomes the default).

        Returns:
            The ``gt.txt`` path.

        Raises:
            LabellingError: no path given and none set.
            OSError: the directory cannot be written (the previous files stay intact).
        """
        from app.labelling.formats import save_mot

        if path is not None:
            self.path = Path(path)
        if self.path is None:
            raise LabellingError("no file to save the labels to: pass save(path) once")
        save_mot(self, self.path)
        self.mark_clean()
        logger.info("labels saved to %s (%d boxes, %d classes)", self.path, len(self), len(self._classes))
        return self.path

    @classmethod
    def load(cls, path: str | Path) -> LabelStore:
        """A clean store read from a ``gt.txt`` written by :meth:`save` (or any MOT 1.1 file
        with a ``labels.txt`` beside it); see :func:`app.labelling.formats.read_mot`.

        Raises:
            LabelFileError: a malformed file (names the file and line).
        """
        from app.labelling.formats import load_store

        return load_store(path)

    # ----------------------------------------------------------------------- edits

    def _ensure_class(self, name: str) -> None:
        _check_class_name(name, "class")
        if name not in self._classes:
            self._stage(_ClassAppend(name))

    def add_class(self, name: str) -> int:
        """Append class ``name`` (no-op if present); returns its id. One undo step."""
        with self.transaction(f"add class {name}"):
            self._ensure_class(name)
        return self._classes.index(name)

    def add_box(self, frame_index: int, xyxy: Sequence[float] | np.ndarray, class_name: str, *,
                track_id: int | None = None, verified: bool = True, visibility: float = 1.0,
                origin: BoxOrigin = BoxOrigin.MANUAL) -> LabelBox:
        """Add a box (a new track unless ``track_id`` is given); a new class name is appended.

        Raises:
            LabelValidationError: invalid values.
            TrackIdConflictError: ``track_id`` already has a box on this frame.
        """
        track_id = self.next_track_id() if track_id is None else track_id
        box = LabelBox(frame_index, track_id, class_name, tuple(np.asarray(xyxy, float).reshape(-1)),
                       verified=verified, visibility=visibility, origin=origin)
        if self.get(*box.key) is not None:
            raise TrackIdConflictError(f"track {track_id} already has a box on frame {frame_index}")
        with self.transaction("add box"):
            self._ensure_class(class_name)
            self._set_box(box.key, box)
        return box

    def move_box(self, frame_index: int, track_id: int, xyxy: Sequence[float] | np.ndarray, *,
                 verified: bool = True) -> LabelBox:
        """Move or resize a box; by default the corrected box becomes verified.

        Raises:
            UnknownBoxError, LabelValidationError.
        """
        box = self.box(frame_index, track_id).replace(
            xyxy=tuple(np.asarray(xyxy, float).reshape(-1)), verified=verified,
            origin=BoxOrigin.MANUAL if verified else self.box(frame_index, track_id).origin)
        with self.transaction("move box"):
            self._set_box(box.key, box)
        return box

    def set_verified(self, frame_index: int, track_id: int, verified: bool = True) -> LabelBox:
        """Accept a proposal as it is (or turn a box back into a proposal)."""
        box = self.box(frame_index, track_id).replace(verified=verified)
        with self.transaction("verify box" if verified else "unverify box"):
            self._set_box(box.key, box)
        return box

    def delete_box(self, frame_index: int, track_id: int) -> None:
        """Delete one box. Raises :class:`UnknownBoxError` when there is none."""
        self.box(frame_index, track_id)
        with self.transaction("delete box"):
            self._set_box((frame_index, track_id), None)

    def delete_track(self, track_id: int, *, from_frame: int | None = None, to_frame: int | None = None,
                     proposals_only: bool = False) -> int:
        """Delete the boxes of a track on frames ``[from_frame, to_frame]`` (inclusive, open
        ends by default); with ``proposals_only`` verified boxes stay. Returns the number deleted."""
        doomed = [b for f, b in self.track(track_id).items()
                  if (from_frame is None or f >= from_frame) and (to_frame is None or f <= to_frame)
                  and not (proposals_only and b.verified)]
        with self.transaction("delete track"):
            for box in doomed:
                self._set_box(box.key, None)
        return len(doomed)

    def _scoped(self, frame_index: int, track_id: int, scope: TrackScope) -> list[LabelBox]:
        self.box(frame_index, track_id)
        track = self.track(track_id)
        if scope is TrackScope.FRAME:
            return [track[frame_index]]
        if scope is TrackScope.FORWARD:
            return [b for f, b in track.items() if f >= frame_index]
        return list(track.values())

    def set_class(self, frame_index: int, track_id: int, class_name: str, *,
                  scope: TrackScope = TrackScope.TRACK) -> int:
        """Set the class of a track's boxes (``scope`` relative to ``frame_index``); a new name
        is appended to the class list. Changed boxes become verified. Returns the count.

        Raises:
            UnknownBoxError: no box of the track on ``frame_index``.
            LabelValidationError: an empty class name.
        """
        _check_class_name(class_name, "class")
        boxes = self._scoped(frame_index, track_id, scope)
        with self.transaction("set class"):
            self._ensure_class(class_name)
            for box in boxes:
                self._set_box(box.key, box.replace(class_name=class_name, verified=True))
        return len(boxes)

    def set_track_id(self, frame_index: int, track_id: int, new_track_id: int, *,
                     scope: TrackScope = TrackScope.FRAME) -> int:
        """Give the boxes of track ``track_id`` (``scope`` relative to ``frame_index``) the id
        ``new_track_id`` (a new or an existing track). Returns the number of boxes changed.

        Raises:
            UnknownBoxError: no box of the track on ``frame_index``.
            LabelValidationError: ``new_track_id`` below 1.
            TrackIdConflictError: ``new_track_id`` already has a box on one of those frames
                (the message names the first); nothing is changed.
        """
        boxes = self._scoped(frame_index, track_id, scope)
        if new_track_id == track_id:
            return 0
        clashes = [b.frame_index for b in boxes if self.get(b.frame_index, new_track_id) is not None]
        if clashes:
            raise TrackIdConflictError(
                f"track {new_track_id} already has a box on frame {clashes[0]} "
                f"({len(clashes)} frame(s) in all); delete or re-id that box first")
        with self.transaction("set track id"):
            for box in boxes:
                self._set_box(box.key, None)
            for box in boxes:
                moved = box.replace(track_id=new_track_id)
                self._set_box(moved.key, moved)
        return len(boxes)

    def merge_tracks(self, keep_track_id: int, other_track_id: int) -> int:
        """Merge track ``other_track_id`` into ``keep_track_id`` (one object split in two
        tracks). Returns the number of boxes moved.

        Raises:
            TrackIdConflictError: both tracks have a box on some frame (the message names it).
            UnknownBoxError: ``other_track_id`` has no box.
        """
        other = self.track(other_track_id)
        if not other:
            raise UnknownBoxError(f"track {other_track_id} has no box")
        first = next(iter(other))
        return self.set_track_id(first, other_track_id, keep_track_id, scope=TrackScope.TRACK)

    def set_frame_verified(self, frame_index: int, verified: bool = True) -> None:
        """Mark a frame verified (every box on it becomes verified too) or unmark it (its
        boxes keep their flags). One undo step."""
        if not _is_int(frame_index) or frame_index < 0:
            raise LabelValidationError(f"frame_index must be an integer >= 0, got {frame_index!r}")
        with self.transaction("verify frame" if verified else "unverify frame"):
            before = frame_index in self._verified_frames
            if before != verified:
                self._stage(_FrameChange(frame_index, before, verified))
            if verified:
                for box in self.boxes(frame_index):
                    if not box.verified:
                        self._set_box(box.key, box.replace(verified=True))

    # ----------------------------------------------------------------------- batches

    def apply_proposals(self, boxes: Iterable[LabelBox], *, remove: Iterable[tuple[int, int]] = (),
                        description: str = "propose boxes") -> ProposalResult:
        """Write proposals in one undo step, never over a verified box or into a verified frame.

        Each box of ``boxes`` (its ``verified`` flag is forced to False) replaces the proposal
        with the same key or is added; it is skipped where the key holds a verified box or the
        frame is verified. Keys in ``remove`` are deleted where they hold a proposal.
        New class names are appended.
        """
        added = replaced = removed = skipped = 0
        with self.transaction(description):
            for key in remove:
                current = self.get(*key)
                if current is not None and not current.verified and key[0] not in self._verified_frames:
                    self._set_box(key, None)
                    removed += 1
            for box in boxes:
                current = self.get(*box.key)
                if box.frame_index in self._verified_frames or (current is not None and current.verified):
                    skipped += 1
                    continue
                self._ensure_class(box.class_name)
                proposal = box if not box.verified else box.replace(verified=False)
                self._set_box(proposal.key, proposal)
                if current is None:
                    added += 1
                else:
                    replaced += 1
        return ProposalResult(added, replaced, removed, skipped)

    def replace_all(self, boxes: Iterable[LabelBox], class_names: Sequence[str] = (),
                    verified_frames: Iterable[int] = (), *, description: str = "import labels") -> None:
        """Replace every box and frame mark by ``boxes`` (e.g. an import), one undo step.
        ``class_names`` are appended first, in order, where missing.

        Raises:
            LabelValidationError: two boxes with the same (frame, track id).
        """
        boxes = list(boxes)
        keys = [b.key for b in boxes]
        if len(set(keys)) != len(keys):
            seen: set[tuple[int, int]] = set()
            dup = next(k for k in keys if k in seen or seen.add(k))  # type: ignore[func-returns-value]
            raise LabelValidationError(f"two boxes of track {dup[1]} on frame {dup[0]}")
        with self.transaction(description):
            for name in class_names:
                self._ensure_class(name)
            for box in self.all_boxes():
                self._set_box(box.key, None)
            for frame in sorted(self._verified_frames):
                self._stage(_FrameChange(frame, True, False))
            for box in boxes:
                self._ensure_class(box.class_name)
                self._set_box(box.key, box)
            for frame in sorted(set(verified_frames)):
                self._stage(_FrameChange(frame, False, True))
