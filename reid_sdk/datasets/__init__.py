"""Torch-free dataset loaders: Market-1501, DukeMTMC-reID, MARS, DukeMTMC-VideoReID, image and tracklet folders, and a
site's camera videos with their MOT tracks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .dukevideo import load_dukemtmc_video
from .folders import load_image_folder, load_tracklet_folder
from .roots import DatasetLayoutError
from .market import load_dukemtmc, load_market1501
from .mars import load_mars
from .records import DatasetSplits, ImageRecord, TrackletRecord
from .site_videos import load_site_videos
from .statistics import statistics_table

LOADERS: dict[str, Callable[[str | Path], DatasetSplits]] = {
    "market1501": load_market1501,
    "dukemtmc": load_dukemtmc,
    "mars": load_mars,
    "dukevideo": load_dukemtmc_video,
    "image-folder": load_image_folder,
    "tracklet-folder": load_tracklet_folder,
    "videos": load_site_videos,
}


def load_dataset(root: str | Path, format: str) -> DatasetSplits:
    """Read ``root`` with the loader of ``format`` (one of :data:`LOADERS`)."""
    loader = LOADERS.get(format)
    if loader is None:
        raise ValueError(f"unknown dataset format {format!r}; expected one of {', '.join(LOADERS)}")
    return loader(root)


__all__ = [
    "LOADERS",
    "DatasetLayoutError",
    "DatasetSplits",
    "ImageRecord",
    "TrackletRecord",
    "load_dataset",
    "load_dukemtmc",
    "load_dukemtmc_video",
    "load_image_folder",
    "load_market1501",
    "load_mars",
    "load_site_videos",
    "load_tracklet_folder",
    "statistics_table",
]
