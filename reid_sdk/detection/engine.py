"""A detector's ONNX file run through the project's engines (ONNX Runtime on the CPU or CUDA, OpenVINO on the CPU),
returning the model's raw first output: the re-ID backends' device handling, provider checks and input feeding are
reused; what differs is that a detector's output is boxes, not features to L2-normalise."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from reid_sdk._utils.optional import require
from reid_sdk.inference.backends.base import error_summary, model_file
from reid_sdk.inference.backends.foreign_input import InputFeed

ENGINES = ("onnxruntime", "openvino")
_FLOAT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16"}


def _size(value: object) -> int | None:
    return value if isinstance(value, int) and value > 0 else None


class RawModel:
    """An image model taking float N x 3 x H x W RGB pixels / 255 (what YOLO exports take), run by ``engine``.

    ``input_size`` is the (height, width) the graph fixes, None where it leaves them open; ``fixed_batch`` the batch
    size it fixes (ultralytics exports fix 1 unless exported with ``dynamic=True``); batches are fed in chunks of it.
    """

    def __init__(self, path: str | Path, engine: str = "onnxruntime", device: str = "auto") -> None:
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)} for an ONNX detector, got {engine!r}")
        self.path = model_file(path, "ONNX detector")
        opened = self._onnxruntime(device) if engine == "onnxruntime" else self._openvino(device)
        name, dtype, shape, self._infer, self.description = opened
        if len(shape) != 4 or shape[1] not in (None, 3):
            raise ValueError(f"{self.path} takes input of shape {shape}; a YOLO detector takes N x 3 x H x W")
        self.input_size = (shape[2], shape[3]) if None not in shape[2:] else None
        self.fixed_batch = shape[0]
        self._feed = InputFeed(name, dtype, "rgb", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), self.fixed_batch)

    def _onnxruntime(self, device: str):
        ort = require("onnxruntime", "cpu", "gpu")
        from reid_sdk.inference.backends.onnx_backend import (CPU, CUDA, GPU_INSTALL_HINT, check_active_providers,
                                                              cuda_provider_options, open_session,
                                                              parse_device)

        kind, device_id = parse_device(device)
        available = ort.get_available_providers()
        if kind == "cuda" and CUDA not in available:
            raise ValueError(f"device {device!r} requested but this onnxruntime has no GPU provider; "
                             f"{GPU_INSTALL_HINT}")
        on_gpu = kind == "cuda" or (kind == "auto" and CUDA in available)
        providers = [(CUDA, cuda_provider_options(device_id)), (CPU, {})] if on_gpu else [(CPU, {})]
        session = open_session(self.path, ort.SessionOptions(), providers)
        check_active_providers([provider for provider, _ in providers], session.get_providers(), device)
        inputs = session.get_inputs()
        if len(inputs) != 1 or inputs[0].type not in _FLOAT_TYPES:
            raise ValueError(f"{self.path} takes {', '.join(f'{i.name} ({i.type})' for i in inputs)}; a YOLO "
                             "detector takes one float image input")
        output = session.get_outputs()[0].name

        def infer(tensor: np.ndarray) -> np.ndarray:
            return session.run([output], {inputs[0].name: tensor})[0]

        shape = [_size(size) for size in inputs[0].shape]
        return inputs[0].name, _FLOAT_TYPES[inputs[0].type], shape, infer, f"onnxruntime ({session.get_providers()[0]})"

    def _openvino(self, device: str):
        if device not in ("auto", "cpu"):
            raise ValueError(f"the openvino engine runs on the CPU: device must be auto or cpu, got {device!r}")
        ov = require("openvino", "openvino")
        from reid_sdk.inference.backends.openvino_backend import fixed_sizes

        core = ov.Core()
        try:
            model = core.read_model(str(self.path))
        except RuntimeError as exc:
            raise ValueError(f"{self.path} is not a loadable ONNX model: {error_summary(exc)}") from exc
        if len(model.inputs) != 1 or model.input(0).get_element_type() not in (ov.Type.f32, ov.Type.f16):
            raise ValueError(f"{self.path} does not take one float image input; a YOLO detector does")
        compiled = core.compile_model(model, "CPU", {"PERFORMANCE_HINT": "LATENCY"})
        dtype = "float32" if model.input(0).get_element_type() == ov.Type.f32 else "float16"

        def infer(tensor: np.ndarray) -> np.ndarray:
            return np.asarray(compiled(tensor)[compiled.output(0)])

        return model.input(0).get_any_name(), dtype, fixed_sizes(model.input(0)), infer, "openvino (CPU)"

    def run(self, batch: np.ndarray) -> np.ndarray:
        """The first output for a uint8 RGB N x 3 x H x W batch (fed as float pixels / 255)."""
        return self._feed.run(self._infer, batch)
