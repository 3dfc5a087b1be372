"""Inference backends behind FeatureExtractor, chosen from what the user passes (a model or a file)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reid_sdk.backends.base import Backend
from reid_sdk.backends.foreign_input import InputOptions
from reid_sdk.optional import require

TORCH_SUFFIXES = (".pt", ".pth", ".ckpt")
ONNX_SUFFIXES = (".onnx",)
TENSORRT_SUFFIXES = (".engine", ".plan")


def open_backend(model: Any, device: str = "auto", precision: str = "auto", compile: bool | str = False,
                 max_batch: int = 64, input_size: tuple[int, int] | None = None,
                 input_options: InputOptions | None = None) -> Backend:
    """A backend for ``model``: a ReIDNet module, or a file whose suffix names its kind.

    ``.pt``/``.pth``/``.ckpt``: torch checkpoint; ``.onnx``: ONNX Runtime; ``.engine``/``.plan``: TensorRT.
    ``precision`` and ``compile`` apply to torch; ``input_size`` and ``input_options`` (mean, std, dtype,
    channel order) describe ONNX files without reid-sdk metadata and are refused for other models.
    """
    described = input_options.given() if input_options is not None else []
    if described and not (isinstance(model, (str, Path)) and Path(model).suffix.lower() in ONNX_SUFFIXES):
        what = Path(model).name if isinstance(model, (str, Path)) else f"a {type(model).__name__}"
        raise ValueError(f"{', '.join(described)} describe foreign ONNX models only; {what} configures itself")
    if isinstance(model, (str, Path)):
        suffix = Path(model).suffix.lower()
        if suffix in ONNX_SUFFIXES:
            require("onnxruntime", "cpu", "gpu")
            from reid_sdk.backends.onnx_backend import OnnxBackend

            return OnnxBackend(model, device=device, input_size=input_size, input_options=input_options)
        if suffix in TENSORRT_SUFFIXES:
            from reid_sdk.backends.tensorrt_backend import TensorRTBackend

            return TensorRTBackend(model, device=device)
        if suffix not in TORCH_SUFFIXES:
            known = ", ".join(TORCH_SUFFIXES + ONNX_SUFFIXES + TENSORRT_SUFFIXES)
            raise ValueError(f"unsupported model file {Path(model).name!r}: expected one of {known}")
    try:
        from reid_sdk.backends.torch_backend import TorchBackend
    except ImportError as exc:
        raise ImportError(f"the torch backend needs torch and torchvision: pip install 'reid-sdk[train]' ({exc})") from exc
    return TorchBackend(model, device=device, precision=precision, compile=compile, max_batch=max_batch)


__all__ = ["Backend", "InputOptions", "open_backend"]
