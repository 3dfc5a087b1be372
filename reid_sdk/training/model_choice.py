"""Which stage's model ``best.pt`` keeps (Algorithm 1, step 7), with or without labels.

``map``: the stage with the highest mAP on a labelled query / gallery split. ``label_free``: a fit test of
the pseudo-labels by the model trained on them, which never reads an identity. The score of a stage is the
silhouette of its model's features under the labels it learnt from: s(i) = (b - a) / max(a, b) compares a
sample's mean distance to its own cluster (a) with its mean distance to the nearest other cluster (b),
singletons 0. Labels that group one person's crops are labels a network can learn, and it pulls them into
tight, separate clusters; labels that join different people cannot be fitted in a few epochs, and the score
collapses. Merging across cameras loosens clusters too, and those merges are what teach re-identification:
on the synthetic sets (``benchmarks/label_free_selection.py``) the stage a plain arg-max picks was up to 0.7
mAP points below the last one. So the rule keeps the newest stage whose score is at least
:data:`FIT_FRACTION` of the best so far, and steps back only when the fit collapses. Cost: one
(rows x N) distance pass over a fixed-size row sample, O(rows x N x d), a fraction of one merge stage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from reid_sdk.training.config import ConfigError

#: The newest stage whose label-free score is at least this fraction of the best so far is kept.
FIT_FRACTION = 0.25
#: Rows of the silhouette sample (every row when N is smaller): bounds the cost on large sets.
SILHOUETTE_ROWS = 4096
_BLOCK_ELEMENTS = 1 << 24  # (rows x N) distances held at once


@torch.no_grad()
def silhouette(features: torch.Tensor, labels: torch.Tensor, max_rows: int = SILHOUETTE_ROWS,
               seed: int = 0) -> float:
    """Mean silhouette of L2-normalised ``features`` (N, d) under ``labels`` 0..C-1 (Euclidean distance).

    Rows are a seeded random sample of ``max_rows`` samples when N is larger; distances to clusters always
    use every sample. Returns 0 when there is one cluster or every sample is its own cluster.
    """
    if features.dim() != 2 or labels.shape != (features.shape[0],):
        raise ValueError(f"need (N, d) features and N labels, got {tuple(features.shape)} and {tuple(labels.shape)}")
    features = features.float()
    labels = labels.to(features.device, torch.long)
    count = features.shape[0]
    num_clusters = int(labels.max()) + 1
    if num_clusters in (1, count):
        return 0.0
    sizes = torch.bincount(labels, minlength=num_clusters).to(features.dtype)
    if count > max_rows:
        rows = torch.randperm(count, generator=torch.Generator().manual_seed(seed))[:max_rows].to(features.device)
    else:
        rows = torch.arange(count, device=features.device)
    block = max(1, _BLOCK_ELEMENTS // max(count, num_clusters))
    total = 0.0
    for start in range(0, len(rows), block):
        chosen = rows[start : start + block]
        distances = (2.0 - 2.0 * features[chosen] @ features.T).clamp_(min=0.0).sqrt_()
        positions = torch.arange(len(chosen), device=features.device)
        distances[positions, chosen] = 0.0  # exactly: rounding would leave sqrt(~1e-7) on the diagonal
        sums = torch.zeros(len(chosen), num_clusters, dtype=features.dtype, device=features.device)
        sums.index_add_(1, labels, distances)
        own = labels[chosen]
        own_size = sizes[own]
        within = sums[positions, own] / (own_size - 1).clamp(min=1)
        means = sums / sizes
        means[positions, own] = float("inf")
        nearest = means.min(dim=1).values
        score = (nearest - within) / torch.maximum(nearest, within).clamp(min=1e-12)
        total += float(torch.where(own_size > 1, score, torch.zeros_like(score)).sum())
    return total / len(rows)


@dataclass(frozen=True)
class Selection:
    """How ``best.pt`` is chosen: the metrics row key, a sentence saying why, and for the label-free rule the
    fraction of the best score the newest stage must keep (``None``: the highest score, the first on ties)."""

    metric: str
    reason: str
    keep_fraction: float | None = None

    def choose(self, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """The chosen row of ``rows`` (stage order). Adding a row only ever moves the choice to that row."""
        if not rows:
            raise ValueError("no stage to choose from")
        best = max(rows, key=lambda row: row[self.metric])  # max() keeps the first of equal rows
        if self.keep_fraction is None:
            return best
        peak = best[self.metric]
        floor = peak - (1.0 - self.keep_fraction) * abs(peak)
        return next(row for row in reversed(rows) if row[self.metric] >= floor)


def resolve_selection(select_by: str, has_eval_split: bool) -> Selection:
    """The rule for ``train.select_by`` (auto, map, label_free); ConfigError when map has no split to use."""
    if select_by == "map" and not has_eval_split:
        raise ConfigError("train.select_by=map needs a labelled query / gallery split: give data with one, "
                         "--eval-data ROOT, or use select_by=label_free")
    if select_by == "map" or (select_by == "auto" and has_eval_split):
        return Selection("mAP", "highest mAP on the query / gallery split")
    return Selection("label_free_score", f"the newest stage whose model still fits the pseudo-labels it learnt "
                                         f"(silhouette at least {FIT_FRACTION:g} of the best; label-free: no "
                                         f"identity is read)", keep_fraction=FIT_FRACTION)
