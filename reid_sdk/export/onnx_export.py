"""Checkpoint -> ONNX: fixed H x W, dynamic (or fixed) batch, metadata attached.

Input contract (:class:`~reid_sdk.export.formats.InputContract`): raw uint8 RGB with the normalisation inside the
graph (reid-sdk's own), or float32 RGB normalised outside with the ImageNet mean / std (what other tools feed);
the metadata records which, so FeatureExtractor feeds either.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import os
from pathlib import Path

import onnx
import torch

from reid_sdk._utils.atomic_file import atomic_write
from reid_sdk.export.formats import DEFAULT_OPSET, InputContract
from reid_sdk.inference.model_contract import ModelMetadata
from reid_sdk.model import ReIDNet, load_checkpoint
from reid_sdk.model.config import PIXEL_MEAN, PIXEL_STD

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


def with_contract(metadata: ModelMetadata, contract: InputContract) -> ModelMetadata:
    """``metadata`` recording ``contract``: float32 input carries the ImageNet mean / std on the 0..1 scale."""
    if contract.dtype == "uint8":
        return dataclasses.replace(metadata, input_dtype="uint8", input_mean=None, input_std=None)
    return dataclasses.replace(metadata, input_dtype="float32", input_mean=tuple(round(v / 255, 6) for v in PIXEL_MEAN),
                               input_std=tuple(round(v / 255, 6) for v in PIXEL_STD))


def _network_for(model: ReIDNet, precision: str, contract: InputContract) -> ReIDNet:
    """An eval-mode CPU copy of ``model`` at ``precision``; for float32 input its own normalisation is the
    identity (mean 0, std 1), since the caller normalises with the same statistics outside."""
    network = copy.deepcopy(model).cpu().eval()
    if precision == "fp16":
        network = network.half()
    if contract.dtype == "float32":
        network.pixel_mean = torch.zeros_like(network.pixel_mean)
        network.pixel_std = torch.ones_like(network.pixel_std)
    return network


def export_network(model: ReIDNet, metadata: ModelMetadata, path: str | Path, precision: str = "fp32",
                   opset: int = DEFAULT_OPSET, contract: InputContract = InputContract()) -> Path:
    """Export ``model`` (any device) to ``path`` taking ``contract``'s input; fp16 keeps a float32 output and the
    contract's input type."""
    if precision not in PRECISIONS:
        raise ValueError(f"ONNX precision must be one of {PRECISIONS}, got {precision!r}")
    path = ensure_writable(path)
    network = _network_for(model, precision, contract)
    height, width = network.input_size
    dtype = torch.uint8 if contract.dtype == "uint8" else torch.float32
    example = torch.zeros(contract.batch or 2, 3, height, width, dtype=dtype)
    dynamic = None if contract.batch else ({0: torch.export.Dim("batch", min=1, max=65536)},)
    with contextlib.redirect_stdout(io.StringIO()):  # the exporter prints progress lines
        program = torch.onnx.export(network, (example,), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                    dynamic_shapes=dynamic, opset_version=opset, dynamo=True, external_data=False)
    proto = program.model_proto
    if not contract.batch:
        proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
        proto.graph.output[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    set_metadata(proto, with_contract(metadata, contract))
    with atomic_write(path) as handle:
        handle.write(proto.SerializeToString())
    return path


def export_onnx(checkpoint: str | Path, path: str | Path, precision: str = "fp32", opset: int = DEFAULT_OPSET,
                contract: InputContract = InputContract()) -> Path:
    """Export the network of a reid-sdk checkpoint file to ONNX."""
    ensure_writable(path)
    model, payload = load_checkpoint(checkpoint)
    return export_network(model, ModelMetadata.from_checkpoint(payload, precision), path, precision, opset, contract)
