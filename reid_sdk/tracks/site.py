"""A site: its cameras, each a video and the MOTChallenge tracks file a tracker wrote for it.

Three layouts are read, the first that applies:

- ``manifest.json`` listing ``{"camera", "video", "tracks"[, "identities", "tracks_format", "start_time"]}`` per
  camera (paths relative to the site; what ``reid-synth --layout videos`` writes); a camera listed several times
  is one camera recorded in segments, in the order listed (or of their start times when all have one);
- one sub-folder per camera (named after it) holding one video and one MOT file (``.txt``), and optionally a
  ``track_id,identity`` CSV whose name contains ``identities``; or several videos, the segments of one
  recording (a video recorder's hourly exports: ``cam3/2026-03-01T10.mp4``, ``cam3/2026-03-01T11.mp4``), each
  with its MOT file of the same stem beside it (``2026-03-01T10.txt``) and optionally its
  ``<stem>_identities.csv``;
- video files side by side, each with a MOT file of the same stem (``c1.avi`` + ``c1.txt``).

Segments are one camera, in time order (their names' timestamps, else their names' natural order); their tracks
are never joined across files: the track ids of segment ``k`` (from 0) are read as ``k * SEGMENT_TRACK_IDS +
id``, so every track of a camera has its own id (segment 1's track 7 is 1000007). A camera's start time (seconds
of the clock all cameras share, where its first frame was recorded) is the manifest's ``start_time`` (seconds, or
an ISO 8601 date and time such as ``2026-03-01T10:00:00``), else the timestamp in the video's name
(``2026-03-01T10``, ``20260301_103000``, ...), else unknown (``None``: times count from the video's start).
Times without a time zone are read as UTC, the same for every camera, so their differences are right. OpenCV
exposes no container creation time, so that source is not read.

A camera whose files are missing or ambiguous is skipped with its reason (counted, never silently); hidden
folders (a prepared tracklet cache) are not cameras. Tracks files are read in the layout given to
:func:`find_site` (:class:`~reid_sdk.tracks.mot.MotFormat`), or the manifest's ``tracks_format`` for its camera
(``mot``, ``boxmot`` or ``ultralytics``, whose ``tracks`` is a folder of label files). The identities file is
optional (labels for reports only): an unreadable or malformed one is a warning, and the camera goes on without
labels. With ``untracked=True`` a camera with a video and no tracks file is kept with ``tracks=None`` instead of
skipped (reid-adapt detects and tracks it first, see :mod:`reid_sdk.detection`).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from reid_sdk.tracks.ingest import probe_video
from reid_sdk.tracks.mot import MotFormat, MotTracks, read_mot, read_track_identities

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
VIDEO_EXTENSIONS = frozenset({".avi", ".mp4", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".webm", ".ts", ".wmv"})
TRACKS_EXTENSION = ".txt"
#: Track ids of one segment of a camera are below this; segment k's are read as k * SEGMENT_TRACK_IDS + id.
SEGMENT_TRACK_IDS = 10**6
_NAME_TIME = re.compile(r"(?<!\d)(\d{4})-?(\d{2})-?(\d{2})[T_ -]?(\d{2})(?:[-:h.]?(\d{2}))?(?:[-:m.]?(\d{2}))?(?!\d)")
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
    start_time: float | None = None  # seconds of the site's clock at the video's first frame; None: unknown
    segment: int = 0  # this video's place among the camera's segments (0: the first, or the only one)
    segments: int = 1  # how many videos the camera's recording is cut into

    @property
    def track_id_offset(self) -> int:
        """What is added to this segment's track ids so that every track of the camera has its own."""
        return self.segment * SEGMENT_TRACK_IDS

    def read_tracks(self) -> MotTracks:
        """The camera's tracks file, read in its layout; a segment's track ids offset (see the module docstring)."""
        normalised = self.tracks_format.name == "ultralytics"  # boxes relative to the frame
        tracks = read_mot(self.tracks, self.tracks_format, probe_video(self.video).frame_size if normalised else None)
        if self.segments == 1:
            return tracks
        if tracks.track_ids.max() >= SEGMENT_TRACK_IDS:
            raise ValueError(f"{self.tracks}: track id {int(tracks.track_ids.max())} of a camera recorded in "
                             f"segments; segment track ids must be below {SEGMENT_TRACK_IDS}")
        return tracks.with_id_offset(self.track_id_offset)

    def labels(self) -> dict[int, str]:
        """The known identities of the camera's tracks: {} without an identities file, and with a warning when the
        file cannot be read (it labels reports only, so the camera is kept)."""
        if self.identities is None:
            return {}
        try:
            return {track + self.track_id_offset: who for track, who in read_track_identities(self.identities).items()}
        except (OSError, ValueError) as error:
            logger.warning("camera %s: identities file ignored, the camera goes on without labels: %s", self.name,
                           error)
            return {}


@dataclass
class SiteLayout:
    """The cameras found in a site folder, in order (a camera recorded in segments once per segment, in time
    order), and the ones skipped as ``(name, reason)``."""

    root: Path
    cameras: list[SiteCamera] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def recordings(self) -> dict[str, list[SiteCamera]]:
        """Each camera's name and its videos: one, or its segments in time order."""
        found: dict[str, list[SiteCamera]] = {}
        for camera in self.cameras:
            found.setdefault(camera.name, []).append(camera)
        return found


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
    names = [(camera.name, camera.segment) for camera in site.cameras]
    if len(set(names)) != len(names):
        repeated = next(name for name, segment in names if names.count((name, segment)) > 1)
        raise ValueError(f"{root}: two cameras are named {repeated}; camera names must be unique")
    return site


def name_time(name: str) -> float | None:
    """Seconds (UTC) of the date and time in a file name such as ``2026-03-01T10`` or ``20260301_103000``; None
    when it has none."""
    found = _NAME_TIME.search(name)
    if not found:
        return None
    try:
        moment = datetime(*(int(part) if part else 0 for part in found.groups()), tzinfo=timezone.utc)
    except ValueError:  # 2026-13-45: digits, not a date
        return None
    return moment.timestamp()


def _start_time(value: object, where: str) -> float:
    """A manifest's ``start_time``: seconds, or an ISO 8601 date and time (UTC unless it says otherwise)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"{where}: start_time {value!r} is neither seconds nor an ISO 8601 date and time "
                         f"(2026-03-01T10:00:00)") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def _as_segments(cameras: list[SiteCamera]) -> list[SiteCamera]:
    """The videos of one camera as its segments, in time order: by start time when every one has one, else in the
    order given; the start time defaults to the one in the video's name."""
    cameras = [camera if camera.start_time is not None else replace(camera, start_time=name_time(camera.video.stem))
               for camera in cameras]
    if all(camera.start_time is not None for camera in cameras):
        cameras.sort(key=lambda camera: camera.start_time)
    return [replace(camera, segment=number, segments=len(cameras)) for number, camera in enumerate(cameras)]


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
                   else tracks_format,
                   _start_time(e["start_time"], f"{root / MANIFEST}, camera {e['camera']}")
                   if e.get("start_time") is not None else None) for e in entries]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{root / MANIFEST} does not list cameras as {{\"camera\", \"video\", \"tracks\"}}: "
                         f"{error}") from error
    found: dict[str, list[SiteCamera]] = {}
    for name, video, tracks, identities, layout, start in listed:
        video, tracks = root / video, root / tracks
        missing = [str(path.name) for path in (video, tracks) if not path.exists()]  # ultralytics: a folder
        many = sum(entry[0] == name for entry in listed) > 1
        if untracked and missing == [tracks.name]:
            found.setdefault(name, []).append(SiteCamera(name, video, None, tracks_format=layout, start_time=start))
            continue
        if missing:
            site.skipped.append((f"{name}/{video.name}" if many else name, f"{' and '.join(missing)} missing"))
            continue
        labels = root / identities if identities and (root / identities).is_file() else None
        found.setdefault(name, []).append(SiteCamera(name, video, tracks, labels, layout, start))
    site.cameras = [segment for videos in found.values() for segment in _as_segments(videos)]
    return site


def _camera_folder(folder: Path, site: SiteLayout, untracked: bool) -> None:
    files = [p for p in folder.iterdir() if p.is_file()]
    videos = [p for p in files if p.suffix.lower() in VIDEO_EXTENSIONS]
    tracks = [p for p in files if p.suffix.lower() == TRACKS_EXTENSION]
    identities = [p for p in files if p.suffix.lower() == ".csv" and "identities" in p.name.lower()]
    if not videos and not tracks:
        return  # not a camera folder
    if len(videos) > 1:
        _segments(folder, videos, site, untracked)
        return
    if untracked and len(videos) == 1 and not tracks:
        site.cameras += _as_segments([SiteCamera(folder.name, videos[0], None)])
        return
    if len(videos) != 1 or len(tracks) != 1:
        site.skipped.append((folder.name, f"needs one video and one MOT file (.txt), found {len(videos)} video(s) "
                                          f"and {len(tracks)} .txt file(s)"))
        return
    site.cameras += _as_segments([SiteCamera(folder.name, videos[0], tracks[0],
                                             identities[0] if len(identities) == 1 else None)])


def _segments(folder: Path, videos: list[Path], site: SiteLayout, untracked: bool) -> None:
    """A camera folder holding several videos: the segments of one recording, each with its own MOT file."""
    found = []
    for video in sorted(videos, key=lambda p: _natural(p.name)):
        tracks = video.with_suffix(TRACKS_EXTENSION)
        if not tracks.is_file() and not untracked:
            site.skipped.append((f"{folder.name}/{video.name}", f"no MOT file {tracks.name} beside this segment"))
            continue
        labels = video.with_name(f"{video.stem}_identities.csv")
        found.append(SiteCamera(folder.name, video, tracks if tracks.is_file() else None,
                                labels if labels.is_file() else None))
    site.cameras += _as_segments(found)


def _side_by_side(root: Path, site: SiteLayout, untracked: bool) -> None:
    for video in sorted((p for p in root.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS),
                        key=lambda p: _natural(p.name)):
        tracks = video.with_suffix(TRACKS_EXTENSION)
        if untracked and not tracks.is_file():
            site.cameras += _as_segments([SiteCamera(video.stem, video, None)])
            continue
        if not tracks.is_file():
            site.skipped.append((video.stem, f"no MOT file {tracks.name} beside {video.name}"))
            continue
        identities = video.with_name(f"{video.stem}_identities.csv")
        site.cameras += _as_segments([SiteCamera(video.stem, video, tracks,
                                                 identities if identities.is_file() else None)])
