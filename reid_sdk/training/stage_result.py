"""One stage's results: the typed row the trainer, the model choice, the plot and metrics.jsonl share."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass
class StageResult:
    """What one stage of Algorithm 1 did and how good its model is.

    Scores that need something a run may lack are None there: the retrieval metrics need a labelled
    query / gallery split, the pseudo-label quality needs the training identities, and the cross-camera scores
    need cameras. ``best`` marks the stage whose model is ``best.pt`` (moves as later stages finish).
    """

    stage: int
    clusters_before: int
    clusters_after: int
    loss: float
    label_free_score: float
    fit_silhouette: float
    merge_silhouette: float
    cross_camera_share: float | None = None
    neighbour_agreement: float | None = None
    cross_camera_agreement: float | None = None
    rank1: float | None = None
    rank5: float | None = None
    rank10: float | None = None
    mAP: float | None = None
    mINP: float | None = None
    mAP_camstd: float | None = None  # mAP / rank-1 with each camera's mean feature removed at search time
    rank1_camstd: float | None = None
    pairwise_precision: float | None = None
    pairwise_recall: float | None = None
    pairwise_f: float | None = None
    nmi: float | None = None
    outliers: int | None = None  # the re-clustering schedule: samples its clustering left out of the next epoch
    train_seconds: float = 0.0
    extract_seconds: float = 0.0
    merge_seconds: float = 0.0
    eval_seconds: float = 0.0
    train_samples_per_s: float = 0.0
    best: bool = False

    def score(self, metric: str) -> float:
        """The value of ``metric`` (a field name); ValueError when this run did not measure it."""
        value = getattr(self, metric, None)
        if value is None:
            raise ValueError(f"stage {self.stage} has no {metric!r} score")
        return float(value)

    def as_dict(self) -> dict[str, Any]:
        """The metrics.jsonl row: every measured field (None fields left out)."""
        return {key: value for key, value in dataclasses.asdict(self).items() if value is not None}

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> StageResult:
        """A result from a metrics.jsonl row or a stage checkpoint; ValueError naming unknown keys."""
        fields = dataclasses.fields(cls)
        unknown = sorted(set(row) - {field.name for field in fields})
        missing = [field.name for field in fields
                   if field.default is dataclasses.MISSING and field.name not in row]
        if unknown or missing:
            raise ValueError(f"stage row has unknown key(s) {', '.join(unknown) or 'none'} and lacks "
                             f"{', '.join(missing) or 'none'}")
        return cls(**row)
