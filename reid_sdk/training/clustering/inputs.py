"""Validation and conversion of the engine's inputs: features, labels, merge count, device, block size."""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from reid_sdk.model.device import resolve_device

MATMUL_PRECISIONS = ("ieee", "tf32", "bf16")


@dataclass(frozen=True)
class ClusteringInput:
    """Checked inputs on the compute device: unit-length float32 features and int64 labels 0..C-1."""

    features: torch.Tensor
    labels: np.ndarray
    num_clusters: int


def prepare_inputs(features: Any, labels: Any, device: str | torch.device | None) -> ClusteringInput:
    """Validate ``features`` (N, d) and ``labels`` (N,), L2-normalise the features (fp32) on ``device``."""
    target = _compute_device(features, device)
    vectors = _features_tensor(features).to(device=target, dtype=torch.float32)
    norms64 = torch.linalg.vector_norm(vectors, dim=1, keepdim=True, dtype=torch.float64)  # cannot overflow
    if not bool(torch.isfinite(norms64).all()):  # a norm is finite exactly when its row is
        raise ValueError("features contain NaN or inf (after conversion to float32)")
    norms = norms64.float()
    zero_rows = torch.nonzero(norms[:, 0] == 0)
    if zero_rows.numel():
        raise ValueError(f"feature row {int(zero_rows[0])} is all zeros and cannot be L2-normalised")
    cluster_of_sample, num_clusters = _labels_array(labels, len(vectors))
    return ClusteringInput(vectors / norms, cluster_of_sample, num_clusters)


def _compute_device(features: Any, device: str | torch.device | None) -> torch.device:
    """``device`` (checked by the one device resolver) if given, else the features' own device (CPU for numpy)."""
    if device is not None:
        return resolve_device(device)
    return features.device if isinstance(features, torch.Tensor) else torch.device("cpu")


def check_num_merges(num_merges: Any) -> int:
    if isinstance(num_merges, bool) or not isinstance(num_merges, numbers.Integral):
        raise ValueError(f"num_merges must be an integer, got {num_merges!r}")
    if num_merges < 0:
        raise ValueError(f"num_merges must be >= 0, got {num_merges}")
    return int(num_merges)


def check_block_size(block_size: Any) -> int | None:
    if block_size is None:
        return None
    if isinstance(block_size, bool) or not isinstance(block_size, numbers.Integral) or block_size < 1:
        raise ValueError(f"block_size must be a positive integer or None, got {block_size!r}")
    return int(block_size)


def check_matmul_precision(precision: str, device: torch.device) -> str:
    if precision not in MATMUL_PRECISIONS:
        raise ValueError(f"unknown matmul_precision {precision!r}; expected one of {', '.join(MATMUL_PRECISIONS)}")
    if precision == "bf16" and device.type == "cuda":
        raise ValueError("matmul_precision 'bf16' applies to CPU (oneDNN) only; use 'tf32' or 'ieee' on CUDA")
    return precision


def labels_like(cluster_of_sample: np.ndarray, original: Any) -> Any:
    """New labels as the same kind as the caller's: a tensor (dtype, device kept) or a numpy array."""
    if isinstance(original, torch.Tensor):
        return torch.from_numpy(cluster_of_sample).to(device=original.device, dtype=original.dtype)
    return cluster_of_sample.astype(np.asarray(original).dtype, copy=False)


def _features_tensor(features: Any) -> torch.Tensor:
    if isinstance(features, torch.Tensor):
        values = features
    else:
        values = torch.from_numpy(np.ascontiguousarray(_real_array(features, "features")))
    if values.dtype.is_complex or values.dtype == torch.bool:
        raise ValueError(f"features must be real numbers, got dtype {values.dtype}")
    if values.ndim != 2:
        raise ValueError(f"features must be a 2-D (N, d) array, got shape {tuple(values.shape)}")
    if values.shape[0] == 0 or values.shape[1] == 0:
        raise ValueError(f"features are empty (shape {tuple(values.shape)})")
    return values


def _labels_array(labels: Any, num_samples: int) -> tuple[np.ndarray, int]:
    values = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else _real_array(labels, "labels")
    if values.dtype.kind not in "iu":
        raise ValueError(f"labels must be integers, got dtype {values.dtype}")
    if values.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {values.shape}")
    if len(values) != num_samples:
        raise ValueError(f"labels has {len(values)} entries but features has {num_samples} rows")
    if values.min() < 0:
        raise ValueError(f"labels must be in 0..C-1, found {values.min()}")
    counts = np.bincount(values.astype(np.int64))
    missing = np.flatnonzero(counts == 0)
    if missing.size:
        raise ValueError(f"labels must be contiguous 0..{len(counts) - 1}; label {missing[0]} is unused")
    return values.astype(np.int64), len(counts)


def _real_array(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric, got dtype {array.dtype}")
    return array
