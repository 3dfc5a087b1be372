"""What the demo renders and how it trains, per mode: ``quick`` (the test suite), ``cpu`` (default), ``cuda``.

The network starts from random weights on the CPU (no ImageNet file offline), so the schedule suits training from
scratch: a one-epoch first stage (instance discrimination from random init mostly learns background shortcuts),
then several short stages at a higher rate where the merged clusters teach cross-camera appearance. The method
itself (IMD + 0.3 CPD linkage, repelled loss, lookup table) is the paper's, unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from reid_sdk.synthetic.pedestrians import DifficultyConfig
from reid_sdk.synthetic.layouts import PRESETS, LayoutSizes, SyntheticConfig
from reid_sdk.model.config import ModelConfig
from reid_sdk.model.pretrained import find_cached_imagenet_weights
from reid_sdk.training.config import ClusteringConfig, DataConfig, RunConfig, TrainConfig

MODES = ("quick", "cpu", "cuda")

#: Milder than reid-synth's default (which defeats colour histograms and needs far more than minutes of CPU):
#: flatter camera scenes and casts, more clothing colours. Identities still share palettes and cameras still
#: differ in light, blur, resolution, viewpoint and occlusion.
DEMO_DIFFICULTY = DifficultyConfig(upper_palette=8, lower_palette=5, cast_strength=0.15, illumination=(0.8, 1.2),
                                   blur_sigma=0.8, low_resolution=1.5, noise_sigma=3.0, occlusion_probability=0.15,
                                   jpeg_quality=(70, 95), background_contrast=0.3)

_SMALL_NETWORK = ModelConfig(backbone="resnet18", input_size=(128, 64), embedding_dim=256, pretrained=None)


@dataclass(frozen=True)
class DemoSettings:
    """One demo mode: the synthetic data, the training run (``data.root`` filled in later) and the search step."""

    mode: str
    synthetic: SyntheticConfig
    run: RunConfig
    num_queries: int = 4
    top_k: int = 5
    parity_crops: int = 16
    seed: int = 0

    def describe_difficulty(self) -> str:
        """One line naming the difficulty knobs that differ from reid-synth's default."""
        default = DifficultyConfig()
        changed = [f"{name}={getattr(self.synthetic.difficulty, name)}" for name in default.__dataclass_fields__
                   if getattr(self.synthetic.difficulty, name) != getattr(default, name)]
        return "demo (" + ", ".join(changed) + ")" if changed else "reid-synth default"


def _run(model: ModelConfig, clustering: ClusteringConfig, train: TrainConfig, num_workers: int) -> RunConfig:
    return RunConfig(data=DataConfig(format="market1501", num_workers=num_workers), model=model,
                     clustering=clustering, train=train)


def demo_settings(mode: str, device: str) -> DemoSettings:
    """The settings of ``mode`` (one of :data:`MODES`) training on ``device`` ("cpu" or "cuda")."""
    if mode not in MODES:
        raise ValueError(f"demo mode must be one of {', '.join(MODES)}, got {mode!r}")
    # On a few CPU cores data-loader processes only steal time from the network: load in the main process.
    workers = 4 if device == "cuda" else 0
    scratch = TrainConfig(device=device, batch_size=32, first_stage_epochs=1, first_stage_lr=0.01,
                          lr_step_epoch=1, later_stage_epochs=3, later_stage_lr=0.05, backbone_lr_scale=1.0)
    if mode == "quick":
        sizes = LayoutSizes(train_ids=12, test_ids=12, num_cameras=3, cameras_per_id=(2, 3), train_images=96,
                            gallery_images=80, distractors=4, junk=2)
        return DemoSettings(mode, SyntheticConfig(sizes=sizes, difficulty=DEMO_DIFFICULTY),
                            _run(_SMALL_NETWORK, ClusteringConfig(merge_percent=0.2, max_stages=2),
                                 replace(scratch, batch_size=16, later_stage_epochs=1), workers),
                            num_queries=2, top_k=5, parity_crops=4)
    if mode == "cpu":
        sizes = LayoutSizes(train_ids=60, test_ids=60, num_cameras=4, cameras_per_id=(2, 3), train_images=600,
                            gallery_images=500, distractors=20, junk=10)
        return DemoSettings(mode, SyntheticConfig(sizes=sizes, difficulty=DEMO_DIFFICULTY),
                            _run(_SMALL_NETWORK, ClusteringConfig(merge_percent=0.1, max_stages=8), scratch, workers))
    # cuda: the paper's network (NL-ResNet-50, mixed pooling, 256 x 128; ImageNet weights when cached locally)
    # on the "small" synthetic set rendered at the network's input size.
    return DemoSettings(mode, SyntheticConfig(image_size=(256, 128), sizes=PRESETS["small"],
                                              difficulty=DEMO_DIFFICULTY),
                        _run(ModelConfig(pretrained="imagenet" if find_cached_imagenet_weights("resnet50") else None),
                             ClusteringConfig(merge_percent=0.1, max_stages=9),
                             replace(scratch, first_stage_epochs=2, lr_step_epoch=2, later_stage_epochs=4), workers))
