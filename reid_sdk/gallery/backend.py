"""The storage interface behind :class:`~reid_sdk.gallery.Gallery`, and the choice of backend from a location.

Two implementations pass the same contract tests (tests/test_gallery_contract.py):
:class:`~reid_sdk.gallery.faiss_sqlite.backend.FaissSqliteBackend` (embedded, the default) and
:class:`~reid_sdk.gallery.milvus.MilvusBackend` (Milvus Lite, standalone or cluster).
The Gallery validates and normalises input; a backend stores, filters and searches, thread-safely.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from reid_sdk.gallery.camera_statistics import CameraStatistics
from reid_sdk.gallery.config import GalleryConfig
from reid_sdk.gallery.entries import EntryRow
from reid_sdk.gallery.filters import EntryFilter
from reid_sdk.gallery.location import parse_location


class GalleryBackend(Protocol):
    """Entries (id, L2-normalised vector, :class:`EntryRow`) with filtered inner-product search."""

    dim: int
    model_id: str | None  # identity of the model whose features the gallery holds (None: not recorded)

    @property
    def config(self) -> GalleryConfig: ...

    @property
    def location(self) -> Path | str | None:
        """A FAISS gallery's directory, a Milvus gallery's URI, None before a first save."""
        ...

    @property
    def is_trained(self) -> bool: ...

    @property
    def camera_statistics(self) -> CameraStatistics:
        """Per-camera sums and counts of the stored vectors, kept up to date by every write."""
        ...

    def __len__(self) -> int: ...

    def tune(self, **search_params: Any) -> None: ...

    def train(self, vectors: np.ndarray) -> None: ...

    def add(self, vectors: np.ndarray, rows: list[EntryRow]) -> np.ndarray:
        """Store entries; returns their new ids (int64, unique, stable, never reused)."""
        ...

    def remove_ids(self, ids: np.ndarray) -> int:
        """Remove the existing ones of ``ids``; returns how many were removed."""
        ...

    def remove_where(self, entry_filter: EntryFilter) -> int: ...

    def count(self, entry_filter: EntryFilter) -> int: ...

    def search(self, vectors: np.ndarray, k: int, entry_filter: EntryFilter) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) of width min(k, entries passing the filter), best first; -inf / -1 where an
        approximate index found fewer."""
        ...

    def search_standardised(self, vectors: np.ndarray, k: int,
                            entry_filter: EntryFilter) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`search` of camera-standardised queries among the entries' camera-standardised vectors, exactly
        as a brute force with the current statistics would rank them."""
        ...

    def standardised_vectors(self, ids: np.ndarray) -> np.ndarray:
        """The camera-standardised vectors of existing ids, as :meth:`search_standardised` compared them."""
        ...

    def rows(self, ids: np.ndarray) -> dict[int, EntryRow]: ...

    def ids(self) -> np.ndarray:
        """All entry ids, sorted."""
        ...

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """Stored vectors of existing ids; KeyError naming unknown ones."""
        ...

    def set_model_id(self, model_id: str) -> None: ...

    def save(self, location: str | Path | None = None, overwrite: bool = False) -> Path | str: ...

    def close(self) -> None: ...


def create_gallery_backend(dim: int, config: GalleryConfig, location: str | Path | None, model_id: str | None,
                           overwrite: bool) -> GalleryBackend:
    """A new, empty backend: in memory (FAISS + SQLite) when ``location`` is None or a path, else Milvus."""
    parsed = None if location is None else parse_location(location)
    if parsed is None or parsed.backend == "faiss":
        from reid_sdk.gallery.faiss_sqlite import FaissSqliteBackend

        return FaissSqliteBackend.create(dim, config, model_id, None if parsed is None else parsed.path, overwrite)
    from reid_sdk.gallery.milvus import MilvusBackend

    return MilvusBackend.create(parsed, dim, config, model_id, overwrite)


def open_gallery_backend(location: str | Path, **search_params: Any) -> GalleryBackend:
    """The saved gallery at ``location``, with ``search_params`` overriding its query settings."""
    parsed = parse_location(location)
    if parsed.backend == "faiss":
        from reid_sdk.gallery.faiss_sqlite import FaissSqliteBackend

        return FaissSqliteBackend.open(parsed.path, **search_params)
    from reid_sdk.gallery.milvus import MilvusBackend

    return MilvusBackend.open(parsed, **search_params)
