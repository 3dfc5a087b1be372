"""What an exported model says about itself, so the SDK configures itself from the file.

Stored as ONNX ``metadata_props`` (string pairs) and as the JSON sidecar of a
TensorRT engine. Torch-free.

``model_id`` is the identity of the features a model produces, which a gallery records so that it is
never searched with another model's features: for reid-sdk models a hash of the architecture and the
weights (the same for a checkpoint and its ONNX / TensorRT exports at any precision), for files without
reid-sdk metadata a hash of the file's bytes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from collections.abc import Mapping, Sequence
from typing import Any

from reid_sdk import __version__

METADATA_PREFIX = "reid_sdk."
SIDECAR_SUFFIX = ".json"
#: What a model's input tensor holds: raw RGB pixels normalised inside the graph (reid-sdk's own contract), or
#: float32 RGB already normalised outside, ``(pixel / 255 - mean) / std`` (what BoxMOT, DeepStream and Triton feed).
INPUT_DTYPES = ("uint8", "float32")


@dataclass(frozen=True)
class ModelMetadata:
    """Input size (H, W), channel order, input contract and feature dim a backend needs, plus provenance.

    ``input_dtype`` "uint8": raw pixels, normalised inside the graph; "float32": normalised outside with
    ``input_mean`` / ``input_std`` (per RGB channel, on the 0..1 pixel scale), which are None for uint8.
    """

    input_size: tuple[int, int]
    feature_dim: int
    channel_order: str = "rgb"
    input_dtype: str = "uint8"
    input_mean: tuple[float, float, float] | None = None
    input_std: tuple[float, float, float] | None = None
    pooling: str = "unknown"
    backbone: str = "unknown"
    precision: str = "fp32"
    config_hash: str = ""
    sdk_version: str = __version__
    model_id: str = ""

    def to_strings(self) -> dict[str, str]:
        """Prefixed string pairs for ONNX ``metadata_props``."""
        values = asdict(self)
        values["input_size"] = f"{self.input_size[0]}x{self.input_size[1]}"
        for key in ("input_mean", "input_std"):
            values[key] = "" if values[key] is None else ",".join(repr(float(v)) for v in values[key])
        return {METADATA_PREFIX + key: str(value) for key, value in values.items()}

    def __post_init__(self) -> None:
        if self.input_dtype not in INPUT_DTYPES:
            raise ValueError(f"input_dtype must be one of {', '.join(INPUT_DTYPES)}, got {self.input_dtype!r}")
        normalised_outside = self.input_mean is not None and self.input_std is not None
        if normalised_outside != (self.input_dtype == "float32"):
            raise ValueError("input_mean and input_std go with input_dtype float32 (normalised outside the graph), "
                             f"and only with it; got {self.input_dtype} with mean {self.input_mean}, "
                             f"std {self.input_std}")

    @classmethod
    def from_strings(cls, props: dict[str, str], source: str = "model") -> ModelMetadata:
        """Parse ``to_strings`` output; ValueError naming the file and what is missing or malformed."""
        ours = {k.removeprefix(METADATA_PREFIX): v for k, v in props.items() if k.startswith(METADATA_PREFIX)}
        missing = [key for key in ("input_size", "feature_dim") if key not in ours]
        if missing:
            raise ValueError(
                f"{source} has no reid-sdk metadata ({', '.join(METADATA_PREFIX + k for k in missing)} missing); "
                "export it with reid-export, or pass input_size=(H, W) explicitly"
            )
        try:
            height, width = (int(v) for v in ours["input_size"].lower().split("x"))
            return cls(input_size=(height, width), feature_dim=int(ours["feature_dim"]),
                       channel_order=ours.get("channel_order", "rgb"), pooling=ours.get("pooling", "unknown"),
                       backbone=ours.get("backbone", "unknown"), precision=ours.get("precision", "fp32"),
                       config_hash=ours.get("config_hash", ""), sdk_version=ours.get("sdk_version", ""),
                       model_id=ours.get("model_id", ""), input_dtype=ours.get("input_dtype", "uint8"),
                       input_mean=_triple_or_none(ours.get("input_mean", "")),
                       input_std=_triple_or_none(ours.get("input_std", "")))
        except ValueError as exc:
            raise ValueError(f"{source} has malformed reid-sdk metadata {ours}: {exc}") from exc

    @classmethod
    def from_checkpoint(cls, payload: dict[str, Any], precision: str = "fp32") -> ModelMetadata:
        """Metadata of a checkpoint dict (see reid_sdk.model.checkpoint) exported at ``precision``."""
        config = payload["model_config"]
        return cls(input_size=tuple(payload["input_size"]), feature_dim=int(payload["feature_dim"]),
                   pooling=config["pooling"], backbone=config["backbone"], precision=precision,
                   config_hash=config_hash(payload),
                   model_id=weights_fingerprint(payload["model_config"], payload["state_dict"]))


def _triple_or_none(text: str) -> tuple[float, float, float] | None:
    """"a,b,c" -> three floats; "" -> None (ValueError otherwise)."""
    if not text:
        return None
    values = tuple(float(value) for value in text.split(","))
    if len(values) != 3:
        raise ValueError(f"expected three comma-separated numbers, got {text!r}")
    return values  # type: ignore[return-value]


def check_image_graph(input_names: Sequence[str], input_shape: Sequence[int | None],
                      output_shape: Sequence[int | None], source: str) -> None:
    """ValueError unless a graph takes one N x 3 x H x W input and returns (N, D) features, what the SDK feeds
    and reads (shapes: a fixed size per axis, None where the graph leaves it open)."""
    if len(input_names) != 1:
        raise ValueError(f"{source} takes {len(input_names)} inputs ({', '.join(input_names)}); the SDK feeds one "
                         "N x 3 x H x W image input")
    if len(input_shape) != 4 or input_shape[1] != 3:
        raise ValueError(f"{source} takes input {input_names[0]!r} of shape {list(input_shape)}; the SDK feeds "
                         "N x 3 x H x W")
    if len(output_shape) != 2:
        raise ValueError(f"{source} returns features of shape {list(output_shape)}; the SDK expects (N, D)")


def check_metadata_matches_graph(metadata: ModelMetadata, input_shape: Sequence[int | None],
                                 output_shape: Sequence[int | None], source: str) -> None:
    """ValueError when a size the graph fixes (input H x W, feature dim D) contradicts the file's metadata, which
    would otherwise fail only at the first ``extract``; shapes as in :func:`check_image_graph`."""
    height, width = input_shape[2:4]
    conflicts = []
    if height not in (None, metadata.input_size[0]) or width not in (None, metadata.input_size[1]):
        conflicts.append(f"input_size {metadata.input_size[0]}x{metadata.input_size[1]} but the graph takes "
                         f"{height or '?'}x{width or '?'}")
    if output_shape[1] not in (None, metadata.feature_dim):
        conflicts.append(f"feature_dim {metadata.feature_dim} but the graph returns {output_shape[1]}")
    if conflicts:
        raise ValueError(f"{source}: its reid-sdk metadata contradicts its graph ({'; '.join(conflicts)}); "
                         "export it again with reid-export")


def config_hash(payload: dict[str, Any]) -> str:
    """Short stable hash of the model config and the training config recorded in a checkpoint."""
    document = {"model": payload["model_config"], "training": payload.get("metadata", {}).get("config")}
    return hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()[:16]


def weights_fingerprint(model_config: Mapping[str, Any], state_dict: Mapping[str, Any]) -> str:
    """``reid-sdk:`` + 16 hex of SHA-256 over the architecture and every weight (as float32).

    ``pretrained`` (where the initial weights came from) is left out: the weights themselves are hashed.
    """
    architecture = {key: value for key, value in model_config.items() if key != "pretrained"}
    digest = hashlib.sha256(json.dumps(architecture, sort_keys=True, default=str).encode())
    for name in sorted(state_dict):
        digest.update(name.encode())
        digest.update(state_dict[name].detach().cpu().float().contiguous().numpy().tobytes())
    return "reid-sdk:" + digest.hexdigest()[:16]


def file_fingerprint(path: str | Path) -> str:
    """``file:`` + 16 hex of SHA-256 of a model file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return "file:" + digest.hexdigest()[:16]


def model_identity(metadata: ModelMetadata, path: str | Path) -> str:
    """The model id recorded at export, or the fingerprint of the file for models exported without one."""
    return metadata.model_id or file_fingerprint(path)


def sidecar_path(engine_path: str | Path) -> Path:
    """``model.engine`` -> ``model.engine.json``."""
    path = Path(engine_path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def write_sidecar(engine_path: str | Path, metadata: ModelMetadata, batch_profile: tuple[int, int, int]) -> Path:
    """Write the engine's JSON sidecar: metadata plus its (min, opt, max) batch profile."""
    document = {**metadata.to_strings(), METADATA_PREFIX + "batch_profile": list(batch_profile)}
    path = sidecar_path(engine_path)
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def read_sidecar(engine_path: str | Path) -> tuple[ModelMetadata, tuple[int, int, int]]:
    """Metadata and batch profile of an engine, from its sidecar; errors name the expected file."""
    path = sidecar_path(engine_path)
    if not path.is_file():
        raise FileNotFoundError(f"TensorRT engine {engine_path} has no metadata sidecar {path} (reid-export writes it)")
    document = json.loads(path.read_text())
    profile = document.pop(METADATA_PREFIX + "batch_profile", None)
    if not (isinstance(profile, list) and len(profile) == 3):
        raise ValueError(f"{path} lacks a valid {METADATA_PREFIX}batch_profile [min, opt, max]")
    return ModelMetadata.from_strings({k: str(v) for k, v in document.items()}, source=str(path)), tuple(profile)
