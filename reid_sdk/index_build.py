"""Filling a ReIDIndex from image files: the records (path, identity, camera, timestamp) and the batched add.

Identity and camera come from Market-1501 style names (``0002_c1s1_000451_03.jpg``) or from a CSV with rows
``path,identity,camera[,timestamp]``. Torch-free; used by ``reid-index build`` and the demo.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reid_sdk.datasets.files import image_files, read_image
from reid_sdk.datasets.market import parse_image_name
from reid_sdk.index import ReIDIndex

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GalleryImage:
    """One image to add to a gallery, with the labels stored beside its feature."""

    path: Path
    identity: Any
    camera: Any
    timestamp: float | None = None


def records_from_names(folder: Path) -> list[GalleryImage]:
    """Every image under ``folder`` (recursively), labelled from its Market-1501 style file name."""
    paths = image_files(folder, recursive=True)
    if not paths:
        raise ValueError(f"no images under {folder}")
    records = []
    for path in paths:
        labels = parse_image_name(path.name)
        if labels is None:
            raise ValueError(f"{path.name} is not a Market-1501 style name (PID_cCAM...): pass --csv path,identity,camera")
        records.append(GalleryImage(path, *labels))
    return records


def records_from_csv(csv_path: Path, folder: Path | None = None) -> list[GalleryImage]:
    """Rows ``path,identity,camera[,timestamp]`` (paths relative to ``folder``, else to the CSV's folder)."""
    base = folder or csv_path.parent
    records = []
    with open(csv_path, newline="") as handle:
        for line, row in enumerate(csv.reader(handle), start=1):
            if not row or row[0].startswith("#") or (line == 1 and row[0].strip().lower() == "path"):
                continue
            if len(row) not in (3, 4):
                raise ValueError(f"{csv_path}:{line}: expected path,identity,camera[,timestamp], got {row}")
            timestamp = float(row[3]) if len(row) == 4 and row[3].strip() else None
            records.append(GalleryImage(base / row[0].strip(), row[1].strip(), row[2].strip(), timestamp))
    if not records:
        raise ValueError(f"{csv_path} lists no images")
    return records


def read_crop(path: Path) -> np.ndarray:
    """The decoded BGR image at ``path``; ValueError when it cannot be read."""
    image = read_image(path)
    if image is None:
        raise ValueError(f"cannot read image {path}")
    return image


def add_images(index: ReIDIndex, records: Sequence[GalleryImage], batch_size: int = 64) -> None:
    """Extract and add ``records`` in batches; each entry stores the image's absolute path as metadata."""
    for start in range(0, len(records), batch_size):
        chunk = records[start : start + batch_size]
        index.add([read_crop(record.path) for record in chunk], identity=[r.identity for r in chunk],
                  camera=[r.camera for r in chunk], timestamp=[r.timestamp for r in chunk],
                  metadata=[{"path": str(record.path.resolve())} for record in chunk])
        logger.debug("%d/%d images added", min(start + batch_size, len(records)), len(records))
