"""Inference backends behind FeatureExtractor, chosen from what the user passes (a model or a file).

``backend="auto"`` picks by kind: a ReIDNet or ``.pt``/``.pth``/``.ckpt`` -> torch, ``.onnx`` -> ONNX Runtime,
``.engine``/``.plan`` -> TensorRT. ``backend="openvino"`` runs an ``.onnx`` file with OpenVINO instead.
``backend_options`` (a dict or the backend's options dataclass) carries what only one backend understands.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reid_sdk.inference.backends.base import Backend
from reid_sdk.inference.backends.foreign_input import InputOptions
from reid_sdk._utils.optional import require

TORCH_SUFFIXES = (".pt", ".pth", ".ckpt")
ONNX_SUFFIXES = (".onnx",)
TENSORRT_SUFFIXES = (".engine", ".plan")
BACKENDS = ("auto", "torch", "onnxruntime", "openvino", "tensorrt")
_FILES_OF = {"torch": TORCH_SUFFIXES, "onnxruntime": ONNX_SUFFIXES, "openvino": ONNX_SUFFIXES,
             "tensorrt": TENSORRT_SUFFIXES}


def backend_for(model: Any, backend: str = "auto") -> str:
    """The backend that will run ``model``; ValueError when the two do not go together."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    if not isinstance(model, (str, Path)):
        if backend not in ("auto", "torch"):
            raise ValueError(f"backend {backend!r} runs model files; a {type(model).__name__} runs on torch")
        return "torch"
    suffix = Path(model).suffix.lower()
    if backend == "auto":
        for name in ("torch", "onnxruntime", "tensorrt"):
            if suffix in _FILES_OF[name]:
                return name
        known = ", ".join(TORCH_SUFFIXES + ONNX_SUFFIXES + TENSORRT_SUFFIXES)
        raise ValueError(f"unsupported model file {Path(model).name!r}: expected one of {known}")
    if suffix not in _FILES_OF[backend]:
        raise ValueError(f"backend {backend!r} runs {'/'.join(_FILES_OF[backend])} files, "
                         f"not {Path(model).name!r}")
    return backend


def _options(cls: type, given: Any) -> Any:
    """``given`` (None, a mapping of field values or an instance) as an instance of the dataclass ``cls``."""
    if given is None or isinstance(given, cls):
        return given
    if not isinstance(given, Mapping):
        raise ValueError(f"backend_options must be a dict or {cls.__name__}, got {type(given).__name__}")
    known = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(set(given) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return cls(**given)


def open_backend(model: Any, device: str = "auto", precision: str = "auto", compile: bool | str = False,
                 max_batch: int = 64, input_size: tuple[int, int] | None = None, backend: str = "auto",
                 backend_options: Any = None, input_options: InputOptions | None = None) -> Backend:
    """A backend for ``model``: a ReIDNet module, or a file (see the module docstring for which runs what).

    ``precision`` is the compute precision of torch and OpenVINO (exported files fix their own); ``compile``
    applies to torch; ``input_size`` and ``input_options`` (mean, std, dtype, channel order) describe ONNX
    files without reid-sdk metadata (ONNX Runtime) and are refused for other models.
    """
    name = backend_for(model, backend)
    described = input_options.given() if input_options is not None else []
    if described and name != "onnxruntime":
        what = Path(model).name if isinstance(model, (str, Path)) else f"a {type(model).__name__}"
        raise ValueError(f"{', '.join(described)} describe foreign ONNX models only; {what} configures itself "
                         f"(on {name})")
    if name in ("onnxruntime", "tensorrt") and precision != "auto":
        raise ValueError(f"precision {precision!r}: an exported {name} model runs at the precision it was "
                         "exported with (reid-export --format / --precision); leave precision='auto'")
    if backend_options is not None and name not in ("onnxruntime", "openvino"):
        raise ValueError(f"backend_options are for the onnxruntime and openvino backends, not {name}")
    if name == "onnxruntime":
        require("onnxruntime", "cpu", "gpu")
        from reid_sdk.inference.backends.onnx_backend import OnnxBackend, OnnxRuntimeOptions

        return OnnxBackend(model, device=device, input_size=input_size, max_batch=max_batch,
                           options=_options(OnnxRuntimeOptions, backend_options), input_options=input_options)
    if name == "openvino":
        from reid_sdk.inference.backends.openvino_backend import OpenVINOBackend, OpenVINOOptions

        return OpenVINOBackend(model, device=device, precision=precision, input_size=input_size,
                               options=_options(OpenVINOOptions, backend_options))
    if name == "tensorrt":
        from reid_sdk.inference.backends.tensorrt_backend import TensorRTBackend

        return TensorRTBackend(model, device=device)
    try:
        from reid_sdk.inference.backends.torch_backend import TorchBackend
    except ImportError as exc:
        raise ImportError(f"the torch backend needs torch and torchvision: pip install 'reid-sdk[train]' ({exc})") from exc
    return TorchBackend(model, device=device, precision=precision, compile=compile, max_batch=max_batch)


__all__ = ["BACKENDS", "Backend", "InputOptions", "backend_for", "open_backend"]
