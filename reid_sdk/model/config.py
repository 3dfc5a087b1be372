"""The network's configuration: a plain dataclass, importable without torch."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

# The torchvision trunks ReIDNet builds on and the width of their last feature map (the pooled feature).
BACKBONE_WIDTHS = {"resnet18": 512, "resnet34": 512, "resnet50": 2048, "mobilenet_v2": 1280}
POOLINGS = ("avg", "max", "mixed", "gem")
#: The trunk's named stages, image first, by backbone family (reid_sdk.model.backbones cuts torchvision's so).
RESNET_STAGES = ("stem", "layer1", "layer2", "layer3", "layer4")
MOBILENET_V2_STAGES = ("features8", "features16", "features32")

# ImageNet statistics on the 0..255 scale: the model normalises raw RGB itself.
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the non-locally enhanced network (paper III.C: ResNet-50) and its input.

    ``backbone`` is one of :data:`BACKBONE_WIDTHS`. ``pretrained`` is ``"imagenet"`` (found on this
    machine, never downloaded: see reid_sdk.model.pretrained; an error when absent), a path to a
    torchvision state-dict file of that backbone, or ``None`` (random init).
    """

    backbone: str = "resnet50"
    non_local: bool = True
    pooling: str = "mixed"
    last_stride: int = 2
    embedding_dim: int = 2048
    dropout: float = 0.5
    input_size: tuple[int, int] = (256, 128)
    pretrained: str | None = "imagenet"

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_size", tuple(int(v) for v in self.input_size))
        if self.backbone not in BACKBONE_WIDTHS:
            raise ValueError(f"backbone must be one of {', '.join(BACKBONE_WIDTHS)}, got {self.backbone!r}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.last_stride not in (1, 2):
            raise ValueError(f"last_stride must be 1 or 2, got {self.last_stride!r}")
        if self.embedding_dim <= 0:
            raise ValueError(f"embedding_dim must be positive, got {self.embedding_dim!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if len(self.input_size) != 2 or min(self.input_size) < 32:
            raise ValueError(f"input_size must be (height, width), each >= 32, got {self.input_size!r}")

    @property
    def feature_dim(self) -> int:
        """Dimension of the pooled feature used for clustering and retrieval."""
        return BACKBONE_WIDTHS[self.backbone]

    @property
    def trunk_stages(self) -> tuple[str, ...]:
        """The names of the backbone's stages, image first (ReIDNet's attributes of those names)."""
        return MOBILENET_V2_STAGES if self.backbone == "mobilenet_v2" else RESNET_STAGES

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input_size"] = list(self.input_size)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Build a config from a dict, rejecting keys that are not fields."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model config keys: {', '.join(unknown)}")
        return cls(**data)
