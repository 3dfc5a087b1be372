"""Evaluation without torch: metrics, the query / gallery protocol on features, and a model on a dataset."""

from reid_sdk.evaluation.camera_standardisation import camera_standardise, camera_standardise_query_gallery
from reid_sdk.evaluation.metrics import ClusteringQuality, RankResult, clustering_quality, rank_metrics, same_partition
from reid_sdk.evaluation.protocol import (LabelledFeatures, camera_standardised_summary, query_gallery_metrics,
                                          query_gallery_report)

__all__ = ["ClusteringQuality", "LabelledFeatures", "RankResult", "camera_standardise",
           "camera_standardise_query_gallery", "camera_standardised_summary", "clustering_quality",
           "query_gallery_metrics", "query_gallery_report", "rank_metrics", "same_partition"]
