"""What an ONNX model is fed: reid-sdk's own files say it in their metadata, foreign ones are told.

reid-sdk exports take raw uint8 RGB N x 3 x H x W and normalise inside the graph. Files exported by torchreid,
fast-reid or BoxMOT usually take float32 N x 3 x H x W normalised OUTSIDE the graph,
``(pixel / 255 - mean) / std`` (ImageNet: mean 0.485 0.456 0.406, std 0.229 0.224 0.225), often at a fixed
batch size. Nothing about such a file is guessed: the element type and any fixed sizes are read from the graph,
the rest (channel order, mean and std for float inputs, the size when the graph leaves it open) must be given,
and options that contradict a file's metadata or graph raise.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING

import numpy as np

from reid_sdk.inference.model_contract import (METADATA_PREFIX, ModelMetadata, check_image_graph,
                                               check_metadata_matches_graph)

if TYPE_CHECKING:
    import onnxruntime as ort

logger = logging.getLogger(__name__)

MODEL_CHANNEL_ORDERS = ("rgb", "bgr")
_ONNX_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(uint8)": "uint8"}
_EXAMPLE = ("e.g. for torchreid / BoxMOT exports: input_size=(256, 128), mean=(0.485, 0.456, 0.406), "
            "std=(0.229, 0.224, 0.225), model_channel_order='rgb'")


def _triple(value: Sequence[float] | None, name: str, positive: bool) -> tuple[float, float, float] | None:
    if value is None:
        return None
    try:
        triple = tuple(float(v) for v in value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be three numbers (R, G, B), got {value!r}") from error
    if len(triple) != 3 or not np.isfinite(triple).all() or (positive and min(triple) <= 0):
        raise ValueError(f"{name} must be three finite numbers (R, G, B){' > 0' if positive else ''}, got {value!r}")
    return triple  # type: ignore[return-value]


@dataclass(frozen=True)
class InputOptions:
    """What the caller says about a model's input; None = not said.

    ``mean`` / ``std`` are per RGB channel on the 0..1 pixel scale (the model is fed
    ``(pixel / 255 - mean) / std``; for a graph that wants raw 0..255 floats: mean 0, std 1/255);
    ``input_dtype`` one of float32, float16, uint8; ``model_channel_order`` the order the MODEL expects
    (crops' own order is FeatureExtractor's ``channel_order``).
    """

    input_size: tuple[int, int] | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    input_dtype: str | None = None
    model_channel_order: str | None = None

    def __post_init__(self) -> None:
        if self.input_size is not None:
            size = tuple(self.input_size)
            if len(size) != 2 or not all(isinstance(v, (int, np.integer)) and v > 0 for v in size):
                raise ValueError(f"input_size must be (height, width) positive ints, got {self.input_size!r}")
            object.__setattr__(self, "input_size", (int(size[0]), int(size[1])))
        object.__setattr__(self, "mean", _triple(self.mean, "mean", positive=False))
        object.__setattr__(self, "std", _triple(self.std, "std", positive=True))
        if self.input_dtype is not None and self.input_dtype not in _ONNX_TYPES.values():
            raise ValueError(f"input_dtype must be one of {tuple(_ONNX_TYPES.values())}, got {self.input_dtype!r}")
        if self.model_channel_order is not None and self.model_channel_order not in MODEL_CHANNEL_ORDERS:
            raise ValueError(f"model_channel_order must be one of {MODEL_CHANNEL_ORDERS}, "
                             f"got {self.model_channel_order!r}")

    def given(self) -> list[str]:
        """Names of the options that were set."""
        return [field.name for field in fields(self) if getattr(self, field.name) is not None]


@dataclass(frozen=True)
class InputFeed:
    """Turns the SDK's uint8 RGB N x 3 x H x W batches into what the model takes, at its batch size."""

    name: str
    dtype: str
    channel_order: str = "rgb"
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    fixed_batch: int | None = None

    def describe(self) -> str:
        text = f"{self.dtype} {self.channel_order.upper()} N x 3 x H x W"
        if self.mean is not None:
            text += f", (pixel / 255 - mean {self.mean}) / std {self.std}"
        return text + (f", batch fixed at {self.fixed_batch}" if self.fixed_batch else "")

    def tensor(self, batch: np.ndarray) -> np.ndarray:
        """The model input for a uint8 RGB batch."""
        if self.channel_order == "bgr":
            batch = batch[:, ::-1]
        if self.mean is None:
            return np.ascontiguousarray(batch, dtype=self.dtype)
        scaled = batch.astype(np.float32) * np.float32(1 / 255)
        scaled -= np.asarray(self.mean, np.float32)[:, None, None]
        scaled /= np.asarray(self.std, np.float32)[:, None, None]
        return scaled.astype(self.dtype, copy=False)

    def run(self, infer: Callable[[np.ndarray], np.ndarray], batch: np.ndarray) -> np.ndarray:
        """The model's output for ``batch`` via ``infer`` (model input -> first output); a fixed-batch model
        runs chunk by chunk, the last padded."""
        step = self.fixed_batch or len(batch)
        outputs = []
        for start in range(0, len(batch), step):
            chunk = self.tensor(batch[start : start + step])
            count = len(chunk)
            if count < step:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], step - count, axis=0)])
            outputs.append(np.asarray(infer(chunk))[:count])
        return np.concatenate(outputs)


def _static(value: object) -> int | None:
    return value if isinstance(value, int) and value > 0 else None


def _ours(session: ort.InferenceSession, options: InputOptions, source: str, dtype: str,
          model_input: ort.NodeArg) -> tuple[ModelMetadata, InputFeed]:
    """A reid-sdk export: its metadata rules (uint8 pixels normalised inside, or float32 normalised outside with
    the recorded mean / std, at the graph's batch size); options may only repeat it."""
    metadata = ModelMetadata.from_strings(session.get_modelmeta().custom_metadata_map, source=source)
    if metadata.input_dtype != dtype:
        raise ValueError(f"{source}: its reid-sdk metadata says input_dtype {metadata.input_dtype} but the graph "
                         f"takes {dtype}; export it again with reid-export")
    said = {"input_size": metadata.input_size, "input_dtype": dtype, "model_channel_order": metadata.channel_order,
            "mean": metadata.input_mean, "std": metadata.input_std}
    conflicts = [f"{name} (the model normalises inside its graph)" if said[name] is None
                 else f"{name}={getattr(options, name)!r} (the file says {said[name]!r})" for name in said
                 if getattr(options, name) is not None and getattr(options, name) != said[name]]
    if conflicts:
        raise ValueError(f"{source} is a reid-sdk model whose metadata contradicts: {', '.join(conflicts)}; "
                         "leave these options out")
    return metadata, InputFeed(model_input.name, dtype, metadata.channel_order, metadata.input_mean,
                               metadata.input_std, _static(model_input.shape[0]))


def _foreign(session: ort.InferenceSession, options: InputOptions, source: str, dtype: str,
             model_input: ort.NodeArg) -> tuple[ModelMetadata, InputFeed]:
    """A file without reid-sdk metadata: the graph's declared shape and type plus the caller's options."""
    shape = list(model_input.shape)
    graph_size = (_static(shape[2]), _static(shape[3]))
    conflicts, missing = [], []
    if options.input_size is not None and None not in graph_size and options.input_size != graph_size:
        conflicts.append(f"input_size={options.input_size} (the graph fixes {graph_size})")
    if options.input_dtype is not None and options.input_dtype != dtype:
        conflicts.append(f"input_dtype={options.input_dtype!r} (the graph takes {dtype})")
    if dtype == "uint8" and (options.mean is not None or options.std is not None):
        conflicts.append("mean/std (the graph takes uint8 pixels, so it normalises them itself)")
    if conflicts:
        raise ValueError(f"{source}: options contradict the model: {', '.join(conflicts)}")
    size = options.input_size or (graph_size if None not in graph_size else None)
    if size is None:
        missing.append("input_size")
    if dtype != "uint8":
        missing += [name for name in ("mean", "std") if getattr(options, name) is None]
    if options.model_channel_order is None:
        missing.append("model_channel_order")
    if missing:
        raise ValueError(f"{source} has no reid-sdk metadata ({METADATA_PREFIX}*), so its input must be described: "
                         f"missing {', '.join(missing)} ({_EXAMPLE})")
    feed = InputFeed(model_input.name, dtype, options.model_channel_order, options.mean, options.std,
                     _static(shape[0]))
    feature_dim = _static(session.get_outputs()[0].shape[1])
    if feature_dim is None:  # the graph leaves D open: one run on a blank batch tells it
        feature_dim = int(feed.run(lambda tensor: session.run(None, {feed.name: tensor})[0],
                                   np.zeros((1, 3, *size), np.uint8)).shape[1])
    logger.info("%s has no reid-sdk metadata: feeding %s at %d x %d", source, feed.describe(), *size)
    return ModelMetadata(input_size=size, feature_dim=feature_dim, channel_order=feed.channel_order,
                         precision="fp16" if dtype == "float16" else "fp32"), feed


def describe_input(session: ort.InferenceSession, options: InputOptions,
                   source: str) -> tuple[ModelMetadata, InputFeed]:
    """The model's metadata and how to feed it: from reid-sdk metadata when the file has it, else from the
    graph and ``options``; ValueError naming contradicting or missing options, or a graph the SDK cannot feed
    (several inputs, another shape) or whose fixed sizes contradict its metadata."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    input_shape = [_static(size) for size in inputs[0].shape] if inputs else []
    output_shape = [_static(size) for size in outputs[0].shape] if outputs else []
    check_image_graph([node.name for node in inputs], input_shape, output_shape, source)
    model_input = inputs[0]
    dtype = _ONNX_TYPES.get(model_input.type)
    if dtype is None:
        raise ValueError(f"{source} takes {model_input.type} input; supported: {', '.join(_ONNX_TYPES)}")
    props = session.get_modelmeta().custom_metadata_map
    if any(key.startswith(METADATA_PREFIX) for key in props):
        metadata, feed = _ours(session, options, source, dtype, model_input)
        check_metadata_matches_graph(metadata, input_shape, output_shape, source)
        return metadata, feed
    return _foreign(session, options, source, dtype, model_input)


def with_input_size(options: InputOptions | None, input_size: tuple[int, int] | None) -> InputOptions:
    """``options`` with ``input_size`` filled in (the older separate argument)."""
    options = options or InputOptions()
    return options if input_size is None else replace(options, input_size=input_size)
