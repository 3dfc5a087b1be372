"""Gallery backends side by side: insert and search throughput and recall@10, FAISS + SQLite and Milvus Lite.

    PYTHONPATH=. python -m benchmarks.gallery_backends
    PYTHONPATH=. python -m benchmarks.gallery_backends --runs 100000x256:faiss-hnsw,milvus-lite-hnsw

Everything goes through the public ``Gallery`` API, as an application would use it. Data:
``clustered_features`` (identity clusters in a low-dimensional subspace, like re-ID embeddings), queries
held out from the same distribution, ground truth from exact inner-product search. Per backend and index:
insert throughput (``add`` in batches of 10,000, index training included), the time to make it durable
(``save``: a checksummed generation on disk, or a Milvus flush), batch search throughput at k = 10
(queries per second), the median single-query latency and recall@10. The default runs fit in about ten
minutes on two cores: FAISS HNSW at 2048-d (graph build) and Milvus Lite beyond flat at 2048-d (about
500 inserts per second, all inside Milvus Lite's embedded server) are left to ``--runs``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

from benchmarks.common import write_results
from benchmarks.gallery_search import recall_at_10, search_problem
from reid_sdk.gallery import Gallery

DEFAULT_RUNS = [
    "100000x256:faiss-flat,faiss-ivf,faiss-hnsw,faiss-ivfpq,milvus-lite-flat,milvus-lite-ivf,milvus-lite-hnsw",
    "100000x2048:faiss-flat,faiss-ivf,faiss-ivfpq,milvus-lite-flat",
]
BATCH = 10_000
SINGLE_QUERIES = 50


def bench(backend: str, kind: str, x: np.ndarray, queries: np.ndarray, truth: np.ndarray, scratch: Path) -> dict:
    """One backend / index type: insert, save, search, recall. ``truth`` holds row numbers of ``x``."""
    location = None if backend == "faiss" else f"milvus-lite:{scratch / 'milvus.db'}?collection={kind}_{x.shape[1]}"
    gallery = Gallery(x.shape[1], index_type=kind, path=location, overwrite=True)
    start = time.perf_counter()
    ids = np.concatenate([gallery.add(x[row : row + BATCH]) for row in range(0, len(x), BATCH)])
    insert_s = time.perf_counter() - start
    start = time.perf_counter()
    gallery.save(scratch / f"{kind}_{x.shape[1]}" if backend == "faiss" else None)
    save_s = time.perf_counter() - start
    gallery.search_ids(queries[:1], k=10)  # warm-up
    start = time.perf_counter()
    _, found = gallery.search_ids(queries, k=10)
    search_s = time.perf_counter() - start
    single = []
    for query in queries[:SINGLE_QUERIES]:
        start = time.perf_counter()
        gallery.search_ids(query, k=10)
        single.append(time.perf_counter() - start)
    row_of = np.full(int(ids.max()) + 1, -1, dtype=np.int64)
    row_of[ids] = np.arange(len(ids))
    gallery.close()
    result = {"backend": backend, "index": kind, "n": len(x), "dim": x.shape[1],
              "insert_vectors_per_s": len(x) / insert_s, "insert_s": insert_s, "save_s": save_s,
              "search_queries_per_s": len(queries) / search_s, "single_query_ms_median": 1e3 * float(np.median(single)),
              "recall_at_10": recall_at_10(np.where(found >= 0, row_of[np.maximum(found, 0)], -1), truth)}
    print(json.dumps({key: round(value, 4) if isinstance(value, float) else value for key, value in result.items()}),
          flush=True)
    return result


def versions() -> dict[str, str]:
    found = {"faiss": faiss.__version__, "numpy": np.__version__}
    for package in ("pymilvus", "milvus-lite", "filelock"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=DEFAULT_RUNS,
                        help="NxD:backend-index,... (backends faiss and milvus-lite)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/gallery_backends_cpu.json)")
    args = parser.parse_args()
    results = {"versions": versions(), "omp_threads": faiss.omp_get_max_threads(), "queries": args.queries,
               "k": 10, "insert_batch": BATCH, "load_average_at_start": os.getloadavg()[0],
               "note": "2 cores shared with other work: the load averages say how much ran beside the measurement",
               "runs": []}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        for run in args.runs:
            shape, _, configs = run.partition(":")
            n, dim = (int(v) for v in shape.split("x"))
            x, queries, truth = search_problem(n, dim, args.queries)
            for config in configs.split(","):
                backend, _, kind = config.rpartition("-")
                results["runs"].append(bench(backend, kind, x, queries, truth, Path(scratch)))
    results["total_s"] = time.perf_counter() - started
    print(f"written to {write_results('gallery_backends_cpu', results, args.out)}")


if __name__ == "__main__":
    main()
