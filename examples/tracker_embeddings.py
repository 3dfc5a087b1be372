"""Handing reid-sdk features to a tracker that takes external appearance embeddings.

Trackers such as BoxMOT's (BoT-SORT, DeepOCSORT, StrongSORT, ...) can take embeddings computed outside them:
``tracker.update(dets, frame, embs=features)`` with ``dets`` an (N, 6) array ``x1, y1, x2, y2, conf, class``,
``features`` (N, D) with one row per detection, returning (M, 8) rows ``x1, y1, x2, y2, id, conf, class,
det_index``. This script reads a video frame by frame, takes each frame's detections (from a MOT file, its ids
ignored: a stand-in for your detector), crops them with ``extract_boxes``, embeds them with ``FeatureExtractor``
and calls ``update``. The tracker here is a minimal one with that contract (Hungarian matching on box overlap
plus cosine similarity), so the example runs with nothing else installed; any tracker with the same ``update``
replaces it unchanged. Without ``--video``, a small synthetic camera video with ground-truth tracks is rendered
and the tracker's ids are scored against it.

    python examples/tracker_embeddings.py --model demo/model.onnx
    python examples/tracker_embeddings.py --model model.onnx --video cam1.mp4 --detections cam1_dets.txt
"""

from __future__ import annotations

import argparse
import tempfile
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from reid_sdk import FeatureExtractor
from reid_sdk.synthetic.video import VideoSetConfig, render_videos
from reid_sdk.tracks import extract_boxes, read_mot


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) intersection over union of x1, y1, x2, y2 boxes."""
    width = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    height = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = width * height
    area = lambda boxes: (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


class MinimalAppearanceTracker:
    """BoxMOT's ``update(dets, img, embs)`` contract with the least machinery: each track keeps its last box and
    a running mean embedding; a detection may join a track its box overlaps (IoU >= ``min_iou``), and the pairs
    are chosen by Hungarian matching on 0.5 IoU + 0.5 cosine similarity, so appearance decides between people
    whose boxes cross."""

    def __init__(self, max_age: int = 15, min_iou: float = 0.1) -> None:
        self.max_age, self.min_iou = max_age, min_iou
        self.boxes = np.empty((0, 4))
        self.embeddings = np.empty((0, 0))
        self.ids: list[int] = []
        self.age: list[int] = []
        self.next_id = 1

    def update(self, dets: np.ndarray, img: np.ndarray, embs: np.ndarray | None = None) -> np.ndarray:
        if embs is None or len(embs) != len(dets):
            raise ValueError("this tracker needs one embedding per detection (embs=...)")
        matched_tracks, matched_dets = np.empty(0, int), np.empty(0, int)
        if len(self.ids) and len(dets):
            overlap = iou(self.boxes, dets[:, :4])
            affinity = np.where(overlap >= self.min_iou, 0.5 * overlap + 0.5 * (self.embeddings @ embs.T), -1.0)
            rows, cols = linear_sum_assignment(-affinity)
            keep = affinity[rows, cols] >= 0
            matched_tracks, matched_dets = rows[keep], cols[keep]
        for track, det in zip(matched_tracks, matched_dets):
            mean = 0.8 * self.embeddings[track] + 0.2 * embs[det]
            self.embeddings[track] = mean / np.linalg.norm(mean)
            self.boxes[track], self.age[track] = dets[det, :4], 0
        assigned = dict(zip(matched_dets.tolist(), matched_tracks.tolist()))
        for det in range(len(dets)):
            if det not in assigned:
                assigned[det] = len(self.ids)
                self.ids.append(self.next_id)
                self.next_id += 1
                self.age.append(0)
                self.boxes = np.vstack([self.boxes, dets[det, :4]])
                self.embeddings = embs[det][None].copy() if not self.embeddings.size else np.vstack(
                    [self.embeddings, embs[det]])
        self.age = [age + 1 for age in self.age]
        alive = [i for i, age in enumerate(self.age) if age <= self.max_age]
        output = [[*dets[det, :4], self.ids[track], dets[det, 4], dets[det, 5], det] for det, track in assigned.items()]
        self.boxes, self.embeddings = self.boxes[alive], self.embeddings[alive]
        self.ids, self.age = [self.ids[i] for i in alive], [self.age[i] for i in alive]
        return np.array(output).reshape(-1, 8)


def run(model: str, video: Path, detections: Path) -> dict[int, Counter]:
    """Track ``video`` with reid-sdk embeddings; returns, per tracker id, the counts of the file's ids it covered."""
    extractor = FeatureExtractor(model, device="cpu")
    boxes = read_mot(detections)
    tracker = MinimalAppearanceTracker()
    covered: dict[int, Counter] = {}
    capture = cv2.VideoCapture(str(video))
    frame_number = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frame_number += 1
        rows = np.flatnonzero(boxes.frames == frame_number)
        crops, kept = extract_boxes(frame, boxes.boxes[rows])
        if not crops:
            continue
        rows = rows[kept]
        dets = np.column_stack([boxes.boxes[rows], boxes.confidences[rows], np.zeros(len(rows))])  # class 0: person
        tracked = tracker.update(dets, frame, embs=extractor.extract(crops))
        for *_, track_id, _, _, det in tracked:
            covered.setdefault(int(track_id), Counter())[int(boxes.track_ids[rows[int(det)]])] += 1
    capture.release()
    return covered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="reid-sdk ONNX model or checkpoint")
    parser.add_argument("--video", type=Path, help="video file (default: render a synthetic one)")
    parser.add_argument("--detections", type=Path, help="MOT file of the video's boxes (ids are only for scoring)")
    parser.add_argument("--frames", type=int, default=120, help="length of the synthetic video")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        if args.video is None:
            camera = render_videos(scratch, VideoSetConfig(num_cameras=2, walkers=3, passers_by=1,
                                                           cameras_per_walker=(2, 2), frames=args.frames))[0]
            args.video, args.detections = camera.video, camera.tracks
        covered = run(args.model, args.video, args.detections)
    boxes = sum(sum(counts.values()) for counts in covered.values())
    majority = sum(counts.most_common(1)[0][1] for counts in covered.values())
    truth = {true_id for counts in covered.values() for true_id in counts}
    print(f"{boxes} detections tracked: {len(covered)} tracker ids for {len(truth)} people in the file; "
          f"id purity {majority / max(boxes, 1):.3f} (share of boxes carrying their tracker id's majority person)")


if __name__ == "__main__":
    main()
