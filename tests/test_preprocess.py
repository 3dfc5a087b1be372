"""The one preprocessing function: every accepted crop kind, and a clear error for every rejected one."""

import cv2
import numpy as np
import pytest

from reid_sdk.preprocess import preprocess_batch

SIZE = (16, 8)


def _bgr(height=20, width=10, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _expected(rgb):
    return cv2.resize(rgb, (SIZE[1], SIZE[0]), interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1)


def test_bgr_crop_becomes_resized_rgb_nchw():
    crop = _bgr()
    out = preprocess_batch(crop, SIZE)
    assert out.shape == (1, 3, 16, 8) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0], _expected(crop[:, :, ::-1]))


def test_rgb_channel_order_keeps_channels():
    crop = _bgr()
    np.testing.assert_array_equal(preprocess_batch(crop, SIZE, channel_order="rgb")[0], _expected(crop))


def test_crop_of_model_size_is_only_transposed():
    crop = _bgr(*SIZE)
    np.testing.assert_array_equal(preprocess_batch(crop, SIZE)[0], crop[:, :, ::-1].transpose(2, 0, 1))


@pytest.mark.parametrize("shape", [(20, 10), (20, 10, 1)])
def test_grey_crops_are_replicated_to_three_channels(shape):
    grey = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    out = preprocess_batch(grey, SIZE)[0]
    plane = cv2.resize(grey.reshape(20, 10), (8, 16), interpolation=cv2.INTER_LINEAR)
    for channel in range(3):
        np.testing.assert_array_equal(out[channel], plane)


@pytest.mark.parametrize("order", ["bgr", "rgb"])
def test_four_channel_crops_drop_alpha(order):
    colour = _bgr()
    alpha = np.full((20, 10, 1), 7, dtype=np.uint8)
    out = preprocess_batch(np.concatenate([colour, alpha], axis=2), SIZE, channel_order=order)[0]
    np.testing.assert_array_equal(out, _expected(colour[:, :, ::-1] if order == "bgr" else colour))


def test_list_and_stacked_array_of_crops():
    crops = [_bgr(seed=s) for s in range(3)]
    from_list = preprocess_batch(crops, SIZE)
    np.testing.assert_array_equal(preprocess_batch(np.stack(crops), SIZE), from_list)
    for index, crop in enumerate(crops):
        np.testing.assert_array_equal(from_list[index], _expected(crop[:, :, ::-1]))


def test_writes_into_a_given_buffer():
    buffer = np.zeros((4, 3, *SIZE), dtype=np.uint8)
    out = preprocess_batch([_bgr(), _bgr(seed=2)], SIZE, out=buffer)
    assert out.shape[0] == 2 and np.shares_memory(out, buffer)
    with pytest.raises(ValueError, match="cannot hold 5 crops"):
        preprocess_batch([_bgr()] * 5, SIZE, out=buffer)


@pytest.mark.parametrize(
    "bad,message",
    [
        (np.zeros((0, 10, 3), np.uint8), "crop 1: empty image"),
        (np.zeros((10, 0), np.uint8), "crop 1: empty image"),
        (np.zeros((20, 10, 3), np.float32), "crop 1: dtype float32 is not supported"),
        (np.full((20, 10, 3), np.nan, np.float32), "crop 1: contains NaN"),
        (np.zeros((20, 10, 3), np.int64), "crop 1: dtype int64"),
        (np.zeros((2, 20, 10, 3), np.uint8), "crop 1: expected H x W x 3 .* 4 dimensions"),
        (np.zeros(30, np.uint8), "crop 1: expected H x W x 3 .* 1 dimensions"),
        (np.zeros((20, 10, 2), np.uint8), "crop 1: expected 1, 3 or 4 channels, got 2"),
        ([[1, 2, 3]], "crop 1: expected a numpy array, got list"),
    ],
)
def test_bad_crops_raise_naming_problem_and_index(bad, message):
    with pytest.raises(ValueError, match=message):
        preprocess_batch([_bgr(), bad], SIZE)


def test_bad_arguments():
    with pytest.raises(ValueError, match="no crops given"):
        preprocess_batch([], SIZE)
    with pytest.raises(ValueError, match="channel_order"):
        preprocess_batch(_bgr(), SIZE, channel_order="bgra")
    with pytest.raises(ValueError, match="expected a crop"):
        preprocess_batch("image.jpg", SIZE)
    with pytest.raises(ValueError, match="crop 7: empty"):
        preprocess_batch([np.zeros((0, 1, 3), np.uint8)], SIZE, first_index=7)
