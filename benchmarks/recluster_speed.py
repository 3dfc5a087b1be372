"""Speed and peak memory of Cluster Contrast's pseudo-labels: ``jaccard_distance`` and ``dbscan_jaccard_labels``.

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \\
        PYTHONPATH=. python benchmarks/recluster_speed.py                      # N = 12,936 x 2048 and 100,000 x 512
    PYTHONPATH=. python benchmarks/recluster_speed.py --sizes 12936x2048 --save-features /tmp/recluster
    PYTHONPATH=. python benchmarks/recluster_speed.py --reference-json /tmp/ref.json --reference-labels /tmp/ref.npy

Each size and task runs in a fresh subprocess, so peak RSS (``ru_maxrss``) never mixes: task ``distance`` times
``jaccard_distance`` (every pair with distance < 1 stored); task ``labels`` times ``dbscan_jaccard_labels``'s two
parts, ``jaccard_distance(..., max_distance=eps)`` and scikit-learn's DBSCAN on it. Peak RSS is reported whole
and above the baseline (Python, torch, FAISS and scikit-learn imported, the features drawn). Targets at
N = 12,936, d = 2,048: <= 30 s and <= 2 GiB peak RSS; N = 100,000, d = 512 completes.

Features have identity structure: identity sizes 1..33 (uniform; singletons stand for distractors), a random
centre per identity plus isotropic noise whose scale per identity is uniform in [1, 4] x sqrt(d / 2048) times
the centre's (loose identities split or become outliers, as early in training; the factor keeps the difficulty
the same at every d), L2-normalised. ``--save-features DIR`` writes
them as ``DIR/features_<N>x<d>.npy``, so another implementation can run on the very same rows.

The reference (Cluster Contrast's own ``compute_jaccard_distance`` with ``search_option=3``, its CPU path, and
``DBSCAN(metric="precomputed")`` on its dense matrix) is run outside this repository on saved features; its
JSON (``--reference-json``: seconds, peak RSS, how it was measured) is merged under ``reference``, and with
``--reference-labels`` (its labels as .npy) the run of the same size says whether the partitions are equal.
The JSON is rewritten after each size and task, so a run stopped at the largest keeps the others.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.cluster import DBSCAN

from benchmarks.common import RESULTS_DIR, write_results
from reid_sdk.evaluation import same_partition

SIZES = ("12936x2048", "100000x512")
TASKS = ("distance", "labels")
EPS, MIN_SAMPLES, K1, K2 = 0.6, 4, 30, 6  # Cluster Contrast's settings
DRAWN_ROWS = 8192  # features drawn at a time, so drawing holds no second N x d temporary
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def identity_features(num_samples: int, dim: int, seed: int) -> np.ndarray:
    """(N, d) unit float32 rows: identity centres plus noise, identity sizes 1..33, noise scale per identity
    uniform in [1, 4] x sqrt(d / 2048)."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 34, size=num_samples)
    sizes = sizes[: np.searchsorted(np.cumsum(sizes), num_samples) + 1]
    sizes[-1] -= sizes.sum() - num_samples
    identity = rng.permutation(np.repeat(np.arange(len(sizes)), sizes))
    centres = rng.standard_normal((len(sizes), dim), dtype=np.float32)
    spread = (rng.uniform(1.0, 4.0, size=len(sizes)) * np.sqrt(dim / 2048)).astype(np.float32)
    features = np.empty((num_samples, dim), dtype=np.float32)
    for start in range(0, num_samples, DRAWN_ROWS):
        rows = identity[start : start + DRAWN_ROWS]
        chunk = centres[rows] + spread[rows, None] * rng.standard_normal((len(rows), dim), dtype=np.float32)
        features[start : start + len(rows)] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
    return features


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def run_task(task: str, num_samples: int, dim: int, seed: int, save_features: Path | None,
             reference_labels: Path | None) -> dict[str, Any]:
    """One size and task in this process: seconds, peak RSS and what was found."""
    from reid_sdk.training.clustering import jaccard_distance  # imported here, before the baseline is read

    load = os.getloadavg()[0]
    features = identity_features(num_samples, dim, seed)
    if save_features is not None:
        save_features.mkdir(parents=True, exist_ok=True)
        np.save(save_features / f"features_{num_samples}x{dim}.npy", features)
    baseline = _peak_rss_mib()
    result: dict[str, Any] = {"task": task, "num_samples": num_samples, "dim": dim, "load_average_1min_at_start": load}
    start = time.perf_counter()
    if task == "distance":
        distance = jaccard_distance(features, k1=K1, k2=K2)
        result["jaccard_distance_s"] = time.perf_counter() - start
        result["stored_pairs"] = int(distance.nnz)
    else:
        distance = jaccard_distance(features, k1=K1, k2=K2, max_distance=EPS)
        result["jaccard_distance_within_eps_s"] = time.perf_counter() - start
        result["stored_pairs"] = int(distance.nnz)
        start = time.perf_counter()
        labels = DBSCAN(eps=EPS, min_samples=MIN_SAMPLES, metric="precomputed").fit_predict(distance)
        result["dbscan_s"] = time.perf_counter() - start
        result["dbscan_jaccard_labels_s"] = result["jaccard_distance_within_eps_s"] + result["dbscan_s"]
        result["clusters"] = int(labels.max() + 1)
        result["outliers"] = int((labels == -1).sum())
        if reference_labels is not None:
            result["partition_equals_reference"] = same_partition(labels, np.load(reference_labels))
    result["peak_rss_mib"] = _peak_rss_mib()
    result["peak_rss_above_baseline_mib"] = result["peak_rss_mib"] - baseline
    result["baseline_rss_mib"] = baseline
    return result


def _lscpu() -> dict[str, str]:
    """lscpu's model name, CPU count and threads per core ({} where lscpu is missing)."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {}
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {key: fields[key].strip() for key in ("Model name", "CPU(s)", "Thread(s) per core") if key in fields}


def main(argv: list[str] | None = None) -> Path | None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), help="NxD, e.g. 12936x2048")
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save-features", type=Path, help="folder for features_<N>x<d>.npy (for the reference)")
    parser.add_argument("--reference-json", type=Path, help="the reference's measurements, merged under 'reference'")
    parser.add_argument("--reference-labels", type=Path, help="the reference's labels (.npy) at its num_samples")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "recluster_speed_cpu.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # "task:NxD": run one task here, print its JSON
    args = parser.parse_args(argv)

    if args.child:
        task, size = args.child.split(":")
        num_samples, dim = map(int, size.split("x"))
        print(json.dumps(run_task(task, num_samples, dim, args.seed, args.save_features, args.reference_labels)))
        return None

    reference = json.loads(args.reference_json.read_text()) if args.reference_json else None
    results: dict[str, Any] = {"settings": {"k1": K1, "k2": K2, "eps": EPS, "min_samples": MIN_SAMPLES,
                                            "seed": args.seed},
                               "lscpu": _lscpu(), "threads": {name: os.environ.get(name) for name in THREAD_VARIABLES},
                               "runs": [], **({"reference": reference} if reference else {})}
    for size in args.sizes:
        for task in args.tasks:
            command = [sys.executable, __file__, "--child", f"{task}:{size}", "--seed", str(args.seed)]
            if args.save_features and task == args.tasks[0]:
                command += ["--save-features", str(args.save_features)]
            if task == "labels" and args.reference_labels and size.startswith(f"{reference['num_samples']}x"):
                command += ["--reference-labels", str(args.reference_labels)]
            run = subprocess.run(command, capture_output=True, text=True)
            if run.returncode:
                results["runs"].append({"task": task, "size": size, "error": run.stderr.strip().splitlines()[-1:]})
            else:
                results["runs"].append(json.loads(run.stdout.strip().splitlines()[-1]))
            print(json.dumps(results["runs"][-1]), flush=True)
            write_results("recluster_speed_cpu", results, args.out)
    return args.out


if __name__ == "__main__":
    main()
