"""Market-1501 and DukeMTMC-reID: ``bounding_box_train/``, ``query/``, ``bounding_box_test/`` image folders.

File names carry the labels: ``0002_c1s1_000451_03.jpg`` (Market) and ``0005_c2_f0046985.jpg`` (Duke) are
pid 2 / 5 seen by camera 1 / 2. pid -1 marks junk (dropped); pid 0 marks distractors (kept in the gallery).
"""

from __future__ import annotations

import re
from pathlib import Path

from .files import readable_images, warn_skipped
from .roots import require_records, resolve_root
from .records import DatasetSplits, ImageRecord
from .statistics import log_statistics

JUNK_PID = -1
_SPLIT_FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
_NAME_PATTERNS = {
    "market1501": re.compile(r"^(-?\d+)_c(\d+)s\d+_\d+_\d+\.\w+$"),
    "dukemtmc": re.compile(r"^(-?\d+)_c(\d+)_f\d+\.\w+$"),
}
_LAYOUTS = {
    "market1501": "Market-1501 layout ROOT[/Market-1501-v15.09.15]/{bounding_box_train,query,bounding_box_test}/"
    "0002_c1s1_000451_03.jpg",
    "dukemtmc": "DukeMTMC-reID layout ROOT[/DukeMTMC-reID]/{bounding_box_train,query,bounding_box_test}/"
    "0005_c2_f0046985.jpg",
}


def parse_image_name(name: str) -> tuple[int, int] | None:
    """(pid, camera) from a Market-1501 or DukeMTMC-reID file name; None when it is neither."""
    for pattern in _NAME_PATTERNS.values():
        match = pattern.match(name)
        if match is not None:
            return int(match.group(1)), int(match.group(2))
    return None


def load_market1501(root: str | Path) -> DatasetSplits:
    """Read a Market-1501 folder into train / query / gallery image records."""
    return _load_image_layout(root, "market1501")


def load_dukemtmc(root: str | Path) -> DatasetSplits:
    """Read a DukeMTMC-reID folder into train / query / gallery image records."""
    return _load_image_layout(root, "dukemtmc")


def _load_image_layout(root: str | Path, name: str) -> DatasetSplits:
    layout = _LAYOUTS[name]
    base = resolve_root(root, tuple(_SPLIT_FOLDERS.values()), layout)
    splits = DatasetSplits(name=name, root=base)
    skipped: list[Path] = []
    for split, folder in _SPLIT_FOLDERS.items():
        records, junk = _parse_folder(base / folder, _NAME_PATTERNS[name], skipped)
        setattr(splits, split, records)
        splits.dropped_junk += junk
    require_records(splits.train + splits.query + splits.gallery, base, layout)
    splits.skipped = skipped
    warn_skipped(skipped, f"{name} at {base}")
    log_statistics(splits)
    return splits


def _parse_folder(folder: Path, pattern: re.Pattern, skipped: list[Path]) -> tuple[list[ImageRecord], int]:
    """Image records of one split folder and the number of junk images dropped."""
    records, junk = [], 0
    for path in readable_images(folder, skipped):
        match = pattern.match(path.name)
        if match is None:
            skipped.append(path)
            continue
        pid, camera = int(match.group(1)), int(match.group(2))
        if pid == JUNK_PID:
            junk += 1
            continue
        records.append(ImageRecord(path=path, pid=pid, camera=camera))
    return records, junk
