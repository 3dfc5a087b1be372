"""Algorithm 1's merge schedule: m = round(p * N) merges per stage, stages while C > m (and C > a user's floor)."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass


@dataclass(frozen=True)
class MergeSchedule:
    """Merge schedule for ``num_samples`` samples (each its own cluster at first) and merge percent p.

    ``target_clusters`` is a floor: the stage that would take C below it merges only down to it, and the
    schedule ends there (the user's estimate of how many identities the data holds). ``rule="buc"`` counts
    as BUC's code does, for faithful baselines: m = floor(p * N) and at most int(1 / p) - 1 stages.
    """

    num_samples: int
    merge_percent: float = 0.05
    target_clusters: int | None = None
    rule: str = "paper"

    def __post_init__(self) -> None:
        if isinstance(self.num_samples, bool) or not isinstance(self.num_samples, numbers.Integral):
            raise ValueError(f"num_samples must be an integer, got {self.num_samples!r}")
        if isinstance(self.merge_percent, bool) or not isinstance(self.merge_percent, numbers.Real):
            raise ValueError(f"merge_percent must be a number, got {self.merge_percent!r}")
        if not 0 < self.merge_percent < 1:
            raise ValueError(f"merge_percent must be in (0, 1), got {self.merge_percent}")
        if self.rule not in ("paper", "buc"):
            raise ValueError(f"rule must be 'paper' or 'buc', got {self.rule!r}")
        if self.target_clusters is not None and not 1 <= self.target_clusters:
            raise ValueError(f"target_clusters must be >= 1, got {self.target_clusters}")
        if self.merges_per_stage < 1:
            raise ValueError(
                f"merge_percent * num_samples = {self.merge_percent * self.num_samples:g} rounds to no merges"
            )

    @property
    def merges_per_stage(self) -> int:
        """m = round(p * N), halves rounded up (BUC's rule: floor(p * N))."""
        if self.rule == "buc":
            return math.floor(self.merge_percent * self.num_samples)
        return math.floor(self.merge_percent * self.num_samples + 0.5)

    def stage_merges(self) -> list[int]:
        """Merges of each stage: m while C > m (Algorithm 1), fewer at the stage that reaches the floor."""
        m, floor = self.merges_per_stage, self.target_clusters or 0
        limit = int(1 / self.merge_percent) - 1 if self.rule == "buc" else None
        merges, clusters = [], self.num_samples
        while clusters > m and clusters > floor and (limit is None or len(merges) < limit):
            merges.append(min(m, clusters - floor))
            clusters -= merges[-1]
        return merges

    @property
    def num_stages(self) -> int:
        """How many times Algorithm 1 trains and merges."""
        return len(self.stage_merges())

    def cluster_counts(self) -> list[int]:
        """C before each stage, then after the last one: [N, N - m, ...]."""
        counts = [self.num_samples]
        for merges in self.stage_merges():
            counts.append(counts[-1] - merges)
        return counts
