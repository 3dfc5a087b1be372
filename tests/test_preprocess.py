"""The one preprocessing function: every accepted crop kind, and a clear error for every rejected one."""

import multiprocessing
import os
import threading

import cv2
import numpy as np
import pytest

import reid_sdk.inference.preprocess as preprocess_module
from reid_sdk.inference.preprocess import BatchPreprocessor, preprocess_batch
from tests.helpers import random_crops

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


def test_an_nchw_batch_is_refused_naming_its_first_crop():
    with pytest.raises(ValueError, match=r"crop 0: shape \(3, 16, 8\) is channels-first"):
        preprocess_batch(np.zeros((2, 3, 16, 8), np.uint8), SIZE)


@pytest.mark.parametrize("height", [1, 3, 4])
def test_a_crop_whose_last_axis_holds_channels_is_read_as_hwc_whatever_its_height(height):
    """(3, 4, 3) could be C x H x W too, but its last axis can hold channels: the documented H x W x C reading."""
    crop = _bgr(height, 4)
    np.testing.assert_array_equal(preprocess_batch(crop, SIZE)[0], _expected(crop[:, :, ::-1]))


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
        (np.zeros((3, 20, 10), np.uint8), r"crop 1: shape \(3, 20, 10\) is channels-first .*\.transpose\(1, 2, 0\)"),
        (np.zeros((1, 20, 10), np.uint8), "crop 1: shape .* is channels-first"),
        (np.zeros((4, 20, 10), np.uint8), "crop 1: shape .* is channels-first"),
        (np.zeros((20, 10, 3), np.float64), "crop 1: dtype float64 .* 0..1 or 0..255, is not guessed"),
        (np.zeros((20, 10, 3), np.bool_), "crop 1: dtype bool is not supported"),
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


def _mixed_crops(count: int, seed: int = 0) -> list[np.ndarray]:
    """Colour, grey and BGRA crops of varied sizes, some already at the model size."""
    crops = random_crops(count, seed=seed, min_size=4)
    for index in range(0, count, 5):
        crops[index] = crops[index][:, :, 0]
    for index in range(3, count, 10):
        crops[index] = np.concatenate([crops[index], crops[index][:, :, :1]], axis=2)
    for index in range(2, count, 11):
        crops[index] = _bgr(*SIZE, seed=index)
    return crops


@pytest.mark.parametrize("order", ["bgr", "rgb"])
@pytest.mark.parametrize("count,batch_size,workers", [(1, 8, 2), (150, 64, 3), (100, 7, 2), (40, 40, 1)])
def test_threaded_batches_equal_the_single_threaded_bytes(order, count, batch_size, workers):
    crops = _mixed_crops(count, seed=count)
    expected = preprocess_batch(crops, SIZE, channel_order=order)
    prepare = BatchPreprocessor(SIZE, order, workers=workers)
    buffer = np.empty((prepare.buffer_rows(count, batch_size), 3, *SIZE), np.uint8)
    seen = []
    for start, batch in prepare.batches(crops, batch_size, buffer):
        assert start == len(seen) * batch_size and np.shares_memory(batch, buffer)
        # checked after the next batch was handed to the threads: they never write into this one
        threading.Event().wait(0.01)
        np.testing.assert_array_equal(batch, expected[start : start + batch_size])
        seen.append(start)
    assert len(seen) == -(-count // batch_size)


def test_the_next_batch_is_prepared_while_the_caller_works_on_this_one(monkeypatch):
    started_second = threading.Event()
    original = preprocess_module.preprocess_batch

    def recording(crops, input_size, channel_order, out, first_index):
        if first_index >= 32:
            started_second.set()
        return original(crops, input_size, channel_order, out, first_index)

    monkeypatch.setattr(preprocess_module, "preprocess_batch", recording)
    prepare = BatchPreprocessor(SIZE, workers=2)
    batches = prepare.batches(_mixed_crops(64), 32, np.empty((64, 3, *SIZE), np.uint8))
    start, _ = next(batches)
    assert start == 0 and started_second.wait(timeout=30)  # set by a worker thread while we hold batch 0
    assert next(batches)[0] == 32


@pytest.mark.parametrize("batch_size", [16, 50, 200])
def test_threaded_errors_name_the_first_bad_crop_like_the_plain_function(batch_size):
    crops = _mixed_crops(120)
    crops[77] = np.zeros((0, 4, 3), np.uint8)
    crops[101] = np.zeros((5, 5, 3), np.float32)
    with pytest.raises(ValueError, match="crop 77: empty image"):
        preprocess_batch(crops, SIZE)
    prepare = BatchPreprocessor(SIZE, workers=4)
    buffer = np.empty((prepare.buffer_rows(120, batch_size), 3, *SIZE), np.uint8)
    with pytest.raises(ValueError, match="crop 77: empty image"):
        for _ in prepare.batches(crops, batch_size, buffer):
            pass


def test_batch_preprocessor_bad_arguments():
    with pytest.raises(ValueError, match="channel_order"):
        BatchPreprocessor(SIZE, "bgra")
    with pytest.raises(ValueError, match="workers must be >= 1"):
        BatchPreprocessor(SIZE, workers=0)
    prepare = BatchPreprocessor(SIZE)
    with pytest.raises(ValueError, match="cannot hold 20 crops"):
        next(prepare.batches(_mixed_crops(30), 10, np.empty((19, 3, *SIZE), np.uint8)))
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        next(prepare.batches(_mixed_crops(3), 0, np.empty((3, 3, *SIZE), np.uint8)))
    with pytest.raises(ValueError, match="no crops given"):
        next(prepare.batches([], 4, np.empty((4, 3, *SIZE), np.uint8)))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_gets_its_own_threads():
    crops = _mixed_crops(80)
    prepare = BatchPreprocessor(SIZE, workers=2)
    expected = preprocess_batch(crops, SIZE)
    list(prepare.batches(crops, 32, np.empty((64, 3, *SIZE), np.uint8)))  # the parent's pool now exists
    context = multiprocessing.get_context("fork")
    sums = context.Queue()
    child = context.Process(target=_checksums, args=(prepare, crops, sums))  # fork: nothing is pickled
    child.start()
    try:  # with the parent's (absent) threads the child would wait forever
        assert sums.get(timeout=120) == [int(expected[i : i + 32].sum()) for i in range(0, 80, 32)]
    finally:
        child.join(timeout=10)
        if child.is_alive():
            child.kill()


def _checksums(prepare: BatchPreprocessor, crops: list, sums) -> None:
    buffer = np.empty((64, 3, *SIZE), np.uint8)
    sums.put([int(batch.sum()) for _, batch in prepare.batches(crops, 32, buffer)])
