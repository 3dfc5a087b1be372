"""The demo's steps, each a thin call into the product: reid-synth, reid-train, reid-eval, reid-export, reid-index."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from reid_sdk.datasets import ImageRecord, load_dataset
from reid_sdk.datasets.files import read_image
from reid_sdk.datasets.statistics import statistics_table
from reid_sdk.synthetic.layouts import SyntheticConfig, generate
from reid_sdk.export.api import export_model
from reid_sdk.export.verify import ParityCheck, Tolerance, verify_parity
from reid_sdk.inference.extractor import FeatureExtractor
from reid_sdk.gallery import Match
from reid_sdk.search.index import ReIDIndex
from reid_sdk.search.gallery_writer import GalleryTarget, ingest_units
from reid_sdk.search.sources import dataset_records
from reid_sdk.search.units import image_units
from reid_sdk.evaluation.on_dataset import evaluate_model
from reid_sdk.model import ModelConfig, ReIDNet, save_checkpoint
from reid_sdk.training.config import RunConfig, apply_override, build
from reid_sdk.training.stage_result import StageResult
from reid_sdk.training.schedules import build_trainer
from reid_sdk.visualize.matches import render_strip
from reid_sdk.visualize.tiles import stack_rows, write_image

DATASET_FORMAT = "market1501"


def onnx_device(device: str) -> str:
    """ONNX Runtime's device for a run on ``device``: on CUDA its GPU provider when installed (the ``gpu`` extra),
    else its CPU one, so the demo needs no extra beyond ``train``; ``cuda:N`` names that card's GPU provider."""
    if device == "cuda":
        return "auto"
    return device if device.startswith("cuda:") else "cpu"


@dataclass(frozen=True)
class TrainedRun:
    """A finished reid-train run of one demo variant: its directory, best checkpoint, per-stage results and wall
    time."""

    name: str
    run_dir: Path
    results: list[StageResult]
    seconds: float

    @property
    def best(self) -> Path:
        return self.run_dir / "best.pt"

    @property
    def best_stage(self) -> StageResult:
        """The stage whose model is best.pt, as the trainer marked it."""
        return next(result for result in self.results if result.best)


@dataclass(frozen=True)
class Evaluation:
    """Retrieval quality of one model on the query / gallery split (Market-1501 protocol)."""

    label: str
    rank1: float
    rank5: float
    mAP: float
    run: TrainedRun | None = None


@dataclass(frozen=True)
class QueryResult:
    """One query crop of the search step and its gallery matches (query camera excluded)."""

    record: ImageRecord
    matches: list[Match]


def render_dataset(root: Path, config: SyntheticConfig) -> str:
    """Write the synthetic Market-1501 style dataset (train / query / gallery); returns its statistics table."""
    generate(DATASET_FORMAT, root, config)
    return statistics_table(load_dataset(root, DATASET_FORMAT))


def save_initial_weights(model_config: ModelConfig, seed: int, path: Path) -> Path:
    """The network before training (the ImageNet trunk when the config asks for it, new parts drawn with ``seed``),
    saved once so every variant starts from the very same weights."""
    torch.manual_seed(seed)
    return save_checkpoint(ReIDNet(model_config), path, metadata={"note": "initial weights, before training"})


def train(run: RunConfig, data_root: Path, name: str, overrides: Sequence[str], initial: Path,
          out: Path) -> TrainedRun:
    """reid-train's trainer with ``run`` changed by ``overrides`` (``reid-train --set`` assignments,
    e.g. ``train.loss=camera_proxy``), from the initial weights, into ``out``; ``name`` names the variant."""
    document = dataclasses.replace(
        run,
        data=dataclasses.replace(run.data, root=str(data_root)),
        train=dataclasses.replace(run.train, init_checkpoint=str(initial)),
    ).to_dict()
    for assignment in overrides:
        apply_override(document, assignment)
    start = time.perf_counter()
    results = build_trainer(build(RunConfig, document), out).run()
    return TrainedRun(name, out, results, time.perf_counter() - start)


def evaluate(label: str, checkpoint: Path, data_root: Path, device: str, run: TrainedRun | None = None) -> Evaluation:
    """rank-1, rank-5 and mAP of ``checkpoint`` (reid-eval's code path: FeatureExtractor + Market protocol)."""
    result, _ = evaluate_model(FeatureExtractor(checkpoint, device=device), data_root, DATASET_FORMAT)
    return Evaluation(label, result.rank(1), result.rank(5), result.mAP, run)


def export_and_verify(checkpoint: Path, onnx_path: Path, crops: list[np.ndarray],
                      device: str) -> tuple[list[ParityCheck], Tolerance]:
    """reid-export: fp32 ONNX of ``checkpoint``, compared with torch fp32 on ``crops`` and random batches."""
    exported = export_model(checkpoint, "onnx", onnx_path)
    return (verify_parity(exported.path, checkpoint, crops, device=onnx_device(device)),
            Tolerance.for_precision(exported.precision))


def build_gallery(model: Path, data_root: Path, out: Path | str, device: str) -> int:
    """What ``reid-index build --format market1501`` does, over the gallery split; ``out`` is a directory or a
    Milvus URI (replaced when it holds a gallery of an earlier run)."""
    units = image_units(dataset_records(data_root, DATASET_FORMAT, "gallery"))
    return ingest_units(units, FeatureExtractor(model, device=onnx_device(device)),
                        GalleryTarget(out, overwrite=True)).entries


def search_queries(model: Path, gallery: Path | str, data_root: Path, count: int, k: int,
                   device: str) -> list[QueryResult]:
    """Search ``count`` query crops of distinct identities, spread over the query split, in other cameras."""
    index = ReIDIndex.load(FeatureExtractor(model, device=onnx_device(device)), gallery)
    queries = load_dataset(data_root, DATASET_FORMAT).query
    first_of_identity = list({record.pid: record for record in reversed(queries)}.values())[::-1]
    picks = [first_of_identity[i] for i in np.linspace(0, len(first_of_identity) - 1, count).astype(int)]
    results = []
    for record in picks:
        crop = read_image(record.path)
        if crop is None:
            raise ValueError(f"cannot read query image {record.path}")
        results.append(QueryResult(record, index.search(crop, k=k, exclude_camera=record.camera)))
    return results


def write_matches(results: list[QueryResult], path: Path) -> Path:
    """One strip per query (query, then its matches), stacked into one PNG at ``path``."""
    return write_image(stack_rows([render_strip(read_image(result.record.path), result.matches, result.record.pid,
                                                result.record.camera) for result in results]), path)
