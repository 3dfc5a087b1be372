"""The one writer of an ingest: it opens (or creates) the gallery, leaves out what a resumed run finds there, adds
the extracted entries as they arrive (a key seen twice is dropped), reports progress and saves. The same for the
single-process executor (:func:`ingest_units`) and the Ray one (:func:`reid_sdk.scale.ingest`): they differ only
in where units are read and extracted (see :mod:`reid_sdk.search.units`).

A FAISS + SQLite gallery is saved every ``save_every_s`` seconds and at the end (a save rewrites the gallery's
files: keep the interval well above a save's duration); a Milvus gallery holds each batch once Milvus acknowledges
it, except one that replaces another (``overwrite``): built aside, it is saved like a FAISS gallery and replaces the
old one at its first save. A run stopped by Ctrl-C (:class:`IngestInterrupted`) keeps what was saved; one stopped
by an error (a failed worker, a model returning NaN) first saves what it added. Either way the same run with
``resume`` adds only the entries the gallery lacks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reid_sdk._utils.progress import progress as show_progress
from reid_sdk.datasets.files import warn_skipped
from reid_sdk.gallery import Gallery, GalleryConfig
from reid_sdk.gallery.location import parse_location
from reid_sdk.search.index import check_fits, model_id_of
from reid_sdk.search.units import (ExtractedChunk, GalleryEntry, ResumePlan, UnitDone, VideoUnit, WorkUnit,
                                   leave_out_present, local_items)
from reid_sdk.tracks import IngestReport
from reid_sdk.tracks.ingest import input_size_of

logger = logging.getLogger(__name__)

SAVE_EVERY_S = 300.0
_ROWS_PER_READ = 10_000  # entries whose metadata a resumed run reads at once

Items = Iterable[ExtractedChunk | UnitDone]


@dataclass(frozen=True)
class ModelFacts:
    """What the writer and the readers need to know of the model: feature size, identity and input (H, W)."""

    feature_dim: int
    model_id: str | None
    input_size: tuple[int, int]

    @classmethod
    def of(cls, extractor: Any) -> ModelFacts:
        return cls(int(extractor.feature_dim), model_id_of(extractor), input_size_of(extractor))


@dataclass(frozen=True)
class GalleryTarget:
    """Where an ingest writes, a directory (FAISS + SQLite) or a Milvus URI, and what it does with a gallery that is
    already there: refuse (the default), replace it (``overwrite``), add to it (``append``), or add only what it
    lacks (``resume``); the last two create a gallery that is not there yet. ``index_type`` and ``config`` shape
    a new gallery; ``save_every_s`` spaces a FAISS gallery's saves (None: at the end only)."""

    location: str | Path
    index_type: str = "flat"
    config: GalleryConfig | None = None
    overwrite: bool = False
    append: bool = False
    resume: bool = False
    save_every_s: float | None = SAVE_EVERY_S

    def __post_init__(self) -> None:
        if self.overwrite and (self.append or self.resume):
            raise ValueError("overwrite replaces the gallery: it does not combine with append or resume")
        if self.save_every_s is not None and not self.save_every_s > 0:
            raise ValueError(f"save_every_s must be > 0 seconds or None, got {self.save_every_s}")


@dataclass
class IngestSummary:
    """What an ingest did: units done and failed (name, reason), entries added, left out as already present (a
    resumed run) or dropped as duplicates (a retried task), crops extracted, files skipped as unreadable, each
    video's counts, and the gallery at the end."""

    units: int = 0
    done: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    added: int = 0
    saved: int = 0  # entries of this run that are durable (saved, or acknowledged by Milvus)
    already_present: int = 0
    duplicates: int = 0
    crops: int = 0
    skipped_files: list[str] = field(default_factory=list)
    videos: list[tuple[VideoUnit, IngestReport]] = field(default_factory=list)
    seconds: float = 0.0
    entries: int = 0
    location: str | None = None
    dim: int = 0
    model_id: str | None = None

    @property
    def crops_per_s(self) -> float:
        return self.crops / self.seconds if self.seconds > 0 else 0.0

    def record(self, unit: WorkUnit, done: UnitDone) -> None:
        """Count a finished unit."""
        self.skipped_files += done.skipped
        if done.error is not None:
            self.failed.append((unit.name, done.error))
            return
        self.done += 1
        if done.report is not None and isinstance(unit, VideoUnit):
            self.videos.append((unit, done.report))


class IngestInterrupted(KeyboardInterrupt):
    """Ctrl-C during an ingest; ``summary`` says what was added and what of it is saved (nothing, for a Ctrl-C
    before the first entry: opening the model or the gallery, joining Ray)."""

    def __init__(self, summary: IngestSummary) -> None:
        super().__init__("interrupted")
        self.summary = summary


def open_target(target: GalleryTarget, facts: ModelFacts) -> Gallery:
    """The gallery ``target`` names: the existing one (append, resume), or a new one; checked against the model."""
    if target.append or target.resume:
        try:
            gallery = Gallery.open(target.location)
        except FileNotFoundError:
            pass
        else:
            try:
                check_fits(gallery, facts.feature_dim, facts.model_id)
            except ValueError:
                gallery.close()
                raise
            return gallery
    return Gallery(facts.feature_dim, index_type=target.index_type, path=target.location, config=target.config,
                   model_id=facts.model_id, overwrite=target.overwrite)


def present_keys(gallery: Gallery) -> set[str]:
    """The entry keys (metadata ``key``) a gallery holds; entries added without one are not counted."""
    ids = gallery.ids()
    keys = set()
    for start in range(0, len(ids), _ROWS_PER_READ):
        keys.update(row.metadata["key"] for row in gallery.rows(ids[start : start + _ROWS_PER_READ]).values()
                    if "key" in row.metadata)
    return keys


def run_units(units: Sequence[WorkUnit], target: GalleryTarget, facts: ModelFacts,
              items_of: Callable[[list[WorkUnit]], Items], progress: str = "none") -> IngestSummary:
    """Open ``target``, plan ``units`` against it (a resumed run leaves out what it holds) and write what
    ``items_of(planned units)`` extracts; save and close it: the body of every ingest. ``progress`` is a mode of
    :func:`reid_sdk._utils.progress.progress`."""
    gallery = open_target(target, facts)
    try:
        known = present_keys(gallery) if target.resume else set()
        plan = leave_out_present(units, known) if target.resume else ResumePlan(list(units))
        summary = IngestSummary(already_present=plan.already_present)
        return _write(gallery, plan.units, items_of, progress, summary, known, target.save_every_s, target.overwrite)
    finally:
        gallery.close()


def ingest_units(units: Sequence[WorkUnit], extractor: Any, target: GalleryTarget, batch_size: int = 64,
                 progress: str = "none") -> IngestSummary:
    """Run a work list in this process: each unit read, extracted with ``extractor`` and written in turn.
    ``progress`` (a mode of :func:`reid_sdk._utils.progress.progress`) shows the units, entries and crops/s, and
    each video's frames.

    Example:
        ```python
        from reid_sdk.search.gallery_writer import GalleryTarget, ingest_units
        from reid_sdk.search.units import VideoUnit

        units = [VideoUnit(Path("c1.avi"), Path("c1.txt"), camera="c1")]
        summary = ingest_units(units, FeatureExtractor("model.onnx"), GalleryTarget("gallery/", resume=True))
        print(summary.added, summary.already_present, summary.failed)
        ```
    """
    return run_units(units, target, ModelFacts.of(extractor),
                     lambda planned: local_items(extractor, planned, batch_size, progress != "none"), progress)


def _write(gallery: Gallery, units: list[WorkUnit], items_of: Callable[[list[WorkUnit]], Items], progress: str,
           summary: IngestSummary, known: set[str], save_every_s: float | None, replacing: bool) -> IngestSummary:
    summary.units = len(units)
    summary.location, summary.dim, summary.model_id = str(gallery.path), gallery.dim, gallery.model_id
    durable = parse_location(gallery.path).backend == "milvus" and not replacing  # else durable once saved
    written = set(known)
    started = last_save = time.monotonic()
    try:
        with show_progress(desc="adding to the gallery", total=len(units), unit="units", mode=progress) as bar:
            for item in _items(items_of, units):
                if isinstance(item, ExtractedChunk):
                    _add(gallery, item, written, summary)
                    summary.saved = summary.added if durable else summary.saved
                else:
                    summary.record(units[item.unit], item)
                    bar.update(1)
                summary.seconds = time.monotonic() - started
                bar.set_postfix(entries=summary.added, failed=len(summary.failed),
                                crops_per_s=f"{summary.crops_per_s:.1f}")
                if (not durable and save_every_s is not None and summary.added > summary.saved
                        and time.monotonic() - last_save >= save_every_s):
                    gallery.save()
                    summary.saved, last_save = summary.added, time.monotonic()
    except KeyboardInterrupt as interrupt:
        raise IngestInterrupted(summary) from interrupt
    except Exception:
        if summary.added > summary.saved:
            gallery.save()
            summary.saved = summary.added
            logger.warning("stopped after adding %d entries, saved in %s: run again with resume to add the rest",
                           summary.added, gallery.path)
        raise
    try:
        gallery.save()
    except KeyboardInterrupt as interrupt:  # a save is atomic: what the last one saved is there
        raise IngestInterrupted(summary) from interrupt
    summary.saved = summary.added
    position = {id(unit): number for number, unit in enumerate(units)}  # units end in any order on a cluster
    by_name = {unit.name: number for number, unit in enumerate(units)}
    summary.videos.sort(key=lambda done: position[id(done[0])])
    summary.failed.sort(key=lambda failure: by_name[failure[0]])
    summary.skipped_files.sort()
    summary.seconds = time.monotonic() - started
    summary.entries = len(gallery)
    warn_skipped([Path(path) for path in summary.skipped_files], "gallery images")
    return summary


def _items(items_of: Callable[[list[WorkUnit]], Items], units: list[WorkUnit]) -> Iterator[ExtractedChunk | UnitDone]:
    if units:  # nothing to start (a Ray job) for a resumed run that has nothing left to do
        yield from items_of(units)


def _add(gallery: Gallery, chunk: ExtractedChunk, written: set[str], summary: IngestSummary) -> None:
    """Add the entries of ``chunk`` whose keys are not written yet, in one call."""
    fresh: list[GalleryEntry] = []
    for entry in chunk.entries:
        if entry.key not in written:
            written.add(entry.key)
            fresh.append(entry)
    summary.duplicates += len(chunk.entries) - len(fresh)
    summary.crops += chunk.crops
    if fresh:
        gallery.add(np.stack([entry.feature for entry in fresh]), identities=[entry.identity for entry in fresh],
                    cameras=[entry.camera for entry in fresh], timestamps=[entry.timestamp for entry in fresh],
                    track_ids=[entry.track_id for entry in fresh], metadata=[entry.metadata for entry in fresh])
        summary.added += len(fresh)
