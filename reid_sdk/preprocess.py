"""Crop -> model input: the ONE preprocessing definition shared by every backend.

A crop is an H x W x 3 uint8 image in OpenCV's BGR order (or RGB with
``channel_order="rgb"``); grey (H x W or H x W x 1) and 4-channel BGRA/RGBA crops
are converted. The output is raw RGB uint8, N x 3 x H x W: normalisation lives
inside the model, so the bytes fed to torch, ONNX Runtime and TensorRT are identical.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

CHANNEL_ORDERS = ("bgr", "rgb")


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
        raise ValueError(f"{where}: dtype {crop.dtype} is not supported; expected uint8 pixel values 0..255")
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
    if channel_order not in CHANNEL_ORDERS:
        raise ValueError(f"channel_order must be one of {CHANNEL_ORDERS}, got {channel_order!r}")
    crops = as_crop_list(crops)
    if not crops:
        raise ValueError("no crops given")
    height, width = input_size
    if out is None:
        out = np.empty((len(crops), 3, height, width), dtype=np.uint8)
    elif out.dtype != np.uint8 or out.shape[1:] != (3, height, width) or out.shape[0] < len(crops):
        raise ValueError(f"out buffer of shape {out.shape} / {out.dtype} cannot hold {len(crops)} crops")
    for index, crop in enumerate(crops):
        rgb = to_rgb(crop, first_index + index, channel_order)
        if rgb.shape[:2] != (height, width):
            rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_LINEAR)
        out[index] = rgb.transpose(2, 0, 1)
    return out[: len(crops)]
