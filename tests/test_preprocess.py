"""Letterbox and model-input conversion: official-code parity on the fixtures, geometry, batching."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from detector.preprocess import (
    LETTERBOX_COLOR_BGR,
    InvalidImageError,
    letterbox,
    letterbox_batch,
    to_input_tensor,
    uint8_to_unit_float,
    validate_bgr_image,
)
from shared_data import shared_path

FIXTURES = ("fixtures", "yolov7")
INPUTS = ("coco139", "pets100")
ARCHS = ("yolov7-tiny", "yolov7", "yolov7x", "yolov7-w6", "yolov7-e6", "yolov7-d6", "yolov7-e6e")


def load_input(name: str) -> dict[str, np.ndarray]:
    with np.load(shared_path(*FIXTURES, "inputs", f"{name}.npz")) as data:
        return dict(data)


def load_golden(arch: str, name: str) -> dict[str, np.ndarray]:
    with np.load(shared_path(*FIXTURES, "golden", f"{arch}__{name}.npz")) as data:
        return dict(data)


def to_rgb_chw(image_bgr: np.ndarray) -> np.ndarray:
    return image_bgr[:, :, ::-1].transpose(2, 0, 1)


@pytest.mark.parametrize("name", INPUTS)
@pytest.mark.parametrize("size", (640, 1280))
def test_letterbox_matches_official_fixture(name: str, size: int) -> None:
    data = load_input(name)
    result = letterbox(data["orig_bgr"], size, stride=int(data[f"x{size}_stride"]))
    np.testing.assert_array_equal(to_rgb_chw(result.image), data[f"x{size}_u8"])
    np.testing.assert_allclose(result.ratio, data[f"x{size}_ratio"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(result.pad, data[f"x{size}_pad"], rtol=0, atol=1e-12)
    assert result.source_hw == data["orig_bgr"].shape[:2]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("name", INPUTS)
def test_input_tensor_sha256_matches_golden(arch: str, name: str) -> None:
    golden = load_golden(arch, name)
    data = load_input(name)
    x, boxes = to_input_tensor(data["orig_bgr"], int(golden["img_size"]), stride=int(golden["stride"]))
    assert x.dtype == torch.float32
    assert tuple(x.shape) == tuple(golden["x_shape"])
    assert hashlib.sha256(x.numpy().tobytes()).hexdigest() == str(golden["x_sha256"])
    np.testing.assert_allclose(boxes[0].ratio, golden["ratio"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(boxes[0].pad, golden["pad"], rtol=0, atol=1e-12)


# (source h, w), new_shape, stride, auto, scale_fill, scaleup -> canvas (h, w), ratio (w, h), pad (dw, dh)
GEOMETRY_CASES = [
    pytest.param((720, 1280), 640, 32, True, False, True, (384, 640), (0.5, 0.5), (0.0, 12.0), id="16:9-auto"),
    pytest.param((720, 1280), 640, 32, False, False, True, (640, 640), (0.5, 0.5), (0.0, 140.0), id="16:9-square"),
    pytest.param((1280, 720), 640, 32, True, False, True, (640, 384), (0.5, 0.5), (12.0, 0.0), id="9:16-auto"),
    pytest.param((720, 1280), 1280, 64, True, False, True, (768, 1280), (1.0, 1.0), (0.0, 24.0), id="p6-auto"),
    pytest.param((425, 640), 640, 32, True, False, True, (448, 640), (1.0, 1.0), (0.0, 11.5), id="odd-pad"),
    pytest.param((100, 200), 640, 32, True, False, False, (128, 224), (1.0, 1.0), (12.0, 14.0), id="no-scaleup"),
    pytest.param((100, 200), 640, 32, False, True, True, (640, 640), (3.2, 6.4), (0.0, 0.0), id="scale-fill"),
    pytest.param((100, 200), (320, 640), 32, False, False, True, (320, 640), (3.2, 3.2), (0.0, 0.0), id="rect-target"),
    pytest.param((448, 640), 640, 32, True, False, True, (448, 640), (1.0, 1.0), (0.0, 0.0), id="already-fits"),
]


@pytest.mark.parametrize(
    "source_hw, new_shape, stride, auto, scale_fill, scaleup, canvas_hw, ratio, pad", GEOMETRY_CASES
)
def test_letterbox_geometry(source_hw, new_shape, stride, auto, scale_fill, scaleup, canvas_hw, ratio, pad) -> None:
    image = np.full((*source_hw, 3), 7, dtype=np.uint8)
    result = letterbox(image, new_shape, stride=stride, auto=auto, scale_fill=scale_fill, scaleup=scaleup)
    assert result.shape_hw == canvas_hw
    assert result.image.dtype == np.uint8 and result.image.shape == (*canvas_hw, 3)
    np.testing.assert_allclose(result.ratio, ratio, rtol=1e-12)
    np.testing.assert_allclose(result.pad, pad, rtol=0, atol=1e-12)


def test_odd_padding_puts_extra_pixel_at_bottom() -> None:
    image = np.full((425, 640, 3), 7, dtype=np.uint8)
    canvas = letterbox(image, 640, stride=32).image
    rows_with_content = np.flatnonzero((canvas == 7).all(axis=(1, 2)))
    assert (rows_with_content[0], rows_with_content[-1]) == (11, 435)  # 11 rows on top, 12 below
    assert (canvas[:11] == 114).all() and (canvas[436:] == 114).all()


def test_unchanged_size_is_not_resampled_and_custom_colour() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(440, 640, 3), dtype=np.uint8)
    result = letterbox(image, 640, stride=32, color=(1, 2, 3))
    np.testing.assert_array_equal(result.image[4:444], image)
    np.testing.assert_array_equal(result.image[0, 0], [1, 2, 3])


def test_non_contiguous_input_gives_same_result() -> None:
    data = load_input("coco139")
    flipped = data["orig_bgr"][:, ::-1]
    assert not flipped.flags.c_contiguous
    expected = letterbox(np.ascontiguousarray(flipped), 640).image
    np.testing.assert_array_equal(letterbox(flipped, 640).image, expected)


BAD_IMAGES = [
    pytest.param([[0, 0, 0]], "numpy array", id="list"),
    pytest.param(np.zeros((4, 4, 3), np.float32), "uint8", id="float"),
    pytest.param(np.zeros((4, 4), np.uint8), r"\(H, W, 3\)", id="grey"),
    pytest.param(np.zeros((4, 4, 4), np.uint8), r"\(H, W, 3\)", id="bgra"),
    pytest.param(np.zeros((0, 4, 3), np.uint8), "empty", id="empty"),
]


@pytest.mark.parametrize("image, message", BAD_IMAGES)
def test_invalid_images_raise_typed_error(image, message) -> None:
    with pytest.raises(InvalidImageError, match=message):
        validate_bgr_image(image)
    with pytest.raises(InvalidImageError, match=message):
        to_input_tensor([image])


def test_empty_batch_raises() -> None:
    with pytest.raises(InvalidImageError, match="empty sequence"):
        letterbox_batch([])


def test_batch_of_different_sizes_places_each_canvas_top_left() -> None:
    wide = load_input("coco139")["orig_bgr"]  # 426 x 640 -> 448 x 640
    tall = np.ascontiguousarray(load_input("pets100")["orig_bgr"].transpose(1, 0, 2))  # 480 x 360 -> 640 x 480
    batch, boxes = letterbox_batch([wide, tall], 640, stride=32)
    assert batch.shape == (2, 3, 640, 640) and batch.dtype == np.uint8
    for index, image in enumerate((wide, tall)):
        alone = letterbox(image, 640, stride=32)
        h, w = alone.shape_hw
        assert boxes[index].shape_hw == (h, w)
        assert boxes[index].pad == alone.pad and boxes[index].ratio == alone.ratio
        np.testing.assert_array_equal(batch[index, :, :h, :w], to_rgb_chw(alone.image))
        outside = np.ones((640, 640), dtype=bool)
        outside[:h, :w] = False
        assert (batch[index][:, outside] == LETTERBOX_COLOR_BGR[0]).all()


def test_batch_array_equals_single_images() -> None:
    frames = np.stack([load_input("pets100")["orig_bgr"]] * 2)
    frames[1] = 255 - frames[1]
    x, boxes = to_input_tensor(frames, 640)
    assert x.shape == (2, 3, 480, 640) and len(boxes) == 2
    for index in range(2):
        single, _ = to_input_tensor(frames[index], 640)
        assert torch.equal(x[index], single[0])


def test_unit_float_conversion_is_float32_division() -> None:
    values = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    expected = values.astype(np.float32) / np.float32(255)
    converted = uint8_to_unit_float(values).numpy()
    assert converted.dtype == np.float32
    assert converted.tobytes() == expected.tobytes()
