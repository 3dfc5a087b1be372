"""Algorithm 1: train on the pseudo-labels, extract, merge m clusters, evaluate, keep the best; stage after stage.

Every sample (image, or tracklet for video) starts as its own cluster. Each stage
trains with the repelled loss against a lookup table initialised from the current
clusters, then extracts the training set once: the features drive ``merge_stage``,
the embeddings start the next stage's table. Each stage re-seeds every random
generator from (seed, stage), so a resumed run reproduces an uninterrupted one.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from reid_sdk.backends.torch_backend import resolve_device
from reid_sdk.datasets import DatasetSplits, load_dataset
from reid_sdk.datasets.records import UNKNOWN_PID
from reid_sdk.datasets.torch_datasets import ImageDataset, TrackletDataset, TransformConfig, build_transform
from reid_sdk.evaluation import clustering_quality, rank_metrics
from reid_sdk.model import ReIDNet, load_checkpoint, save_checkpoint
from reid_sdk.model.checkpoint import config_differences
from reid_sdk.training.clustering import MergeSchedule, merge_stage
from reid_sdk.training.config import ConfigError, RunConfig, TrainConfig
from reid_sdk.training.extraction import Extracted, autocast_context, extract_records
from reid_sdk.training.memory import ClusterMemory
from reid_sdk.training.plot import plot_stages
from reid_sdk.training.run_dir import RunDirectory

log = logging.getLogger(__name__)


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


class Trainer:
    """Runs Algorithm 1 for a RunConfig into a run directory; every input is validated in ``__init__``."""

    def __init__(self, config: RunConfig, out: str | Path, resume: bool = False) -> None:
        self.config = config
        self.run_dir = RunDirectory(out)
        done = self.run_dir.completed_stages()
        if done and not resume:
            raise ConfigError(f"{self.run_dir.root} already holds a run (stages up to {done[-1]}); "
                              "pass --resume to continue it or choose another --out")
        self.device = resolve_device(config.train.device)
        self.amp_dtype = resolve_amp(config.train.amp, self.device)
        self.channels_last = config.train.channels_last and self.device.type == "cuda"
        self.splits = self._load_data()
        self.model = self._build_model().to(self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.schedule = MergeSchedule(len(self.splits.train), config.clustering.merge_percent)
        self.labels = torch.arange(len(self.splits.train))
        self.rows: list[dict[str, Any]] = []
        self.best_map = -1.0
        self.start_stage = 0
        if resume and done:
            self._restore(done[-1])

    @property
    def video(self) -> bool:
        return self.splits.is_video

    @property
    def evaluates(self) -> bool:
        return bool(self.splits.query and self.splits.gallery)

    def _load_data(self) -> DatasetSplits:
        if not self.config.data.root:
            raise ConfigError("no training data: pass --data ROOT (or set data.root)")
        splits = load_dataset(self.config.data.root, self.config.data.format)
        if len(splits.train) < 2:
            raise ConfigError(f"{splits.root} has {len(splits.train)} training samples; need at least 2")
        return splits

    def _build_model(self) -> ReIDNet:
        init = self.config.train.init_checkpoint
        if init is None:
            return ReIDNet(self.config.model)
        model, _ = load_checkpoint(init, expected_config=self.config.model)
        return model

    def _restore(self, stage: int) -> None:
        state = self.run_dir.load_stage(stage)
        diffs = config_differences(self.config.model, type(self.config.model).from_dict(state["model_config"]))
        if diffs:
            raise ConfigError(f"{self.run_dir.stage_path(stage)} holds another model config: {'; '.join(diffs)}")
        if len(state["labels"]) != len(self.splits.train):
            raise ConfigError(f"{self.run_dir.stage_path(stage)} has {len(state['labels'])} labels but the data "
                              f"has {len(self.splits.train)} training samples")
        self.model.load_state_dict(state["model_state"])
        self.labels = state["labels"].long()
        self.rows = list(state["metrics"])
        self.best_map = float(state["best_map"])
        self.start_stage = stage + 1
        log.info("resuming after stage %d (%d clusters)", stage, int(self.labels.max()) + 1)

    # ------------------------------------------------------------------------------------------ the loop

    def run(self) -> list[dict[str, Any]]:
        """Train stage by stage until C <= m (or clustering.max_stages); returns the metrics rows."""
        self.run_dir.prepare(self.config)
        stages = self.schedule.num_stages
        if self.config.clustering.max_stages is not None:
            stages = min(stages, self.config.clustering.max_stages)
        extracted = self._extract_train()
        for stage in range(self.start_stage, stages):
            extracted = self._run_stage(stage, stages, extracted)
        return self.rows

    def _extract_train(self) -> Extracted:
        data = self.config.data
        extracted = extract_records(self.model, self.splits.train, self.device, self.config.train.eval_batch_size,
                                    data.num_workers, data.eval_max_frames, self.amp_dtype, self.channels_last)
        missing = int((~extracted.found).sum())
        if missing:
            raise ValueError(f"{missing} training samples have no readable image; remove them from {data.root}")
        return extracted

    def _run_stage(self, stage: int, stages: int, extracted: Extracted) -> Extracted:
        seed = self.config.train.seed * 1000 + stage
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        clusters_before = int(self.labels.max()) + 1
        memory = ClusterMemory.from_members(extracted.embeddings.to(self.device), self.labels.to(self.device),
                                            self.config.train.temperature, self.config.train.memory_momentum)
        timer = time.perf_counter()
        optimizer, loss = self._train_stage(stage, stages, memory, seed)
        train_seconds = time.perf_counter() - timer

        timer = time.perf_counter()
        extracted = self._extract_train()
        extract_seconds = time.perf_counter() - timer

        timer = time.perf_counter()
        clustering = self.config.clustering
        self.labels = merge_stage(extracted.features, self.labels, self.schedule.merges_per_stage, clustering.linkage,
                                  clustering.lam, clustering.lam_buc, device=self.device,
                                  block_size=clustering.block_size)
        merge_seconds = time.perf_counter() - timer

        timer = time.perf_counter()
        row: dict[str, Any] = {"stage": stage, "clusters_before": clusters_before,
                               "clusters_after": int(self.labels.max()) + 1, "loss": loss}
        row.update(self._evaluate())
        row.update(self._cluster_quality())
        row.update(train_seconds=train_seconds, extract_seconds=extract_seconds, merge_seconds=merge_seconds,
                   eval_seconds=time.perf_counter() - timer, train_samples_per_s=self._samples_per_s(stage,
                                                                                                     train_seconds))
        self._finish_stage(stage, row, memory, optimizer)
        return extracted

    def _train_loader(self, seed: int) -> DataLoader:
        data, train = self.config.data, self.config.train
        transform = build_transform(TransformConfig(size=self.model.input_size, random_erasing=data.random_erasing),
                                    train=True)
        if self.video:
            dataset = TrackletDataset(self.splits.train, self.model.input_size, data.frames_per_tracklet,
                                      data.frame_sampling, transform)
        else:
            dataset = ImageDataset(self.splits.train, transform)
        return DataLoader(dataset, batch_size=train.batch_size, shuffle=True, num_workers=data.num_workers,
                          drop_last=len(dataset) >= train.batch_size, pin_memory=self.device.type == "cuda",
                          generator=torch.Generator().manual_seed(seed), persistent_workers=False)

    def _train_stage(self, stage: int, stages: int, memory: ClusterMemory, seed: int):
        train = self.config.train
        plan = stage_plan(stage, train, self.video)
        groups = parameter_groups(self.model, plan.learning_rates[0], train.backbone_lr_scale)
        optimizer = torch.optim.SGD(groups, lr=plan.learning_rates[0], momentum=train.momentum,
                                    weight_decay=train.weight_decay)
        scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        loader = self._train_loader(seed)
        self.model.train()
        mean_loss = float("nan")
        for epoch, lr in enumerate(plan.learning_rates):
            for group in optimizer.param_groups:
                group["lr"] = lr * group["scale"]
            total, steps, start = 0.0, 0, time.perf_counter()
            progress = tqdm(loader, desc=f"stage {stage + 1}/{stages} epoch {epoch + 1}/{plan.epochs}",
                            unit="batch", leave=False, dynamic_ncols=True, disable=None)
            for images, _, _, index in progress:
                targets = self.labels[index].to(self.device, non_blocking=True)
                loss = self._step(images, targets, memory, optimizer, scaler)
                if not np.isfinite(loss):
                    raise TrainingDiverged(
                        f"loss became {loss} at stage {stage} epoch {epoch + 1} step {steps + 1}; "
                        f"the last good checkpoint is kept in {self.run_dir.stages}")
                total, steps = total + loss, steps + 1
                progress.set_postfix(loss=f"{total / steps:.3f}",
                                     img_s=f"{steps * loader.batch_size / (time.perf_counter() - start):.0f}")
            mean_loss = total / max(steps, 1)
        return optimizer, mean_loss

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

    def _samples_per_s(self, stage: int, seconds: float) -> float:
        epochs = stage_plan(stage, self.config.train, self.video).epochs
        return epochs * len(self.splits.train) / max(seconds, 1e-9)

    # ------------------------------------------------------------------------------------- evaluation

    def _evaluate(self) -> dict[str, Any]:
        """Rank-k / mAP / mINP on query vs gallery (Market protocol), when the data has them."""
        if not self.evaluates:
            return {}
        data, train = self.config.data, self.config.train
        features = {}
        for split in ("query", "gallery"):
            records = self.splits.split(split)
            extracted = extract_records(self.model, records, self.device, train.eval_batch_size, data.num_workers,
                                        data.eval_max_frames, self.amp_dtype, self.channels_last)
            found = extracted.found.numpy()
            kept = [record for record, ok in zip(records, found) if ok]
            features[split] = (extracted.features[found].numpy(), np.array([r.pid for r in kept]),
                               np.array([r.camera for r in kept]))
        (q, q_pids, q_cams), (g, g_pids, g_cams) = features["query"], features["gallery"]
        result = rank_metrics(1.0 - q @ g.T, q_pids, g_pids, q_cams, g_cams)
        return {key: value for key, value in result.as_dict().items() if key in ("rank1", "rank5", "rank10", "mAP",
                                                                                 "mINP")}

    def _cluster_quality(self) -> dict[str, Any]:
        """Pairwise precision / recall / F and NMI of the pseudo-labels, when the training pids are known."""
        pids = np.array([record.pid for record in self.splits.train])
        if (pids == UNKNOWN_PID).any():
            return {}
        quality = clustering_quality(self.labels.numpy(), pids)
        return {"pairwise_precision": quality.pairwise_precision, "pairwise_recall": quality.pairwise_recall,
                "pairwise_f": quality.pairwise_f_score, "nmi": quality.nmi}

    # ---------------------------------------------------------------------------------------- saving

    def _finish_stage(self, stage: int, row: dict[str, Any], memory: ClusterMemory,
                      optimizer: torch.optim.Optimizer) -> None:
        improved = self.evaluates and row["mAP"] > self.best_map
        if improved or not self.evaluates:
            self.best_map = row.get("mAP", self.best_map)
            save_checkpoint(self.model, self.run_dir.best,
                            metadata={"stage": stage, "config": self.config.to_dict(),
                                      **{k: row[k] for k in ("mAP", "rank1") if k in row}})
        row["best"] = bool(improved or not self.evaluates)
        self.rows.append(row)
        self.run_dir.save_stage(stage, {
            "model_config": self.config.model.to_dict(), "config": self.config.to_dict(),
            "model_state": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "memory": memory.table.cpu(), "labels": self.labels.cpu(), "optimizer": optimizer.state_dict(),
            "seed": self.config.train.seed * 1000 + stage, "best_map": self.best_map, "metrics": self.rows,
        })
        self.run_dir.write_metrics(self.rows)
        plot_stages(self.rows, self.run_dir.plot, title=f"{self.splits.name}: {self.config.clustering.linkage}")
        log.info(_stage_line(row))


def _stage_line(row: dict[str, Any]) -> str:
    parts = [f"stage {row['stage']}: clusters {row['clusters_before']} -> {row['clusters_after']}",
             f"loss {row['loss']:.3f}", f"train {row['train_seconds']:.1f} s",
             f"merge {row['merge_seconds']:.2f} s"]
    if "mAP" in row:
        parts.append(f"mAP {row['mAP']:.1%} rank-1 {row['rank1']:.1%}")
    if "pairwise_f" in row:
        parts.append(f"pairwise F {row['pairwise_f']:.3f}")
    if row.get("best"):
        parts.append("(best)")
    return ", ".join(parts)
