"""Features and embeddings of dataset records with the network, batched through a DataLoader.

Crops go through the SDK's own ``preprocess_batch``, so features seen by clustering
and evaluation during training are the ones a deployed extractor computes. A
tracklet's feature is the L2-normalised mean of its frames' features.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from reid_sdk.datasets.files import read_image
from reid_sdk.datasets.records import ImageRecord, TrackletRecord, record_paths
from reid_sdk.model import ReIDNet
from reid_sdk.inference.preprocess import preprocess_batch
from reid_sdk._utils.progress import progress


class RecordCrops(Dataset):
    """Every image of the records (every frame of a tracklet, or at most ``max_frames`` evenly spaced ones),
    preprocessed; frames are read one batch at a time, so memory does not grow with the tracklets' length.

    Items are (uint8 3 x H x W RGB, owning record index), or None for a file that cannot be decoded.
    """

    def __init__(self, records: Sequence[ImageRecord | TrackletRecord], input_size: tuple[int, int],
                 max_frames: int | None = None) -> None:
        self.items = [(path, owner) for owner, record in enumerate(records)
                      for path in record_paths(record, max_frames)]
        self.input_size = input_size

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | None:
        path, owner = self.items[index]
        image = read_image(path)
        if image is None:
            return None
        return torch.from_numpy(preprocess_batch(image, self.input_size)[0]), owner


def _collate(items: list) -> tuple[torch.Tensor, torch.Tensor] | None:
    kept = [item for item in items if item is not None]
    if not kept:
        return None
    return torch.stack([image for image, _ in kept]), torch.tensor([owner for _, owner in kept])


@dataclass
class Extracted:
    """Per-record L2-normalised features (for clustering / retrieval) and embeddings (for the lookup table).

    ``found`` marks the records with at least one readable image; the rows of the others are zero.
    """

    features: torch.Tensor
    embeddings: torch.Tensor
    found: torch.Tensor


def autocast_context(device: torch.device, dtype: torch.dtype | None):
    """torch.autocast on CUDA with ``dtype``; a no-op context elsewhere or when dtype is None."""
    if device.type != "cuda" or dtype is None:
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=dtype)


@torch.no_grad()
def extract_records(model: ReIDNet, records: Sequence[ImageRecord | TrackletRecord], device: torch.device,
                    batch_size: int = 128, num_workers: int = 0, max_frames: int | None = None,
                    amp_dtype: torch.dtype | None = None, channels_last: bool = False,
                    desc: str = "extracting") -> Extracted:
    """Run ``model`` in eval mode over ``records``; the model's train/eval mode is restored afterwards."""
    was_training = model.training
    model.eval()
    loader = DataLoader(RecordCrops(records, model.input_size, max_frames), batch_size=batch_size,
                        num_workers=num_workers, collate_fn=_collate, pin_memory=device.type == "cuda")
    feature_sums = torch.zeros(len(records), model.feature_dim, device=device)
    embedding_sums = torch.zeros(len(records), model.config.embedding_dim, device=device)
    counts = torch.zeros(len(records), device=device)
    for batch in progress(loader, desc, unit="batch"):
        if batch is None:
            continue
        images, owners = (t.to(device, non_blocking=True) for t in batch)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast_context(device, amp_dtype):
            out = model.features_and_embeddings(images)
        feature_sums.index_add_(0, owners, out.feature.float())
        embedding_sums.index_add_(0, owners, out.embedding.float())
        counts.index_add_(0, owners, torch.ones_like(owners, dtype=counts.dtype))
    model.train(was_training)
    return Extracted(features=F.normalize(feature_sums, dim=1).cpu(), embeddings=F.normalize(embedding_sums, dim=1).cpu(),
                     found=(counts > 0).cpu())
