"""fp32 ONNX -> static INT8 ONNX in Q/DQ format, made with ONNX Runtime's quantization tools.

Weights: per-channel symmetric int8; activations: per-tensor symmetric int8 (zero point 0, which TensorRT's
explicit quantization requires), ranges from MinMax calibration on crops preprocessed like inference. The
pooling head (global pooling to the L2-normalised output) stays float: it costs nothing, and one per-tensor
scale over the pooled features would round the many small channels to zero next to a few large ones.
Every consumer of a tensor gets its own Q/DQ pair: ONNX Runtime fuses a pair into an int8 kernel only when
the pair feeds one node (its backend also keeps common-subexpression elimination from merging them back).
One file serves ONNX Runtime (CPU and CUDA), OpenVINO and TensorRT (strongly typed, explicit quantization).

    export_onnx_int8("best.pt", "model-int8.onnx", calibration_dir="crops/")
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from reid_sdk._utils.atomic_file import atomic_write
from reid_sdk.inference.model_contract import ModelMetadata
from reid_sdk.export.calibration import DEFAULT_MAX_IMAGES, CalibrationBatches
from reid_sdk.export.formats import DEFAULT_OPSET
from reid_sdk.export.onnx_export import ensure_writable, export_onnx, set_metadata
from reid_sdk.model import read_checkpoint

log = logging.getLogger(__name__)

GLOBAL_POOLING_OPS = ("ReduceMean", "ReduceMax", "GlobalAveragePool", "GlobalMaxPool")


class _BatchReader(CalibrationDataReader):
    """Hands ONNX Runtime's calibrator one preprocessed batch per call, and counts the crops it gave."""

    def __init__(self, batches: CalibrationBatches, input_name: str) -> None:
        self._batches = iter(batches)
        self._input_name = input_name
        self.crops = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        if batch is None:
            return None
        self.crops += len(batch)
        return {self._input_name: batch}


def head_nodes(graph: onnx.GraphProto) -> list[str]:
    """Names of the global pooling nodes and every node downstream of them (the float head)."""
    head = {node.name for node in graph.node if node.op_type in GLOBAL_POOLING_OPS}
    if not head:
        raise ValueError("the graph has no global pooling node (ReduceMean / ReduceMax / GlobalAveragePool); "
                         "is it a reid-sdk model?")
    tainted = {output for node in graph.node if node.name in head for output in node.output}
    for node in graph.node:  # ONNX graphs are topologically sorted
        if tainted.intersection(node.input):
            head.add(node.name)
            tainted.update(node.output)
    return sorted(head)


def quantize_int8(fp32_path: str | Path, path: str | Path, calibration: CalibrationBatches) -> Path:
    """Quantize the reid-sdk fp32 ONNX file ``fp32_path`` into ``path``; metadata is kept, precision "int8"."""
    path = ensure_writable(path)
    props = {prop.key: prop.value for prop in onnx.load(str(fp32_path), load_external_data=False).metadata_props}
    metadata = ModelMetadata.from_strings(props, source=str(fp32_path))
    if metadata.precision != "fp32":
        raise ValueError(f"INT8 quantization starts from an fp32 ONNX file; {fp32_path} is {metadata.precision}")
    with tempfile.TemporaryDirectory(prefix="reid-int8-") as folder:
        prepared, quantized = Path(folder) / "prepared.onnx", Path(folder) / "int8.onnx"
        # ONNX shape inference only: ONNX Runtime's symbolic one cannot follow the exporter's shape ops
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        graph = onnx.load(str(prepared)).graph
        reader = _BatchReader(calibration, graph.input[0].name)
        log.info("calibrating INT8 ranges on %s", calibration.describe())
        try:
            quantize_static(str(prepared), str(quantized), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=head_nodes(graph),
                            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True,
                                           "DedicatedQDQPair": True})
        except ValueError as exc:
            if reader.crops == 0:
                raise ValueError(f"no readable calibration crops in {calibration.describe()}") from exc
            raise
        proto = onnx.load(str(quantized))
    log.info("calibrated on %d crops", reader.crops)
    set_metadata(proto, dataclasses.replace(metadata, precision="int8"))
    with atomic_write(path) as handle:
        handle.write(proto.SerializeToString())
    return path


def export_onnx_int8(checkpoint: str | Path, path: str | Path, calibration_dir: str | Path | None = None,
                     max_images: int = DEFAULT_MAX_IMAGES, batch_size: int = 32, opset: int = DEFAULT_OPSET) -> Path:
    """Export a reid-sdk checkpoint to INT8 Q/DQ ONNX, calibrated on ``calibration_dir`` (None: synthetic crops)."""
    path = ensure_writable(path)
    input_size = ModelMetadata.from_checkpoint(read_checkpoint(checkpoint)).input_size
    batches = CalibrationBatches(calibration_dir, input_size, batch_size=batch_size, max_images=max_images)
    with tempfile.TemporaryDirectory(prefix="reid-int8-") as folder:
        fp32 = export_onnx(checkpoint, Path(folder) / "fp32.onnx", "fp32", opset)
        return quantize_int8(fp32, path, batches)
