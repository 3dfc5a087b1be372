"""What the page browses: the gallery's cameras and their tracks (entries grouped by camera and track id).

Built once from the gallery's stored rows (read in chunks, no vectors) and kept in step with the service's own adds
and removals. An entry without a track id is a track of its own. ``CAMERA:TRACK_ID`` names a track as typed by a
person: both parts are text, matched against the stored labels' text (camera 2 and camera "2" print the same; the
first found wins, which the page never meets since it passes the labels it was given).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from reid_sdk.gallery import Gallery
from reid_sdk.gallery.entries import EntryRow

_ROWS_PER_READ = 10_000


@dataclass
class Track:
    """A camera's track: its entries (ids), first and last time (seconds; None without timestamps)."""

    camera: Any
    track_id: Any
    entry_ids: list[int] = field(default_factory=list)
    first_time: float | None = None
    last_time: float | None = None

    def include(self, entry_id: int, row: EntryRow) -> None:
        self.entry_ids.append(entry_id)
        times = [t for t in (row.timestamp, row.metadata.get("first_time"), row.metadata.get("last_time"))
                 if isinstance(t, (int, float))]
        if times:
            self.first_time = min([self.first_time, *times] if self.first_time is not None else times)
            self.last_time = max([self.last_time, *times] if self.last_time is not None else times)


def _key(entry_id: int, row: EntryRow) -> tuple[Any, Any]:
    """The track an entry belongs to: (camera, track id), or (camera, ("entry", id)) when it has no track id."""
    return row.camera, row.track_id if row.track_id is not None else ("entry", entry_id)


class TrackCatalog:
    """Cameras and tracks of a gallery, by label and by the text a URL carries.

    Example:
        ```python
        catalog = TrackCatalog.of(Gallery.open("gallery/"))
        track = catalog.track("c1:7")          # KeyError when unknown
        print(track.entry_ids, track.first_time)
        ```
    """

    def __init__(self) -> None:
        self._tracks: dict[tuple[Any, Any], Track] = {}
        self._of_entry: dict[int, tuple[Any, Any]] = {}

    @classmethod
    def of(cls, gallery: Gallery) -> TrackCatalog:
        catalog = cls()
        ids = gallery.ids()
        for start in range(0, len(ids), _ROWS_PER_READ):
            catalog.add(gallery.rows(ids[start : start + _ROWS_PER_READ]).items())
        return catalog

    def add(self, rows: Iterable[tuple[int, EntryRow]]) -> None:
        """Count new entries."""
        for entry_id, row in rows:
            key = _key(int(entry_id), row)
            track = self._tracks.get(key)
            if track is None:
                track = self._tracks[key] = Track(row.camera, row.track_id)
            track.include(int(entry_id), row)
            self._of_entry[int(entry_id)] = key

    def remove(self, entry_ids: Iterable[int]) -> None:
        """Forget removed entries (unknown ids are ignored); a track left empty goes. Its times stay as they were
        for a track that keeps entries (an upper bound until the catalog is rebuilt)."""
        for entry_id in entry_ids:
            key = self._of_entry.pop(int(entry_id), None)
            if key is None:
                continue
            track = self._tracks[key]
            track.entry_ids.remove(int(entry_id))
            if not track.entry_ids:
                del self._tracks[key]

    def cameras(self) -> dict[Any, int]:
        """{camera label: number of tracks}, in label-text order."""
        counts: dict[Any, int] = {}
        for camera, _ in self._tracks:
            counts[camera] = counts.get(camera, 0) + 1
        return dict(sorted(counts.items(), key=lambda item: str(item[0])))

    def camera(self, text: str) -> Any:
        """The stored camera label whose text is ``text``; ValueError naming the known cameras when none is."""
        for camera in self.cameras():
            if str(camera) == text:
                return camera
        known = ", ".join(str(camera) for camera in self.cameras()) or "none"
        raise ValueError(f"unknown camera {text!r} (the gallery's cameras: {known})")

    def tracks(self, camera: Any) -> list[Track]:
        """The tracks of one camera (a stored label), earliest first (untimed last)."""
        found = [track for (label, _), track in self._tracks.items() if label == camera and type(label) is type(camera)]
        return sorted(found, key=lambda t: (t.first_time is None, t.first_time or 0.0, t.entry_ids[0]))

    def track(self, name: str) -> Track:
        """The track ``CAMERA:TRACK_ID`` names; ValueError for a malformed name or an unknown camera, KeyError for
        an unknown track."""
        camera_text, found, track_text = name.rpartition(":")
        if not found or not camera_text or not track_text:
            raise ValueError(f"a track is named CAMERA:TRACK_ID, got {name!r}")
        camera = self.camera(camera_text)
        for track in self.tracks(camera):
            if track.track_id is not None and str(track.track_id) == track_text:
                return track
        raise KeyError(f"camera {camera_text} has no track {track_text}")

    def track_of(self, entry_id: int) -> Track:
        """The track an entry belongs to; KeyError for an unknown entry."""
        if int(entry_id) not in self._of_entry:
            raise KeyError(f"no entry {entry_id} in the gallery")
        return self._tracks[self._of_entry[int(entry_id)]]

