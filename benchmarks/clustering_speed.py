"""Speed of one IMD/CPD merge stage against a BUC-style reference and against one Gram product.

    PYTHONPATH=. python benchmarks/clustering_speed.py                   # CPU, N = 12,936, d = 2048
    PYTHONPATH=. python benchmarks/clustering_speed.py --device cuda     # GPU: N = 12,936, 100,000, 1,000,000
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

GPU section (only when CUDA is available): stage time and peak memory at each size (the features
included: 8.2 GB at 1,000,000 x 2048), the time of one Gram product X @ X.T up to 100,000 (above
40,000 computed in row blocks of at most 2^30 entries, each dropped: the same arithmetic without an
N x N result in memory) and the stage's ratio to it, and whether TF32 changes the merges (up to 100,000). Sizes above 100,000 run once, without a warm-up: a stage there takes minutes.
The JSON is rewritten after each size, so a run stopped at the largest keeps the others. Targets on one
H100 / H200: <= 50 ms at 12,936; <= 10 s and <= 24 GB at 100,000; 1,000,000 exact (TF32 off) in <= 5 min.
``--sizes-on-cpu`` runs this section's code on the CPU at small sizes (a check of its wiring).

Labels mimic a mid-training stage: cluster sizes 1..30 with P(size) ~ size^-2.2 (about two thirds of
the clusters are singletons, mean size ~2.1); features are identity centres plus noise, L2-normalised,
drawn with torch's generator on the device that clusters them.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import RESULTS_DIR, timed, write_results
from reid_sdk.training.clustering import LINKAGES, MergeSchedule, merge_stage

GPU_SIZES = (12_936, 100_000, 1_000_000)
MAX_GRAM_SAMPLES = 40_000  # a dense N x N Gram is kept whole up to here; above, it is computed in row blocks
GRAM_BLOCK_ENTRIES = 2**30  # entries of one row block of a blocked Gram product (4 GB in fp32)
MAX_REPEATED_SAMPLES = 100_000  # larger sizes: one timed stage, no warm-up, no TF32 comparison
FEATURE_CHUNK = 65_536  # rows drawn at a time, so drawing never holds a second N x d temporary
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_WAIT_POLICY")


def mid_training_labels(num_samples: int, rng: np.random.Generator, max_size: int = 30) -> np.ndarray:
    """Shuffled labels 0..C-1 with cluster sizes drawn from P(s) ~ s^-2.2 on 1..max_size."""
    sizes_range = np.arange(1, max_size + 1)
    weights = sizes_range**-2.2
    draws = rng.choice(sizes_range, size=num_samples, p=weights / weights.sum())
    sizes = draws[: np.searchsorted(np.cumsum(draws), num_samples) + 1]
    sizes[-1] -= sizes.sum() - num_samples
    return rng.permutation(np.repeat(np.arange(len(sizes)), sizes))


def clustered_features(labels: np.ndarray, dim: int, seed: int, device: torch.device) -> torch.Tensor:
    """Unit float32 rows on ``device``: a random centre per cluster plus isotropic noise (0.7 per coordinate)."""
    generator = torch.Generator(device=device).manual_seed(seed)
    centres = torch.randn(int(labels.max()) + 1, dim, generator=generator, device=device)
    index = torch.from_numpy(labels).to(device)
    features = torch.empty(len(labels), dim, device=device)
    for start in range(0, len(labels), FEATURE_CHUNK):
        rows = slice(start, start + FEATURE_CHUNK)
        chunk = centres[index[rows]].add_(torch.randn(len(index[rows]), dim, generator=generator, device=device),
                                          alpha=0.7)
        features[rows] = chunk.div_(chunk.norm(dim=1, keepdim=True))
    return features


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
    labels = mid_training_labels(args.n, np.random.default_rng(args.seed))
    tensor = clustered_features(labels, args.dim, args.seed, torch.device("cpu"))
    features = tensor.numpy()
    num_merges = MergeSchedule(args.n).merges_per_stage
    sizes = np.bincount(labels)

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


def sizes_section(args: argparse.Namespace, device: torch.device, save: Callable[[dict], None]) -> dict[str, object]:
    """Stage time and peak memory at each of ``args.gpu_sizes`` on ``device``; ``save`` gets the results so far."""
    on_cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if on_cuda else (lambda: None)
    results: dict[str, object] = {"config": {"dim": args.dim, "seed": args.seed, "device": str(device)}, "runs": {}}
    for num_samples in args.gpu_sizes:
        labels_np = mid_training_labels(num_samples, np.random.default_rng(args.seed))
        features = clustered_features(labels_np, args.dim, args.seed, device)
        labels = torch.from_numpy(labels_np).to(device)
        num_merges = MergeSchedule(num_samples).merges_per_stage
        repeated = num_samples <= MAX_REPEATED_SAMPLES
        exact = merge_stage(features, labels, num_merges) if repeated else None  # also the warm-up
        if on_cuda:
            torch.cuda.reset_peak_memory_stats()
        seconds = timed(lambda: merge_stage(features, labels, num_merges), args.repeats if repeated else 1, sync)
        run = {"num_merges": num_merges, "num_clusters": int(labels_np.max() + 1), **seconds,
               "features_gb": features.numel() * 4 / 1e9,
               "peak_memory_gb": torch.cuda.max_memory_allocated() / 1e9 if on_cuda else None}
        if repeated:
            run["gram"] = timed(lambda: gram_product(features), args.repeats, sync)
            run["stage_over_gram"] = run["best_s"] / run["gram"]["best_s"]
        if exact is not None and on_cuda:
            run["tf32_matmul_changes_merges"] = _changed(
                exact.cpu().numpy(), merge_stage(features, labels, num_merges, matmul_precision="tf32").cpu().numpy()
            )
        del features, labels, exact
        if on_cuda:
            torch.cuda.empty_cache()
        results["runs"][str(num_samples)] = run
        results["targets_met"] = _size_targets(results["runs"])
        save(results)
        gram = f", {run['stage_over_gram']:.1f} x one Gram product" if "stage_over_gram" in run else ""
        print(f"N = {num_samples:,}: stage {run['best_s']:.3f} s on {device}{gram}", flush=True)
    return results


def gram_product(features: torch.Tensor) -> None:
    """X @ X.T: whole up to MAX_GRAM_SAMPLES rows, else in row blocks whose results are dropped (timing only)."""
    count = len(features)
    if count <= MAX_GRAM_SAMPLES:
        features @ features.T
        return
    rows = max(1, GRAM_BLOCK_ENTRIES // count)
    for start in range(0, count, rows):
        features[start : start + rows] @ features.T


def _size_targets(runs: dict[str, dict]) -> dict[str, bool]:
    """The design's GPU targets, judged on the sizes measured so far (a size not measured fails its target)."""
    def value(size: str, key: str) -> float:
        return runs.get(size, {}).get(key) or float("inf")

    return {"12936_<=_50ms": value("12936", "best_s") <= 0.05,
            "100000_<=_10s": value("100000", "best_s") <= 10,
            "100000_<=_24GB": value("100000", "peak_memory_gb") <= 24,
            "1000000_exact_<=_300s": value("1000000", "best_s") <= 300}


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
    parser.add_argument("--sizes-on-cpu", action="store_true",
                        help="run the GPU section's code on the CPU (small --gpu-sizes: a check of its wiring)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--tag", default="", help="suffix of the JSON names, e.g. 1thread")
    args = parser.parse_args(argv)

    on_cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    if on_cuda and not args.sizes_on_cpu and not torch.cuda.is_available():
        parser.error("--device cuda, but torch sees no CUDA device")
    written = {}
    if args.device in ("cpu", "auto") and not args.sizes_on_cpu:
        results = cpu_section(args)
        written["cpu"] = write_results(_name("cpu", args.tag), results, args.out_dir / f"{_name('cpu', args.tag)}.json")
        for key, value in results.items():
            print(f"{key}: {value}")
    if on_cuda or args.sizes_on_cpu:
        kind = "cpu_sizes" if args.sizes_on_cpu else "cuda"
        name, written[kind] = _name(kind, args.tag), args.out_dir / f"{_name(kind, args.tag)}.json"
        device = torch.device("cpu" if args.sizes_on_cpu else "cuda")
        sizes_section(args, device, lambda results: write_results(name, results, written[kind]))
    return written


def _name(kind: str, tag: str) -> str:
    return f"clustering_speed_{kind}" + (f"_{tag}" if tag else "")


if __name__ == "__main__":
    main()
