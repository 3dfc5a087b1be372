"""Gallery search speed and recall@10 per index type, size and dimension (CPU; exact GPU search when lent).

    PYTHONPATH=. python benchmarks/gallery_search.py --runs 100000x256 100000x2048 1000000x256:ivf,hnsw,ivfpq

Data: ``clustered_features`` (identity clusters in a low-dimensional subspace, like
re-ID embeddings); queries are held out from the same distribution. Ground truth is
exact inner-product search. For each index and query-time setting it reports build
time, batch throughput, single-query latency (median / p95, one OpenMP thread) and recall@10; a row meets
the design target when recall@10 >= 0.95 and the median single-query latency <= 1 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import faiss
import numpy as np

from reid_sdk.gallery import Gallery, GalleryConfig
from reid_sdk.gallery.faiss_sqlite.store import gpu_count
from reid_sdk.synthetic.vectors import clustered_features

SWEEPS = {"flat": ("nprobe", [1]), "ivf": ("nprobe", [16, 32, 64, 128]), "hnsw": ("ef_search", [16, 32, 64, 128]),
          "ivfpq": ("nprobe", [16, 32, 64, 128])}
TRAIN_SAMPLE = 100_000  # IVF / PQ train on a sample: k-means on all of 1M points would take most of an hour here


def recall_at_10(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(np.intersect1d(f, t)) / len(t) for f, t in zip(found, truth)]))


def search_problem(n: int, dim: int, queries: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` clustered gallery vectors, ``queries`` held-out queries and their exact top-10 rows."""
    data, _ = clustered_features(n + queries, dim, seed=0)
    exact = faiss.IndexFlatIP(dim)
    exact.add(data[:n])
    return data[:n], data[n:], exact.search(data[n:], 10)[1]


def time_queries(gallery: Gallery, queries: np.ndarray) -> dict[str, float]:
    start = time.perf_counter()
    _, ids = gallery.search_ids(queries, k=10)
    batch_s = time.perf_counter() - start
    single = []
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # one query per serving thread; OpenMP on one query only adds wake-up latency
    for query in queries:
        start = time.perf_counter()
        gallery.search_ids(query, k=10)
        single.append(time.perf_counter() - start)
    faiss.omp_set_num_threads(threads)
    return {"batch_queries_per_s": len(queries) / batch_s, "batch_ms_per_query": 1e3 * batch_s / len(queries),
            "single_ms_median": 1e3 * float(np.median(single)), "single_ms_p95": 1e3 * float(np.percentile(single, 95)),
            "ids": ids}


def bench_kind(kind: str, x: np.ndarray, queries: np.ndarray, truth: np.ndarray, nlist: int | None) -> list[dict]:
    gallery = Gallery(x.shape[1], index_type=kind, config=GalleryConfig(nlist=nlist))
    start = time.perf_counter()
    if gallery.config.trainable:
        gallery.train(x[np.random.default_rng(0).permutation(len(x))[:TRAIN_SAMPLE]])
    for chunk in range(0, len(x), 100_000):
        gallery.add(x[chunk : chunk + 100_000])
    build_s = time.perf_counter() - start
    param, values = SWEEPS[kind]
    rows = []
    for value in values:
        if kind != "flat":
            gallery.tune(**{param: value})
        timing = time_queries(gallery, queries)
        recall = recall_at_10(timing.pop("ids"), truth)
        row = {"index": kind, "n": len(x), "dim": x.shape[1], "build_s": build_s, param: value,
               "recall_at_10": recall, **timing,
               "meets_target": recall >= 0.95 and timing["single_ms_median"] <= 1.0}
        if gallery.config.trainable:
            row["nlist"] = gallery._backend._store.index.nlist
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
        rows.append(row)
    return rows


def bench_gpu_exact(x: np.ndarray, queries: np.ndarray) -> dict:
    """Exact search with faiss-gpu (an unfiltered flat Gallery search runs there)."""
    gallery = Gallery(x.shape[1], index_type="flat", config=GalleryConfig(device="gpu"))
    gallery.add(x)
    gallery.search_ids(queries[:1], k=10)  # copies the index to the GPU
    timing = time_queries(gallery, queries)
    timing.pop("ids")
    return {"index": "flat-gpu", "n": len(x), "dim": x.shape[1], **timing}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=["100000x256", "100000x2048", "1000000x256"],
                        help="NxD[:kind,kind...] (default kinds: all four)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "gallery_search_cpu.json")
    args = parser.parse_args()
    results = {"cpu": platform.processor() or platform.machine(), "faiss": faiss.__version__,
               "omp_threads": faiss.omp_get_max_threads(), "cpu_count": os.cpu_count(), "queries": args.queries,
               "note": "2 shared cores; other work ran on the machine during the measurement", "runs": []}
    for run in args.runs:
        shape, _, kinds = run.partition(":")
        n, dim = (int(v) for v in shape.split("x"))
        x, queries, truth = search_problem(n, dim, args.queries)
        nlist = 1024 if n > TRAIN_SAMPLE else None  # 4 * sqrt(1M) cells would need k-means on 4M+ points
        for kind in (kinds.split(",") if kinds else SWEEPS):
            results["runs"].extend(bench_kind(kind, x, queries, truth, nlist))
            args.out.write_text(json.dumps(results, indent=2))
        if gpu_count():
            results["runs"].append(bench_gpu_exact(x, queries))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
