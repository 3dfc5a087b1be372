"""What an export can write, named once and torch-free (``reid-export`` builds its options from it): the
formats, the precision each ONNX format runs at, the input contracts, and the defaults."""

from __future__ import annotations

from dataclasses import dataclass

#: The ONNX formats and the precision each runs at; ``tensorrt`` runs at the precision asked for.
ONNX_PRECISIONS = {"onnx": "fp32", "onnx-fp16": "fp16", "onnx-int8": "int8"}
FORMATS = (*ONNX_PRECISIONS, "tensorrt")
DEFAULT_ENGINE_PRECISION = "fp16"
DEFAULT_OPSET = 18

#: The input contracts an ONNX export can take (reid_sdk.inference.model_contract.INPUT_DTYPES).
INPUTS = ("uint8", "float32")


@dataclass(frozen=True)
class InputContract:
    """What an exported graph takes. ``dtype`` "uint8": raw RGB pixels N x 3 x H x W, normalised inside the graph
    (reid-sdk's own); "float32": RGB normalised outside with the ImageNet mean / std, ``(pixel / 255 - mean) /
    std``, what BoxMOT, DeepStream's nvinfer and Triton ensembles feed. ``batch``: a fixed batch size, or None
    for a dynamic one."""

    dtype: str = "uint8"
    batch: int | None = None

    def __post_init__(self) -> None:
        if self.dtype not in INPUTS:
            raise ValueError(f"input must be one of {', '.join(INPUTS)}, got {self.dtype!r}")
        if self.batch is not None and self.batch < 1:
            raise ValueError(f"a fixed batch size must be >= 1, got {self.batch}")
