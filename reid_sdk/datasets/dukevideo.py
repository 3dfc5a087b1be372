"""DukeMTMC-VideoReID: ``{train,query,gallery}/<pid>/<tracklet>/<frames>.jpg``.

Frames are named ``0001_C6_F0099_X30823.jpg`` (older releases: ``0001C6F0099X30823.jpg``); the camera comes
from the ``C`` field of the first frame, the pid from the identity folder. pid -1 is junk (dropped).
"""

from __future__ import annotations

import re
from pathlib import Path

from .files import readable_images, sorted_subfolders, warn_skipped
from .roots import require_records, resolve_root
from .records import DatasetSplits, TrackletRecord
from .statistics import log_statistics

LAYOUT = "DukeMTMC-VideoReID layout ROOT[/DukeMTMC-VideoReID]/{train,query,gallery}/0001/0001/0001_C6_F0001_X00001.jpg"
JUNK_PID = -1
_PID_FOLDER = re.compile(r"^-?\d+$")
_FRAME_NAME = re.compile(r"^-?\d+_?C(\d+)_?F\d+", re.IGNORECASE)


def load_dukemtmc_video(root: str | Path) -> DatasetSplits:
    """Read a DukeMTMC-VideoReID folder into train / query / gallery tracklet records."""
    base = resolve_root(root, ("train", "query", "gallery"), LAYOUT)
    splits = DatasetSplits(name="dukevideo", root=base)
    skipped: list[Path] = []
    for split in ("train", "query", "gallery"):
        records, junk = _read_split(base / split, skipped)
        setattr(splits, split, records)
        splits.dropped_junk += junk
    require_records(splits.train + splits.query + splits.gallery, base, LAYOUT)
    splits.skipped = skipped
    warn_skipped(skipped, f"dukevideo at {base}")
    log_statistics(splits)
    return splits


def _read_split(folder: Path, skipped: list[Path]) -> tuple[list[TrackletRecord], int]:
    records, junk = [], 0
    for pid_folder in sorted_subfolders(folder):
        if not _PID_FOLDER.match(pid_folder.name):
            skipped.append(pid_folder)
            continue
        pid = int(pid_folder.name)
        for track_folder in sorted_subfolders(pid_folder):
            if pid == JUNK_PID:
                junk += 1
                continue
            frames = readable_images(track_folder, skipped)
            named = [path for path in frames if _FRAME_NAME.match(path.name)]
            skipped.extend(path for path in frames if not _FRAME_NAME.match(path.name))
            if not named:
                continue
            camera = int(_FRAME_NAME.match(named[0].name).group(1))
            records.append(TrackletRecord(frames=tuple(named), pid=pid, camera=camera, tracklet_id=len(records)))
    return records, junk
