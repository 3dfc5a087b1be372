"""FeatureExtractor: crops in, L2-normalised float32 features out, on any backend.

Importing this module does not import torch; the torch backend is loaded only when
a torch model or checkpoint is given.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from reid_sdk.inference.backends import Backend, InputOptions, open_backend
from reid_sdk.inference.preprocess import BatchPreprocessor, as_crop_list, check_channel_order


class NonFiniteFeaturesError(ValueError):
    """A backend returned NaN, infinite or all-zero features: rows that cannot be unit vectors, so ``extract``
    refuses them rather than return them (a numerical fault of that engine and precision, or a model that
    outputs zeros). A ValueError: the model given is unusable, so the console scripts exit 2 with this line."""


class FeatureExtractor:
    """Extracts re-ID features from person crops.

    ``model`` is a ``ReIDNet`` or a file: a torch checkpoint (``.pt``), an ONNX model
    (``.onnx``, run by ONNX Runtime) or a TensorRT engine (``.engine``/``.plan``). Crops are H x W x 3 uint8
    in OpenCV's BGR order unless ``channel_order="rgb"`` (torchreid's and PIL's order; ``extract`` also takes
    it per call); grey and BGRA are converted, while float pixels and channels-first (C x H x W) arrays are
    refused with a ValueError naming the crop, not guessed (see :mod:`reid_sdk.inference.preprocess`).
    ``backend`` picks the engine ("auto" by file kind, or "torch", "onnxruntime", "openvino", "tensorrt");
    ``backend_options`` (a dict) carries engine-specific settings, e.g. ``{"mode": "latency"}`` for OpenVINO.

    ONNX files exported elsewhere (torchreid, fast-reid, BoxMOT) carry no reid-sdk metadata, so their input is
    described here: ``input_size`` (H, W) unless the graph fixes it, ``mean`` / ``std`` on the 0..1 pixel scale
    for float inputs, ``model_channel_order`` ("rgb" / "bgr"), and optionally ``input_dtype`` (read from the
    graph; given, it must agree). Missing or contradicting options raise ValueError naming them.

    Example:
        ```python
        extractor = FeatureExtractor("model.onnx")             # reid-export's file describes itself
        features = extractor.extract([cv2.imread("person.jpg")])  # (1, D) float32, L2-normalised rows
        foreign = FeatureExtractor("osnet_x1_0.onnx", input_size=(256, 128), mean=(0.485, 0.456, 0.406),
                                   std=(0.229, 0.224, 0.225), model_channel_order="rgb")
        ```
    """

    def __init__(self, model: Any | str | Path, device: str = "auto", batch_size: int = 64,
                 channel_order: str = "bgr", precision: str = "auto", compile: bool | str = False,
                 input_size: tuple[int, int] | None = None, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, input_dtype: str | None = None,
                 model_channel_order: str | None = None, backend: str = "auto",
                 backend_options: Any = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        check_channel_order(channel_order)
        self.batch_size = batch_size
        self.channel_order = channel_order
        self.backend: Backend = open_backend(model, device=device, precision=precision, compile=compile,
                                             max_batch=batch_size, input_size=input_size, backend=backend,
                                             backend_options=backend_options,
                                             input_options=InputOptions(mean=mean, std=std, input_dtype=input_dtype,
                                                                        model_channel_order=model_channel_order))
        self._preprocess = BatchPreprocessor(self.backend.input_size, channel_order)

    @property
    def feature_dim(self) -> int:
        return self.backend.feature_dim

    @property
    def model_id(self) -> str:
        """Identity of the model's features (architecture + weights, or the model file's hash); galleries record it."""
        return self.backend.model_id

    @property
    def input_size(self) -> tuple[int, int]:
        """Model input (height, width) every crop is resized to."""
        return self.backend.input_size

    def extract(self, crops: np.ndarray | Sequence[np.ndarray], channel_order: str | None = None) -> np.ndarray:
        """Features (B, D) of one crop or a list of crops, computed in batches of ``batch_size``; ``channel_order``
        ("bgr" / "rgb") is these crops' colour order, None for the one this extractor was made with."""
        crop_list = as_crop_list(crops)
        if not crop_list:
            raise ValueError("no crops given")
        # Room for two batches when there are several: the next is preprocessed while the backend runs one.
        buffer = self.backend.input_buffer(self._preprocess.buffer_rows(len(crop_list), self.batch_size))
        features = np.empty((len(crop_list), self.feature_dim), dtype=np.float32)
        with contextlib.closing(self._preprocess.batches(crop_list, self.batch_size, buffer,
                                                         channel_order)) as batches:
            for start, batch in batches:
                features[start : start + len(batch)] = self.backend.run(batch)
        _refuse_non_unit_rows(features, self.backend.description)
        return features

    __call__ = extract


def _refuse_non_unit_rows(features: np.ndarray, backend: str) -> None:
    """Raise NonFiniteFeaturesError on NaN / infinite rows and on all-zero rows (backends scale rows to unit
    length but leave a zero row at zero: it has no direction)."""
    non_finite = ~np.isfinite(features).all(axis=1)
    zero = ~non_finite & ~features.any(axis=1)
    for bad, what, advice in (
            (non_finite, "NaN or infinite", "this engine/precision is numerically unsafe here: try precision fp32 "
                                            "or another backend"),
            (zero, "all-zero", "they cannot be L2-normalised: check the model, and for a foreign ONNX file its "
                               "mean / std / model_channel_order")):
        rows = np.flatnonzero(bad)
        if rows.size:
            raise NonFiniteFeaturesError(f"the {backend} backend returned {what} features for {rows.size} of "
                                         f"{len(features)} crops (first: crop {rows[0]}); {advice}")
