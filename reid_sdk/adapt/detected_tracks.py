"""Before reid-adapt's steps: every camera with a video and no tracks file is detected and tracked.

The offline background detector (:class:`reid_sdk.detection.BackgroundDetector`, nothing downloaded) and ByteTrack
write ``RUN/tracks/<camera>/<video stem>.txt`` (one per segment of a camera recorded in several videos), in the
run folder, never in the site (which may be read-only, and whose
cameras' own tracks files stay the user's). Each file is written whole or not at all, beside a record of the video
it came from, so a resumed run reuses it and a replaced video is tracked again. The cameras then read like any
other, and the steps' records of what they consumed see these tracks files as the site's.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

from reid_sdk._utils.atomic_file import atomic_write
from reid_sdk.detection import BackgroundDetector, TrackingOptions, track_video
from reid_sdk.tracks.mot import MotFormat
from reid_sdk.tracks.site import SiteLayout

log = logging.getLogger(__name__)

TRACKS_FOLDER = "tracks"


def track_untracked_cameras(layout: SiteLayout, run: Path, progress: bool = True) -> SiteLayout:
    """``layout`` with each camera that has no tracks file (``tracks=None``, see ``find_site(untracked=True)``)
    given one tracked into ``run/tracks/`` (reused when its video is unchanged)."""
    untracked = [camera for camera in layout.cameras if camera.tracks is None]
    if not untracked:
        return layout
    folder = run / TRACKS_FOLDER
    log.info("[0] %d video(s) without a tracks file (camera(s) %s): people detected and tracked into %s (kept while "
             "a video is unchanged)", len(untracked), ", ".join(sorted({camera.name for camera in untracked})), folder)
    options = TrackingOptions()
    cameras, skipped = [], list(layout.skipped)
    for camera in layout.cameras:
        if camera.tracks is None:
            tracks = folder / camera.name / f"{camera.video.stem}.txt"
            try:
                _track(camera.video, tracks, options, progress)
            except ValueError as error:  # a video OpenCV cannot read: skipped and said, as a bad video with tracks is
                log.warning("camera %s skipped: no tracks file, and %s", camera.name, error)
                skipped.append((camera.name, f"no tracks file, and {error}"))
                continue
            camera = replace(camera, tracks=tracks, tracks_format=MotFormat())  # what track_video writes
        cameras.append(camera)
    return replace(layout, cameras=cameras, skipped=skipped)


def _track(video: Path, tracks: Path, options: TrackingOptions, progress: bool) -> None:
    """Track ``video`` into ``tracks`` unless it was, from this very video file, with these options."""
    record = tracks.with_suffix(".source.json")
    status = video.stat()
    source = {"video": [str(video.resolve()), status.st_size, status.st_mtime_ns], "options": repr(options)}
    if tracks.is_file() and _recorded(record) == source:
        return
    tracks.parent.mkdir(parents=True, exist_ok=True)
    result = track_video(video, tracks, BackgroundDetector(), options, progress="auto" if progress else "none")
    log.info("%s", result.line())
    with atomic_write(record) as handle:
        handle.write(json.dumps(source).encode())


def _recorded(record: Path) -> object:
    """The source a tracks file was made from; None when the record is missing or damaged (then it is made again)."""
    try:
        return json.loads(record.read_text())
    except (OSError, ValueError):
        return None
