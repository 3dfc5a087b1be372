"""Searching a gallery with an entry it already holds: a track by its camera and track id, or any entry by id.

Users of a track gallery think in tracks ("who is track 7 of camera c2 in the other cameras?"), and the gallery
already holds each track's feature: the search reads that vector back, with no model and no video decoding, and
leaves the entry itself out of its results.

Example:
    ```python
    import numpy as np
    from reid_sdk.gallery import Gallery
    from reid_sdk.search.stored import entry_matches, track_entry

    gallery = Gallery(dim=4)
    gallery.add(np.eye(4)[[0, 0, 1, 2]] + 0.1, cameras=["c1", "c2", "c2", "c3"], track_ids=[7, 3, 4, 9])
    entry = track_entry(gallery, "c1", "7")
    row, matches = entry_matches(gallery, entry, k=2, camera_standardise=False)
    assert row.track_id == 7 and [(m.camera, m.track_id) for m in matches][0] == ("c2", 3)
    ```
"""

from __future__ import annotations

from typing import Any

from reid_sdk.gallery import Gallery, Match
from reid_sdk.gallery.entries import EntryRow


def parse_track(text: str) -> tuple[str, str]:
    """``CAMERA:TRACK_ID`` as (camera, track id) text; ValueError naming the expected form."""
    camera, colon, track = text.rpartition(":")
    if not colon or not camera or not track:
        raise ValueError(f"--track expects CAMERA:TRACK_ID (e.g. c2:7), got {text!r}")
    return camera, track


def track_entry(gallery: Gallery, camera: str, track_id: str) -> int:
    """The id of the entry of track ``track_id`` of ``camera`` (compared as text: camera 2 is "2"); ValueError
    when there is none, naming the cameras the gallery has, or several (one track ingested from two videos)."""
    rows = gallery.rows(gallery.ids())
    found = [entry for entry, row in rows.items() if str(row.camera) == camera and str(row.track_id) == track_id]
    if not found:
        cameras = sorted({str(row.camera) for row in rows.values() if row.track_id is not None})
        held = f"its track entries are of cameras {', '.join(cameras)}" if cameras else "it holds no track entry"
        raise ValueError(f"no entry of track {track_id} of camera {camera} in the gallery ({held})")
    if len(found) > 1:
        raise ValueError(f"track {track_id} of camera {camera} is {len(found)} entries "
                         f"({', '.join(map(str, sorted(found)))}): choose one with --entry")
    return found[0]


def entry_matches(gallery: Gallery, entry: int, k: int = 10, **filters: Any) -> tuple[EntryRow, list[Match]]:
    """The stored labels of ``entry`` and its top-k matches among the other entries, searched with its stored
    feature (``filters`` as :meth:`Gallery.search`'s; the query camera is the entry's own unless given)."""
    rows = gallery.rows([entry])
    if entry not in rows:
        raise ValueError(f"the gallery has no entry {entry} (its ids run from {int(gallery.ids().min())} to "
                         f"{int(gallery.ids().max())})" if len(gallery) else "the gallery is empty")
    row = rows[entry]
    filters.setdefault("query_camera", row.camera)
    matches = gallery.search(gallery.vectors([entry])[0], k=k + 1, **filters)
    return row, [match for match in matches if match.entry_id != entry][:k]
