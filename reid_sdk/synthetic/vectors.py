"""Synthetic feature sets shaped like re-ID embeddings, for tests and benchmarks of the gallery.

Uniform noise is a poor stand-in for features: real embeddings form tight groups per
identity and occupy a low-dimensional subspace. These vectors are identity centres in a
``latent_dim`` subspace plus per-image spread, lifted to ``dim`` with a random
orthonormal basis, plus a little isotropic noise, then L2-normalised.
"""

from __future__ import annotations

import numpy as np


def clustered_features(n: int, dim: int, seed: int = 0, images_per_identity: int = 8, latent_dim: int = 64,
                       spread: float = 0.5, noise: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """(features float32 (n, dim) L2-normalised, identity labels int64 (n,))."""
    if n < 1 or dim < 1:
        raise ValueError(f"n and dim must be >= 1, got n={n}, dim={dim}")
    rng = np.random.default_rng(seed)
    latent_dim = min(latent_dim, dim)
    centres = rng.standard_normal((max(1, n // images_per_identity), latent_dim), dtype=np.float32)
    labels = rng.integers(0, len(centres), n)
    basis, _ = np.linalg.qr(rng.standard_normal((dim, latent_dim), dtype=np.float32))
    features = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 65536):  # chunks keep the temporary arrays small at 1M x 2048
        part = slice(start, min(n, start + 65536))
        latent = centres[labels[part]] + spread * rng.standard_normal((len(labels[part]), latent_dim), np.float32)
        chunk = latent / np.sqrt(latent_dim) @ basis.T
        chunk += noise / np.sqrt(dim) * rng.standard_normal(chunk.shape, dtype=np.float32)
        features[part] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
    return features, labels.astype(np.int64)
