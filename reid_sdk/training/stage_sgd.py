"""One stage's SGD (Algorithm 1, step 3): the epochs that train the network on the current pseudo-labels.

The paper's schedule (stage 0: 20 epochs at lr 0.1, x0.1 after 15; later stages: 2 epochs at 0.01, 5 for
video), the backbone at 0.1 x lr, SGD with momentum and weight decay, the repelled loss against the cluster
lookup table, SGD with Nesterov momentum as in BUC's code, and AMP on CUDA. The trainer
calls :meth:`StageSGD.train` once per stage.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from reid_sdk.model import ReIDNet
from reid_sdk._utils.progress import progress
from reid_sdk.training.config import TrainConfig
from reid_sdk.training.distributed import Distributed
from reid_sdk.training.extraction import autocast_context
from reid_sdk.training.memory import CameraProxyMemory, ClusterMemory
from reid_sdk.training.memory_budget import micro_batches
from reid_sdk.training.samplers import EpochSampler


LOSS_CHECK_STEPS = 20  # steps between the host syncs that read the loss (progress, divergence check)


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


def lr_scale(train: TrainConfig, world_size: int) -> float:
    """The learning-rate factor of a data-parallel run: the world size under linear scaling, else 1."""
    return float(world_size) if train.lr_scaling == "linear" else 1.0


def parameter_groups(model: ReIDNet, lr: float, backbone_scale: float) -> list[dict[str, Any]]:
    """The ImageNet backbone at lr x backbone_scale; the new parts (non-local blocks, embedding) at lr; frozen
    stages' weights (:meth:`ReIDNet.freeze_trunk`) in neither."""
    backbone = [p for stage in model.backbone_modules() for p in stage.parameters()]
    owned = {id(p) for p in backbone}
    new = [p for p in model.parameters() if id(p) not in owned]
    backbone = [p for p in backbone if p.requires_grad]
    return [{"params": backbone, "lr": lr * backbone_scale, "scale": backbone_scale},
            {"params": new, "lr": lr, "scale": 1.0}]


class StageSGD:
    """Trains ``model`` for one stage at a time on ``dataset``, whose items are (images, pid, camera, index).

    Tracklet items carry T frames (B x T x 3 x H x W): the network turns each clip into one embedding, so a
    tracklet is one sample of its cluster. The data loader is made once and its workers persist across
    stages (the samples never change, only their pseudo-labels). Under ``torchrun`` the model is wrapped in
    DistributedDataParallel, each rank draws its share of every global batch, and the learning rate
    follows the global batch (``train.lr_scaling``). ``micro_batch`` (the trainer's memory plan) splits each
    batch into forward / backward passes of at most that many samples (:class:`TrainingPass`).
    """

    def __init__(self, model: ReIDNet, train: TrainConfig, dataset: Dataset, num_workers: int, device: torch.device,
                 amp_dtype: torch.dtype | None, video: bool, distributed: Distributed | None = None,
                 micro_batch: int | None = None) -> None:
        self.model = model
        self.train_config = train
        self.device = device
        self.amp_dtype = amp_dtype
        self.video = video
        self.distributed = distributed or Distributed()
        self.pass_ = TrainingPass(training_module(model, train, device, self.distributed), device, amp_dtype,
                                  self.distributed, train.batch_size, micro_batch)
        self.lr_scale = lr_scale(train, self.distributed.world_size)
        self.sampler = EpochSampler(len(dataset), self.distributed.rank, self.distributed.world_size)
        self.loader = DataLoader(dataset, batch_size=train.batch_size, sampler=self.sampler, num_workers=num_workers,
                                 drop_last=len(dataset) >= train.batch_size, pin_memory=device.type == "cuda",
                                 persistent_workers=num_workers > 0)

    def train(self, stage: int, stages: int, labels: torch.Tensor, memory: ClusterMemory | CameraProxyMemory,
              seed: int) -> float:
        """Run the stage's epochs on pseudo-``labels`` (CPU: each sample's row of ``memory``); returns the last
        epoch's mean loss."""
        train = self.train_config
        plan = stage_plan(stage, train, self.video)
        groups = parameter_groups(self.model, plan.learning_rates[0] * self.lr_scale, train.backbone_lr_scale)
        optimizer = torch.optim.SGD(groups, lr=plan.learning_rates[0] * self.lr_scale, momentum=train.momentum,
                                    weight_decay=train.weight_decay, nesterov=train.nesterov)
        scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        labels = labels.cpu()
        mean_loss = float("nan")
        for epoch, lr in enumerate(plan.learning_rates):
            for group in optimizer.param_groups:
                group["lr"] = lr * self.lr_scale * group["scale"]
            self.sampler.set_seed(seed * 1000 + epoch)
            mean_loss = self.pass_.run(self.loader, labels, memory, optimizer, scaler,
                                       f"stage {stage}/{stages - 1} epoch {epoch + 1}/{plan.epochs}")
        self.distributed.sync_buffers(self.model)
        return mean_loss

    def samples_per_second(self, stage: int, num_samples: int, seconds: float) -> float:
        """Training throughput of a stage that took ``seconds`` over ``num_samples`` samples per epoch."""
        return stage_plan(stage, self.train_config, self.video).epochs * num_samples / max(seconds, 1e-9)


def training_module(model: ReIDNet, train: TrainConfig, device: torch.device, distributed: Distributed) -> torch.nn.Module:
    """The module the steps call: ``model`` itself, or under ``torchrun`` wrapped in DistributedDataParallel
    (SyncBatchNorm first with ``train.sync_batchnorm``)."""
    if not distributed.enabled:
        return model
    if train.sync_batchnorm:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


class TrainingPass:
    """One pass of a data loader through the network: a step per batch on the memory's loss, the loss read every
    :data:`LOSS_CHECK_STEPS` steps (progress bar, divergence check). Shared by both schedules.

    With ``micro_batch``, each batch runs as near-equal parts of at most that many samples whose gradients add up
    before the one optimiser step: the loss is a mean of per-sample terms against a lookup table that only changes
    after the step, so each part's loss is weighted by its share of the batch and the table is updated with the
    whole batch's embeddings, in batch order, as without parts. (BatchNorm layers in training mode normalise each
    part by its own statistics: the one thing that differs from a single pass.)
    """

    def __init__(self, train_model: torch.nn.Module, device: torch.device, amp_dtype: torch.dtype | None,
                 distributed: Distributed, batch_size: int, micro_batch: int | None = None) -> None:
        self.train_model = train_model
        self.device = device
        self.amp_dtype = amp_dtype
        self.distributed = distributed
        self.global_batch = batch_size * distributed.world_size
        self.micro_batch = micro_batch or batch_size

    def run(self, loader: DataLoader, targets: torch.Tensor, memory: ClusterMemory | CameraProxyMemory,
            optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, desc: str) -> float:
        """Train on every batch of ``loader`` (items (images, pid, camera, index)); ``targets`` (CPU) holds each
        sample's row of ``memory``. Returns the pass's mean loss; TrainingDiverged when it is not finite."""
        self.train_model.train()
        total = torch.zeros((), device=self.device)
        steps, start = 0, time.perf_counter()
        bar = progress(loader, desc, unit="batch")
        for images, _, _, index in bar:
            total += self._step(images, targets[index], memory, optimizer, scaler)
            steps += 1
            if steps % LOSS_CHECK_STEPS == 0:  # one host sync every few steps, not one per step
                bar.set_postfix(loss=f"{_checked_mean(total, steps, desc):.3f}",
                                img_s=f"{steps * self.global_batch / (time.perf_counter() - start):.0f}")
        return _checked_mean(total, max(steps, 1), desc)

    def _step(self, images: torch.Tensor, targets: torch.Tensor, memory: ClusterMemory | CameraProxyMemory,
              optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> torch.Tensor:
        """One optimiser step over the batch's parts, then the memory's update; returns the detached loss on the
        device (no host sync)."""
        targets_on_device = targets.to(self.device, non_blocking=True)
        parts = micro_batches(len(targets), self.micro_batch)
        optimizer.zero_grad(set_to_none=True)
        embeddings, loss = [], torch.zeros((), device=self.device)
        for part, (part_images, part_targets) in enumerate(zip(torch.tensor_split(images, parts),
                                                                torch.tensor_split(targets_on_device, parts))):
            last = part == parts - 1  # DDP averages the gradients across ranks once, after the last part
            with self.train_model.no_sync() if self.distributed.enabled and not last else nullcontext():
                with autocast_context(self.device, self.amp_dtype):
                    embedding = self.train_model(part_images.to(self.device, non_blocking=True)).embedding
                part_loss = memory.loss(embedding, part_targets) * (len(part_targets) / len(targets))
                scaler.scale(part_loss).backward()
            embeddings.append(embedding.detach())
            loss = loss + part_loss.detach()
        embedding = torch.cat(embeddings)
        scaler.step(optimizer)
        scaler.update()
        if self.distributed.enabled:  # V sees the whole global batch, in one order, on every rank
            memory.update(self.distributed.gather_batch(embedding),
                          self.distributed.gather_batch(targets_on_device))
        else:
            memory.update(embedding, targets)
        return loss


def _checked_mean(total: torch.Tensor, steps: int, where: str) -> float:
    value = float(total) / steps
    if not math.isfinite(value):
        raise TrainingDiverged(f"loss became {value} at {where} (by step {steps})")
    return value
