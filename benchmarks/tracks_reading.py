"""Reading an hour of one camera's tracker output, and the cannot-link pairs it gives, spans against detections.

    PYTHONPATH=. python -m benchmarks.tracks_reading                 # 60 minutes at 25 fps, about 8 people in view
    PYTHONPATH=. python -m benchmarks.tracks_reading --minutes 5     # a quick run

A constructed camera: people arrive at random (about 8 in view at a time), each seen for 4 to 20 s; one in five
people's track is broken by the tracker into two fragments: the second starts on the same person while the
first still holds a detected (duplicate) box for 0 to 2 frames, then the first coasts (rows with confidence 0,
the tracker's predictions) for 1.5 s, as a tracker with ``max_age`` writes it; 3 % of the tracks are cars
(class 3). Measured:

- ``read_mot``: seconds and rows per second for the whole file (best of ``--repeats``), with the rows it left
  out by reason;
- the cannot-link pairs of the camera's tracks as the spans from first to last row give them (what the
  constraint used before) and as ``CannotLink.from_runs`` gives them from the detected frames (at least
  ``MIN_SHARED_FRAMES`` in common), against the constructed truth: pairs between one person's fragments (wrong:
  they would be kept apart forever) and pairs of two people in view together (right), and the seconds each takes.

Timings on a shared machine are upper bounds; the JSON records the load average and the CPU.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import RESULTS_DIR, timed, write_results
from reid_sdk.tracks.mot import read_mot
from reid_sdk.tracks.site_tracklets import frame_runs
from reid_sdk.training.clustering import CannotLink
from reid_sdk.training.clustering.constraints import MIN_SHARED_FRAMES

FPS = 25
IN_VIEW = 8  # people in view at a time, on average
SEEN_S = (4.0, 20.0)  # how long a person is seen
FRAGMENTED = 0.2  # share of people whose track the tracker breaks into two
COAST_S = 1.5  # how long the broken track coasts while its successor already runs
CARS = 0.03  # share of tracks that are cars


def constructed_camera(minutes: float, seed: int) -> tuple[list[str], dict[int, int]]:
    """MOT rows of one camera, and each track's person (cars: -1)."""
    rng = np.random.default_rng(seed)
    frames = int(minutes * 60 * FPS)
    mean_seen = np.mean(SEEN_S) * FPS
    arrivals = np.sort(rng.integers(1, frames, int(frames * IN_VIEW / mean_seen)))
    rows, person_of, next_id = [], {}, 1
    for person, start in enumerate(arrivals):
        length = int(rng.uniform(*SEEN_S) * FPS)
        frame_range = np.arange(start, min(start + length, frames + 1))
        x, y = rng.uniform(0, 1800), rng.uniform(0, 900)
        is_car = rng.random() < CARS
        cut = len(frame_range) // 2 if rng.random() < FRAGMENTED and len(frame_range) > 4 * COAST_S * FPS else None
        switch = int(rng.integers(0, MIN_SHARED_FRAMES))  # frames both ids hold a detected (duplicate) box
        pieces = [frame_range] if cut is None else [frame_range[:cut], frame_range[cut - switch:]]
        for number, piece in enumerate(pieces):
            track, next_id = next_id, next_id + 1
            person_of[track] = -1 if is_car else person
            for frame in piece:
                rows.append(f"{frame},{track},{x + frame % 50:.1f},{y:.1f},60,160,0.9,{3 if is_car else 1},1")
            if cut is not None and number == 0:  # coasting: predicted boxes over the successor's first frames
                for frame in range(piece[-1] + 1, min(piece[-1] + 1 + int(COAST_S * FPS), frames + 1)):
                    rows.append(f"{frame},{track},{x + frame % 50:.1f},{y:.1f},60,160,0,{1},0")
    return rows, person_of


def pair_kinds(pairs: np.ndarray, track_ids: list[int], person_of: dict[int, int]) -> dict[str, int]:
    """Constrained pairs between one person's fragments (wrong) and between two people (right)."""
    people = np.array([person_of[track] for track in track_ids])
    same = people[pairs[:, 0]] == people[pairs[:, 1]] if len(pairs) else np.array([], bool)
    return {"pairs": int(len(pairs)), "same_person_fragments": int(same.sum()), "two_people": int((~same).sum())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "tracks_reading.json")
    args = parser.parse_args()
    rows, person_of = constructed_camera(args.minutes, args.seed)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "camera.txt"
        path.write_text("\n".join(rows) + "\n")
        size = path.stat().st_size
        reading = timed(lambda: read_mot(path), args.repeats)
        tracks = read_mot(path)
    ids, spans, runs = [], [], []
    for track, rows_of_track in tracks.tracks():
        frames = tracks.frames[rows_of_track]
        ids.append(track)
        spans.append((int(frames[0]), int(frames[-1])))
        runs.append(frame_runs(frames))
    cameras = np.ones(len(ids), int)
    start = time.perf_counter()
    by_spans = CannotLink.from_spans(cameras, [s[0] for s in spans], [s[1] for s in spans])
    spans_s = time.perf_counter() - start
    start = time.perf_counter()
    by_detections = CannotLink.from_runs(cameras, runs)
    runs_s = time.perf_counter() - start
    # the old constraint read every row, coasting ones included: spans from the raw file
    raw_spans: dict[int, list[int]] = {}
    for row in rows:
        frame, track = (int(value) for value in row.split(",")[:2])
        if person_of[track] >= 0:
            first, last = raw_spans.setdefault(track, [frame, frame])
            raw_spans[track] = [min(first, frame), max(last, frame)]
    raw_ids = sorted(raw_spans)
    with_coasting = CannotLink.from_spans(np.ones(len(raw_ids), int), [raw_spans[t][0] for t in raw_ids],
                                          [raw_spans[t][1] for t in raw_ids])
    results = {
        "settings": {"minutes": args.minutes, "fps": FPS, "in_view": IN_VIEW, "seen_s": SEEN_S,
                     "fragmented": FRAGMENTED, "coast_s": COAST_S, "cars": CARS, "seed": args.seed,
                     "min_shared_frames": MIN_SHARED_FRAMES},
        "file": {"rows": len(rows), "bytes": size, "tracks_kept": len(ids)},
        "read_mot": {**reading, "rows_per_s": round(len(rows) / reading["best_s"]), "left_out": tracks.left_out},
        "cannot_link": {
            "spans_with_coasting_rows": pair_kinds(with_coasting.pairs, raw_ids, person_of),
            "spans_of_detected_rows": {**pair_kinds(by_spans.pairs, ids, person_of), "seconds": round(spans_s, 4)},
            "shared_detected_frames": {**pair_kinds(by_detections.pairs, ids, person_of),
                                       "seconds": round(runs_s, 4)},
        },
    }
    print(f"{len(rows)} rows ({size / 1e6:.1f} MB) read in {reading['best_s']:.2f} s "
          f"({results['read_mot']['rows_per_s']:,} rows/s); left out {tracks.left_out}")
    for name, kinds in results["cannot_link"].items():
        print(f"cannot-link by {name}: {kinds}")
    print(f"written to {write_results('tracks_reading', results, args.out)}")


if __name__ == "__main__":
    main()
