"""MOTChallenge text files: the boxes with track ids a detector + tracker writes, one line per box.

``frame, id, left, top, width, height[, conf, x, y, z]`` (comma-separated; frames count from 1, boxes in pixels
and may reach outside the image). Rows with a negative id are detections no tracker claimed: they are skipped
and counted. Anything else malformed raises ValueError naming the file and line.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

_MOT_FIELDS = "frame,id,left,top,width,height[,conf,...]"


@dataclass(frozen=True)
class MotTracks:
    """Boxes sorted by (frame, track id): frames (1-based), track ids, boxes as x1, y1, x2, y2 and confidences."""

    frames: np.ndarray  # int64 (N,)
    track_ids: np.ndarray  # int64 (N,)
    boxes: np.ndarray  # float64 (N, 4) x1, y1, x2, y2
    confidences: np.ndarray  # float64 (N,); 1.0 where the file has none
    source: str = "tracks"

    def __len__(self) -> int:
        return len(self.frames)

    def tracks(self) -> Iterator[tuple[int, np.ndarray]]:
        """(track id, row indices in frame order) for every track, by increasing id."""
        order = np.lexsort((self.frames, self.track_ids))
        ids, starts = np.unique(self.track_ids[order], return_index=True)
        for track_id, rows in zip(ids, np.split(order, starts[1:])):
            yield int(track_id), rows


def _number(text: str, name: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{where}: {name} {text.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{where}: {name} is {text.strip()}")
    return value


def _integer(text: str, name: str, where: str) -> int:
    value = _number(text, name, where)
    if value != int(value):
        raise ValueError(f"{where}: {name} {text.strip()!r} is not a whole number")
    return int(value)


def read_mot(path: str | Path) -> MotTracks:
    """Parse a MOTChallenge tracks file; ValueError on malformed lines, duplicate (frame, id) or no tracks."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"tracks file not found: {path}")
    rows: list[tuple[int, int, float, float, float, float, float]] = []
    untracked = 0
    with open(path, newline="") as handle:
        for line, fields in enumerate(csv.reader(handle), start=1):
            if not fields or not "".join(fields).strip() or fields[0].lstrip().startswith("#"):
                continue
            where = f"{path}:{line}"
            if len(fields) < 6:
                raise ValueError(f"{where}: expected at least 6 comma-separated fields {_MOT_FIELDS}, got {fields}")
            frame, track = _integer(fields[0], "frame", where), _integer(fields[1], "id", where)
            left, top, width, height = (_number(fields[i], name, where)
                                        for i, name in enumerate(("left", "top", "width", "height"), start=2))
            confidence = _number(fields[6], "conf", where) if len(fields) > 6 and fields[6].strip() else 1.0
            if frame < 1:
                raise ValueError(f"{where}: frame {frame} (MOT frames count from 1)")
            if width <= 0 or height <= 0:
                raise ValueError(f"{where}: box width and height must be > 0, got {width} x {height}")
            if track < 0:
                untracked += 1
                continue
            rows.append((frame, track, left, top, left + width, top + height, confidence))
    if untracked:
        logger.warning("%s: skipped %d boxes without a track id (id < 0)", path, untracked)
    if not rows:
        raise ValueError(f"{path} holds no tracked boxes ({_MOT_FIELDS})")
    table = np.array(rows, dtype=np.float64)
    table = table[np.lexsort((table[:, 1], table[:, 0]))]
    frames, track_ids = table[:, 0].astype(np.int64), table[:, 1].astype(np.int64)
    repeated = np.flatnonzero((np.diff(frames) == 0) & (np.diff(track_ids) == 0))
    if repeated.size:
        raise ValueError(f"{path}: track {track_ids[repeated[0]]} has two boxes in frame {frames[repeated[0]]}")
    return MotTracks(frames, track_ids, table[:, 2:6].copy(), table[:, 6].copy(), str(path))


def write_mot(path: str | Path, frames: np.ndarray, track_ids: np.ndarray, boxes_xyxy: np.ndarray,
              confidences: np.ndarray | None = None) -> Path:
    """Write boxes in the MOTChallenge tracker-output format (``x, y, z`` left at -1)."""
    path = Path(path)
    confidences = np.ones(len(frames)) if confidences is None else confidences
    with open(path, "w") as handle:
        for frame, track, (x1, y1, x2, y2), confidence in zip(frames, track_ids, boxes_xyxy, confidences):
            handle.write(f"{int(frame)},{int(track)},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},"
                         f"{confidence:.3f},-1,-1,-1\n")
    return path


def read_track_identities(path: str | Path) -> dict[int, str]:
    """Rows ``track_id,identity`` (an optional header line): known identities of some tracks."""
    path = Path(path)
    identities: dict[int, str] = {}
    with open(path, newline="") as handle:
        for line, fields in enumerate(csv.reader(handle), start=1):
            if not fields or (line == 1 and fields[0].strip().lower() == "track_id"):
                continue
            if len(fields) != 2 or not fields[1].strip():
                raise ValueError(f"{path}:{line}: expected track_id,identity, got {fields}")
            track = _integer(fields[0], "track_id", f"{path}:{line}")
            if track in identities:
                raise ValueError(f"{path}:{line}: track {track} is listed twice")
            identities[track] = fields[1].strip()
    return identities


def write_track_identities(path: str | Path, identities: dict[int, str]) -> Path:
    """Write ``track_id,identity`` rows, the file :func:`read_track_identities` reads."""
    path = Path(path)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["track_id", "identity"])
        writer.writerows(sorted(identities.items()))
    return path
