"""An exported model against the torch fp32 network: per-crop parity and the change in retrieval mAP.

Tolerances (DESIGN.md): fp32 and fp16 files cosine >= 0.999 (fp32 also max |diff| <= 1e-4); INT8 cosine
>= 0.99; any precision loses at most 1 mAP point on the verification set.

Parity runs on real crops (the caller's, e.g. held out from the calibration source) and on uniform-noise crops.
Noise gates fp32 and fp16, which compute the same function on any input. For INT8 it is reported, not gated:
activation ranges are calibrated on people, noise lies outside them by construction, so its error measures the
inputs, not the export (NL-MobileNetV2: noise min cosine ~0.95 where 1,681 real crops give >= 0.99,
docs/guides/deployment.md). A broken INT8 file (a wrong scale, a recipe that loses the signal) still fails on
the real crops, and on mAP when it loses retrieval.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reid_sdk.evaluation import LabelledFeatures, query_gallery_metrics
from reid_sdk.inference.extractor import FeatureExtractor
from reid_sdk.evaluation.on_dataset import evaluate_model


@dataclass(frozen=True)
class Tolerance:
    """Same crop, any backend: cosine >= min_cosine (fp32 also max |diff|); mAP drop <= max_map_drop (0..1);
    ``noise_gates``: whether the uniform-noise checks count (False for INT8, whose ranges are calibrated on people)."""

    min_cosine: float = 0.999
    max_abs_diff: float | None = None
    max_map_drop: float = 0.01
    noise_gates: bool = True

    @classmethod
    def for_precision(cls, precision: str) -> Tolerance:
        if precision == "fp32":
            return cls(max_abs_diff=1e-4)
        return cls(min_cosine=0.99, noise_gates=False) if precision == "int8" else cls()


@dataclass(frozen=True)
class ParityCheck:
    """How one set of inputs compared."""

    label: str
    count: int
    max_abs_diff: float
    min_cosine: float
    noise: bool = False  # uniform-noise crops, not real ones

    def within(self, tolerance: Tolerance) -> bool:
        """Whether the numbers are within ``tolerance``, gating or not."""
        close = tolerance.max_abs_diff is None or self.max_abs_diff <= tolerance.max_abs_diff
        return close and self.min_cosine >= tolerance.min_cosine

    def gates(self, tolerance: Tolerance) -> bool:
        """Whether this check counts towards the verdict (noise does not for INT8)."""
        return tolerance.noise_gates or not self.noise

    def passes(self, tolerance: Tolerance) -> bool:
        """True unless this check gates and is beyond ``tolerance``."""
        return not self.gates(tolerance) or self.within(tolerance)

    def verdict(self, tolerance: Tolerance) -> str:
        """The word its line starts with: ok, FAIL, or info (reported, not gating)."""
        if not self.gates(tolerance):
            return "info"
        return "ok" if self.within(tolerance) else "FAIL"

    def describe(self) -> str:
        return f"{self.label:<24} n={self.count:<4} max|diff|={self.max_abs_diff:.2e}  min cos={self.min_cosine:.6f}"


@dataclass(frozen=True)
class RetrievalCheck:
    """Query/gallery mAP (0..1) of the torch fp32 reference and of the exported model on the same set."""

    label: str
    num_queries: int
    reference_map: float
    exported_map: float

    @property
    def map_change(self) -> float:
        return self.exported_map - self.reference_map

    def passes(self, tolerance: Tolerance) -> bool:
        return -self.map_change <= tolerance.max_map_drop + 1e-9

    def verdict(self, tolerance: Tolerance) -> str:
        """The word its line starts with: ok or FAIL."""
        return "ok" if self.passes(tolerance) else "FAIL"

    def describe(self) -> str:
        return (f"{self.label:<24} q={self.num_queries:<4} mAP {100 * self.reference_map:.2f} -> "
                f"{100 * self.exported_map:.2f} ({100 * self.map_change:+.2f} points)")


@dataclass(frozen=True)
class LabelledCrop:
    """A crop with its identity and camera: a query / gallery record held in memory."""

    crop: np.ndarray
    pid: int
    camera: int


def compare(label: str, reference: np.ndarray, candidate: np.ndarray, noise: bool = False) -> ParityCheck:
    """Max absolute difference and minimum cosine similarity, row by row."""
    cosine = np.sum(reference * candidate, axis=1) / (
        np.linalg.norm(reference, axis=1) * np.linalg.norm(candidate, axis=1))
    return ParityCheck(label, len(reference), float(np.abs(reference - candidate).max()), float(cosine.min()), noise)


def random_crops(count: int, seed: int) -> list[np.ndarray]:
    """Uniform-noise BGR crops of varied sizes: the inputs no training set resembles."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (int(rng.integers(32, 300)), int(rng.integers(16, 150)), 3), dtype=np.uint8)
            for _ in range(count)]


def synthetic_query_gallery(identities: int = 50, shots: int = 4, image_size: tuple[int, int] = (128, 64),
                            seed: int = 7, first_stream: int = 0) -> tuple[list[LabelledCrop], list[LabelledCrop]]:
    """Rendered pedestrians, each seen by ``shots`` cameras: the first sighting is the query, the rest gallery.

    ``seed`` picks the identities and cameras (those of ``SyntheticWorld(seed)``), ``first_stream`` the views.
    """
    from reid_sdk.synthetic.layouts import Shot, SyntheticConfig, SyntheticWorld

    if identities < 2 or shots < 2:
        raise ValueError(f"a query/gallery set needs >= 2 identities and >= 2 shots each, got {identities}, {shots}")
    world = SyntheticWorld(SyntheticConfig(seed=seed, image_size=image_size))
    query, gallery = [], []
    for index in range(identities * shots):
        pid, camera = 1 + index // shots, 1 + index % shots
        crop = world.render(Shot(path="", pid=pid, camera=camera, stream=(first_stream + index,)))[0]
        (query if camera == 1 else gallery).append(LabelledCrop(crop, pid, camera))
    return query, gallery


def _labelled_map(extractor: FeatureExtractor, query: list[LabelledCrop], gallery: list[LabelledCrop]) -> float:
    def labelled(records: list[LabelledCrop], split: str) -> LabelledFeatures:
        return LabelledFeatures.of(records, extractor.extract([record.crop for record in records]), split=split)

    return query_gallery_metrics(labelled(query, "query"), labelled(gallery, "gallery")).mAP


def verify_parity(exported: str | Path, checkpoint: str | Path, crops: Sequence[np.ndarray],
                  batch_sizes: Sequence[int] = (1, 7, 32), device: str = "auto", backend: str = "auto",
                  **backend_args: Any) -> list[ParityCheck]:
    """Compare ``exported`` (ONNX / engine) with the checkpoint in torch fp32 on the CPU.

    ``crops`` (real images) run as one batch; then uniform-noise crops at each of ``batch_sizes`` (checks with
    ``noise`` set: :attr:`Tolerance.noise_gates`). ``backend`` and ``backend_args`` (e.g. ``precision="bf16"``)
    choose how the exported file runs.
    """
    reference = FeatureExtractor(checkpoint, device="cpu", precision="fp32")
    checks = []
    inputs = [("real crops", list(crops), False)] if len(crops) else []
    inputs += [(f"random batch {size}", random_crops(size, seed=size), True) for size in batch_sizes]
    candidate = FeatureExtractor(exported, device=device, batch_size=max(len(batch) for _, batch, _ in inputs),
                                 backend=backend, **backend_args)
    for label, batch, noise in inputs:
        checks.append(compare(label, reference.extract(batch), candidate.extract(batch), noise))
    return checks


def verify_retrieval(exported: str | Path, checkpoint: str | Path,
                     data: str | Path | tuple[list[LabelledCrop], list[LabelledCrop]] | None = None,
                     data_format: str = "market1501", device: str = "auto", backend: str = "auto",
                     **backend_args: Any) -> RetrievalCheck:
    """mAP of the torch fp32 network and of ``exported`` on the same labelled query / gallery set.

    ``data``: a dataset folder in ``data_format``, (query, gallery) lists of :class:`LabelledCrop`, or None
    for rendered pedestrians (:func:`synthetic_query_gallery`).
    """
    reference = FeatureExtractor(checkpoint, device="cpu", precision="fp32")
    candidate = FeatureExtractor(exported, device=device, backend=backend, **backend_args)
    if data is None or isinstance(data, tuple):
        query, gallery = data or synthetic_query_gallery(image_size=reference.input_size)
        return RetrievalCheck("synthetic query/gallery", len(query), _labelled_map(reference, query, gallery),
                              _labelled_map(candidate, query, gallery))
    reference_result, _ = evaluate_model(reference, data, data_format)
    exported_result, _ = evaluate_model(candidate, data, data_format)
    return RetrievalCheck(f"{Path(data).name} ({data_format})", reference_result.num_valid_queries,
                          reference_result.mAP, exported_result.mAP)
