"""The embedded backend: FAISS vectors + SQLite metadata in memory, saved as checksummed generations.

Several processes may share one gallery directory. Entry ids come from a counter shared through the
directory, so they never collide. A save that finds a newer generation of the same gallery (another
process saved since this one opened or last saved) first merges that process's committed adds and
removals into this gallery, then writes the union: nothing another process committed is lost. A save
onto a different gallery needs ``overwrite=True``. Merging re-adds the other process's vectors as
stored (exact for flat / ivf / hnsw; 8-bit scalar-quantised for ivfpq).

Camera standardisation: the per-camera statistics of the stored vectors follow every add, removal and merge and are
saved with each generation (``camera_statistics.json``; computed from the stored vectors when a gallery written
before it is opened). Standardised searches run on a second FAISS index of the same type holding every entry's
standardised vector, rebuilt at the first standardised search after the statistics changed: O(N * D) to standardise
plus the index's build (training for ivf / ivfpq, the graph for hnsw; flat when too few entries to train), and a
second copy of the vectors in memory.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from reid_sdk.gallery.camera_statistics import CameraStatistics
from reid_sdk.gallery.config import GalleryConfig
from reid_sdk.gallery.entries import EntryRow
from reid_sdk.gallery.errors import CorruptGalleryError, GalleryChangedError, unknown_entries, writing_in
from reid_sdk.gallery.faiss_sqlite.directory_locks import check_locks, reading, reserve_ids, save_lock
from reid_sdk.gallery.faiss_sqlite.locking import ReadWriteLock
from reid_sdk.gallery.faiss_sqlite.metadata import MetadataStore, where
from reid_sdk.gallery.faiss_sqlite.persistence import (MANIFEST, Manifest, check_target, find_manifest,
                                                       read_manifest, remove_leftovers, remove_stale, verified_files,
                                                       write_generation)
from reid_sdk.gallery.faiss_sqlite.store import IdFilter, VectorStore, write_index
from reid_sdk.gallery.filters import EntryFilter

logger = logging.getLogger(__name__)

_METADATA_FILE = "metadata.sqlite"
_STATISTICS_FILE = "camera_statistics.json"


def _counted_statistics(store: VectorStore, metadata: MetadataStore, config: GalleryConfig) -> CameraStatistics:
    """The camera statistics of every stored entry, counted from its stored vector."""
    ids = metadata.ids()
    rows = metadata.rows(ids)
    statistics = CameraStatistics(store.dim, config.camera_shrinkage)
    statistics.add(store.reconstruct(ids), [rows[int(i)].camera for i in ids])
    return statistics


def _read_statistics(root: Path, paths: dict[str, Path], store: VectorStore, metadata: MetadataStore,
                     config: GalleryConfig) -> CameraStatistics:
    """The generation's saved camera statistics, or (a gallery saved before they were kept) counted afresh."""
    if _STATISTICS_FILE not in paths:
        logger.info("%s keeps no camera statistics (saved by an older reid-sdk): counted from its %d stored vectors",
                    root, len(metadata))
        return _counted_statistics(store, metadata, config)
    try:
        return CameraStatistics.from_dict(json.loads(paths[_STATISTICS_FILE].read_text()), config.camera_shrinkage)
    except (ValueError, UnicodeDecodeError) as error:
        raise CorruptGalleryError(f"{paths[_STATISTICS_FILE]} holds no camera statistics: {error}") from error


def _load_generation(root: Path, manifest: Manifest,
                     config: GalleryConfig) -> tuple[VectorStore, MetadataStore, CameraStatistics]:
    """The verified files of one generation, loaded into memory and checked against the manifest's counts."""
    paths = verified_files(root, manifest)
    if _METADATA_FILE not in paths:
        raise CorruptGalleryError(f"{root / MANIFEST} names no {_METADATA_FILE} file")
    store = VectorStore.read(manifest.dim, config, paths)
    metadata = MetadataStore.load(paths[_METADATA_FILE])
    if len(metadata) != manifest.entries or store.ntotal != manifest.vectors:
        metadata.close()
        raise CorruptGalleryError(f"gallery {root} is inconsistent: {len(metadata)} metadata rows and {store.ntotal} "
                                  f"vectors, its manifest says {manifest.entries} and {manifest.vectors}")
    store.restore_tombstones(metadata.ids())
    try:
        return store, metadata, _read_statistics(root, paths, store, metadata, config)
    except BaseException:
        metadata.close()
        raise


def _same_directory(a: Path, b: Path) -> bool:
    return Path(a).resolve() == Path(b).resolve()


class FaissSqliteBackend:
    """FAISS + SQLite gallery storage; see the module docstring for how processes share a directory."""

    def __init__(self, dim: int, store: VectorStore, metadata: MetadataStore, statistics: CameraStatistics,
                 model_id: str | None, root: Path | None, lineage: str, generation: int | None, next_id: int,
                 replace_existing: bool = False) -> None:
        self.dim = dim
        self.model_id = model_id
        self._store = store
        self._metadata = metadata
        self._root = root
        self._lineage = lineage            # identifies this gallery across its generations and copies
        self._generation = generation      # the generation this state is based on (None: never saved)
        self._next_id = next_id
        self._replace_existing = replace_existing
        self._added: list[np.ndarray] = []    # ids added and removed since the base generation,
        self._removed: list[np.ndarray] = []  # to merge with what other processes committed
        self._lock = ReadWriteLock()
        self._save_lock = threading.Lock()
        self._statistics = statistics
        self._standardised: tuple[int, VectorStore] | None = None  # (statistics version, standardised vectors)
        self._standardised_lock = threading.Lock()

    @classmethod
    def create(cls, dim: int, config: GalleryConfig, model_id: str | None = None, root: Path | None = None,
               overwrite: bool = False) -> FaissSqliteBackend:
        """An empty in-memory gallery, to be saved in ``root``; FileExistsError if a gallery is there already."""
        if root is not None:
            if not overwrite and (Path(root) / MANIFEST).exists():
                raise FileExistsError(f"a gallery already exists at {root}: open it with Gallery.open({str(root)!r}) "
                                      "or pass overwrite=True to replace it")
            check_target(Path(root))
        return cls(dim, VectorStore(dim, config), MetadataStore(), CameraStatistics(dim, config.camera_shrinkage),
                   model_id, None if root is None else Path(root), uuid.uuid4().hex, None, 0,
                   replace_existing=overwrite)

    @classmethod
    def open(cls, root: Path, **search_params: Any) -> FaissSqliteBackend:
        """Load the committed generation of ``root``, verifying every file, under a reader lease; then delete what
        interrupted saves left behind."""
        root = Path(root)
        read_manifest(root)  # clear errors for a missing or damaged gallery before touching the directory
        with reading(root):
            manifest = read_manifest(root)
            config = GalleryConfig.from_dict(manifest.config).with_search_params(**search_params)
            store, metadata, statistics = _load_generation(root, manifest, config)
        removed = remove_leftovers(root)
        logger.debug("opened generation %d of %s (%d leftovers of interrupted saves removed)", manifest.generation,
                     root, removed)
        return cls(manifest.dim, store, metadata, statistics, manifest.model_id, root, manifest.lineage,
                   manifest.generation, manifest.next_id)

    # -- properties ---------------------------------------------------------------------------------------------
    @property
    def config(self) -> GalleryConfig:
        return self._store.config

    @property
    def location(self) -> Path | None:
        return self._root

    @property
    def is_trained(self) -> bool:
        return self._store.is_trained

    def __len__(self) -> int:
        return len(self._metadata)

    @property
    def camera_statistics(self) -> CameraStatistics:
        return self._statistics

    def tune(self, **search_params: Any) -> None:
        with self._lock.write():
            self._store.config = self._store.config.with_search_params(**search_params)
            self._statistics.shrinkage = self._store.config.camera_shrinkage
            self._standardised = None

    def set_model_id(self, model_id: str) -> None:
        self.model_id = model_id

    # -- writing ------------------------------------------------------------------------------------------------
    def train(self, vectors: np.ndarray) -> None:
        with self._lock.write():
            self._store.train(vectors)

    def add(self, vectors: np.ndarray, rows: list[EntryRow]) -> np.ndarray:
        with self._lock.write():
            if not self._store.is_trained:
                self._store.train(vectors)
            ids = self._new_ids(len(vectors))
            self._store_entries(vectors, ids, rows)
            self._added.append(ids)
        return ids

    def _store_entries(self, vectors: np.ndarray, ids: np.ndarray, rows: list[EntryRow]) -> None:
        """Vectors, metadata and camera statistics of new entries (the statistics count the vectors as stored)."""
        self._store.add(vectors, ids)
        try:
            self._metadata.insert(ids, rows)
        except Exception:
            self._store.remove(ids)
            raise
        self._statistics.add(self._store.reconstruct(ids), [row.camera for row in rows])

    def _forget(self, ids: np.ndarray) -> None:
        """Take existing entries out of the camera statistics, the vectors and the metadata."""
        rows = self._metadata.rows(ids)
        self._statistics.remove(self._store.reconstruct(ids), [rows[int(i)].camera for i in ids])
        self._store.remove(ids)
        self._metadata.delete(ids)

    def _new_ids(self, count: int) -> np.ndarray:
        """Ids for new entries: from the directory's shared counter once the gallery is saved, else local."""
        first = self._next_id
        if self._generation is not None:
            first = reserve_ids(self._root, count, first)
        self._next_id = first + count
        return np.arange(first, first + count, dtype=np.int64)

    def remove_ids(self, ids: np.ndarray) -> int:
        with self._lock.write():
            return self._remove(self._metadata.existing(ids))

    def remove_where(self, entry_filter: EntryFilter) -> int:
        with self._lock.write():
            return self._remove(self._metadata.ids(*where(entry_filter)))

    def _remove(self, ids: np.ndarray) -> int:
        self._forget(ids)
        self._removed.append(ids)
        return len(ids)

    # -- reading ------------------------------------------------------------------------------------------------
    def count(self, entry_filter: EntryFilter) -> int:
        return len(self._metadata) if entry_filter.is_empty else self._metadata.count(*where(entry_filter))

    def _id_filter(self, entry_filter: EntryFilter) -> IdFilter | None:
        """Ids a filtered search may return, as the smaller of the allowed set and its complement."""
        if entry_filter.is_empty:
            return None
        condition, params = where(entry_filter)
        available = self._metadata.count(condition, params)
        if available <= len(self._metadata) - available:
            return IdFilter(available, allowed=self._metadata.ids(condition, params))
        return IdFilter(available, excluded=self._metadata.ids(f"NOT COALESCE(({condition}), 0)", params))

    def search(self, vectors: np.ndarray, k: int, entry_filter: EntryFilter) -> tuple[np.ndarray, np.ndarray]:
        with self._lock.read():
            return self._store.search(vectors, k, self._id_filter(entry_filter), len(self._metadata))

    def search_standardised(self, vectors: np.ndarray, k: int,
                            entry_filter: EntryFilter) -> tuple[np.ndarray, np.ndarray]:
        with self._lock.read():
            return self._standardised_store().search(vectors, k, self._id_filter(entry_filter), len(self._metadata))

    def standardised_vectors(self, ids: np.ndarray) -> np.ndarray:
        with self._lock.read():
            return self._standardised_store().reconstruct(ids)

    def _standardised_store(self) -> VectorStore:
        """The index of every entry's camera-standardised vector, rebuilt when the statistics changed since."""
        with self._standardised_lock:
            version = self._statistics.version
            if self._standardised is None or self._standardised[0] != version:
                ids = self._metadata.ids()
                rows = self._metadata.rows(ids)
                vectors = self._statistics.standardise(self._store.reconstruct(ids), [rows[int(i)].camera for i in ids])
                config = self.config
                if config.trainable and len(ids) < config.min_training_size(len(ids)):
                    config = replace(config, index="flat")  # too few entries to train the index type on
                store = VectorStore(self.dim, config)
                store.train(vectors)
                store.add(vectors, ids)
                self._standardised = (version, store)
            return self._standardised[1]

    def rows(self, ids: np.ndarray) -> dict[int, EntryRow]:
        return self._metadata.rows(ids)

    def ids(self) -> np.ndarray:
        return self._metadata.ids()

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        with self._lock.read():
            missing = np.setdiff1d(ids, self._metadata.existing(ids))
            if len(missing):
                raise unknown_entries(missing.tolist())
            return self._store.reconstruct(ids)

    # -- persistence --------------------------------------------------------------------------------------------
    def save(self, location: str | Path | None = None, overwrite: bool = False) -> Path:
        """Commit the next generation in ``location`` (default: where the gallery was opened or last saved)."""
        root = Path(location) if location is not None else self._root
        if root is None:
            raise ValueError("this gallery has no path: call save(path)")
        check_target(root)
        own = self._root is not None and _same_directory(root, self._root)
        with self._save_lock:
            may_replace = overwrite or (own and self._replace_existing)
            with writing_in(root):
                root.mkdir(parents=True, exist_ok=True)
                check_locks(root, replace_damaged=may_replace)
            with save_lock(root):
                on_disk = self._committed(root, own, may_replace)
                if own and on_disk is not None and on_disk.lineage == self._lineage and (
                        on_disk.generation != self._generation):
                    self._merge(root, on_disk)
                with self._lock.read():  # adds wait; searches go on
                    manifest = write_generation(root, self._writers(), Manifest(
                        lineage=self._lineage, generation=(on_disk.generation if on_disk else 0) + 1, dim=self.dim,
                        config=self.config.to_dict(), model_id=self.model_id, entries=len(self._metadata),
                        vectors=self._store.ntotal, next_id=self._next_id))
                    self._root, self._generation, self._replace_existing = root, manifest.generation, False
                    self._added, self._removed = [], []
                removed = remove_stale(root, manifest)
        logger.debug("saved generation %d of %s (%d stale files removed)", manifest.generation, root, removed)
        return root

    def _committed(self, root: Path, own: bool, may_replace: bool) -> Manifest | None:
        """The manifest this save builds on (None: afresh); FileExistsError where it would replace another gallery."""
        try:
            on_disk = find_manifest(root)
        except ValueError:  # a damaged or foreign-format gallery: replaced only when asked to
            if may_replace:
                return None
            raise
        if on_disk is None or (own and on_disk.lineage == self._lineage) or may_replace:
            return on_disk
        where_from = "was replaced by another gallery since this one was opened" if own else "holds another gallery"
        raise FileExistsError(f"{root} {where_from} ({on_disk.entries} entries, {on_disk.dim}-d, model "
                              f"{on_disk.model_id}): reopen it, or save with overwrite=True to replace it")

    def _merge(self, root: Path, on_disk: Manifest) -> None:
        """Bring in what other processes committed since this gallery's base generation: their adds and removals."""
        store, metadata, statistics = _load_generation(root, on_disk, self.config)
        adopted = False
        try:
            theirs = metadata.ids()
            with self._lock.write():
                if self.model_id and on_disk.model_id and self.model_id != on_disk.model_id:
                    raise GalleryChangedError(
                        f"{root} now holds features of model {on_disk.model_id} but this process uses model "
                        f"{self.model_id}: reopen the gallery")
                added = np.concatenate([np.empty(0, np.int64), *self._added])
                removed = np.concatenate([np.empty(0, np.int64), *self._removed])
                clash = np.intersect1d(theirs, np.setdiff1d(added, removed))
                if len(clash):
                    raise GalleryChangedError(f"{root} changed on disk: another process committed entries with this "
                                              f"process's new ids {clash[:5].tolist()}: reopen the gallery")
                if not self._store.is_trained:  # nothing here yet: take their state whole
                    store.config = self.config
                    self._store, self._metadata, self._statistics, adopted = store, metadata, statistics, True
                else:
                    ours = self._metadata.ids()
                    gone = np.setdiff1d(np.setdiff1d(ours, added), theirs)
                    new = np.setdiff1d(theirs, np.union1d(ours, removed))
                    self._forget(gone)
                    if len(new):
                        rows = metadata.rows(new)
                        self._store_entries(store.reconstruct(new), new, [rows[int(i)] for i in new])
                self.model_id = self.model_id or on_disk.model_id
                self._next_id = max(self._next_id, on_disk.next_id)
        finally:
            if not adopted:
                metadata.close()
        logger.info("merged generation %d of %s, committed by another process, before saving",
                    on_disk.generation, root)

    def _writers(self) -> dict[str, Any]:
        writers = {name: (lambda path, index=index: write_index(index, path))
                   for name, index in self._store.indexes().items()}
        writers[_METADATA_FILE] = self._metadata.dump
        writers[_STATISTICS_FILE] = lambda path: path.write_text(json.dumps(self._statistics.to_dict()))
        return writers

    def close(self) -> None:
        """Release the metadata database (the gallery is unusable afterwards)."""
        self._metadata.close()
