"""Augmentation keeps boxes consistent with the pixels they describe (property-based).

Each test image holds rectangles of distinct pure colours on a grey background; the labels are
those rectangles. After a transform, the pixels of each colour must lie inside the label the
transform produced for it (and, for transforms that keep axis alignment, fill it).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from training import augment
from training.config import Hyperparameters
from training.datasets import Annotations, DetectionSource
from training.loader import TrainingDataset, collate, labels_to_targets

COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255), (0, 255, 255)]
TOLERANCE_PX = 2.5
MIN_SIDE_FOR_PURE_PIXELS = 4.0


@st.composite
def scenes(draw, max_boxes: int = 4):
    """An image with up to ``max_boxes`` non-overlapping coloured rectangles and their labels."""
    h = draw(st.integers(48, 160))
    w = draw(st.integers(48, 160))
    image = np.full((h, w, 3), 114, np.uint8)
    labels = []
    n = draw(st.integers(1, max_boxes))
    # non-overlapping: one rectangle per vertical band
    band = w // n
    for k in range(n):
        bw = draw(st.integers(6, max(6, band - 2)))
        bh = draw(st.integers(6, h - 4))
        x1 = k * band + draw(st.integers(0, max(0, band - bw - 1)))
        y1 = draw(st.integers(0, h - bh))
        image[y1:y1 + bh, x1:x1 + bw] = COLOURS[k]
        labels.append([k, x1, y1, x1 + bw, y1 + bh])
    return image, np.asarray(labels, np.float32)


def _colour_extent(image: np.ndarray, colour) -> tuple[float, float, float, float] | None:
    """Bounding box (x1, y1, x2, y2, pixel edges) of pixels close to ``colour``."""
    mask = (np.abs(image.astype(int) - np.asarray(colour)).max(-1) < 60)
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return None
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


def _assert_pixels_inside_labels(image, labels, tight: bool):
    h, w = image.shape[:2]
    assert ((labels[:, 1] >= 0) & (labels[:, 3] <= w) & (labels[:, 2] >= 0) & (labels[:, 4] <= h)).all()
    assert ((labels[:, 3] > labels[:, 1]) & (labels[:, 4] > labels[:, 2])).all()
    for cls, x1, y1, x2, y2 in labels:
        extent = _colour_extent(image, COLOURS[int(cls)])
        if extent is None:  # interpolation blends a box thinner than a few pixels into grey
            assert min(x2 - x1, y2 - y1) < MIN_SIDE_FOR_PURE_PIXELS, f"label {int(cls)} has no pixels"
            continue
        ex1, ey1, ex2, ey2 = extent
        assert ex1 >= x1 - TOLERANCE_PX and ey1 >= y1 - TOLERANCE_PX
        assert ex2 <= x2 + TOLERANCE_PX and ey2 <= y2 + TOLERANCE_PX
        if tight:
            assert ex1 <= x1 + TOLERANCE_PX and ey1 <= y1 + TOLERANCE_PX
            assert ex2 >= x2 - TOLERANCE_PX and ey2 >= y2 - TOLERANCE_PX


FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(scenes(), st.integers(0, 2**32 - 1), st.floats(0, 0.3), st.floats(0, 0.5))
def test_affine_without_rotation_moves_boxes_with_pixels(scene, seed, translate, scale):
    image, labels = scene
    out, moved = augment.random_affine(image, labels, np.random.default_rng(seed), translate=translate,
                                       scale=scale)
    assert out.shape == image.shape
    # kept boxes may be clipped by the border: still tight around what is visible
    _assert_pixels_inside_labels(out, moved, tight=True)


@FAST
@given(scenes(), st.integers(0, 2**32 - 1), st.floats(0, 30), st.floats(0, 10))
def test_affine_with_rotation_and_shear_keeps_pixels_inside_boxes(scene, seed, degrees, shear):
    image, labels = scene
    out, moved = augment.random_affine(image, labels, np.random.default_rng(seed), degrees=degrees,
                                       shear=shear, translate=0.1, scale=0.3)
    _assert_pixels_inside_labels(out, moved, tight=False)


@FAST
@given(scenes(), st.integers(0, 2**32 - 1))
def test_affine_drops_only_degenerate_boxes(scene, seed):
    image, labels = scene
    _, moved = augment.random_affine(image, labels, np.random.default_rng(seed), translate=0.4, scale=0.9)
    w, h = moved[:, 3] - moved[:, 1], moved[:, 4] - moved[:, 2]
    assert (w > augment.MIN_BOX_SIDE_PX).all() and (h > augment.MIN_BOX_SIDE_PX).all()
    assert (np.maximum(w / h, h / w) < augment.MAX_ASPECT_RATIO).all()


@FAST
@given(scenes())
def test_horizontal_flip_is_exact(scene):
    image, labels = scene
    out, flipped = augment.horizontal_flip(image, labels)
    np.testing.assert_array_equal(out, image[:, ::-1])
    _assert_pixels_inside_labels(out, flipped, tight=True)
    np.testing.assert_allclose(augment.horizontal_flip(out, flipped)[1], labels)


@FAST
@given(scenes(), st.sampled_from([64, 96, 128]))
def test_letterbox_moves_labels_with_the_image(scene, size):
    image, labels = scene
    out, moved = augment.letterbox_with_labels(image, labels, size)
    assert out.shape == (size, size, 3)
    _assert_pixels_inside_labels(out, moved, tight=True)


@FAST
@given(st.lists(scenes(max_boxes=2), min_size=4, max_size=4), st.integers(0, 2**32 - 1))
def test_mosaic4_labels_follow_their_tiles(scene_list, seed):
    # distinct colours across tiles: tile k uses colours 2k, 2k + 1 -> classes remapped
    items = []
    for k, (image, labels) in enumerate(scene_list[:3]):
        recoloured = np.full_like(image, 114)
        new_labels = labels.copy()
        for j, (cls, x1, y1, x2, y2) in enumerate(labels):
            new_cls = 2 * k + j
            recoloured[int(y1):int(y2), int(x1):int(x2)] = COLOURS[new_cls]
            new_labels[j, 0] = new_cls
        items.append((recoloured, new_labels))
    items.append((np.full((40, 40, 3), 114, np.uint8), np.zeros((0, 5), np.float32)))
    size = 96
    resized = [(augment.resize_long_side(im, size, augment=True)[0],
                augment.scale_labels(lab, *(2 * [augment.resize_long_side(im, size, augment=True)[1]])))
               for im, lab in items]
    canvas, labels = augment.mosaic4(resized, size, np.random.default_rng(seed))
    assert canvas.shape == (2 * size, 2 * size, 3)
    # resizing blurs colour edges: allow a pixel or two beyond the label
    _assert_pixels_inside_labels(canvas, labels, tight=False)
    out, final = augment.random_affine(canvas, labels, np.random.default_rng(seed), border=-size // 2)
    assert out.shape == (size, size, 3)
    _assert_pixels_inside_labels(out, final, tight=False)


def test_mosaic9_shape_and_labels_inside():
    rng = np.random.default_rng(0)
    items = []
    for k in range(9):
        image = np.full((32, 48, 3), 114, np.uint8)
        colour = COLOURS[k % len(COLOURS)]
        image[8:24, 10:30] = colour
        items.append((image, np.asarray([[k % len(COLOURS), 10, 8, 30, 24]], np.float32)))
    canvas, labels = augment.mosaic9(items, 48, rng)
    assert canvas.shape == (96, 96, 3)
    assert len(labels) >= 1
    assert ((labels[:, 1:] >= 0) & (labels[:, 1:] <= 96)).all()


def test_mixup_blends_images_and_keeps_both_label_sets():
    a = (np.full((8, 8, 3), 200, np.uint8), np.asarray([[0, 1, 1, 4, 4]], np.float32))
    b = (np.full((8, 8, 3), 100, np.uint8), np.asarray([[1, 2, 2, 6, 6]], np.float32))
    image, labels = augment.mixup(a, b, np.random.default_rng(0))
    assert 100 <= image.min() and image.max() <= 200
    np.testing.assert_array_equal(labels, np.concatenate([a[1], b[1]]))


def test_hsv_with_zero_gains_changes_little_and_keeps_shape():
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    out = augment.augment_hsv(image, np.random.default_rng(1), 0.0, 0.0, 0.0)
    assert out.shape == image.shape and out.dtype == np.uint8
    # an HSV round trip in 8 bits is not lossless; it is close
    assert np.abs(out.astype(int) - image.astype(int)).mean() < 3


class _SceneSource(DetectionSource):
    def __init__(self, scenes_list):
        self.scenes = scenes_list
        self.names = [f"c{i}" for i in range(len(COLOURS))]

    def __len__(self):
        return len(self.scenes)

    def image_id(self, index):
        return f"scene{index}"

    def load_image(self, index):
        return self.scenes[index][0]

    def image_shape(self, index):
        return self.scenes[index][0].shape[:2]

    def annotations(self, index):
        return Annotations(self.scenes[index][1])


def _scene(seed: int):
    rng = np.random.default_rng(seed)
    image = np.full((100, 140, 3), 114, np.uint8)
    labels = []
    for k in range(3):
        x1, y1 = int(rng.integers(0, 100)), int(rng.integers(0, 60))
        image[y1:y1 + 30, x1:x1 + 30] = COLOURS[k]
        labels.append([k, x1, y1, x1 + 30, y1 + 30])
    return image, np.asarray(labels, np.float32)


def test_training_items_are_reproducible_per_seed_epoch_index():
    source = _SceneSource([_scene(i) for i in range(6)])
    hyp = Hyperparameters(degrees=5.0, mosaic9=0.5)
    first = TrainingDataset(source, 64, hyp, seed=3)
    second = TrainingDataset(source, 64, hyp, seed=3)
    for epoch in (0, 1):
        first.set_epoch(epoch)
        second.set_epoch(epoch)
        for index in (4, 0, 2):  # any order: items do not depend on what was loaded before
            a, b = first[index], second[index]
            assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    first.set_epoch(0)
    second.set_epoch(1)
    assert not np.array_equal(first[1][0], second[1][0])


@pytest.mark.parametrize("mosaic", [True, False])
def test_training_items_have_valid_targets(mosaic):
    source = _SceneSource([_scene(i) for i in range(5)])
    dataset = TrainingDataset(source, 64, Hyperparameters(), seed=0)
    dataset.set_epoch(0, mosaic=mosaic)
    images, targets, indices, unlabelled = collate([dataset[i] for i in range(len(dataset))])
    assert unlabelled.shape == (5, source.num_classes) and not unlabelled.any()
    assert images.shape == (5, 3, 64, 64) and images.dtype.is_floating_point is False
    assert targets.shape[1] == 6 and indices.tolist() == [0, 1, 2, 3, 4]
    cx, cy, w, h = targets[:, 2], targets[:, 3], targets[:, 4], targets[:, 5]
    assert ((cx - w / 2 >= -1e-3) & (cx + w / 2 <= 64 + 1e-3) & (w > 2) & (h > 2)).all()
    assert set(targets[:, 0].long().tolist()) <= set(range(5))


def test_labels_to_targets():
    np.testing.assert_allclose(labels_to_targets(np.asarray([[2, 10, 20, 30, 60]], np.float32)),
                               [[2, 20, 40, 20, 40]])
