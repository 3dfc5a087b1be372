"""FeatureExtractor: crops in, L2-normalised float32 features out, on any backend.

Importing this module does not import torch; the torch backend is loaded only when
a torch model or checkpoint is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from reid_sdk.backends import Backend, open_backend
from reid_sdk.preprocess import CHANNEL_ORDERS, as_crop_list, preprocess_batch


class NonFiniteFeaturesError(RuntimeError):
    """A backend returned NaN or infinite features: a numerical fault of that engine and precision."""


class FeatureExtractor:
    """Extracts re-ID features from person crops.

    ``model`` is a ``ReIDNet`` or a file: a torch checkpoint (``.pt``), an ONNX model
    (``.onnx``, run by ONNX Runtime) or a TensorRT engine (``.engine``/``.plan``);
    ``input_size`` is only for ONNX files exported without reid-sdk metadata. Crops are H x W x 3 uint8 in
    OpenCV's BGR order unless ``channel_order="rgb"``; grey and BGRA are converted. ``backend`` picks the
    engine ("auto" by file kind, or "torch", "onnxruntime", "openvino", "tensorrt"); ``backend_options``
    (a dict) carries engine-specific settings, e.g. ``{"mode": "latency"}`` for OpenVINO.
    """

    def __init__(self, model: Any | str | Path, device: str = "auto", batch_size: int = 64,
                 channel_order: str = "bgr", precision: str = "auto", compile: bool | str = False,
                 input_size: tuple[int, int] | None = None, backend: str = "auto",
                 backend_options: Any = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if channel_order not in CHANNEL_ORDERS:
            raise ValueError(f"channel_order must be one of {CHANNEL_ORDERS}, got {channel_order!r}")
        self.batch_size = batch_size
        self.channel_order = channel_order
        self.backend: Backend = open_backend(model, device=device, precision=precision, compile=compile,
                                             max_batch=batch_size, input_size=input_size, backend=backend,
                                             backend_options=backend_options)

    @property
    def feature_dim(self) -> int:
        return self.backend.feature_dim

    @property
    def input_size(self) -> tuple[int, int]:
        """Model input (height, width) every crop is resized to."""
        return self.backend.input_size

    def extract(self, crops: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """Features (B, D) of one crop or a list of crops, computed in batches of ``batch_size``."""
        crop_list = as_crop_list(crops)
        if not crop_list:
            raise ValueError("no crops given")
        buffer = self.backend.input_buffer(min(self.batch_size, len(crop_list)))
        features = np.empty((len(crop_list), self.feature_dim), dtype=np.float32)
        for start in range(0, len(crop_list), self.batch_size):
            chunk = crop_list[start : start + self.batch_size]
            batch = preprocess_batch(chunk, self.input_size, self.channel_order, out=buffer, first_index=start)
            features[start : start + len(chunk)] = self.backend.run(batch)
        bad = np.flatnonzero(~np.isfinite(features).all(axis=1))
        if bad.size:
            raise NonFiniteFeaturesError(
                f"the {self.backend.description} backend returned NaN or infinite features for {bad.size} of "
                f"{len(crop_list)} crops (first: crop {bad[0]}); this engine/precision is numerically unsafe "
                "here: try precision fp32 or another backend")
        return features

    __call__ = extract
