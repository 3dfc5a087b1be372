"""Gallery: validated, L2-normalised re-ID features with their labels, filtered search, several backends."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from reid_sdk.gallery import entries
from reid_sdk.gallery.backend import GalleryBackend, create_gallery_backend, open_gallery_backend
from reid_sdk.gallery.camera_statistics import CameraStatistics, l2_normalised
from reid_sdk.gallery.config import METRICS, GalleryConfig
from reid_sdk.gallery.entries import EntryRow
from reid_sdk.gallery.errors import ModelMismatchError
from reid_sdk.gallery.filters import EntryFilter
from reid_sdk.gallery.match import Match

logger = logging.getLogger(__name__)
_INT64_MAX = np.iinfo(np.int64).max


def _positive_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    return int(k)


def _standardise_switch(camera_standardise: Any) -> bool | None:
    if camera_standardise is None or isinstance(camera_standardise, bool):
        return camera_standardise
    raise ValueError(f"camera_standardise must be True, False or None (on where entries have cameras), got "
                     f"{camera_standardise!r}")


def _id_array(ids: Iterable[int]) -> np.ndarray:
    """Entry ids as flat int64; floats, bools, strings and values beyond int64 are refused, never truncated."""
    try:
        array = np.asarray(list(ids))
    except (TypeError, ValueError) as error:
        raise ValueError(f"entry ids must be a list or array of integers, got {type(ids).__name__}") from error
    if array.size and (array.dtype.kind not in "iu" or (array.dtype.kind == "u" and array.max() > _INT64_MAX)):
        raise ValueError(f"entry ids must be int64 integers, got {array.dtype} values like "
                         f"{array.ravel()[:3].tolist()}")
    return array.astype(np.int64).reshape(-1)


class Gallery:
    """Searchable store of L2-normalised re-ID features and their metadata.

    ``path`` picks the backend: None (in memory, saved later with ``save(path)``), a directory
    (FAISS + SQLite, the embedded default), ``milvus-lite:FILE.db`` or ``http://host:19530``
    (Milvus). ``index_type``: "flat" (exact), "ivf", "hnsw" or "ivfpq" (approximate). Features are
    normalised on add and on query, so scores are cosine similarities. Thread-safe.

    Camera standardisation (on by default once an entry has a camera; ``camera_standardise=False`` turns it off
    per search, ``tune(camera_standardise=False)`` or ``Gallery.open(path, camera_standardise=False)`` for the
    handle): queries and entries are compared after removing their camera's mean feature (kept by the
    gallery, shrunk towards the global mean by ``GalleryConfig.camera_shrinkage``; a query's ``query_camera``,
    or the global mean when it is None or unseen), and the score is that standardised cosine. See
    :mod:`reid_sdk.gallery.camera_statistics` and the gallery guide for why and what it costs.

    Example:
        ```python
        gallery = Gallery(256, index_type="hnsw")
        ids = gallery.add(features, identities=people, cameras=3, timestamps=times)
        gallery.save("gallery/")                       # atomic; other processes may share it
        matches = Gallery.open("gallery/").search(query, k=10, exclude_camera=3)
        ```
    """

    def __init__(self, dim: int, index_type: str = "flat", metric: str = "cosine", path: str | Path | None = None,
                 config: GalleryConfig | None = None, model_id: str | None = None, overwrite: bool = False) -> None:
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS} (features are L2-normalised), got {metric!r}")
        config = replace(config or GalleryConfig(), index=index_type)
        self._backend: GalleryBackend = create_gallery_backend(int(dim), config, path, model_id, overwrite)

    @classmethod
    def open(cls, path: str | Path, **search_params: Any) -> Gallery:
        """Open a saved gallery (directory or Milvus URI); ``search_params`` (nprobe, ef_search, ...) override
        its saved query settings. A damaged gallery raises one ValueError naming the file."""
        gallery = cls.__new__(cls)
        gallery._backend = open_gallery_backend(path, **search_params)
        return gallery

    # -- properties ---------------------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self._backend.dim

    @property
    def config(self) -> GalleryConfig:
        return self._backend.config

    @property
    def index_type(self) -> str:
        return self.config.index

    @property
    def is_trained(self) -> bool:
        return self._backend.is_trained

    @property
    def path(self) -> Path | str | None:
        """The directory or Milvus URI the gallery is saved in (None before a first save)."""
        return self._backend.location

    @property
    def model_id(self) -> str | None:
        """Identity of the model whose features the gallery holds (see ``FeatureExtractor.model_id``)."""
        return self._backend.model_id

    def __len__(self) -> int:
        return len(self._backend)

    def __repr__(self) -> str:
        return f"Gallery(dim={self.dim}, index_type={self.index_type!r}, entries={len(self)}, path={self.path})"

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    @property
    def camera_statistics(self) -> CameraStatistics:
        """The per-camera statistics of the entries (read them; the gallery keeps them up to date)."""
        return self._backend.camera_statistics

    def standardises(self, camera_standardise: bool | None = None) -> bool:
        """Whether a search with ``camera_standardise`` compares camera-standardised features: as asked, else as
        the gallery's ``config.camera_standardise`` says, else (None) when some entry has a camera."""
        switch = _standardise_switch(camera_standardise)
        if switch is None:
            switch = self.config.camera_standardise
        return self.camera_statistics.has_cameras if switch is None else switch

    def tune(self, **search_params: Any) -> None:
        """Change query-time parameters (nprobe, ef_search, rerank_factor, device, gpu_device, camera_standardise,
        camera_shrinkage)."""
        self._backend.tune(**search_params)

    def check_model(self, model_id: str | None) -> None:
        """Refuse features of another model than the gallery's (ModelMismatchError naming both).

        An empty gallery that records no model adopts ``model_id``; None (an unknown model) is not checked.
        """
        recorded = self.model_id
        if model_id is None or recorded == model_id:
            return
        if recorded is None:
            if len(self):
                logger.warning("gallery %s records no model: its %d entries cannot be checked against %s",
                               self.path, len(self), model_id)
            else:
                self._backend.set_model_id(model_id)
            return
        where = f" at {self.path}" if self.path is not None else ""
        raise ModelMismatchError(f"the gallery{where} was built with model {recorded} but the extractor runs model "
                                 f"{model_id}: search it with the model that built it, or rebuild it with this one")

    # -- writing ------------------------------------------------------------------------------------------------
    def _prepare(self, features: Any) -> np.ndarray:
        """Validated, L2-normalised float32 (N, dim) copy of one (dim,) feature or a (N, dim) batch."""
        try:
            array = np.array(features, dtype=np.float32, ndmin=2)
        except (TypeError, ValueError) as error:
            raise ValueError(f"features must be a numeric array, got {type(features).__name__}") from error
        if array.ndim != 2 or array.shape[1] != self.dim:
            raise ValueError(f"features must have shape (N, {self.dim}) or ({self.dim},), got {np.shape(features)}")
        return l2_normalised(array)

    def train(self, features: Any) -> None:
        """Train an "ivf" / "ivfpq" index on a representative sample (done automatically by the first add)."""
        self._backend.train(self._prepare(features))

    def add(self, features: Any, identities: Any = None, cameras: Any = None, timestamps: Any = None,
            track_ids: Any = None, metadata: Any = None) -> np.ndarray:
        """Add a batch (or one feature); each column is a scalar for all entries or one value per entry.

        Returns the new entries' ids (int64, unique, stable across saves, never reused). An untrained
        IVF / PQ index trains on this batch first, and says how many vectors it needs if too few.
        """
        vectors = self._prepare(features)
        rows = entries.entry_rows(len(vectors), identities, cameras, timestamps, track_ids, metadata)
        if not len(vectors):
            return np.empty(0, dtype=np.int64)
        return self._backend.add(vectors, rows)

    def remove(self, ids: Iterable[int]) -> int:
        """Remove entries by id; unknown ids are ignored. Returns how many were removed."""
        return self._backend.remove_ids(np.unique(_id_array(ids)))

    def remove_identity(self, identity: Any) -> int:
        """Remove every entry of one identity (None: the entries without an identity)."""
        return self._backend.remove_where(EntryFilter(identities=(entries.label(identity, "identity"),)))

    def remove_before(self, timestamp: float) -> int:
        """Remove entries older than ``timestamp`` (entries without a timestamp stay)."""
        cutoff = entries.timestamp(timestamp)
        if cutoff is None:
            raise ValueError("remove_before needs a timestamp, got None")
        return self._backend.remove_where(EntryFilter(before=cutoff))

    # -- reading ------------------------------------------------------------------------------------------------
    @staticmethod
    def _filter(cameras: Any, exclude_camera: Any, since: float | None, until: float | None) -> EntryFilter:
        kept = entries.label_set(cameras, "camera")
        if kept == ():
            raise ValueError("cameras=[] keeps no entry: pass None for no camera filter, or the cameras to keep")
        return EntryFilter(cameras=kept,
                           exclude_cameras=entries.label_set(exclude_camera, "camera") or (),
                           since=entries.timestamp(since), until=entries.timestamp(until))

    def query_vectors(self, queries: Any, query_camera: Any = None, camera_standardise: bool | None = None) -> np.ndarray:
        """(Q, dim) queries as a search compares them: normalised, and camera-standardised when it is on
        (``query_camera``: one camera for all queries or one per query; None or unseen: the global mean)."""
        vectors = self._prepare(queries)
        if not self.standardises(camera_standardise):
            return vectors
        cameras = [entries.label(camera, "query camera") for camera in entries.column(query_camera, len(vectors),
                                                                                       "query_camera")]
        return self.camera_statistics.standardise(vectors, cameras)

    def search_ids(self, queries: Any, k: int = 10, cameras: Any = None, exclude_camera: Any = None,
                   since: float | None = None, until: float | None = None, query_camera: Any = None,
                   camera_standardise: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) arrays of shape (Q, min(k, entries passing the filters)), best first.

        -inf / -1 mark the cells where an approximate index found fewer results than exist. Camera-standardised
        (see the class) unless ``camera_standardise=False``; its scores are then the standardised cosines.
        """
        k = _positive_k(k)
        entry_filter = self._filter(cameras, exclude_camera, since, until)
        vectors = self.query_vectors(queries, query_camera, camera_standardise)
        if self.standardises(camera_standardise):
            return self._backend.search_standardised(vectors, k, entry_filter)
        return self._backend.search(vectors, k, entry_filter)

    def search(self, queries: Any, k: int = 10, cameras: Any = None, exclude_camera: Any = None,
               since: float | None = None, until: float | None = None, query_camera: Any = None,
               camera_standardise: bool | None = None) -> list[Match] | list[list[Match]]:
        """Matches for one (dim,) query (a list) or a (Q, dim) batch (a list of lists), best first.

        Filters: ``cameras`` keeps only those cameras, ``exclude_camera`` drops one or
        several, ``since`` / ``until`` bound the timestamp (inclusive). k results come
        back whenever at least k entries pass the filters; never more than exist.

        Camera labels keep their type (camera 2 is not camera "2"). A filter of None is no
        filter; None inside a list is the "no camera" label: ``cameras=[1, None]`` keeps
        camera 1 and the entries without a camera, ``exclude_camera=[2, None]`` drops both
        (``exclude_camera=2`` keeps them). ``cameras=[]`` is a ValueError (it would keep
        nothing); ``exclude_camera=[]`` drops nothing.

        ``query_camera`` is the camera that saw the query (one for all, or one per query), whose mean camera
        standardisation removes from it; ``camera_standardise`` is None (on where entries have cameras), True or
        False.
        """
        single = np.ndim(queries) == 1
        matches = self.matches(*self.search_ids(queries, k, cameras, exclude_camera, since, until, query_camera,
                                                camera_standardise))
        return matches[0] if single else matches

    def search_with_vectors(self, queries: Any, k: int = 10, cameras: Any = None, exclude_camera: Any = None,
                            since: float | None = None, until: float | None = None, query_camera: Any = None,
                            camera_standardise: bool | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`search_ids` plus the found entries' vectors as the search compared them (stored, or
        camera-standardised), (Q, width, dim), zero where an id is -1; :meth:`query_vectors` gives the queries'.

        Reads no metadata: a re-ranker orders the candidates first, then :meth:`matches` labels the few it keeps.
        """
        scores, ids = self.search_ids(queries, k, cameras, exclude_camera, since, until, query_camera,
                                      camera_standardise)
        found = ids >= 0
        unique, positions = np.unique(ids[found], return_inverse=True)
        vectors = np.zeros((*ids.shape, self.dim), dtype=np.float32)
        stored = self._backend.standardised_vectors if self.standardises(camera_standardise) else self._backend.vectors
        vectors[found] = stored(unique)[positions]
        return scores, ids, vectors

    def matches(self, scores: np.ndarray, ids: np.ndarray) -> list[list[Match]]:
        """One list of :class:`Match` per row of (Q, k) ``scores`` and ``ids`` as :meth:`search_ids` returns them,
        with the entries' stored labels; -1 cells and entries removed since are left out."""
        rows = self._backend.rows(np.unique(ids[ids >= 0]))
        return [
            [Match(row.identity, row.camera, float(score), int(entry_id), row.timestamp, row.track_id, row.metadata)
             for score, entry_id in zip(score_row, id_row) if entry_id >= 0 and (row := rows.get(int(entry_id)))]
            for score_row, id_row in zip(scores, ids)
        ]

    def ids(self) -> np.ndarray:
        """Ids of all entries, sorted."""
        return self._backend.ids()

    def rows(self, ids: Sequence[int]) -> dict[int, EntryRow]:
        """{id: labels and metadata} of the existing entries among ``ids`` (unknown ids are left out), without their
        vectors: e.g. the keys a resumed ingest leaves out."""
        return self._backend.rows(np.unique(_id_array(ids)))

    def vectors(self, ids: Sequence[int]) -> np.ndarray:
        """Stored (normalised) vectors of existing entries; KeyError naming removed or unknown ids,
        ValueError for ids that are not integers."""
        return self._backend.vectors(_id_array(ids))

    # -- persistence --------------------------------------------------------------------------------------------
    def save(self, path: str | Path | None = None, overwrite: bool = False) -> Path | str:
        """Make the gallery durable (default: where it was opened or created) and return where it is.

        A directory gets a new generation atomically; another gallery there is replaced only with
        ``overwrite=True``. A Milvus gallery is flushed where it lives.
        """
        return self._backend.save(path, overwrite)

    def close(self) -> None:
        """Release the backend (the gallery is unusable afterwards)."""
        self._backend.close()
