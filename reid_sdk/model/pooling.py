"""Global pooling of the final feature map: average, max, or their mean (paper's mixed pooling)."""

from __future__ import annotations

import torch
from torch import nn


class GlobalPool(nn.Module):
    """Pools N x C x H x W to N x C with ``avg``, ``max`` or ``mixed`` = 0.5 * (avg + max)."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        if mode not in ("avg", "max", "mixed"):
            raise ValueError(f"unknown pooling {mode!r}; expected avg, max or mixed")
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "avg":
            return x.mean(dim=(2, 3))
        if self.mode == "max":
            return x.amax(dim=(2, 3))
        return 0.5 * (x.mean(dim=(2, 3)) + x.amax(dim=(2, 3)))

    def extra_repr(self) -> str:
        return f"mode={self.mode}"
