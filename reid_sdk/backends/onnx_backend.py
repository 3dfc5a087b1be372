"""ONNX Runtime backend: runs an exported model with the TensorRT / CUDA execution providers when present, else CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from reid_sdk.backends.foreign_input import InputOptions, describe_input, with_input_size
from reid_sdk.backends.model_contract import model_identity

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def choose_providers(device: str) -> list[str]:
    """Execution providers for ``device``: ``auto`` takes every GPU provider installed, then CPU."""
    if device not in ("auto", "cpu") and not device.startswith("cuda"):
        raise ValueError(f"device must be auto, cpu or cuda for ONNX models, got {device!r}")
    if device == "cpu":
        return ["CPUExecutionProvider"]
    available = ort.get_available_providers()
    gpu = [p for p in GPU_PROVIDERS if p in available]
    if device.startswith("cuda") and not gpu:
        raise ValueError(f"device {device!r} requested but this onnxruntime has no GPU provider "
                         f"(available: {', '.join(available)}); pip install 'reid-sdk[gpu]'")
    return [*gpu, "CPUExecutionProvider"]


def _l2_normalised(features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, dtype=np.float32)
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)


class OnnxBackend:
    """Feeds uint8 RGB batches to an ONNX model; configures itself from the file's reid-sdk metadata.

    A foreign ONNX file (torchreid, fast-reid, BoxMOT exports) has no such metadata: its input is
    described by ``input_options`` (size, mean / std, dtype, channel order; see
    :mod:`reid_sdk.backends.foreign_input`), and a fixed batch size in its graph is honoured.
    """

    def __init__(self, path: str | Path, device: str = "auto", input_size: tuple[int, int] | None = None,
                 input_options: InputOptions | None = None) -> None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {path}")
        try:
            self.session = ort.InferenceSession(str(path), providers=choose_providers(device))
        except (ort.capi.onnxruntime_pybind11_state.InvalidProtobuf,
                ort.capi.onnxruntime_pybind11_state.Fail) as exc:
            raise ValueError(f"{path} is not a loadable ONNX model: {exc}") from exc
        self.metadata, self._feed = describe_input(self.session, with_input_size(input_options, input_size),
                                                   source=str(path))
        self.input_size: tuple[int, int] = self.metadata.input_size
        self.feature_dim: int = self.metadata.feature_dim
        self.model_id: str = model_identity(self.metadata, path)
        self.device = self.session.get_providers()[0]
        self.description = f"onnxruntime ({self.device}) on a {self.metadata.precision} model"

    def input_buffer(self, batch_size: int) -> np.ndarray:
        return np.empty((batch_size, 3, *self.input_size), dtype=np.uint8)

    def run(self, batch: np.ndarray) -> np.ndarray:
        return _l2_normalised(self._feed.run(self.session, batch))
