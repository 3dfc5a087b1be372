"""stages.png: integer stage ticks, the untrained baseline, the chosen stage, clusters apart, a legend over nothing."""

from __future__ import annotations

import cv2
import matplotlib.pyplot as plt
import pytest

from reid_sdk.training.plot import plot_stages, stage_figure

ROWS = [{"stage": s, "clusters_after": 600 - 60 * (s + 1), "mAP": 0.1 + 0.01 * s, "rank1": 0.15 + 0.02 * s,
         "best": s in (0, 1, 3)} for s in range(6)]


def labels(figure):
    return [text.get_text() for text in figure.legends[0].get_texts()]


def test_baseline_chosen_stage_and_criterion_are_drawn():
    figure = stage_figure(ROWS, baseline={"mAP": 0.117, "rank1": 0.207}, chosen_stage=4,
                          criterion="highest validation mAP")
    try:
        assert labels(figure) == ["mAP", "rank-1", "mAP, untrained (11.7%)", "rank-1, untrained (20.7%)",
                                  "chosen: stage 4 (highest validation mAP)", "clusters after the stage"]
        metric_axis, cluster_axis = figure.axes
        assert "clusters after the stage" in [line.get_label() for line in cluster_axis.get_lines()]
        assert not any(line.get_label().startswith(("mAP", "rank")) for line in cluster_axis.get_lines())
        figure.canvas.draw()
        ticks = [tick for tick in cluster_axis.get_xticks() if 0 <= tick <= 5]
        assert ticks and all(float(tick).is_integer() for tick in ticks)
        legend = figure.legends[0].get_window_extent()
        for axis in figure.axes:  # the legend covers no axes, tick labels or axis labels
            assert not legend.overlaps(axis.get_tightbbox())
    finally:
        plt.close(figure)


def test_chosen_stage_defaults_to_the_last_best_row_and_baseline_may_be_a_row():
    rows = [{"stage": -1, "baseline": True, "mAP": 0.05, "rank1": 0.08, "clusters_after": 0}, *ROWS]
    figure = stage_figure(rows)
    try:
        assert "chosen: stage 3 (kept as best.pt)" in labels(figure)
        assert "mAP, untrained (5.0%)" in labels(figure)
        clusters = next(line for line in figure.axes[1].get_lines() if line.get_label().startswith("clusters"))
        assert list(clusters.get_xdata()) == list(range(6))  # the baseline row is no stage
    finally:
        plt.close(figure)


@pytest.mark.parametrize("rows", [ROWS, [{"stage": 0, "clusters_after": 10}]])
def test_stages_png_is_written_at_a_readable_size(tmp_path, rows):
    path = plot_stages(rows, tmp_path / "stages.png", title="test")
    image = cv2.imread(str(path))
    assert image is not None and image.shape[:2] == (616, 880)
