"""Global pooling of the final feature map: average, max, their mean (paper's mixed pooling), or GeM."""

from __future__ import annotations

import torch
from torch import nn


#: GeM's exponent, fixed (Radenovic et al., TPAMI 2019; Cluster Contrast's ``gem`` pooling starts from 3).
GEM_POWER = 3.0
_GEM_FLOOR = 1e-6  # GeM raises to a fractional power: activations are clamped above 0 first


class GlobalPool(nn.Module):
    """Pools N x C x H x W to N x C with ``avg``, ``max``, ``mixed`` = 0.5 * (avg + max), or ``gem`` =
    (mean of x^3)^(1/3), generalised mean pooling: between avg (power 1) and max (power infinity)."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        if mode not in ("avg", "max", "mixed", "gem"):
            raise ValueError(f"unknown pooling {mode!r}; expected avg, max, mixed or gem")
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "avg":
            return x.mean(dim=(2, 3))
        if self.mode == "max":
            return x.amax(dim=(2, 3))
        if self.mode == "gem":
            return x.clamp(min=_GEM_FLOOR).pow(GEM_POWER).mean(dim=(2, 3)).pow(1.0 / GEM_POWER)
        return 0.5 * (x.mean(dim=(2, 3)) + x.amax(dim=(2, 3)))

    def extra_repr(self) -> str:
        return f"mode={self.mode}"
