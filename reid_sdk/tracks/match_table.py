"""The cross-camera match table that ``reid-index match`` and ``reid-adapt`` write (CSV, one format for both).

One row per (track, match), best match first; a track without a match keeps one row with empty match fields,
so every track of the camera is listed. Frames are the MOT file's, times are seconds as the gallery stores them.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reid_sdk._utils.atomic_file import atomic_write
from reid_sdk.gallery import Match
from reid_sdk.tracks.ingest import TrackFeature

MATCH_COLUMNS = ("camera", "track_id", "identity", "first_frame", "last_frame", "first_time", "last_time", "rank",
                 "match_camera", "match_track_id", "match_identity", "score", "match_entry_id", "match_first_time")


@dataclass(frozen=True)
class MatchedTrack:
    """A query track (where and when it was seen) and its matches in other cameras, best first."""

    camera: Any
    track_id: int
    identity: Any
    first_frame: int
    last_frame: int
    first_time: float
    last_time: float
    matches: Sequence[Match]

    @classmethod
    def of(cls, camera: Any, track: TrackFeature, identity: Any, matches: Sequence[Match]) -> MatchedTrack:
        """The row source of a track ``reid-index`` just read from a video."""
        return cls(camera, track.track_id, identity, track.first_frame, track.last_frame, track.first_time,
                   track.last_time, matches)

    def rows(self) -> list[list[Any]]:
        """This track's rows of the table."""
        head = [self.camera, self.track_id, _text(self.identity), self.first_frame, self.last_frame,
                f"{self.first_time:.2f}", f"{self.last_time:.2f}"]
        if not self.matches:
            return [head + [""] * (len(MATCH_COLUMNS) - len(head))]
        return [head + [rank, match.camera, match.track_id, _text(match.identity), f"{match.score:.4f}",
                        match.entry_id, "" if match.timestamp is None else f"{match.timestamp:.2f}"]
                for rank, match in enumerate(self.matches, start=1)]


def write_match_table(path: str | Path, tracks: Iterable[MatchedTrack]) -> Path:
    """Write the table of ``tracks`` to ``path`` (replaced whole: a reader never sees half a file)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(MATCH_COLUMNS)
    for track in tracks:
        writer.writerows(track.rows())
    with atomic_write(Path(path)) as handle:
        handle.write(buffer.getvalue().encode())
    return Path(path)


def _text(identity: Any) -> str:
    return "" if identity is None else str(identity)
