"""Speed of one IMD/CPD merge stage against a BUC-style reference and against one Gram product.

    PYTHONPATH=. python benchmarks/clustering_speed.py                   # CPU, N = 12,936, d = 2048
    PYTHONPATH=. python benchmarks/clustering_speed.py --device cuda     # GPU: N = 12,936, 32,621, 100,000
    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \
        PYTHONPATH=. python benchmarks/clustering_speed.py --device cpu --tag 1thread   # one thread per library

CPU section (same process, same data): one ``merge_stage`` (m = round(0.05 N) merges) per linkage; one
X @ X.T in torch and in numpy (the floor for exact work); a BUC-style stage written here in numpy (full
N x N squared distances, per-sample-pair size penalty, argsort of all N^2 entries, union-find walk over
sample pairs). Targets: BUC-style / stage >= 10 and stage / Gram <= 2. It also reports whether bf16
matmuls (oneDNN) would change the merges.

Wall and process CPU seconds are both recorded; on a machine shared with other work the CPU seconds (and
one thread per library, as in the third command) give the steadier comparison. On an oversubscribed
machine set OMP_WAIT_POLICY=PASSIVE: OpenMP threads that spin at barriers take the core from the thread
they wait for, and every multi-threaded tensor operation becomes several times slower.

GPU section (only when CUDA is available): stage time and peak memory at each size, Gram time where the
N x N product fits, and whether TF32 changes the merges. Targets: <= 50 ms at 12,936 on one H100,
<= 10 s and <= 24 GB at 100,000.

Labels mimic a mid-training stage: cluster sizes 1..30 with P(size) ~ size^-2.2 (about two thirds of
the clusters are singletons, mean size ~2.1); features are identity centres plus noise, L2-normalised.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import RESULTS_DIR, write_results
from reid_sdk.training.clustering import LINKAGES, MergeSchedule, merge_stage

GPU_SIZES = (12_936, 32_621, 100_000)
MAX_GRAM_SAMPLES = 40_000  # a dense N x N Gram is only timed where it fits comfortably
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_WAIT_POLICY")


def mid_training_labels(num_samples: int, rng: np.random.Generator, max_size: int = 30) -> np.ndarray:
    """Shuffled labels 0..C-1 with cluster sizes drawn from P(s) ~ s^-2.2 on 1..max_size."""
    sizes_range = np.arange(1, max_size + 1)
    weights = sizes_range**-2.2
    draws = rng.choice(sizes_range, size=num_samples, p=weights / weights.sum())
    sizes = draws[: np.searchsorted(np.cumsum(draws), num_samples) + 1]
    sizes[-1] -= sizes.sum() - num_samples
    return rng.permutation(np.repeat(np.arange(len(sizes)), sizes))


def clustered_features(labels: np.ndarray, dim: int, rng: np.random.Generator) -> np.ndarray:
    """Unit float32 vectors: a random centre per cluster plus isotropic noise."""
    centres = rng.standard_normal((labels.max() + 1, dim), dtype=np.float32)
    features = centres[labels] + 0.7 * rng.standard_normal((len(labels), dim), dtype=np.float32)
    return features / np.linalg.norm(features, axis=1, keepdims=True)


def timed(
    function: Callable[[], object], repeats: int, sync: Callable[[], None] = lambda: None
) -> dict[str, object]:
    """Best and median wall seconds of ``repeats`` calls (after ``sync``, so GPU work counts), and CPU seconds."""
    wall, cpu = [], []
    for _ in range(repeats):
        sync()
        start, start_cpu = time.perf_counter(), time.process_time()
        function()
        sync()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return {"best_s": min(wall), "median_s": statistics.median(wall), "wall_s": wall, "process_cpu_s": cpu}


def buc_style_stage(features: np.ndarray, labels: np.ndarray, num_merges: int, lam_buc: float) -> np.ndarray:
    """BUC's selection, vectorised: every sample pair in one N x N matrix, argsort of all entries, walk.

    Sample pair (i, j) costs |x_i - x_j|^2 + lam_buc * (|A| + |B|); pairs inside a cluster and the lower
    triangle are excluded. Returns the merged cluster labels, numbered by their smallest old label.
    """
    count = len(features)
    squared_norms = np.einsum("ij,ij->i", features, features)
    cost = features @ features.T
    cost *= -2.0
    cost += squared_norms[:, None]
    cost += squared_norms[None, :]
    size = np.bincount(labels)[labels].astype(np.float32)
    cost += lam_buc * (size[:, None] + size[None, :])
    cost[np.tri(count, dtype=bool)] = np.inf
    cost[labels[:, None] == labels[None, :]] = np.inf
    order = np.argsort(cost, axis=None)
    parent = np.arange(labels.max() + 1)

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    merges = 0
    for flat in order:
        if merges == num_merges:
            break
        a, b = root(labels[flat // count]), root(labels[flat % count])
        if a != b:
            parent[max(a, b)] = min(a, b)
            merges += 1
    roots = np.array([root(c) for c in range(len(parent))])
    return np.unique(roots, return_inverse=True)[1][labels]


def cpu_section(args: argparse.Namespace) -> dict[str, object]:
    rng = np.random.default_rng(args.seed)
    labels = mid_training_labels(args.n, rng)
    features = clustered_features(labels, args.dim, rng)
    num_merges = MergeSchedule(args.n).merges_per_stage
    sizes = np.bincount(labels)
    tensor = torch.from_numpy(features)

    load_at_start = os.getloadavg()[0]
    stage = {}
    for linkage in LINKAGES:
        repeats = args.repeats if linkage == "imd_cpd" else 1
        stage[linkage] = timed(lambda name=linkage: merge_stage(features, labels, num_merges, linkage=name), repeats)
    gram_torch = timed(lambda: tensor @ tensor.T, args.repeats)
    gram_numpy = timed(lambda: features @ features.T, args.repeats)
    reference = timed(lambda: buc_style_stage(features, labels, num_merges, 0.005), args.reference_repeats)

    exact = merge_stage(features, labels, num_merges)
    bf16 = merge_stage(features, labels, num_merges, matmul_precision="bf16")
    best = stage["imd_cpd"]["best_s"]
    fastest_gram = min(gram_torch["best_s"], gram_numpy["best_s"])
    cpu = {name: min(run["process_cpu_s"]) for name, run in
           (("stage", stage["imd_cpd"]), ("gram_torch", gram_torch), ("gram_numpy", gram_numpy),
            ("reference", reference))}
    return {
        "config": {"num_samples": args.n, "dim": args.dim, "num_merges": num_merges, "seed": args.seed,
                   "num_clusters": len(sizes), "singleton_clusters": int((sizes == 1).sum()),
                   "max_cluster_size": int(sizes.max()), "mean_cluster_size": float(sizes.mean()),
                   "load_average_1min_at_start": load_at_start,
                   "thread_env": {name: os.environ.get(name) for name in THREAD_VARIABLES}},
        "stage": stage,
        "gram_torch": gram_torch,
        "gram_numpy": gram_numpy,
        "buc_style_reference": reference,
        "speedup_vs_buc_style": reference["best_s"] / best,
        "stage_over_gram_torch": best / gram_torch["best_s"],
        "stage_over_fastest_gram": best / fastest_gram,
        "by_process_cpu_time": {  # steadier than wall time on a shared machine
            "speedup_vs_buc_style": cpu["reference"] / cpu["stage"],
            "stage_over_gram_torch": cpu["stage"] / cpu["gram_torch"],
            "stage_over_fastest_gram": cpu["stage"] / min(cpu["gram_torch"], cpu["gram_numpy"]),
        },
        "targets_met": {"speedup_vs_buc_style_>=_10": reference["best_s"] / best >= 10,
                        "stage_within_2x_of_gram": best / fastest_gram <= 2},
        "bf16_matmul_changes_merges": _changed(exact, bf16),
    }


def gpu_section(args: argparse.Namespace) -> dict[str, object]:
    device = torch.device("cuda")
    sync = torch.cuda.synchronize
    runs = {}
    for num_samples in args.gpu_sizes:
        rng = np.random.default_rng(args.seed)
        labels_np = mid_training_labels(num_samples, rng)
        features = torch.from_numpy(clustered_features(labels_np, args.dim, rng)).to(device)
        labels = torch.from_numpy(labels_np).to(device)
        num_merges = MergeSchedule(num_samples).merges_per_stage
        merge_stage(features, labels, num_merges)  # warm-up: kernels, allocator
        torch.cuda.reset_peak_memory_stats()
        seconds = timed(lambda: merge_stage(features, labels, num_merges), args.repeats, sync)
        run = {"num_merges": num_merges, "num_clusters": int(labels_np.max() + 1), **seconds,
               "peak_memory_gb": torch.cuda.max_memory_allocated() / 1e9}
        if num_samples <= MAX_GRAM_SAMPLES:
            run["gram"] = timed(lambda: features @ features.T, args.repeats, sync)
        exact = merge_stage(features, labels, num_merges).cpu().numpy()
        run["tf32_matmul_changes_merges"] = _changed(
            exact, merge_stage(features, labels, num_merges, matmul_precision="tf32").cpu().numpy()
        )
        runs[str(num_samples)] = run
    small, large = runs.get("12936", {}), runs.get("100000", {})
    targets = {"12936_<=_50ms": small.get("best_s", float("inf")) <= 0.05,
               "100000_<=_10s": large.get("best_s", float("inf")) <= 10,
               "100000_<=_24GB": large.get("peak_memory_gb", float("inf")) <= 24}
    return {"config": {"dim": args.dim, "seed": args.seed}, "runs": runs, "targets_met": targets}


def _changed(exact: np.ndarray, approximate: np.ndarray) -> dict[str, object]:
    """Whether an approximate run gave other groups (labels are canonical, so equal groups = equal arrays)."""
    return {"identical": bool(np.array_equal(exact, approximate)),
            "samples_with_other_label": int((exact != approximate).sum())}


def main(argv: list[str] | None = None) -> dict[str, Path]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=12_936, help="samples in the CPU section")
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of the stage and of the Gram product")
    parser.add_argument("--reference-repeats", type=int, default=1, help="timed runs of the BUC-style stage")
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto",
                        help="cpu: CPU section only; cuda: GPU section only; auto: CPU, plus GPU when present")
    parser.add_argument("--gpu-sizes", type=int, nargs="+", default=list(GPU_SIZES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--tag", default="", help="suffix of the JSON names, e.g. 1thread")
    args = parser.parse_args(argv)

    sections = []
    if args.device in ("cpu", "auto"):
        sections.append(("cpu", cpu_section))
    if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            parser.error("--device cuda, but torch sees no CUDA device")
        sections.append(("cuda", gpu_section))
    written = {}
    for kind, section in sections:
        results = section(args)
        name = f"clustering_speed_{kind}" + (f"_{args.tag}" if args.tag else "")
        written[kind] = write_results(name, results, args.out_dir / f"{name}.json")
        for key, value in results.items():
            print(f"{key}: {value}")
    return written


if __name__ == "__main__":
    main()
