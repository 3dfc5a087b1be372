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
from torch.utils.data import Dataset

from reid_sdk.datasets import DatasetSplits, load_dataset
from reid_sdk.datasets.records import UNKNOWN_PID
from reid_sdk.training.torch_data import ImageDataset, TrackletDataset, TransformConfig, build_transform
from reid_sdk.evaluation import clustering_quality, evaluate_query_gallery
from reid_sdk.model import ReIDNet, load_checkpoint, save_checkpoint
from reid_sdk.model.checkpoint import config_differences
from reid_sdk.model.device import resolve_device
from reid_sdk.training.clustering import MergeSchedule, merge_stage
from reid_sdk.training.config import ConfigError, RunConfig
from reid_sdk.training.extraction import Extracted, extract_records
from reid_sdk.training.memory import ClusterMemory
from reid_sdk.training.plot import plot_stages
from reid_sdk.training.run_dir import RunDirectory
from reid_sdk.training.stage_sgd import StageSGD, TrainingDiverged, resolve_amp

log = logging.getLogger(__name__)


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
        self.sgd = StageSGD(self.model, config.train, self.device, self.amp_dtype, self.channels_last, self.video)
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
        try:
            loss = self.sgd.train(stage, stages, self.sgd.loader(self._train_dataset(), self.config.data.num_workers,
                                                                 seed), self.labels, memory)
        except TrainingDiverged as error:
            raise TrainingDiverged(f"{error}; the last good checkpoint is kept in {self.run_dir.stages}") from error
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
                   eval_seconds=time.perf_counter() - timer,
                   train_samples_per_s=self.sgd.samples_per_second(stage, len(self.splits.train), train_seconds))
        self._finish_stage(stage, row)
        return extracted

    def _train_dataset(self) -> Dataset:
        """The training samples with the training augmentation: images, or T frames per tracklet."""
        data = self.config.data
        transform = build_transform(TransformConfig(size=self.model.input_size, random_erasing=data.random_erasing),
                                    train=True)
        if self.video:
            return TrackletDataset(self.splits.train, self.model.input_size, data.frames_per_tracklet,
                                   data.frame_sampling, transform)
        return ImageDataset(self.splits.train, transform)

    # ------------------------------------------------------------------------------------- evaluation

    def _evaluate(self) -> dict[str, Any]:
        """Rank-k / mAP / mINP on query vs gallery (Market protocol), when the data has them."""
        if not self.evaluates:
            return {}
        data, train = self.config.data, self.config.train

        def features_of(records: list) -> tuple[np.ndarray, np.ndarray]:
            extracted = extract_records(self.model, records, self.device, train.eval_batch_size, data.num_workers,
                                        data.eval_max_frames, self.amp_dtype, self.channels_last)
            found = extracted.found.numpy()
            return extracted.features[found].numpy(), found

        result, _ = evaluate_query_gallery(features_of, self.splits.query, self.splits.gallery)
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

    def _finish_stage(self, stage: int, row: dict[str, Any]) -> None:
        improved = self.evaluates and row["mAP"] > self.best_map
        if improved or not self.evaluates:
            self.best_map = row.get("mAP", self.best_map)
            save_checkpoint(self.model, self.run_dir.best,
                            metadata={"stage": stage, "config": self.config.to_dict(),
                                      **{k: row[k] for k in ("mAP", "rank1") if k in row}})
        row["best"] = bool(improved or not self.evaluates)
        self.rows.append(row)
        self.run_dir.save_stage(stage, {  # exactly what _restore reads; the config is config.yaml beside it
            "model_config": self.config.model.to_dict(),
            "model_state": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "labels": self.labels.cpu(), "best_map": self.best_map, "metrics": self.rows,
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
