"""Plain dataset records (torch-free): one image or one tracklet with its labels, grouped per split."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: Label used for samples whose identity is unknown (unlabelled folders).
UNKNOWN_PID = -1
#: Label used when a sample's camera is unknown.
UNKNOWN_CAMERA = -1


@dataclass(frozen=True)
class ImageRecord:
    """One image crop: its path, identity (pid, 0 = distractor) and camera (1-based as in the file names)."""

    path: Path
    pid: int
    camera: int


@dataclass(frozen=True)
class TrackletRecord:
    """One tracklet: its frame paths in temporal order, identity, camera and tracklet id; for a site's tracks
    also ``frame_span``, the first and last frame of the track in its camera's video, and ``detected_runs``, the
    inclusive runs of frames in which the tracker detected it (None elsewhere)."""

    frames: tuple[Path, ...]
    pid: int
    camera: int
    tracklet_id: int
    frame_span: tuple[int, int] | None = None
    detected_runs: tuple[tuple[int, int], ...] | None = None


Record = ImageRecord | TrackletRecord


@dataclass
class DatasetSplits:
    """The train / query / gallery records of one dataset, plus the files skipped as unreadable and the junk count."""

    name: str
    root: Path
    train: list = field(default_factory=list)
    query: list = field(default_factory=list)
    gallery: list = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    dropped_junk: int = 0

    @property
    def skipped_files(self) -> int:
        """How many files were skipped as unreadable, empty or misnamed."""
        return len(self.skipped)

    @property
    def is_video(self) -> bool:
        """True when the records are tracklets."""
        records = self.train or self.query or self.gallery
        return bool(records) and isinstance(records[0], TrackletRecord)

    def split(self, name: str) -> list:
        """The records of the split called ``name`` (train, query or gallery)."""
        if name not in ("train", "query", "gallery"):
            raise ValueError(f"unknown split {name!r}; expected train, query or gallery")
        return getattr(self, name)


def evenly_spaced(length: int, count: int) -> list[int]:
    """``count`` indices spread evenly over ``range(length)``, repeating frames when ``length < count``."""
    if length < 1 or count < 1:
        raise ValueError(f"need length >= 1 and count >= 1, got {length} and {count}")
    return np.round(np.linspace(0, length - 1, count)).astype(int).tolist()


def record_paths(record: ImageRecord | TrackletRecord, max_frames: int | None = None) -> list[Path]:
    """The files to read for a record's feature: its image, or its frames (all of them, the paper's tracklet
    feature, or at most ``max_frames`` evenly spaced ones)."""
    if isinstance(record, TrackletRecord):
        frames = record.frames
        if max_frames is None or max_frames >= len(frames):
            return list(frames)
        return [frames[i] for i in sorted(set(evenly_spaced(len(frames), max_frames)))]
    return [record.path]
