"""One model on a site's tracks: a per-track gallery, every track's best matches in the other cameras, pictures,
and how good the matches are.

What ``reid-index ingest`` and ``match`` do camera by camera, over the whole site at once: each camera's tracks
are ingested (the frame-quality rule, one entry per track), then every entry is searched among the other
cameras' entries. Written into a folder: ``gallery/`` (reusable with ``reid-index``), ``matches.csv`` (each
track's top-k matches), ``matches_<camera>.png`` (a camera's first tracks and their matches) and
``summary.json`` (last: the folder is complete). Without labels the summary says how many tracks have a match
scoring at least the threshold and how many best matches are mutual (a's best is b and b's best is a, a sign of
consistent features that reads no identity); where the site ships identities (rendered sites, or a hand-labelled
``track_id,identity`` file per camera) it adds cross-camera rank-1 and mAP over the tracks whose person another
camera saw. Tracks are compared camera-standardised (each camera's mean feature removed, as the gallery's searches
do; see :mod:`reid_sdk.gallery.camera_statistics`) unless ``camera_standardise=False``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reid_sdk._utils.atomic_file import atomic_write
from reid_sdk.evaluation.metrics import rank_metrics
from reid_sdk.gallery import Match
from reid_sdk.inference.extractor import FeatureExtractor
from reid_sdk.search.index import ReIDIndex, TrackMatches
from reid_sdk.tracks import FrameQuality, IngestReport, TrackFeature, read_box
from reid_sdk.tracks.match_table import MatchedTrack, write_match_table
from reid_sdk.tracks.site import SiteLayout
from reid_sdk.visualize.matches import render_track_matches
from reid_sdk.visualize.tiles import write_image

logger = logging.getLogger(__name__)

SUMMARY = "summary.json"
_OTHER_CAMERA = 4.0  # a cosine distance beyond any real one (<= 2): same-camera entries rank after all others


@dataclass
class SiteMatching:
    """What one model made of a site's tracks (see the module docstring); ``rank1`` / ``mAP`` / ``queries`` are
    None without identities."""

    model: str
    tracks: int = 0
    cameras: int = 0
    skipped_cameras: list[list[str]] = field(default_factory=list)  # [camera, reason]
    left_out_tracks: int = 0
    matched: int = 0
    threshold: float = 0.5
    mean_best_score: float = 0.0
    mutual_best: int = 0
    rank1: float | None = None
    mAP: float | None = None
    queries: int | None = None
    camera_standardised: bool = False
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SiteMatching:
        return cls(**{key: data[key] for key in cls.__dataclass_fields__ if key in data})

    def line(self) -> str:
        """One line for the console."""
        accuracy = f"; rank-1 {self.rank1:.3f}, mAP {self.mAP:.3f} over {self.queries} tracks seen by another camera" \
            if self.rank1 is not None else ""
        return (f"{self.tracks} tracks in {self.cameras} cameras, {self.matched} with a match >= {self.threshold:g} in "
                f"another camera, {self.mutual_best} mutual best matches, mean best score "
                f"{self.mean_best_score:.3f}{accuracy}")


def read_matching(folder: str | Path) -> SiteMatching | None:
    """The summary :func:`match_site` wrote into ``folder``, None when it is absent (the step did not finish)."""
    path = Path(folder) / SUMMARY
    return SiteMatching.from_dict(json.loads(path.read_text())) if path.is_file() else None


def match_site(model: str | Path, site: SiteLayout, out: str | Path, k: int = 5, threshold: float = 0.5,
               picture_tracks: int = 12, device: str = "auto", quality: FrameQuality = FrameQuality(),
               progress: bool = True, camera_standardise: bool | None = None) -> SiteMatching:
    """Ingest every camera of ``site`` with ``model``, match each track among the other cameras, write the folder
    ``out`` (see the module docstring) and return its summary. A camera whose files cannot be read is skipped
    and counted; ``picture_tracks`` tracks per camera are drawn; ``camera_standardise`` as :class:`ReIDIndex`'s
    (None: on, the tracks have cameras)."""
    start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    index = ReIDIndex.create(FeatureExtractor(model, device=device), path=out / "gallery", overwrite=True,
                             camera_standardise=camera_standardise)
    summary = SiteMatching(str(model), threshold=threshold)
    identities: dict[str, dict[int, str]] = {}
    for camera in site.cameras:
        report = IngestReport()
        try:
            labels = camera.labels()  # optional: a bad file is a warning, the camera stays
            index.add_tracks(camera.video, camera.read_tracks(), camera.name, identities=labels, quality=quality,
                             start_time=camera.start_time or 0.0, progress=progress, report=report)
        except (OSError, ValueError) as error:
            summary.skipped_cameras.append([camera.name, str(error)])
            logger.warning("camera %s skipped: %s", camera.name, error)
            continue
        identities.setdefault(camera.name, {}).update(labels)  # a camera's segments: track ids of their own
        summary.left_out_tracks += report.tracks - report.used
    index.save()
    entries = _entries(index)
    summary.tracks, summary.cameras = len(entries), len({entry.camera for entry in entries})
    if summary.cameras < 2:
        raise ValueError(f"{model}: tracks from {summary.cameras} camera(s) only; matching needs at least two")
    vectors = index.gallery.vectors([entry.entry_id for entry in entries])
    cameras = np.array([str(entry.camera) for entry in entries])
    summary.camera_standardised = index.gallery.standardises(camera_standardise)
    compared = index.gallery.query_vectors(vectors, [entry.camera for entry in entries], camera_standardise)
    distances = 1.0 - compared @ compared.T
    distances[cameras[:, None] == cameras[None, :]] = _OTHER_CAMERA
    _score_unlabelled(summary, distances, threshold)
    _score_labelled(summary, distances, entries, cameras)
    results = _top_matches(index, entries, vectors, k)
    write_match_table(out / "matches.csv", [_table_row(result) for result in results])
    for name in site.recordings():
        shown = [result for result in results if str(result.entry.camera) == name][:picture_tracks]
        if shown:
            tracks = [TrackMatches(_query_track(result.entry, result.feature), result.matches) for result in shown]
            write_image(render_track_matches(tracks, name, identities.get(name)), out / f"matches_{name}.png")
    summary.seconds = round(time.perf_counter() - start, 1)
    with atomic_write(out / SUMMARY) as handle:  # last: the folder is complete
        handle.write(json.dumps(summary.to_dict(), indent=1).encode())
    return summary


# ----------------------------------------------------------------------------------------------- internals


@dataclass(frozen=True)
class _Entry:
    """A gallery entry of a track, with what it stores."""

    entry_id: int
    camera: Any
    track_id: int
    identity: Any
    metadata: dict[str, Any]


@dataclass(frozen=True)
class _TrackResult:
    """A track's entry, its feature and its matches in the other cameras."""

    entry: _Entry
    feature: np.ndarray
    matches: list[Match]


def _entries(index: ReIDIndex) -> list[_Entry]:
    """Every entry of the gallery with its stored labels, by camera then track id."""
    rows = index.gallery.rows(index.gallery.ids())
    entries = [_Entry(entry_id, row.camera, int(row.track_id), row.identity, row.metadata)
               for entry_id, row in rows.items()]
    return sorted(entries, key=lambda e: (str(e.camera), e.track_id))


def _score_unlabelled(summary: SiteMatching, distances: np.ndarray, threshold: float) -> None:
    """Tracks with a match >= threshold elsewhere, mean best score, mutual best matches: no identity read."""
    best = distances.argmin(axis=1)
    scores = 1.0 - distances[np.arange(len(best)), best]
    summary.matched = int((scores >= threshold).sum())
    summary.mean_best_score = round(float(scores.mean()), 4)
    summary.mutual_best = int((best[best] == np.arange(len(best))).sum())


def _score_labelled(summary: SiteMatching, distances: np.ndarray, entries: list[_Entry], cameras: np.ndarray) -> None:
    """Cross-camera rank-1 / mAP of the tracks with a known identity that another camera saw (Market protocol on
    the track gallery, other cameras only). Tracks without an identity stay in the gallery as distractors."""
    known = np.array([entry.identity is not None for entry in entries])
    if not known.any():
        return
    codes: dict[str, int] = {}
    pids = np.array([codes.setdefault(str(entry.identity), len(codes)) if entry.identity is not None
                     else -1 - position for position, entry in enumerate(entries)])  # unknowns: nobody's match
    try:
        result = rank_metrics(distances[known], pids[known], pids, cameras[known], cameras)
    except ValueError:  # no known track was seen by another camera
        return
    summary.rank1, summary.mAP = round(result.rank(1), 4), round(result.mAP, 4)
    summary.queries = result.num_valid_queries


def _table_row(result: _TrackResult) -> MatchedTrack:
    entry, meta = result.entry, result.entry.metadata
    return MatchedTrack(entry.camera, entry.track_id, entry.identity, int(meta["first_frame"]), int(meta["last_frame"]),
                        float(meta["first_time"]), float(meta["last_time"]), result.matches)


def _query_track(entry: _Entry, feature: np.ndarray) -> TrackFeature:
    """The TrackFeature a gallery entry was made from, its best crop read back from the video (for pictures)."""
    meta = entry.metadata
    box = tuple(int(v) for v in meta["best_box"])
    return TrackFeature(entry.track_id, feature, int(meta["first_frame"]), int(meta["last_frame"]),
                        float(meta["first_time"]), float(meta["last_time"]), int(meta["frames_used"]),
                        int(meta["best_frame"]), box, read_box(meta["video"], int(meta["best_frame"]), box),
                        bool(meta["quality_fallback"]))


def _top_matches(index: ReIDIndex, entries: list[_Entry], vectors: np.ndarray, k: int) -> list[_TrackResult]:
    """Every track's top-k matches in the other cameras, searched in the gallery itself."""
    results = []
    for position, entry in enumerate(entries):
        matches = index.search_features(vectors[position : position + 1], k=k, exclude_camera=entry.camera,
                                        query_camera=entry.camera)[0]
        results.append(_TrackResult(entry, vectors[position], matches))
    return results
