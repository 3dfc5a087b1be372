"""The interface every inference backend implements (uint8 RGB batches in, L2-normalised features out) and what
backends share: opening a model file, quoting a runtime's error, L2 normalisation."""

from __future__ import annotations

from pathlib import Path
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


def model_file(path: str | Path, kind: str) -> Path:
    """``path`` as a Path once it names a non-empty file: FileNotFoundError when missing, ValueError when it has
    0 bytes (an interrupted copy or download), both naming the file before a runtime reports it less clearly."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{kind} not found: {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"{path} is empty (0 bytes), so it holds no {kind}: copy or export it again")
    return path


def error_summary(error: BaseException) -> str:
    """The last non-empty line of a runtime's error message: OpenVINO and ONNX Runtime put the cause there,
    after lines of C++ source locations, so errors that quote it stay one line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def l2_normalised(features: np.ndarray) -> np.ndarray:
    """Rows of ``features`` scaled to unit length, as float32 (all-zero rows stay zero)."""
    features = np.asarray(features, dtype=np.float32)
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
