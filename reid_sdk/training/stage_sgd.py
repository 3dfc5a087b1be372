"""One stage's SGD (Algorithm 1, step 3): the epochs that train the network on the current pseudo-labels.

The paper's schedule (stage 0: 20 epochs at lr 0.1, x0.1 after 15; later stages: 2 epochs at 0.01, 5 for
video), the backbone at 0.1 x lr, SGD with momentum and weight decay, the repelled loss against the cluster
lookup table, and AMP / channels_last on CUDA. The trainer calls :meth:`StageSGD.train` once per stage.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from reid_sdk.model import ReIDNet
from reid_sdk.training.config import TrainConfig
from reid_sdk.training.extraction import autocast_context
from reid_sdk.training.memory import ClusterMemory


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the stage stopped and the last good checkpoint is kept."""


@dataclass(frozen=True)
class StagePlan:
    """Epochs of one stage and the (head) learning rate of each epoch."""

    learning_rates: tuple[float, ...]

    @property
    def epochs(self) -> int:
        return len(self.learning_rates)


def stage_plan(stage: int, train: TrainConfig, video: bool) -> StagePlan:
    """Paper schedule: stage 0 at first_stage_lr, x lr_decay from lr_step_epoch; later stages at later_stage_lr."""
    if stage == 0:
        return StagePlan(tuple(train.first_stage_lr * (train.lr_decay if epoch >= train.lr_step_epoch else 1.0)
                               for epoch in range(train.first_stage_epochs)))
    epochs = train.later_stage_epochs_video if video else train.later_stage_epochs
    return StagePlan((train.later_stage_lr,) * epochs)


def resolve_amp(mode: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype on CUDA: bf16 where supported (auto), fp16, or None (off / CPU)."""
    if device.type != "cuda" or mode == "off":
        return None
    if mode == "fp16" or (mode == "auto" and not torch.cuda.is_bf16_supported()):
        return torch.float16
    return torch.bfloat16


def parameter_groups(model: ReIDNet, lr: float, backbone_scale: float) -> list[dict[str, Any]]:
    """The ImageNet backbone at lr x backbone_scale; the new parts (non-local blocks, embedding) at lr."""
    backbone = [p for m in (model.stem, model.layer1, model.layer2, model.layer3, model.layer4) for p in m.parameters()]
    owned = {id(p) for p in backbone}
    new = [p for p in model.parameters() if id(p) not in owned]
    return [{"params": backbone, "lr": lr * backbone_scale, "scale": backbone_scale},
            {"params": new, "lr": lr, "scale": 1.0}]


class StageSGD:
    """Trains ``model`` for one stage on a dataset whose items are (images, pid, camera, sample index).

    Tracklet items carry T frames (B x T x 3 x H x W): the frames' embeddings are averaged into one per
    tracklet before the loss, so a tracklet is one sample of its cluster.
    """

    def __init__(self, model: ReIDNet, train: TrainConfig, device: torch.device, amp_dtype: torch.dtype | None,
                 channels_last: bool, video: bool) -> None:
        self.model = model
        self.train_config = train
        self.device = device
        self.amp_dtype = amp_dtype
        self.channels_last = channels_last
        self.video = video

    def loader(self, dataset: Dataset, num_workers: int, seed: int) -> DataLoader:
        """Shuffled batches of ``dataset`` in an order fixed by ``seed``."""
        batch_size = self.train_config.batch_size
        return DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=num_workers,
                          drop_last=len(dataset) >= batch_size, pin_memory=self.device.type == "cuda",
                          generator=torch.Generator().manual_seed(seed), persistent_workers=False)

    def train(self, stage: int, stages: int, loader: DataLoader, labels: torch.Tensor,
              memory: ClusterMemory) -> float:
        """Run the stage's epochs on pseudo-``labels``; returns the last epoch's mean loss."""
        train = self.train_config
        plan = stage_plan(stage, train, self.video)
        groups = parameter_groups(self.model, plan.learning_rates[0], train.backbone_lr_scale)
        optimizer = torch.optim.SGD(groups, lr=plan.learning_rates[0], momentum=train.momentum,
                                    weight_decay=train.weight_decay)
        scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.model.train()
        mean_loss = float("nan")
        for epoch, lr in enumerate(plan.learning_rates):
            for group in optimizer.param_groups:
                group["lr"] = lr * group["scale"]
            total, steps, start = 0.0, 0, time.perf_counter()
            progress = tqdm(loader, desc=f"stage {stage + 1}/{stages} epoch {epoch + 1}/{plan.epochs}",
                            unit="batch", leave=False, dynamic_ncols=True, disable=None)
            for images, _, _, index in progress:
                targets = labels[index].to(self.device, non_blocking=True)
                loss = self._step(images, targets, memory, optimizer, scaler)
                if not np.isfinite(loss):
                    raise TrainingDiverged(f"loss became {loss} at stage {stage} epoch {epoch + 1} step {steps + 1}")
                total, steps = total + loss, steps + 1
                progress.set_postfix(loss=f"{total / steps:.3f}",
                                     img_s=f"{steps * loader.batch_size / (time.perf_counter() - start):.0f}")
            mean_loss = total / max(steps, 1)
        return mean_loss

    def _step(self, images: torch.Tensor, targets: torch.Tensor, memory: ClusterMemory,
              optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> float:
        images = images.to(self.device, non_blocking=True)
        clip_shape = images.shape[:2] if images.dim() == 5 else None
        if clip_shape is not None:  # tracklets: B x T frames -> one embedding per tracklet
            images = images.flatten(0, 1)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast_context(self.device, self.amp_dtype):
            embedding = self.model(images).embedding
        if clip_shape is not None:
            embedding = F.normalize(embedding.view(*clip_shape, -1).mean(dim=1), dim=1)
        loss = memory.loss(embedding, targets)
        value = loss.detach().item()
        if not np.isfinite(value):
            return value
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        memory.update(embedding, targets)
        return value

    def samples_per_second(self, stage: int, num_samples: int, seconds: float) -> float:
        """Training throughput of a stage that took ``seconds`` over ``num_samples`` samples per epoch."""
        return stage_plan(stage, self.train_config, self.video).epochs * num_samples / max(seconds, 1e-9)
