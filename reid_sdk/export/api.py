"""``export_model``: a reid-sdk checkpoint to one deployable file, whatever the format.

The chain per format: fp32 / fp16 ONNX straight from the network; INT8 Q/DQ ONNX through calibration on crops;
a TensorRT engine built from the ONNX of its precision (engines are strongly typed: the ONNX sets the precision).
An ONNX file may take float32 input normalised outside (:class:`InputContract`), for BoxMOT, DeepStream and
Triton; its DeepStream nvinfer and Triton configuration files are then written beside it (serving_configs).
Options that do not apply to the format are a ValueError before any work starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from reid_sdk.export.calibration import DEFAULT_MAX_IMAGES
from reid_sdk.export.formats import DEFAULT_ENGINE_PRECISION, DEFAULT_OPSET, FORMATS, ONNX_PRECISIONS, InputContract
from reid_sdk.export.int8_recipe import Int8Recipe
from reid_sdk.export.onnx_export import export_onnx
from reid_sdk.export.serving_configs import write_serving_configs
from reid_sdk.export.tensorrt_build import DEFAULT_BATCH_PROFILE, ENGINE_PRECISIONS, build_engine, check_batch_profile
from reid_sdk.inference.backends.tensorrt_backend import require_tensorrt
from reid_sdk.inference.model_contract import ModelMetadata
from reid_sdk.model import read_checkpoint


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_model` wrote: the file, its format, the precision it runs at, and the serving
    configuration files written beside it (float32 input only)."""

    path: Path
    format: str
    precision: str
    configs: tuple[Path, ...] = ()


def _checked_precision(format: str, precision: str | None, calibration: str | Path | None,
                       calibration_images: int, contract: InputContract) -> str:
    """The precision a ``format`` file runs at, checking the options given with it (ValueError, one line)."""
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    if format == "tensorrt" and contract != InputContract():
        raise ValueError("float32 input and a fixed batch are for ONNX files that other tools build and run "
                         "(DeepStream builds its own engine from one); a reid-sdk engine takes uint8 input and "
                         "a batch profile")
    if format == "tensorrt":
        chosen = precision or DEFAULT_ENGINE_PRECISION
        if chosen not in ENGINE_PRECISIONS:
            raise ValueError(f"engine precision must be one of {', '.join(ENGINE_PRECISIONS)}, got {chosen!r}")
    else:
        chosen = ONNX_PRECISIONS[format]
        if precision not in (None, chosen):
            raise ValueError(f"precision {precision} is for format tensorrt; format {format} runs at {chosen}")
    if calibration is not None and chosen != "int8":
        raise ValueError(f"calibration is for INT8 (format onnx-int8, or tensorrt at precision int8), "
                         f"not {format} at {chosen}")
    if calibration_images < 1:
        raise ValueError(f"calibration_images must be >= 1, got {calibration_images}")
    return chosen


def export_model(checkpoint: str | Path, format: str, out: str | Path, precision: str | None = None,
                 calibration: str | Path | None = None, calibration_images: int = DEFAULT_MAX_IMAGES,
                 opset: int = DEFAULT_OPSET,
                 batch_profile: tuple[int, int, int] = DEFAULT_BATCH_PROFILE,
                 contract: InputContract = InputContract(), recipe: Int8Recipe | None = None) -> ExportResult:
    """Export a reid-sdk checkpoint to ``out`` as ``format`` (one of :data:`FORMATS`).

    ``precision`` is the engine's for ``tensorrt`` (default fp16); an ONNX format names its own. INT8 is
    calibrated on the crops in the folder ``calibration`` (at most ``calibration_images``; None: rendered
    synthetic pedestrians) by ``recipe`` (None: the one measured for the checkpoint's backbone,
    :meth:`Int8Recipe.for_backbone`). An engine keeps its ONNX beside
    it (``out`` with suffix .onnx) and is built for ``batch_profile`` (min, opt, max). ``contract`` (ONNX only):
    uint8 or float32 input, dynamic or fixed batch; float32 files get their DeepStream and Triton configuration
    beside them (dynamic batch: ``batch_profile``'s opt and max are their batch sizes).
    """
    chosen = _checked_precision(format, precision, calibration, calibration_images, contract)
    if recipe is not None and chosen != "int8":
        raise ValueError(f"an INT8 recipe is for INT8 (format onnx-int8, or tensorrt at precision int8), "
                         f"not {format} at {chosen}")
    out = Path(out)
    profile = check_batch_profile(batch_profile)
    if format != "tensorrt":
        path = _export_onnx(checkpoint, out, chosen, calibration, calibration_images, opset, contract, recipe)
        configs = write_serving_configs(path, profile) if contract.dtype == "float32" else ()
        return ExportResult(path, format, chosen, configs)

    require_tensorrt()  # before minutes of ONNX export and calibration
    onnx_path = _export_onnx(checkpoint, out.with_suffix(".onnx"), chosen, calibration, calibration_images, opset,
                             recipe=recipe)
    metadata = ModelMetadata.from_checkpoint(read_checkpoint(checkpoint), chosen)
    return ExportResult(build_engine(onnx_path, out, metadata, profile), format, chosen)


def _export_onnx(checkpoint: str | Path, path: Path, precision: str, calibration: str | Path | None,
                 calibration_images: int, opset: int, contract: InputContract = InputContract(),
                 recipe: Int8Recipe | None = None) -> Path:
    """The ONNX file at ``precision``: exported directly, or for INT8 quantized after calibration."""
    if precision != "int8":
        return export_onnx(checkpoint, path, precision, opset, contract)
    from reid_sdk.export.int8 import export_onnx_int8  # needs ONNX Runtime's quantization tools

    return export_onnx_int8(checkpoint, path, calibration, calibration_images, opset=opset,
                            recipe=recipe, contract=contract)
