"""The run configuration: dataclasses with the paper's defaults, read from YAML, overridden by ``--set a.b=v``.

Every value is type-checked on the way in, so a wrong key or type stops ``reid-train``
at start-up with a one-line reason, before any work.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reid_sdk._utils.atomic_file import atomic_write
from reid_sdk.datasets import LOADERS
from reid_sdk.model.config import ModelConfig
from reid_sdk.training.clustering import LINKAGES
from reid_sdk.training.memory_size import parse_memory

SHIPPED_CONFIGS = Path(__file__).resolve().parents[1] / "configs"
AMP_MODES = ("auto", "bf16", "fp16", "off")
SELECT_BY = ("auto", "map", "label_free")
LOSSES = ("repelled", "camera_proxy")
SCHEDULES = ("stages", "recluster")
PSEUDO_LABELS = ("dbscan", "linkage")


class ConfigError(ValueError):
    """A configuration that cannot run: unknown key, wrong type or value out of range."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


@dataclass(frozen=True)
class DataConfig:
    """Where the unlabelled training data is and how it is read; optionally a separate labelled evaluation set.

    Relative roots are made absolute when the config is built, so the saved config works from any folder.
    """

    root: str = ""
    format: str = "market1501"
    eval_root: str = ""  # a labelled query / gallery set (any format with them); "" = the training root's own
    eval_format: str = "market1501"
    num_workers: int = 4
    frames_per_tracklet: int = 16  # T frames sampled per tracklet in training (video; BUC's clip length)
    frame_sampling: str = "random"
    eval_max_frames: int | None = None  # frames per tracklet for clustering and evaluation; None: all (the paper)
    random_erasing: float = 0.0

    def __post_init__(self) -> None:
        _require(self.format in LOADERS, f"data.format must be one of {', '.join(LOADERS)}, got {self.format!r}")
        _require(self.eval_format in LOADERS, f"data.eval_format must be one of {', '.join(LOADERS)}, "
                                              f"got {self.eval_format!r}")
        for name in ("root", "eval_root"):
            value = getattr(self, name)
            if value:
                object.__setattr__(self, name, str(Path(value).expanduser().resolve()))
        _require(self.num_workers >= 0, f"data.num_workers must be >= 0, got {self.num_workers}")
        _require(self.frames_per_tracklet >= 1, "data.frames_per_tracklet must be >= 1")
        _require(self.frame_sampling in ("evenly", "random"), "data.frame_sampling must be evenly or random")
        _require(self.eval_max_frames is None or self.eval_max_frames >= 1,
                 "data.eval_max_frames must be >= 1, or null for every frame")
        _require(0.0 <= self.random_erasing <= 1.0, "data.random_erasing must be a probability in [0, 1]")


@dataclass(frozen=True)
class ClusteringConfig:
    """The merge rule (paper III.B) and Algorithm 1's schedule."""

    linkage: str = "imd_cpd"
    lam: float = 0.3
    lam_buc: float = 0.005
    merge_percent: float = 0.05
    block_size: int | None = None
    max_stages: int | None = None  # stop early (smoke runs); None runs until C <= m
    target_clusters: int | None = None  # the user's estimate of the identities: never merge below it
    camera_centering: bool = False  # camera-aware: remove each camera's mean feature before merging (needs cameras)
    cannot_link: bool = True  # site videos: never join two tracks one camera saw at overlapping times

    def __post_init__(self) -> None:
        _require(self.linkage in LINKAGES, f"clustering.linkage must be one of {', '.join(LINKAGES)}, "
                                           f"got {self.linkage!r}")
        _require(0.0 < self.merge_percent < 1.0, f"clustering.merge_percent (p) must be in (0, 1), "
                                                 f"got {self.merge_percent}")
        _require(self.lam >= 0.0, f"clustering.lam (lambda) must be >= 0, got {self.lam}")
        _require(self.lam_buc >= 0.0, f"clustering.lam_buc must be >= 0, got {self.lam_buc}")
        _require(self.block_size is None or self.block_size >= 1, "clustering.block_size must be >= 1")
        _require(self.max_stages is None or self.max_stages >= 1, "clustering.max_stages must be >= 1")
        _require(self.target_clusters is None or self.target_clusters >= 1, "clustering.target_clusters must be >= 1")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation per stage (paper IV.B) and the repelled loss's lookup table."""

    device: str = "auto"
    seed: int = 0
    batch_size: int = 16  # per process: the global batch is batch_size x world size under torchrun
    first_stage_epochs: int = 20
    first_stage_lr: float = 0.1
    lr_step_epoch: int = 15  # first stage: lr x lr_decay from this epoch on
    lr_decay: float = 0.1
    later_stage_epochs: int = 2
    later_stage_epochs_video: int = 5
    later_stage_lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = True  # as BUC's code, which the paper builds on
    weight_decay: float = 5e-4
    backbone_lr_scale: float = 0.1
    temperature: float = 0.1
    memory_momentum: float = 0.5
    amp: str = "auto"  # CUDA: bf16 where supported, else fp16; ignored on CPU
    channels_last: bool = True  # NHWC activations: faster on CUDA and on oneDNN CPUs (MobileNetV2 1.5x)
    eval_batch_size: int = 128
    init_checkpoint: str | None = None  # start from a reid-sdk checkpoint of the same model config
    select_by: str = "auto"  # which stage best.pt keeps: map (needs query/gallery), label_free, auto = map if possible
    keep_checkpoints: int = 2  # stage checkpoints kept besides best.pt (the newest); 0 keeps all
    lr_scaling: str = "linear"  # torchrun: lr x world size (batch_size is per process); "none" keeps the lr
    sync_batchnorm: bool = False  # torchrun on GPUs: batch statistics over the global batch
    loss: str = "repelled"  # the paper's; camera_proxy: one proxy per (cluster, camera), needs cameras
    camera_proxy_weight: float = 0.5  # camera_proxy: weight of the cross-camera term beside the within-camera one
    camera_proxy_negatives: int = 50  # camera_proxy: hardest negative proxies in the cross-camera term
    schedule: str = "stages"  # stages: Algorithm 1 (the paper); recluster: re-cluster every epoch (section recluster)
    patience: int | None = None  # stop once best.pt's score has not improved for this many stages / epochs
    max_memory: str | None = None  # CPU: resident memory a step may use (e.g. 4GiB); None: what the machine has free
    frozen_stages: int = 0  # the trunk's first stages kept as the start has them (no gradient, fixed BatchNorm)

    def __post_init__(self) -> None:
        _require(self.batch_size >= 2, f"train.batch_size must be >= 2, got {self.batch_size}")
        _require(self.first_stage_epochs >= 1 and self.later_stage_epochs >= 1 and self.later_stage_epochs_video >= 1,
                 "train epochs per stage must be >= 1")
        _require(self.first_stage_lr > 0 and self.later_stage_lr > 0, "train learning rates must be > 0")
        _require(self.backbone_lr_scale >= 0, f"train.backbone_lr_scale must be >= 0 (0 freezes the backbone), "
                                               f"got {self.backbone_lr_scale}")
        _require(self.lr_step_epoch >= 1, f"train.lr_step_epoch must be >= 1, got {self.lr_step_epoch}")
        _require(0.0 < self.lr_decay <= 1.0, f"train.lr_decay must be in (0, 1], got {self.lr_decay}")
        _require(0.0 <= self.momentum < 1.0, f"train.momentum must be in [0, 1), got {self.momentum}")
        _require(self.weight_decay >= 0, f"train.weight_decay must be >= 0, got {self.weight_decay}")
        _require(self.seed >= 0, f"train.seed must be >= 0, got {self.seed}")
        _require(self.temperature > 0, f"train.temperature must be > 0, got {self.temperature}")
        _require(0.0 <= self.memory_momentum < 1.0, f"train.memory_momentum must be in [0, 1), "
                                                    f"got {self.memory_momentum}")
        _require(self.amp in AMP_MODES, f"train.amp must be one of {', '.join(AMP_MODES)}, got {self.amp!r}")
        _require(self.eval_batch_size >= 1, "train.eval_batch_size must be >= 1")
        _require(self.select_by in SELECT_BY, f"train.select_by must be one of {', '.join(SELECT_BY)}, "
                                              f"got {self.select_by!r}")
        _require(self.lr_scaling in ("linear", "none"), f"train.lr_scaling must be linear or none, "
                                                         f"got {self.lr_scaling!r}")
        _require(self.keep_checkpoints >= 0, "train.keep_checkpoints must be >= 0 (0 keeps every stage)")
        _require(self.loss in LOSSES, f"train.loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        _require(self.camera_proxy_weight >= 0, "train.camera_proxy_weight must be >= 0")
        _require(self.camera_proxy_negatives >= 1, "train.camera_proxy_negatives must be >= 1")
        _require(self.patience is None or self.patience >= 1, "train.patience must be >= 1, or null to never stop early")
        _require(self.frozen_stages >= 0, f"train.frozen_stages must be >= 0, got {self.frozen_stages}")
        _require(self.schedule in SCHEDULES, f"train.schedule must be one of {', '.join(SCHEDULES)}, "
                                             f"got {self.schedule!r}")
        if self.max_memory is not None:
            try:
                parse_memory(str(self.max_memory))
            except ValueError as error:
                raise ConfigError(f"train.max_memory: {error}") from None


@dataclass(frozen=True)
class ReclusterConfig:
    """The re-clustering schedule (``train.schedule=recluster``), after Cluster Contrast and CAP.

    Every epoch re-clusters the whole training set from the current features (DBSCAN on the k-reciprocal Jaccard
    distance, or the paper's linkage run from singletons until ``linkage_threshold``), leaves the outliers out of
    that epoch, rebuilds the memory from the clusters and trains ``iterations`` P x K batches with Adam. Defaults
    are Cluster Contrast's (eps 0.6, k1 30, k2 6, min_samples 4, temperature 0.05, momentum 0.1, lr 3.5e-4 x 0.1
    every 20 epochs) and CAP's for camera proxies (temperature 0.07, momentum 0.2, cross-camera term from epoch 5);
    DBSCAN's eps, min_samples and k1 left null follow the data's size (a site's few hundred tracklets are not
    Market's 12,936 crops: :func:`~reid_sdk.training.pseudo_labels.dbscan_settings`).
    """

    epochs: int = 50
    iterations: int = 400  # P x K batches per epoch
    warmup_epochs: int = 0  # first epochs: every sample its own cluster (instance discrimination, as stage 0)
    instances: int = 4  # K: samples per cluster (per proxy with camera_proxy) in a batch; P = batch_size / K
    pseudo_labels: str = "dbscan"  # dbscan: DBSCAN on the Jaccard distance; linkage: clustering.linkage to a threshold
    eps: float | None = None  # null: by data size (pseudo_labels.dbscan_settings): 0.6 as Cluster Contrast, 0.5 small
    min_samples: int | None = None  # null: 4 (Cluster Contrast), 2 on a small set
    k1: int | None = None  # null: 30 (Cluster Contrast), 10 on a small set
    k2: int = 6
    linkage_threshold: float = 0.6  # linkage: merge while D <= this (IMD/CPD on unit vectors: 0..2)
    lr: float = 3.5e-4
    weight_decay: float = 5e-4
    lr_step_epochs: int = 20  # lr x 0.1 every this many epochs
    backbone_lr_scale: float = 1.0  # the ImageNet backbone at lr x this (Cluster Contrast trains all at one lr)
    cluster_temperature: float = 0.05
    cluster_momentum: float = 0.1
    proxy_temperature: float = 0.07
    proxy_momentum: float = 0.2
    cross_camera_from_epoch: int = 5  # camera_proxy: the cross-camera term starts at this epoch (CAP)

    def __post_init__(self) -> None:
        _require(self.epochs >= 1 and self.iterations >= 1, "recluster.epochs and recluster.iterations must be >= 1")
        _require(self.instances >= 1, f"recluster.instances must be >= 1, got {self.instances}")
        _require(0 <= self.warmup_epochs < self.epochs, f"recluster.warmup_epochs must be in [0, epochs), "
                                                         f"got {self.warmup_epochs}")
        _require(self.pseudo_labels in PSEUDO_LABELS, f"recluster.pseudo_labels must be one of "
                                                       f"{', '.join(PSEUDO_LABELS)}, got {self.pseudo_labels!r}")
        _require(self.eps is None or 0 < self.eps < 1, f"recluster.eps is a Jaccard distance: it must be in (0, 1) "
                                                       f"(or null), got {self.eps}")
        _require(all(value is None or value >= 1 for value in (self.min_samples, self.k1, self.k2)),
                 "recluster.min_samples, recluster.k1 and recluster.k2 must be >= 1 (or null)")
        _require(self.linkage_threshold > 0, f"recluster.linkage_threshold must be > 0, got {self.linkage_threshold}")
        _require(self.lr > 0 and self.weight_decay >= 0, "recluster.lr must be > 0 and recluster.weight_decay >= 0")
        _require(self.lr_step_epochs >= 1, "recluster.lr_step_epochs must be >= 1")
        _require(self.backbone_lr_scale >= 0, "recluster.backbone_lr_scale must be >= 0 (0 freezes the backbone)")
        _require(self.cluster_temperature > 0 and self.proxy_temperature > 0, "recluster temperatures must be > 0")
        _require(0.0 <= self.cluster_momentum < 1.0 and 0.0 <= self.proxy_momentum < 1.0,
                 "recluster memory momenta must be in [0, 1)")
        _require(self.cross_camera_from_epoch >= 0, "recluster.cross_camera_from_epoch must be >= 0")


@dataclass(frozen=True)
class RunConfig:
    """Everything ``reid-train`` needs; written to RUN_DIR/config.yaml and into every stage checkpoint."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    clustering: ClusteringConfig = field(default_factory=ClusteringConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    recluster: ReclusterConfig = field(default_factory=ReclusterConfig)

    def __post_init__(self) -> None:
        stages = self.model.trunk_stages
        _require(self.train.frozen_stages <= len(stages),
                 f"train.frozen_stages must be 0..{len(stages)} for {self.model.backbone} (its stages: "
                 f"{', '.join(stages)}), got {self.train.frozen_stages}")

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))


def _plain(value: Any) -> Any:
    """Tuples to lists, recursively, so the dict is YAML/JSON-friendly."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """``value`` as the annotated type, or ConfigError naming the key, the expected and the given type."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return _coerce(value, option, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0])
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"config {where}: expected a mapping of {annotation.__name__} fields, got {value!r}")
        return build(annotation, value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"config {where}: expected {len(args)} values, got {value!r}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    accepted = {bool: (bool,), int: (int,), float: (int, float), str: (str,)}.get(annotation)
    if accepted is None:
        raise ConfigError(f"config {where}: unsupported field type {annotation!r}")
    if isinstance(value, accepted) and (annotation is bool or not isinstance(value, bool)):
        return annotation(value)
    raise ConfigError(f"config {where}: expected {annotation.__name__}, got {value!r} ({type(value).__name__})")


def build(cls: type, data: dict[str, Any], where: str = "") -> Any:
    """Instantiate dataclass ``cls`` from a (nested) dict, rejecting unknown keys and wrong types."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    prefix = f"{where}." if where else ""
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(f"unknown config key {prefix}{unknown[0]}; {where or 'the top level'} has: {', '.join(names)}")
    values = {name: _coerce(data[name], hints[name], prefix + name) for name in names if name in data}
    try:
        return cls(**values)
    except ConfigError:
        raise
    except ValueError as exc:  # e.g. ModelConfig's own validation
        raise ConfigError(f"config {where or cls.__name__}: {exc}") from exc


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply ``"section.key=value"`` (value parsed as YAML: 64, 0.1, true, null, [256, 128]) to ``data``."""
    key, sep, text = assignment.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects section.key=value, got {assignment!r}")
    *sections, name = key.strip().split(".")
    target = data
    for section in sections:
        target = target.setdefault(section, {})
        if not isinstance(target, dict):
            raise ConfigError(f"--set {key}: {section} is not a section")
    target[name] = yaml.safe_load(text) if text.strip() else ""


def shipped_configs() -> list[str]:
    """Names of the configs that ship with the package (``paper-market``, ``cpu-smoke``, ...)."""
    return sorted(path.stem for path in SHIPPED_CONFIGS.glob("*.yaml"))


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A YAML file path as given, or the shipped config of that name (``paper-market`` or ``paper-market.yaml``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = SHIPPED_CONFIGS / f"{path.name.removesuffix('.yaml')}.yaml"
    if len(path.parts) == 1 and shipped.is_file():
        return shipped
    raise ConfigError(f"config file not found: {path} (shipped configs: {', '.join(shipped_configs())})")


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """The defaults, updated by the YAML file at ``path`` (or a shipped config's name), then by each
    ``section.key=value`` override."""
    data: dict[str, Any] = {}
    if path is not None:
        path = resolve_config_path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{path} must hold a mapping of sections, got {type(data).__name__}")
    for assignment in overrides:
        apply_override(data, assignment)
    return build(RunConfig, data)


def save_config(config: RunConfig, path: str | Path) -> Path:
    """Write the resolved config as YAML (what ``load_config`` reads back to an equal RunConfig), atomically: a
    resume that fails to rewrite it keeps the run's config."""
    path = Path(path)
    with atomic_write(path) as handle:
        handle.write(yaml.safe_dump(config.to_dict(), sort_keys=False).encode())
    return path
