"""Parity of an exported model against the torch fp32 network, within DESIGN.md's tolerances."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reid_sdk.extractor import FeatureExtractor


@dataclass(frozen=True)
class Tolerance:
    """Same crop, any backend: cosine >= min_cosine; fp32 engines also max |diff| <= max_abs_diff."""

    min_cosine: float = 0.999
    max_abs_diff: float | None = None

    @classmethod
    def for_precision(cls, precision: str) -> Tolerance:
        return cls(max_abs_diff=1e-4) if precision == "fp32" else cls()


@dataclass(frozen=True)
class ParityCheck:
    """How one set of inputs compared."""

    label: str
    count: int
    max_abs_diff: float
    min_cosine: float

    def passes(self, tolerance: Tolerance) -> bool:
        close = tolerance.max_abs_diff is None or self.max_abs_diff <= tolerance.max_abs_diff
        return close and self.min_cosine >= tolerance.min_cosine

    def describe(self) -> str:
        return f"{self.label:<24} n={self.count:<4} max|diff|={self.max_abs_diff:.2e}  min cos={self.min_cosine:.6f}"


def compare(label: str, reference: np.ndarray, candidate: np.ndarray) -> ParityCheck:
    """Max absolute difference and minimum cosine similarity, row by row."""
    cosine = np.sum(reference * candidate, axis=1) / (
        np.linalg.norm(reference, axis=1) * np.linalg.norm(candidate, axis=1))
    return ParityCheck(label, len(reference), float(np.abs(reference - candidate).max()), float(cosine.min()))


def random_crops(count: int, seed: int) -> list[np.ndarray]:
    """Uniform-noise BGR crops of varied sizes: the inputs no training set resembles."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (int(rng.integers(32, 300)), int(rng.integers(16, 150)), 3), dtype=np.uint8)
            for _ in range(count)]


def verify_parity(exported: str | Path, checkpoint: str | Path, crops: Sequence[np.ndarray],
                  batch_sizes: Sequence[int] = (1, 7, 32), device: str = "auto") -> list[ParityCheck]:
    """Compare ``exported`` (ONNX / engine) with the checkpoint in torch fp32 on the CPU.

    ``crops`` (real images) run as one batch; then random crops at each of ``batch_sizes``.
    """
    reference = FeatureExtractor(checkpoint, device="cpu", precision="fp32")
    checks = []
    inputs = [("real crops", list(crops))] if len(crops) else []
    inputs += [(f"random batch {size}", random_crops(size, seed=size)) for size in batch_sizes]
    candidate = FeatureExtractor(exported, device=device, batch_size=max(len(batch) for _, batch in inputs))
    for label, batch in inputs:
        checks.append(compare(label, reference.extract(batch), candidate.extract(batch)))
    return checks
