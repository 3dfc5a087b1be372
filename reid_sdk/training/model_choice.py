"""Which stage's model ``best.pt`` keeps (Algorithm 1, step 7), with or without labels.

``map``: the stage with the highest mAP on a labelled query / gallery split. ``label_free`` never reads an
identity. It scores the stage model's features on the training set by *neighbourhood agreement*: for a sample
``i`` and each of its ``k`` nearest *partners* ``j``, the share of ``i``'s ``k`` nearest neighbours that are also
among ``j``'s. Features that hold identities give neighbourhoods that agree (a person's crops share their nearest
neighbours); random features do not; features that collapse many people into one tight group dilute every
neighbourhood over the group and agree less. With cameras known (Market / Duke / MARS names, site videos), the
partners are the ``k`` nearest samples *from other cameras*: re-identification is matching across cameras, and
features that encode the camera (light, background, viewpoint) give each sample a neighbourhood in its own
camera and its partners neighbourhoods in theirs, which agree on nothing: camera features score lowest, below
random ones. ``best.pt`` is the stage with the highest score (the first on ties).

The earlier rules scored the cross-camera share of the nearest neighbours (which rewards camera invariance, so
random features beat good ones) and the silhouette of the features under the labels they learnt (which rewards
fitting camera-split early labels); both stay in the metrics rows as diagnostics. Cost: two (rows x N)
nearest-neighbour passes over at most :data:`SAMPLE_ROWS` sampled rows and their partners, a fraction of one
merge stage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from reid_sdk.training.config import ConfigError
from reid_sdk.training.stage_result import StageResult

#: Nearest neighbours per sample (and partners per sample) in the neighbourhood agreement.
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
    whose camera differs from its own; rows are sampled as in :func:`silhouette`.
    A diagnostic: it rewards camera invariance, not identity (random features score high)."""
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


@torch.no_grad()
def nearest_neighbours(features: torch.Tensor, rows: torch.Tensor, neighbours: int,
                       cameras: torch.Tensor | None = None) -> torch.Tensor:
    """(len(rows), neighbours) indices of each row's nearest other samples (cosine, most similar first); with
    ``cameras``, only samples from another camera than the row's. Blocked: (block x N) similarities at a time."""
    count = features.shape[0]
    block = max(1, _BLOCK_ELEMENTS // count)
    found = []
    for start in range(0, len(rows), block):
        chosen = rows[start : start + block]
        similarity = features[chosen] @ features.T
        similarity[torch.arange(len(chosen), device=features.device), chosen] = -float("inf")  # not itself
        if cameras is not None:
            similarity.masked_fill_(cameras[chosen, None] == cameras[None, :], -float("inf"))
        found.append(similarity.topk(neighbours, dim=1).indices)
    return torch.cat(found)


@torch.no_grad()
def neighbourhood_agreement(features: torch.Tensor, cameras: torch.Tensor | None = None,
                            neighbours: int = NEIGHBOURS, max_rows: int = SAMPLE_ROWS, seed: int = 0) -> float:
    """Mean over sampled rows ``i`` and their ``neighbours`` partners ``j`` of |N(i) & N(j)| / neighbours, where
    N(x) are x's nearest other samples (cosine) and the partners are i's nearest samples, or with ``cameras`` its
    nearest samples from other cameras (see the module docstring). In [0, 1]; no identity is read."""
    if features.dim() != 2:
        raise ValueError(f"need (N, d) features, got shape {tuple(features.shape)}")
    count = features.shape[0]
    if cameras is not None:
        if cameras.shape != (count,):
            raise ValueError(f"need N = {count} cameras, got shape {tuple(cameras.shape)}")
        cameras = cameras.to(features.device)
        per_camera = torch.unique(cameras, return_counts=True)[1]
        if len(per_camera) < 2:
            raise ValueError("cross-camera agreement needs samples from at least 2 cameras")
        partners_available = count - int(per_camera.max())
    else:
        partners_available = count - 1
    neighbours = min(neighbours, count - 1, partners_available)
    if neighbours < 1:
        raise ValueError("neighbourhood agreement needs at least 2 samples")
    features = features.float()
    rows = _sample_rows(count, max_rows, seed, features.device)
    partners = nearest_neighbours(features, rows, neighbours, cameras)
    needed, position = torch.unique(torch.cat([rows, partners.flatten()]), return_inverse=True)
    near = nearest_neighbours(features, needed, neighbours)
    own = near[position[: len(rows)]]  # (R, k): N(i)
    theirs = near[position[len(rows):]].view(len(rows), neighbours, neighbours)  # (R, k, k): N(j) per partner
    shared = (theirs[..., :, None] == own[:, None, None, :]).any(dim=-1).sum(dim=-1)  # (R, k)
    return float(shared.float().mean()) / neighbours


def label_free_scores(features: torch.Tensor, learnt_from: torch.Tensor, merged: torch.Tensor,
                      cameras: torch.Tensor | None, seed: int = 0) -> dict[str, float]:
    """A stage's metrics row entries: ``label_free_score`` (what the label-free choice ranks stages by: the
    cross-camera agreement when ``cameras`` are known, else the neighbourhood agreement) and diagnostics:
    ``neighbour_agreement``, ``cross_camera_agreement`` and ``cross_camera_share`` (with cameras),
    ``fit_silhouette`` (the features under the labels ``learnt_from``) and ``merge_silhouette`` (under ``merged``)."""
    scores = {"neighbour_agreement": neighbourhood_agreement(features, seed=seed),
              "fit_silhouette": silhouette(features, learnt_from, seed=seed),
              "merge_silhouette": silhouette(features, merged, seed=seed)}
    if cameras is not None:
        scores["cross_camera_agreement"] = neighbourhood_agreement(features, cameras, seed=seed)
        scores["cross_camera_share"] = cross_camera_share(features, cameras, seed=seed)
    scores["label_free_score"] = scores["cross_camera_agreement" if cameras is not None else "neighbour_agreement"]
    return scores


def _sample_rows(count: int, max_rows: int, seed: int, device: torch.device) -> torch.Tensor:
    """A seeded random sample of ``max_rows`` of ``count`` row indices, or all of them when there are fewer."""
    if count <= max_rows:
        return torch.arange(count, device=device)
    return torch.randperm(count, generator=torch.Generator().manual_seed(seed))[:max_rows].to(device)


@dataclass(frozen=True)
class ModelChoiceRule:
    """How ``best.pt`` is chosen: the stage with the highest value of ``metric`` (a metrics row key), the first on
    ties, and a sentence saying why."""

    metric: str
    reason: str

    def choose(self, results: Sequence[StageResult]) -> StageResult:
        """The chosen stage of ``results`` (stage order). A new stage only ever moves the choice to itself."""
        if not results:
            raise ValueError("no stage to choose from")
        return max(results, key=lambda result: result.score(self.metric))  # max() keeps the first of equals


def model_choice_rule(select_by: str, has_eval_split: bool, cameras_known: bool = False) -> ModelChoiceRule:
    """The rule for ``train.select_by`` (auto, map, label_free); ConfigError when map has no split to use.
    The label-free rule ranks stages by the cross-camera agreement when ``cameras_known``, else by the
    neighbourhood agreement (see the module docstring)."""
    if select_by == "map" and not has_eval_split:
        raise ConfigError("train.select_by=map needs a labelled query / gallery split: give data with one, "
                         "--eval-data ROOT, or use select_by=label_free")
    if select_by == "map" or (select_by == "auto" and has_eval_split):
        return ModelChoiceRule("mAP", "highest mAP on the query / gallery split")
    partners = "nearest crops from other cameras" if cameras_known else "nearest crops"
    return ModelChoiceRule("label_free_score", f"highest neighbourhood agreement with the {NEIGHBOURS} {partners} "
                                               f"(label-free: no identity is read)")
