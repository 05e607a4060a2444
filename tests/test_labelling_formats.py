"""Label files of the labelling mode (issue 14): the MOT save read back by the training module,
the YOLO export, CVAT and Label Studio imports, and errors that name the file and line."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from shared_data import shared_path

from app.labelling import (
    BoxOrigin,
    LabelFileError,
    LabelStore,
    export_yolo,
    load_store,
    read_cvat_mot,
    read_cvat_yolo,
    read_label_studio_video,
    read_mot,
    write_clip_data_yaml,
)
from training.clips import read_yolo_frame_labels
from training.datasets import load_data_config

PETS_VIDEO = ("data", "videos", "vtest_PETS09-S2L1_480x360.avi")
FRAME_WH = (480, 360)

# A CVAT "MOT 1.1" export (docs.cvat.ai, MOT format page): gt/gt.txt + gt/labels.txt.
CVAT_GT = """\
1,1,136.5,56.25,10.5,24.75,1,1,0.86014
1,2,300,100,40,30,1,2,1
2,1,138,57,10.5,24.75,1,1,0.9
2,3,20,20,15,15,0,1,0.25
3,1,140,58,10.5,24.75,1,1,1
"""
CVAT_LABELS = "person\ncar\n"

# Label Studio's JSON export of a video object-tracking task (VideoRectangle + Labels).
LABEL_STUDIO_EXPORT = [{
    "id": 7,
    "annotations": [{
        "id": 12,
        "completed_by": 1,
        "result": [
            {"value": {"framesCount": 795, "duration": 79.5,
                       "sequence": [
                           {"frame": 1, "enabled": True, "rotation": 0, "x": 10, "y": 20, "width": 5,
                            "height": 25, "time": 0.1},
                           {"frame": 5, "enabled": False, "rotation": 0, "x": 18, "y": 20, "width": 7,
                            "height": 25, "time": 0.5},
                           {"frame": 8, "enabled": True, "rotation": 0, "x": 30, "y": 30, "width": 5,
                            "height": 25, "time": 0.8},
                           {"frame": 10, "enabled": True, "rotation": 0, "x": 34, "y": 30, "width": 5,
                            "height": 25, "time": 1.0}],
                       "labels": ["person"]},
             "id": "k8Zr0aQx1Z", "from_name": "box", "to_name": "video", "type": "videorectangle",
             "origin": "manual"},
            {"value": {"framesCount": 795, "duration": 79.5,
                       "sequence": [{"frame": 3, "enabled": True, "rotation": 0, "x": 50, "y": 50,
                                     "width": 10, "height": 10, "time": 0.3}],
                       "labels": ["bicycle"]},
             "id": "Xq9pL2mN0a", "from_name": "box", "to_name": "video", "type": "videorectangle",
             "origin": "manual"},
        ],
        "was_cancelled": False, "ground_truth": False, "lead_time": 40.2,
    }],
    "data": {"video": "/data/upload/1/vtest.avi"},
    "project": 1,
}]


def _example_store(path=None) -> LabelStore:
    store = LabelStore(["person", "car"], path=path)
    store.add_box(0, (100.0, 50.0, 130.5, 120.25), "person", track_id=3)
    store.add_box(0, (300.0, 100.0, 340.0, 130.0), "car", track_id=5, visibility=0.5)
    store.add_box(1, (102.0, 51.0, 132.5, 121.25), "person", track_id=3, verified=False, origin=BoxOrigin.TRACKER)
    store.add_box(1, (10.0, 10.0, 20.0, 20.0), "person", track_id=9)
    store.set_class(1, 9, "bus")  # a new class name, appended
    store.set_frame_verified(4)  # a verified frame with no object: background
    return store


def test_mot_save_is_the_cvat_mot11_layout_and_loads_back_with_flags(tmp_path):
    gt = tmp_path / "gt" / "gt.txt"
    store = _example_store(gt)
    store.save()
    assert gt.read_text().splitlines() == [
        "1,3,100,50,30.5,70.25,1,1,1",
        "1,5,300,100,40,30,1,2,0.5",
        "2,3,102,51,30.5,70.25,1,1,1",
        "2,9,10,10,10,10,1,3,1",
    ]
    assert (tmp_path / "gt" / "labels.txt").read_text() == "person\ncar\nbus\n"
    loaded = load_store(gt)
    assert loaded.classes == store.classes and not loaded.is_dirty and loaded.path == gt
    assert loaded.all_boxes() == store.all_boxes()  # flags, origins, visibility included
    assert loaded.verified_frames == {4}
    assert not loaded.can_undo


def test_mot_save_is_read_by_the_training_clip_source(tmp_path):
    gt = tmp_path / "gt.txt"
    store = _example_store(gt)
    store.add_box(2, (40.0, 40.0, 60.0, 90.0), "person", track_id=3)
    store.save()
    video = shared_path(*PETS_VIDEO)
    yaml_path = write_clip_data_yaml(tmp_path / "clip.yaml", video=video, gt_path=gt, class_names=store.classes,
                                     train_frames=(1, 2), val_frames=(3, 5))
    data = load_data_config(yaml_path)
    assert data.names == ["person", "car", "bus"]
    assert len(data.train) == 2 and len(data.val) == 3
    first = data.train.annotations(0)  # MOT frame 1 = video frame 0
    np.testing.assert_allclose(first.boxes_xyxy, [[100, 50, 130.5, 120.25], [300, 100, 340, 130]], atol=1e-3)
    assert first.class_ids.tolist() == [0, 1]
    assert data.train.annotations(1).class_ids.tolist() == [0, 2]
    assert data.val.annotations(0).class_ids.tolist() == [0]
    assert data.train.load_image(0).shape == (360, 480, 3)


def test_ignored_rows_round_trip_as_training_ignore_regions(tmp_path):
    gt = tmp_path / "gt.txt"
    store = LabelStore(["person"], path=gt)
    store.add_box(0, (1, 2, 11, 22), "person")
    store.apply_proposals([])  # no-op
    store.replace_all([*store.all_boxes(), store.get(0, 1).replace(track_id=2, ignored=True)], store.classes)
    store.save()
    assert gt.read_text().splitlines()[1] == "1,2,1,2,10,20,0,1,1"
    yaml_path = write_clip_data_yaml(tmp_path / "c.yaml", video=shared_path(*PETS_VIDEO), gt_path=gt,
                                     class_names=store.classes, train_frames=(1, 1), val_frames=(2, 2))
    annotations = load_data_config(yaml_path).train.annotations(0)
    assert len(annotations.labels) == 1 and annotations.ignore_xyxy.tolist() == [[1, 2, 11, 22]]
    assert load_store(gt).get(0, 2).ignored


def test_yolo_export_is_read_by_the_training_module(tmp_path):
    store = _example_store()
    store.add_box(2, (-10.0, 300.0, 40.0, 380.0), "person", track_id=3)  # crosses the frame edge: clipped
    data_dir = export_yolo(store, tmp_path / "yolo", FRAME_WH)
    assert sorted(p.name for p in data_dir.iterdir()) == [
        "frame_000000.txt", "frame_000001.txt", "frame_000002.txt", "frame_000004.txt"]
    assert (data_dir / "frame_000004.txt").read_text() == ""
    assert (tmp_path / "yolo" / "obj.names").read_text() == "person\ncar\nbus\n"
    assert (data_dir / "frame_000000.txt").read_text().splitlines()[0] == \
        f"0 {115.25 / 480:.6f} {85.125 / 360:.6f} {30.5 / 480:.6f} {70.25 / 360:.6f}"
    labels = read_yolo_frame_labels(data_dir, 3, *FRAME_WH)
    np.testing.assert_allclose(labels[0].boxes_xyxy, [[100, 50, 130.5, 120.25], [300, 100, 340, 130]], atol=1e-3)
    np.testing.assert_allclose(labels[2].boxes_xyxy, [[0, 300, 40, 360]], atol=1e-3)
    assert labels[1].class_ids.tolist() == [0, 2] and len(labels[4].labels) == 0
    again = read_cvat_yolo(tmp_path / "yolo", FRAME_WH)  # and our own import reads it back
    assert again.class_names == ["person", "car", "bus"] and len(again.boxes) == 5


def test_cvat_mot_export_zip_imports(tmp_path):
    archive = tmp_path / "task_1-mot.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("gt/gt.txt", CVAT_GT)
        z.writestr("gt/labels.txt", CVAT_LABELS)
    labels = read_cvat_mot(archive)
    assert labels.class_names == ["person", "car"]
    by_key = {b.key: b for b in labels.boxes}
    assert sorted(by_key) == [(0, 1), (0, 2), (1, 1), (1, 3), (2, 1)]
    assert by_key[(0, 1)].xyxy == pytest.approx((136.5, 56.25, 147.0, 81.0))
    assert by_key[(0, 1)].visibility == pytest.approx(0.86014) and by_key[(0, 2)].class_name == "car"
    assert by_key[(1, 3)].ignored and all(b.verified for b in labels.boxes)
    store = labels.to_store()
    assert store.track_ids() == [1, 2, 3] and not store.is_dirty


def test_mot15_rows_without_class_read_as_the_first_class(tmp_path):
    gt = tmp_path / "gt.txt"
    gt.write_text("1,4,10,20,30,40,1,-1,-1,-1\n2,4,11,20,30,40,1,-1,-1,-1\n")
    labels = read_mot(gt, class_names=["person"])
    assert [b.class_name for b in labels.boxes] == ["person", "person"]
    assert [b.visibility for b in labels.boxes] == [1.0, 1.0]


def test_cvat_yolo11_export_imports_and_links_tracks(tmp_path):
    root = tmp_path / "yolo11"
    (root / "obj_train_data").mkdir(parents=True)
    (root / "obj.names").write_text("person\ncar\n")
    (root / "obj.data").write_text("classes = 2\nnames = obj.names\ntrain = train.txt\n")
    (root / "train.txt").write_text("obj_train_data/frame_000010.jpg\nobj_train_data/frame_000011.jpg\n")
    (root / "obj_train_data" / "frame_000010.txt").write_text("0 0.25 0.5 0.1 0.2\n1 0.8 0.2 0.2 0.1\n")
    (root / "obj_train_data" / "frame_000011.txt").write_text("1 0.81 0.2 0.2 0.1\n0 0.26 0.5 0.1 0.2\n")
    (root / "obj_train_data" / "frame_000013.txt").write_text("0 0.27 0.5 0.1 0.2\n")
    labels = read_cvat_yolo(root, FRAME_WH)
    boxes = {(b.frame_index, b.class_name): b for b in labels.boxes}
    assert boxes[(10, "person")].xyxy == pytest.approx((96.0, 144.0, 144.0, 216.0))
    assert boxes[(10, "person")].track_id == boxes[(11, "person")].track_id == 1
    assert boxes[(10, "car")].track_id == boxes[(11, "car")].track_id == 2
    assert boxes[(13, "person")].track_id == 3  # a gap of one frame starts a new track
    archive = tmp_path / "yolo11.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for p in root.rglob("*"):
            if p.is_file():
                z.write(p, p.relative_to(root).as_posix())
    assert read_cvat_yolo(archive, FRAME_WH).boxes == labels.boxes
    unlinked = read_cvat_yolo(root, FRAME_WH, link_iou=None)
    assert sorted(b.track_id for b in unlinked.boxes) == [1, 2, 3, 4, 5]


def test_label_studio_video_json_imports_keyframes_and_interpolation(tmp_path):
    path = tmp_path / "project-1-at-2024.json"
    path.write_text(json.dumps(LABEL_STUDIO_EXPORT))
    labels = read_label_studio_video(path, FRAME_WH)
    assert labels.class_names == ["person", "bicycle"]
    track = {b.frame_index: b for b in labels.boxes if b.track_id == 1}
    # keyframes at LS frames 1, 5, 8, 10 -> indices 0, 4, 7, 9; disabled at 5: no boxes 5..6
    assert sorted(track) == [0, 1, 2, 3, 4, 7, 8, 9]
    assert [track[f].verified for f in sorted(track)] == [True, False, False, False, True, True, False, True]
    assert track[0].xyxy == pytest.approx((48.0, 72.0, 72.0, 162.0))
    # index 2 is halfway between keys 0 and 4: centre x (60 + 103.2) / 2 = 81.6 px, width (24 + 33.6) / 2
    assert track[2].xyxy == pytest.approx((81.6 - 14.4, 72.0, 81.6 + 14.4, 162.0))
    assert track[2].origin is BoxOrigin.INTERPOLATED
    assert [b.frame_index for b in labels.boxes if b.track_id == 2] == [2]
    verified = read_label_studio_video(path, FRAME_WH, interpolated_as_proposals=False)
    assert all(b.verified for b in verified.boxes)


# ----------------------------------------------------------------------------- malformed files

MOT_BAD = [
    ("1,1,10,20,30\n", 1, "at least 6 values"),
    ("1,1,10,20,30,40,1,1,1\n2,1,1,2,x,4,1,1,1\n", 2, "non-numeric"),
    ("1,1,10,20,30,40,1,1,1\n\n1.5,1,1,2,3,4,1,1,1\n", 3, "frame 1.5"),
    ("0,1,10,20,30,40,1,1,1\n", 1, "1-based"),
    ("1,1,10,20,0,40,1,1,1\n", 1, "box size"),
    ("1,-2,10,20,30,40,1,1,1\n", 1, "track id -2"),
    ("1,1,10,20,30,40,1,3,1\n", 1, "class 3 outside 1..2"),
    ("1,1,10,20,30,40,1,1,1.2\n", 1, "visibility"),
    ("1,1,10,20,30,40,1,1,1\n1,1,11,20,30,40,1,1,1\n", 2, "second box on frame 1 \\(first on line 1\\)"),
]


@pytest.mark.parametrize("text, line, message", MOT_BAD)
def test_malformed_mot_names_file_and_line(tmp_path, text, line, message):
    gt = tmp_path / "gt.txt"
    gt.write_text(text)
    (tmp_path / "labels.txt").write_text(CVAT_LABELS)
    with pytest.raises(LabelFileError, match=message) as info:
        read_mot(gt)
    assert info.value.path == gt and info.value.line == line
    assert str(info.value).startswith(f"{gt}:{line}: ")


def test_malformed_mot_inside_a_zip_names_the_member(tmp_path):
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("gt/gt.txt", "1,1,10,20,30,40,1,1,1\n1,2,nan?,20,30,40,1,1,1\n")
        z.writestr("gt/labels.txt", "person\n")
    with pytest.raises(LabelFileError, match=r"export\.zip!gt/gt\.txt:2: non-numeric"):
        read_cvat_mot(archive)


@pytest.mark.parametrize("name, text, line, message", [
    ("frame_000001.txt", "0 0.5 0.5 0.1\n", 1, "expected 5 values"),
    ("frame_000001.txt", "0 0.5 0.5 0.1 0.1\n2 0.5 0.5 0.1 0.1\n", 2, "class 2"),
    ("frame_000001.txt", "0 0.5 1.7 0.1 0.1\n", 1, "not normalised"),
    ("frame_000001.txt", "0 0.5 0.5 0 0.1\n", 1, "width/height"),
    ("frame.txt", "0 0.5 0.5 0.1 0.1\n", None, "no frame number"),
])
def test_malformed_yolo_names_file_and_line(tmp_path, name, text, line, message):
    (tmp_path / "obj_train_data").mkdir()
    (tmp_path / "obj.names").write_text("person\ncar\n")
    (tmp_path / "obj_train_data" / name).write_text(text)
    with pytest.raises(LabelFileError, match=message) as info:
        read_cvat_yolo(tmp_path, FRAME_WH)
    assert info.value.path == tmp_path / "obj_train_data" / name and info.value.line == line


def test_yolo_export_without_class_list_is_refused(tmp_path):
    (tmp_path / "obj_train_data").mkdir()
    with pytest.raises(LabelFileError, match="no obj.names"):
        read_cvat_yolo(tmp_path, FRAME_WH)


def _ls_with(change) -> list:
    data = json.loads(json.dumps(LABEL_STUDIO_EXPORT))
    change(data)
    return data


SEQ = "$[0].annotations[0].result[0].value.sequence"


@pytest.mark.parametrize("change, json_path, message", [
    (lambda d: d[0]["annotations"][0]["result"][0]["value"]["sequence"][1].pop("x"), f"{SEQ}[1].x", "must be a number"),
    (lambda d: d[0]["annotations"][0]["result"][0]["value"]["sequence"][2].update(frame=0), f"{SEQ}[2].frame", ">= 1"),
    (lambda d: d[0]["annotations"][0]["result"][0]["value"]["sequence"][0].update(rotation=30), f"{SEQ}[0].rotation",
     "rotated"),
    (lambda d: d[0]["annotations"][0]["result"][0]["value"]["sequence"][3].update(frame=8), f"{SEQ}[3].frame",
     "second keyframe on frame 8"),
    (lambda d: d[0]["annotations"][0]["result"][0]["value"]["sequence"][0].update(enabled="yes"), f"{SEQ}[0].enabled",
     "true or false"),
    (lambda d: d[0]["annotations"][0]["result"][1]["value"].pop("sequence"),
     "$[0].annotations[0].result[1].value.sequence", "keyframes"),
    (lambda d: d[0].pop("annotations"), "$[0].annotations", "missing"),
    (lambda d: d.append(d[0]), "$", "2 tasks"),
])
def test_malformed_label_studio_names_the_json_path(tmp_path, change, json_path, message):
    path = tmp_path / "export.json"
    path.write_text(json.dumps(_ls_with(change)))
    with pytest.raises(LabelFileError, match=message) as info:
        read_label_studio_video(path, FRAME_WH)
    assert info.value.path == path and info.value.json_path == json_path
    assert json_path in str(info.value)


def test_label_studio_invalid_json_names_the_line(tmp_path):
    path = tmp_path / "export.json"
    path.write_text('[\n  {"annotations": [\n    {"result": [}\n  ]}\n]\n')
    with pytest.raises(LabelFileError, match="invalid JSON") as info:
        read_label_studio_video(path, FRAME_WH)
    assert info.value.line == 3 and str(info.value).startswith(f"{path}:3: ")


def test_a_corrupt_sidecar_names_its_json_path(tmp_path):
    gt = tmp_path / "gt.txt"
    _example_store(gt).save()
    side = tmp_path / "gt.labelling.json"
    data = json.loads(side.read_text())
    data["proposals"][0][2] = "psychic"
    side.write_text(json.dumps(data))
    with pytest.raises(LabelFileError, match="unknown origin 'psychic'") as info:
        load_store(gt)
    assert info.value.json_path == "$.proposals[0][2]"
