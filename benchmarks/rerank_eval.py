"""Retrieval with and without k-reciprocal re-ranking and average query expansion, on the demo's synthetic
query / gallery split with the demo's ONNX model (features extracted once, every variant scored on them).

    PYTHONPATH=. python -m benchmarks.rerank_eval [--demo demo]    # after reid-demo --out demo
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from benchmarks.common import write_results
from reid_sdk.datasets import load_dataset
from reid_sdk.evaluation.metrics import rank_metrics
from reid_sdk.inference.extractor import FeatureExtractor
from reid_sdk.evaluation.on_dataset import labelled_split, retrieval_distances
from reid_sdk.search.reranking import RerankConfig

VARIANTS = {
    "cosine": (None, 0),
    "query expansion (k=3)": (None, 3),
    "re-ranking (k1=20, k2=6, lambda=0.3)": (RerankConfig(), 0),
    "query expansion (k=3) + re-ranking": (RerankConfig(), 3),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=Path, default=Path("demo"), help="a reid-demo output folder")
    parser.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/rerank_eval.json)")
    args = parser.parse_args()
    model, data = args.demo / "model.onnx", args.demo / "data"
    if not model.is_file():
        raise SystemExit(f"{model} not found: run reid-demo --out {args.demo} first")
    splits = load_dataset(data, "market1501")
    extractor = FeatureExtractor(model, device="cpu")
    query = labelled_split(extractor, splits.query, "query")
    gallery = labelled_split(extractor, splits.gallery, "gallery")
    results = {}
    for name, (rerank, expansion) in VARIANTS.items():
        start = time.perf_counter()
        distances = retrieval_distances(query.features, gallery.features, rerank, expansion)
        seconds = time.perf_counter() - start
        metrics = rank_metrics(distances, query.pids, gallery.pids, query.cameras, gallery.cameras).as_dict()
        results[name] = {**{k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()},
                         "distance_seconds": round(seconds, 3)}
        print(f"{name:40s} rank-1 {metrics['rank1']:.3f}  mAP {metrics['mAP']:.3f}  mINP {metrics['mINP']:.3f}  "
              f"({seconds:.2f} s)")
    path = write_results("rerank_eval", {
        "model": str(model), "data": str(data), "queries": len(query.records), "gallery": len(gallery.records),
        "results": results}, args.out)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
