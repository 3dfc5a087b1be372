"""stages.png: mAP and rank-1 per stage with the number of clusters, like the paper's Fig. 5."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)


def plot_stages(rows: list[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Plot per-stage retrieval metrics (when evaluated) and cluster counts from metrics rows."""
    stages = [row["stage"] for row in rows]
    figure, metric_axis = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    for key, label, style in (("mAP", "mAP", "o-"), ("rank1", "rank-1", "s--")):
        values = [row.get(key) for row in rows]
        if any(v is not None for v in values):
            metric_axis.plot(stages, [100 * v if v is not None else float("nan") for v in values], style, label=label)
    metric_axis.set_xlabel("clustering stage")
    metric_axis.set_ylabel("%")
    cluster_axis = metric_axis.twinx()
    cluster_axis.plot(stages, [row["clusters_after"] for row in rows], ":", color="grey", label="clusters")
    cluster_axis.set_ylabel("clusters after the stage")
    handles = metric_axis.get_legend_handles_labels()[0] + cluster_axis.get_legend_handles_labels()[0]
    metric_axis.legend(handles, [h.get_label() for h in handles], loc="best")
    metric_axis.set_title(title or "performance per clustering stage")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return Path(path)
