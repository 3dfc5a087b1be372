"""One-file checkpoints: weights + model config + metadata, with load errors that name the mismatch."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from reid_sdk import __version__
from reid_sdk._utils.atomic_file import atomic_write
from reid_sdk.model.config import ModelConfig
from reid_sdk.model.network import ReIDNet
from reid_sdk.model.pretrained import describe_state_mismatch

CHECKPOINT_FORMAT = "reid-sdk-checkpoint"
CHECKPOINT_VERSION = 1


def save_checkpoint(model: ReIDNet, path: str | Path, metadata: dict[str, Any] | None = None) -> Path:
    """Write ``model`` to ``path`` atomically (temp file, fsync, rename).

    ``metadata`` is free-form (JSON-like: training stage, metrics, ...); input size,
    feature dim and versions are always recorded.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "sdk_version": __version__,
        "torch_version": str(torch.__version__),
        "model_config": model.config.to_dict(),
        "input_size": list(model.input_size),
        "feature_dim": model.feature_dim,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "metadata": dict(metadata or {}),
    }
    with atomic_write(path) as handle:
        torch.save(payload, handle)
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load and validate the raw checkpoint dict, raising ValueError if the file is not one of ours."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a file that is not a checkpoint
        raise ValueError(f"{path} is not a reid-sdk checkpoint (torch.load failed: {exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a reid-sdk checkpoint (no '{CHECKPOINT_FORMAT}' header)")
    if payload.get("format_version", 0) > CHECKPOINT_VERSION:
        raise ValueError(
            f"{path} has checkpoint format version {payload['format_version']}; "
            f"this reid-sdk ({__version__}) reads up to {CHECKPOINT_VERSION}"
        )
    return payload


def config_differences(expected: ModelConfig, found: ModelConfig) -> list[str]:
    """Fields that differ between two model configs, as 'name: found != expected' (``pretrained`` ignored)."""
    return [
        f"{f.name}: {getattr(found, f.name)!r} != {getattr(expected, f.name)!r}"
        for f in dataclasses.fields(ModelConfig)
        if f.name != "pretrained" and getattr(found, f.name) != getattr(expected, f.name)
    ]


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu", expected_config: ModelConfig | None = None
) -> tuple[ReIDNet, dict[str, Any]]:
    """Rebuild the network stored in ``path``; returns (model in eval mode, checkpoint dict).

    With ``expected_config`` the stored architecture must match it, field by field.
    """
    payload = read_checkpoint(path)
    config = ModelConfig.from_dict(payload["model_config"])
    if expected_config is not None:
        diffs = config_differences(expected_config, config)
        if diffs:
            raise ValueError(f"{path} was trained with another model config: {'; '.join(diffs)}")
    # The weights come from the checkpoint, so the backbone needs no ImageNet file.
    model = ReIDNet(dataclasses.replace(config, pretrained=None))
    problems = describe_state_mismatch(model.state_dict(), payload["state_dict"])
    if problems:
        raise ValueError(f"{path} does not fit its own model config: {problems}")
    model.load_state_dict(payload["state_dict"])
    model.weights_source = f"checkpoint {path}"  # not the config's initialisation: what start-up lines report
    return model.to(map_location).eval(), payload
