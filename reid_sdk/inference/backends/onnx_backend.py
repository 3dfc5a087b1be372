"""ONNX Runtime backend: an exported model on the CPU, or on CUDA with the CUDA execution provider.

On CUDA fp32 means fp32: TF32 is switched off in the CUDA provider. The TensorRT execution provider is
opt-in (``OnnxRuntimeOptions(tensorrt_cache_dir=...)``), never first by default: without an engine cache
and a batch profile it rebuilds its engines for minutes at every process start and new batch size.
Asking for CUDA and getting the CPU (onnxruntime-gpu lists CUDA even when its libraries cannot load) is
an error, not a silent fallback.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from reid_sdk.inference.backends.base import error_summary, l2_normalised, model_file
from reid_sdk.inference.backends.foreign_input import InputOptions, describe_input, with_input_size
from reid_sdk.inference.model_contract import model_identity
from reid_sdk._utils.optional import install_hint

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
# It merges the identical Q/DQ pairs an INT8 file gives each consumer, and ONNX Runtime then leaves those
# convolutions in float (a third of them in ResNet-50, INT8 slower than fp32); float graphs lose nothing.
DISABLED_OPTIMIZERS = ["CommonSubexpressionElimination"]
TENSORRT = "TensorrtExecutionProvider"
GPU_INSTALL_HINT = install_hint("gpu")


@dataclass(frozen=True)
class OnnxRuntimeOptions:
    """ONNX Runtime settings beyond the device.

    ``tensorrt_cache_dir``: on CUDA, run the TensorRT execution provider (CUDA for what it cannot take),
    with its engines and timing cache kept in this folder and a batch profile 1..max_batch, so only the
    first start builds (minutes). ``threads``: intra-op threads (None: ONNX Runtime's default, one per core).
    """

    tensorrt_cache_dir: str | Path | None = None
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"ONNX Runtime threads must be >= 1, got {self.threads}")


def parse_device(device: str) -> tuple[str, int]:
    """``auto`` / ``cpu`` / ``cuda`` / ``cuda:N`` -> (kind, CUDA device id)."""
    kind, _, index = device.partition(":")
    if kind in ("auto", "cpu") and not index:
        return kind, 0
    if kind == "cuda" and (not index or index.isdigit()):
        return kind, int(index or 0)
    raise ValueError(f"device must be auto, cpu, cuda or cuda:N for ONNX models, got {device!r}")


def tensorrt_provider_options(cache_dir: str | Path, device_id: int, input_name: str,
                              input_size: tuple[int, int], max_batch: int) -> dict[str, str]:
    """TensorRT execution-provider options: engine + timing cache in ``cache_dir``, batch profile 1..max_batch."""
    height, width = input_size
    shape = f"{input_name}:{{}}x3x{height}x{width}"
    return {"device_id": str(device_id), "trt_engine_cache_enable": "True", "trt_engine_cache_path": str(cache_dir),
            "trt_timing_cache_enable": "True", "trt_timing_cache_path": str(cache_dir),
            "trt_profile_min_shapes": shape.format(1), "trt_profile_opt_shapes": shape.format(max_batch),
            "trt_profile_max_shapes": shape.format(max_batch)}


def cuda_provider_options(device_id: int) -> dict[str, str]:
    """CUDA execution-provider options: the device, and no TF32 (fp32 models promise fp32 results)."""
    return {"device_id": str(device_id), "use_tf32": "0"}


def check_active_providers(requested: list[str], active: list[str], device: str) -> None:
    """Raise when a GPU provider that was asked for did not load (ONNX Runtime then falls back to the CPU)."""
    missing = [provider for provider in requested if provider != CPU and provider not in active]
    if not missing:
        return
    message = (f"device {device!r}: ONNX Runtime could not load {', '.join(missing)} and would run on "
               f"{', '.join(active)}; its CUDA / cuDNN{' / TensorRT' if TENSORRT in missing else ''} libraries are "
               "missing or do not match this onnxruntime-gpu build (ONNX Runtime's log above names the library). "
               f"Install them ({GPU_INSTALL_HINT}, or pip install 'onnxruntime-gpu[cuda,cudnn]'), or use device='cpu'")
    if device != "auto":
        raise ValueError(message)
    log.warning("%s; running on the CPU", message)


def open_session(path: Path, session_options: ort.SessionOptions, providers: list) -> ort.InferenceSession:
    """An ONNX Runtime session of ``path`` (with the optimisers reid-sdk's models disable); a file ONNX Runtime cannot
    load is one ValueError naming it."""
    try:
        return ort.InferenceSession(str(path), session_options, providers=providers,
                                    disabled_optimizers=DISABLED_OPTIMIZERS)
    except (ort.capi.onnxruntime_pybind11_state.InvalidProtobuf, ort.capi.onnxruntime_pybind11_state.Fail,
            ort.capi.onnxruntime_pybind11_state.InvalidArgument) as exc:
        raise ValueError(f"{path} is not a loadable ONNX model: {error_summary(exc)}") from exc


class OnnxBackend:
    """Feeds uint8 RGB batches to an ONNX model; configures itself from the file's reid-sdk metadata.

    A foreign ONNX file (torchreid, fast-reid, BoxMOT exports) has no such metadata: its input is
    described by ``input_options`` (size, mean / std, dtype, channel order; see
    :mod:`reid_sdk.inference.backends.foreign_input`), and a fixed batch size in its graph is honoured. Runs through
    I/O binding, so on CUDA the output is allocated on the device and copied back once.
    """

    def __init__(self, path: str | Path, device: str = "auto", input_size: tuple[int, int] | None = None,
                 max_batch: int = 64, options: OnnxRuntimeOptions | None = None,
                 input_options: InputOptions | None = None) -> None:
        kind, self.device_id = parse_device(device)
        path = model_file(path, "ONNX model")
        self.options = options or OnnxRuntimeOptions()
        self.input_options = with_input_size(input_options, input_size)
        available = ort.get_available_providers()
        if kind == "cuda" and CUDA not in available:
            raise ValueError(f"device {device!r} requested but this onnxruntime has no GPU provider "
                             f"(available: {', '.join(available)}); {GPU_INSTALL_HINT}")
        on_gpu = kind == "cuda" or (kind == "auto" and CUDA in available)
        if self.options.tensorrt_cache_dir is not None and not on_gpu:
            raise ValueError(f"tensorrt_cache_dir is for the TensorRT provider on CUDA; device {device!r} runs "
                             "on the CPU here")
        session_options = ort.SessionOptions()
        if self.options.threads is not None:
            session_options.intra_op_num_threads = self.options.threads
        providers = self._gpu_providers(path, available, max_batch) if on_gpu else [(CPU, {})]
        self.session = open_session(path, session_options, providers)
        check_active_providers([name for name, _ in providers], self.session.get_providers(), device)
        self.metadata, self._feed = describe_input(self.session, self.input_options, source=str(path))
        self.input_size: tuple[int, int] = self.metadata.input_size
        self.feature_dim: int = self.metadata.feature_dim
        self.model_id: str = model_identity(self.metadata, path)
        active = self.session.get_providers()[0]
        self.device = "cpu" if active == CPU else f"cuda:{self.device_id}"
        self.description = f"onnxruntime ({active}) on a {self.metadata.precision} model"
        self._output_name = self.session.get_outputs()[0].name
        self._output_device = "cpu" if active == CPU else "cuda"

    def _gpu_providers(self, path: Path, available: list[str], max_batch: int) -> list[tuple[str, dict[str, str]]]:
        """(provider, options) in priority order for CUDA, TensorRT first only when its cache is configured."""
        providers = [(CUDA, cuda_provider_options(self.device_id)), (CPU, {})]
        cache = self.options.tensorrt_cache_dir
        if cache is None:
            return providers
        if TENSORRT not in available:
            raise ValueError(f"tensorrt_cache_dir was given but this onnxruntime has no TensorRT provider "
                             f"(available: {', '.join(available)}); pip install 'reid-sdk[gpu,tensorrt]'")
        Path(cache).mkdir(parents=True, exist_ok=True)
        plain = ort.SessionOptions()  # only read the graph's input and metadata: no optimisation passes
        plain.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        inspection = open_session(path, plain, [CPU])
        size = describe_input(inspection, self.input_options, source=str(path))[0].input_size
        options = tensorrt_provider_options(cache, self.device_id, inspection.get_inputs()[0].name, size, max_batch)
        return [(TENSORRT, options), *providers]

    def input_buffer(self, batch_size: int) -> np.ndarray:
        return np.empty((batch_size, 3, *self.input_size), dtype=np.uint8)

    def _infer(self, tensor: np.ndarray) -> np.ndarray:
        """One model call through I/O binding on the model's own input tensor."""
        binding = self.session.io_binding()
        binding.bind_cpu_input(self._feed.name, np.ascontiguousarray(tensor))
        binding.bind_output(self._output_name, self._output_device, self.device_id)
        self.session.run_with_iobinding(binding)
        (features,) = binding.copy_outputs_to_cpu()
        return features

    def run(self, batch: np.ndarray) -> np.ndarray:
        return l2_normalised(self._feed.run(self._infer, batch))
