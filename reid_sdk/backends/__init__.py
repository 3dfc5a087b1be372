"""Inference backends behind FeatureExtractor, chosen from what the user passes (a model or a file)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reid_sdk.backends.base import Backend

TORCH_SUFFIXES = (".pt", ".pth", ".ckpt")


def open_backend(model: Any, device: str = "auto", precision: str = "auto", compile: bool | str = False,
                 max_batch: int = 64) -> Backend:
    """A backend for ``model``: a ReIDNet module or a checkpoint path (``.pt``/``.pth``/``.ckpt``)."""
    if isinstance(model, (str, Path)):
        path = Path(model)
        if path.suffix.lower() not in TORCH_SUFFIXES:
            raise ValueError(f"unsupported model file {path.name!r}: expected a torch checkpoint ({', '.join(TORCH_SUFFIXES)})")
    try:
        from reid_sdk.backends.torch_backend import TorchBackend
    except ImportError as exc:
        raise ImportError(f"the torch backend needs torch and torchvision: pip install 'reid-sdk[train]' ({exc})") from exc
    return TorchBackend(model, device=device, precision=precision, compile=compile, max_batch=max_batch)


__all__ = ["Backend", "open_backend"]
