"""OpenVINO backend: runs an exported ONNX model (fp32 or INT8 Q/DQ) on the CPU with Intel's OpenVINO runtime.

OpenVINO is an optional extra (``pip install 'reid-sdk[openvino]'``); this module imports without it and
says how to install it when a model is opened. The runtime's own default on CPUs with bf16 support is bf16
inference; here fp32 is the default and bf16 is a choice (see :func:`inference_precision`).

    extractor = FeatureExtractor("model-int8.onnx", backend="openvino",
                                 backend_options={"mode": "latency"})
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reid_sdk.inference.backends.base import error_summary, l2_normalised, model_file
from reid_sdk.inference.backends.foreign_input import InputFeed
from reid_sdk.inference.model_contract import (ModelMetadata, check_image_graph, check_metadata_matches_graph,
                                               model_identity)
from reid_sdk._utils.optional import require

log = logging.getLogger(__name__)

MODES = {"throughput": "THROUGHPUT", "latency": "LATENCY"}
PRECISIONS = {"fp32": "f32", "bf16": "bf16"}


@dataclass(frozen=True)
class OpenVINOOptions:
    """How OpenVINO runs the model.

    ``mode="throughput"`` compiles several CPU streams and splits each batch across them (best crops/s for
    batches); ``"latency"`` runs one stream on all cores (best single-crop latency). ``threads`` caps the
    inference threads (None: all cores OpenVINO sees).
    """

    mode: str = "throughput"
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"OpenVINO mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"OpenVINO threads must be >= 1, got {self.threads}")


def inference_precision(precision: str, capabilities: list[str]) -> str:
    """OpenVINO's INFERENCE_PRECISION_HINT for ``precision`` (auto = fp32) on a CPU with ``capabilities``.

    bf16 needs a CPU that OpenVINO says computes bf16 (AVX-512 BF16 or AMX); fp16 is not offered on CPUs.
    """
    name = "fp32" if precision == "auto" else precision
    if name not in PRECISIONS:
        raise ValueError(f"OpenVINO precision must be auto, fp32 or bf16; got {precision!r}")
    if name == "bf16" and "BF16" not in capabilities:
        raise ValueError("precision 'bf16' needs a CPU with bf16 support (AVX-512 BF16 or AMX); "
                         f"OpenVINO reports {', '.join(capabilities)}: use fp32")
    return PRECISIONS[name]


def split_evenly(count: int, parts: int) -> list[tuple[int, int]]:
    """(start, stop) of at most ``parts`` non-empty ranges covering ``count`` items, sizes differing by <= 1."""
    parts = max(1, min(parts, count))
    bounds = [round(index * count / parts) for index in range(parts + 1)]
    return [(start, stop) for start, stop in zip(bounds, bounds[1:]) if stop > start]


def fixed_sizes(port) -> list[int | None]:
    """The port's size per axis, None where the graph leaves it open (no axes when even the rank is open)."""
    shape = port.get_partial_shape()
    return [dim.get_length() if dim.is_static else None for dim in shape] if shape.rank.is_static else []


class OpenVINOBackend:
    """Compiles an ONNX model for the CPU and runs uint8 batches through parallel infer requests.

    The batch axis stays dynamic, so any batch size runs without recompiling. Configures itself from the
    file's reid-sdk metadata (``input_size`` for foreign ONNX files, as in ONNX Runtime).
    """

    def __init__(self, path: str | Path, device: str = "auto", precision: str = "auto",
                 input_size: tuple[int, int] | None = None, options: OpenVINOOptions | None = None) -> None:
        if device not in ("auto", "cpu"):
            raise ValueError(f"the OpenVINO backend runs on the CPU: device must be auto or cpu, got {device!r}")
        path = model_file(path, "ONNX model")
        ov = require("openvino", "openvino")
        self.options = options or OpenVINOOptions()
        core = ov.Core()
        hint = inference_precision(precision, list(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")))
        try:
            model = core.read_model(str(path))
        except RuntimeError as exc:
            raise ValueError(f"{path} is not a loadable ONNX model: {error_summary(exc)}") from exc
        input_shape, output_shape = fixed_sizes(model.input(0)), fixed_sizes(model.output(0))
        check_image_graph([port.get_any_name() for port in model.inputs], input_shape, output_shape, str(path))
        if input_size is not None and model.input(0).get_element_type() != ov.Type.u8:
            raise ValueError(f"{path} has no reid-sdk metadata and takes {model.input(0).get_element_type().get_type_name()} input, not u8: "
                             "its normalisation and channel order cannot be told to the openvino backend; run it "
                             "on onnxruntime with mean, std and model_channel_order")
        self.metadata = self._metadata(model, path, input_size)
        check_metadata_matches_graph(self.metadata, input_shape, output_shape, str(path))
        graph_dtype = "uint8" if model.input(0).get_element_type() == ov.Type.u8 else "float32"
        if graph_dtype != self.metadata.input_dtype:
            raise ValueError(f"{path}: its reid-sdk metadata says input_dtype {self.metadata.input_dtype} but the "
                             f"graph takes {graph_dtype}; export it again with reid-export")
        if input_shape[0] is not None:
            raise ValueError(f"{path} fixes its batch at {input_shape[0]}, and the openvino backend splits batches "
                             "across CPU streams: run it on onnxruntime, or export it with a dynamic batch")
        self._feed = InputFeed(model.input(0).get_any_name(), self.metadata.input_dtype, self.metadata.channel_order,
                               self.metadata.input_mean, self.metadata.input_std)
        self.input_size: tuple[int, int] = self.metadata.input_size
        self.feature_dim: int = self.metadata.feature_dim
        self.model_id: str = model_identity(self.metadata, path)
        config = {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": MODES[self.options.mode]}
        if self.options.threads is not None:
            config["INFERENCE_NUM_THREADS"] = self.options.threads
        self._compiled = core.compile_model(model, "CPU", config)
        self.streams = int(self._compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self._queue = ov.AsyncInferQueue(self._compiled, self.streams)
        self.device = "cpu"
        self.description = (f"openvino (CPU, {self.options.mode}, {self.streams} streams) at "
                            f"{'bf16' if hint == 'bf16' else 'fp32'} on a {self.metadata.precision} model")
        log.debug("compiled %s for OpenVINO: %s", path, self.description)

    @staticmethod
    def _metadata(model, path: Path, input_size: tuple[int, int] | None) -> ModelMetadata:
        """The file's reid-sdk metadata (OpenVINO keeps ONNX metadata_props under rt_info "framework")."""
        if input_size is not None:
            feature_dim = model.output(0).get_partial_shape()[-1].get_length()
            return ModelMetadata(input_size=tuple(input_size), feature_dim=int(feature_dim))
        info = model.get_rt_info()
        props = {key: model.get_rt_info(["framework", key]).astype(str)
                 for key in (info["framework"] if "framework" in info else {})}
        return ModelMetadata.from_strings(props, source=str(path))

    def input_buffer(self, batch_size: int) -> np.ndarray:
        return np.empty((batch_size, 3, *self.input_size), dtype=np.uint8)

    def run(self, batch: np.ndarray) -> np.ndarray:
        batch = self._feed.tensor(batch)
        features = np.empty((len(batch), self.feature_dim), dtype=np.float32)

        def collect(request, bounds: tuple[int, int]) -> None:
            features[bounds[0]:bounds[1]] = request.get_output_tensor(0).data

        self._queue.set_callback(collect)
        for bounds in split_evenly(len(batch), self.streams):
            self._queue.start_async({0: batch[bounds[0]:bounds[1]]}, bounds)
        self._queue.wait_all()
        return l2_normalised(features)
