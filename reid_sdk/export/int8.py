"""fp32 ONNX -> static INT8 ONNX in Q/DQ format, made with ONNX Runtime's quantization tools.

Weights: per-channel symmetric int8; activations: per-tensor symmetric int8 (zero point 0, which TensorRT's
explicit quantization requires), ranges calibrated (MinMax by default) on crops preprocessed like inference.
The pooling head (global pooling to the L2-normalised output) always stays float: it costs nothing, and one
per-tensor scale over the pooled features would round the many small channels to zero next to a few large
ones. An :class:`~reid_sdk.export.int8_recipe.Int8Recipe` names further layer groups kept float (mixed
precision): the layers at stride <= 4 (the first convolution and the blocks at its resolution, where int8 noise
is made first and then grows through every later layer), the depthwise convolutions, the non-local blocks, the
trunk's last stage (the layers that make the pooled feature map); which ones a backbone needs was measured
(benchmarks/int8_accuracy.py, docs/guides/deployment.md).
Every consumer of a tensor gets its own Q/DQ pair: ONNX Runtime fuses a pair into an int8 kernel only when
the pair feeds one node (its backend also keeps common-subexpression elimination from merging them back).
One file serves ONNX Runtime (CPU and CUDA), OpenVINO and TensorRT (strongly typed, explicit quantization).

    export_onnx_int8("best.pt", "model-int8.onnx", calibration_dir="crops/")
    export_onnx_int8("best.pt", "all-int8.onnx", recipe=Int8Recipe(keep_float=()))
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
from reid_sdk.inference.backends.foreign_input import InputFeed
from reid_sdk.inference.model_contract import ModelMetadata
from reid_sdk.export.calibration import DEFAULT_MAX_IMAGES, CalibrationBatches
from reid_sdk.export.formats import DEFAULT_OPSET, InputContract
from reid_sdk.export.int8_recipe import Int8Recipe
from reid_sdk.export.onnx_export import ensure_writable, export_onnx, set_metadata
from reid_sdk.model import read_checkpoint

log = logging.getLogger(__name__)

GLOBAL_POOLING_OPS = ("ReduceMean", "ReduceMax", "GlobalAveragePool", "GlobalMaxPool")
_CALIBRATORS = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                "percentile": CalibrationMethod.Percentile}
_SCOPES_KEY = "pkg.torch.onnx.name_scopes"  # the torch exporter's module path of each node
_LAST_STAGES = ("layer4", "features32")  # ReIDNet's last trunk stage (ResNets, MobileNetV2): after non_local16


class _BatchReader(CalibrationDataReader):
    """Hands ONNX Runtime's calibrator one batch per call in the graph's input contract (``feed``: uint8 pixels,
    or float32 normalised outside; a short last batch repeats its last crop up to a fixed batch size, which
    leaves every range as it was), and counts the crops it gave."""

    def __init__(self, batches: CalibrationBatches, feed: InputFeed) -> None:
        self._batches = iter(batches)
        self._feed = feed
        self.crops = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        if batch is None:
            return None
        self.crops += len(batch)
        missing = (self._feed.fixed_batch or len(batch)) - len(batch)
        if missing > 0:
            batch = np.concatenate([batch, np.repeat(batch[-1:], missing, axis=0)])
        return {self._feed.name: self._feed.tensor(batch)}


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


def _is_depthwise(node: onnx.NodeProto, weights: dict[str, onnx.TensorProto]) -> bool:
    """A convolution with one filter per input channel (group == channels > 1)."""
    group = next((attribute.i for attribute in node.attribute if attribute.name == "group"), 1)
    weight = weights.get(node.input[1])
    return group > 1 and weight is not None and weight.dims[1] == 1


def _in_modules(node: onnx.NodeProto, modules: tuple[str, ...]) -> bool:
    """Whether the torch exporter recorded ``node`` under one of the network's ``modules`` (attribute names)."""
    scopes = next((prop.value for prop in node.metadata_props if prop.key == _SCOPES_KEY), "")
    return any(f"'{module}" in scopes for module in modules)


def _early_nodes(graph: onnx.GraphProto) -> set[str]:
    """Nodes whose feature maps are at stride <= 4 (the first convolution and the blocks at its resolution), from
    the N x C x H x W shapes ONNX shape inference recorded (the graph fixes H x W)."""
    height = graph.input[0].type.tensor_type.shape.dim[2].dim_value
    heights = {value.name: value.type.tensor_type.shape.dim[2].dim_value for value in graph.value_info
               if len(value.type.tensor_type.shape.dim) == 4}
    if not height or not any(heights.values()):
        raise ValueError("the graph has no inferred N x C x H x W shapes, so its stride <= 4 layers cannot be found; "
                         "is it a reid-sdk model of fixed H x W?")
    return {node.name for node in graph.node if any(4 * heights.get(output, 0) >= height for output in node.output)}


def float_nodes(graph: onnx.GraphProto, keep_float: tuple[str, ...]) -> list[str]:
    """Names of the nodes left in float: the pooling head (:func:`head_nodes`) plus the ``keep_float`` groups
    (``graph`` with inferred shapes, as quant_pre_process writes it)."""
    weights = {tensor.name: tensor for tensor in graph.initializer}
    chosen = set(head_nodes(graph))
    if "stride4" in keep_float:
        chosen |= _early_nodes(graph)
    if "depthwise" in keep_float:
        chosen.update(node.name for node in graph.node if node.op_type == "Conv" and _is_depthwise(node, weights))
    if "non_local" in keep_float:
        chosen.update(node.name for node in graph.node if _in_modules(node, ("non_local",)))
    if "last_stage" in keep_float:
        chosen.update(node.name for node in graph.node if _in_modules(node, _LAST_STAGES))
    return sorted(chosen)


def quantize_int8(fp32_path: str | Path, path: str | Path, calibration: CalibrationBatches,
                  recipe: Int8Recipe | None = None) -> Path:
    """Quantize the reid-sdk fp32 ONNX file ``fp32_path`` into ``path`` by ``recipe`` (None: the one measured
    for the file's backbone, :meth:`Int8Recipe.for_backbone`); metadata is kept, precision "int8"."""
    path = ensure_writable(path)
    props = {prop.key: prop.value for prop in onnx.load(str(fp32_path), load_external_data=False).metadata_props}
    metadata = ModelMetadata.from_strings(props, source=str(fp32_path))
    if metadata.precision != "fp32":
        raise ValueError(f"INT8 quantization starts from an fp32 ONNX file; {fp32_path} is {metadata.precision}")
    recipe = recipe or Int8Recipe.for_backbone(metadata.backbone)
    with tempfile.TemporaryDirectory(prefix="reid-int8-") as folder:
        prepared, quantized = Path(folder) / "prepared.onnx", Path(folder) / "int8.onnx"
        # ONNX shape inference only: ONNX Runtime's symbolic one cannot follow the exporter's shape ops
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        graph = onnx.load(str(prepared)).graph
        batch_axis = graph.input[0].type.tensor_type.shape.dim[0]
        feed = InputFeed(graph.input[0].name, metadata.input_dtype, metadata.channel_order, metadata.input_mean,
                         metadata.input_std, batch_axis.dim_value or None)
        reader = _BatchReader(calibration, feed)
        log.info("calibrating INT8 ranges (%s) on %s; float: head%s", recipe.calibrate_method,
                 calibration.describe(), "".join(f", {group}" for group in recipe.keep_float))
        try:
            quantize_static(str(prepared), str(quantized), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                            calibrate_method=_CALIBRATORS[recipe.calibrate_method],
                            nodes_to_exclude=float_nodes(graph, recipe.keep_float),
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
                     max_images: int = DEFAULT_MAX_IMAGES, batch_size: int = 32, opset: int = DEFAULT_OPSET,
                     recipe: Int8Recipe | None = None, contract: InputContract = InputContract()) -> Path:
    """Export a reid-sdk checkpoint to INT8 Q/DQ ONNX by ``recipe`` (None: the backbone's), calibrated on
    ``calibration_dir`` (None: synthetic crops)."""
    path = ensure_writable(path)
    input_size = ModelMetadata.from_checkpoint(read_checkpoint(checkpoint)).input_size
    batches = CalibrationBatches(calibration_dir, input_size, batch_size=contract.batch or batch_size,
                                 max_images=max_images)
    with tempfile.TemporaryDirectory(prefix="reid-int8-") as folder:
        fp32 = export_onnx(checkpoint, Path(folder) / "fp32.onnx", "fp32", opset, contract)
        return quantize_int8(fp32, path, batches, recipe)
