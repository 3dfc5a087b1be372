"""Which stage's model ``best.pt`` keeps (Algorithm 1, step 7), with or without labels.

``map``: the stage with the highest mAP on a labelled query / gallery split. ``label_free`` never reads an
identity. It scores the stage model's L2-normalised features on the training set by *chance-corrected
neighbourhood agreement*.

Agreement ``A(x)``: for a sample ``i`` and each of its ``k`` nearest *partners* ``j`` (cosine), the share of
``i``'s ``k`` nearest neighbours N(i) that are also in N(j), averaged over the partners and over at most
:data:`SAMPLE_ROWS` seeded rows ``i``; with cameras known (Market / Duke / MARS names, site videos) the partners
are the ``k`` nearest samples *from other cameras*, because re-identification is matching across cameras. A
person's crops share their nearest neighbours, so identity features agree; random ones do not. Ties are broken
so that duplicates cannot agree by construction: similarities are compared at :data:`TIE_RESOLUTION`, and
equal ones are ordered per row by a seeded hash ``(a_i * j + b_i) mod P`` of the candidate ``j`` (``a_i``, ``b_i``
drawn per sample): within a group of identical crops each crop's neighbours are a pseudo-random draw from the
group, so two of them share about ``k`` / (group size) by chance, never all of them by construction.

Chance: agreement also rises with nothing but geometry. Neighbour lists overlap on any low-dimensional smooth
feature (one scalar such as brightness scores higher than identities), so the score subtracts what features of
the same shape and no structure get: the agreement ``A0`` of the *Gaussian null*, N samples drawn from the
Gaussian with the features' mean and covariance (``mean + G @ C^(1/2)``, ``G`` a seeded (N, d) standard normal
draw, ``C`` the features' covariance with divisor N, ``C^(1/2)`` its symmetric square root) with the same cameras,
and reports Cohen's kappa ``(A - A0) / (1 - A0)``: 1 for perfect agreement, 0 for what the features' spectrum
alone gives, negative below it. Low-rank nuisance features and identities squeezed into two dimensions score
about 0; features collapsed onto a few points score below 0.

``label_free_score``: without cameras the kappa of the features; with cameras the mean of the kappas of the
features and of the camera-standardised features (:func:`~reid_sdk.training.camera_centering.center_per_camera`:
each camera's mean removed, re-normalised). The raw term ranks features that encode the camera lowest (a
sample's neighbourhood lies in its camera and its partner's in another, so they share nothing); the
standardised term keeps identity features that carry a camera offset from being scored as chance. ``best.pt`` is
the stage with the highest score (the first on ties).

Diagnostics in the metrics rows: ``neighbour_agreement`` (without cameras) or ``cross_camera_agreement`` (with
them): the uncorrected ``A`` of the features, the score before the chance correction; ``cross_camera_share``
(the share of the nearest neighbours from other cameras, which rewards camera invariance, so random features
beat good ones) and the silhouettes of the features under the labels they learnt from and their merge (which
reward fitting camera-split early labels). Cost: per agreement one (rows x N) similarity pass over at most
:data:`SAMPLE_ROWS` rows and one over their partners that are not rows themselves (four agreements with cameras,
two without); per null one (d x d) covariance, its eigendecomposition and an (N x d) @ (d x d) product. On one
CPU thread at N = 12,936, d = 2048 that is about 44 s, several merge stages (benchmarks/label_free_audit.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from reid_sdk.training.camera_centering import center_per_camera
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


#: Cosine similarities that agree to this resolution are ties (broken per row by a seeded hash, never by index).
TIE_RESOLUTION = 1e-6
_HASH_PRIME = 2**31 - 1  # tie-break hash modulus (a Mersenne prime above any sample count)


def tie_break_hash(count: int, seed: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample ``(a, b)`` of the tie-break hash ``(a_i * j + b_i) mod P``: ``a`` in [1, P), ``b`` in [0, P),
    drawn by ``torch.randint`` from a generator seeded with ``seed`` (``a`` first). For each row the hash is a
    bijection of the candidates, and different rows order them differently, so tied duplicates are no more
    likely to share neighbours than random samples."""
    generator = torch.Generator().manual_seed(seed)
    multipliers = torch.randint(1, _HASH_PRIME, (count,), generator=generator)
    offsets = torch.randint(0, _HASH_PRIME, (count,), generator=generator)
    return multipliers.to(device), offsets.to(device)


@torch.no_grad()
def nearest_neighbours(features: torch.Tensor, rows: torch.Tensor, neighbours: int,
                       cameras: torch.Tensor | None = None, seed: int = 0) -> torch.Tensor:
    """(len(rows), neighbours) indices of each row's nearest other samples (dot product: cosine for L2-normalised
    ``features``, the similarities rounded to :data:`TIE_RESOLUTION`, ties at the last place ordered per row by
    :func:`tie_break_hash`; the order within the list is unspecified); with ``cameras``, only samples from another
    camera than the row's. Blocked: (block x N) similarities at a time."""
    hashes = tie_break_hash(features.shape[0], seed, features.device)
    return torch.cat([_top(similarity, chosen, neighbours, hashes)
                      for chosen, similarity in _rounded_similarities(features, rows, cameras)])


def _rounded_similarities(features: torch.Tensor, rows: torch.Tensor,
                          cameras: torch.Tensor | None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(chosen rows, their (block x N) similarities in units of :data:`TIE_RESOLUTION`, rounded) block by block;
    -inf for the row itself and, with ``cameras``, for the row's own camera."""
    count = features.shape[0]
    block = max(1, _BLOCK_ELEMENTS // count)
    for start in range(0, len(rows), block):
        chosen = rows[start : start + block]
        similarity = torch.round(features[chosen] @ features.T / TIE_RESOLUTION)  # exact integers in float32
        similarity[torch.arange(len(chosen), device=features.device), chosen] = -float("inf")  # not itself
        if cameras is not None:
            similarity.masked_fill_(cameras[chosen, None] == cameras[None, :], -float("inf"))
        yield chosen, similarity


def _top(similarity: torch.Tensor, chosen: torch.Tensor, neighbours: int,
         hashes: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """The ``neighbours`` most similar columns of each row of rounded ``similarity``. Only a tie across the last
    place changes which samples are in the list; those rows are redone with the tie-break hash as a second key."""
    values, indices = similarity.topk(neighbours + 1, dim=1)
    indices = indices[:, :neighbours]
    tied = (values[:, neighbours - 1] == values[:, neighbours]).nonzero().flatten()
    if len(tied):
        multipliers, offsets = hashes
        candidates = torch.arange(similarity.shape[1], device=similarity.device)
        owners = chosen[tied, None]
        rounded = similarity[tied].nan_to_num(neginf=-2.0 / TIE_RESOLUTION).long()  # excluded: below any cosine
        keys = rounded * _HASH_PRIME + (multipliers[owners] * candidates + offsets[owners]) % _HASH_PRIME
        indices[tied] = keys.topk(neighbours, dim=1).indices
    return indices


@torch.no_grad()
def neighbourhood_agreement(features: torch.Tensor, cameras: torch.Tensor | None = None,
                            neighbours: int = NEIGHBOURS, max_rows: int = SAMPLE_ROWS, seed: int = 0) -> float:
    """The agreement ``A``: mean over sampled rows ``i`` and their ``neighbours`` partners ``j`` of
    |N(i) & N(j)| / neighbours, where N(x) are x's nearest other samples (cosine, after L2 normalisation) and the
    partners are i's nearest samples, or with ``cameras`` its nearest samples from other cameras (see the module
    docstring). In [0, 1]; no identity is read. One pass gives the rows' lists and partners, a second the lists of
    the partners that are not sampled rows."""
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
    features = F.normalize(features.float(), dim=1)
    hashes = tie_break_hash(count, seed, features.device)
    rows = _sample_rows(count, max_rows, seed, features.device)
    lists = torch.full((count, neighbours), -1, dtype=torch.long, device=features.device)  # N(x), -1: not yet
    partners = []
    for chosen, similarity in _rounded_similarities(features, rows, None):
        lists[chosen] = _top(similarity, chosen, neighbours, hashes)
        if cameras is not None:
            similarity.masked_fill_(cameras[chosen, None] == cameras[None, :], -float("inf"))
            partners.append(_top(similarity, chosen, neighbours, hashes))
    partners = torch.cat(partners) if cameras is not None else lists[rows]  # (R, k)
    missing = torch.unique(partners)
    missing = missing[lists[missing, 0] < 0]
    if len(missing):
        lists[missing] = nearest_neighbours(features, missing, neighbours, seed=seed)
    own, theirs = lists[rows], lists[partners]  # (R, k): N(i); (R, k, k): N(j) per partner
    shared = (theirs[..., :, None] == own[:, None, None, :]).any(dim=-1).sum(dim=-1)  # (R, k)
    return float(shared.float().mean()) / neighbours


@torch.no_grad()
def gaussian_null(features: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """N samples of the Gaussian with the mean and covariance (divisor N) of the L2-normalised ``features``:
    ``mean + G @ C^(1/2)`` with ``G`` = ``torch.randn(N, d)`` from a generator seeded with ``seed`` and ``C^(1/2)``
    the symmetric square root (float32). Features of the same shape with no neighbourhood structure: the chance
    level."""
    unit = F.normalize(features.float(), dim=1)
    mean = unit.mean(dim=0)
    centred = unit - mean
    eigenvalues, eigenvectors = torch.linalg.eigh(centred.T @ centred / len(unit))
    root = (eigenvectors * eigenvalues.clamp(min=0.0).sqrt()) @ eigenvectors.T
    draw = torch.randn(unit.shape, generator=torch.Generator().manual_seed(seed))
    return mean + draw.to(unit.device) @ root


def chance_corrected_agreement(features: torch.Tensor, cameras: torch.Tensor | None = None,
                               seed: int = 0) -> tuple[float, float]:
    """Cohen's kappa ``(A - A0) / (1 - A0)`` of the agreement ``A`` of ``features`` against the agreement ``A0``
    of their :func:`gaussian_null` (same cameras), and ``A``. At most 1; 0 is what the spectrum alone gives."""
    agreement = neighbourhood_agreement(features, cameras, seed=seed)
    chance = neighbourhood_agreement(gaussian_null(features, seed), cameras, seed=seed)
    return (agreement - chance) / max(1.0 - chance, 1e-12), agreement


def label_free_scores(features: torch.Tensor, learnt_from: torch.Tensor, merged: torch.Tensor,
                      cameras: torch.Tensor | None, seed: int = 0) -> dict[str, float]:
    """A stage's metrics row entries: ``label_free_score`` (what the label-free choice ranks stages by: without
    ``cameras`` the chance-corrected agreement of the features; with them the mean of the chance-corrected
    cross-camera agreements of the features and of the camera-standardised features) and diagnostics: the
    uncorrected agreement of the features (``neighbour_agreement`` without cameras, ``cross_camera_agreement`` with
    them), ``cross_camera_share`` (with cameras),
    ``fit_silhouette`` (the features under the labels ``learnt_from``) and ``merge_silhouette`` (under ``merged``)."""
    scores = {"fit_silhouette": silhouette(features, learnt_from, seed=seed),
              "merge_silhouette": silhouette(features, merged, seed=seed)}
    if cameras is None:
        scores["label_free_score"], scores["neighbour_agreement"] = chance_corrected_agreement(features, seed=seed)
        return scores
    raw, scores["cross_camera_agreement"] = chance_corrected_agreement(features, cameras, seed=seed)
    standardised = chance_corrected_agreement(center_per_camera(features, cameras), cameras, seed=seed)[0]
    scores["label_free_score"] = 0.5 * (raw + standardised)
    scores["cross_camera_share"] = cross_camera_share(features, cameras, seed=seed)
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


def scores_line(results: Sequence[StageResult], metric: str, step: str = "stage") -> str:
    """Every stage's (epoch's) value of ``metric``, the chosen one starred: what the commands print at the end."""
    return f"{metric} per {step}: " + ", ".join(
        f"{result.stage}: {result.score(metric):.3f}{'*' if result.best else ''}" for result in results)


def model_choice_rule(select_by: str, has_eval_split: bool, cameras_known: bool = False) -> ModelChoiceRule:
    """The rule for ``train.select_by`` (auto, map, label_free); ConfigError when map has no split to use.
    The label-free rule ranks stages by ``label_free_score``: the chance-corrected agreement with the nearest
    crops from other cameras when ``cameras_known``, else with the nearest crops (see the module docstring)."""
    if select_by == "map" and not has_eval_split:
        raise ConfigError("train.select_by=map needs a labelled query / gallery split: give data with one, "
                         "--eval-data ROOT, or use select_by=label_free")
    if select_by == "map" or (select_by == "auto" and has_eval_split):
        return ModelChoiceRule("mAP", "highest mAP on the query / gallery split")
    partners = "nearest crops from other cameras" if cameras_known else "nearest crops"
    return ModelChoiceRule("label_free_score", f"highest chance-corrected neighbourhood agreement with the "
                                               f"{NEIGHBOURS} {partners} (label-free: no identity is read)")
