"""Evaluation without torch: metrics, the query / gallery protocol on features, and a model on a dataset."""

from reid_sdk.evaluation.metrics import ClusteringQuality, RankResult, clustering_quality, rank_metrics
from reid_sdk.evaluation.protocol import LabelledFeatures, query_gallery_metrics

__all__ = ["ClusteringQuality", "LabelledFeatures", "RankResult", "clustering_quality", "query_gallery_metrics",
           "rank_metrics"]
