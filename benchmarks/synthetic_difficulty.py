"""How hard is the synthetic data? Colour-histogram baselines evaluated under the Market-1501 protocol.

Generates the default-size ("small") synthetic Market-1501 set, describes every crop by HSV colour histograms
(cv2.calcHist; one global histogram, six horizontal stripes, and six stripes of the central person region
only), compares them by the Hellinger / Bhattacharyya
kernel (cosine of square-rooted histograms) and reports rank-k, mAP and mINP, plus the rendering speed.
A method worth its name must beat these numbers clearly.

    PYTHONPATH=. python benchmarks/synthetic_difficulty.py [--size small] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from reid_sdk.datasets import load_market1501
from reid_sdk.synthetic.layouts import PRESETS, SyntheticConfig, generate
from reid_sdk.evaluation.metrics import rank_metrics

RESULTS = Path(__file__).parent / "results" / "synthetic_difficulty.json"
BINS = (8, 4, 4)


def hsv_histogram(image: np.ndarray, stripes: int) -> np.ndarray:
    """Concatenated, square-rooted HSV histograms of ``stripes`` horizontal bands, L2-normalised."""
    hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)
    bands = np.array_split(np.arange(hsv.shape[0]), stripes)
    parts = []
    for rows in bands:
        band = np.ascontiguousarray(hsv[rows[0]:rows[-1] + 1])
        hist = cv2.calcHist([band], [0, 1, 2], None, list(BINS), [0, 180, 0, 256, 0, 256]).ravel()
        parts.append(np.sqrt(hist / max(hist.sum(), 1.0)))
    feature = np.concatenate(parts)
    return feature / np.linalg.norm(feature)


def person_region(image: np.ndarray) -> np.ndarray:
    """The central part of a crop where the pedestrian stands (an oracle-ish crop that drops most background)."""
    height, width = image.shape[:2]
    return np.ascontiguousarray(image[height // 12: height - height // 24, width // 4: width - width // 4])


def evaluate_histograms(query, gallery, stripes: int, crop=lambda image: image) -> dict:
    def features(records):
        return np.stack([hsv_histogram(crop(cv2.imread(str(r.path))), stripes) for r in records])

    q, g = features(query), features(gallery)
    distmat = 1.0 - q @ g.T
    result = rank_metrics(
        distmat,
        np.array([r.pid for r in query]), np.array([r.pid for r in gallery]),
        np.array([r.camera for r in query]), np.array([r.camera for r in gallery]),
    )
    return result.as_dict()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="small", choices=sorted(PRESETS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    config = SyntheticConfig(seed=args.seed, sizes=PRESETS[args.size])
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        count = generate("market1501", folder, config, workers=1)
        seconds = time.perf_counter() - start
        splits = load_market1501(folder)
        report = {
            "benchmark": "synthetic_difficulty",
            "dataset": f"synthetic market1501, size={args.size}, seed={args.seed}",
            "difficulty": config.difficulty.__dict__,
            "images": count,
            "train": len(splits.train), "query": len(splits.query), "gallery": len(splits.gallery),
            "render_seconds_one_thread": round(seconds, 2),
            "render_images_per_second_one_thread": round(count / seconds, 1),
            "hsv_global": evaluate_histograms(splits.query, splits.gallery, stripes=1),
            "hsv_6_stripes": evaluate_histograms(splits.query, splits.gallery, stripes=6),
            "hsv_6_stripes_person_region": evaluate_histograms(splits.query, splits.gallery, 6, person_region),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                        "note": "2-core CPU shared with other jobs while measured"},
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=list) + "\n")
    print(json.dumps({k: report[k] for k in ("images", "render_images_per_second_one_thread", "hsv_global",
                                             "hsv_6_stripes", "hsv_6_stripes_person_region")}, indent=2))


if __name__ == "__main__":
    main()
