"""``reid-eval``: rank-1/5/10, mAP and mINP of a model on a labelled dataset (Market protocol).

Features come from :class:`reid_sdk.extractor.FeatureExtractor`, so any backend it accepts works; a tracklet's
feature is the mean of its frame features (at most ``--max-frames`` evenly spaced frames), L2-normalised.
Images that cannot be decoded are left out of the evaluation and counted.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from reid_sdk.datasets import ImageRecord, TrackletRecord, load_dataset
from reid_sdk.datasets.files import read_image
from reid_sdk.datasets.records import record_paths
from reid_sdk.evaluation import RankResult, rank_metrics

logger = logging.getLogger(__name__)

LABELLED_FORMATS = ("market1501", "dukemtmc", "mars", "dukevideo")
_CHUNK_IMAGES = 1024  # crops decoded and held in memory at once


def _crops_of(records: Sequence[ImageRecord | TrackletRecord], max_frames: int) -> Iterator[tuple[int, np.ndarray]]:
    """(record position, decoded BGR crop) for every readable image / sampled frame, in record order."""
    for position, record in enumerate(records):
        for path in record_paths(record, max_frames):
            image = read_image(path)
            if image is not None:
                yield position, image


def extract_features(extractor, records: Sequence, max_frames: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(features of the records that had a readable image, boolean mask of those records).

    A record's feature is the L2-normalised mean of its (frame) features.
    """
    sums = np.zeros((len(records), extractor.feature_dim), dtype=np.float64)
    counts = np.zeros(len(records), dtype=np.int64)
    owners: list[int] = []
    crops: list[np.ndarray] = []

    def flush() -> None:
        if crops:
            np.add.at(sums, np.asarray(owners), extractor.extract(crops))
            np.add.at(counts, np.asarray(owners), 1)
            owners.clear()
            crops.clear()

    for position, crop in _crops_of(records, max_frames):
        owners.append(position)
        crops.append(crop)
        if len(crops) >= _CHUNK_IMAGES:
            flush()
    flush()
    found = counts > 0
    features = sums[found] / counts[found, None]
    features /= np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    return features.astype(np.float32), found


def evaluate_model(extractor, root: str | Path, format: str, max_frames: int = 32) -> tuple[RankResult, dict]:
    """Load ``root`` as ``format``, extract query and gallery features, score them; returns (result, details)."""
    splits = load_dataset(root, format)
    details: dict = {"dataset": str(splits.root), "format": format}
    labelled = {}
    for split in ("query", "gallery"):
        records = splits.split(split)
        if not records:
            raise ValueError(f"{splits.root} has no {split} records to evaluate")
        features, found = extract_features(extractor, records, max_frames)
        kept = [record for record, ok in zip(records, found) if ok]
        details[f"num_{split}"] = len(kept)
        details[f"unreadable_{split}"] = int((~found).sum())
        labelled[split] = (features, np.array([r.pid for r in kept]), np.array([r.camera for r in kept]))
    if details["unreadable_query"] or details["unreadable_gallery"]:
        logger.warning("left out %d query and %d gallery entries without a readable image",
                       details["unreadable_query"], details["unreadable_gallery"])
    (q_feat, q_pids, q_cams), (g_feat, g_pids, g_cams) = labelled["query"], labelled["gallery"]
    distmat = 1.0 - q_feat @ g_feat.T  # cosine distance of L2-normalised features
    return rank_metrics(distmat, q_pids, g_pids, q_cams, g_cams), details


def build_parser() -> argparse.ArgumentParser:
    """The ``reid-eval`` argument parser."""
    parser = argparse.ArgumentParser(prog="reid-eval", description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path, help="dataset root")
    parser.add_argument("--format", required=True, choices=LABELLED_FORMATS, help="dataset layout")
    parser.add_argument("--checkpoint", required=True, type=Path, help="model checkpoint (or exported model)")
    parser.add_argument("--out", type=Path, help="write the metrics as JSON here")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-frames", type=int, default=32, help="frames per tracklet, evenly spaced (video)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``reid-eval``."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.max_frames < 1:
        print("reid-eval: --max-frames must be >= 1", file=sys.stderr)
        return 2
    from reid_sdk.extractor import FeatureExtractor

    start = time.perf_counter()
    try:
        extractor = FeatureExtractor(args.checkpoint, device=args.device, batch_size=args.batch_size)
        result, details = evaluate_model(extractor, args.data, args.format, args.max_frames)
    except (OSError, ValueError) as error:
        print(f"reid-eval: {error}", file=sys.stderr)
        return 2
    metrics = result.as_dict()
    print(" | ".join(f"{name} {metrics[name]:.2%}" for name in ("rank1", "rank5", "rank10", "mAP", "mINP")
                     if name in metrics))
    if args.out is not None:
        report = {**details, "checkpoint": str(args.checkpoint), **metrics,
                  "cmc": result.cmc.tolist(), "seconds": round(time.perf_counter() - start, 3)}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
