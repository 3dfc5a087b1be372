"""Which stage's model ``best.pt`` keeps (Algorithm 1, step 7), with or without labels.

``map``: the stage with the highest mAP on a labelled query / gallery split. ``label_free`` never reads an
identity; its score depends on what the data says about cameras:

- Cameras known (Market / Duke / MARS names): the cross-camera share, the fraction of each sample's
  :data:`NEIGHBOURS` nearest neighbours (by the stage model's features) that another camera saw.
  Re-identification is matching across cameras; a model that learns camera cues (light, background,
  blur) instead of people pulls each camera's crops together and the share falls. ``best.pt`` is the
  newest stage whose share is at least :data:`CAMERA_FRACTION` of the best so far.
- Cameras unknown (plain crop folders): the fit, the silhouette of the stage model's features under the
  labels it learnt from. Labels that group one person's crops can be learnt and are pulled into tight,
  separate clusters; labels that join different people cannot, and the fit collapses. ``best.pt`` is the
  newest stage whose fit is at least :data:`FIT_FRACTION` of the best so far.

Both rules keep the newest stage until the score drops well below its best: cross-camera merges are what
teach re-identification, and the best stage by a plain arg-max was up to 0.7 mAP points below the last one on
the synthetic sets (``benchmarks/label_free_selection.py``). Cost: each score is one (rows x N) distance pass
over at most :data:`SAMPLE_ROWS` sampled rows, a fraction of one merge stage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from reid_sdk.training.config import ConfigError
from reid_sdk.training.stage_result import StageResult

#: Cameras unknown: the newest stage whose fit is at least this fraction of the best so far is kept.
FIT_FRACTION = 0.25
#: Cameras known: the newest stage whose cross-camera share is at least this fraction of the best is kept.
CAMERA_FRACTION = 0.75
#: Nearest neighbours per sample in the cross-camera share.
NEIGHBOURS = 10
#: Rows sampled for either score (every row when N is smaller): bounds the cost on large sets.
SAMPLE_ROWS = 4096
_BLOCK_ELEMENTS = 1 << 24  # (rows x N) distances held at once


@torch.no_grad()
def silhouette(features: torch.Tensor, labels: torch.Tensor, max_rows: int = SAMPLE_ROWS,
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
    rows = _sample_rows(count, max_rows, seed, features.device)
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


@torch.no_grad()
def cross_camera_share(features: torch.Tensor, cameras: torch.Tensor, neighbours: int = NEIGHBOURS,
                       max_rows: int = SAMPLE_ROWS, seed: int = 0) -> float:
    """Mean fraction of a sample's ``neighbours`` nearest other samples (cosine, L2-normalised ``features``)
    whose camera differs from its own; rows are sampled as in :func:`silhouette`."""
    if features.dim() != 2 or cameras.shape != (features.shape[0],):
        raise ValueError(f"need (N, d) features and N cameras, got {tuple(features.shape)} and {tuple(cameras.shape)}")
    count = features.shape[0]
    if count < 2:
        raise ValueError("the cross-camera share needs at least 2 samples")
    features = features.float()
    cameras = cameras.to(features.device)
    neighbours = min(neighbours, count - 1)
    rows = _sample_rows(count, max_rows, seed, features.device)
    block = max(1, _BLOCK_ELEMENTS // count)
    other = 0
    for start in range(0, len(rows), block):
        chosen = rows[start : start + block]
        similarity = features[chosen] @ features.T
        similarity[torch.arange(len(chosen), device=features.device), chosen] = -float("inf")  # not itself
        nearest = similarity.topk(neighbours, dim=1).indices
        other += int((cameras[nearest] != cameras[chosen, None]).sum())
    return other / (len(rows) * neighbours)


def label_free_scores(features: torch.Tensor, learnt_from: torch.Tensor, merged: torch.Tensor,
                      cameras: torch.Tensor | None, seed: int = 0) -> dict[str, float]:
    """A stage's metrics row entries: ``fit_silhouette`` (the model's features under the labels it learnt
    from), ``merge_silhouette`` (under this stage's merge, a diagnostic), ``cross_camera_share`` when
    ``cameras`` are known, and ``label_free_score``: the share when cameras are known, the fit otherwise."""
    scores = {"fit_silhouette": silhouette(features, learnt_from, seed=seed),
              "merge_silhouette": silhouette(features, merged, seed=seed)}
    if cameras is not None:
        scores["cross_camera_share"] = cross_camera_share(features, cameras, seed=seed)
    scores["label_free_score"] = scores["cross_camera_share" if cameras is not None else "fit_silhouette"]
    return scores


def _sample_rows(count: int, max_rows: int, seed: int, device: torch.device) -> torch.Tensor:
    """A seeded random sample of ``max_rows`` of ``count`` row indices, or all of them when there are fewer."""
    if count <= max_rows:
        return torch.arange(count, device=device)
    return torch.randperm(count, generator=torch.Generator().manual_seed(seed))[:max_rows].to(device)


@dataclass(frozen=True)
class ModelChoiceRule:
    """How ``best.pt`` is chosen: the metrics row key, a sentence saying why, and for the label-free rule the
    fraction of the best score the newest stage must keep (``None``: the highest score, the first on ties)."""

    metric: str
    reason: str
    keep_fraction: float | None = None

    def choose(self, results: Sequence[StageResult]) -> StageResult:
        """The chosen stage of ``results`` (stage order). A new stage only ever moves the choice to itself."""
        if not results:
            raise ValueError("no stage to choose from")
        best = max(results, key=lambda result: result.score(self.metric))  # max() keeps the first of equals
        if self.keep_fraction is None:
            return best
        peak = best.score(self.metric)
        floor = peak - (1.0 - self.keep_fraction) * abs(peak)
        return next(result for result in reversed(results) if result.score(self.metric) >= floor)


def model_choice_rule(select_by: str, has_eval_split: bool, cameras_known: bool = False) -> ModelChoiceRule:
    """The rule for ``train.select_by`` (auto, map, label_free); ConfigError when map has no split to use.
    The label-free rule scores the cross-camera share when ``cameras_known``, the fit otherwise."""
    if select_by == "map" and not has_eval_split:
        raise ConfigError("train.select_by=map needs a labelled query / gallery split: give data with one, "
                         "--eval-data ROOT, or use select_by=label_free")
    if select_by == "map" or (select_by == "auto" and has_eval_split):
        return ModelChoiceRule("mAP", "highest mAP on the query / gallery split")
    if cameras_known:
        return ModelChoiceRule("label_free_score", f"the newest stage whose nearest neighbours still cross cameras "
                                             f"(share of {NEIGHBOURS} nearest from other cameras at least "
                                             f"{CAMERA_FRACTION:g} of the best; label-free: no identity is read)",
                         keep_fraction=CAMERA_FRACTION)
    return ModelChoiceRule("label_free_score", f"the newest stage whose model still fits the pseudo-labels it learnt "
                                         f"(silhouette at least {FIT_FRACTION:g} of the best; label-free: no "
                                         f"identity is read)", keep_fraction=FIT_FRACTION)
