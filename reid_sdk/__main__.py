"""``python -m reid_sdk``: a self-check that builds the paper's network and extracts features of a drawn crop."""

from __future__ import annotations

import argparse
import logging
import time

import cv2
import numpy as np


def draw_pedestrian(height: int = 128, width: int = 64, seed: int = 0) -> np.ndarray:
    """A crude BGR pedestrian (head, coloured torso and legs on a textured background)."""
    rng = np.random.default_rng(seed)
    crop = rng.integers(90, 160, (height, width, 3), dtype=np.uint8)
    torso, legs = (tuple(int(c) for c in rng.integers(0, 256, 3)) for _ in range(2))
    cx = width // 2
    cv2.rectangle(crop, (cx - width // 5, int(height * 0.2)), (cx + width // 5, int(height * 0.55)), torso, -1)
    cv2.rectangle(crop, (cx - width // 6, int(height * 0.55)), (cx + width // 6, int(height * 0.95)), legs, -1)
    cv2.circle(crop, (cx, int(height * 0.12)), width // 8, (140, 170, 210), -1)
    return crop


def main(argv: list[str] | None = None) -> None:
    from reid_sdk import __version__
    from reid_sdk.extractor import FeatureExtractor
    from reid_sdk.model import ModelConfig, ReIDNet

    parser = argparse.ArgumentParser(prog="python -m reid_sdk", description=__doc__)
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--depth", type=int, default=50, choices=(18, 34, 50))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    model = ReIDNet(ModelConfig(depth=args.depth))
    extractor = FeatureExtractor(model, device=args.device)
    crops = [draw_pedestrian(seed=seed) for seed in range(4)]
    start = time.perf_counter()
    features = extractor.extract(crops)
    seconds = time.perf_counter() - start
    similarity = features @ features.T
    print(f"reid-sdk {__version__}: NL-ResNet-{args.depth} ({model.weights_source} weights) "
          f"on {extractor.backend.device}, input {extractor.input_size[0]}x{extractor.input_size[1]}")
    print(f"extracted {features.shape[0]} features of dimension {features.shape[1]} in {seconds * 1000:.0f} ms; "
          f"norms {np.round(np.linalg.norm(features, axis=1), 4).tolist()}")
    print("cosine similarity between the drawn crops:")
    print(np.array2string(similarity, precision=3, suppress_small=True))


if __name__ == "__main__":
    main()
