"""reid-track against the renderer's ground truth: detection recall / precision, MOTA, IDF1 and identity switches
of the offline background detector + ByteTrack per rendering difficulty, with ``motmetrics``.

    PYTHONPATH=. python -m benchmarks.tracking                 # 3 difficulties x 2 seeds, small sites (minutes)
    PYTHONPATH=. python -m benchmarks.tracking --quick         # one seed
    PYTHONPATH=. python -m benchmarks.tracking --end-to-end    # + reid-adapt from videos alone vs ground truth

Each site: 2 cameras, 5 walkers + 2 passers-by, 300 frames of 270 x 480 at 10 fps (``reid-synth --layout
videos``). Ground truth is clipped to the frame, and a box less than half inside it is a "don't care" region (as
MOTChallenge treats its low-visibility boxes): detections on it count neither as hits nor as false positives.
A hit is IoU >= 0.5.

``--end-to-end`` then adapts a tiny 3-camera site twice at benchmarks/site_adaptation.py's ``--quick`` size and
settings (reid-adapt's defaults with two short stages): once from the renderer's ground-truth tracks, once from
the videos alone (tracked as reid-adapt tracks a camera without a tracks file). Each detected track is scored as the
ground-truth identity it overlaps most (IoU >= 0.5 in at least half of its boxes; other tracks have no identity:
they are searched as gallery but are not queries); cross-camera rank-1 / mAP of both runs, and of the ImageNet
start, side by side.

IoUs come from supervision's ``box_iou_batch`` (motmetrics 1.4's own ``iou_matrix`` calls
``np.asfarray``, gone in NumPy 2); motmetrics accumulates them and computes the metrics.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import write_results
from benchmarks.site_adaptation import CPU_OVERRIDES, QUICK_OVERRIDES, QUICK_SITE
from reid_sdk.detection import BackgroundDetector, TrackingOptions, track_video
from reid_sdk.synthetic.pedestrians import DifficultyConfig
from reid_sdk.synthetic.video import VideoSetConfig, load_video_set, render_videos
from reid_sdk.tracks.ingest import probe_video
from reid_sdk.tracks.mot import MotTracks, read_mot, read_track_identities, write_track_identities

SITE = VideoSetConfig(num_cameras=2, walkers=5, passers_by=2, cameras_per_walker=(2, 2), frames=300)
#: The renderer's difficulty knobs from clean to its default (the default is what reid-adapt's benchmarks use).
DIFFICULTIES = {
    "easy": DifficultyConfig(blur_sigma=0.3, low_resolution=1.0, noise_sigma=1.0, jpeg_quality=(85, 95),
                             illumination=(0.9, 1.1), background_contrast=0.5),
    "default": DifficultyConfig(),
    "hard": DifficultyConfig(noise_sigma=8.0, blur_sigma=2.0, low_resolution=3.0, jpeg_quality=(40, 70)),
}
MIN_INSIDE = 0.5  # a ground-truth box less inside the frame than this is a don't-care region


def _per_frame(tracks: MotTracks) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    order = np.argsort(tracks.frames, kind="stable")
    frames = tracks.frames[order]
    starts = np.flatnonzero(np.r_[True, np.diff(frames) > 0])
    return {int(frames[s]): (tracks.track_ids[order[s:e]], tracks.boxes[order[s:e]])
            for s, e in zip(starts, np.r_[starts[1:], len(frames)])}


def tracking_metrics(truth: MotTracks, found: MotTracks | None, frame_count: int,
                     frame_size: tuple[int, int]) -> dict[str, Any]:
    """motmetrics' MOTA, IDF1, identity switches, recall and precision of ``found`` against ``truth`` (IoU 0.5), over
    frames 1..frame_count, ground truth clipped to the frame and boxes mostly outside it treated as don't-care."""
    import motmetrics
    from supervision import box_iou_batch

    height, width = frame_size
    limits = np.array([width, height, width, height], np.float64)
    accumulator = motmetrics.MOTAccumulator(auto_id=False)
    truth_frames, found_frames = _per_frame(truth), (_per_frame(found) if found is not None and len(found) else {})
    empty = (np.zeros(0, np.int64), np.zeros((0, 4)))
    for frame in range(1, frame_count + 1):
        ids, boxes = truth_frames.get(frame, empty)
        clipped = np.clip(boxes, 0, limits)
        area = lambda b: np.prod(np.maximum(b[:, 2:] - b[:, :2], 0), axis=1)  # noqa: E731
        inside = area(clipped) >= MIN_INSIDE * np.maximum(area(boxes), 1e-9)
        hyp_ids, hyp_boxes = found_frames.get(frame, empty)
        if (~inside).any() and len(hyp_boxes):  # detections on a don't-care region are dropped
            keep = ~(box_iou_batch(clipped[~inside], hyp_boxes) >= 0.5).any(axis=0)
            hyp_ids, hyp_boxes = hyp_ids[keep], hyp_boxes[keep]
        ids, clipped = ids[inside], clipped[inside]
        distances = 1.0 - box_iou_batch(clipped, hyp_boxes) if len(clipped) and len(hyp_boxes) else \
            np.zeros((len(clipped), len(hyp_boxes)))
        distances[distances > 0.5] = np.nan  # IoU below 0.5: not a match
        accumulator.update(ids.tolist(), hyp_ids.tolist(), distances, frameid=frame)
    names = ["recall", "precision", "mota", "idf1", "num_switches", "num_unique_objects", "mostly_tracked",
             "num_false_positives", "num_misses"]
    summary = motmetrics.metrics.create().compute(accumulator, metrics=names, name="video")
    row = summary.loc["video"]
    return {name: (round(float(row[name]), 4) if isinstance(row[name], float) else int(row[name])) for name in names}


def run_site(folder: Path, seed: int, difficulty: str, options: TrackingOptions) -> dict[str, Any]:
    """Render one site, track each camera with the background detector and score it."""
    render_videos(folder, replace(SITE, seed=seed, difficulty=DIFFICULTIES[difficulty]), overwrite=True)
    cameras = []
    for camera in load_video_set(folder):
        start = time.perf_counter()
        tracked = track_video(camera.video, folder / f"{camera.camera}.found.txt", BackgroundDetector(), options,
                              progress="none")
        seconds = time.perf_counter() - start
        info = probe_video(camera.video)
        found = read_mot(tracked.tracks_file) if tracked.boxes else None
        metrics = tracking_metrics(read_mot(camera.tracks), found, info.frame_count, info.frame_size)
        cameras.append({"camera": camera.camera, **metrics, "tracks_found": tracked.tracks,
                        "frames_per_second": round(tracked.frames_read / seconds, 1)})
        print(difficulty, seed, cameras[-1], flush=True)
    return {"seed": seed, "difficulty": difficulty, "cameras": cameras}


def detected_identities(truth: MotTracks, labels: dict[int, str], found: MotTracks) -> dict[int, str]:
    """Each detected track's ground-truth identity: the one whose boxes it overlaps (IoU >= 0.5, one-to-one per
    frame) in at least half of its own boxes; tracks matching none that often are left out."""
    from scipy.optimize import linear_sum_assignment
    from supervision import box_iou_batch

    votes: dict[tuple[int, int], int] = {}
    truth_frames, found_frames = _per_frame(truth), _per_frame(found)
    for frame, (found_ids, found_boxes) in found_frames.items():
        truth_ids, truth_boxes = truth_frames.get(frame, (np.zeros(0, np.int64), np.zeros((0, 4))))
        if not len(truth_ids):
            continue
        overlap = box_iou_batch(found_boxes, truth_boxes)
        for row, column in zip(*linear_sum_assignment(-overlap)):
            if overlap[row, column] >= 0.5:
                key = (int(found_ids[row]), int(truth_ids[column]))
                votes[key] = votes.get(key, 0) + 1
    sizes = {track: len(rows) for track, rows in found.tracks()}
    identities = {}
    for (track, true_track), count in sorted(votes.items(), key=lambda item: -item[1]):
        if track not in identities and count >= sizes[track] / 2 and true_track in labels:
            identities[track] = labels[true_track]
    return identities


def end_to_end(workdir: Path, seed: int) -> dict[str, Any]:
    """reid-adapt on one tiny site from ground-truth tracks and from the videos alone (see the module docstring)."""
    from reid_sdk.adapt.pipeline import adapt_site
    from reid_sdk.adapt.settings import AdaptSettings

    truth_site = workdir / f"truth-{seed}"
    render_videos(truth_site, VideoSetConfig(seed=seed, **QUICK_SITE), overwrite=True)
    video_site = workdir / f"videos-{seed}"
    video_site.mkdir()
    tracking = []
    for camera in load_video_set(truth_site):
        (video_site / camera.video.name).symlink_to(camera.video)
        tracked = track_video(camera.video, video_site / f"{camera.camera}.txt", BackgroundDetector(),
                              TrackingOptions(), progress="none")
        found = read_mot(tracked.tracks_file)
        labels = detected_identities(read_mot(camera.tracks), read_track_identities(camera.identities), found)
        write_track_identities(video_site / f"{camera.camera}_identities.csv", labels)
        info = probe_video(camera.video)
        tracking.append({"camera": camera.camera, "tracks_found": tracked.tracks, "tracks_labelled": len(labels),
                         **tracking_metrics(read_mot(camera.tracks), found, info.frame_count, info.frame_size)})
    rows = {}
    for name, site in (("ground-truth tracks", truth_site), ("videos alone (background detector + ByteTrack)",
                                                            video_site)):
        settings = AdaptSettings(overrides=(*CPU_OVERRIDES, *QUICK_OVERRIDES), device="cpu", seed=seed,
                                 picture_tracks=4)
        start = time.perf_counter()
        result = adapt_site(site, workdir / f"run-{seed}-{len(rows)}", settings, progress=False)
        rows[name] = {"tracks": result.after.tracks, "queries": result.after.queries,
                      "start_rank1": result.before.rank1, "start_mAP": result.before.mAP,
                      "rank1": result.after.rank1, "mAP": result.after.mAP,
                      "seconds": round(time.perf_counter() - start, 1)}
        print(seed, name, rows[name], flush=True)
    return {"seed": seed, "tracking": tracking, "adapt": rows}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--end-to-end", action="store_true",
                        help="also reid-adapt from videos alone vs from ground-truth tracks (tiny site, minutes)")
    parser.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/tracking.json)")
    args = parser.parse_args(argv)
    seeds = args.seeds[:1] if args.quick else args.seeds
    options = TrackingOptions()
    runs, adapted = [], []
    with tempfile.TemporaryDirectory() as work:
        for difficulty in DIFFICULTIES:
            for seed in seeds:
                runs.append(run_site(Path(work) / f"{difficulty}-{seed}", seed, difficulty, options))
        if args.end_to_end:
            adapted = [end_to_end(Path(work), seed) for seed in seeds]
    summary = {}
    for difficulty in DIFFICULTIES:
        rows = [camera for run in runs if run["difficulty"] == difficulty for camera in run["cameras"]]
        summary[difficulty] = {key: round(float(np.mean([row[key] for row in rows])), 3)
                               for key in ("recall", "precision", "mota", "idf1", "num_switches", "frames_per_second")}
    path = write_results("tracking", {"site": {"num_cameras": SITE.num_cameras, "walkers": SITE.walkers,
                                               "passers_by": SITE.passers_by, "frames": SITE.frames,
                                               "frame_size": SITE.frame_size, "fps": SITE.fps},
                                      "detector": "background", "tracking_options": repr(options),
                                      "summary": summary, "runs": runs,
                                      "end_to_end": {"site": {**QUICK_SITE, "difficulty": "renderer default"},
                                                     "overrides": [*CPU_OVERRIDES, *QUICK_OVERRIDES],
                                                     "runs": adapted} if adapted else None}, args.out)
    print(path)


if __name__ == "__main__":
    main()
