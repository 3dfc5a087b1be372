"""The interface every inference backend implements: uint8 RGB batches in, L2-normalised features out."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Backend(Protocol):
    """Runs the network on preprocessed batches (N x 3 x H x W uint8 RGB, see reid_sdk.inference.preprocess)."""

    input_size: tuple[int, int]
    feature_dim: int
    description: str  # engine, device and precision, for error messages (e.g. "torch on cpu at bf16")
    model_id: str  # identity of the features this model produces (see model_contract), recorded by galleries

    def input_buffer(self, batch_size: int) -> np.ndarray:
        """A batch_size x 3 x H x W uint8 array the preprocessing writes into (pinned memory on CUDA)."""
        ...

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Features of ``batch``: float32 (N, feature_dim), L2-normalised."""
        ...


def l2_normalised(features: np.ndarray) -> np.ndarray:
    """Rows of ``features`` scaled to unit length, as float32 (all-zero rows stay zero)."""
    features = np.asarray(features, dtype=np.float32)
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
