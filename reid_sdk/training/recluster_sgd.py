"""One epoch's SGD of the re-clustering schedule: a fixed number of P x K batches, Adam with a step decay.

After Cluster Contrast (Dai et al. 2022): Adam at lr 3.5e-4, weight decay 5e-4, x 0.1 every 20 epochs, a fixed
number of iterations per epoch over P pseudo-identities x K samples, the optimiser's state kept across epochs
(and across a resume). The steps themselves are Algorithm 1's (:class:`~reid_sdk.training.stage_sgd.TrainingPass`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from reid_sdk.model import ReIDNet
from reid_sdk.training.config import ReclusterConfig, TrainConfig
from reid_sdk.training.distributed import Distributed
from reid_sdk.training.samplers import GroupBatchSampler
from reid_sdk.training.memory import CameraProxyMemory, ClusterMemory
from reid_sdk.training.stage_sgd import TrainingPass, lr_scale, parameter_groups, training_module


class ReclusterSGD:
    """Trains ``model`` one epoch at a time on groups that change every epoch; the Adam state persists.

    ``dataset`` items are (images, pid, camera, index), asked for as (index, seed). Under ``torchrun`` each rank
    takes its share of every global P x K batch and the learning rate follows ``train.lr_scaling``. ``micro_batch``
    splits each batch into passes as in :class:`~reid_sdk.training.stage_sgd.TrainingPass`.
    """

    def __init__(self, model: ReIDNet, train: TrainConfig, recluster: ReclusterConfig, dataset: Dataset,
                 num_workers: int, device: torch.device, amp_dtype: torch.dtype | None,
                 distributed: Distributed | None = None, micro_batch: int | None = None) -> None:
        self.model = model
        self.recluster = recluster
        self.dataset = dataset
        self.num_workers = num_workers
        self.device = device
        self.distributed = distributed or Distributed()
        self.pass_ = TrainingPass(training_module(model, train, device, self.distributed), device, amp_dtype,
                                  self.distributed, train.batch_size, micro_batch)
        self.base_lr = recluster.lr * lr_scale(train, self.distributed.world_size)
        self.optimizer = torch.optim.Adam(parameter_groups(model, self.base_lr, recluster.backbone_lr_scale),
                                          lr=self.base_lr, weight_decay=recluster.weight_decay)
        self.scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
        self.global_batch = train.batch_size * self.distributed.world_size

    def learning_rate(self, epoch: int) -> float:
        """The (head) learning rate of ``epoch``: lr x 0.1 every ``recluster.lr_step_epochs`` epochs."""
        return self.base_lr * 0.1 ** (epoch // self.recluster.lr_step_epochs)

    def train_epoch(self, epoch: int, epochs: int, groups: np.ndarray, targets: torch.Tensor,
                    memory: ClusterMemory | CameraProxyMemory, seed: int, instances: int | None = None) -> float:
        """``recluster.iterations`` batches of P groups x K samples (``groups``: -1 = left out; K = ``instances``,
        by default ``recluster.instances``); ``targets`` (CPU) holds each sample's row of ``memory``. Returns the
        epoch's mean loss."""
        instances = instances or self.recluster.instances
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate(epoch) * group["scale"]
        sampler = GroupBatchSampler(groups, self.global_batch // instances, instances, self.recluster.iterations,
                                    self.distributed.rank, self.distributed.world_size)
        sampler.set_seed(seed)
        loader = DataLoader(self.dataset, batch_sampler=sampler, num_workers=self.num_workers,
                            pin_memory=self.device.type == "cuda")
        loss = self.pass_.run(loader, targets.cpu(), memory, self.optimizer, self.scaler,
                              f"epoch {epoch}/{epochs - 1}")
        self.distributed.sync_buffers(self.model)
        return loss

    def samples_per_second(self, seconds: float) -> float:
        """Training throughput of an epoch that took ``seconds``."""
        return self.recluster.iterations * self.global_batch / max(seconds, 1e-9)

    def state_dict(self) -> dict[str, Any]:
        """The optimiser's state, for an exact resume."""
        return {"optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
