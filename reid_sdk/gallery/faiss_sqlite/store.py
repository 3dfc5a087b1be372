"""FAISS vector storage with stable int64 ids, filtered top-k search and removal, per index type.

- flat:  ``IndexIDMap2(IndexFlatIP)``, exact; removal native.
- ivf:   ``IndexIVFFlat`` with native ids and a hash-table direct map; removal native.
- ivfpq: ``IndexIVFPQ`` (native ids) proposes ``rerank_factor * k`` candidates, re-scored with an
         8-bit scalar-quantised copy (``IndexIDMap2(IndexScalarQuantizer)``). FAISS's own
         ``IndexRefine`` is not used because it supports neither removal nor id selectors under an id map.
- hnsw:  ``IndexIDMap2(IndexHNSWFlat)``. FAISS cannot delete from an HNSW graph, so removed ids
         become tombstones that every search filters out with an id selector; when tombstones pass
         ``tombstone_rebuild_fraction`` of the graph, it is rebuilt from the live vectors.

Filters use FAISS ``IDSelector`` search parameters. When a restrictive filter leaves fewer
than k hits, the search widens (nprobe / efSearch x4 up to exhaustive) for the short queries.

GPU (faiss-gpu, flat / ivf, unfiltered searches): FAISS GPU indexes are not thread-safe, even for
search, so one lock serialises every use of the GPU copy. Adds go to the GPU copy too; a removal
drops it (FAISS GPU indexes cannot remove) and the next search uploads it again. FAISS-GPU
answers at most k = 2048 and nprobe = 2048: larger k runs on the CPU, larger nprobe is clamped.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from reid_sdk.gallery.config import GalleryConfig
from reid_sdk.gallery.errors import CorruptGalleryError
from reid_sdk.gallery.widening import search_widening

_IP = faiss.METRIC_INNER_PRODUCT
GPU_MAX_K = 2048       # FAISS-GPU's largest k for flat and IVF search
GPU_MAX_NPROBE = 2048  # and its largest nprobe


@dataclass(frozen=True)
class IdFilter:
    """The ids a search may return: ``allowed`` (when given) or everything but ``excluded``; ``available`` counts them."""

    available: int
    allowed: np.ndarray | None = None
    excluded: np.ndarray | None = None


@functools.cache
def gpu_count() -> int:
    """GPUs visible to FAISS (0 with faiss-cpu); asked once per process."""
    return faiss.get_num_gpus() if hasattr(faiss, "StandardGpuResources") else 0


def gpu_nprobe(k: int, nprobe: int) -> int | None:
    """The nprobe a GPU search may use for top-``k`` (clamped to FAISS-GPU's limit), or None: search on the CPU."""
    return None if k > GPU_MAX_K else min(nprobe, GPU_MAX_NPROBE)


def write_index(index: faiss.Index, path: Path) -> None:
    """Write ``index`` to ``path`` through a Python file, so that a full disk raises OSError: FAISS's own file writer
    only prints a failed close, leaving a truncated file behind."""
    with open(path, "wb") as handle:
        faiss.write_index(index, faiss.PyCallbackIOWriter(handle.write))


def _ids_of(index: faiss.Index) -> np.ndarray:
    """All ids stored in an ``IndexIDMap2``."""
    return faiss.vector_to_array(index.id_map).astype(np.int64)


class VectorStore:
    """One FAISS index (plus the ivfpq re-scoring copy) holding L2-normalised float32 vectors."""

    def __init__(self, dim: int, config: GalleryConfig) -> None:
        self.dim = dim
        self.config = config
        self.index: faiss.Index | None = None if config.trainable else self._new_index(0)
        self.rescorer: faiss.Index | None = None
        self._tombstones = np.empty(0, dtype=np.int64)
        self._gpu_index: faiss.Index | None = None
        self._gpu_resources = None
        self._gpu_lock = threading.Lock()
        if config.device == "gpu" and not gpu_count():
            raise RuntimeError("device='gpu' needs faiss with GPU support: pip install 'reid-sdk[gpu]' "
                               "(faiss-gpu-cu12) on a machine with a CUDA GPU")

    # -- construction -------------------------------------------------------------------------------------------
    def _new_index(self, nlist: int) -> faiss.Index:
        config, dim = self.config, self.dim
        if config.index == "flat":
            return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        if config.index == "hnsw":
            graph = faiss.IndexHNSWFlat(dim, config.hnsw_m, _IP)
            graph.hnsw.efConstruction = config.ef_construction
            return faiss.IndexIDMap2(graph)
        quantizer = faiss.IndexFlatIP(dim)
        if config.index == "ivf":
            index = faiss.IndexIVFFlat(quantizer, dim, nlist, _IP)
        else:
            index = faiss.IndexIVFPQ(quantizer, dim, nlist, config.resolved_pq_m(dim), config.pq_nbits, _IP)
        index.set_direct_map_type(faiss.DirectMap.Hashtable)
        return index

    @property
    def is_trained(self) -> bool:
        return self.index is not None and self.index.is_trained

    def train(self, vectors: np.ndarray) -> None:
        """Train IVF cells (and PQ codebooks) on ``vectors``; ValueError says how many are needed."""
        if not self.config.trainable:
            return
        if self.index is not None and self.index.ntotal:
            raise ValueError("the index already holds vectors; create a new Gallery to retrain")
        n = len(vectors)
        needed = self.config.min_training_size(n)
        if n < needed:
            raise ValueError(
                f"training a {self.config.index!r} index with nlist={self.config.resolved_nlist(n)} needs at least "
                f"{needed} vectors ({self.config.min_points_per_centroid} per centroid), got {n}: add a larger first "
                "batch, call Gallery.train() with a representative sample, or use index_type='flat' or 'hnsw'"
            )
        index = self._new_index(self.config.resolved_nlist(n))
        index.train(vectors)
        if self.config.index == "ivfpq":
            rescorer = faiss.IndexIDMap2(faiss.IndexScalarQuantizer(self.dim, faiss.ScalarQuantizer.QT_8bit, _IP))
            rescorer.train(vectors)
            self.rescorer = rescorer
        self.index = index
        with self._gpu_lock:
            self._gpu_index = None

    # -- mutation -----------------------------------------------------------------------------------------------
    @property
    def ntotal(self) -> int:
        """Vectors in the FAISS index, tombstones included."""
        return 0 if self.index is None else int(self.index.ntotal)

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        if not self.is_trained:
            raise ValueError(f"the {self.config.index!r} index must be trained before adding (Gallery.train)")
        self.index.add_with_ids(vectors, ids)
        if self.rescorer is not None:
            self.rescorer.add_with_ids(vectors, ids)
        with self._gpu_lock:
            if self._gpu_index is not None:
                self._gpu_index.add_with_ids(vectors, ids)

    def remove(self, ids: np.ndarray) -> None:
        """Remove entries by id (ids must exist)."""
        if not len(ids) or self.index is None:
            return
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if self.config.index == "hnsw":
            self._tombstones = np.union1d(self._tombstones, ids)
            if len(self._tombstones) > self.config.tombstone_rebuild_fraction * self.ntotal:
                self._rebuild_without_tombstones()
        elif self.config.index == "flat":
            self.index.remove_ids(faiss.IDSelectorBatch(ids))
        else:  # IVF with a hash-table direct map removes only through an IDSelectorArray
            self.index.remove_ids(faiss.IDSelectorArray(ids))
            if self.rescorer is not None:
                self.rescorer.remove_ids(faiss.IDSelectorBatch(ids))
        with self._gpu_lock:
            self._gpu_index = None

    def _rebuild_without_tombstones(self) -> None:
        live = np.setdiff1d(_ids_of(self.index), self._tombstones)
        vectors = self.index.reconstruct_batch(live) if len(live) else np.empty((0, self.dim), np.float32)
        index = self._new_index(0)
        index.add_with_ids(vectors, live)
        self.index = index
        self._tombstones = np.empty(0, dtype=np.int64)

    def restore_tombstones(self, live_ids: np.ndarray) -> None:
        """After loading: ids in the FAISS graph that the metadata no longer has are tombstones (hnsw only)."""
        if self.config.index == "hnsw":
            self._tombstones = np.setdiff1d(_ids_of(self.index), live_ids)

    # -- reading ------------------------------------------------------------------------------------------------
    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        """Stored vectors of existing ids (ivfpq: the 8-bit scalar-quantised copy)."""
        source = self.rescorer if self.rescorer is not None else self.index
        if not len(ids):
            return np.empty((0, self.dim), dtype=np.float32)
        return source.reconstruct_batch(np.ascontiguousarray(ids, dtype=np.int64))

    def search(self, queries: np.ndarray, k: int, id_filter: IdFilter | None, live: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids), best first, k clamped to the entries that may qualify (``live`` or the filter's).

        Rows are shorter than that only where an approximate index found fewer; those cells hold -inf / -1.
        """
        k = min(k, live if id_filter is None else id_filter.available)
        if self.index is None or k < 1:
            return np.empty((len(queries), 0), np.float32), np.empty((len(queries), 0), np.int64)
        selector, keep_alive = self._selector(id_filter)
        effort, max_effort = self._effort_range()
        scores, ids = search_widening(lambda rows, e: self._search_once(rows, k, selector, e), queries, k,
                                      effort, max_effort)
        del keep_alive
        scores[ids < 0] = -np.inf
        return scores, ids

    def _effort_range(self) -> tuple[int, int]:
        """Query effort (nprobe or efSearch) to start with, and the exhaustive value widening may reach."""
        if self.config.index in ("ivf", "ivfpq"):
            nlist = self.index.nlist
            return min(self.config.nprobe, nlist), nlist
        if self.config.index == "hnsw":
            return self.config.ef_search, max(self.config.ef_search, self.ntotal)
        return 0, 0

    def _selector(self, id_filter: IdFilter | None) -> tuple[faiss.IDSelector | None, list]:
        """The FAISS selector for a filter plus tombstones, and the objects it references (kept alive by the caller)."""
        excluded = self._tombstones if id_filter is None or id_filter.excluded is None else (
            np.union1d(id_filter.excluded, self._tombstones))
        if id_filter is not None and id_filter.allowed is not None:
            batch = faiss.IDSelectorBatch(np.ascontiguousarray(id_filter.allowed, dtype=np.int64))
            return batch, [batch]
        if not len(excluded):
            return None, []
        batch = faiss.IDSelectorBatch(np.ascontiguousarray(excluded, dtype=np.int64))
        selector = faiss.IDSelectorNot(batch)
        return selector, [batch, selector]

    def _search_once(self, queries: np.ndarray, k: int, selector: faiss.IDSelector | None,
                     effort: int) -> tuple[np.ndarray, np.ndarray]:
        kind = self.config.index
        fetch = min(k * self.config.rerank_factor, self.ntotal) if kind == "ivfpq" else k
        nprobe = gpu_nprobe(k, effort)
        if selector is None and kind in ("flat", "ivf") and nprobe is not None and self._use_gpu():
            return self._search_gpu(queries, k, faiss.SearchParametersIVF(nprobe=nprobe) if kind == "ivf" else None)
        if kind in ("ivf", "ivfpq"):
            params = faiss.SearchParametersIVF(nprobe=effort, sel=selector)
        elif kind == "hnsw":
            params = faiss.SearchParametersHNSW(efSearch=max(effort, k), sel=selector)
        else:
            params = faiss.SearchParameters(sel=selector) if selector is not None else None
        scores, ids = self.index.search(queries, fetch, params=params)
        if kind == "ivfpq":
            return self._rescore(queries, ids, k)
        return scores, ids

    def _rescore(self, queries: np.ndarray, candidates: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Re-rank PQ candidates by the inner product with their scalar-quantised vectors; keep the best k.

        Queries are re-scored in chunks so the decoded candidates stay within ~256 MiB, whatever k is.
        """
        scores = np.full(candidates.shape, -np.inf, dtype=np.float32)
        step = max(1, (256 << 20) // (4 * self.dim * candidates.shape[1]))
        for start in range(0, len(queries), step):
            chunk = candidates[start : start + step]
            valid = chunk >= 0
            vectors = np.zeros((*chunk.shape, self.dim), dtype=np.float32)
            vectors[valid] = self.rescorer.reconstruct_batch(chunk[valid])
            scores[start : start + step][valid] = np.einsum("qcd,qd->qc", vectors, queries[start : start + step])[valid]
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(scores, order, 1), np.take_along_axis(candidates, order, 1)

    # -- GPU ----------------------------------------------------------------------------------------------------
    def _use_gpu(self) -> bool:
        return self.config.device == "gpu" or (self.config.device == "auto" and gpu_count() > 0)

    def _search_gpu(self, queries: np.ndarray, k: int,
                    params: faiss.SearchParameters | None) -> tuple[np.ndarray, np.ndarray]:
        """An unfiltered search on the GPU copy of the flat / IVF index, uploaded on first use."""
        with self._gpu_lock:  # FAISS GPU indexes and StandardGpuResources are not thread-safe
            if self._gpu_index is None:
                if self._gpu_resources is None:
                    self._gpu_resources = faiss.StandardGpuResources()
                self._gpu_index = faiss.index_cpu_to_gpu(self._gpu_resources, self.config.gpu_device, self.index)
            return self._gpu_index.search(queries, k, params=params)

    # -- files ---------------------------------------------------------------------------------------------------
    def indexes(self) -> dict[str, faiss.Index]:
        """The FAISS indexes to persist, by file name (none before training)."""
        named = {"vectors.faiss": self.index, "rescore.faiss": self.rescorer}
        return {name: index for name, index in named.items() if index is not None}

    @classmethod
    def read(cls, dim: int, config: GalleryConfig, paths: dict[str, Path]) -> VectorStore:
        """A store from files written for :meth:`indexes`; CorruptGalleryError naming a file FAISS cannot use."""
        store = cls(dim, config)
        for name, attribute in (("vectors.faiss", "index"), ("rescore.faiss", "rescorer")):
            if name in paths:
                try:
                    index = faiss.read_index(str(paths[name]))
                except RuntimeError as error:
                    raise CorruptGalleryError(f"{paths[name]} is not a readable FAISS index: {error}") from error
                if index.d != dim:
                    raise CorruptGalleryError(f"{paths[name]} holds {index.d}-d vectors but the manifest says {dim}")
                setattr(store, attribute, index)
        return store
