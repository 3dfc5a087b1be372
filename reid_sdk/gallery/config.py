"""GalleryConfig: the FAISS index type and its parameters, in one dataclass.

Defaults were chosen with ``benchmarks/gallery_search.py`` on clustered synthetic
features (see that script's JSON): they give recall@10 >= 0.95 against exact search.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from reid_sdk.gallery.camera_statistics import DEFAULT_SHRINKAGE, check_shrinkage

INDEX_TYPES = ("flat", "ivf", "hnsw", "ivfpq")
METRICS = ("cosine",)
DEVICES = ("auto", "cpu", "gpu")


@dataclass(frozen=True)
class GalleryConfig:
    """Index parameters. ``None`` means "derived from the data at training time"."""

    index: str = "flat"                 # the index type (Gallery's index_type), saved under this name
    nlist: int | None = None            # IVF cells; None: 2 * sqrt(N), capped so each cell gets min_points_per_centroid
    nprobe: int = 64                    # IVF cells visited per query
    hnsw_m: int = 32                    # HNSW graph degree
    ef_construction: int = 80           # HNSW build-time beam width
    ef_search: int = 64                 # HNSW query-time beam width
    pq_m: int | None = None             # PQ sub-quantizers; None: dim / 8
    pq_nbits: int = 8                   # bits per PQ code
    rerank_factor: int = 8              # ivfpq: candidates per result re-scored with 8-bit scalar-quantised vectors
    min_points_per_centroid: int = 39   # FAISS k-means' own minimum for a well-trained centroid
    tombstone_rebuild_fraction: float = 0.25  # hnsw: rebuild the graph when this share of it is removed entries
    device: str = "auto"                # "gpu" uses faiss-gpu for flat / ivf search; "auto" when a GPU is visible
    gpu_device: int = 0                 # which CUDA device holds the GPU copy of the index
    camera_standardise: bool | None = None  # None: searches are camera-standardised once an entry has a camera
    camera_shrinkage: float = DEFAULT_SHRINKAGE  # camera standardisation: a camera's mean counts this many
    #                                      features at the global mean (see reid_sdk.gallery.camera_statistics)

    def __post_init__(self) -> None:
        if self.index not in INDEX_TYPES:
            raise ValueError(f"the index type must be one of {INDEX_TYPES}, got {self.index!r}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {self.device!r}")
        if self.gpu_device < 0:
            raise ValueError(f"gpu_device must be >= 0, got {self.gpu_device}")
        for name in ("nprobe", "hnsw_m", "ef_construction", "ef_search", "rerank_factor", "min_points_per_centroid"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("nlist", "pq_m"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {value}")
        if not 1 <= self.pq_nbits <= 16:
            raise ValueError(f"pq_nbits must be in 1..16, got {self.pq_nbits}")
        check_shrinkage(self.camera_shrinkage)
        if self.camera_standardise not in (None, True, False):
            raise ValueError(f"camera_standardise must be True, False or None (on where entries have cameras), got "
                             f"{self.camera_standardise!r}")
        if not 0.0 < self.tombstone_rebuild_fraction <= 1.0:
            raise ValueError(f"tombstone_rebuild_fraction must be in (0, 1], got {self.tombstone_rebuild_fraction}")

    @property
    def trainable(self) -> bool:
        return self.index in ("ivf", "ivfpq")

    def resolved_nlist(self, n_train: int) -> int:
        """IVF cell count for a training set of ``n_train`` vectors."""
        if self.nlist is not None:
            return self.nlist
        return max(1, min(round(2 * math.sqrt(n_train)), n_train // self.min_points_per_centroid))

    def resolved_pq_m(self, dim: int) -> int:
        """PQ sub-quantizer count: the configured one (must divide ``dim``) or the largest divisor <= dim / 8."""
        if self.pq_m is not None:
            if dim % self.pq_m:
                raise ValueError(f"pq_m={self.pq_m} must divide the feature dimension {dim}")
            return self.pq_m
        return next(m for m in range(max(1, dim // 8), 0, -1) if dim % m == 0)

    def min_training_size(self, n_train: int) -> int:
        """How many vectors training needs: enough per IVF cell, and per PQ centroid for ivfpq."""
        needed = self.min_points_per_centroid * self.resolved_nlist(n_train)
        if self.index == "ivfpq":
            needed = max(needed, self.min_points_per_centroid * 2**self.pq_nbits)
        return needed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> GalleryConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})

    def with_search_params(self, **changes: Any) -> GalleryConfig:
        """A copy with new query-time parameters (nprobe, ef_search, rerank_factor, device, gpu_device,
        camera_standardise, camera_shrinkage)."""
        allowed = {"nprobe", "ef_search", "rerank_factor", "device", "gpu_device", "camera_standardise",
                   "camera_shrinkage"}
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(f"only {sorted(allowed)} can change after creation, got {sorted(unknown)}")
        return replace(self, **changes)
