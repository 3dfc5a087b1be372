"""ReIDNet: torchvision ResNet + non-local blocks after layer2/layer3 + global pooling (paper Fig. 4)."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from reid_sdk.model.config import PIXEL_MEAN, PIXEL_STD, ModelConfig
from reid_sdk.model.non_local import NonLocalBlock
from reid_sdk.model.pooling import GlobalPool
from reid_sdk.model.pretrained import init_backbone

_PIXEL_BUFFERS = ("pixel_mean", "pixel_std")
_RESNETS = {18: torchvision.models.resnet18, 34: torchvision.models.resnet34, 50: torchvision.models.resnet50}


class TrainOutput(NamedTuple):
    """What the repelled loss needs: the L2-normalised embedding and the L2-normalised pooled feature."""

    embedding: torch.Tensor
    feature: torch.Tensor


def _set_last_stride(layer4: nn.Sequential, stride: int) -> None:
    first = layer4[0]
    conv = first.conv2 if hasattr(first, "conv3") else first.conv1  # Bottleneck strides in conv2
    conv.stride = (stride, stride)
    if first.downsample is not None:
        first.downsample[0].stride = (stride, stride)


class ReIDNet(nn.Module):
    """The non-locally enhanced feature network.

    Input: raw RGB, N x 3 x H x W, uint8 or float on the 0..255 scale (mean/std are
    buffers, so every backend feeds the same bytes). Eval mode returns L2-normalised
    float32 pooled features (N, feature_dim); train mode returns a :class:`TrainOutput`.
    """

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config or ModelConfig()
        backbone = _RESNETS[self.config.depth](weights=None)
        self.weights_source = init_backbone(backbone, self.config.depth, self.config.pretrained)
        if self.config.last_stride != 2:
            _set_last_stride(backbone.layer4, self.config.last_stride)
        self.stem = nn.Sequential(backbone.conv1, backbone.bn1, backbone.relu, backbone.maxpool)
        self.layer1, self.layer2 = backbone.layer1, backbone.layer2
        self.layer3, self.layer4 = backbone.layer3, backbone.layer4
        channels2 = backbone.layer2[-1].conv1.in_channels
        channels3 = backbone.layer3[-1].conv1.in_channels
        self.non_local2 = NonLocalBlock(channels2) if self.config.non_local else nn.Identity()
        self.non_local3 = NonLocalBlock(channels3) if self.config.non_local else nn.Identity()
        self.pool = GlobalPool(self.config.pooling)
        self.embedding = nn.Sequential(
            nn.Dropout(self.config.dropout),
            nn.Linear(self.feature_dim, self.config.embedding_dim),
            nn.BatchNorm1d(self.config.embedding_dim),
        )
        nn.init.kaiming_normal_(self.embedding[1].weight, mode="fan_out")
        nn.init.zeros_(self.embedding[1].bias)
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1))
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(1, 3, 1, 1))

    def _apply(self, fn, recurse: bool = True):  # noqa: ANN001 - torch's signature
        """Move / cast like any module, except that the pixel mean and std keep their fp32 values.

        ``.half()`` / ``.to(torch.bfloat16)`` would round them (123.675 -> 123.6875 in fp16) and shift
        every normalised pixel; normalisation runs in fp32 before the cast to the weights' dtype.
        """
        statistics = {name: self._buffers[name] for name in _PIXEL_BUFFERS}
        super()._apply(fn, recurse)
        for name, original in statistics.items():
            moved = self._buffers[name]
            if moved.dtype != original.dtype:
                self._buffers[name] = original.to(moved.device)
        return self

    @property
    def feature_dim(self) -> int:
        return self.config.feature_dim

    @property
    def input_size(self) -> tuple[int, int]:
        return self.config.input_size

    def pooled_features(self, images: torch.Tensor) -> torch.Tensor:
        """Un-normalised pooled features (N, feature_dim) in the model's dtype."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected N x 3 x H x W RGB images, got shape {tuple(images.shape)}")
        weight = self.stem[0].weight
        if weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous():
            images = images.contiguous(memory_format=torch.channels_last)
        # Normalise in fp32 (the statistics stay fp32 under any cast, see _apply), then run in the weights' dtype.
        x = ((images.float() - self.pixel_mean) / self.pixel_std).to(weight.dtype)
        x = self.layer2(self.layer1(self.stem(x)))
        x = self.layer3(self.non_local2(x))
        x = self.layer4(self.non_local3(x))
        return self.pool(x)

    def features_and_embeddings(self, images: torch.Tensor) -> TrainOutput:
        """Both L2-normalised outputs in any mode (eval mode: what clustering and the lookup table start from).

        A clip batch (B x T x 3 x H x W) gives one output per clip: as in BUC's code, the frames' pooled
        features are averaged before the embedding head.
        """
        if images.dim() == 5:
            clips, frames = images.shape[:2]
            pooled = self.pooled_features(images.flatten(0, 1)).view(clips, frames, -1).mean(dim=1)
        else:
            pooled = self.pooled_features(images)
        return TrainOutput(embedding=F.normalize(self.embedding(pooled).float(), dim=1),
                           feature=F.normalize(pooled.float(), dim=1))

    def forward(self, images: torch.Tensor) -> torch.Tensor | TrainOutput:
        if self.training:
            return self.features_and_embeddings(images)
        return F.normalize(self.pooled_features(images).float(), dim=1)
