"""Pictures of search results: a query crop or a track, then its ranked matches, marked right or wrong."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from reid_sdk.datasets.files import read_image
from reid_sdk.gallery import Match
from reid_sdk.search.index import TrackMatches
from reid_sdk.tracks import read_box
from reid_sdk.visualize.tiles import Tile, label, render_row, stack_rows, verdict, with_note, with_title


def render_strip(query: np.ndarray, matches: Sequence[Match], query_identity: Any = None,
                 query_camera: Any = None) -> np.ndarray:
    """The query then its matches, each captioned ``identity / camera`` and score; with ``query_identity`` the
    matches are marked right or wrong. Match crops are read as :func:`entry_crop` reads them."""
    tiles = [Tile(entry_crop(match.metadata), (label(match.identity, match.camera), f"{match.score:.3f}"),
                  verdict(query_identity, match.identity)) for match in matches]
    return render_row(Tile(query, (label(query_identity, query_camera), "query"), "query"), tiles)


def entry_crop(metadata: dict[str, Any]) -> np.ndarray | None:
    """A gallery entry's picture from its metadata: the image at its ``path``, or for a track entry its best
    frame's crop read back from its video (one frame decoded; the gallery stores no pixels). None when neither
    can be read (the tile is then grey)."""
    if metadata.get("path"):
        return read_image(str(metadata["path"]))
    video, frame, box = (metadata.get(key) for key in ("video", "best_frame", "best_box"))
    return read_box(video, frame, tuple(box)) if video and frame and box else None


def render_track_matches(results: Sequence[TrackMatches], camera: Any, identities: dict[int, Any] | None = None,
                         threshold: float | None = None) -> np.ndarray:
    """One row per track of a camera: its best crop, then its matches (their best crops, read from their videos),
    captioned ``identity / camera`` and ``track id, score``; marked right / wrong when identities are known.
    ``threshold``: the score the matches were cut at, said in the title."""
    identities = identities or {}
    cut = f" scoring {threshold:g} or more" if threshold is not None else ""
    rows = []
    for result in results:
        track, who = result.track, identities.get(result.track.track_id)
        query = Tile(track.thumbnail, (label(who, camera),
                                       f"t{track.track_id} {track.first_time:.0f}-{track.last_time:.0f}s"), "query")
        tiles = [Tile(entry_crop(m.metadata), (label(m.identity, m.camera), f"t{m.track_id} {m.score:.3f}"),
                      verdict(who, m.identity)) for m in result.matches]
        row = render_row(query, tiles)
        rows.append(row if tiles else with_note(row, f"no match{cut}"))
    if not rows:
        raise ValueError(f"camera {camera} has no tracks to draw")
    return with_title(stack_rows(rows), f"Camera {camera}: each track (blue), then its best matches in other "
                                        f"cameras{cut}. Captions: identity / camera, track id and cosine score.")
