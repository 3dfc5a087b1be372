"""Algorithm 1: train on the pseudo-labels, extract, merge m clusters, evaluate, keep the best; stage after stage.

Every sample (image, or tracklet for video) starts as its own cluster. Each stage trains with the repelled
loss against a lookup table initialised from the current clusters, then extracts the training set once: the
features drive ``merge_stage`` and the label-free model choice, the embeddings start the next stage's table.
The network's initialisation is seeded from ``train.seed`` and each stage re-seeds every random generator
from (seed, stage), so two runs of one config, and a resumed run, give the same labels and weights.
Samples whose images cannot be decoded are dropped before stage 0, counted, and listed in the run directory.
Labels are per sample, so a run records its training data's fingerprint and a resume refuses changed data.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reid_sdk._utils.progress import format_duration
from reid_sdk.datasets import DatasetSplits, load_dataset
from reid_sdk.datasets.records import UNKNOWN_CAMERA, UNKNOWN_PID
from reid_sdk.evaluation import LabelledFeatures, clustering_quality, query_gallery_report
from reid_sdk.model import ReIDNet, load_checkpoint, save_checkpoint
from reid_sdk.model.checkpoint import config_differences
from reid_sdk.model.device import resolve_device
from reid_sdk.training.clustering import CannotLink, MergeSchedule, merge_stage
from reid_sdk.training.config import ConfigError, RunConfig
from reid_sdk.training.data_fingerprint import DataFingerprint
from reid_sdk.training.distributed import Distributed
from reid_sdk.training.extraction import Extracted, extract_records
from reid_sdk.training.camera_centering import center_per_camera
from reid_sdk.training.memory import CameraProxyMemory, ClusterMemory
from reid_sdk.training.memory_budget import StepPlan, plan_run_step
from reid_sdk.training.model_choice import ModelChoiceRule, label_free_scores, model_choice_rule
from reid_sdk.training.plot import plot_stages
from reid_sdk.training.run_dir import RunDirectory
from reid_sdk.training.stage_result import StageResult
from reid_sdk.training.stage_sgd import StageSGD, TrainingDiverged, lr_scale, resolve_amp, stage_plan
from reid_sdk.training.torch_data import ImageDataset, TrackletDataset, TransformConfig, build_transform

log = logging.getLogger(__name__)


class Trainer:
    """Runs Algorithm 1 for a RunConfig into a run directory; inputs are validated in ``__init__``.

    :class:`~reid_sdk.training.recluster.ReclusterTrainer` (``train.schedule=recluster``) shares this class's data,
    model, extraction, evaluation, checkpoints, resume and model choice;
    :func:`~reid_sdk.training.schedules.build_trainer` builds the one a config names.

    Example:
        ```python
        trainer = Trainer(load_config("paper-market", ["data.root=/data/Market-1501"]), "runs/market")
        results = trainer.run()       # one StageResult per stage; RUN/best.pt is the chosen stage's model
        ```
    """

    STEP = "stage"  # what one metrics row is: an Algorithm 1 stage (the re-clustering schedule: an epoch)

    def __init__(self, config: RunConfig, out: str | Path, resume: bool = False) -> None:
        self.config = config
        self.run_dir = RunDirectory(out)
        done = self.run_dir.completed_stages()
        if done and not resume:
            raise ConfigError(f"{self.run_dir.root} already holds a run (stages up to {done[-1]}); "
                              "pass --resume to continue it or choose another --out")
        self.device = resolve_device(config.train.device)
        self.distributed = Distributed.from_environment(self.device.type == "cuda")
        if self.distributed.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.distributed.local_rank)
            torch.cuda.set_device(self.device)
        if not self.distributed.is_main:
            logging.getLogger("reid_sdk").setLevel(logging.WARNING)  # one rank speaks
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick its fastest kernels
        self.amp_dtype = resolve_amp(config.train.amp, self.device)
        self.channels_last = config.train.channels_last  # CPU too: oneDNN reorders NCHW activations at every conv
        self.splits = self._load_data()
        self.eval_splits = self._load_eval_data()
        self._check_schedule()  # refuses a schedule that runs nothing before any work
        cameras = {record.camera for record in self.splits.train}
        self.cameras_known = UNKNOWN_CAMERA not in cameras and len(cameras) > 1  # picks the label-free score
        self._check_camera_options()
        constraint = CannotLink.of_records(self.splits.train) if config.clustering.cannot_link else None
        self.cannot_link = constraint is not None and self._merges_take_constraints()  # rebuilt at each merge
        if constraint is not None:
            log.info("cannot-link: %d pairs of tracks one camera saw at overlapping times %s", len(constraint),
                     "stay apart" if self.cannot_link else "are NOT kept apart: DBSCAN takes no constraint "
                                                           "(recluster.pseudo_labels=linkage keeps them apart)")
        self.model_choice: ModelChoiceRule = model_choice_rule(config.train.select_by, self.evaluates,
                                                               self.cameras_known)
        self.model = self._build_model().to(self.device)
        self.model.freeze_trunk(config.train.frozen_stages)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.step_plan = self._plan_step()  # refuses a budget that cannot hold even the smallest step
        self.resume_state = self._read_resume_state(done) if resume and done else None
        self.data_fingerprint = DataFingerprint.of(self.splits)
        if self.resume_state is not None:
            self._check_same_data()
        self.results: list[StageResult] = []
        self.start_stage = int(self.resume_state["stage"]) + 1 if self.resume_state else 0
        log.info(self._startup_line())

    @property
    def video(self) -> bool:
        return self.splits.is_video

    @property
    def evaluates(self) -> bool:
        return bool(self.eval_splits.query and self.eval_splits.gallery)

    def _load_data(self) -> DatasetSplits:
        if not self.config.data.root:
            raise ConfigError("no training data: pass --data ROOT (or set data.root)")
        splits = load_dataset(self.config.data.root, self.config.data.format)
        if len(splits.train) < 2:
            raise ConfigError(f"{splits.root} has {len(splits.train)} training samples; need at least 2")
        return splits

    def _load_eval_data(self) -> DatasetSplits:
        data = self.config.data
        if not data.eval_root:
            return self.splits
        splits = load_dataset(data.eval_root, data.eval_format)
        if not (splits.query and splits.gallery):
            raise ConfigError(f"--eval-data {splits.root} has no query / gallery split to evaluate on")
        return splits

    def _check_camera_options(self) -> None:
        """The camera-aware options need each training sample's camera: refuse them at start-up without."""
        asked = [name for name, on in (("clustering.camera_centering=true", self.config.clustering.camera_centering),
                                       ("train.loss=camera_proxy", self.config.train.loss == "camera_proxy")) if on]
        if asked and not self.cameras_known:
            raise ConfigError(f"{' and '.join(asked)} need(s) the camera of every training sample, from at least 2 "
                              f"cameras; {self.splits.root} ({self.config.data.format}) gives none: use a format whose "
                              f"names carry cameras (market1501, dukemtmc, mars, dukevideo, videos) or turn them off")

    def _build_model(self) -> ReIDNet:
        init = self.config.train.init_checkpoint
        if init is not None:
            model, _ = load_checkpoint(init, expected_config=self.config.model)
            return model
        torch.manual_seed(self.config.train.seed)  # the random initialisation is part of the run's seed
        return ReIDNet(self.config.model)

    def _plan_step(self) -> StepPlan | None:
        """CPU: how a training step fits the memory budget (train.max_memory, else the machine's free memory);
        the model then checkpoints its trunk if the plan says so. None on a GPU (its memory is not the host's)."""
        plan = plan_run_step(self.config, self.video, self.device, self.model)
        self.model.checkpoint_trunk = bool(plan and plan.checkpoint_trunk)
        return plan

    @property
    def micro_batch(self) -> int | None:
        """Samples per forward / backward pass of the memory plan (None: the whole batch)."""
        return self.step_plan.micro_batch if self.step_plan else None

    def _startup_line(self) -> str:
        data, train = self.config.data, self.config.train
        device = str(self.device)
        if self.device.type == "cuda":
            device += f" ({torch.cuda.get_device_name(self.device)})"
        precision = f"AMP {str(self.amp_dtype).removeprefix('torch.')}" if self.amp_dtype else "fp32"
        kind = "tracklets" if self.video else "images"
        skipped = f", {self.splits.skipped_files} unreadable file(s) skipped" if self.splits.skipped_files else ""
        evaluation = (f"{len(self.eval_splits.query)} query / {len(self.eval_splits.gallery)} gallery from "
                      f"{self.eval_splits.root}" if self.evaluates else "none")
        world = (f"world size {self.distributed.world_size} (rank 0 writes), global batch "
                 f"{train.batch_size * self.distributed.world_size}, lr x{lr_scale(train, self.distributed.world_size):g}; "
                 if self.distributed.enabled else "")
        return (f"reid-train: {world}device {device}, {precision}, weights {self.model.weights_source}; "
                f"data {len(self.splits.train)} training {kind} from {self.splits.root} ({data.format}{skipped}); "
                f"evaluation {evaluation}; best.pt by {self.model_choice.reason}; seed {train.seed}"
                f"{f'; step: {self.step_plan.describe()}' if self.step_plan else ''}")

    def _read_resume_state(self, done: list[int]) -> dict[str, Any]:
        """The newest readable stage checkpoint (an unreadable newest one falls back to the one before)."""
        for stage in reversed(done):
            try:
                state = self.run_dir.load_stage(stage)
            except ValueError as error:
                log.warning("%s; resuming from the stage before it", error)
                continue
            saved = type(self.config.model).from_dict(state["model_config"])
            diffs = config_differences(self.config.model, saved)
            if diffs:
                raise ConfigError(f"{self.run_dir.stage_path(stage)} holds another model config: {'; '.join(diffs)}")
            return state
        raise ConfigError(f"--resume: no stage checkpoint in {self.run_dir.stages} can be read")

    def _check_same_data(self) -> None:
        """Refuse to resume on training data that changed since the run started: its labels are per sample."""
        started_on = self.run_dir.read_data_fingerprint()
        if started_on is None:
            log.warning("%s records no fingerprint of its training data (data_fingerprint.json): resuming "
                        "without checking that %s is unchanged", self.run_dir.root, self.splits.root)
            return
        change = self.data_fingerprint.changes_since(started_on)
        if change:
            raise ConfigError(f"--resume: {change} (in {self.splits.root}); the run's labels belong to the data it "
                              f"started on: restore that data or start a new run (delete "
                              f"{self.run_dir.data_fingerprint} to resume anyway)")

    def _restore(self, state: dict[str, Any]) -> None:
        stage = int(state["stage"])
        if len(state["labels"]) != len(self.splits.train):
            raise ConfigError(f"{self.run_dir.stage_path(stage)} has {len(state['labels'])} labels but the data "
                              f"has {len(self.splits.train)} readable training samples")
        self.model.load_state_dict(state["model_state"])
        self.labels = state["labels"].long()
        self.results = [StageResult.from_dict(row) for row in state["metrics"]]
        log.info("resuming after stage %d (%d clusters)", stage, int(self.labels.max()) + 1)

    # ------------------------------------------------------------------------------------------ the loop

    def run(self) -> list[StageResult]:
        """Train stage by stage until C <= m (or the target / max_stages); returns every stage's result."""
        extracted = self._begin()
        self.schedule = self._merge_schedule()  # unreadable samples may have left fewer
        self.labels = torch.arange(len(self.splits.train))
        if self.resume_state is not None:
            self._restore(self.resume_state)
            extracted = self._extract_train()  # the restored model's embeddings start the next table
        stage_merges = self.schedule.stage_merges()[: self.config.clustering.max_stages]
        self.sgd = StageSGD(self.model, self.config.train, self._train_dataset(), self.config.data.num_workers,
                            self.device, self.amp_dtype, self.video, self.distributed, self.micro_batch)
        for stage in range(self.start_stage, len(stage_merges)):
            extracted = self._run_stage(stage, len(stage_merges), stage_merges[stage], extracted)
            if self._out_of_patience(len(stage_merges)):
                break
        self._end()
        return self.results

    def _begin(self) -> Extracted:
        """The run directory prepared (rank 0), the training set extracted, undecodable samples left out."""
        if self.distributed.is_main:
            self.run_dir.prepare(self.config)
            if self.resume_state is None or not self.run_dir.data_fingerprint.is_file():
                self.run_dir.write_data_fingerprint(self.data_fingerprint)  # what a resume must find again
        return self._drop_unreadable(self._extract_train())

    def _end(self) -> None:
        """Release DDP and close the process group, in a distributed run."""
        if self.distributed.enabled:
            self.sgd = None  # DDP holds the process group: release it before the group is closed
            gc.collect()
            self.distributed.close()

    def _out_of_patience(self, planned: int) -> bool:
        """``train.patience``: whether the chosen stage's score has not improved for that many stages since; says
        so, with the share of the planned stages saved."""
        patience = self.config.train.patience
        best = next(result for result in self.results if result.best)
        last = self.results[-1].stage
        if patience is None or last - best.stage < patience or last == planned - 1:
            return False
        log.info("stopping after %s %d of %d: %s has not improved for %d %ss (best: %s %d); %d %ss (%.0f %%) not run",
                 self.STEP, last, planned - 1, self.model_choice.metric, patience, self.STEP, self.STEP, best.stage,
                 planned - 1 - last, self.STEP, 100 * (planned - 1 - last) / planned)
        return True

    def _merges_take_constraints(self) -> bool:
        """Whether this schedule's clustering keeps cannot-link pairs apart (Algorithm 1's merges do)."""
        return True

    def _check_schedule(self) -> None:
        if self.config.train.schedule != "stages":
            raise ConfigError(f"train.schedule={self.config.train.schedule} is not Algorithm 1's: build the trainer "
                              f"with reid_sdk.training.schedules.build_trainer(config, out)")
        self.schedule = self._merge_schedule()

    def _merge_schedule(self) -> MergeSchedule:
        """Algorithm 1's schedule for the training samples; ConfigError when it would run no stage."""
        clustering = self.config.clustering
        schedule = MergeSchedule(len(self.splits.train), clustering.merge_percent, clustering.target_clusters,
                                 rule="buc" if clustering.linkage == "buc" else "paper")
        if not schedule.stage_merges():
            raise ConfigError(_no_stage_reason(schedule))
        return schedule

    def _extract(self, records: list, desc: str) -> Extracted:
        """Features of ``records``; under torchrun each rank extracts its shard and all ranks get them all."""
        data, shard = self.config.data, self.distributed.shard(len(records))
        local = extract_records(self.model, records[shard], self.device, self.config.train.eval_batch_size,
                                data.num_workers, data.eval_max_frames, self.amp_dtype, self.channels_last, desc=desc)
        gather = self.distributed.gather_shards
        return Extracted(gather(local.features.to(self.device), len(records)).cpu(),
                         gather(local.embeddings.to(self.device), len(records)).cpu(),
                         gather(local.found.to(self.device), len(records)).cpu())

    def _extract_train(self) -> Extracted:
        return self._extract(self.splits.train, "extracting the training set")

    def _timed_extract_train(self) -> tuple[Extracted, float]:
        timer = time.perf_counter()
        return self._extract_train(), time.perf_counter() - timer

    def _train_on(self, memory: ClusterMemory | CameraProxyMemory, train: Callable[[], float]) -> tuple[float, float]:
        """(loss, seconds) of ``train()`` against ``memory``, kept as ``self.memory``; a diverged loss names the
        checkpoints that are kept."""
        timer = time.perf_counter()
        try:
            loss = train()
        except TrainingDiverged as error:
            raise TrainingDiverged(f"{error}; the last good checkpoint is kept in {self.run_dir.stages}") from error
        self.memory = memory
        return loss, time.perf_counter() - timer

    def _drop_unreadable(self, extracted: Extracted) -> Extracted:
        """Leave out training samples with no decodable image; name them in one warning and in a file."""
        found = extracted.found
        unreadable = [record for record, ok in zip(self.splits.train, found.tolist()) if not ok]
        paths = [*self.splits.skipped, *(getattr(r, "path", None) or r.frames[0].parent for r in unreadable)]
        if self.distributed.is_main:
            self.run_dir.write_skipped(paths)
        if not unreadable:
            return extracted
        kept = [record for record, ok in zip(self.splits.train, found.tolist()) if ok]
        if len(kept) < 2:
            raise ConfigError(f"{len(kept)} of {len(self.splits.train)} training samples in {self.splits.root} "
                              f"can be decoded; need at least 2 (see {self.run_dir.skipped})")
        log.warning("left out %d training sample(s) whose images cannot be decoded, e.g. %s (all listed in %s)",
                    len(unreadable), paths[len(self.splits.skipped)], self.run_dir.skipped)
        self.splits.train = kept
        return Extracted(extracted.features[found], extracted.embeddings[found], found[found])

    def _run_stage(self, stage: int, stages: int, num_merges: int, extracted: Extracted) -> Extracted:
        seed = self.config.train.seed * 1000 + stage
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        clusters_before = int(self.labels.max()) + 1
        memory, targets = self._stage_memory(extracted)
        loss, train_seconds = self._train_on(memory, lambda: self.sgd.train(stage, stages, targets, memory, seed))
        extracted, extract_seconds = self._timed_extract_train()

        learnt_from = self.labels
        timer = time.perf_counter()
        clustering = self.config.clustering
        if self.distributed.is_main:
            features = extracted.features
            if clustering.camera_centering:
                features = center_per_camera(features, self._train_cameras())
            self.labels = merge_stage(features, self.labels, num_merges, clustering.linkage,
                                      clustering.lam, clustering.lam_buc, device=self.device,
                                      block_size=clustering.block_size,
                                      cannot_link=CannotLink.of_records(self.splits.train) if self.cannot_link else None
                                      ).cpu()
        else:
            self.labels = torch.empty_like(self.labels)
        self.labels = self.distributed.broadcast(self.labels.to(self.device)).cpu()  # the merge runs once
        merge_seconds = time.perf_counter() - timer

        timer = time.perf_counter()
        scores = {**label_free_scores(extracted.features.to(self.device), learnt_from, self.labels,
                                      self._train_cameras(), seed=seed),
                  **self._evaluate(), **self._cluster_quality(self.labels)}
        result = StageResult(stage=stage, clusters_before=clusters_before, clusters_after=int(self.labels.max()) + 1,
                             loss=loss, **scores, train_seconds=train_seconds, extract_seconds=extract_seconds,
                             merge_seconds=merge_seconds, eval_seconds=time.perf_counter() - timer,
                             train_samples_per_s=self.sgd.samples_per_second(stage, len(self.splits.train),
                                                                             train_seconds))
        self._finish_stage(stage, stages, result)
        return extracted

    def _stage_memory(self, extracted: Extracted) -> tuple[ClusterMemory | CameraProxyMemory, torch.Tensor]:
        """The stage's lookup table from the current clusters and each sample's training target (its cluster, or
        with ``train.loss=camera_proxy`` its (cluster, camera) proxy)."""
        train = self.config.train
        embeddings, labels = extracted.embeddings.to(self.device), self.labels.to(self.device)
        if train.loss == "camera_proxy":
            memory = CameraProxyMemory.from_members(embeddings, labels, self._train_cameras(), train.temperature,
                                                    train.memory_momentum, train.camera_proxy_weight,
                                                    train.camera_proxy_negatives)
            return memory, memory.sample_targets
        return ClusterMemory.from_members(embeddings, labels, train.temperature, train.memory_momentum), self.labels

    def _train_cameras(self) -> torch.Tensor | None:
        """The training samples' cameras for the cross-camera share, None when the run does not use it."""
        return torch.tensor([record.camera for record in self.splits.train]) if self.cameras_known else None

    def _train_dataset(self) -> ImageDataset | TrackletDataset:
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
        """Rank-k / mAP / mINP on query vs gallery (Market protocol), when there is a labelled split, and the
        camera-standardised mAP / rank-1 (``mAP_camstd``, ``rank1_camstd``: each camera's mean feature removed)."""
        if not self.evaluates:
            return {}
        splits = {}
        for split in ("query", "gallery"):
            records = self.eval_splits.split(split)
            extracted = self._extract(records, f"evaluating: {len(records)} {split} records")
            found = extracted.found.numpy()
            splits[split] = LabelledFeatures.of(records, extracted.features[found].numpy(), found, split)
        report = query_gallery_report(splits["query"], splits["gallery"])
        return {key: value for key, value in report.items() if key in ("rank1", "rank5", "rank10", "mAP", "mINP",
                                                                       "mAP_camstd", "rank1_camstd")}

    def _cluster_quality(self, labels: torch.Tensor) -> dict[str, Any]:
        """Pairwise precision / recall / F and NMI of pseudo-``labels`` 0..C-1, when the training pids are known."""
        pids = np.array([record.pid for record in self.splits.train])
        if (pids == UNKNOWN_PID).any():
            return {}
        quality = clustering_quality(labels.numpy(), pids)
        return {"pairwise_precision": quality.pairwise_precision, "pairwise_recall": quality.pairwise_recall,
                "pairwise_f": quality.pairwise_f_score, "nmi": quality.nmi}

    # ---------------------------------------------------------------------------------------- saving

    def _finish_stage(self, stage: int, stages: int, result: StageResult) -> None:
        self.results.append(result)
        chosen = self.model_choice.choose(self.results)
        for each in self.results:
            each.best = each is chosen
        if self.distributed.is_main:
            self._write_stage(stage, stages, result)

    def _write_stage(self, stage: int, stages: int, result: StageResult) -> None:
        """best.pt when the stage is the best so far, its checkpoint, metrics.jsonl, the plot (rank 0 only)."""
        if result.best:
            save_checkpoint(self.model, self.run_dir.best, metadata={
                "stage": stage, "selected_by": self.model_choice.metric, "why": self.model_choice.reason,
                "score": result.score(self.model_choice.metric), "config": self.config.to_dict(),
                **{k: v for k, v in result.as_dict().items() if k in ("mAP", "rank1", "label_free_score")}})
        rows = [each.as_dict() for each in self.results]
        self.run_dir.save_stage(stage, {  # exactly what _restore reads; the config is config.yaml beside it
            "model_config": self.config.model.to_dict(),
            "model_state": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "labels": self.labels.cpu(), "metrics": rows, **self._schedule_state(),
        })
        self.run_dir.prune_stages(self.config.train.keep_checkpoints)
        self.run_dir.write_metrics(rows)
        plot_stages(rows, self.run_dir.plot, title=f"{self.splits.name}: {self.config.clustering.linkage}",
                    criterion=self.model_choice.metric)
        left = time_left(result, stages, self._epochs)
        log.info(_stage_line(result, stages, self.model_choice, self.STEP)
                 + (f", about {format_duration(left)} left" if stage < stages - 1 else ""))

    def _epochs(self, stage: int) -> int:
        """Training epochs of ``stage`` (Algorithm 1: the first stage's, or a later stage's)."""
        return stage_plan(stage, self.config.train, self.video).epochs

    def _schedule_state(self) -> dict[str, Any]:
        """What a schedule adds to each stage checkpoint for an exact resume (Algorithm 1: nothing)."""
        return {}


def _no_stage_reason(schedule: MergeSchedule) -> str:
    """Why ``schedule`` runs no stage, for a refusal at start-up."""
    if schedule.target_clusters is not None and schedule.target_clusters >= schedule.num_samples:
        return (f"clustering.target_clusters={schedule.target_clusters} is not below the {schedule.num_samples} "
                f"training samples: no merge would run")
    return (f"clustering.merge_percent={schedule.merge_percent:g} merges {schedule.merges_per_stage} of "
            f"{schedule.num_samples} samples per stage, which leaves no stage to run (Algorithm 1 stops when "
            f"C <= m): use a smaller merge_percent")


def time_left(result: StageResult, steps: int, epochs: Callable[[int], int]) -> float:
    """Seconds the planned steps after ``result``'s (of ``steps``) should take at its pace: its training seconds per
    epoch times each step's ``epochs(step)``, plus its extraction, merge and scoring seconds once per step."""
    per_epoch = result.train_seconds / epochs(result.stage)
    per_step = result.extract_seconds + result.merge_seconds + result.eval_seconds
    return sum(per_epoch * epochs(step) + per_step for step in range(result.stage + 1, steps))


def _stage_line(result: StageResult, stages: int, model_choice: ModelChoiceRule, step: str) -> str:
    parts = [f"{step} {result.stage}/{stages - 1}: clusters {result.clusters_before} -> {result.clusters_after}"
             + (f" ({result.outliers} outliers)" if result.outliers is not None else ""),
             f"loss {result.loss:.3f}", f"train {result.train_seconds:.1f} s",
             f"merge {result.merge_seconds:.2f} s", f"label-free {result.label_free_score:.3f}"]
    if result.mAP is not None:
        parts.append(f"mAP {result.mAP:.1%} rank-1 {result.rank1:.1%}")
    if result.pairwise_f is not None:
        parts.append(f"pairwise F {result.pairwise_f:.3f}")
    if result.best:
        parts.append(f"(best so far by {model_choice.metric})")
    return ", ".join(parts)
