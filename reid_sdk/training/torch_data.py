"""torch Datasets over image and tracklet records, with ``torchvision.transforms.v2`` augmentation (needs torch).

Samples are uint8 RGB tensors (3 x H x W, or T x 3 x H x W for tracklets): the network normalises pixels
itself. Unreadable images never stop an epoch: the record loaders already drop empty and non-image files
(one counted warning); a file that still fails to decode here is replaced by the next readable sample (for a
tracklet: by its other frames), counted in ``num_unreadable`` and reported by one warning per process.

Items may be asked for as ``(index, seed)`` (what the trainer's sampler yields): the sample's random draws
(frames, crop, flip, erasing) then come from ``seed`` alone, so a run is the same whatever the number of
loader workers and whether they persist across stages. Resizing interpolates as the inference
preprocessing does (bilinear, no antialiasing), so training and deployment see the same pixels.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from reid_sdk.datasets.files import read_image
from reid_sdk.datasets.records import ImageRecord, TrackletRecord, evenly_spaced

logger = logging.getLogger(__name__)

SAMPLING_MODES = ("evenly", "random", "all")


@dataclass(frozen=True)
class TransformConfig:
    """Augmentation of training crops; test crops are only resized to ``size`` (H, W).

    crop_scale: area range of the random resized crop; aspect_jitter: the crop's width/height ratio ranges
    over the output's ratio divided / multiplied by this (person-shaped crops); random_erasing: probability.
    """

    size: tuple[int, int] = (256, 128)
    crop_scale: tuple[float, float] = (0.64, 1.0)
    aspect_jitter: float = 4 / 3
    flip_probability: float = 0.5
    random_erasing: float = 0.0

    def __post_init__(self) -> None:
        if min(self.size) < 1:
            raise ValueError(f"size must be positive (H, W), got {self.size}")
        if not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            raise ValueError(f"crop_scale must be an increasing range within (0, 1], got {self.crop_scale}")
        if self.aspect_jitter < 1:
            raise ValueError(f"aspect_jitter must be >= 1, got {self.aspect_jitter}")


def build_transform(config: TransformConfig, train: bool) -> v2.Transform:
    """Random resized crop (person aspect) + flip (+ random erasing) for training; resize only for testing."""
    if not train:
        return v2.Resize(config.size, antialias=False)
    ratio = config.size[1] / config.size[0]
    steps: list[v2.Transform] = [
        v2.RandomResizedCrop(config.size, scale=config.crop_scale,
                             ratio=(ratio / config.aspect_jitter, ratio * config.aspect_jitter), antialias=False),
        v2.RandomHorizontalFlip(config.flip_probability),
    ]
    if config.random_erasing > 0:
        steps.append(v2.RandomErasing(p=config.random_erasing, value=0))
    return v2.Compose(steps)


def _rgb_tensor(image: np.ndarray) -> torch.Tensor:
    """H x W x 3 BGR uint8 array -> 3 x H x W RGB uint8 tensor."""
    return torch.from_numpy(np.ascontiguousarray(image[:, :, ::-1].transpose(2, 0, 1)))


class _UnreadableLog:
    """Counts files that fail to decode; warns once per process."""

    def __init__(self) -> None:
        self.paths: set[Path] = set()

    def add(self, path: Path) -> None:
        if not self.paths:
            logger.warning("cannot decode %s: substituting another sample; further unreadable files are only "
                           "counted (see num_unreadable)", path)
        self.paths.add(Path(path))


class _RecordDataset(Dataset, ABC):
    """Records -> ``(sample, pid, camera, index)``; a record without a readable sample is replaced by the next one."""

    def __init__(self, records: Sequence, transform: Callable | None) -> None:
        if not records:
            raise ValueError(f"{type(self).__name__} needs at least one record")
        self.records = list(records)
        self.transform = transform
        self._unreadable = _UnreadableLog()

    def __len__(self) -> int:
        return len(self.records)

    @property
    def num_unreadable(self) -> int:
        """Files found unreadable so far (in this process)."""
        return len(self._unreadable.paths)

    @abstractmethod
    def _sample(self, record) -> torch.Tensor | None:
        """The record's uint8 tensor before the transform, or None when nothing of it decodes."""

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, int, int, int]:
        if isinstance(item, tuple):
            index, seed = item
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                return self._item(index)
        return self._item(item)

    def _item(self, index: int) -> tuple[torch.Tensor, int, int, int]:
        for offset in range(len(self.records)):
            position = (index + offset) % len(self.records)
            record = self.records[position]
            sample = self._sample(record)
            if sample is None:
                continue
            if self.transform is not None:
                sample = self.transform(sample)
            return sample, record.pid, record.camera, position
        raise RuntimeError(f"no record of this {type(self).__name__} holds a readable image")


class ImageDataset(_RecordDataset):
    """Image records -> ``(image uint8 3 x H x W RGB, pid, camera, index)``."""

    def __init__(self, records: Sequence[ImageRecord], transform: Callable | None = None) -> None:
        super().__init__(records, transform)
    def _sample(self, record: ImageRecord) -> torch.Tensor | None:
        image = read_image(record.path)
        if image is None:
            self._unreadable.add(record.path)
            return None
        return _rgb_tensor(image)


def frame_indices(length: int, num_frames: int, mode: str, generator: torch.Generator | None = None) -> list[int]:
    """Which of ``length`` frames to use: ``evenly`` spaced or ``random`` (sorted; with replacement when the
    tracklet is shorter than ``num_frames``), or ``all`` frames capped at ``num_frames`` (evenly thinned)."""
    if length < 1:
        raise ValueError("a tracklet needs at least one frame")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if mode == "all":
        return list(range(length)) if length <= num_frames else frame_indices(length, num_frames, "evenly")
    if mode == "evenly":
        return evenly_spaced(length, num_frames)
    if mode == "random":
        if length >= num_frames:
            chosen = torch.randperm(length, generator=generator)[:num_frames]
        else:
            chosen = torch.randint(0, length, (num_frames,), generator=generator)
        return sorted(chosen.tolist())
    raise ValueError(f"unknown sampling mode {mode!r}; expected one of {', '.join(SAMPLING_MODES)}")


class TrackletDataset(_RecordDataset):
    """Tracklet records -> ``(frames uint8 T x 3 x H x W RGB, pid, camera, index)``.

    Frames are resized to ``frame_size`` (H, W) so they stack, then ONE transform draw is applied to the whole
    clip. Training: ``sampling`` "evenly" or "random" gives exactly ``num_frames`` frames. Evaluation: "all"
    gives every frame up to ``num_frames`` (variable T: use batch_size=1 or a custom collate).
    """

    def __init__(self, records: Sequence[TrackletRecord], frame_size: tuple[int, int], num_frames: int = 8,
                 sampling: str = "evenly", transform: Callable | None = None) -> None:
        if sampling not in SAMPLING_MODES:
            raise ValueError(f"unknown sampling mode {sampling!r}; expected one of {', '.join(SAMPLING_MODES)}")
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        super().__init__(records, transform)
        self.frame_size = frame_size
        self.num_frames = num_frames
        self.sampling = sampling

    def _sample(self, record: TrackletRecord) -> torch.Tensor | None:
        """Decode only the sampled frames; when one fails, sample again among the frames left."""
        height, width = self.frame_size
        paths = [path for path in record.frames if Path(path) not in self._unreadable.paths]
        while paths:
            chosen = frame_indices(len(paths), self.num_frames, self.sampling)
            decoded = {i: read_image(paths[i]) for i in sorted(set(chosen))}
            failed = [paths[i] for i, image in decoded.items() if image is None]
            if not failed:
                frames = {
                    i: image if image.shape[:2] == (height, width)
                    else cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
                    for i, image in decoded.items()
                }
                return torch.stack([_rgb_tensor(frames[i]) for i in chosen])
            for path in failed:
                self._unreadable.add(path)
            paths = [path for path in paths if path not in failed]
        return None
