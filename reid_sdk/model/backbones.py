"""The torchvision trunks ReIDNet builds on, cut into named stages at stride 8 and 16.

The non-local blocks go after those two stages (paper III.C: after res3 and res4 of ResNet-50),
so every backbone family says which of its stages end there and how many channels they give.
"""

from __future__ import annotations

from typing import NamedTuple

import torchvision
from torch import nn

from reid_sdk.model.config import MOBILENET_V2_STAGES, RESNET_STAGES, ModelConfig
from reid_sdk.model.pretrained import init_backbone

_RESNETS = {"resnet18": torchvision.models.resnet18, "resnet34": torchvision.models.resnet34,
            "resnet50": torchvision.models.resnet50}
# torchvision's mobilenet_v2().features: blocks 0-6 end at stride 8, 7-13 at stride 16, 14-18 at stride 32.
_MOBILENET_V2_CUTS = (7, 14)


class Trunk(NamedTuple):
    """A backbone as ordered named stages (image to last feature map) and where the non-local blocks go."""

    stages: dict[str, nn.Module]
    stride8_stage: str
    stride8_channels: int
    stride16_stage: str
    stride16_channels: int
    weights_source: str


def build_trunk(config: ModelConfig) -> Trunk:
    """The backbone ``config`` names, initialised as ``config.pretrained`` says, with its last stride set."""
    if config.backbone == "mobilenet_v2":
        return _mobilenet_v2_trunk(config)
    return _resnet_trunk(config)


def _resnet_trunk(config: ModelConfig) -> Trunk:
    resnet = _RESNETS[config.backbone](weights=None)
    source = init_backbone(resnet, config.backbone, config.pretrained)
    first = resnet.layer4[0]
    conv = first.conv2 if hasattr(first, "conv3") else first.conv1  # Bottleneck strides in conv2
    _set_stride(conv, config.last_stride)
    if first.downsample is not None:
        _set_stride(first.downsample[0], config.last_stride)
    stem = nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool)
    stages = dict(zip(RESNET_STAGES, (stem, resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4)))
    return Trunk(stages, "layer2", resnet.layer2[-1].conv1.in_channels,
                 "layer3", resnet.layer3[-1].conv1.in_channels, source)


def _mobilenet_v2_trunk(config: ModelConfig) -> Trunk:
    mobilenet = torchvision.models.mobilenet_v2(weights=None)
    source = init_backbone(mobilenet, config.backbone, config.pretrained)
    features = mobilenet.features
    first_stride32 = features[_MOBILENET_V2_CUTS[1]].conv[1][0]  # the depthwise conv of the stride-2 block
    _set_stride(first_stride32, config.last_stride)
    to8, to16 = _MOBILENET_V2_CUTS
    stages = dict(zip(MOBILENET_V2_STAGES, (features[:to8], features[to8:to16], features[to16:])))
    return Trunk(stages, "features8", features[to8 - 1].out_channels,
                 "features16", features[to16 - 1].out_channels, source)


def _set_stride(conv: nn.Conv2d, stride: int) -> None:
    conv.stride = (stride, stride)
