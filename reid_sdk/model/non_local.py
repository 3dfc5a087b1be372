"""Non-local block with the embedded dot-product pairwise function (paper eq. 7-9)."""

from __future__ import annotations

import torch
from torch import nn


class NonLocalBlock(nn.Module):
    """z = W_z y + x with y_i = (1/N) sum_j theta(x_i)^T phi(x_j) g(x_j).

    W_z is a 1x1 convolution followed by BatchNorm whose scale starts at zero, so a
    fresh block is exactly the identity (zeroing the convolution too would leave no
    gradient to ever leave that state).
    """

    def __init__(self, channels: int, inter_channels: int | None = None) -> None:
        super().__init__()
        inter = inter_channels or max(channels // 2, 1)
        self.theta = nn.Conv2d(channels, inter, kernel_size=1)
        self.phi = nn.Conv2d(channels, inter, kernel_size=1)
        self.g = nn.Conv2d(channels, inter, kernel_size=1)
        self.w_z = nn.Sequential(nn.Conv2d(inter, channels, kernel_size=1, bias=False), nn.BatchNorm2d(channels))
        nn.init.zeros_(self.w_z[1].weight)
        nn.init.zeros_(self.w_z[1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        positions = h * w
        theta = self.theta(x).flatten(2).transpose(1, 2)  # N x P x C'
        phi = self.phi(x).flatten(2)  # N x C' x P
        g = self.g(x).flatten(2).transpose(1, 2)  # N x P x C'
        inter = theta.shape[-1]
        # No softmax: the product is associative, so take the cheaper order.
        if positions > inter:
            y = theta @ ((phi @ g) / positions)  # O(P C'^2)
        else:
            y = ((theta @ phi) / positions) @ g  # O(P^2 C')
        y = y.transpose(1, 2).reshape(n, inter, h, w)
        return x + self.w_z(y)
