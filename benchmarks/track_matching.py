"""Cross-camera track matching on synthetic multi-camera videos with ground truth.

Renders a video set (walkers crossing two or three of three cameras, passers-by crossing one; the demo's
rendering difficulty), ingests every camera's tracks into one gallery (``ReIDIndex.add_tracks``: quality-weighted
mean feature per track), then searches each track's entry among the OTHER cameras' tracks. Reported: rank-1 (the
best match is the same person) and mAP over the tracks whose person appears in another camera, and the precision
/ recall of "the best match, when its score reaches t" per threshold t (passers-by have no true match, so only a
threshold keeps them unmatched); with cosine scores and with k-reciprocal re-ranking (the paper's k1 = 20, k2 = 6,
and k1 = 6, k2 = 3, closer to this gallery's size). Models: the demo's trained ONNX model and its untrained
initial weights, for reference; for the trained one also every box of every track, equally weighted, in place
of the frame-quality rule.

    PYTHONPATH=. python -m benchmarks.track_matching [--demo demo]    # after reid-demo --out demo
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import write_results
from reid_sdk.demo.settings import DEMO_DIFFICULTY
from reid_sdk.inference.extractor import FeatureExtractor
from reid_sdk.search.index import ReIDIndex
from reid_sdk.search.reranking import RerankConfig
from reid_sdk.synthetic.video import VideoSetConfig, render_videos
from reid_sdk.tracks import FrameQuality, read_track_identities

VIDEOS = VideoSetConfig(seed=7, num_cameras=3, walkers=16, passers_by=4, cameras_per_walker=(2, 3), frames=300,
                        difficulty=DEMO_DIFFICULTY)
THRESHOLDS = np.round(np.arange(0.50, 1.00, 0.05), 2)
SCORINGS = {"cosine": False, "re-ranked (k1=20, k2=6)": RerankConfig(), "re-ranked (k1=6, k2=3)": RerankConfig(6, 3)}
EVERY_BOX = FrameQuality(min_height=1, min_width=1, min_visible=1e-6, max_overlap=1.0, max_frames=10**6,
                         min_weight=1.0)


def score(index: ReIDIndex, entries: list[tuple[int, str, str]], rerank: bool | RerankConfig) -> dict:
    """Rank-1, mAP and the threshold sweep of every entry searched among the other cameras' entries."""
    hits, precisions, best = [], [], []
    for entry, identity, camera in entries:
        matches = index.search_features(index.gallery.vectors([entry]), k=len(entries), rerank=rerank,
                                        exclude_camera=camera)[0]
        correct = np.array([m.identity == identity for m in matches])
        best.append((matches[0].score, bool(correct[0]), bool(correct.any())))
        if correct.any():
            hits.append(correct[0])
            precisions.append(np.mean(np.cumsum(correct)[correct] / (np.flatnonzero(correct) + 1)))
    sweep = {}
    findable = sum(has_match for _, _, has_match in best)
    for threshold in THRESHOLDS:
        kept = [(right, has_match) for value, right, has_match in best if value >= threshold]
        right = sum(r for r, _ in kept)
        sweep[f"{threshold:.2f}"] = {"precision": round(right / len(kept), 3) if kept else None,
                                     "recall": round(right / findable, 3), "associations": len(kept)}
    return {"tracks_with_a_match": len(hits), "tracks_without": len(best) - len(hits),
            "rank1": round(float(np.mean(hits)), 4), "mAP": round(float(np.mean(precisions)), 4),
            "threshold_sweep": sweep}


def evaluate(model: Path, videos: list, label: str, quality: FrameQuality = FrameQuality()) -> dict:
    start = time.perf_counter()
    index = ReIDIndex.create(FeatureExtractor(model, device="cpu"))
    entries = []
    for camera in videos:
        identities = read_track_identities(camera.identities)
        added = index.add_tracks(camera.video, camera.tracks, camera.camera, identities=identities, quality=quality)
        entries += [(entry, identities[track], camera.camera) for track, entry in added.items()]
    results = {"model": str(model), "quality": vars(quality), "tracks": len(entries),
               "ingest_seconds": round(time.perf_counter() - start, 1)}
    for name, rerank in SCORINGS.items():
        results[name] = score(index, entries, rerank)
        print(f"{label:40s} {name:24s} rank-1 {results[name]['rank1']:.3f}  mAP {results[name]['mAP']:.3f} "
              f"({results[name]['tracks_with_a_match']} tracks with a match elsewhere)")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=Path, default=Path("demo"), help="a reid-demo output folder")
    parser.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/track_matching.json)")
    args = parser.parse_args()
    trained, untrained = args.demo / "model.onnx", args.demo / "initial.pt"
    runs = {"trained (demo model.onnx)": (trained, FrameQuality()),
            "trained, every box equally weighted": (trained, EVERY_BOX),
            "untrained (initial.pt)": (untrained, FrameQuality())}
    missing = [str(path) for path in (trained, untrained) if not path.is_file()]
    if missing:
        raise SystemExit(f"{', '.join(missing)} not found: run reid-demo --out {args.demo} first")
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        videos = render_videos(folder, VIDEOS)
        render_seconds = time.perf_counter() - start
        results = {label: evaluate(path, videos, label, quality) for label, (path, quality) in runs.items()}
    path = write_results("track_matching", {
        "videos": {"cameras": VIDEOS.num_cameras, "walkers": VIDEOS.walkers, "passers_by": VIDEOS.passers_by,
                   "frames_per_camera": VIDEOS.frames, "frame_size": list(VIDEOS.frame_size), "fps": VIDEOS.fps,
                   "seed": VIDEOS.seed, "render_seconds": round(render_seconds, 1)},
        "results": results}, args.out)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
