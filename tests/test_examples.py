"""The examples run as documented."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def test_tracker_embeddings_example_runs(tmp_path):
    from reid_sdk.model import save_checkpoint
    from tests.helpers import tiny_model

    model = save_checkpoint(tiny_model(), tmp_path / "tiny.pt")
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "tracker_embeddings.py"), "--model", str(model),
                             "--frames", "40"], capture_output=True, text=True, timeout=600, cwd=ROOT,
                            env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "2", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    found = re.search(r"(\d+) detections tracked: (\d+) tracker ids for (\d+) people in the file; id purity ([\d.]+)",
                      result.stdout)
    assert found, result.stdout
    detections, ids, people, purity = int(found[1]), int(found[2]), int(found[3]), float(found[4])
    assert detections > 0 and ids >= 1 and people >= 1 and 0 < purity <= 1


def test_minimal_tracker_keeps_ids_through_crossings_when_embeddings_tell_people_apart():
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        from tracker_embeddings import MinimalAppearanceTracker
    finally:
        sys.path.pop(0)
    tracker = MinimalAppearanceTracker()
    people = np.eye(2, 8)  # two perfectly distinct appearances
    frame = np.zeros((100, 200, 3), np.uint8)
    ids = []
    for step in range(11):  # A walks right, B walks left: their boxes cross at step 5
        a, b = [10 + 10 * step, 20, 50 + 10 * step, 90], [150 - 10 * step, 20, 190 - 10 * step, 90]
        dets = np.array([a + [0.9, 0], b + [0.9, 0]], dtype=float)
        out = tracker.update(dets, frame, embs=people)
        ids.append({int(row[7]): int(row[4]) for row in out})
    assert all(step == ids[0] for step in ids)  # detection 0 is always A, detection 1 always B
