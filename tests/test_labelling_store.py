"""The label store of the labelling mode (issue 14): edits, undo/redo, dirty state, atomic save."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from app.labelling import (
    BoxOrigin,
    LabelBox,
    LabelStore,
    LabelValidationError,
    TrackIdConflictError,
    TrackScope,
    UnknownBoxError,
)
from app.labelling.errors import LabellingError
from yolov7_track.errors import Yolov7TrackError

BOX_A = (10.0, 20.0, 50.0, 120.0)
BOX_B = (200.0, 30.0, 240.0, 130.0)


def _store_with_track(frames=range(5), track_id: int = 1, verified: bool = True) -> LabelStore:
    store = LabelStore(["person", "car"])
    with store.transaction("setup"):
        for f in frames:
            store.add_box(f, (10 + f, 20, 50 + f, 120), "person", track_id=track_id, verified=verified)
    return store


def test_add_move_delete_with_undo_redo_restores_every_state():
    store = LabelStore(["person"])
    box = store.add_box(3, BOX_A, "person")
    assert box.track_id == 1 and box.verified and box.origin is BoxOrigin.MANUAL
    second = store.add_box(3, BOX_B, "person")
    assert second.track_id == 2 and [b.track_id for b in store.boxes(3)] == [1, 2]
    moved = store.move_box(3, 1, (12, 22, 52, 122))
    assert moved.xyxy == (12.0, 22.0, 52.0, 122.0)
    store.delete_box(3, 2)
    assert [b.track_id for b in store.boxes(3)] == [1]

    assert store.undo() == "delete box"
    assert store.get(3, 2).xyxy == BOX_B
    assert store.undo() == "move box"
    assert store.get(3, 1).xyxy == BOX_A
    assert store.undo() == "add box" and store.get(3, 2) is None
    assert store.undo() == "add box" and len(store) == 0 and store.frame_indices() == []
    assert store.undo() is None and not store.can_undo

    assert store.redo() == "add box" and store.redo() == "add box" and store.redo() == "move box"
    assert store.get(3, 1).xyxy == (12.0, 22.0, 52.0, 122.0) and store.get(3, 2) is not None
    store.add_box(4, BOX_A, "person")  # a new edit clears the redo history
    assert not store.can_redo and store.redo() is None


def test_set_class_appends_a_new_name_and_undo_removes_it():
    store = _store_with_track()
    assert store.set_class(2, 1, "scooter", scope=TrackScope.FORWARD) == 3
    assert store.classes == ("person", "car", "scooter")
    assert [b.class_name for b in store.track(1).values()] == ["person"] * 2 + ["scooter"] * 3
    store.set_class(0, 1, "car", scope=TrackScope.FRAME)
    assert store.get(0, 1).class_name == "car" and store.get(1, 1).class_name == "person"
    store.undo()
    store.undo()
    assert store.classes == ("person", "car")
    assert {b.class_name for b in store.all_boxes()} == {"person"}


def test_set_track_id_scopes_and_conflicts_change_nothing():
    store = _store_with_track(range(6))
    store.add_box(4, BOX_B, "person", track_id=7)
    assert store.set_track_id(2, 1, 5, scope=TrackScope.FORWARD) == 4
    assert sorted(store.track(1)) == [0, 1] and sorted(store.track(5)) == [2, 3, 4, 5]
    with pytest.raises(TrackIdConflictError, match="track 7 already has a box on frame 4"):
        store.set_track_id(2, 5, 7, scope=TrackScope.TRACK)
    assert sorted(store.track(5)) == [2, 3, 4, 5] and sorted(store.track(7)) == [4]
    assert store.set_track_id(0, 1, 9, scope=TrackScope.FRAME) == 1
    assert sorted(store.track(9)) == [0] and sorted(store.track(1)) == [1]
    store.undo()
    store.undo()
    assert sorted(store.track(1)) == list(range(6))


def test_merge_tracks_joins_fragments_and_refuses_overlap():
    store = _store_with_track(range(0, 3), track_id=1)
    with store.transaction("more"):
        for f in range(3, 6):
            store.add_box(f, BOX_A, "person", track_id=4)
        store.add_box(2, BOX_B, "person", track_id=6)
    assert store.merge_tracks(1, 4) == 3
    assert sorted(store.track(1)) == list(range(6)) and store.track(4) == {}
    with pytest.raises(TrackIdConflictError, match="frame 2"):
        store.merge_tracks(1, 6)
    with pytest.raises(UnknownBoxError):
        store.merge_tracks(1, 99)


def test_frame_verified_mark_verifies_its_boxes_and_undoes_as_one_step():
    store = _store_with_track(range(3), verified=False)
    store.set_frame_verified(1)
    assert store.verified_frames == {1} and store.get(1, 1).verified and not store.get(0, 1).verified
    assert store.undo() == "verify frame"
    assert store.verified_frames == frozenset() and not store.get(1, 1).verified


def test_dirty_follows_save_and_undo_back_to_the_saved_state(tmp_path):
    store = LabelStore(["person"], path=tmp_path / "gt" / "gt.txt")
    assert not store.is_dirty
    store.add_box(0, BOX_A, "person")
    assert store.is_dirty
    saved = store.save()
    assert saved.read_text() == "1,1,10,20,40,100,1,1,1\n" and not store.is_dirty
    store.move_box(0, 1, BOX_B)
    assert store.is_dirty
    store.undo()
    assert not store.is_dirty  # back at the saved labels
    store.undo()
    assert store.is_dirty
    store.redo()
    assert not store.is_dirty


def test_save_is_atomic_and_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    gt = tmp_path / "gt.txt"
    store = LabelStore(["person"], path=gt)
    store.add_box(0, BOX_A, "person")
    store.save()
    before = gt.read_text()
    store.add_box(1, BOX_B, "person")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        store.save()
    monkeypatch.undo()
    assert gt.read_text() == before and store.is_dirty
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []  # temp files removed
    store.save()
    assert gt.read_text().count("\n") == 2


def test_save_without_path_raises_a_typed_error():
    store = LabelStore(["person"])
    with pytest.raises(LabellingError, match="pass save"):
        store.save()


@pytest.mark.parametrize("kwargs, message", [
    (dict(frame_index=-1, track_id=1, class_name="a", xyxy=BOX_A), "frame_index"),
    (dict(frame_index=0, track_id=0, class_name="a", xyxy=BOX_A), "track_id"),
    (dict(frame_index=0, track_id=1, class_name="", xyxy=BOX_A), "class name"),
    (dict(frame_index=0, track_id=1, class_name="a\nb", xyxy=BOX_A), "class name"),
    (dict(frame_index=0, track_id=1, class_name="a", xyxy=(0, 0, 0, 5)), "x2 > x1"),
    (dict(frame_index=0, track_id=1, class_name="a", xyxy=(0, 0, float("nan"), 5)), "NaN"),
    (dict(frame_index=0, track_id=1, class_name="a", xyxy=(0, 0, 5)), "4 numbers"),
    (dict(frame_index=0, track_id=1, class_name="a", xyxy=BOX_A, visibility=1.5), "visibility"),
])
def test_invalid_boxes_raise_typed_errors(kwargs, message):
    with pytest.raises(LabelValidationError, match=message) as info:
        LabelBox(**kwargs)
    assert isinstance(info.value, Yolov7TrackError) and isinstance(info.value, ValueError)


def test_edit_errors_leave_the_store_unchanged():
    store = _store_with_track(range(2))
    with pytest.raises(TrackIdConflictError):
        store.add_box(0, BOX_B, "person", track_id=1)
    with pytest.raises(UnknownBoxError, match="no box of track 3 on frame 0"):
        store.move_box(0, 3, BOX_B)
    with pytest.raises(LabelValidationError):
        store.move_box(0, 1, (5, 5, 1, 1))
    assert store.undo_description == "setup" and len(store) == 2


def test_transaction_groups_edits_and_rolls_back_on_error():
    store = LabelStore(["person"])
    with store.transaction("two boxes"):
        store.add_box(0, BOX_A, "person")
        store.add_box(0, BOX_B, "person")
    assert store.undo_description == "two boxes"
    with pytest.raises(TrackIdConflictError):
        with store.transaction("doomed"):
            store.add_box(1, BOX_A, "newclass", track_id=1)
            store.add_box(1, BOX_B, "person", track_id=1)
    assert store.get(1, 1) is None and store.classes == ("person",) and store.undo_description == "two boxes"
    store.undo()
    assert len(store) == 0


def test_apply_proposals_never_overwrites_verified_boxes_or_frames():
    store = LabelStore(["person"])
    store.add_box(0, BOX_A, "person", track_id=1)  # verified
    store.add_box(1, BOX_A, "person", track_id=1, verified=False, origin=BoxOrigin.DETECTOR)
    store.add_box(2, BOX_B, "person", track_id=2, verified=False)
    store.set_frame_verified(3)
    proposals = [LabelBox(f, 1, "person", BOX_B, verified=True, origin=BoxOrigin.TRACKER) for f in range(4)]
    result = store.apply_proposals(proposals, remove=[(2, 2), (0, 1)])
    assert (result.added, result.replaced, result.removed, result.skipped_verified) == (1, 1, 1, 2)
    assert store.get(0, 1).xyxy == BOX_A and store.get(0, 1).verified  # kept
    assert store.get(1, 1).xyxy == BOX_B and not store.get(1, 1).verified  # proposal replaced
    assert store.get(2, 1).origin is BoxOrigin.TRACKER and not store.get(2, 1).verified
    assert store.get(2, 2) is None and store.boxes(3) == []
    assert store.undo() == "propose boxes" and store.get(1, 1).xyxy == BOX_A


def test_subscribers_hear_changed_frames_on_edits_undo_and_redo():
    store = LabelStore(["person"])
    heard: list[frozenset[int]] = []
    unsubscribe = store.subscribe(heard.append)
    store.add_box(4, BOX_A, "person")
    store.set_frame_verified(6)
    store.undo()
    store.redo()
    unsubscribe()
    store.add_box(5, BOX_A, "person")
    assert heard == [frozenset({4}), frozenset({6}), frozenset({6}), frozenset({6})]


def test_the_package_imports_no_qt():
    code = "import sys, app.labelling; print(sorted(m for m in sys.modules if m.startswith(('PyQt', 'PySide'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(__file__)))
    assert out.stdout.strip() == "[]"
