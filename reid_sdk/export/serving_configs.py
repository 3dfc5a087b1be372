"""Configuration files that let DeepStream and Triton run a float32-input reid-sdk ONNX file, written beside it.

Both are read from the ONNX file itself (tensor names, sizes, batch) and its reid-sdk metadata (mean / std,
precision), so they name the real tensors:

- ``<stem>_nvinfer.txt``: a Gst-nvinfer secondary-GIE config (runs on the primary detector's objects, no output
  parser: ``network-type=100``, the features attached as tensor metadata: ``output-tensor-meta=1``). nvinfer
  computes ``net-scale-factor * (pixel - offsets[c])`` with ONE scale for all channels, so the ImageNet std
  (0.229 / 0.224 / 0.225) becomes its mean, 0.226: at most 1.3 % off per channel (the deployment guide gives
  the cosine this costs).
- ``config.pbtxt``: a Triton model configuration (platform onnxruntime_onnx; dynamic batch: ``max_batch_size``
  and per-item dims; fixed batch: ``max_batch_size: 0`` and the full shape) naming the file in
  ``default_model_filename``: the model repository is ``<repo>/<stem>/config.pbtxt`` + ``<repo>/<stem>/1/<file>``.
"""

from __future__ import annotations

from pathlib import Path

import onnx

from reid_sdk._utils.atomic_file import atomic_write
from reid_sdk.inference.model_contract import ModelMetadata

TRITON_CONFIG = "config.pbtxt"
NVINFER_SUFFIX = "_nvinfer.txt"
#: nvinfer's network-mode for each precision (0 FP32, 1 INT8: the Q/DQ scales are in the graph, 2 FP16).
NVINFER_NETWORK_MODES = {"fp32": 0, "int8": 1, "fp16": 2}
_TRITON_TYPES = {onnx.TensorProto.FLOAT: "TYPE_FP32", onnx.TensorProto.FLOAT16: "TYPE_FP16",
                 onnx.TensorProto.UINT8: "TYPE_UINT8"}


def _shape(value: onnx.ValueInfoProto) -> list[int | None]:
    """Sizes per axis, None where the graph leaves one open."""
    return [dim.dim_value or None for dim in value.type.tensor_type.shape.dim]


def _graph(path: Path) -> tuple[ModelMetadata, onnx.ValueInfoProto, onnx.ValueInfoProto]:
    proto = onnx.load(str(path), load_external_data=False)
    metadata = ModelMetadata.from_strings({prop.key: prop.value for prop in proto.metadata_props}, source=str(path))
    if metadata.input_dtype != "float32":
        raise ValueError(f"{path} takes {metadata.input_dtype} input; DeepStream and Triton configs are written for "
                         "float32 input (reid-export --input float32)")
    return metadata, proto.graph.input[0], proto.graph.output[0]


def nvinfer_config(path: Path, batch: int) -> str:
    """The Gst-nvinfer secondary-GIE config text for the float32 ONNX file ``path`` at ``batch`` crops per call."""
    metadata, model_input, model_output = _graph(path)
    scale = 1 / (255 * sum(metadata.input_std) / 3)
    offsets = ";".join(f"{255 * value:g}" for value in metadata.input_mean)
    _, channels, height, width = _shape(model_input)
    lines = [
        f"# Gst-nvinfer secondary GIE for {path.name}, written by reid-export: re-ID features of each object,",
        "# attached as tensor metadata (NvDsInferTensorMeta on the object's user metadata).",
        "[property]",
        "gpu-id=0",
        f"onnx-file={path.name}",
        f"batch-size={batch}",
        f"network-mode={NVINFER_NETWORK_MODES[metadata.precision]}",
        "# y = net-scale-factor * (pixel - offsets): ImageNet mean; one scale, 1 / (255 * mean std)",
        f"net-scale-factor={scale:.10f}",
        f"offsets={offsets}",
        "# 0: RGB",
        f"model-color-format={0 if metadata.channel_order == 'rgb' else 1}",
        f"infer-dims={channels};{height};{width}",
        "# stretch each object to the network size, as reid-sdk's preprocessing does",
        "maintain-aspect-ratio=0",
        f"output-blob-names={model_output.name}",
        "# 100: no output parser; the raw features go out as tensor metadata",
        "network-type=100",
        "output-tensor-meta=1",
        "# 2: secondary, on the objects of the GIE named by operate-on-gie-id",
        "process-mode=2",
        "gie-unique-id=2",
        "operate-on-gie-id=1",
        "operate-on-class-ids=0",
    ]
    return "\n".join(lines) + "\n"


def triton_config(path: Path, max_batch: int) -> str:
    """The Triton config.pbtxt text for the float32 ONNX file ``path`` (``max_batch``: for a dynamic batch)."""
    _, model_input, model_output = _graph(path)
    fixed = _shape(model_input)[0] is not None

    def tensor(value: onnx.ValueInfoProto) -> str:
        dims = [size if size is not None else -1 for size in _shape(value)]
        return (f'  {{\n    name: "{value.name}"\n    data_type: {_TRITON_TYPES[value.type.tensor_type.elem_type]}\n'
                f"    dims: [ {', '.join(map(str, dims if fixed else dims[1:]))} ]\n  }}")

    return (f'name: "{path.stem}"\nplatform: "onnxruntime_onnx"\ndefault_model_filename: "{path.name}"\n'
            f"max_batch_size: {0 if fixed else max_batch}\n"
            f"input [\n{tensor(model_input)}\n]\noutput [\n{tensor(model_output)}\n]\n")


def write_serving_configs(path: str | Path, batch_profile: tuple[int, int, int]) -> tuple[Path, ...]:
    """Write the nvinfer config and Triton's config.pbtxt beside the float32 ONNX file ``path``; a dynamic
    batch uses ``batch_profile``'s opt (nvinfer batch-size) and max (Triton max_batch_size)."""
    path = Path(path)
    fixed = _shape(_graph(path)[1])[0]
    written = []
    for target, text in ((path.with_name(path.stem + NVINFER_SUFFIX), nvinfer_config(path, fixed or batch_profile[1])),
                         (path.with_name(TRITON_CONFIG), triton_config(path, batch_profile[2]))):
        with atomic_write(target) as handle:
            handle.write(text.encode())
        written.append(target)
    return tuple(written)
