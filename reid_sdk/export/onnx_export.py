"""Checkpoint -> ONNX: dynamic batch, fixed H x W, raw uint8 RGB in (normalisation inside), metadata attached."""

from __future__ import annotations

import contextlib
import copy
import io
import os
from pathlib import Path

import onnx
import torch

from reid_sdk._utils.atomic_file import atomic_write
from reid_sdk.export.formats import DEFAULT_OPSET
from reid_sdk.inference.model_contract import ModelMetadata
from reid_sdk.model import ReIDNet, load_checkpoint

INPUT_NAME = "images"
OUTPUT_NAME = "features"
PRECISIONS = ("fp32", "fp16")


def ensure_writable(path: str | Path) -> Path:
    """Fail early, before minutes of work, when ``path`` cannot be written."""
    path = Path(path)
    parent = path.parent
    if path.is_dir():
        raise ValueError(f"output path {path} is a directory; give a file name")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"cannot create the output folder {parent}: {exc.strerror or exc}") from exc
    if not os.access(parent, os.W_OK):
        raise ValueError(f"output folder {parent} is not writable")
    return path


def set_metadata(proto: onnx.ModelProto, metadata: ModelMetadata) -> None:
    """Replace the model's metadata_props with ``metadata`` and check the model (onnx.checker, full)."""
    del proto.metadata_props[:]
    for key, value in metadata.to_strings().items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name = "reid-sdk"
    onnx.checker.check_model(proto, full_check=True)


def export_network(model: ReIDNet, metadata: ModelMetadata, path: str | Path, precision: str = "fp32",
                   opset: int = DEFAULT_OPSET) -> Path:
    """Export ``model`` (any device) to ``path``; fp16 keeps uint8 input and float32 output."""
    if precision not in PRECISIONS:
        raise ValueError(f"ONNX precision must be one of {PRECISIONS}, got {precision!r}")
    path = ensure_writable(path)
    network = copy.deepcopy(model).cpu().eval()
    if precision == "fp16":
        network = network.half()
    height, width = network.input_size
    example = torch.zeros(2, 3, height, width, dtype=torch.uint8)
    batch = torch.export.Dim("batch", min=1, max=65536)
    with contextlib.redirect_stdout(io.StringIO()):  # the exporter prints progress lines
        program = torch.onnx.export(network, (example,), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                    dynamic_shapes=({0: batch},), opset_version=opset, dynamo=True,
                                    external_data=False)
    proto = program.model_proto
    proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    proto.graph.output[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    set_metadata(proto, metadata)
    with atomic_write(path) as handle:
        handle.write(proto.SerializeToString())
    return path


def export_onnx(checkpoint: str | Path, path: str | Path, precision: str = "fp32",
                opset: int = DEFAULT_OPSET) -> Path:
    """Export the network of a reid-sdk checkpoint file to ONNX."""
    ensure_writable(path)
    model, payload = load_checkpoint(checkpoint)
    return export_network(model, ModelMetadata.from_checkpoint(payload, precision), path, precision, opset)
