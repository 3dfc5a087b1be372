"""ReIDNet: a torchvision trunk + non-local blocks after its stride-8 and stride-16 stages + global pooling
(paper Fig. 4)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from torch.nn.utils.fusion import fuse_conv_bn_eval

from reid_sdk.model.backbones import build_trunk
from reid_sdk.model.config import PIXEL_MEAN, PIXEL_STD, ModelConfig
from reid_sdk.model.non_local import NonLocalBlock
from reid_sdk.model.pooling import GlobalPool

_PIXEL_BUFFERS = ("pixel_mean", "pixel_std")
_BLOCK_PAIRS = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))  # torchvision's BasicBlock / Bottleneck


class TrainOutput(NamedTuple):
    """What the repelled loss needs: the L2-normalised embedding and the L2-normalised pooled feature."""

    embedding: torch.Tensor
    feature: torch.Tensor


class ReIDNet(nn.Module):
    """The non-locally enhanced feature network.

    Input: raw RGB, N x 3 x H x W, uint8 or float on the 0..255 scale (mean/std are
    buffers, so every backend feeds the same bytes). Eval mode returns L2-normalised
    float32 pooled features (N, feature_dim); train mode returns a :class:`TrainOutput`.

    The trunk's stages are attributes under their own names (ResNet: ``stem``, ``layer1``..``layer4``;
    MobileNetV2: ``features8``, ``features16``, ``features32``), listed in ``backbone_stages``;
    ``non_local8`` / ``non_local16`` follow the stages that end at stride 8 / 16.
    """

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config or ModelConfig()
        trunk = build_trunk(self.config)
        self.weights_source = trunk.weights_source
        for name, stage in trunk.stages.items():
            self.add_module(name, stage)
        self.backbone_stages = tuple(trunk.stages)
        self.non_local8 = NonLocalBlock(trunk.stride8_channels) if self.config.non_local else nn.Identity()
        self.non_local16 = NonLocalBlock(trunk.stride16_channels) if self.config.non_local else nn.Identity()
        self._non_local_after = {trunk.stride8_stage: "non_local8", trunk.stride16_stage: "non_local16"}
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
        #: Training: keep only each trunk block's input and recompute the block in the backward pass (activation
        #: checkpointing: the same gradients and BatchNorm statistics for about a third more compute, a fraction of
        #: the memory). Set by the trainer's memory plan; not part of the config or the checkpoint.
        self.checkpoint_trunk = False
        #: Training: the trunk's first stages, kept as they are while the rest trains (set by :meth:`freeze_trunk`).
        self.frozen_stages: tuple[str, ...] = ()

    def freeze_trunk(self, stages: int) -> None:
        """Keep the trunk's first ``stages`` stages (image first) as they are while the rest trains: their weights
        take no gradient and their BatchNorm layers keep their statistics (eval mode, even under :meth:`train`).

        An ImageNet start's early layers see edges and textures every site shares; not training them skips their
        backward pass and the activations it needs, which on MobileNetV2 at 256 x 128 is most of a CPU step's
        time and memory (the stride-8 stage runs at the largest resolution).
        """
        if not 0 <= stages <= len(self.backbone_stages):
            raise ValueError(f"frozen stages must be 0..{len(self.backbone_stages)}, got {stages}")
        self.frozen_stages = self.backbone_stages[:stages]
        for name in self.backbone_stages:
            self.get_submodule(name).requires_grad_(name not in self.frozen_stages)
        self.train(self.training)

    def train(self, mode: bool = True) -> ReIDNet:
        """Set training or eval mode; the frozen stages (:meth:`freeze_trunk`) stay in eval mode."""
        super().train(mode)
        for name in self.frozen_stages:
            self.get_submodule(name).eval()
        return self

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

    def backbone_modules(self) -> list[nn.Module]:
        """The trunk's stages, image first: the ImageNet part, which trains at the backbone learning rate."""
        return [self.get_submodule(name) for name in self.backbone_stages]

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
        weight = next(self.backbone_modules()[0].parameters())  # the first convolution's
        if weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous():
            images = images.contiguous(memory_format=torch.channels_last)
        # Normalise in fp32 (the statistics stay fp32 under any cast, see _apply), then run in the weights' dtype.
        x = ((images.float() - self.pixel_mean) / self.pixel_std).to(weight.dtype)
        for name in self.backbone_stages:
            x = self._run_stage(name, x)
            if name in self._non_local_after:
                x = self.get_submodule(self._non_local_after[name])(x)
        return self.pool(x)

    def _run_stage(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """One trunk stage; under :attr:`checkpoint_trunk` (training with gradients) block by block, each block's
        activations recomputed in the backward pass instead of kept (a frozen stage keeps none to begin with)."""
        stage = self.get_submodule(name)
        if name in self.frozen_stages or not (self.checkpoint_trunk and self.training and torch.is_grad_enabled()):
            return stage(x)
        for block in _blocks(stage):
            x = checkpoint(block, x, use_reentrant=False,
                           context_fn=lambda block=block: (nullcontext(), _batch_norm_statistics_kept(block)))
        return x

    def trunk_blocks(self) -> list[nn.Module]:
        """The units :attr:`checkpoint_trunk` recomputes, image first: each stage's blocks (a stage of single layers,
        such as ResNet's stem with its in-place ReLU, is one unit); frozen stages have none."""
        return [block for name in self.backbone_stages if name not in self.frozen_stages
                for block in _blocks(self.get_submodule(name))]

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


def _blocks(stage: nn.Module) -> list[nn.Module]:
    children = list(stage.children()) if isinstance(stage, nn.Sequential) else []
    return children if children and all(any(True for _ in child.children()) for child in children) else [stage]


@contextmanager
def _batch_norm_statistics_kept(module: nn.Module) -> Iterator[None]:
    """Run a checkpointed block's recomputation without a second update of its BatchNorm running statistics: the
    forward pass already counted this batch once (the recomputation normalises by the same batch statistics)."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    kept = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone()) for m in norms]
    try:
        yield
    finally:
        with torch.no_grad():
            for norm, (mean, var, count) in zip(norms, kept):
                norm.running_mean.copy_(mean)
                norm.running_var.copy_(var)
                norm.num_batches_tracked.copy_(count)


def fold_batch_norms(network: ReIDNet) -> ReIDNet:
    """Fold, in place, every BatchNorm2d into the convolution that feeds it; returns ``network`` (eval mode).

    For inference on the CPU, where torch runs each BatchNorm as a separate pass over the activations
    (ONNX Runtime and OpenVINO fold them when they load a model). The outputs stay equal within fp32
    rounding. The folded network has no BatchNorm2d parameters left: it is for running, not for saving.
    Pairs are a Conv2d followed by a BatchNorm2d in an nn.Sequential (stems, downsamples, MobileNetV2's
    blocks, the non-local blocks' W_z) and torchvision's residual blocks' ``convK`` / ``bnK``.
    """
    network.eval()
    for module in list(network.modules()):
        if isinstance(module, nn.Sequential):
            names = list(module._modules)
            for first, second in zip(names, names[1:]):
                conv, norm = module._modules[first], module._modules[second]
                if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
                    module._modules[first], module._modules[second] = fuse_conv_bn_eval(conv, norm), nn.Identity()
        for conv_name, norm_name in _BLOCK_PAIRS:
            conv, norm = getattr(module, conv_name, None), getattr(module, norm_name, None)
            if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
                setattr(module, conv_name, fuse_conv_bn_eval(conv, norm))
                setattr(module, norm_name, nn.Identity())
    return network
