"""ImageNet weights for the backbone: from a local torchvision state-dict file or torchvision's cache.

Nothing is ever downloaded: a deployment or training box may have no internet.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)

_TORCHVISION_FILES = {18: "resnet18-*.pth", 34: "resnet34-*.pth", 50: "resnet50-*.pth"}


class PretrainedWeightsMissing(FileNotFoundError):
    """``pretrained: imagenet`` was asked for but no ImageNet weights are on this machine."""


def find_cached_imagenet_weights(depth: int) -> Path | None:
    """The torchvision ImageNet checkpoint for ResNet-``depth`` in torch hub's cache, if present."""
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    matches = sorted(cache.glob(_TORCHVISION_FILES[depth])) if cache.is_dir() else []
    return matches[-1] if matches else None


def load_backbone_weights(backbone: nn.Module, path: str | Path) -> None:
    """Load a torchvision ResNet state dict file into ``backbone``; the classifier ``fc`` is ignored.

    Raises ValueError naming missing, unexpected or mis-shaped keys (e.g. a ResNet-18
    file given to a ResNet-50).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a file that is not a state dict
        raise ValueError(f"{path} is not a readable torch state dict: {exc}") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict (found {type(state).__name__})")
    state = {k.removeprefix("module."): v for k, v in state.items() if not k.removeprefix("module.").startswith("fc.")}
    own = {k: v for k, v in backbone.state_dict().items() if not k.startswith("fc.")}
    problems = describe_state_mismatch(own, state)
    if problems:
        raise ValueError(f"{path} does not fit this backbone: {problems}")
    backbone.load_state_dict(state, strict=False)


def describe_state_mismatch(expected: dict[str, torch.Tensor], given: dict[str, torch.Tensor]) -> str:
    """A one-line description of how two state dicts differ in keys or shapes; empty if they fit."""
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    shapes = [
        f"{k} {tuple(given[k].shape)} != {tuple(expected[k].shape)}"
        for k in sorted(set(expected) & set(given))
        if tuple(given[k].shape) != tuple(expected[k].shape)
    ]
    parts = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
        if items:
            shown = ", ".join(items[:5]) + (f" (+{len(items) - 5} more)" if len(items) > 5 else "")
            parts.append(f"{label}: {shown}")
    return "; ".join(parts)


def init_backbone(backbone: nn.Module, depth: int, pretrained: str | None) -> str:
    """Initialise ``backbone`` as the config says and return where its weights came from."""
    if pretrained is None:
        return "random"
    if pretrained == "imagenet":
        cached = find_cached_imagenet_weights(depth)
        if cached is None:
            folder = Path(torch.hub.get_dir()) / "checkpoints"
            raise PretrainedWeightsMissing(
                f"no ImageNet weights for ResNet-{depth}: looked for {_TORCHVISION_FILES[depth]} in {folder} "
                f"(torchvision's cache; TORCH_HOME moves it). Copy torchvision's file there, pass its path as "
                f"model.pretrained=PATH, or set model.pretrained=null to start from random weights")
        load_backbone_weights(backbone, cached)
        return str(cached)
    load_backbone_weights(backbone, pretrained)
    return str(pretrained)
