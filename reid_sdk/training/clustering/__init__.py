"""Exact, blocked IMD/CPD bottom-up clustering (paper III.B, ``DESIGN.md`` "The method").

One merge stage computes D(A, B) for every cluster pair from the current features and joins the
``num_merges`` closest pairs (ascending D, ties by the smaller label pair, union-find, no recomputation).
D is ``imd_cpd`` (IMD + lambda * (CPD(A) + CPD(B))) or a baseline (``imd``, ``min``, ``max``, ``average``,
``buc``). Nothing of size N x N or C x C is ever held:

1. Clusters are ordered by (size, label), samples grouped by cluster, and cut into panels of ~block_size
   samples (``cluster_order``).
2. Per panel, one fp32 Gram product against all later samples (the lower triangle is never computed);
   reshapes per run of equal-sized clusters reduce it to per-cluster-pair max / min Gram (= min / max
   distance) or distance sums; CPD comes from within-cluster batched products (``kernel``).
3. The K smallest pairs in the strict order (D, a, b) are kept across panels; walking them with a
   union-find gives exactly the fully sorted walk, and K grows if skipped pairs exhaust them (``selection``).

The dense :func:`cluster_distance_matrix` uses the same panels, so its values are the ones the stage walks.
A :class:`CannotLink` constraint (site videos: two tracks one camera saw at overlapping times) keeps sample
pairs apart through the walk (``constraints``).

Cluster Contrast's pseudo-labels, for re-clustering every epoch (``jaccard``): :func:`jaccard_distance` gives the
k-reciprocal Jaccard distances of Zhong et al. (CVPR 2017) exactly as Cluster Contrast computes them, as a sparse
matrix of the pairs closer than 1 (FAISS neighbours, scipy.sparse sets and weights, nothing N x N), and
:func:`dbscan_jaccard_labels` runs scikit-learn's DBSCAN on it (-1 for outliers).
"""

from .constraints import CannotLink
from .jaccard import dbscan_jaccard_labels, jaccard_distance
from .linkage import LINKAGES
from .schedule import MergeSchedule
from .stage import cluster_compactness, cluster_distance_matrix, merge_stage

__all__ = ["CannotLink", "LINKAGES", "MergeSchedule", "cluster_compactness", "cluster_distance_matrix",
           "dbscan_jaccard_labels", "jaccard_distance", "merge_stage"]
