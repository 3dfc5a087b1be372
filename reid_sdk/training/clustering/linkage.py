"""The cluster distances D(A, B): IMD/CPD (paper eq. 4-6) and the baselines behind the same interface."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch

LINKAGES = ("imd_cpd", "imd", "min", "max", "average", "buc")


@dataclass(frozen=True)
class PairStatistics:
    """Per-cluster-pair reductions of the sample distances d(a, b), a in A, b in B (rows A, columns B)."""

    min_distance: torch.Tensor | None = None
    max_distance: torch.Tensor | None = None
    sum_distance: torch.Tensor | None = None


@dataclass(frozen=True)
class ClusterSide:
    """What the formulas need of the clusters along one side of a block: sizes and, for imd_cpd, CPD."""

    sizes: torch.Tensor
    compactness: torch.Tensor | None = None


@dataclass(frozen=True)
class Linkage:
    """A validated cluster distance: ``name`` in :data:`LINKAGES`, ``lam`` (CPD weight), ``lam_buc`` (size weight).

    - ``imd_cpd``: (min d + max d) / 2 + lam * (CPD(A) + CPD(B))   (the paper's D, eq. 6)
    - ``imd``:     (min d + max d) / 2                             (eq. 4)
    - ``min``:     min d                                           (BUC without its regulariser)
    - ``buc``:     (min d)^2 + lam_buc * (|A| + |B|)                (as BUC's code: squared distance + diversity)
    - ``max``:     max d;  ``average``: mean of d over A x B
    """

    name: str = "imd_cpd"
    lam: float = 0.3
    lam_buc: float = 0.005

    def __post_init__(self) -> None:
        if self.name not in LINKAGES:
            raise ValueError(f"unknown linkage {self.name!r}; expected one of {', '.join(LINKAGES)}")
        for field, value in (("lam", self.lam), ("lam_buc", self.lam_buc)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{field} must be a finite number >= 0, got {value!r}")

    @property
    def uses_min(self) -> bool:
        return self.name in ("imd_cpd", "imd", "min", "buc")

    @property
    def uses_max(self) -> bool:
        return self.name in ("imd_cpd", "imd", "max")

    @property
    def uses_sum(self) -> bool:
        return self.name == "average"

    @property
    def uses_compactness(self) -> bool:
        return self.name == "imd_cpd"

    def combine(self, stats: PairStatistics, rows: ClusterSide, cols: ClusterSide) -> torch.Tensor:
        """D for every (row cluster, column cluster) pair of a block; the caller may overwrite it in place."""
        if self.name == "min":
            return stats.min_distance
        if self.name == "max":
            return stats.max_distance
        if self.name == "average":
            return stats.sum_distance / torch.outer(rows.sizes, cols.sizes)
        if self.name == "buc":
            return stats.min_distance.square() + self.lam_buc * (rows.sizes[:, None] + cols.sizes[None, :])
        imd = (stats.min_distance + stats.max_distance) * 0.5
        if self.name == "imd":
            return imd
        return imd.add_(self.lam * (rows.compactness[:, None] + cols.compactness[None, :]))
