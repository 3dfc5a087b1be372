"""Gallery: FAISS vectors + SQLite metadata with filtered search and atomic persistence."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from reid_sdk.gallery.config import METRICS, GalleryConfig
from reid_sdk.gallery.locking import ReadWriteLock
from reid_sdk.gallery.match import Match
from reid_sdk.gallery.metadata import MetadataStore, SearchFilter
from reid_sdk.gallery.persistence import MANIFEST, read_manifest, write_generation
from reid_sdk.gallery.store import IdFilter, VectorStore

_METADATA_FILE = "metadata.sqlite"
_LABEL_TYPES = (str, int)


def _label(value: Any, name: str) -> Any:
    """An identity / camera / track id as SQLite stores it: str, int or None."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or (isinstance(value, _LABEL_TYPES) and not isinstance(value, bool)):
        return value
    raise ValueError(f"{name} must be a str, an int or None, got {type(value).__name__}")


def _column(value: Any, n: int, name: str) -> list[Any]:
    """One value per entry: a scalar is repeated, a list / array must have length ``n``."""
    if isinstance(value, (list, tuple, np.ndarray)):
        if len(value) != n:
            raise ValueError(f"{name} has {len(value)} values for {n} features")
        return list(value)
    return [value] * n


def _timestamp(value: Any) -> float | None:
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"timestamp must be a number (seconds) or None, got {value!r}") from error
    if not np.isfinite(value):
        raise ValueError(f"timestamp must be finite, got {value}")
    return value


def _metadata_json(value: Any) -> str:
    if value is None:
        return "{}"
    if not isinstance(value, dict):
        raise ValueError(f"metadata must be a dict, got {type(value).__name__}")
    try:
        return json.dumps(value)
    except TypeError as error:
        raise ValueError(f"metadata must be JSON-serialisable: {error}") from error


def _label_set(value: Any, name: str) -> tuple[Any, ...] | None:
    if value is None:
        return None
    values = value if isinstance(value, (list, tuple, set, frozenset, np.ndarray)) else [value]
    return tuple(_label(v, name) for v in values)


class Gallery:
    """Searchable store of L2-normalised re-ID features and their metadata.

    ``index``: "flat" (exact), "ivf", "hnsw" or "ivfpq" (approximate; see
    :mod:`reid_sdk.gallery.store`). Features are normalised on add and on query, so
    scores are cosine similarities. Thread-safe: many searches run concurrently while
    adds, removes and saves take turns.
    """

    def __init__(self, dim: int, index: str = "flat", metric: str = "cosine", path: str | Path | None = None,
                 config: GalleryConfig | None = None) -> None:
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS} (features are L2-normalised), got {metric!r}")
        if path is not None and (Path(path) / MANIFEST).exists():
            raise FileExistsError(f"a gallery already exists at {path}: use Gallery.open({str(path)!r})")
        config = replace(config or GalleryConfig(), index=index)
        self._attach(int(dim), config, VectorStore(int(dim), config), MetadataStore(), path)

    def _attach(self, dim: int, config: GalleryConfig, store: VectorStore, metadata: MetadataStore,
                path: str | Path | None) -> None:
        self.dim = dim
        self.config = config
        self.path = None if path is None else Path(path)
        self._store = store
        self._metadata = metadata
        self._lock = ReadWriteLock()
        self._save_lock = threading.Lock()

    # -- properties ---------------------------------------------------------------------------------------------
    @property
    def index_type(self) -> str:
        return self.config.index

    @property
    def is_trained(self) -> bool:
        return self._store.is_trained

    def __len__(self) -> int:
        return len(self._metadata)

    def __repr__(self) -> str:
        return f"Gallery(dim={self.dim}, index={self.index_type!r}, entries={len(self)}, path={self.path})"

    def tune(self, **search_params: Any) -> None:
        """Change query-time parameters (nprobe, ef_search, rerank_factor, device)."""
        with self._lock.write():
            self.config = self._store.config = self.config.with_search_params(**search_params)

    # -- writing ------------------------------------------------------------------------------------------------
    def _prepare(self, features: Any) -> np.ndarray:
        """Validated, L2-normalised float32 (N, dim) copy of one (dim,) feature or a (N, dim) batch."""
        try:
            array = np.array(features, dtype=np.float32, ndmin=2)
        except (TypeError, ValueError) as error:
            raise ValueError(f"features must be a numeric array, got {type(features).__name__}") from error
        if array.ndim != 2 or array.shape[1] != self.dim:
            raise ValueError(f"features must have shape (N, {self.dim}) or ({self.dim},), got {np.shape(features)}")
        if not np.isfinite(array).all():
            raise ValueError("features contain NaN or infinite values")
        if len(array) and not np.linalg.norm(array, axis=1).all():
            raise ValueError("features contain an all-zero vector, which has no direction to compare")
        array = np.ascontiguousarray(array)
        faiss.normalize_L2(array)
        return array

    def train(self, features: Any) -> None:
        """Train an "ivf" / "ivfpq" index on a representative sample (done automatically by the first add)."""
        vectors = self._prepare(features)
        with self._lock.write():
            self._store.train(vectors)

    def add(self, features: Any, identities: Any = None, cameras: Any = None, timestamps: Any = None,
            track_ids: Any = None, metadata: Any = None) -> np.ndarray:
        """Add a batch (or one feature); each column is a scalar for all entries or one value per entry.

        Returns the new entries' ids (int64, stable across saves). An untrained IVF / PQ
        index trains on this batch first, and says how many vectors it needs if too few.
        """
        vectors = self._prepare(features)
        n = len(vectors)
        identity_column = [_label(v, "identity") for v in _column(identities, n, "identities")]
        camera_column = [_label(v, "camera") for v in _column(cameras, n, "cameras")]
        track_column = [_label(v, "track id") for v in _column(track_ids, n, "track_ids")]
        time_column = [_timestamp(v) for v in _column(timestamps, n, "timestamps")]
        metadata_column = [_metadata_json(v) for v in _column(metadata, n, "metadata")]
        with self._lock.write():
            if not self._store.is_trained:
                self._store.train(vectors)
            first = int(self._metadata.get_info("next_id", 0))
            ids = np.arange(first, first + n, dtype=np.int64)
            self._store.add(vectors, ids)
            try:
                self._metadata.insert(ids, identity_column, camera_column, time_column, track_column, metadata_column)
            except Exception:
                self._store.remove(ids)
                raise
            self._metadata.set_info("next_id", first + n)
        return ids

    def remove(self, ids: Iterable[int]) -> int:
        """Remove entries by id; unknown ids are ignored. Returns how many were removed."""
        wanted = np.asarray(list(ids), dtype=np.int64)
        return self._remove_where(lambda: self._metadata.existing(wanted))

    def remove_identity(self, identity: Any) -> int:
        """Remove every entry of one identity."""
        identity = _label(identity, "identity")
        return self._remove_where(lambda: self._metadata.ids("identity = ?", [identity]))

    def remove_before(self, timestamp: float) -> int:
        """Remove entries older than ``timestamp`` (entries without a timestamp stay)."""
        cutoff = _timestamp(timestamp)
        return self._remove_where(lambda: self._metadata.ids("timestamp < ?", [cutoff]))

    def _remove_where(self, find_ids: Any) -> int:
        with self._lock.write():
            ids = find_ids()
            self._store.remove(ids)
            self._metadata.delete(ids)
        return len(ids)

    # -- reading ------------------------------------------------------------------------------------------------
    def _id_filter(self, search_filter: SearchFilter) -> IdFilter | None:
        """Ids a filtered search may return, as the smaller of the allowed set and its complement."""
        if search_filter.is_empty:
            return None
        condition, params = search_filter.where()
        live = len(self._metadata)
        available = self._metadata.count(condition, params)
        if available <= live - available:
            return IdFilter(available, allowed=self._metadata.ids(condition, params))
        return IdFilter(available, excluded=self._metadata.ids(f"NOT COALESCE(({condition}), 0)", params))

    def search_ids(self, queries: Any, k: int = 10, cameras: Any = None, exclude_camera: Any = None,
                   since: float | None = None, until: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) arrays of shape (Q, k), best first; -inf / -1 pad rows with fewer hits."""
        vectors = self._prepare(queries)
        search_filter = self._search_filter(cameras, exclude_camera, since, until)
        with self._lock.read():
            return self._search_locked(vectors, k, search_filter)

    def search(self, queries: Any, k: int = 10, cameras: Any = None, exclude_camera: Any = None,
               since: float | None = None, until: float | None = None) -> list[Match] | list[list[Match]]:
        """Matches for one (dim,) query (a list) or a (Q, dim) batch (a list of lists), best first.

        Filters: ``cameras`` keeps only those cameras, ``exclude_camera`` drops one or
        several, ``since`` / ``until`` bound the timestamp (inclusive). k results come
        back whenever at least k entries pass the filters.
        """
        single = np.ndim(queries) == 1
        vectors = self._prepare(queries)
        search_filter = self._search_filter(cameras, exclude_camera, since, until)
        with self._lock.read():
            scores, ids = self._search_locked(vectors, k, search_filter)
            rows = self._metadata.rows(np.unique(ids[ids >= 0]))
        matches = [
            [Match(row[0], row[1], float(score), int(entry_id), row[2], row[3], row[4])
             for score, entry_id in zip(score_row, id_row) if entry_id >= 0 and (row := rows.get(int(entry_id)))]
            for score_row, id_row in zip(scores, ids)
        ]
        return matches[0] if single else matches

    @staticmethod
    def _search_filter(cameras: Any, exclude_camera: Any, since: float | None, until: float | None) -> SearchFilter:
        return SearchFilter(_label_set(cameras, "camera"), _label_set(exclude_camera, "camera") or (),
                            _timestamp(since), _timestamp(until))

    def _search_locked(self, vectors: np.ndarray, k: int, search_filter: SearchFilter) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        return self._store.search(vectors, int(k), self._id_filter(search_filter), len(self._metadata))

    def ids(self) -> np.ndarray:
        """Ids of all entries."""
        return self._metadata.ids()

    def vectors(self, ids: Sequence[int]) -> np.ndarray:
        """Stored (normalised) vectors of existing entries; KeyError for unknown ids."""
        wanted = np.asarray(list(ids), dtype=np.int64)
        with self._lock.read():
            missing = np.setdiff1d(wanted, self._metadata.existing(wanted))
            if len(missing):
                raise KeyError(f"no gallery entries with ids {missing[:10].tolist()}")
            return self._store.reconstruct(wanted)

    # -- persistence --------------------------------------------------------------------------------------------
    def save(self, path: str | Path | None = None) -> Path:
        """Atomically write the gallery to a directory (default: the one it was opened from or created with)."""
        target = Path(path) if path is not None else self.path
        if target is None:
            raise ValueError("this gallery has no path: call save(path)")
        with self._save_lock, self._lock.read():
            writers = {name: (lambda p, i=index: faiss.write_index(i, str(p)))
                       for name, index in self._store.indexes().items()}
            writers[_METADATA_FILE] = self._metadata.dump
            manifest = {"dim": self.dim, "metric": "cosine", "config": self.config.to_dict(),
                        "entries": len(self), "vectors": self._store.ntotal}
            write_generation(target, writers, manifest)
        self.path = target
        return target

    @classmethod
    def open(cls, path: str | Path, **search_params: Any) -> Gallery:
        """Load a saved gallery; ``search_params`` (nprobe, ef_search, ...) override the saved query settings."""
        root = Path(path)
        manifest = read_manifest(root)
        config = GalleryConfig.from_dict(manifest["config"]).with_search_params(**search_params)
        paths = {name: root / file_name for name, file_name in manifest["files"].items()}
        dim = int(manifest["dim"])
        store = VectorStore.read(dim, config, paths)
        metadata = MetadataStore.load(paths[_METADATA_FILE])
        live = metadata.ids()
        if len(live) != manifest["entries"] or store.ntotal != manifest["vectors"]:
            raise ValueError(f"gallery {root} is inconsistent: {len(live)} metadata rows and {store.ntotal} vectors, "
                             f"manifest says {manifest['entries']} and {manifest['vectors']}")
        store.restore_tombstones(live)
        gallery = cls.__new__(cls)
        gallery._attach(dim, config, store, metadata, root)
        return gallery

    def close(self) -> None:
        """Release the metadata database (the gallery is unusable afterwards)."""
        self._metadata.close()
