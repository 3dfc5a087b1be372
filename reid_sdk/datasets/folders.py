"""Unlabelled data, the real-world case: a folder of crops, or a folder of tracklets (one sub-folder each).

Files are chosen by image extension and kept when their content is an image (the content, not the extension,
decides the decoder); other files are ignored. Identities are unknown (pid = -1), so everything is ``train``.
"""

from __future__ import annotations

from pathlib import Path

from .files import readable_images, sorted_subfolders, warn_skipped
from .roots import require_records, resolve_root
from .records import UNKNOWN_CAMERA, UNKNOWN_PID, DatasetSplits, ImageRecord, TrackletRecord
from .statistics import log_statistics

CROPS_LAYOUT = "a folder of person crops ROOT/**/*.{jpg,jpeg,png,bmp,tif,webp,ppm} (any depth)"
TRACKLETS_LAYOUT = "a folder of tracklets ROOT/<track>/<frame>.jpg (one sub-folder per track, frames sorted naturally)"


def load_image_folder(root: str | Path) -> DatasetSplits:
    """Every readable image below ``root`` (recursively, naturally sorted) as an unlabelled train record."""
    base = resolve_root(root, (), CROPS_LAYOUT)
    skipped: list[Path] = []
    paths = readable_images(base, skipped, recursive=True)
    splits = DatasetSplits(name="image-folder", root=base, skipped=skipped)
    splits.train = [ImageRecord(path=path, pid=UNKNOWN_PID, camera=UNKNOWN_CAMERA) for path in paths]
    require_records(splits.train, base, CROPS_LAYOUT)
    warn_skipped(skipped, f"image folder {base}")
    log_statistics(splits)
    return splits


def load_tracklet_folder(root: str | Path) -> DatasetSplits:
    """Each sub-folder of ``root`` as one unlabelled tracklet whose frames are its images in natural order."""
    base = resolve_root(root, (), TRACKLETS_LAYOUT)
    skipped: list[Path] = []
    splits = DatasetSplits(name="tracklet-folder", root=base)
    for track_folder in sorted_subfolders(base):
        frames = readable_images(track_folder, skipped)
        if frames:
            splits.train.append(
                TrackletRecord(
                    frames=tuple(frames), pid=UNKNOWN_PID, camera=UNKNOWN_CAMERA, tracklet_id=len(splits.train)
                )
            )
    splits.skipped = skipped
    require_records(splits.train, base, TRACKLETS_LAYOUT)
    warn_skipped(skipped, f"tracklet folder {base}")
    log_statistics(splits)
    return splits
