"""A site: its cameras, each a video and the MOTChallenge tracks file a tracker wrote for it.

Three layouts are read, the first that applies:

- ``manifest.json`` listing ``{"camera", "video", "tracks"[, "identities", "tracks_format"]}`` per camera (paths
  relative to the site; what ``reid-synth --layout videos`` writes);
- one sub-folder per camera (named after it) holding one video and one MOT file (``.txt``), and optionally a
  ``track_id,identity`` CSV whose name contains ``identities``;
- video files side by side, each with a MOT file of the same stem (``c1.avi`` + ``c1.txt``).

A camera whose files are missing or ambiguous is skipped with its reason (counted, never silently); hidden
folders (a prepared tracklet cache) are not cameras. Tracks files are read in the layout given to
:func:`find_site` (:class:`~reid_sdk.tracks.mot.MotFormat`), or the manifest's ``tracks_format`` for its camera
(``mot`` or ``boxmot``). The identities file is optional (labels for reports only):
an unreadable or malformed one is a warning, and the camera goes on without labels. With ``untracked=True`` a camera
with a video and no tracks file is kept with ``tracks=None`` instead of skipped (reid-adapt detects and tracks it
first, see :mod:`reid_sdk.detection`).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from reid_sdk.tracks.mot import MotFormat, MotTracks, read_mot, read_track_identities

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
VIDEO_EXTENSIONS = frozenset({".avi", ".mp4", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".webm", ".ts", ".wmv"})
TRACKS_EXTENSION = ".txt"
LAYOUT = ("one folder per camera holding its video (.avi, .mp4, ...) and its tracker's MOT file (.txt), video + "
          "MOT file pairs of one name (c1.avi + c1.txt), or a manifest.json listing them")


@dataclass(frozen=True)
class SiteCamera:
    """One camera of a site: its name, video, MOT tracks file (None: not tracked yet, see :func:`find_site`) and,
    when known, a ``track_id,identity`` CSV (labels for reports and benchmarks only: adaptation never reads them),
    and the layout of its tracks file."""

    name: str
    video: Path
    tracks: Path | None
    identities: Path | None = None
    tracks_format: MotFormat = MotFormat()

    def read_tracks(self) -> MotTracks:
        """The camera's tracks file, read in its layout."""
        return read_mot(self.tracks, self.tracks_format)

    def labels(self) -> dict[int, str]:
        """The known identities of the camera's tracks: {} without an identities file, and with a warning when the
        file cannot be read (it labels reports only, so the camera is kept)."""
        if self.identities is None:
            return {}
        try:
            return read_track_identities(self.identities)
        except (OSError, ValueError) as error:
            logger.warning("camera %s: identities file ignored, the camera goes on without labels: %s", self.name,
                           error)
            return {}


@dataclass
class SiteLayout:
    """The cameras found in a site folder, in order, and the ones skipped as ``(name, reason)``."""

    root: Path
    cameras: list[SiteCamera] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def find_site(root: str | Path, tracks_format: MotFormat = MotFormat(), *, untracked: bool = False) -> SiteLayout:
    """The cameras of the site at ``root`` (see the module docstring), their tracks files read as
    ``tracks_format``; ValueError when none is usable. ``untracked``: keep cameras that have a video and no tracks
    file, with ``tracks=None``."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"site folder not found: {root} (expected {LAYOUT})")
    if (root / MANIFEST).is_file():
        site = _from_manifest(root, tracks_format, untracked)
    else:
        site = SiteLayout(root)
        for folder in sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                             key=lambda p: _natural(p.name)):
            _camera_folder(folder, site, untracked)
        _side_by_side(root, site, untracked)
        site.cameras = [replace(camera, tracks_format=tracks_format) for camera in site.cameras]
    for name, reason in site.skipped:
        logger.warning("%s: camera %s skipped: %s", root, name, reason)
    if not site.cameras:
        skipped = f"; skipped: {'; '.join(f'{n} ({r})' for n, r in site.skipped)}" if site.skipped else ""
        raise ValueError(f"no camera found in {root}: expected {LAYOUT}{skipped}")
    names = [camera.name for camera in site.cameras]
    if len(set(names)) != len(names):
        repeated = next(name for name in names if names.count(name) > 1)
        raise ValueError(f"{root}: two cameras are named {repeated}; camera names must be unique")
    return site


def _natural(text: str) -> tuple:
    """``c2`` before ``c10``."""
    chunks = re.split(r"(\d+)", text)
    return tuple((0, int(chunk), "") if chunk.isdigit() else (1, 0, chunk.lower()) for chunk in chunks)


def _from_manifest(root: Path, tracks_format: MotFormat, untracked: bool) -> SiteLayout:
    site = SiteLayout(root)
    try:
        entries = json.loads((root / MANIFEST).read_text())["cameras"]
        listed = [(str(e["camera"]), e["video"], e["tracks"], e.get("identities"),
                   MotFormat(e["tracks_format"], tracks_format.person_class) if "tracks_format" in e
                   else tracks_format) for e in entries]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{root / MANIFEST} does not list cameras as {{\"camera\", \"video\", \"tracks\"}}: "
                         f"{error}") from error
    for name, video, tracks, identities, layout in listed:
        video, tracks = root / video, root / tracks
        missing = [str(path.name) for path in (video, tracks) if not path.is_file()]
        if untracked and missing == [tracks.name]:
            site.cameras.append(SiteCamera(name, video, None, tracks_format=layout))
            continue
        if missing:
            site.skipped.append((name, f"{' and '.join(missing)} missing"))
            continue
        labels = root / identities if identities and (root / identities).is_file() else None
        site.cameras.append(SiteCamera(name, video, tracks, labels, layout))
    return site


def _camera_folder(folder: Path, site: SiteLayout, untracked: bool) -> None:
    files = [p for p in folder.iterdir() if p.is_file()]
    videos = [p for p in files if p.suffix.lower() in VIDEO_EXTENSIONS]
    tracks = [p for p in files if p.suffix.lower() == TRACKS_EXTENSION]
    identities = [p for p in files if p.suffix.lower() == ".csv" and "identities" in p.name.lower()]
    if not videos and not tracks:
        return  # not a camera folder
    if untracked and len(videos) == 1 and not tracks:
        site.cameras.append(SiteCamera(folder.name, videos[0], None))
        return
    if len(videos) != 1 or len(tracks) != 1:
        site.skipped.append((folder.name, f"needs one video and one MOT file (.txt), found {len(videos)} video(s) "
                                          f"and {len(tracks)} .txt file(s)"))
        return
    site.cameras.append(SiteCamera(folder.name, videos[0], tracks[0], identities[0] if len(identities) == 1 else None))


def _side_by_side(root: Path, site: SiteLayout, untracked: bool) -> None:
    for video in sorted((p for p in root.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS),
                        key=lambda p: _natural(p.name)):
        tracks = video.with_suffix(TRACKS_EXTENSION)
        if untracked and not tracks.is_file():
            site.cameras.append(SiteCamera(video.stem, video, None))
            continue
        if not tracks.is_file():
            site.skipped.append((video.stem, f"no MOT file {tracks.name} beside {video.name}"))
            continue
        identities = video.with_name(f"{video.stem}_identities.csv")
        site.cameras.append(SiteCamera(video.stem, video, tracks, identities if identities.is_file() else None))
