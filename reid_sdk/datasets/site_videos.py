"""A site's camera videos and MOT tracks as training data (``--format videos``): one tracklet per track.

``root`` is either a site (see :mod:`reid_sdk.tracks.site`), whose tracklets are then prepared once into
``root/.reid-tracklets`` (resumable; reused while the videos and tracks files are unchanged), or a folder that
:func:`~reid_sdk.tracks.site_tracklets.prepare_site` already wrote (what ``reid-adapt`` trains on). Every
record carries its camera (numbered in site order), its frame span and the frames its tracker detected it in, so
the camera-aware options and the cannot-link constraint apply. Identities are unknown, unless every track has one
in the site's identity files (rendered sites): they then label the records for diagnostics (pairwise precision of
the pseudo-labels), which training never reads. Everything is ``train``: a site has no query / gallery split.

A site whose tracks come from one camera only is refused: nothing there teaches matching across cameras.
"""

from __future__ import annotations

from pathlib import Path

from reid_sdk.gallery.errors import NOT_WRITABLE
from reid_sdk.tracks.site import LAYOUT as SITE_LAYOUT
from reid_sdk.tracks.site_tracklets import CACHE_FOLDER, SiteTracklets, is_prepared, prepare_site, read_site_tracklets

from .files import natural_key
from .records import UNKNOWN_PID, DatasetSplits, TrackletRecord
from .roots import DatasetLayoutError
from .statistics import log_statistics

LAYOUT = f"a site ({SITE_LAYOUT}) or a folder of its prepared tracklets"


def load_site_videos(root: str | Path) -> DatasetSplits:
    """The tracklets of the site at ``root`` (prepared on first use) as unlabelled train records."""
    root = Path(root).expanduser()
    if is_prepared(root):
        prepared = read_site_tracklets(root)
    else:
        try:
            prepared = prepare_site(root, root / CACHE_FOLDER, progress=True)
        except OSError as error:  # no permission, or a read-only file system
            if error.errno not in NOT_WRITABLE:
                raise
            raise DatasetLayoutError(f"cannot write the site's tracklets into {root / CACHE_FOLDER} ({error}): "
                                     f"prepare them elsewhere (reid_sdk.tracks.site_tracklets.prepare_site(SITE, OUT))"
                                     f" and train on that folder with --format videos") from error
    return site_splits(prepared)


def site_splits(prepared: SiteTracklets) -> DatasetSplits:
    """Train records of a prepared site; DatasetLayoutError when fewer than two cameras gave tracklets."""
    if not prepared.tracks:
        raise DatasetLayoutError(f"no usable track in {prepared.site}: {'; '.join(c.line() for c in prepared.cameras)}")
    require_two_cameras(prepared.cameras_with_tracks, prepared.site)
    tracks = prepared.tracks
    identities = [track.identity for track in tracks]
    pids = ({name: number for number, name in enumerate(sorted(set(identities), key=natural_key), start=1)}
            if None not in identities else None)
    splits = DatasetSplits(name="videos", root=prepared.root)
    splits.train = [TrackletRecord(frames=track.frames, pid=pids[track.identity] if pids else UNKNOWN_PID,
                                   camera=track.camera_id, tracklet_id=index,
                                   frame_span=(track.first_frame, track.last_frame),
                                   detected_runs=track.detected_runs)
                    for index, track in enumerate(tracks)]
    log_statistics(splits)
    return splits


def require_two_cameras(cameras: list[str], site: Path) -> None:
    """DatasetLayoutError unless ``cameras`` (those with tracks) are two or more: one teaches no cross-camera match."""
    if len(cameras) < 2:
        raise DatasetLayoutError(f"tracks from one camera only ({cameras[0]}) in {site}: a model cannot learn to "
                                 f"match people across cameras from one camera; add the videos and tracks of at "
                                 f"least one more camera that sees the same people")
