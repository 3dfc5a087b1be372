"""Camera-aware clustering (``clustering.camera_centering``): each camera's mean feature removed before merging.

Every real camera adds its own offset to every crop's features (light, background, viewpoint), so under a
plain distance a stranger in the same camera is often nearer than the same person in another camera, and
bottom-up merging joins strangers within cameras. Subtracting each camera's mean feature (then re-normalising)
removes the shared offset and leaves what differs between the people a camera saw: per-camera feature
normalisation, the clustering-side half of camera-based batch normalisation (Zhuang et al., ECCV 2020) and of
the camera-aware feature alignment in O2CAP. The network and its exported features are unchanged; only what the
merge sees is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def center_per_camera(features: torch.Tensor, cameras: torch.Tensor) -> torch.Tensor:
    """``features`` (N, d) L2-normalised, minus the mean of their camera's (normalised) features, L2-normalised
    again. A crop equal to its camera's mean (a camera with one crop) keeps its own normalised features."""
    if features.dim() != 2 or cameras.shape != (features.shape[0],):
        raise ValueError(f"need (N, d) features and N cameras, got {tuple(features.shape)} and {tuple(cameras.shape)}")
    unit = F.normalize(features.float(), dim=1)
    camera_ids, camera_index = torch.unique(cameras.to(unit.device), return_inverse=True)
    sums = torch.zeros(len(camera_ids), unit.shape[1], device=unit.device).index_add_(0, camera_index, unit)
    counts = torch.bincount(camera_index, minlength=len(camera_ids)).to(unit.dtype)
    centred = unit - (sums / counts[:, None])[camera_index]
    norms = torch.linalg.vector_norm(centred, dim=1, keepdim=True)
    return torch.where(norms > 1e-6, centred / norms.clamp(min=1e-6), unit)
