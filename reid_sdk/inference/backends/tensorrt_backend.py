"""TensorRT backend: runs a serialized engine written by ``reid-export --format tensorrt``.

Needs the ``tensorrt`` and ``cuda-python`` packages and an NVIDIA GPU, not torch.
Batches larger than the engine's optimisation profile are split into runs the profile takes.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np

from reid_sdk.inference.backends.base import l2_normalised, model_file
from reid_sdk.inference.model_contract import model_identity, read_sidecar
from reid_sdk._utils.optional import MissingDependency, require

def require_tensorrt() -> ModuleType:
    """The ``tensorrt`` module, or MissingDependency naming the ``tensorrt`` extra."""
    return require("tensorrt", "tensorrt")


def require_cudart() -> ModuleType:
    """cuda-python's runtime API module (device buffers and streams without torch), under its new or old name."""
    try:
        return require("cuda.bindings.runtime", "tensorrt")
    except MissingDependency:
        return require("cuda.cudart", "tensorrt")


def split_batches(count: int, min_batch: int, max_batch: int) -> list[tuple[int, int]]:
    """(start, stop) ranges covering ``count`` items, as few as possible, each of ``min_batch``..``max_batch``.

    Sizes differ by at most one, so a remainder never falls below the engine's smallest batch when any split
    can avoid it; ValueError names the batch sizes the engine takes when none can.
    """
    if count == 0:
        return []
    parts = -(-count // max_batch)
    bounds = [index * count // parts for index in range(parts + 1)]
    if count // parts < min_batch:
        raise ValueError(f"a batch of {count} crops cannot be split into runs of {min_batch}..{max_batch}, the "
                         "batch sizes this engine takes (its profile); rebuild it with reid-export --batch 1:OPT:MAX "
                         f"or pass at least {min_batch} crops")
    return list(zip(bounds, bounds[1:]))


def cuda_device_index(device: str) -> int:
    """``auto`` / ``cuda`` -> 0, ``cuda:N`` -> N; anything else is not a TensorRT device."""
    kind, _, index = device.partition(":")
    if kind in ("auto", "cuda") and (not index or (kind == "cuda" and index.isdigit())):
        return int(index or 0)
    raise ValueError(f"TensorRT engines run on CUDA only: device must be auto, cuda or cuda:N, got {device!r}")


class TensorRTBackend:
    """Deserialises an engine on its CUDA device, keeps device buffers for its largest batch, one stream.

    The batch sizes it takes are the engine's optimisation profile (read from the engine itself).
    """

    def __init__(self, path: str | Path, device: str = "auto") -> None:
        self.device_index = cuda_device_index(device)
        path = model_file(path, "TensorRT engine")
        self.metadata, _ = read_sidecar(path)
        if self.metadata.input_dtype != "uint8":
            raise ValueError(f"{path} takes {self.metadata.input_dtype} input; the tensorrt backend feeds reid-sdk "
                             "engines uint8 pixels (reid-export builds engines only for that contract)")
        self.model_id: str = model_identity(self.metadata, path)
        trt = require_tensorrt()
        self._cudart = require_cudart()
        self._call(self._cudart.cudaSetDevice(self.device_index))
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._engine = trt.Runtime(self._logger).deserialize_cuda_engine(path.read_bytes())
        if self._engine is None:
            raise ValueError(f"{path} could not be deserialised by TensorRT {trt.__version__}")
        self._context = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        self._input = next(n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self._output = next(n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)
        low, _, high = self._engine.get_tensor_profile_shape(self._input, 0)
        self.min_batch, self.max_batch = int(low[0]), int(high[0])
        self.input_size: tuple[int, int] = self.metadata.input_size
        self.feature_dim: int = self.metadata.feature_dim
        self.device = f"cuda:{self.device_index}"
        self.description = f"tensorrt {self.metadata.precision} engine on {self.device}"
        self._input_bytes = 3 * self.input_size[0] * self.input_size[1]
        self._output_bytes = 4 * self.feature_dim
        self._device_input = self._call(self._cudart.cudaMalloc(self.max_batch * self._input_bytes))
        self._device_output = self._call(self._cudart.cudaMalloc(self.max_batch * self._output_bytes))
        self._stream = self._call(self._cudart.cudaStreamCreate())

    def _call(self, result: tuple) -> object:
        error, *values = result
        if int(error) != 0:
            raise RuntimeError(f"CUDA runtime error {error}")
        return values[0] if values else None

    def input_buffer(self, batch_size: int) -> np.ndarray:
        return np.empty((batch_size, 3, *self.input_size), dtype=np.uint8)

    def run(self, batch: np.ndarray) -> np.ndarray:
        cudart, kinds = self._cudart, self._cudart.cudaMemcpyKind
        batch = np.ascontiguousarray(batch, dtype=np.uint8)
        features = np.empty((len(batch), self.feature_dim), dtype=np.float32)
        self._call(cudart.cudaSetDevice(self.device_index))
        for start, stop in split_batches(len(batch), self.min_batch, self.max_batch):
            count = stop - start
            if not self._context.set_input_shape(self._input, (count, 3, *self.input_size)):
                raise ValueError(f"TensorRT refused a batch of {count}; this engine takes "
                                 f"{self.min_batch}..{self.max_batch}")
            self._context.set_tensor_address(self._input, self._device_input)
            self._context.set_tensor_address(self._output, self._device_output)
            self._call(cudart.cudaMemcpyAsync(self._device_input, batch[start:stop].ctypes.data,
                                              count * self._input_bytes, kinds.cudaMemcpyHostToDevice, self._stream))
            if not self._context.execute_async_v3(self._stream):
                raise RuntimeError("TensorRT execution failed")
            self._call(cudart.cudaMemcpyAsync(features[start:stop].ctypes.data, self._device_output,
                                              count * self._output_bytes, kinds.cudaMemcpyDeviceToHost, self._stream))
            self._call(cudart.cudaStreamSynchronize(self._stream))
        return l2_normalised(features)

    def __del__(self) -> None:
        cudart = getattr(self, "_cudart", None)
        for pointer in (getattr(self, "_device_input", None), getattr(self, "_device_output", None)):
            if cudart is not None and pointer is not None:
                cudart.cudaFree(pointer)
