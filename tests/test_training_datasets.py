"""Data sources: the Kaggle article split, label parsing errors, COCO conversion, clips."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from shared_data import shared_data_config, shared_path

from training.clips import MotLabelFormat, VideoFrames, read_mot_labels, read_yolo_frame_labels
from training.datasets import (
    Annotations,
    YoloSource,
    kaggle_cars_sources,
    kaggle_cars_split,
    load_data_config,
    read_coco_json,
    read_kaggle_csv,
    read_yolo_labels,
)
from training.errors import DatasetError, LabelFormatError
from training.evaluate import coco_ground_truth, coco_map



# ------------------------------------------------------------------------ Kaggle car set

def test_kaggle_cars_split_reproduces_the_article_counts():
    root = shared_path("data", "detection", "kaggle_cars")
    split = kaggle_cars_split(root / "train_solution_bounding_boxes.csv", root / "images")
    assert split.csv_rows == 559
    assert len(split.file_names) == 455 and len(split.annotated) == 355
    assert len(split.val) == 131 and len(split.train) == 324
    assert sum(name in split.annotated for name in split.val) == 99          # 32 background
    assert sum(name in split.annotated for name in split.train) == 256
    assert set(split.train).isdisjoint(split.val)
    assert split.val[:3] == ["vid_4_940.jpg", "vid_4_13720.jpg", "vid_4_10520.jpg"]


def test_kaggle_cars_data_yaml_gives_the_split_with_boxes():
    data = load_data_config(shared_data_config("kaggle_cars.yaml"))
    assert data.names == ["car"]
    assert (len(data.train), len(data.val)) == (324, 131)
    boxes = sum(len(data.train.annotations(i).labels) for i in range(len(data.train)))
    boxes += sum(len(data.val.annotations(i).labels) for i in range(len(data.val)))
    assert boxes == 559
    image, annotations = data.val.load(0)
    assert image.shape == (380, 676, 3)
    assert data.description["split"]["val_annotated"] == 99


@pytest.mark.parametrize(
    ("content", "line", "message"),
    [
        ("image,xmin,ymin\r\n", 1, "header"),
        ("image,xmin,ymin,xmax,ymax\r\na.jpg,1,2,3\r\n", 2, "5 fields"),
        ("image,xmin,ymin,xmax,ymax\r\na.jpg,1,2,3,4\r\nb.jpg,1,x,3,4\r\n", 3, "non-numeric"),
        ("image,xmin,ymin,xmax,ymax\r\na.jpg,5,2,3,4\r\n", 2, "xmax <= xmin"),
    ],
)
def test_kaggle_csv_errors_name_file_and_line(tmp_path, content, line, message):
    path = tmp_path / "boxes.csv"
    path.write_text(content, newline="")
    with pytest.raises(LabelFormatError, match=message) as info:
        read_kaggle_csv(path)
    assert info.value.line == line and info.value.path == path
    assert f"boxes.csv:{line}" in str(info.value)


def test_kaggle_csv_keeps_row_order_and_crlf(tmp_path):
    path = tmp_path / "boxes.csv"
    path.write_text("image,xmin,ymin,xmax,ymax\r\nb.jpg,1,2,3,4\r\na.jpg,1,2,3,4\r\nb.jpg,5,6,7,8\r\n",
                    newline="")
    boxes, rows = read_kaggle_csv(path)
    assert list(boxes) == ["b.jpg", "a.jpg"] and rows == 3
    np.testing.assert_allclose(boxes["b.jpg"], [[1, 2, 3, 4], [5, 6, 7, 8]])


def test_kaggle_split_needs_enough_background(tmp_path):
    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.jpg"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "b.csv").write_text("image,xmin,ymin,xmax,ymax\na.jpg,1,1,4,4\n")
    with pytest.raises(DatasetError, match="un-annotated"):
        kaggle_cars_sources(tmp_path / "b.csv", tmp_path / "images")


# ------------------------------------------------------------------------------ YOLO txt

@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("0 0.5 0.5 0.2", "expected 5 values"),
        ("0 0.5 0.5 0.2 abc", "non-numeric"),
        ("3 0.5 0.5 0.2 0.2", "class 3"),
        ("0.5 0.5 0.5 0.2 0.2", "not an integer"),
        ("0 1.5 0.5 0.2 0.2", "not normalised"),
        ("0 0.5 0.5 0.0 0.2", "must be > 0"),
    ],
)
def test_yolo_label_errors_name_file_and_line(tmp_path, row, message):
    path = tmp_path / "x.txt"
    path.write_text(f"1 0.5 0.5 0.1 0.1\n\n{row}\n")
    with pytest.raises(LabelFormatError, match=message) as info:
        read_yolo_labels(path, num_classes=3)
    assert info.value.line == 3 and f"x.txt:3" in str(info.value)


def test_yolo_source_matches_the_original_coco_json():
    """Our YOLO reader turns coco128's labels into the boxes of the original COCO JSON:
    scoring the JSON's boxes as detections against our ground truth gives mAP 1."""
    root = shared_path("data", "detection", "coco128")
    data = load_data_config(shared_data_config("coco128.yaml"))
    source = data.val
    assert len(source) == 128
    assert sum(len(source.normalised_labels(i)) == 0 for i in range(len(source))) == 2
    ours = coco_ground_truth(source)
    original = json.loads((root / "annotations" / "instances_train2017_coco128.json").read_text())
    category_to_class = {c["id"]: i for i, c in enumerate(sorted(original["categories"], key=lambda c: c["id"]))}
    image_to_index = {img["id"]: [source.image_id(i) for i in range(len(source))].index(img["file_name"])
                      for img in original["images"]}
    results = [{"image_id": image_to_index[a["image_id"]] + 1,
                "category_id": category_to_class[a["category_id"]] + 1, "bbox": a["bbox"], "score": 1.0}
               for a in original["annotations"] if not a.get("iscrowd", 0)]
    assert len(results) == 929 == len(ours["annotations"])
    map50, map50_95, per_class = coco_map(ours, results, source.names)
    assert map50 == pytest.approx(1.0) and map50_95 == pytest.approx(1.0)
    assert all(c.ap50_95 is None or c.ap50_95 == pytest.approx(1.0) for c in per_class)


def test_coco_json_reader_agrees_with_yolo_labels():
    root = shared_path("data", "detection", "coco128")
    coco = read_coco_json(root / "annotations" / "instances_train2017_coco128.json", root / "images" / "train2017")
    yolo = load_data_config(shared_data_config("coco128.yaml")).train
    by_name = {yolo.image_id(i): i for i in range(len(yolo))}
    for index in (0, 5, 17):
        a = coco.annotations(index).labels
        b = yolo.annotations(by_name[coco.image_id(index)]).labels
        order_a, order_b = np.lexsort(a.T[::-1]), np.lexsort(b.T[::-1])
        np.testing.assert_allclose(a[order_a], b[order_b], atol=0.05)


def test_missing_label_file_is_background_and_wrong_layout_is_refused(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.png"), np.zeros((10, 20, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "images" / "b.png"), np.zeros((10, 20, 3), np.uint8))
    (tmp_path / "labels" / "a.txt").write_text("0 0.5 0.5 0.5 0.2\n")
    source = YoloSource([tmp_path / "images" / "a.png", tmp_path / "images" / "b.png"], ["thing"])
    np.testing.assert_allclose(source.annotations(0).labels, [[0, 5, 4, 15, 6]])
    assert len(source.annotations(1).labels) == 0
    (tmp_path / "elsewhere").mkdir()
    cv2.imwrite(str(tmp_path / "elsewhere" / "c.png"), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(DatasetError, match="'images' directory"):
        YoloSource([tmp_path / "elsewhere" / "c.png"], ["thing"])


def test_data_yaml_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("format: pascal\nnames: [a]\n")
    with pytest.raises(DatasetError, match="unknown format 'pascal'"):
        load_data_config(bad)
    missing = tmp_path / "missing.yaml"
    missing.write_text("train: nowhere\nval: nowhere\nnames: [a]\n")
    with pytest.raises(DatasetError, match="does not exist"):
        load_data_config(missing)


# ------------------------------------------------------------------------------- clips

def test_pets09_clip_config_split_and_frame_mapping():
    data = load_data_config(shared_data_config("pets09_person.yaml"))
    assert (len(data.train), len(data.val)) == (400, 395)
    assert data.train.label_frames[0] == 1 and data.train.label_frames[-1] == 400
    assert data.val.label_frames[0] == 401 and data.val.label_frames[-1] == 795
    # MOT frame N is video frame N - 1: label frame 1 shows the first decoded frame
    capture = cv2.VideoCapture(str(shared_path("data", "videos", "vtest_PETS09-S2L1_480x360.avi")))
    ok, first = capture.read()
    ok2, second = capture.read()
    capture.release()
    assert ok and ok2
    np.testing.assert_array_equal(data.train.load_image(0), first)
    np.testing.assert_array_equal(data.train.load_image(1), second)
    # MOT boxes are in 768x576: scaled by 0.625 into the 480x360 video
    gt_row = shared_path("data", "mot", "MOT15", "train", "PETS09-S2L1", "gt", "gt.txt").read_text().splitlines()[0]
    frame, _, left, top, width, height = (float(v) for v in gt_row.split(",")[:6])
    assert frame == 1
    labels = data.train.annotations(0).labels
    assert any(np.allclose(row[1:], [left * 0.625, top * 0.625, (left + width) * 0.625,
                                     (top + height) * 0.625], atol=1e-3) for row in labels)


def _write_video(path: Path, frames: int) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    for i in range(frames):
        writer.write(np.full((24, 32, 3), i * 10, np.uint8))
    writer.release()


def test_video_frames_decode_on_demand_and_cache(tmp_path):
    video_path = tmp_path / "clip.avi"
    _write_video(video_path, 12)
    video = VideoFrames(video_path, max_memory_frames=100)
    assert len(video) == 12 and video.shape_hw == (24, 32)
    assert abs(int(video.frame(5).mean()) - 50) <= 2
    assert video.decoded_frames == 6           # frames 0..5, each decoded once
    video.frame(2)                              # behind the decoder, but cached on the way
    assert video.decoded_frames == 6
    with pytest.raises(DatasetError, match="outside"):
        video.frame(12)
    disk = VideoFrames(video_path, cache_dir=tmp_path / "cache", max_memory_frames=2)
    disk.frame(3)
    assert len(list((tmp_path / "cache").glob("*.png"))) == 4
    again = VideoFrames(video_path, cache_dir=tmp_path / "cache", max_memory_frames=2)
    np.testing.assert_array_equal(again.frame(3), disk.frame(3))
    assert again.decoded_frames == 0           # read from the PNG cache
    assert not again.frame(3).flags.writeable


def test_mot_reader_flags_classes_and_errors(tmp_path):
    gt = tmp_path / "gt.txt"
    gt.write_text("1,1,10,20,30,40,1,1,1\n1,2,0,0,10,10,0,1,1\n2,3,5,5,8,8,1,2,0.5\n2,4,5,5,8,8,1,7,1\n")
    plain = read_mot_labels(gt, MotLabelFormat(scale=0.5))
    np.testing.assert_allclose(plain[1].labels, [[0, 5, 10, 20, 30]])
    np.testing.assert_allclose(plain[1].ignore_xyxy, [[0, 0, 5, 5]])
    assert len(plain[2].labels) == 2
    by_class = read_mot_labels(gt, MotLabelFormat(class_column=7, class_map={1: 0, 2: 1}), num_classes=2)
    assert by_class[2].labels[:, 0].tolist() == [1]      # MOT class 7 dropped, class 2 -> 1
    bad = tmp_path / "bad.txt"
    bad.write_text("1,1,10,20,30,40,1\n1.5,1,10,20,30,40,1\n")
    with pytest.raises(LabelFormatError, match="bad.txt:2: frame 1.5"):
        read_mot_labels(bad)
    bad.write_text("1,1,10,20,0,40,1\n")
    with pytest.raises(LabelFormatError, match="bad.txt:1: box size"):
        read_mot_labels(bad)


def test_yolo_frame_labels_from_cvat_export(tmp_path):
    (tmp_path / "frame_000007.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    (tmp_path / "frame_000009.txt").write_text("")
    labels = read_yolo_frame_labels(tmp_path, 1, width=40, height=20)
    assert sorted(labels) == [7, 9]
    np.testing.assert_allclose(labels[7].labels, [[0, 10, 5, 30, 15]])
    assert isinstance(labels[9], Annotations) and len(labels[9].labels) == 0


def test_clip_splits_must_not_overlap(tmp_path):
    video = tmp_path / "clip.avi"
    _write_video(video, 10)
    (tmp_path / "gt.txt").write_text("1,1,1,1,5,5,1\n")
    config = tmp_path / "clip.yaml"
    config.write_text("format: clip\nvideo: clip.avi\nlabels: gt.txt\ntrain_frames: [1, 6]\n"
                      "val_frames: [6, 10]\nnames: [person]\n")
    with pytest.raises(DatasetError, match="overlap"):
        load_data_config(config)
    config.write_text("format: clip\nvideo: clip.avi\nlabels: gt.txt\ntrain_frames: [1, 5]\n"
                      "val_frames: [6, 11]\nnames: [person]\n")
    with pytest.raises(DatasetError, match="outside"):
        load_data_config(config)
    config.write_text("format: clip\nvideo: clip.avi\nlabels: gt.txt\ntrain_frames: [1, 5]\n"
                      "val_frames: [6, 10]\nnames: [person]\n")
    data = load_data_config(config)
    assert (len(data.train), len(data.val)) == (5, 5)
    assert len(data.train.annotations(0).labels) == 1 and len(data.val.annotations(0).labels) == 0
