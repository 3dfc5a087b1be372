"""Image files in and out of a ReIDIndex: the records of gallery sources (which :mod:`reid_sdk.search.units`
turns into work), searching with query images. Unreadable files are skipped and counted.

Gallery sources:

- a folder of crops, at any depth: identity and camera from Market-1501 / DukeMTMC-reID names
  (``0002_c1s1_000451_03.jpg``), junk (pid -1) left out, other names unlabelled;
- a dataset root in any layout :mod:`reid_sdk.datasets` reads (its gallery split unless told otherwise;
  video layouts give one entry per tracklet, the mean of its frames' features);
- a CSV with rows ``path,identity,camera[,timestamp]``.

Query images: files, folders of them (any depth) or CSVs whose first column is a path.

Torch-free; used by ``reid-index`` and the demo.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reid_sdk.datasets import LOADERS, ImageRecord, load_dataset
from reid_sdk.datasets.files import image_files, read_image, warn_skipped
from reid_sdk.datasets.market import JUNK_PID, parse_image_name
from reid_sdk.datasets.records import UNKNOWN_CAMERA, UNKNOWN_PID, record_paths
from reid_sdk.gallery import Match
from reid_sdk.search.index import ReIDIndex

logger = logging.getLogger(__name__)

FOLDER = "folder"
FORMATS = (FOLDER, *LOADERS)
UNLABELLED_FORMATS = ("image-folder", "tracklet-folder")  # everything is in their train split
_DATASET_SPLIT_FOLDERS = ("bounding_box_test", "bbox_test")


@dataclass(frozen=True)
class GalleryRecord:
    """One gallery entry to be: an image, or a tracklet's frames (averaged into one feature), with its labels."""

    frames: tuple[Path, ...]
    identity: Any = None
    camera: Any = None
    timestamp: float | None = None
    track_id: Any = None


@dataclass(frozen=True)
class QueryMatches:
    """One query image of :func:`search_images`: its position in the list searched, path, crop and matches."""

    position: int
    path: Path
    crop: np.ndarray
    matches: list[Match]


def folder_records(folder: Path) -> list[GalleryRecord]:
    """Every image below ``folder``, labelled from its Market-1501 / DukeMTMC-reID name where it has one."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist or is not a folder")
    dataset_splits = [name for name in _DATASET_SPLIT_FOLDERS if (folder / name).is_dir()]
    if dataset_splits:
        raise ValueError(f"{folder} looks like a dataset root (it has {dataset_splits[0]}/): pass --format with its "
                         f"layout ({', '.join(LOADERS)}) to take one split, or point at the split's folder")
    records, junk, unlabelled = [], 0, 0
    for path in image_files(folder, recursive=True):
        labels = parse_image_name(path.name)
        if labels is not None and labels[0] == JUNK_PID:
            junk += 1
            continue
        unlabelled += labels is None
        records.append(GalleryRecord((path,), *(labels or (None, None))))
    if not records:
        raise ValueError(f"no images under {folder}")
    if junk or unlabelled:
        logger.info("%s: %d junk images (pid -1) left out, %d images without identity and camera in their name",
                    folder, junk, unlabelled)
    return records


def dataset_records(root: Path, format: str, split: str = "gallery", max_frames: int = 16) -> list[GalleryRecord]:
    """The records of one split of a dataset (all of it for the unlabelled folder layouts)."""
    splits = load_dataset(root, format)
    chosen = splits.train if format in UNLABELLED_FORMATS else splits.split(split)
    if not chosen:
        raise ValueError(f"the {split} split of {format} dataset {splits.root} is empty")

    def known(value: int, unknown: int) -> int | None:
        return None if value == unknown else value

    return [GalleryRecord(tuple(record_paths(record, max_frames)), known(record.pid, UNKNOWN_PID),
                          known(record.camera, UNKNOWN_CAMERA),
                          track_id=None if isinstance(record, ImageRecord) else record.tracklet_id)
            for record in chosen]


def csv_records(csv_path: Path, folder: Path | None = None) -> list[GalleryRecord]:
    """Rows ``path,identity,camera[,timestamp]`` (paths relative to ``folder``, else to the CSV's folder), one
    record each; a row repeating an earlier row's path, identity and camera (one entry) is left out with a warning
    naming both lines."""
    base = folder or csv_path.parent
    records = []
    first_line: dict[tuple[str, str, str], int] = {}
    repeats: list[tuple[int, int]] = []
    with open(csv_path, newline="") as handle:
        for line, row in enumerate(csv.reader(handle), start=1):
            if not row or row[0].startswith("#") or (line == 1 and row[0].strip().lower() == "path"):
                continue
            if len(row) not in (3, 4):
                raise ValueError(f"{csv_path}:{line}: expected path,identity,camera[,timestamp], got {row}")
            try:
                timestamp = float(row[3]) if len(row) == 4 and row[3].strip() else None
            except ValueError as error:
                raise ValueError(f"{csv_path}:{line}: timestamp {row[3]!r} is not a number") from error
            record = GalleryRecord((base / row[0].strip(),), row[1].strip(), row[2].strip(), timestamp)
            labelled = (os.path.abspath(record.frames[0]), record.identity, record.camera)
            if labelled in first_line:
                repeats.append((line, first_line[labelled]))
                continue
            first_line[labelled] = line
            records.append(record)
    if not records:
        raise ValueError(f"{csv_path} lists no images")
    if repeats:
        logger.warning("%s: %d row(s) repeat an earlier row's path, identity and camera and were left out (one entry "
                       "each): %s", csv_path, len(repeats),
                       ", ".join(f"line {line} (as line {first})" for line, first in repeats[:5]))
    return records


def query_images(sources: Sequence[Path]) -> list[Path]:
    """Query image paths from files, folders (searched recursively) and CSVs (first column; relative paths
    are relative to the CSV)."""
    paths: list[Path] = []
    for source in map(Path, sources):
        if source.is_dir():
            paths.extend(image_files(source, recursive=True))
        elif source.suffix.lower() == ".csv" and source.is_file():
            with open(source, newline="") as handle:
                rows = [row for row in csv.reader(handle) if row and not row[0].startswith("#")]
            if rows and rows[0][0].strip().lower() == "path":
                rows = rows[1:]
            paths.extend(source.parent / row[0].strip() for row in rows)
        elif source.exists():
            paths.append(source)
        else:
            raise FileNotFoundError(f"query {source} does not exist")
    if not paths:
        raise ValueError(f"no query images in {', '.join(map(str, sources))}")
    return paths


def read_crops(paths: Sequence[Path], skipped: list[Path]) -> list[tuple[int, np.ndarray]]:
    """(position in ``paths``, image) for each readable path; the others are appended to ``skipped``."""
    crops = []
    for position, path in enumerate(paths):
        image = read_image(path)
        if image is None:
            skipped.append(path)
        else:
            crops.append((position, image))
    return crops


def search_images(index: ReIDIndex, paths: Sequence[Path], k: int = 10, batch_size: int = 64,
                  **filters: Any) -> Iterator[QueryMatches]:
    """The top-k matches of each readable image in ``paths``, searched in batches and yielded in order;
    ``filters`` are :meth:`ReIDIndex.search`'s (``exclude_camera=...``). Unreadable images are skipped, and
    counted in one warning at the end."""
    skipped: list[Path] = []
    for start in range(0, len(paths), batch_size):
        crops = read_crops(paths[start : start + batch_size], skipped)
        if not crops:
            continue
        results = index.search_batch([crop for _, crop in crops], k=k, channel_order="bgr", **filters)  # OpenCV's
        for (position, crop), matches in zip(crops, results):
            yield QueryMatches(start + position, paths[start + position], crop, matches)
    warn_skipped(skipped, "queries")
