"""The work of filling a gallery, split into keyed units that each read on their own: what ``reid-index build``
and ``reid-index ingest`` run, on one process (:func:`local_items`) or on a Ray cluster (:mod:`reid_sdk.scale`).

- A unit is an :class:`ImageShard` (up to ``shard_size`` images or tracklets of one folder) or a
  :class:`VideoUnit` (a camera's video and its MOT tracks file).
- :func:`read_unit` (CPU: decoding, cropping, frame weights) turns a unit into :class:`Chunk` s of pending entries,
  each at least ``batch_size`` crops, never splitting an entry, and ends with a :class:`UnitDone` that counts what
  it read, or says why the unit failed (a bad unit is reported, never raised: the job goes on).
- :func:`extract_chunk` turns a chunk into :class:`GalleryEntry` s with one model call for all its crops.
- Every entry carries a key, stored as its metadata ``key``: an image record's path as listed (a link is its own
  record), its file's size and modification time, and its identity and camera (one crop listed under two
  identities is two entries); or a track's video and tracks file plus the track id. A resumed run leaves out the
  keys the gallery holds.

Both executors run exactly these functions on the same chunks, so they give the same gallery. Torch-free.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from itertools import groupby
from pathlib import Path
from typing import Any, Protocol, Union

import cv2
import numpy as np

from reid_sdk._utils.batching import batches_by_size
from reid_sdk.search.sources import GalleryRecord, read_crops
from reid_sdk.tracks import FrameQuality, IngestReport, probe_video, read_mot, read_track_identities, track_crops
from reid_sdk.tracks.aggregator import pooled_features
from reid_sdk.tracks.mot import MotFormat
from reid_sdk.tracks.ingest import TrackCrops, VideoInfo, input_size_of
from reid_sdk.tracks.quality import sharpness_weights

logger = logging.getLogger(__name__)

SHARD_SIZE = 256  # images (or tracklets) per unit of an image build
TRACK_KEY = " track="  # between a video unit's key and the track id in its entries' keys
# What makes a unit bad rather than the job: missing or unreadable files, malformed tracks, a codec OpenCV lacks.
UNIT_ERRORS = (ValueError, OSError, cv2.error)


def file_key(path: str | Path, resolve: bool = True) -> str:
    """``PATH:SIZE:MTIME_NS`` of a file: changes when the file is replaced or rewritten. ``PATH`` is the resolved
    path, or with ``resolve=False`` the absolute path as given (a link keeps its own name; size and time are its
    target's)."""
    path = Path(path).resolve() if resolve else Path(os.path.abspath(path))
    try:
        stat = path.stat()
    except OSError:
        return f"{path}:unreadable"
    return f"{path}:{stat.st_size}:{stat.st_mtime_ns}"


def record_key(record: GalleryRecord) -> str:
    """The key of an image record's entry: the record, i.e. its (first) file as listed (:func:`file_key` unresolved)
    with its identity and camera, so a crop listed under two identities, or linked in under another name, gives one
    entry per record."""
    return f"{file_key(record.frames[0], resolve=False)} identity={record.identity!r} camera={record.camera!r}"


def _legacy_record_key(record: GalleryRecord) -> str:
    """The key an image record had before keys named the record (its resolved file alone): what older galleries
    hold, so resuming one does not add its images twice."""
    return file_key(record.frames[0])


@dataclass(frozen=True)
class ImageShard:
    """Up to ``shard_size`` consecutive records of one folder: images, or tracklets (one entry each)."""

    records: tuple[GalleryRecord, ...]

    @property
    def name(self) -> str:
        first = self.records[0].frames[0]
        return f"{first.parent} ({len(self.records)} from {first.name})"


@dataclass(frozen=True)
class VideoUnit:
    """A camera's video and its MOTChallenge tracks file: one entry per track (see :func:`track_crops`).

    ``identities`` is a ``track_id,identity`` CSV of the tracks whose person is known; ``tracks_format`` the
    layout of the tracks file; ``track_id_offset`` is added to its track ids (a camera's later segment, see
    :mod:`reid_sdk.tracks.site`); ``skip_tracks`` the tracks a resumed run leaves out (already in the gallery).
    """

    video: Path
    tracks: Path
    camera: Any
    identities: Path | None = None
    fps: float | None = None
    start_time: float = 0.0
    quality: FrameQuality = FrameQuality()
    skip_tracks: frozenset[int] = frozenset()
    tracks_format: MotFormat = MotFormat()
    track_id_offset: int = 0

    @property
    def name(self) -> str:
        return f"{self.video} (camera {self.camera})"

    def key(self) -> str:
        """The unit's key: the video's and the tracks file's :func:`file_key` (re-tracking makes a new unit)."""
        return f"video={file_key(self.video)} tracks={file_key(self.tracks)}"


WorkUnit = Union[ImageShard, VideoUnit]


def image_units(records: Sequence[GalleryRecord], shard_size: int = SHARD_SIZE) -> list[ImageShard]:
    """``records`` in their order as shards: runs of one folder, cut every ``shard_size`` records."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    shards = []
    for _, run in groupby(records, key=lambda record: record.frames[0].parent):
        run = list(run)
        shards += [ImageShard(tuple(run[start : start + shard_size])) for start in range(0, len(run), shard_size)]
    return shards


@dataclass(frozen=True)
class GalleryEntry:
    """One entry ready for :meth:`Gallery.add`: its feature, labels and metadata (which holds its ``key``)."""

    key: str
    feature: np.ndarray
    identity: Any
    camera: Any
    timestamp: float | None
    track_id: Any
    metadata: dict[str, Any]


class PendingEntry(Protocol):
    """An entry read but not yet extracted: its crops, their weights in its mean (None: equal) and its key."""

    key: str
    crops: Sequence[np.ndarray]
    weights: np.ndarray | None

    def finish(self, feature: np.ndarray) -> GalleryEntry: ...


@dataclass(frozen=True)
class PendingImage:
    """An image, or a tracklet's readable frames, of a :class:`GalleryRecord`."""

    key: str
    crops: tuple[np.ndarray, ...]
    record: GalleryRecord
    first_path: Path  # the first readable frame: what the entry's metadata names
    weights: None = None

    def finish(self, feature: np.ndarray) -> GalleryEntry:
        record = self.record
        metadata = {"path": str(self.first_path.resolve()), "key": self.key}
        if len(record.frames) > 1:
            metadata["frames"] = len(self.crops)
        return GalleryEntry(self.key, feature, record.identity, record.camera, record.timestamp, record.track_id,
                            metadata)


@dataclass(frozen=True)
class PendingTrack:
    """A video track's chosen crops and their sharpness weights."""

    key: str
    track: TrackCrops
    weights: np.ndarray
    info: VideoInfo
    unit: VideoUnit
    identity: Any = None

    @property
    def crops(self) -> list[np.ndarray]:
        return self.track.crops

    def finish(self, feature: np.ndarray) -> GalleryEntry:
        described = self.track.finish(feature, self.weights, self.info, self.unit.start_time)
        return GalleryEntry(self.key, feature, self.identity, self.unit.camera, described.first_time,
                            described.track_id, {**described.metadata(self.unit.video), "key": self.key})


@dataclass(frozen=True)
class Chunk:
    """Pending entries of unit number ``unit``, extracted together."""

    unit: int
    entries: tuple[PendingEntry, ...]


@dataclass(frozen=True)
class ExtractedChunk:
    """The gallery entries of a :class:`Chunk`, and how many crops they came from."""

    unit: int
    entries: tuple[GalleryEntry, ...]
    crops: int


@dataclass(frozen=True)
class UnitDone:
    """The end of unit number ``unit``: the entries it gave, the files it could not read, a video's counts, and for
    a bad unit the reason (its entries read before the failure are kept)."""

    unit: int
    entries: int
    skipped: tuple[str, ...] = ()
    report: IngestReport | None = None
    error: str | None = None


def read_unit(number: int, unit: WorkUnit, input_size: tuple[int, int], batch_size: int,
              progress: bool = False) -> Iterator[Chunk | UnitDone]:
    """The chunks of ``unit`` (number ``number`` of the work list), then its :class:`UnitDone`.

    ``input_size`` is the model's (H, W), at which a track's frames are weighed by sharpness; ``progress`` shows a
    video's frames as they are read (a bar on a terminal, log lines elsewhere).
    """
    skipped: list[Path] = []
    report = IngestReport() if isinstance(unit, VideoUnit) else None
    entries = 0
    try:
        pending = (_pending_images(unit, skipped) if isinstance(unit, ImageShard)
                   else _pending_tracks(unit, input_size, report, progress))
        for batch in batches_by_size(pending, batch_size, lambda entry: len(entry.crops)):
            entries += len(batch)
            yield Chunk(number, tuple(batch))
    except UNIT_ERRORS as error:
        logger.warning("%s failed: %s", unit.name, error)
        yield UnitDone(number, entries, tuple(map(str, skipped)), report, error=str(error) or type(error).__name__)
        return
    if report is not None:
        report.used = entries
    yield UnitDone(number, entries, tuple(map(str, skipped)), report)


def _pending_images(shard: ImageShard, skipped: list[Path]) -> Iterator[PendingImage]:
    for record in shard.records:
        crops = read_crops(record.frames, skipped)
        if crops:
            yield PendingImage(record_key(record), tuple(crop for _, crop in crops), record,
                               record.frames[crops[0][0]])


def _pending_tracks(unit: VideoUnit, input_size: tuple[int, int], report: IngestReport,
                    progress: bool) -> Iterator[PendingTrack]:
    info = probe_video(unit.video, unit.fps)
    tracks = read_mot(unit.tracks, unit.tracks_format, info.frame_size).with_id_offset(unit.track_id_offset)
    identities = {track + unit.track_id_offset: who for track, who in read_track_identities(unit.identities).items()} \
        if unit.identities is not None else {}
    key = unit.key()
    for track in track_crops(info, tracks, unit.quality, progress, report, skip_tracks=unit.skip_tracks):
        if track.crops:
            track_id = track.plan.track_id
            yield PendingTrack(f"{key}{TRACK_KEY}{track_id}", track,
                               sharpness_weights(track.crops, input_size, unit.quality.min_weight), info, unit,
                               identities.get(track_id))


def extract_chunk(extractor: Any, chunk: Chunk) -> ExtractedChunk:
    """The gallery entries of ``chunk``: each the (weighted) mean feature of its crops, all crops in one call."""
    features = pooled_features(extractor, [entry.crops for entry in chunk.entries],
                               [entry.weights for entry in chunk.entries], channel_order="bgr")  # OpenCV decoded
    return ExtractedChunk(chunk.unit, tuple(entry.finish(feature) for entry, feature in zip(chunk.entries, features)),
                          sum(len(entry.crops) for entry in chunk.entries))


def local_items(extractor: Any, units: Sequence[WorkUnit], batch_size: int,
                progress: bool = False) -> Iterator[ExtractedChunk | UnitDone]:
    """Every unit read and extracted in this process, in order: the single-process executor (``progress``: each
    video's frames as they are read)."""
    input_size = input_size_of(extractor)
    for number, unit in enumerate(units):
        for item in read_unit(number, unit, input_size, batch_size, progress):
            yield extract_chunk(extractor, item) if isinstance(item, Chunk) else item


@dataclass
class ResumePlan:
    """What a resumed run still has to do: the units less the entries already in the gallery, and their count."""

    units: list[WorkUnit] = field(default_factory=list)
    already_present: int = 0


def leave_out_present(units: Sequence[WorkUnit], keys: set[str]) -> ResumePlan:
    """``units`` without the entries whose keys are in ``keys``: records dropped from shards (empty shards with
    them), tracks listed in a video unit's ``skip_tracks``."""
    tracks_by_unit: dict[str, set[int]] = {}
    for key in keys:
        unit_key, found, track_id = key.rpartition(TRACK_KEY)
        if found and track_id.lstrip("-").isdigit():
            tracks_by_unit.setdefault(unit_key, set()).add(int(track_id))
    plan = ResumePlan()
    for unit in units:
        if isinstance(unit, ImageShard):
            kept = tuple(record for record in unit.records
                         if record_key(record) not in keys and _legacy_record_key(record) not in keys)
            plan.already_present += len(unit.records) - len(kept)
            if kept:
                plan.units.append(ImageShard(kept))
        else:
            present = frozenset(tracks_by_unit.get(unit.key(), ()))
            plan.already_present += len(present)
            plan.units.append(replace(unit, skip_tracks=unit.skip_tracks | present))
    return plan
