"""Crop -> model input: the ONE preprocessing definition shared by every backend.

A crop is an H x W x 3 uint8 image in OpenCV's BGR order (or RGB with
``channel_order="rgb"``); grey (H x W or H x W x 1) and 4-channel BGRA/RGBA crops (alpha last, as OpenCV and
PIL give them) are converted. What could be read two ways is refused, not guessed: float or other non-uint8
pixels (0..1 or 0..255?), and channels-first arrays (C x H x W: a first axis of 1, 3 or 4 entries with a last
axis that cannot hold channels). The output is raw RGB uint8, N x 3 x H x W: normalisation lives
inside the model, so the bytes fed to torch, ONNX Runtime and TensorRT are identical.

:class:`BatchPreprocessor` runs the same function on a thread pool (OpenCV releases
the GIL while it converts and resizes): the crops of a large batch in parallel, and the
next batch while the caller runs the network on the current one. Its bytes equal
``preprocess_batch``'s.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait

import cv2
import numpy as np

CHANNEL_ORDERS = ("bgr", "rgb")
CHANNEL_COUNTS = (1, 3, 4)  # grey, colour, colour + alpha
MIN_CROPS_PER_TASK = 16  # below this, a thread hand-off costs more than the resizing it moves


def check_channel_order(channel_order: str) -> str:
    """``channel_order`` if it is "bgr" or "rgb" (the crops' colour order), else ValueError naming it."""
    if channel_order not in CHANNEL_ORDERS:
        raise ValueError(f"channel_order must be one of {CHANNEL_ORDERS} (the crops' colour order), "
                         f"got {channel_order!r}")
    return channel_order


def as_crop_list(crops: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
    """Accept one crop (a 2-D or 3-D array) or a sequence of crops; always return a list."""
    if isinstance(crops, np.ndarray) and crops.ndim in (2, 3):
        return [crops]
    if isinstance(crops, np.ndarray) and crops.ndim == 4:
        return list(crops)
    if isinstance(crops, (list, tuple)):
        return list(crops)
    raise ValueError(
        "expected a crop (H x W x 3 uint8 numpy array) or a list of crops, "
        f"got {type(crops).__name__}" + (f" with shape {crops.shape}" if isinstance(crops, np.ndarray) else "")
    )


def to_rgb(crop: object, index: int = 0, channel_order: str = "bgr") -> np.ndarray:
    """Validate one crop and return it as H x W x 3 uint8 RGB; ValueError names the problem and the index."""
    where = f"crop {index}"
    if not isinstance(crop, np.ndarray):
        raise ValueError(f"{where}: expected a numpy array, got {type(crop).__name__}")
    if crop.dtype != np.uint8:
        if np.issubdtype(crop.dtype, np.floating) and crop.size and not np.isfinite(crop).all():
            raise ValueError(f"{where}: contains NaN or infinite values (and dtype {crop.dtype}; expected uint8)")
        raise ValueError(f"{where}: dtype {crop.dtype} is not supported; expected uint8 pixel values 0..255 "
                         "(convert floats yourself: their scale, 0..1 or 0..255, is not guessed)")
    if crop.ndim == 3 and crop.shape[0] in CHANNEL_COUNTS and crop.shape[2] not in CHANNEL_COUNTS:
        raise ValueError(f"{where}: shape {crop.shape} is channels-first (C x H x W); crops are H x W x C: "
                         "pass crop.transpose(1, 2, 0)")
    if crop.ndim == 3 and crop.shape[2] == 1:
        crop = crop[:, :, 0]
    if crop.ndim not in (2, 3):
        raise ValueError(f"{where}: expected H x W x 3 (or grey H x W), got {crop.ndim} dimensions {crop.shape}")
    if crop.shape[0] == 0 or crop.shape[1] == 0:
        raise ValueError(f"{where}: empty image of shape {crop.shape}")
    if crop.ndim == 2:
        return cv2.cvtColor(crop, cv2.COLOR_GRAY2RGB)
    channels = crop.shape[2]
    if channels not in (3, 4):
        raise ValueError(f"{where}: expected 1, 3 or 4 channels, got {channels}")
    if channel_order == "bgr":
        return cv2.cvtColor(crop, cv2.COLOR_BGR2RGB if channels == 3 else cv2.COLOR_BGRA2RGB)
    return crop if channels == 3 else cv2.cvtColor(crop, cv2.COLOR_RGBA2RGB)


def check_buffer(out: np.ndarray, count: int, input_size: tuple[int, int]) -> None:
    """ValueError unless ``out`` is a uint8 array of at least ``count`` x 3 x H x W."""
    if out.dtype != np.uint8 or out.shape[1:] != (3, *input_size) or out.shape[0] < count:
        raise ValueError(f"out buffer of shape {out.shape} / {out.dtype} cannot hold {count} crops")


def preprocess_batch(
    crops: np.ndarray | Sequence[np.ndarray],
    input_size: tuple[int, int],
    channel_order: str = "bgr",
    out: np.ndarray | None = None,
    first_index: int = 0,
) -> np.ndarray:
    """Validate, convert to RGB and resize crops to ``input_size`` (H, W); returns N x 3 x H x W uint8.

    ``out`` may be a preallocated (at least N) x 3 x H x W uint8 array (e.g. a view
    of pinned memory) to write into; the returned array is then its first N rows.
    ``first_index`` offsets the crop indices that error messages name (for chunked calls).
    """
    check_channel_order(channel_order)
    crops = as_crop_list(crops)
    if not crops:
        raise ValueError("no crops given")
    height, width = input_size
    if out is None:
        out = np.empty((len(crops), 3, height, width), dtype=np.uint8)
    else:
        check_buffer(out, len(crops), input_size)
    for index, crop in enumerate(crops):
        rgb = to_rgb(crop, first_index + index, channel_order)
        if rgb.shape[:2] != (height, width):
            rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_LINEAR)
        out[index] = rgb.transpose(2, 0, 1)
    return out[: len(crops)]


class BatchPreprocessor:
    """``preprocess_batch`` on a thread pool, and pipelined over the batches of a long list of crops.

    >>> prepare = BatchPreprocessor((256, 128))
    >>> for start, batch in prepare.batches(crops, 64, np.empty((128, 3, 256, 128), np.uint8)):
    ...     features[start : start + len(batch)] = network(batch)  # the next batch is resized meanwhile

    ``workers`` threads (default: the CPU count, at most 8) start on first use. Errors name the
    same crop index as the single-threaded function: the first bad crop in the list.
    """

    def __init__(self, input_size: tuple[int, int], channel_order: str = "bgr", workers: int | None = None) -> None:
        check_channel_order(channel_order)
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.input_size = input_size
        self.channel_order = channel_order
        self.workers = workers or min(8, os.cpu_count() or 1)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_pid = os.getpid()

    @staticmethod
    def buffer_rows(count: int, batch_size: int) -> int:
        """Rows the ``buffer`` of :meth:`batches` needs for ``count`` crops: two batches, or the one there is."""
        return count if count <= batch_size else 2 * batch_size

    def batches(self, crops: Sequence[np.ndarray], batch_size: int, buffer: np.ndarray,
                channel_order: str | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """(start, preprocessed batch) for each ``batch_size`` slice of ``crops``, in order.

        ``buffer`` holds two batches (one when ``crops`` fits in one batch): while the caller works on one
        half, the next batch is written into the other. A batch stays valid until the next one is requested.
        ``channel_order`` is these crops' order (None: this preprocessor's).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        order = check_channel_order(self.channel_order if channel_order is None else channel_order)
        crops = as_crop_list(crops)
        starts = range(0, len(crops), batch_size)
        check_buffer(buffer, self.buffer_rows(len(crops), batch_size), self.input_size)
        halves = [buffer[:batch_size], buffer[batch_size : 2 * batch_size]] if len(starts) > 1 else [buffer]
        pending = self._submit(crops[:batch_size], halves[0], 0, order)
        try:
            for number, start in enumerate(starts):
                batch = pending()
                following = start + batch_size
                if following < len(crops):
                    pending = self._submit(crops[following : following + batch_size], halves[(number + 1) % 2],
                                           following, order, background=True)
                yield start, batch
        finally:
            pending.wait()  # never leave a thread writing into the caller's buffer

    def _submit(self, crops: Sequence[np.ndarray], out: np.ndarray, first_index: int, channel_order: str,
                background: bool = False) -> _Pending:
        """Start preprocessing ``crops`` into ``out`` in chunks of consecutive crops; returns a waitable handle."""
        if len(crops) < 2 * MIN_CROPS_PER_TASK and not background:
            return _Pending.done(preprocess_batch(crops, self.input_size, channel_order, out, first_index))
        if self._pool is None or self._pool_pid != os.getpid():  # a forked child has none of the parent's threads
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="reid-preprocess")
            self._pool_pid = os.getpid()
        tasks = max(1, min(self.workers, len(crops) // MIN_CROPS_PER_TASK))
        bounds = np.linspace(0, len(crops), tasks + 1).astype(int)
        futures = [self._pool.submit(preprocess_batch, crops[lo:hi], self.input_size, channel_order,
                                     out[lo:hi], first_index + lo) for lo, hi in zip(bounds[:-1], bounds[1:])]
        return _Pending(futures, out[: len(crops)])


class _Pending:
    """Chunks of one batch in flight; calling it waits and raises the first failing chunk's error (lowest index)."""

    def __init__(self, futures: list[Future], result: np.ndarray) -> None:
        self._futures = futures
        self._result = result

    @classmethod
    def done(cls, result: np.ndarray) -> _Pending:
        return cls([], result)

    def __call__(self) -> np.ndarray:
        self.wait()
        for future in self._futures:
            future.result()  # chunks are in crop order, so the first error is the lowest bad index
        return self._result

    def wait(self) -> None:
        wait(self._futures)
