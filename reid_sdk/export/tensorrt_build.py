"""ONNX -> serialized TensorRT engine with a dynamic-batch optimisation profile (fp32, fp16 or INT8).

fp32 and fp16 engines are built as strongly typed networks: the precision comes from
the ONNX graph (export an fp16 ONNX for an fp16 engine), as current TensorRT requires.
INT8 uses entropy calibration on a folder of crops.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from reid_sdk.atomic_file import atomic_write
from reid_sdk.backends.tensorrt_backend import require_tensorrt
from reid_sdk.datasets.files import image_files, read_image, warn_skipped
from reid_sdk.backends.model_contract import ModelMetadata, write_sidecar
from reid_sdk.preprocess import preprocess_batch

log = logging.getLogger(__name__)

ENGINE_PRECISIONS = ("fp32", "fp16", "int8")


def parse_batch_profile(text: str) -> tuple[int, int, int]:
    """``"1:32:256"`` -> (1, 32, 256); requires 1 <= min <= opt <= max."""
    try:
        low, opt, high = (int(part) for part in text.split(":"))
    except ValueError as exc:
        raise ValueError(f"batch profile must be MIN:OPT:MAX integers, got {text!r}") from exc
    if not 1 <= low <= opt <= high:
        raise ValueError(f"batch profile needs 1 <= min <= opt <= max, got {low}:{opt}:{high}")
    return low, opt, high


def profile_shapes(profile: tuple[int, int, int], input_size: tuple[int, int]) -> tuple[tuple[int, ...], ...]:
    """(min, opt, max) input shapes N x 3 x H x W of the optimisation profile."""
    return tuple((batch, 3, *input_size) for batch in profile)


class CalibrationBatches:
    """uint8 RGB batches of the crops in a folder (recursive), preprocessed exactly like inference.

    Unreadable files are skipped and counted in one warning; an empty folder is an error.
    """

    def __init__(self, folder: str | Path, input_size: tuple[int, int], batch_size: int, max_images: int = 512):
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"calibration folder not found: {folder}")
        self.files = image_files(folder, recursive=True)[:max_images]
        if not self.files:
            raise ValueError(f"calibration folder {folder} has no images")
        self.input_size = input_size
        self.batch_size = batch_size
        self.skipped: list[Path] = []

    def __iter__(self) -> Iterator[np.ndarray]:
        crops = []
        for path in self.files:
            image = read_image(path)
            if image is None:
                self.skipped.append(path)
                continue
            crops.append(image)
            if len(crops) == self.batch_size:
                yield preprocess_batch(crops, self.input_size)
                crops = []
        if crops:
            yield preprocess_batch(crops, self.input_size)
        warn_skipped(self.skipped, "calibration images")


def _entropy_calibrator(trt, batches: CalibrationBatches, cache: Path):
    """A TensorRT entropy calibrator feeding ``batches`` from CUDA memory (torch allocates it)."""
    import torch

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            super().__init__()
            self._batches = iter(batches)
            self._device_batch = None

        def get_batch_size(self) -> int:
            return batches.batch_size

        def get_batch(self, names):
            batch = next(self._batches, None)
            if batch is None:
                return None
            self._device_batch = torch.from_numpy(np.ascontiguousarray(batch)).cuda()
            return [int(self._device_batch.data_ptr())]

        def read_calibration_cache(self):
            return cache.read_bytes() if cache.is_file() else None

        def write_calibration_cache(self, data) -> None:
            cache.write_bytes(bytes(data))

    return Calibrator()


def build_engine(onnx_path: str | Path, engine_path: str | Path, metadata: ModelMetadata,
                 profile: tuple[int, int, int], precision: str = "fp16", calibration_dir: str | Path | None = None,
                 workspace_gib: float = 4.0) -> Path:
    """Build and write the engine plus its JSON sidecar; returns the engine path."""
    if precision not in ENGINE_PRECISIONS:
        raise ValueError(f"engine precision must be one of {ENGINE_PRECISIONS}, got {precision!r}")
    if precision == "int8" and calibration_dir is None:
        raise ValueError("an INT8 engine needs calibration crops: pass --calibration DIR")
    trt = require_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    typed = precision != "int8"
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if typed else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ValueError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    optimisation = builder.create_optimization_profile()
    optimisation.set_shape(network.get_input(0).name, *profile_shapes(profile, metadata.input_size))
    config.add_optimization_profile(optimisation)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        config.set_flag(trt.BuilderFlag.FP16)
        batches = CalibrationBatches(calibration_dir, metadata.input_size, batch_size=profile[1])
        config.int8_calibrator = _entropy_calibrator(trt, batches, Path(str(engine_path) + ".calibration"))
        config.set_calibration_profile(optimisation)
    log.info("building TensorRT %s engine (profile %s), this takes minutes", precision, profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError("TensorRT failed to build the engine; its log above says why")
    engine_path = Path(engine_path)
    with atomic_write(engine_path) as handle:
        handle.write(bytes(serialized))
    write_sidecar(engine_path, metadata, profile)
    return engine_path
