"""The re-clustering schedule (``train.schedule=recluster``): the loop today's unsupervised methods share.

Algorithm 1 merges a fixed share of clusters per stage and never undoes a merge, so an early mistake stays for
the rest of the run. Cluster Contrast, CAP / O2CAP, PPLR and ISE instead, every epoch: extract the whole training
set, cluster it from scratch (:mod:`~reid_sdk.training.pseudo_labels`), leave the samples the clustering cannot
place out of that epoch, build the memory from the clusters' mean embeddings (a centroid per cluster, or with
``train.loss=camera_proxy`` one proxy per (cluster, camera), CAP's cross-camera term from
``recluster.cross_camera_from_epoch``), and train ``recluster.iterations`` P x K batches with Adam. Each epoch is
one metrics row, one checkpoint and one candidate for ``best.pt``, like a stage of Algorithm 1.

With ``recluster.warmup_epochs`` the first epochs train every sample as its own cluster (instance
discrimination, Algorithm 1's stage 0, in batches of distinct samples): from a weak start the first clusterings
mix people, and training on them spoils the features the next clustering reads.

Order within an epoch: the labels it trains on were computed from the features extracted at the end of the
previous epoch (the start model's for epoch 0); after training, the set is extracted once, and those features
score the epoch's model and give the next epoch's labels, which the epoch's checkpoint holds.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch

from reid_sdk.training.clustering import CannotLink
from reid_sdk.training.config import ConfigError
from reid_sdk.training.extraction import Extracted
from reid_sdk.training.memory import CameraProxyMemory, ClusterMemory
from reid_sdk.training.model_choice import label_free_scores
from reid_sdk.training.pseudo_labels import OUTLIER, dbscan_settings, epoch_pseudo_labels
from reid_sdk.training.recluster_sgd import ReclusterSGD
from reid_sdk.training.stage_result import StageResult
from reid_sdk.training.trainer import Trainer

log = logging.getLogger(__name__)


class ReclusterTrainer(Trainer):
    """Re-clusters every epoch, outliers out (``train.schedule=recluster``; ``build_trainer`` picks it).

    Example:
        ```python
        config = load_config(None, ["data.root=/data/site-crops", "data.format=market1501",
                                    "train.schedule=recluster", "recluster.epochs=20", "recluster.iterations=100"])
        results = ReclusterTrainer(config, "runs/site").run()  # one StageResult per epoch
        ```
    """

    STEP = "epoch"

    def _check_schedule(self) -> None:
        train, recluster = self.config.train, self.config.recluster
        if train.batch_size % recluster.instances:
            raise ConfigError(f"train.batch_size={train.batch_size} is not a multiple of recluster.instances="
                              f"{recluster.instances} (a batch is P groups x K samples)")
        clustering = self.config.clustering
        unused = [f"{name}={value}" for name, value in (("clustering.max_stages", clustering.max_stages),
                                                        ("clustering.target_clusters", clustering.target_clusters))
                  if value is not None]
        if unused:  # e.g. reid-adapt's defaults for Algorithm 1
            log.info("%s: Algorithm 1's, unused by the re-clustering schedule (it runs recluster.epochs=%d epochs)",
                     ", ".join(unused), recluster.epochs)

    def _merges_take_constraints(self) -> bool:
        return self.config.recluster.pseudo_labels == "linkage"

    def _startup_line(self) -> str:
        recluster = self.config.recluster
        dbscan = dbscan_settings(recluster, len(self.splits.train))
        labels = (f"DBSCAN eps {dbscan['eps']:g}, min_samples {dbscan['min_samples']} on the Jaccard distance "
                  f"(k1 {dbscan['k1']}, k2 {dbscan['k2']})"
                  if recluster.pseudo_labels == "dbscan" else
                  f"{self.config.clustering.linkage} to D <= {recluster.linkage_threshold:g}")
        return (f"{super()._startup_line()}; schedule: re-cluster every epoch ({labels}), {recluster.epochs} epochs "
                f"of {recluster.iterations} batches")

    # ------------------------------------------------------------------------------------------ the loop

    def run(self) -> list[StageResult]:
        """Train ``recluster.epochs`` epochs, re-clustering before each; returns every epoch's result."""
        extracted = self._begin()
        self.sgd = ReclusterSGD(self.model, self.config.train, self.config.recluster, self._train_dataset(),
                                self.config.data.num_workers, self.device, self.amp_dtype, self.distributed,
                                self.micro_batch)
        if self.resume_state is not None:
            if "optimizer_state" not in self.resume_state:
                raise ConfigError(f"--resume: {self.run_dir.stage_path(int(self.resume_state['stage']))} holds no "
                                  f"optimiser state: it was written by Algorithm 1's stages, not the re-clustering "
                                  f"schedule that {self.run_dir.config} now names")
            self._restore(self.resume_state)  # the model, the results, and the next epoch's labels
            self.sgd.load_state_dict(self.resume_state["optimizer_state"])
            extracted = self._extract_train()  # the restored model's embeddings start the next memory
        else:
            self.labels = self._pseudo_labels(extracted.features)
        epochs = self.config.recluster.epochs
        for epoch in range(self.start_stage, epochs):
            extracted = self._run_epoch(epoch, epochs, extracted)
            if self._out_of_patience(epochs):
                break
        self._end()
        return self.results

    def _run_epoch(self, epoch: int, epochs: int, extracted: Extracted) -> Extracted:
        seed = self.config.train.seed * 1000 + epoch
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        warmup = epoch < self.config.recluster.warmup_epochs
        learnt_from = torch.arange(len(self.labels)) if warmup else self.labels
        clusters = int(learnt_from.max()) + 1
        if clusters == 0:
            raise ConfigError(f"epoch {epoch}: the clustering left every one of the {len(learnt_from)} samples out "
                              f"as an outlier: {self._looser_clustering_hint()}")
        memory, targets = self._epoch_memory(extracted, learnt_from, epoch)
        groups = targets.numpy()  # P x K over clusters, or over camera proxies (CAP's proxy-balanced batches)
        loss, train_seconds = self._train_on(memory, lambda: self.sgd.train_epoch(
            epoch, epochs, groups, targets, memory, seed, instances=1 if warmup else None))
        extracted, extract_seconds = self._timed_extract_train()

        timer = time.perf_counter()
        self.labels = self._pseudo_labels(extracted.features)
        cluster_seconds = time.perf_counter() - timer

        timer = time.perf_counter()
        scores = {**label_free_scores(extracted.features.to(self.device), _outliers_alone(learnt_from),
                                      _outliers_alone(self.labels), self._train_cameras(), seed=seed),
                  **self._evaluate(), **self._cluster_quality(_outliers_alone(self.labels))}
        result = StageResult(stage=epoch, clusters_before=clusters, clusters_after=int(self.labels.max()) + 1,
                             outliers=int((self.labels == OUTLIER).sum()), loss=loss, **scores,
                             train_seconds=train_seconds, extract_seconds=extract_seconds,
                             merge_seconds=cluster_seconds, eval_seconds=time.perf_counter() - timer,
                             train_samples_per_s=self.sgd.samples_per_second(train_seconds))
        self._finish_stage(epoch, epochs, result)
        return extracted

    def _pseudo_labels(self, features: torch.Tensor) -> torch.Tensor:
        """The next epoch's labels (-1: outlier), clustered once (rank 0) and broadcast."""
        if self.distributed.is_main:
            cannot_link = CannotLink.of_records(self.splits.train) if self.cannot_link else None
            labels = torch.from_numpy(epoch_pseudo_labels(features, self.config.recluster, self.config.clustering,
                                                          self._train_cameras(), cannot_link, self.device))
        else:
            labels = torch.empty(len(self.splits.train), dtype=torch.long)
        return self.distributed.broadcast(labels.to(self.device)).cpu()

    def _epoch_memory(self, extracted: Extracted, labels: torch.Tensor, epoch: int
                      ) -> tuple[ClusterMemory | CameraProxyMemory, torch.Tensor]:
        """The epoch's memory from the clustered samples' embeddings, and each sample's row (-1: left out)."""
        train, recluster = self.config.train, self.config.recluster
        kept = labels != OUTLIER
        embeddings = extracted.embeddings[kept].to(self.device)
        targets = torch.full_like(labels, OUTLIER)
        if train.loss == "camera_proxy":
            cross_camera = train.camera_proxy_weight if epoch >= recluster.cross_camera_from_epoch else 0.0
            memory = CameraProxyMemory.from_members(embeddings, labels[kept], self._train_cameras()[kept],
                                                    recluster.proxy_temperature, recluster.proxy_momentum,
                                                    cross_camera, train.camera_proxy_negatives)
            targets[kept] = memory.sample_targets
            return memory, targets
        targets[kept] = labels[kept]
        return ClusterMemory.from_members(embeddings, labels[kept], recluster.cluster_temperature,
                                          recluster.cluster_momentum), targets

    def _looser_clustering_hint(self) -> str:
        recluster = self.config.recluster
        if recluster.pseudo_labels == "dbscan":
            dbscan = dbscan_settings(recluster, len(self.splits.train))
            return f"raise recluster.eps (now {dbscan['eps']:g}) or lower recluster.min_samples ({dbscan['min_samples']})"
        return f"raise recluster.linkage_threshold (now {recluster.linkage_threshold:g})"

    def _epochs(self, stage: int) -> int:
        """Each step of this schedule is one epoch."""
        return 1

    def _schedule_state(self) -> dict[str, Any]:
        return {"optimizer_state": self.sgd.state_dict()}


def _outliers_alone(labels: torch.Tensor) -> torch.Tensor:
    """``labels`` with each outlier as a cluster of its own (0..C'-1), for scores that need every sample labelled."""
    alone = labels.clone()
    outliers = alone == OUTLIER
    alone[outliers] = int(labels.max()) + 1 + torch.arange(int(outliers.sum()))
    return alone
