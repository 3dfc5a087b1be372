"""Algorithm 1's merge schedule: m = round(p * N) merges per stage, stages while C > m."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass


@dataclass(frozen=True)
class MergeSchedule:
    """Merge schedule for ``num_samples`` samples (each its own cluster at first) and merge percent p."""

    num_samples: int
    merge_percent: float = 0.05

    def __post_init__(self) -> None:
        if isinstance(self.num_samples, bool) or not isinstance(self.num_samples, numbers.Integral):
            raise ValueError(f"num_samples must be an integer, got {self.num_samples!r}")
        if isinstance(self.merge_percent, bool) or not isinstance(self.merge_percent, numbers.Real):
            raise ValueError(f"merge_percent must be a number, got {self.merge_percent!r}")
        if not 0 < self.merge_percent < 1:
            raise ValueError(f"merge_percent must be in (0, 1), got {self.merge_percent}")
        if self.merges_per_stage < 1:
            raise ValueError(
                f"merge_percent * num_samples = {self.merge_percent * self.num_samples:g} rounds to no merges"
            )

    @property
    def merges_per_stage(self) -> int:
        """m = round(p * N), halves rounded up."""
        return math.floor(self.merge_percent * self.num_samples + 0.5)

    @property
    def num_stages(self) -> int:
        """How many times Algorithm 1 trains and merges: stages run while C > m, and each removes m clusters."""
        m = self.merges_per_stage
        return max(0, math.ceil((self.num_samples - m) / m))

    def cluster_counts(self) -> list[int]:
        """C before each stage, then after the last one: [N, N - m, ..., N - num_stages * m]."""
        m = self.merges_per_stage
        return [self.num_samples - stage * m for stage in range(self.num_stages + 1)]
