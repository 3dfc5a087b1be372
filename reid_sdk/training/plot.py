"""stages.png: mAP and rank-1 per clustering stage (like the paper's Fig. 5) above the number of clusters.

Stages are integers on the x axis; the untrained network's scores, when known, are horizontal lines; the stage
whose model was kept is marked with the criterion that chose it; clusters have their own panel; the legend sits
beside the plot, never over it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

from reid_sdk._utils.atomic_file import atomic_write

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
from matplotlib.ticker import MaxNLocator  # noqa: E402

_METRICS = (("mAP", "mAP", "tab:blue", "o"), ("rank1", "rank-1", "tab:orange", "s"))


def _baseline(rows: Sequence[dict[str, Any]], baseline: Mapping[str, float] | None) -> Mapping[str, float] | None:
    """The untrained scores: the argument, else a row flagged ``"baseline": true``."""
    if baseline is not None:
        return baseline
    return next((row for row in rows if row.get("baseline")), None)


def _chosen(stage_rows: Sequence[dict[str, Any]], chosen_stage: int | None,
            criterion: str | None) -> tuple[int | None, str]:
    """The kept stage (the argument, else the last row flagged ``best``) and what chose it."""
    if chosen_stage is None:
        flagged = [row for row in stage_rows if row.get("best")]
        if not flagged:
            return None, ""
        chosen_stage, criterion = flagged[-1]["stage"], criterion or flagged[-1].get("criterion")
    return chosen_stage, criterion or "kept as best.pt"


def stage_figure(rows: list[dict[str, Any]], title: str = "", baseline: Mapping[str, float] | None = None,
                 chosen_stage: int | None = None, criterion: str | None = None) -> plt.Figure:
    """The figure of :func:`plot_stages` (close it with ``plt.close``)."""
    stage_rows = [row for row in rows if not row.get("baseline")]
    stages = [row["stage"] for row in stage_rows]
    untrained = _baseline(rows, baseline)
    chosen, why = _chosen(stage_rows, chosen_stage, criterion)
    figure, (metric_axis, cluster_axis) = plt.subplots(2, 1, sharex=True, figsize=(8.0, 5.6), dpi=110,
                                                       gridspec_kw={"height_ratios": (2.2, 1.0)})
    for key, name, colour, marker in _METRICS:
        values = [row.get(key) for row in stage_rows]
        if any(v is not None for v in values):
            metric_axis.plot(stages, [100 * v if v is not None else float("nan") for v in values], marker=marker,
                             color=colour, label=name)
    for key, name, colour, _ in _METRICS:
        if untrained is not None and untrained.get(key) is not None:
            metric_axis.axhline(100 * untrained[key], color=colour, linestyle=":", linewidth=1.5,
                                label=f"{name}, untrained ({100 * untrained[key]:.1f}%)")
    if chosen is not None:
        for axis in (metric_axis, cluster_axis):
            axis.axvline(chosen, color="tab:green", linewidth=6, alpha=0.25,
                         label=f"chosen: stage {chosen} ({why})" if axis is metric_axis else None)
    metric_axis.set_ylabel("%")
    metric_axis.grid(alpha=0.3)
    metric_axis.set_title(title or "performance per clustering stage")
    cluster_axis.plot(stages, [row["clusters_after"] for row in stage_rows], marker=".", color="dimgrey",
                      label="clusters after the stage")
    cluster_axis.set_ylabel("clusters")
    cluster_axis.set_xlabel("clustering stage")
    cluster_axis.grid(alpha=0.3)
    cluster_axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    handles = [*metric_axis.get_legend_handles_labels()[0], *cluster_axis.get_legend_handles_labels()[0]]
    legend_rows = (len(handles) + 2) // 3
    figure.legend(handles=handles, loc="lower center", ncol=3, frameon=False, bbox_to_anchor=(0.5, 0.0),
                  columnspacing=1.2, handlelength=1.8)
    figure.tight_layout(rect=(0.0, 0.045 * legend_rows + 0.01, 1.0, 1.0))
    return figure


def plot_stages(rows: list[dict[str, Any]], path: str | Path, title: str = "",
                baseline: Mapping[str, float] | None = None, chosen_stage: int | None = None,
                criterion: str | None = None) -> Path:
    """Plot per-stage metrics rows (``stage``, ``clusters_after``, optional ``mAP`` / ``rank1`` in 0..1) to a PNG.

    ``baseline``: the untrained network's ``mAP`` / ``rank1``; ``chosen_stage`` and ``criterion``: the stage
    whose model was kept and why (default: the last row flagged ``best``).
    """
    figure = stage_figure(rows, title, baseline, chosen_stage, criterion)
    try:
        with atomic_write(path) as handle:  # a full disk leaves the previous plot, and an error naming the file
            figure.savefig(handle, format=Path(path).suffix[1:] or "png")
    finally:
        plt.close(figure)
    return Path(path)
