"""ONNX -> serialized TensorRT engine with a dynamic-batch optimisation profile, on TensorRT 10 and 11.

Engines are strongly typed: the precision comes from the ONNX file (fp32 ONNX -> fp32 engine, fp16 ONNX ->
fp16, the INT8 Q/DQ ONNX of :mod:`reid_sdk.export.int8` -> INT8 by explicit quantization), because
TensorRT 11 removed the FP16/INT8 builder flags, the INT8 calibrator and implicit quantization. An fp32
engine is built without TF32, so it keeps the fp32 parity promise on Ampere and later GPUs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import ModuleType

from reid_sdk._utils.atomic_file import atomic_write
from reid_sdk.inference.model_contract import ModelMetadata, write_sidecar
from reid_sdk.inference.backends.tensorrt_backend import require_tensorrt

log = logging.getLogger(__name__)

ENGINE_PRECISIONS = ("fp32", "fp16", "int8")
DEFAULT_BATCH_PROFILE = (1, 32, 256)


def parse_batch_profile(text: str) -> tuple[int, int, int]:
    """``"1:32:256"`` -> (1, 32, 256); requires 1 <= min <= opt <= max."""
    try:
        low, opt, high = (int(part) for part in text.split(":"))
    except ValueError as exc:
        raise ValueError(f"batch profile must be MIN:OPT:MAX integers, got {text!r}") from exc
    return check_batch_profile((low, opt, high))


def check_batch_profile(profile: tuple[int, int, int]) -> tuple[int, int, int]:
    """``profile`` (min, opt, max) when 1 <= min <= opt <= max, else a ValueError."""
    low, opt, high = profile
    if not 1 <= low <= opt <= high:
        raise ValueError(f"batch profile needs 1 <= min <= opt <= max, got {low}:{opt}:{high}")
    return low, opt, high


def profile_shapes(profile: tuple[int, int, int], input_size: tuple[int, int]) -> tuple[tuple[int, ...], ...]:
    """(min, opt, max) input shapes N x 3 x H x W of the optimisation profile."""
    return tuple((batch, 3, *input_size) for batch in profile)


def network_flags(trt: ModuleType) -> int:
    """create_network flags: strongly typed (TensorRT 11 keeps the flag, deprecated, as always on)."""
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return 0 if flag is None else 1 << int(flag)


def configure_builder(trt: ModuleType, config, precision: str, workspace_gib: float) -> None:
    """Workspace limit, and TF32 off for an fp32 engine (TensorRT enables TF32 by default)."""
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if precision == "fp32":
        config.clear_flag(trt.BuilderFlag.TF32)


def build_engine(onnx_path: str | Path, engine_path: str | Path, metadata: ModelMetadata,
                 profile: tuple[int, int, int], workspace_gib: float = 4.0) -> Path:
    """Build and write the engine of ``onnx_path`` at ``metadata.precision``, plus its JSON sidecar."""
    if metadata.precision not in ENGINE_PRECISIONS:
        raise ValueError(f"engine precision must be one of {ENGINE_PRECISIONS}, got {metadata.precision!r}")
    trt = require_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ValueError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    configure_builder(trt, config, metadata.precision, workspace_gib)
    optimisation = builder.create_optimization_profile()
    optimisation.set_shape(network.get_input(0).name, *profile_shapes(profile, metadata.input_size))
    config.add_optimization_profile(optimisation)
    log.info("building a strongly typed TensorRT %s %s engine (batch profile %s); this takes minutes",
             trt.__version__, metadata.precision, ":".join(map(str, profile)))
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError("TensorRT failed to build the engine; its log above says why")
    engine_path = Path(engine_path)
    with atomic_write(engine_path) as handle:
        handle.write(bytes(serialized))
    write_sidecar(engine_path, metadata, profile)
    return engine_path
